"""Roofline of the lasso inner loop: achieved matmul FLOP/s as a fraction of torch.matmul's.

For n signals and k atoms each iteration of lvebm's Gram-form solvers does one
(n, k) x (k, k) product, 2 n k^2 flops; everything else is O(n k) elementwise work.
This runs ``vmfista`` (all rows kept active: ``tol`` tiny) and textbook ``fista`` for a
fixed number of iterations, counts only those matmul flops, and divides by the FLOP/s
that ``torch.matmul`` itself reaches at the same shapes (preallocated output, median of
repeats). 100% would mean the elementwise work is free.

    python -m benchmarks.roofline [--threads 2] [--n 8000] [--iters 40]

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ._common import limit_threads, machine


def matmul_flops(n: int, k: int, dtype: torch.dtype, repeats: int = 15) -> float:
    """FLOP/s of ``torch.matmul`` for (n, k) x (k, k) into a preallocated output."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, dtype=dtype, generator=gen)
    G = torch.randn(k, k, dtype=dtype, generator=gen)
    out = torch.empty(n, k, dtype=dtype)
    for _ in range(3):
        torch.matmul(z, G, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(z, G, out=out)
        times.append(time.perf_counter() - start)
    return 2 * n * k * k / statistics.median(times)


def loop_flops(n: int, k: int, dtype: torch.dtype, iters: int, method: str) -> float:
    """Matmul FLOP/s achieved inside ``iters`` iterations of a solver (median of 3 runs)."""
    from lvebm.compiled import compile_mode
    from lvebm.lasso import solve_lasso

    gen = torch.Generator().manual_seed(1)
    d = 784
    W = torch.randn(d, k, dtype=dtype, generator=gen)
    W /= torch.linalg.vector_norm(W, dim=0)
    y = torch.randn(n, d, dtype=dtype, generator=gen)
    lam = 0.1 * float((y @ W).abs().amax(1).mean())  # moderately sparse codes
    compiled = method.endswith("compiled")  # LVEBM_COMPILE=always: the fused update
    method = method.removesuffix("-compiled")
    with compile_mode("always" if compiled else "0"):
        solve_lasso(y, W, lam, method=method, max_iter=2, tol=1e-300)  # warm-up (compiles)
        # time only the iterations: subtract a 1-iteration run (setup: y W, W^T W, metric)
        times = {}
        for it in (1, iters + 1):
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                solve_lasso(y, W, lam, method=method, max_iter=it, tol=1e-300)
                runs.append(time.perf_counter() - start)
            times[it] = statistics.median(runs)
    return 2 * n * k * k * iters / max(times[iters + 1] - times[1], 1e-9)


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
    print(f"{'dtype':8s} {'k':>5s} {'matmul GF/s':>12s} {'vmfista GF/s':>13s} {'frac':>6s} "
          f"{'compiled':>9s} {'frac':>6s} {'fista GF/s':>11s} {'frac':>6s}")  # fmt: skip
    for dtype in (torch.float32, torch.float64):
        for k in args.atoms:
            peak = matmul_flops(args.n, k, dtype)
            vm = loop_flops(args.n, k, dtype, args.iters, "vmfista")
            vc = loop_flops(args.n, k, dtype, args.iters, "vmfista-compiled")
            tb = loop_flops(args.n, k, dtype, args.iters, "fista")
            row = {"dtype": str(dtype).removeprefix("torch."), "n": args.n, "k": k,
                   "matmul_gflops": peak / 1e9, "vmfista_gflops": vm / 1e9,
                   "vmfista_fraction": vm / peak, "vmfista_compiled_gflops": vc / 1e9,
                   "vmfista_compiled_fraction": vc / peak, "fista_gflops": tb / 1e9,
                   "fista_fraction": tb / peak}  # fmt: skip
            rows.append(row)
            print(f"{row['dtype']:8s} {k:5d} {peak / 1e9:12.1f} {vm / 1e9:13.1f} "
                  f"{vm / peak:6.0%} {vc / 1e9:9.1f} {vc / peak:6.0%} {tb / 1e9:11.1f} "
                  f"{tb / peak:6.0%}")  # fmt: skip
    print(json.dumps({"benchmark": "roofline", "threads": args.threads, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
