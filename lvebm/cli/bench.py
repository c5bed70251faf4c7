"""``lvebm bench NAME [ARGS...]``: run one of the side-by-side benchmark scripts.

The scripts live in ``benchmarks/`` of a source checkout (they are not installed with
the package; run from the checkout's root, or with it on ``PYTHONPATH``), and their
peers come from the ``bench`` extra. ``lvebm bench NAME ARGS`` is
``python -m benchmarks.NAME ARGS``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil

from .._checks import LvebmError


def register(train, top) -> None:
    p = top.add_parser(
        "bench", help="run a side-by-side benchmark of benchmarks/ (from a source checkout)"
    )
    p.add_argument("name", help="benchmark script, e.g. lasso_encode, roofline, conv_sporco")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(run=run)


def available() -> list[str]:
    """Names of the benchmark scripts importable from here (empty outside a checkout)."""
    spec = importlib.util.find_spec("benchmarks")
    if spec is None or not spec.submodule_search_locations:
        return []
    found = pkgutil.iter_modules(spec.submodule_search_locations)
    return sorted(m.name for m in found if not m.name.startswith("_"))


def run(args) -> None:
    names = available()
    if not names:
        raise LvebmError(
            "no benchmarks/ package here: run `lvebm bench` from the root of a source "
            "checkout (the scripts are not installed with the package)"
        )
    if args.name not in names:
        raise LvebmError(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    try:
        status = importlib.import_module(f"benchmarks.{args.name}").main(args.args)
    except SystemExit as exc:  # the script's own parser rejected its arguments
        status = exc.code if isinstance(exc.code, int) else 2
    if status:
        raise LvebmError(f"benchmark {args.name} exited with status {status}")
