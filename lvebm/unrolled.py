"""Unrolled ISTA: the pure functions behind LISTA and its variants.

One layer of every variant is a thresholded affine map of the previous code
``z`` (n, k) and the signal ``y`` (n, d), starting from ``z = 0``:

* LISTA (Gregor & LeCun 2010): ``z <- eta_theta(y W_e^T + z S^T)``, with ``W_e`` (k, d)
  and ``S`` (k, k) free. ISTA on ``0.5*||y - D z||^2 + lam*||z||_1`` is the special case
  ``W_e = D^T/L``, ``S = I - D^T D/L``, ``theta = lam/L``.
* LISTA-CP, coupled weights (Chen et al. 2018): ``z <- eta_theta(z + (y - z D^T) W)``,
  ``W`` (d, k) free and the dictionary ``D`` (d, k) fixed, so ``S = I - W^T D``.
* ALISTA, analytic weights (Liu et al. 2019): ``z <- eta_theta(z + gamma (y - z D^T) W_a)``
  with ``W_a`` fixed by :func:`analytic_weights`; only ``gamma`` and ``theta`` are learned.

``eta`` is soft thresholding, or with support selection (Chen et al. 2018) soft
thresholding that lets the largest ``p`` percent of each code's entries through
unshrunk, ``p`` growing by ``support`` percent per layer up to ``support_max``.

Parameters of untied networks are stacked along a leading layer axis; a stack of
length 1 is shared by every layer (tied weights). These functions do not validate;
:class:`lvebm.LISTA` does.
"""

from __future__ import annotations

import math

import torch

from .ops import _shrink, gram_lipschitz
from .regularizers import L1
from .solvers import GramLeastSquares, fista

__all__ = [
    "support_shrink",
    "support_fraction",
    "lista_forward",
    "coupled_forward",
    "analytic_weights",
    "code_error",
    "fista_error_curve",
    "fista_equivalent",
]


def support_fraction(layer: int, support: float, support_max: float) -> float:
    """Percent of entries passed unshrunk at ``layer`` (1-based): ``min(layer*support, max)``."""
    return min(layer * support, support_max)


def support_shrink(v: torch.Tensor, theta: torch.Tensor, percent: float) -> torch.Tensor:
    """Soft thresholding of ``v`` (n, k) except for each row's ``percent`` % largest ``|v|``.

    ``percent == 0`` is plain :func:`lvebm.shrink`. The kept entries pass unchanged
    (support selection, Chen et al. 2018): the network trusts the entries it already
    believes to be in the support and stops biasing them towards zero.
    """
    z = _shrink(v, theta)
    n_keep = int(math.floor(percent / 100.0 * v.shape[1]))
    if n_keep <= 0:
        return z
    kth = torch.topk(v.abs(), n_keep, dim=1).values[:, -1:]  # (n, 1)
    return torch.where(v.abs() >= kth, v, z)


def _layer(stack: torch.Tensor, t: int) -> torch.Tensor:
    """Weights of layer ``t`` (0-based) from a stack; a stack of one is shared."""
    return stack[min(t, stack.shape[0] - 1)]


def lista_forward(
    y: torch.Tensor,
    W_e: torch.Tensor,
    S: torch.Tensor,
    theta: torch.Tensor,
    *,
    steps: int,
    support: float = 0.0,
    support_max: float = 0.0,
) -> torch.Tensor:
    """Codes (n, k) of ``y`` (n, d) after ``steps`` LISTA layers from ``z = 0``.

    ``W_e`` (T, k, d), ``S`` (T', k, k) and ``theta`` (T, k) hold the layers' weights
    (T = 1: tied). The first layer has no ``S`` term because ``z = 0``, so layer ``t``
    (0-based, t >= 1) uses ``S[t - 1]``. ``W_e y`` is computed once for all layers.
    """
    n, k = y.shape[0], W_e.shape[1]
    T = min(W_e.shape[0], steps)
    # Every layer's W_e y in one matrix product (one larger GEMM is faster than T small).
    B = (y @ W_e[:T].reshape(T * k, -1).T).reshape(n, T, k)  # (n, T, k)
    z = None
    for t in range(steps):
        v = B[:, min(t, T - 1)]  # (n, k)
        if z is not None:
            v = v + z @ _layer(S, t - 1).T
        z = support_shrink(v, _layer(theta, t), support_fraction(t + 1, support, support_max))
    return z


