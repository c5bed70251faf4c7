"""Slow, obviously-correct references used by the tests."""

from __future__ import annotations

import numpy as np


def lasso_objective(Y: np.ndarray, W: np.ndarray, Z: np.ndarray, lam: float) -> np.ndarray:
    """0.5*||y - W z||^2 + lam*||z||_1 per row, float64."""
    R = Y - Z @ W.T
    return 0.5 * (R**2).sum(1) + lam * np.abs(Z).sum(1)


def sklearn_lasso(
    Y: np.ndarray, W: np.ndarray, lam: float, *, positive: bool = False
) -> np.ndarray:
    """scikit-learn's coordinate-descent lasso codes (n, k) in lvebm's convention.

    sklearn takes atoms as rows and minimises 0.5*||y - D^T z||^2 + alpha*||z||_1 per
    sample in ``sparse_encode(..., algorithm="lasso_cd")``: alpha == lam.
    """
    from sklearn.decomposition import sparse_encode

    return sparse_encode(
        Y, W.T, alpha=lam, algorithm="lasso_cd", max_iter=100_000, positive=positive
    )


def numpy_ista(Y: np.ndarray, W: np.ndarray, lam: float, n_iter: int) -> np.ndarray:
    """Plain ISTA written as a loop over samples, the textbook update."""
    L = np.linalg.eigvalsh(W.T @ W)[-1]
    Z = np.zeros((Y.shape[0], W.shape[1]))
    for i, y in enumerate(Y):
        z = np.zeros(W.shape[1])
        for _ in range(n_iter):
            v = z - W.T @ (W @ z - y) / L
            z = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)
        Z[i] = z
    return Z


def conv_matrix(K: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """The synthesis ``Y = sum_i K_i * Z_i`` written out as a dense matrix, by loops.

    K (m, c, s, s); maps (m, H+s-1, W+s-1) flattened in C order; images (c, H, W)
    flattened likewise: ``Y[c, h, w] = sum_{i,a,b} K[i, c, a, b] Z[i, h+s-1-a, w+s-1-b]``.
    """
    m, c, s, _ = K.shape
    H, W = image_shape
    Hz, Wz = H + s - 1, W + s - 1
    A = np.zeros((c * H * W, m * Hz * Wz))
    for ch in range(c):
        for h in range(H):
            for w in range(W):
                row = (ch * H + h) * W + w
                for i in range(m):
                    for a in range(s):
                        for b in range(s):
                            col = (i * Hz + h + s - 1 - a) * Wz + w + s - 1 - b
                            A[row, col] += K[i, ch, a, b]
    return A
