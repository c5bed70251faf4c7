"""The ``lvebm`` command line: argparse subcommands that call the library.

Every command module defines ``register(train, top)``, adding its parsers to the
``train`` subcommands and/or the top-level ones, with ``set_defaults(run=...)``.
Errors from bad input print one line ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .._checks import LvebmError
from . import demo, encode, sparse_coding

#: Command modules, in the order their commands appear in ``--help``.
COMMANDS = [sparse_coding, encode, demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvebm",
        description="Regularized latent-variable energy-based models: sparse coding, "
        "LISTA/PSD, convolutional sparse coding, VAEs.",
    )
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train_parser = top.add_parser("train", help="train a model and write it with figures")
    train = train_parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for module in COMMANDS:
        module.register(train, top)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lvebm`` and ``python -m lvebm``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (LvebmError, ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
