"""Render the bad-input table of tests/test_errors.py into docs/errors.md.

Run from the repository root: ``python tests/render_error_table.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_errors import DOC, render_markdown  # noqa: E402

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(render_markdown(Path(scratch)))
    print(f"wrote {DOC}")
