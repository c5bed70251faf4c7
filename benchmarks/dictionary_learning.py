"""Dictionary learning side by side: lvebm vs SPAMS ``trainDL`` vs scikit-learn.

Problem (issue 7, problem 2; issue 3's quality target): the 8,000 shared MNIST digits
split 7,000 train / 1,000 held-out (seeded), 256 atoms, lambda = 0.1, mini-batches of
256. Every dictionary is scored by the mean lasso objective
``0.5*||y - W z||^2 + lam*||z||_1`` on the held-out digits, with the *same* converged
encoder for all (lvebm FISTA in float64, tol 1e-8). Reported:

* each method's held-out objective after 5 epochs' worth of mini-batches and its time;
* the time lvebm needs to reach SPAMS's 5-epoch held-out objective (checkpoints of
  the dictionary are taken every few steps; evaluation is outside the timed region).

Run: ``python -m benchmarks.dictionary_learning [--threads 2] [--skip-sklearn]``.
Needs the ``bench`` extra (spams-bin, scikit-learn) and ``$LVEBM_MNIST`` or
``../shared/data/mnist-8k.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

LAM, ATOMS, BATCH, EPOCHS = 0.1, 256, 256, 5


def set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def heldout_objective(W: np.ndarray, X_test: np.ndarray) -> float:
    """Mean lasso objective of held-out digits under ``W`` (d, k), converged encoder."""
    import lvebm

    W = np.asarray(W, dtype=np.float64)
    X = X_test.astype(np.float64)
    Z = lvebm.sparse_encode(X, W, LAM, tol=1e-8, max_iter=20_000)
    return float((0.5 * ((X - Z @ W.T) ** 2).sum(1) + LAM * np.abs(Z).sum(1)).mean())


def run_spams(X_train: np.ndarray, threads: int, seed: int) -> tuple[np.ndarray, float]:
    import spams

    Xf = np.asfortranarray(X_train.T.astype(np.float64))
    n_iter = EPOCHS * X_train.shape[0] // BATCH
    np.random.seed(seed)  # SPAMS draws its initial atoms from NumPy's global RNG
    start = time.perf_counter()
    D = spams.trainDL(Xf, K=ATOMS, lambda1=LAM, mode=2, batchsize=BATCH, iter=n_iter,
                      numThreads=threads, verbose=False)  # fmt: skip
    return np.asarray(D), time.perf_counter() - start


def run_sklearn(X_train: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.decomposition import MiniBatchDictionaryLearning

    est = MiniBatchDictionaryLearning(n_components=ATOMS, alpha=LAM, batch_size=BATCH,
                                      max_iter=EPOCHS, random_state=seed, tol=0,
                                      max_no_improvement=None)  # fmt: skip
    start = time.perf_counter()
    est.fit(X_train)
    return est.components_.T, time.perf_counter() - start


def run_lvebm(X_train: np.ndarray, seed: int, every: int = 4):
    """Fit 5 epochs; return final W, total time and (elapsed, W) snapshots."""
    import lvebm

    snaps: list[tuple[float, np.ndarray]] = []
    paused = [0.0]
    start = time.perf_counter()

    def snapshot(state) -> None:
        if state.step % every == 0:
            t0 = time.perf_counter()
            snaps.append((t0 - start - paused[0], state.model.dictionary.detach().numpy().copy()))
            paused[0] += time.perf_counter() - t0

    model = lvebm.SparseCoding(X_train.shape[1], ATOMS, LAM, seed=seed)
    model.fit(X_train, epochs=EPOCHS, batch_size=BATCH, seed=seed, progress=False,
              callback=snapshot)  # fmt: skip
    total = time.perf_counter() - start - paused[0]
    W = model.dictionary.detach().numpy()
    snaps.append((total, W))
    return W, total, snaps


def time_to_reach(snaps, target: float, X_test: np.ndarray) -> float | None:
    """First snapshot time whose held-out objective is <= target (bisection on time order)."""
    lo, hi = 0, len(snaps) - 1
    if heldout_objective(snaps[hi][1], X_test) > target:
        return None
    while lo < hi:  # held-out objective decreases along training, up to noise
        mid = (lo + hi) // 2
        if heldout_objective(snaps[mid][1], X_test) <= target:
            hi = mid
        else:
            lo = mid + 1
    return snaps[lo][0]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true", help="skip the slow peer")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    from benchmarks._mnist_problem import split_mnist

    X_train, X_test = split_mnist(seed=args.seed)
    rows = {}
    W_s, t_s = run_spams(X_train, args.threads, args.seed)
    rows["spams_trainDL"] = {"seconds": t_s, "heldout": heldout_objective(W_s, X_test)}
    W_l, t_l, snaps = run_lvebm(X_train, args.seed)
    rows["lvebm_online"] = {"seconds": t_l, "heldout": heldout_objective(W_l, X_test)}
    if not args.skip_sklearn:
        W_k, t_k = run_sklearn(X_train, args.seed)
        rows["sklearn_minibatch"] = {"seconds": t_k, "heldout": heldout_objective(W_k, X_test)}
    target = rows["spams_trainDL"]["heldout"]
    t_reach = time_to_reach(snaps, target, X_test)
    result = {
        "benchmark": "dictionary_learning",
        "threads": args.threads,
        "device": "cpu",
        "rows": rows,
        "target_spams_5_epoch_heldout": target,
        "lvebm_seconds_to_spams_objective": t_reach,
        "speedup_vs_spams": None if t_reach is None else t_s / t_reach,
        "heldout_gain_vs_spams_pct": 100 * (1 - rows["lvebm_online"]["heldout"] / target),
    }
    if "sklearn_minibatch" in rows and t_reach is not None:
        result["speedup_vs_sklearn"] = rows["sklearn_minibatch"]["seconds"] / t_reach
    print(f"{'method':<20}{'seconds (5 epochs)':>20}{'held-out objective':>20}")
    for name, row in rows.items():
        print(f"{name:<20}{row['seconds']:>20.2f}{row['heldout']:>20.4f}")
    print(f"lvebm reaches SPAMS's 5-epoch held-out objective {target:.4f} in "
          f"{t_reach if t_reach is None else round(t_reach, 2)} s")  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
