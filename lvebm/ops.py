"""Pure tensor functions shared by the solvers and models.

These are private-grade workers with a public face: ``shrink`` validates its
arguments and accepts NumPy arrays; the ``_``-prefixed variants do not validate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._backend import ArrayLike, as_tensor, output_converter
from ._checks import LvebmValueError, check_finite

__all__ = ["shrink", "nonneg_shrink", "normalize_columns", "power_iteration", "gram_lipschitz"]


def _shrink(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """Soft thresholding ``sign(x) * max(|x| - theta, 0)``; no validation."""
    if isinstance(theta, float):  # one fused kernel, bit-identical to the formula below
        return torch.nn.functional.softshrink(x, theta)
    return torch.sign(x) * torch.clamp(x.abs() - theta, min=0)


def _nonneg_shrink(x: torch.Tensor, theta: torch.Tensor | float) -> torch.Tensor:
    """``max(x - theta, 0)``: the prox of ``theta*||z||_1`` plus the indicator of ``z >= 0``."""
    return torch.clamp(x - theta, min=0)


def _public(fn: Callable[[torch.Tensor, torch.Tensor | float], torch.Tensor]):
    def wrapped(x: ArrayLike, theta: ArrayLike) -> ArrayLike:
        xt = as_tensor(x, "x")
        check_finite(xt, "x")
        th = as_tensor(theta, "theta", dtype=xt.dtype, device=xt.device)
        if th.numel() and (not bool(torch.isfinite(th).all()) or bool((th < 0).any())):
            raise LvebmValueError("`theta` must be finite and >= 0.")
        try:
            out = fn(xt, th)
        except RuntimeError as exc:
            raise LvebmValueError(
                f"`theta` of shape {tuple(th.shape)} does not broadcast against `x` of "
                f"shape {tuple(xt.shape)}."
            ) from exc
        return output_converter(x)(out)

    return wrapped


def shrink(x: ArrayLike, theta: ArrayLike) -> ArrayLike:
    """Soft thresholding, the proximal operator of ``theta * ||.||_1``.

    ``shrink(x, theta) = argmin_u 0.5*||u - x||^2 + theta*||u||_1 = sign(x) max(|x| - theta, 0)``.

    Parameters
    ----------
    x : array or tensor of any shape
    theta : float or array broadcastable to ``x``, >= 0

    Returns
    -------
    Same kind, shape and dtype family as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> shrink(np.array([-2.0, 0.5, 3.0]), 1.0)
    array([-1.,  0.,  2.])
    """
    return _public(_shrink)(x, theta)


def nonneg_shrink(x: ArrayLike, theta: ArrayLike) -> ArrayLike:
    """Non-negative soft thresholding ``max(x - theta, 0)`` (prox of the non-negative L1)."""
    return _public(_nonneg_shrink)(x, theta)


def normalize_columns(W: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Return ``W`` (d, k) with every column scaled to unit L2 norm (zero columns left zero)."""
    norms = torch.linalg.vector_norm(W, dim=0, keepdim=True)  # (1, k)
    return W / torch.clamp(norms, min=eps)


def gram_lipschitz(G: torch.Tensor) -> float:
    """Largest eigenvalue of a symmetric PSD Gram matrix ``G`` (k, k), computed exactly.

    Computed in float64 so that a float32 dictionary gets a safe step size.
    """
    return float(torch.linalg.eigvalsh(G.to(torch.float64))[-1])


def power_iteration(
    apply_normal: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    *,
    n_iter: int = 100,
    tol: float = 1e-7,
) -> float:
    """Largest eigenvalue of the PSD operator ``A^T A`` given as ``apply_normal(x) = A^T A x``.

    ``x0`` fixes the shape (and seeds the iteration; it should be random). Stops when
    the Rayleigh quotient changes by less than ``tol`` relative. A 1% safety margin is
    *not* added here; callers choose.
    """
    x = x0 / torch.linalg.vector_norm(x0)
    value = 0.0
    for _ in range(n_iter):
        y = apply_normal(x)
        new = float(torch.linalg.vector_norm(y))
        if new == 0.0:
            return 0.0
        x = y / new
        if abs(new - value) <= tol * new:
            return new
        value = new
    return value
