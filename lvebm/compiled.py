"""Optional ``torch.compile`` of elementwise solver steps, with an eager fallback.

An iteration of FISTA is one or two operator products plus about ten elementwise
passes over the iterate (gradient step, shrinkage, momentum, restart test, norms).
On large iterates (a 512x512 image with 32 maps: 8.6M entries) those passes are
memory-bound and cost more than the products; ``torch.compile`` fuses them into two
kernels (7x faster on that problem, docs/conv.md). Compiling costs seconds (about 15 s
the first time in a process), so it is used only for iterates of at least
:data:`COMPILE_MIN_NUMEL` entries, for any size with ``LVEBM_COMPILE=always`` (worth it
when one process encodes many batches), never with ``LVEBM_COMPILE=0`` or when
compilation fails (then the eager function runs, with one warning).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["COMPILE_MIN_NUMEL", "compile_mode", "maybe_compiled"]

#: Iterates smaller than this run eagerly (compiling would cost more than it saves).
COMPILE_MIN_NUMEL = 1 << 22

_CACHE: dict[Callable, Callable] = {}
_BROKEN: set[Callable] = set()


def maybe_compiled(fn: Callable, numel: int, *, dynamic: bool = False) -> Callable:
    """``fn`` compiled once per process when ``numel`` is large enough, else ``fn``.

    ``dynamic=True`` compiles for varying sizes (a working set that shrinks as rows
    stop) instead of recompiling per shape. The compiled function falls back to ``fn``
    for good if compilation raises.
    """
    mode = os.environ.get("LVEBM_COMPILE", "1")
    if mode == "0" or (numel < COMPILE_MIN_NUMEL and mode != "always"):
        return fn
    if fn in _BROKEN:
        return fn
    if fn not in _CACHE:
        _CACHE[fn] = _with_fallback(fn, torch.compile(fn, dynamic=dynamic))
    return _CACHE[fn]


@contextmanager
def compile_mode(mode: str) -> Iterator[None]:
    """Run a block with ``LVEBM_COMPILE`` set to ``mode`` ("0", "1" or "always"), then
    restore the previous setting."""
    previous = os.environ.get("LVEBM_COMPILE")
    os.environ["LVEBM_COMPILE"] = mode
    try:
        yield
    finally:
        if previous is None:
            del os.environ["LVEBM_COMPILE"]
        else:
            os.environ["LVEBM_COMPILE"] = previous


def _with_fallback(fn: Callable, compiled: Callable) -> Callable:
    def run(*args, **kwargs):
        if fn in _BROKEN:
            return fn(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 (any compiler failure: run eagerly)
            _BROKEN.add(fn)
            warnings.warn(
                f"lvebm: torch.compile of {fn.__name__} failed ({type(exc).__name__}); "
                "running eagerly.",
                RuntimeWarning,
                stacklevel=2,
            )
            return fn(*args, **kwargs)

    return run
