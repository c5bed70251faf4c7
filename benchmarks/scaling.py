"""Encode time and peak memory as the number of patches and of atoms grow.

Data: 8x8 patches (64-d) cut at random places from scikit-image's bundled ``camera``
image, each centred and scaled to unit norm; the dictionary is k distinct random
patches of the same kind (unit-norm columns); ``lam`` 0.1; lvebm's default solver,
float32. Each point runs in a fresh subprocess so that its peak resident memory
(``ru_maxrss``) is its own; a first encode of 64 patches loads numba's kernels and is
timed apart ("first call"); "extra" is the peak minus the resident size just before
the encode (data already built, kernels loaded), i.e. the codes (n, k) plus the solver's
working set, which ``sparse_encode`` bounds by solving at most ``CHUNK_ELEMENTS`` code
entries at once.

    python -m benchmarks.scaling [--threads 2] [--max-n 262144] [--k-sweep-n 16384]

Prints two tables (n sweep at k = 256, k sweep at fixed n) and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from ._common import limit_threads, machine


def patches(n: int, seed: int) -> np.ndarray:
    """``n`` centred unit-norm 8x8 patches of the camera image, float32 (n, 64)."""
    from skimage.data import camera

    img = camera().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    i = rng.integers(0, img.shape[0] - 8, n)
    j = rng.integers(0, img.shape[1] - 8, n)
    P = np.stack([img[i + a, j + b] for a in range(8) for b in range(8)], axis=1)  # (n, 64)
    P -= P.mean(1, keepdims=True)
    return P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-3)


def one_point(n: int, k: int, threads: int) -> dict:
    """Encode n patches on k atoms in this process; time and memory of the encode."""
    import lvebm
    from lvebm.lasso import chunk_rows

    limit_threads(threads)
    Y = patches(n, seed=1)
    W = patches(k, seed=2).T.copy()  # (64, k), unit-norm atoms
    # the first call of a process loads numba and its cached kernels: timed apart
    start = time.perf_counter()
    lvebm.sparse_encode(patches(64, seed=3), W, 0.1)
    first_call = time.perf_counter() - start
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    start = time.perf_counter()
    Z = lvebm.sparse_encode(Y, W, 0.1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nnz = float((Z != 0).sum(1).mean())
    return {"n": n, "k": k, "seconds": seconds, "us_per_row": 1e6 * seconds / n,
            "peak_mib": peak, "extra_mib": peak - before, "codes_mib": Z.nbytes / 2**20,
            "chunk_rows": chunk_rows(k), "mean_nonzeros": nnz,
            "first_call_64_rows_s": first_call}  # fmt: skip


def run_point(n: int, k: int, threads: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--one", str(n), str(k),
           "--threads", str(threads)]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def show(rows: list[dict]) -> None:
    print(f"{'n':>8s} {'k':>5s} {'time [s]':>9s} {'us/row':>8s} {'peak MiB':>9s} "
          f"{'extra MiB':>10s} {'codes MiB':>10s} {'chunk':>6s} {'nnz':>6s} "
          f"{'first call [s]':>15s}")  # fmt: skip
    for r in rows:
        print(f"{r['n']:8d} {r['k']:5d} {r['seconds']:9.2f} {r['us_per_row']:8.1f} "
              f"{r['peak_mib']:9.0f} {r['extra_mib']:10.0f} {r['codes_mib']:10.0f} "
              f"{r['chunk_rows']:6d} {r['mean_nonzeros']:6.1f} "
              f"{r['first_call_64_rows_s']:15.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-n", type=int, default=262144)
    parser.add_argument("--k-sweep-n", type=int, default=16384)
    parser.add_argument("--one", type=int, nargs=2, metavar=("N", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_point(*args.one, args.threads)))
        return 0
    print(machine(args.threads))
    sizes = [n for n in (1024, 4096, 16384, 65536, 262144, 1048576) if n <= args.max_n]
    by_n = [run_point(n, 256, args.threads) for n in sizes]
    print("\nn sweep, k = 256")
    show(by_n)
    by_k = [run_point(args.k_sweep_n, k, args.threads) for k in (64, 128, 256, 512, 1024)]
    print(f"\nk sweep, n = {args.k_sweep_n}")
    show(by_k)
    print(json.dumps({"benchmark": "scaling", "threads": args.threads, "by_n": by_n,
                      "by_k": by_k}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
