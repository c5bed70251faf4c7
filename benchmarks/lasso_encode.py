"""Batched lasso encode of 8,000 MNIST digits: lvebm against scikit-learn and SPAMS.

Problem: the 8,000 digits of ``mnist-8k.npz`` (784-d, pixels / 255, float32) on a
256-atom unit-norm dictionary learned by 5 MOD epochs (see ``_common.digit_dictionary``),
``lam`` 0.1 and 0.5. Every solver minimises, per digit, the same objective

    0.5 * ||y - W z||^2 + lam * ||z||_1

(sklearn ``sparse_encode(alpha=lam)`` and SPAMS ``lambda1=lam`` use this convention;
objectives are all recomputed here in float64). A solver "reaches" the target when its
mean objective is within ``--target`` (1e-4) relative of the best mean objective any
solver attains. lvebm runs with its default stopping rule; the exact solvers (LARS)
with theirs; SPAMS FISTA gets ``tol=1e-6`` and at most 200 iterations. lvebm's
textbook FISTA appears in the curves only (``--plot``).

    python -m benchmarks.lasso_encode [--threads 2] [--repeats 5] [--plot PNG] [--device cuda]

Prints one table per lam and one JSON line with every figure and ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np

from ._common import (
    digit_dictionary,
    lasso_objective,
    limit_threads,
    load_digits,
    machine,
    mnist_path,
    timed_rounds,
)

LAMS = (0.1, 0.5)


def solvers(
    Y: np.ndarray,
    W: np.ndarray,
    lam: float,
    threads: int,
    skip: tuple[str, ...] = (),
    device: str = "cpu",
) -> dict[str, Callable]:
    """name -> zero-argument function returning codes (n, k) as a NumPy array; lvebm's
    rows run on ``device`` (the copy back to the host is part of their time), peers on
    the CPU, only if installed; minus those whose name contains one of ``skip``."""
    import lvebm

    out: dict[str, Callable] = {
        "lvebm (default)": lambda: lvebm.sparse_encode(Y, W, lam, device=device),
        "lvebm vmfista": lambda: lvebm.sparse_encode(Y, W, lam, method="vmfista", device=device),
    }
    if device == "cpu":  # LARS, CD and the numba update are CPU code (a GPU: the torch update)
        out["lvebm lars"] = lambda: lvebm.sparse_encode(Y, W, lam, method="lars")
        out["lvebm cd"] = lambda: lvebm.sparse_encode(Y, W, lam, method="cd")
        out["lvebm vmfista (torch update)"] = lambda: _torch_update_encode(Y, W, lam, "0")
        out["lvebm vmfista (torch update, compiled)"] = lambda: _torch_update_encode(
            Y, W, lam, "always"
        )
    try:
        from sklearn.decomposition import sparse_encode
    except ImportError:  # the `bench` extra is not installed
        sparse_encode = None
    if sparse_encode is not None:
        for algo in ("lasso_lars", "lasso_cd"):
            out[f"sklearn {algo}"] = lambda a=algo: sparse_encode(
                Y, W.T, algorithm=a, alpha=lam, n_jobs=None
            )
    try:
        import spams
    except ImportError:
        spams = None
    if spams is not None:
        X, D = np.asfortranarray(Y.T), np.asfortranarray(W)
        Z0 = np.zeros((W.shape[1], Y.shape[0]), dtype=Y.dtype, order="F")
        out["spams lasso (LARS)"] = lambda: (
            spams.lasso(X, D=D, lambda1=lam, mode=2, numThreads=threads).toarray().T
        )
        # float32 LARS stops ~1e-4 short of the optimum at small lam; float64 is exact.
        X64, D64 = np.asfortranarray(X, dtype=np.float64), np.asfortranarray(D, dtype=np.float64)
        out["spams lasso (LARS, float64)"] = lambda: (
            spams.lasso(X64, D=D64, lambda1=lam, mode=2, numThreads=threads).toarray().T
        )
        out["spams fistaFlat"] = lambda: spams.fistaFlat(
            X, D, Z0, loss="square", regul="l1", lambda1=lam, max_it=200, tol=1e-6,
            it0=10, numThreads=threads, intercept=False,
        ).T  # fmt: skip
    return {name: fn for name, fn in out.items() if not any(s in name for s in skip)}


def _device_name(device: str) -> str:
    """``device`` with the GPU's name when it is a CUDA device."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def _torch_update_encode(Y: np.ndarray, W: np.ndarray, lam: float, compile: str) -> np.ndarray:
    """lvebm's vmfista with the torch update instead of the numba kernels (the path a GPU
    takes; ``LVEBM_NUMBA=0``), eager (``compile="0"``) or fused by ``torch.compile``
    (``"always"``; its one-time compilation runs before the timed runs)."""
    from unittest import mock

    import lvebm
    from lvebm.compiled import compile_mode

    with mock.patch.dict(os.environ, {"LVEBM_NUMBA": "0"}), compile_mode(compile):
        return lvebm.sparse_encode(Y, W, lam, method="vmfista")


def _load_kernels(Y: np.ndarray, W: np.ndarray, lam: float, device: str) -> None:
    """Encode a few rows by every lvebm method first: numba compiles its kernels (or
    loads them from its cache) on first use, which must not count as a warm-up run (a
    warm-up over ``timed_rounds``'s 10 s would be reported as the solver's time)."""
    import lvebm

    for method in ("auto", "lars", "cd", "vmfista"):
        if device == "cpu" or method in ("auto", "vmfista"):
            lvebm.sparse_encode(Y, W, lam, method=method, device=device)


