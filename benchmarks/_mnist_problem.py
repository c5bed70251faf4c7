"""The MNIST amortized-inference problem shared by the LISTA benchmarks.

The 8,000 shared digits are split by a seeded permutation into 7,000 training and
1,000 held-out digits (flattened, in [0, 1]). The fixed dictionary is the one the
issue prescribes: ``SparseCoding(784, 256, 0.1).fit(X_train, epochs=5)`` (unit-norm
columns), and the reference codes ``z*`` are FISTA run to convergence (tol 1e-7).
Results are cached as ``.npz`` files (no pickle) in ``cache`` so that several
benchmarks reuse one dictionary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lvebm
from lvebm.data import load_mnist, shift_images
from lvebm.models.lista import deformed_training_set

N_TEST = 1000
LAM = 0.1
N_ATOMS = 256
#: FISTA tolerance of the reference codes (relative change per iteration).
REF_TOL = 1e-7
REF_MAX_ITER = 20_000


@dataclass
class CodingProblem:
    X_train: np.ndarray  # (7000, 784) float32
    X_test: np.ndarray  # (1000, 784) float32
    W: np.ndarray  # (784, 256) float32, unit-norm columns
    Z_train: np.ndarray  # (7000, 256) float32, FISTA to convergence
    Z_test: np.ndarray  # (1000, 256)
    lam: float = LAM


def split_mnist(path=None, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, _ = load_mnist(path)
    X = images.reshape(images.shape[0], -1).astype(np.float32)
    order = np.random.default_rng(seed).permutation(X.shape[0])
    return X[order[N_TEST:]], X[order[:N_TEST]]


def mnist_problem(path=None, *, cache: Path | None = None, seed: int = 0) -> CodingProblem:
    """The split, the dictionary and the reference codes (computed once, then cached)."""
    X_train, X_test = split_mnist(path, seed=seed)
    file = None if cache is None else Path(cache) / f"mnist_problem_seed{seed}.npz"
    if file is not None and file.exists():
        with np.load(file, allow_pickle=False) as f:
            return CodingProblem(X_train, X_test, f["W"], f["Z_train"], f["Z_test"])
    sc = lvebm.SparseCoding(784, N_ATOMS, LAM, seed=seed).fit(X_train, epochs=5, progress=False)
    W = sc.dictionary.detach().numpy()
    W64 = W.astype(np.float64)

    def ref(X):
        Z = lvebm.sparse_encode(X.astype(np.float64), W64, LAM, tol=REF_TOL,
                                max_iter=REF_MAX_ITER)  # fmt: skip
        return Z.astype(np.float32)

    prob = CodingProblem(X_train, X_test, W, ref(X_train), ref(X_test))
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, W=prob.W, Z_train=prob.Z_train, Z_test=prob.Z_test)
    return prob


#: One-pixel shifts (dy, dx) used to augment the training digits.
SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
#: FISTA settings of the augmented copies' target codes.
AUG_TOL, AUG_MAX_ITER = 1e-5, 600


def shifted_training_set(p: CodingProblem, *, cache: Path | None = None):
    """Training digits plus their four one-pixel shifts, with FISTA target codes.

    Returns ``(X, Z)`` of shapes (5 * 7000, 784) and (5 * 7000, 256): the originals
    first, then one block per shift in ``SHIFTS``. The shifted copies' codes are FISTA
    to ``AUG_TOL`` (float32), cached in ``cache``.
    """
    file = None if cache is None else Path(cache) / "mnist_shifted_codes.npz"
    X_shift = shift_images(p.X_train.reshape(-1, 28, 28), SHIFTS).reshape(-1, 784)
    if file is not None and file.exists():
        with np.load(file, allow_pickle=False) as f:
            Z_shift = f["Z"]
    else:
        blocks = np.split(X_shift, len(SHIFTS))
        Z_shift = np.concatenate([
            lvebm.sparse_encode(B, p.W, p.lam, tol=AUG_TOL, max_iter=AUG_MAX_ITER) for B in blocks
        ])  # fmt: skip
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            np.savez(file, Z=Z_shift)
    return np.concatenate([p.X_train, X_shift]), np.concatenate([p.Z_train, Z_shift])


def affine_training_set(p: CodingProblem, views: int, *, cache: Path | None = None, seed: int = 1):
    """Training digits plus ``views`` random affine copies of each, with FISTA codes.

    :func:`lvebm.models.lista.deformed_training_set` (the default of ``lvebm train
    lista``); the originals keep their reference codes. Cached in ``cache``.
    """
    file = None if cache is None else Path(cache) / f"mnist_affine{views}_seed{seed}.npz"
    if file is not None and file.exists():
        with np.load(file, allow_pickle=False) as f:
            return f["X"], f["Z"]
    X, Z = deformed_training_set(p.X_train, (28, 28), p.W, p.lam, views=views,
                                 codes=p.Z_train, seed=seed)  # fmt: skip
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(file, X=X, Z=Z)
    return X, Z
