"""The ``lvebm`` command line: argparse subcommands that call the library.

Every command module defines ``register(train, top)``, adding its parsers to the
``train`` subcommands and/or the top-level ones, with ``set_defaults(run=...)``.
Errors from bad input (including bad command-line syntax) print one line
``error: ...`` and exit with status 2, without a traceback; Ctrl-C during training
saves a checkpoint, prints one line and exits with status 130.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .._checks import LvebmError, TrainingInterrupted
from . import bench, conv, demo, encode, latent_ebm, lista, sparse_coding, vae

#: Command modules, in the order their commands appear in ``--help``.
COMMANDS = [sparse_coding, lista, conv, vae, latent_ebm, encode, demo, bench]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line ``error: <command>: ...``, status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # bad syntax (one line already printed) or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            args.run(args)
    except (LvebmError, ValueError, TypeError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line ``warning: ...`` on stderr (no source line)."""
    print(f"warning: {_one_line(message)}", file=sys.stderr)
