"""``python -m lvebm`` is the ``lvebm`` command."""

import sys

from .cli import main

sys.exit(main())