def coupled_forward(
    y: torch.Tensor,
    D: torch.Tensor,
    W: torch.Tensor,
    theta: torch.Tensor,
    gamma: torch.Tensor | None = None,
    *,
    steps: int,
    support: float = 0.0,
    support_max: float = 0.0,
) -> torch.Tensor:
    """Codes (n, k) after ``steps`` coupled-weight layers ``z <- eta(z + gamma_t (y - D z) W_t)``.

    ``D`` (d, k) is the dictionary, ``W`` (T, d, k) the layers' weights (T = 1: shared,
    as in ALISTA), ``theta`` (T, k) or (T, 1), ``gamma`` (T,) or None (no step size:
    LISTA-CP, where the scale lives in ``W``).
    """
    n, k = y.shape[0], D.shape[1]
    z = y.new_zeros(n, k)
    for t in range(steps):
        r = y - z @ D.T  # (n, d)
        step = r @ _layer(W, t)  # (n, k)
        if gamma is not None:
            step = _layer(gamma, t) * step
        pct = support_fraction(t + 1, support, support_max)
        z = support_shrink(z + step, _layer(theta, t), pct)
    return z


def analytic_weights(D: torch.Tensor) -> torch.Tensor:
    """ALISTA's analytic weight matrix ``W_a`` (d, k) for the dictionary ``D`` (d, k).

    Solves ``min_W ||W^T D||_F^2`` subject to ``diag(W^T D) = 1`` (Liu et al. 2019,
    the Frobenius form of their coherence problem). The problem splits over columns,
    ``min_w w^T M w`` s.t. ``d_i^T w = 1`` with ``M = D D^T``, whose solution is
    ``w_i = M^+ d_i / (d_i^T M^+ d_i)``. Computed in float64.
    """
    D64 = D.detach().to(torch.float64)
    P = torch.linalg.pinv(D64 @ D64.T, hermitian=True) @ D64  # (d, k)
    scale = (D64 * P).sum(0)  # d_i^T M^+ d_i, (k,)
    return (P / scale).to(D.dtype)


def code_error(z: torch.Tensor, z_star: torch.Tensor) -> float:
    """Relative code error ``sum ||z - z*||^2 / sum ||z*||^2`` over a set of codes (n, k)."""
    return float((z - z_star).pow(2).sum() / z_star.pow(2).sum().clamp_min(1e-300))


def fista_error_curve(
    y: torch.Tensor,
    D: torch.Tensor,
    lam: float,
    z_star: torch.Tensor,
    *,
    max_iter: int,
    accelerate: bool = True,
) -> list[float]:
    """:func:`code_error` of FISTA (ISTA if not ``accelerate``) after 1..max_iter iterations.

    One run of the library's solver with its defaults (restart on) from ``z = 0``,
    recording every iterate; entry ``t - 1`` is the error after ``t`` iterations.
    """
    f = GramLeastSquares.from_dictionary(y, D)
    errors: list[float] = []
    fista(f, L1(), y.new_zeros(y.shape[0], D.shape[1]), lam=lam, L=gram_lipschitz(D.T @ D),
          max_iter=max_iter, tol=0.0, accelerate=accelerate,
          callback=lambda t, z: errors.append(code_error(z, z_star)))  # fmt: skip
    # tol=0 stops only at an exact fixed point, after which the error stays put.
    return errors + errors[-1:] * (max_iter - len(errors))


def fista_equivalent(error: float, fista_errors: list[float]) -> float:
    """Iterations FISTA needs to reach ``error``: the first ``t`` with ``errors[t-1] <= error``.

    Returns ``inf`` when the curve never gets there.
    """
    for t, e in enumerate(fista_errors, start=1):
        if e <= error:
            return float(t)
    return math.inf