def run_lam(Y, W, lam, threads, repeats, target, skip=(), device="cpu") -> dict:
    """Time every solver at one lam; return their times, objectives and suboptimalities."""
    fns = solvers(Y, W, lam, threads, skip, device)
    _load_kernels(Y[:64], W, lam, device)
    for name, fn in fns.items():
        if "compiled" in name:
            fn()  # compiles (seconds); the timed warm-up must not be this run
    rows = {}
    for name, (seconds, runs, Z) in timed_rounds(fns, repeats).items():
        objective = float(lasso_objective(Y, W, Z, lam).mean())
        rows[name] = {"seconds": seconds, "runs": runs, "objective": objective}
        print(f"  {name}: {seconds:.3f} s (runs {min(runs):.3f}-{max(runs):.3f})", file=sys.stderr)
    best = min(r["objective"] for r in rows.values())
    for r in rows.values():
        r["rel_subopt"] = (r["objective"] - best) / best
        r["reached"] = r["rel_subopt"] <= target
    ours = rows["lvebm (default)"]["seconds"]
    ratios = {}
    for family in ("sklearn", "spams"):
        times = [r["seconds"] for n, r in rows.items() if n.startswith(family) and r["reached"]]
        if times:
            ratios[f"fastest_{family}_over_lvebm"] = min(times) / ours
            if "lvebm vmfista" in rows:
                vm = rows["lvebm vmfista"]["seconds"]
                ratios[f"fastest_{family}_over_lvebm_vmfista"] = min(times) / vm
    return {"lam": lam, "best_objective": best, "solvers": rows, "ratios": ratios}


def print_table(res: dict) -> None:
    print(f"\nlam = {res['lam']}  (best mean objective {res['best_objective']:.6f})")
    print(f"{'solver':38s} {'time [s]':>9s} {'mean objective':>15s} {'rel. subopt':>12s}  reached")
    for name, r in res["solvers"].items():
        print(
            f"{name:38s} {r['seconds']:9.3f} {r['objective']:15.6f} {r['rel_subopt']:12.2e}  "
            f"{'yes' if r['reached'] else 'NO'}"
        )
    for key, value in res["ratios"].items():
        print(f"{key}: {value:.2f}x")


def curves(Y, W, lam, best) -> dict[str, list[tuple[float, float]]]:
    """(seconds, relative suboptimality) after a fixed number of iterations, lvebm only."""
    import lvebm

    grids = {"vmfista": (10, 20, 40, 60, 100), "fista": (25, 50, 100, 200)}
    out = {}
    for method, grid in grids.items():
        pts = []
        for it in grid:
            start = time.perf_counter()
            Z = lvebm.sparse_encode(Y, W, lam, method=method, max_iter=it, tol=1e-300)
            seconds = time.perf_counter() - start
            pts.append((seconds, float(lasso_objective(Y, W, Z, lam).mean() - best) / best))
        out[f"lvebm {method}"] = pts
    # CD stops on its duality gap: its curve runs over the gap tolerance instead
    pts = []
    for tol in (1e-1, 1e-2, 1e-3, 1e-5):
        start = time.perf_counter()
        Z = lvebm.sparse_encode(Y, W, lam, method="cd", tol=tol)
        seconds = time.perf_counter() - start
        pts.append((seconds, float(lasso_objective(Y, W, Z, lam).mean() - best) / best))
    out["lvebm cd (gap tol 1e-1 .. 1e-5)"] = pts
    return out


def plot(results: list[dict], all_curves: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2))
    for ax, res, crv in zip(np.atleast_1d(axes), results, all_curves, strict=True):
        floor = 1e-9
        for name, pts in crv.items():
            t, s = zip(*pts, strict=True)
            label = name if "cd" in name else f"{name} (fixed iterations)"
            ax.loglog(t, np.maximum(s, floor), "o-", ms=3, label=label)
        for name, r in res["solvers"].items():
            ax.loglog(r["seconds"], max(r["rel_subopt"], floor), "*", ms=11, label=name)
        ax.axhline(1e-4, color="gray", ls="--", lw=0.8)
        ax.set_xlabel("wall time [s]")
        ax.set_ylabel("relative suboptimality of mean objective")
        ax.set_title(f"MNIST 8k x 256 atoms, lam = {res['lam']}")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", type=float, default=1e-4)
    parser.add_argument("--plot", default=None, help="write the time-to-suboptimality PNG")
    parser.add_argument("--lams", type=float, nargs="+", default=list(LAMS))
    parser.add_argument("--skip", nargs="*", default=[], help="skip solvers containing these")
    parser.add_argument("--device", default="cpu", help="where lvebm runs (peers: CPU)")
    args = parser.parse_args(argv)
    path = mnist_path()
    if path is None:
        print("skipped: MNIST digits not found (set LVEBM_MNIST)")
        return 0
    limit_threads(args.threads)
    # scikit-learn warns per sample (lars early stopping, cd not converged to its own
    # tol); the table reports every solver's suboptimality instead.
    warnings.filterwarnings("ignore", module="sklearn")
    print(machine(args.threads))
    Y = load_digits(path)
    W = digit_dictionary(Y)
    evals = np.linalg.eigvalsh(W.astype(np.float64).T @ W.astype(np.float64))
    print(f"data {Y.shape} float32, dictionary {W.shape}, Gram top eigenvalues {evals[-3:]}")
    results, all_curves = [], []
    for lam in args.lams:
        res = run_lam(
            Y, W, lam, args.threads, args.repeats, args.target, tuple(args.skip), args.device
        )
        print_table(res)
        results.append(res)
        if args.plot:
            all_curves.append(curves(Y, W, lam, res["best_objective"]))
    if args.plot:
        plot(results, all_curves, args.plot)
    print(json.dumps({
        "benchmark": "lasso_encode", "threads": args.threads, "device": _device_name(args.device),
        "results": results,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
