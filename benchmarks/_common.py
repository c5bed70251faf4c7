"""Shared pieces of the benchmarks: thread limits, data, the digit dictionary, timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
MNIST_DEFAULT = REPO / ".." / "shared" / "data" / "mnist-8k.npz"


def limit_threads(n: int) -> None:
    """Use ``n`` threads in torch, OpenMP and every BLAS that numpy, sklearn or SPAMS load."""
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(n)


def machine(threads: int) -> str:
    """One line describing the CPU, the thread count and the library versions."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {threads} threads for every solver, CPU only; "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )


def mnist_path() -> Path | None:
    """The shared MNIST digits (env ``LVEBM_MNIST`` or ``../shared/data``), None if absent."""
    path = Path(os.environ.get("LVEBM_MNIST", MNIST_DEFAULT))
    return path if path.exists() else None


def load_digits(path: Path) -> np.ndarray:
    """The 8,000 digits as float32 rows in [0, 1], shape (8000, 784)."""
    images = np.load(path)["images"]
    return (images.reshape(len(images), -1) / 255.0).astype(np.float32)


def digit_dictionary(Y: np.ndarray, k: int = 256, *, epochs: int = 5, seed: int = 0):
    """A (d, k) unit-norm dictionary learned on ``Y`` (n, d) by MOD (Engan et al. 1999).

    Starts from ``k`` distinct random rows of ``Y`` (``seed``), then alternates lvebm
    lasso codes at lam = 0.1 and the least-squares dictionary ``W = Y^T Z (Z^T Z)^-1``,
    renormalised, for ``epochs`` rounds. Deterministic for a given ``seed``.
    """
    import lvebm

    rng = np.random.default_rng(seed)
    W = Y[rng.choice(len(Y), k, replace=False)].T.astype(np.float64)  # (d, k)
    W /= np.linalg.norm(W, axis=0)
    for _ in range(epochs):
        Z = lvebm.sparse_encode(Y, W.astype(np.float32), 0.1, method="vmfista")  # (n, k)
        Z = Z.astype(np.float64)
        W = np.linalg.solve(Z.T @ Z + 1e-6 * np.eye(k), Z.T @ Y).T
        W /= np.maximum(np.linalg.norm(W, axis=0), 1e-12)
    return W.astype(np.float32)


def lasso_objective(Y: np.ndarray, W: np.ndarray, Z: np.ndarray, lam: float) -> np.ndarray:
    """``0.5*||y - W z||^2 + lam*||z||_1`` per row, in float64."""
    Y, W, Z = (np.asarray(a, dtype=np.float64) for a in (Y, W, Z))
    R = Y - Z @ W.T
    return 0.5 * (R**2).sum(1) + lam * np.abs(Z).sum(1)


def timed_rounds(
    fns: dict[str, Callable[[], Any]], repeats: int, *, slow: float = 10.0
) -> dict[str, tuple[float, list[float], Any]]:
    """Median wall time of each ``fns[name]()`` over ``repeats`` runs after one warm-up run
    each, the runs interleaved: every round runs each solver once, so a drift of the
    machine's speed (here up to ±30% over minutes) falls on all of them alike.

    A solver whose warm-up took more than ``slow`` seconds is not repeated: its own time
    is reported. Returns ``name -> (median seconds, every timed run's seconds, output of
    its last run)``; progress goes to stderr.
    """
    outs: dict[str, Any] = {}
    warm: dict[str, float] = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        outs[name] = fn()
        warm[name] = time.perf_counter() - start
        print(f"  warm-up {name}: {warm[name]:.3f} s", file=sys.stderr)
    times = {name: [] if warm[name] <= slow else [warm[name]] for name in fns}
    fast = [name for name in fns if warm[name] <= slow]
    for _ in range(repeats):
        for name in fast:
            start = time.perf_counter()
            outs[name] = fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), times[name], outs[name]) for name in fns}
