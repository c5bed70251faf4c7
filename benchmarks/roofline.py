"""Roofline of the lasso inner loop: achieved matmul FLOP/s as a fraction of torch.matmul's.

For n signals and k atoms each iteration of lvebm's Gram-form solvers does one
(n, k) x (k, k) product, 2 n k^2 flops; everything else is O(n k) elementwise work.
This runs ``vmfista``'s inner step (all rows kept active: "vmfista" with its numba
update, the CPU default; "torch" and "torch-compiled" with the torch update, eager and
fused by ``torch.compile``, the path a GPU takes) and textbook ``fista`` for a
fixed number of iterations, counts only those matmul flops, and divides by the FLOP/s
that ``torch.matmul`` itself reaches at the same shapes (preallocated output), measured
just before each run; the fraction is the median over 3 such pairs. 100% would mean the
elementwise work is free.

    python -m benchmarks.roofline [--threads 2] [--n 8000] [--iters 40]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from lvebm import _numba

from ._common import limit_threads, machine


def matmul_seconds(n: int, k: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """Median seconds of one ``torch.matmul`` (n, k) x (k, k) into a preallocated output."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, dtype=dtype, generator=gen)
    G = torch.randn(k, k, dtype=dtype, generator=gen)
    out = torch.empty(n, k, dtype=dtype)
    for _ in range(2):
        torch.matmul(z, G, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(z, G, out=out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_fraction(n: int, k: int, dtype: torch.dtype, iters: int, method: str, repeats: int = 3):
    """``(matmul GFLOP/s, loop GFLOP/s, fraction)``, medians over ``repeats`` pairs.

    Each pair times the matmul and then the solver's ``iters`` iterations back to back,
    so the fraction compares the two at the same moment (this machine's speed drifts by
    tens of percent over minutes; unpaired figures taken minutes apart do not compare).
    """
    from lvebm.compiled import compile_mode

    gen = torch.Generator().manual_seed(1)
    W = torch.randn(784, k, dtype=dtype, generator=gen)
    W /= torch.linalg.vector_norm(W, dim=0)
    y = torch.randn(n, 784, dtype=dtype, generator=gen)
    lam = 0.1 * float((y @ W).abs().amax(1).mean())  # moderately sparse codes
    compiled = method.endswith("compiled")  # LVEBM_COMPILE=always: torch.compile's update
    fused = method == "vmfista"  # the CPU default: the update as numba kernels
    method = method.removesuffix("-compiled").removesuffix("-torch")
    flops = 2 * n * k * k
    peaks, loops, fracs = [], [], []
    with compile_mode("always" if compiled else "0"):
        for _ in range(repeats):
            mm = matmul_seconds(n, k, dtype)
            if method == "vmfista":
                loop = _vmfista_steps_seconds(y, W, lam, iters, fused)
            else:
                loop = _solver_seconds(y, W, lam, iters, method)
            peaks.append(flops / mm)
            loops.append(flops * iters / max(loop, 1e-9))
            fracs.append(mm * iters / max(loop, 1e-9))
    med = statistics.median
    return med(peaks) / 1e9, med(loops) / 1e9, med(fracs)


def _vmfista_steps_seconds(y, W, lam: float, iters: int, fused: bool) -> float:
    """Seconds of ``iters`` vmfista steps on all rows, timed directly (no stopping
    checks: a stopping rule would let converged rows leave and inflate the figure),
    after 2 warm-up steps (which compile, the first time); ``fused``: numba kernels."""
    from lvebm import _numba
    from lvebm import fast_lasso as fl

    G = W.T @ W
    b, yy = y @ W, y.pow(2).sum(1)
    metric = fl.rank_one_metric(G)
    H = fl._forward_matrix(G, metric)
    consts = fl._update_consts(metric, lam, fused)
    s = fl._State.start(torch.zeros_like(b), H, b, yy, metric)
    with _numba.torch_threads():
        for _ in range(2):
            fl._step(s, H, consts, False, fused)
        start = time.perf_counter()
        for _ in range(iters):
            fl._step(s, H, consts, False, fused)
        return time.perf_counter() - start


def _solver_seconds(y, W, lam: float, iters: int, method: str) -> float:
    """Seconds of ``iters`` iterations of ``solve_lasso(method=...)`` with an unreachable
    ``tol``: a run of ``iters + 1`` iterations minus a run of 1 (its setup)."""
    from lvebm.lasso import solve_lasso

    solve_lasso(y, W, lam, method=method, max_iter=2, tol=1e-300)  # warm-up
    times = []
    for it in (1, iters + 1):
        start = time.perf_counter()
        solve_lasso(y, W, lam, method=method, max_iter=it, tol=1e-300)
        times.append(time.perf_counter() - start)
    return times[1] - times[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--atoms", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    print(machine(args.threads))
    rows = []
    names = ("vmfista", "vmfista-torch", "vmfista-torch-compiled", "fista")
    if not _numba.available():
        names = names[1:]
    print(f"{'dtype':8s} {'k':>5s} {'matmul GF/s':>12s} "
          + "".join(f"{n.removeprefix('vmfista-'):>15s} {'frac':>6s}" for n in names))  # fmt: skip
    for dtype in (torch.float32, torch.float64):
        for k in args.atoms:
            row = {"dtype": str(dtype).removeprefix("torch."), "n": args.n, "k": k}
            for name in names:
                peak, loop, frac = paired_fraction(args.n, k, dtype, args.iters, name)
                key = name.replace("-", "_")
                row[f"{key}_matmul_gflops"], row[f"{key}_gflops"] = peak, loop
                row[f"{key}_fraction"] = frac
            rows.append(row)
            keys = [n.replace("-", "_") for n in names]
            print(f"{row['dtype']:8s} {k:5d} {row[keys[0] + '_matmul_gflops']:12.1f} "
                  + "".join(f"{row[f'{m}_gflops']:15.1f} {row[f'{m}_fraction']:6.0%}"
                            for m in keys))  # fmt: skip
    print(json.dumps({"benchmark": "roofline", "threads": args.threads, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
