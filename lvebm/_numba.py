"""numba, when it is installed: whether to use it, and running its kernels on torch's
threads. ``LVEBM_NUMBA=0`` in the environment turns the compiled CPU kernels off (the
torch code paths run instead, and ``sparse_encode(method="cd")`` is refused)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["available", "torch_threads"]


def available() -> bool:
    """Whether the compiled CPU kernels may run: numba is importable and
    ``LVEBM_NUMBA`` is not "0"."""
    if os.environ.get("LVEBM_NUMBA", "1") == "0":
        return False
    return importlib.util.find_spec("numba") is not None


@contextmanager
def torch_threads() -> Iterator[None]:
    """Run a block with numba's thread count set to ``torch.get_num_threads()`` (capped
    by numba's pool), then restore numba's previous count."""
    import numba

    threads = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
