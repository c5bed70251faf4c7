"""The natural-image-patch amortized-inference problem of the LISTA benchmarks.

12 x 12 patches of scikit-image's grey natural images, whitened together (ZCA,
:func:`lvebm.data.whiten`, unit variance per pixel): 100,000 training patches from
every image but ``camera`` and 2,000 held-out patches from ``camera``, so that no
held-out pixel was seen in training except through the 144 x 144 whitening covariance.
The fixed dictionary is ``SparseCoding(144, 256, LAM).fit(X_train, epochs=3)``
(unit-norm columns, oriented edges) and the reference codes are FISTA to convergence
(tol 1e-7, float64). Cached as ``.npz`` (no pickle).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import lvebm
from lvebm.data import GREY_IMAGES, natural_images, sample_patches, whiten

from ._mnist_problem import REF_MAX_ITER, REF_TOL, CodingProblem

PATCH, N_ATOMS, LAM = 12, 256, 1.0
N_TRAIN, N_TEST = 100_000, 2_000
TEST_IMAGE = "camera"


def patches_problem(*, cache: Path | None = None, seed: int = 0) -> CodingProblem:
    """Training/held-out patches, the dictionary and the reference codes (cached)."""
    file = None if cache is None else Path(cache) / f"patches_problem_seed{seed}.npz"
    if file is not None and file.exists():
        with np.load(file, allow_pickle=False) as f:
            return CodingProblem(*(f[k] for k in ("X_train", "X_test", "W", "Z_train", "Z_test")),
                                lam=LAM)  # fmt: skip
    train_names = tuple(n for n in GREY_IMAGES if n != TEST_IMAGE)
    X_train = sample_patches(natural_images(names=train_names), PATCH, N_TRAIN, seed=seed)
    X_test = sample_patches(natural_images(names=(TEST_IMAGE,)), PATCH, N_TEST, seed=seed + 1)
    X = whiten(np.concatenate([X_train, X_test]))
    X_train, X_test = X[:N_TRAIN], X[N_TRAIN:]
    sc = lvebm.SparseCoding(PATCH * PATCH, N_ATOMS, LAM, seed=seed)
    W = sc.fit(X_train, epochs=3, progress=False).dictionary.detach().numpy()

    def ref(rows):
        Z = lvebm.sparse_encode(rows.astype(np.float64), W.astype(np.float64), LAM, tol=REF_TOL,
                                max_iter=REF_MAX_ITER)  # fmt: skip
        return Z.astype(np.float32)

    prob = CodingProblem(X_train, X_test, W, ref(X_train), ref(X_test), lam=LAM)
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, X_train=X_train, X_test=X_test, W=W, Z_train=prob.Z_train,
                 Z_test=prob.Z_test)  # fmt: skip
    return prob
