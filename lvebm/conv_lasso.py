"""Convolutional lasso: batched FISTA on ``0.5*||Y - sum_i K_i * Z_i||^2 + lam*sum_i ||Z_i||_1``.

Kernels ``K`` (m, c, s, s), images ``Y`` (n, c, H, W), maps ``Z`` (n, m, H+s-1, W+s-1);
the synthesis and its boundary are those of :class:`lvebm.operators.Conv2d`.
"""

from __future__ import annotations

from typing import Any

import torch

from ._backend import ArrayLike, as_tensor, output_converter, resolve_device
from ._checks import (
    check_choice,
    check_finite,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
    check_shape,
    fail,
)
from .operators import Conv2d
from .regularizers import L1, NonNegL1
from .solvers import LeastSquares, SolveResult, WithPrediction, fista

__all__ = ["conv_sparse_encode", "solve_conv", "solve_conv_lasso", "conv_objective", "map_shape"]

#: Below this many pixels per image the direct ``conv2d`` beats the FFT on CPU (measured).
FFT_MIN_PIXELS = 32 * 32
#: The ``method`` values of the convolutional solvers (see :func:`conv_operator`).
CONV_METHODS = ("auto", "fft", "direct", "mixed")
#: The ``solver`` values of :func:`conv_sparse_encode`.
CONV_SOLVERS = ("auto", "fista", "workingset")
#: From this many pixels per image ``solver="auto"`` picks the working set on the CPU.
WORKINGSET_MIN_PIXELS = 128 * 128
#: Default iteration budgets: FISTA iterations, or inner iterations of the working set.
DEFAULT_MAX_ITER = {"fista": 500, "workingset": 5_000}


def map_shape(image_shape: tuple[int, int], kernel_size: int) -> tuple[int, int]:
    """Spatial size ``(H+s-1, W+s-1)`` of the maps of an ``(H, W)`` image."""
    return image_shape[0] + kernel_size - 1, image_shape[1] + kernel_size - 1


def conv_operator(K: torch.Tensor, image_shape: tuple[int, int], method: str = "auto") -> Conv2d:
    """The synthesis operator of ``K`` on images of ``image_shape``; ``"auto"`` picks the form:
    "direct" for small images or kernels, else "mixed" (FFT synthesis, ``conv2d``
    adjoint) for float32 on CPU and "fft" otherwise (float64 ``conv2d`` is slow on CPU;
    docs/conv.md has the timings)."""
    if method == "auto":
        big = image_shape[0] * image_shape[1] >= FFT_MIN_PIXELS and K.shape[-1] >= 4
        cpu32 = K.device.type == "cpu" and K.dtype == torch.float32
        method = ("mixed" if cpu32 else "fft") if big else "direct"
    return Conv2d(K, image_shape, method=method)


def conv_objective(y: torch.Tensor, K: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """Energy ``0.5*||y - sum_i K_i * z_i||^2 + lam*||z||_1`` per image, (n,); no validation."""
    r = conv_operator(K, tuple(y.shape[-2:]), "direct").forward(z) - y
    return 0.5 * r.pow(2).flatten(1).sum(1) + lam * z.abs().flatten(1).sum(1)


def solve_conv_lasso(
    y: torch.Tensor,
    K: torch.Tensor,
    lam: float,
    *,
    max_iter: int = 500,
    tol: float = 1e-4,
    z0: torch.Tensor | None = None,
    nonneg: bool = False,
    method: str = "auto",
    L: float | None = None,
    prediction: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> SolveResult:
    """Tensor-level convolutional lasso by FISTA with restart; does not validate.

    y (n, c, H, W), K (m, c, s, s), z0 (n, m, H+s-1, W+s-1) or None. ``L`` defaults to
    :meth:`Conv2d.lipschitz` (the spectral bound, a safe step). With ``prediction``
    ``p`` (maps' shape) and ``alpha > 0`` the energy gains ``0.5*alpha*||z - p||^2``
    (convolutional predictive sparse decomposition), ``L`` grows by ``alpha`` and the
    iterations start from ``p`` unless ``z0`` is given.
    """
    n, c, H, W = y.shape
    m, s = K.shape[0], K.shape[-1]
    op = conv_operator(K, (H, W), method)
    if L is None:
        L = op.lipschitz()
    L = max(L, torch.finfo(y.dtype).tiny)
    f = LeastSquares(y, op)
    if prediction is not None and alpha > 0:
        f, L = WithPrediction(f, prediction, alpha), L + alpha
        z0 = prediction if z0 is None else z0
    if z0 is None:
        z0 = y.new_zeros((n, m) + map_shape((H, W), s))
    reg = NonNegL1() if nonneg else L1()
    return fista(f, reg, z0, lam=lam, L=L, max_iter=max_iter, tol=tol)


def conv_sparse_encode(
    Y: ArrayLike,
    K: ArrayLike,
    lam: float,
    *,
    solver: str = "auto",
    max_iter: int | None = None,
    tol: float = 1e-4,
    z0: ArrayLike | None = None,
    nonneg: bool = False,
    method: str = "auto",
    device: Any = None,
) -> ArrayLike:
    """Sparse feature maps of images under convolution kernels (batched convolutional lasso).

    Minimises, independently for every image ``y`` of ``Y``::

        0.5 * ||y - sum_i K_i * z_i||^2 + lam * sum_i ||z_i||_1

    by FISTA with adaptive restart and step ``1/L`` (``L`` the spectral bound of
    :meth:`lvebm.operators.Conv2d.lipschitz`), or by the working-set method of
    :mod:`lvebm.conv_workingset` (restricted FISTA on the support and its likely
    additions, certified by the duality gap), which is much faster on large images
    whose optimal maps are sparse.

    Parameters
    ----------
    Y : array or tensor of shape (n, c, H, W)
    K : array or tensor of shape (m, c, s, s)
        Kernels (unit norm over (c, s, s) is conventional, not required).
    lam : float >= 0
    solver : {"auto", "fista", "workingset"}
        "auto" takes the working set on the CPU for images of at least
        :data:`WORKINGSET_MIN_PIXELS` pixels (batched FISTA otherwise).
    max_iter : int, optional
        FISTA iterations (default 500), or inner iterations of the working-set solver
        summed over its working sets (default 5,000).
    tol : float > 0
        FISTA: stop when every image's relative change ``||z_t - z_{t-1}|| / ||z_t||`` <=
        tol. Working set: stop when the duality gap is <= tol times the objective (so the
        relative suboptimality is certified to be <= tol).
    z0 : array of shape (n, m, H+s-1, W+s-1), optional
        Warm start.
    nonneg : bool
        Constrain maps to be non-negative.
    method : {"auto", "fft", "direct", "mixed"}
        How FISTA's convolutions are computed; the result is the same up to round-off.
    device : where to compute (default: ``Y``'s device).

    Returns
    -------
    Z : same kind as ``Y``, shape (n, m, H+s-1, W+s-1).

    Notes
    -----
    The maps extend ``s-1`` pixels beyond the image on every side (see
    :class:`lvebm.operators.Conv2d`); SPORCO's ``ConvBPDN`` uses (H, W) maps and a
    circular boundary instead, so its optimum differs near the border.

    Examples
    --------
    >>> import numpy as np
    >>> K = np.zeros((1, 1, 3, 3)); K[0, 0, 1, 1] = 1.0
    >>> conv_sparse_encode(np.full((1, 1, 2, 2), 3.0), K, 1.0).shape
    (1, 1, 4, 4)
    """
    dev = resolve_device(device, Y.device if isinstance(Y, torch.Tensor) else None)
    y = as_tensor(Y, "Y", device=dev)
    Kt = as_tensor(K, "K", device=dev, dtype=y.dtype)
    check_ndim(y, "Y", 4, "(n, c, H, W)")
    check_ndim(Kt, "K", 4, "(m, c, s, s)")
    check_nonempty(y, "Y")
    check_nonempty(Kt, "K")
    check_same_size(y.shape[1], "Y", Kt.shape[1], "K")
    if Kt.shape[2] != Kt.shape[3]:
        raise fail("K", "square kernels of shape (m, c, s, s)", Kt)
    check_finite(y, "Y")
    check_finite(Kt, "K")
    lam = check_nonneg_float(lam, "lam")
    solver, max_iter = resolve_solver(solver, max_iter, y)
    tol = check_positive_float(tol, "tol")
    check_choice(method, "method", CONV_METHODS)
    z_init = None
    if z0 is not None:
        shape = (y.shape[0], Kt.shape[0]) + map_shape(tuple(y.shape[-2:]), Kt.shape[-1])
        z_init = as_tensor(z0, "z0", device=dev, dtype=y.dtype)
        check_shape(z_init, "z0", shape)
        check_finite(z_init, "z0")
    res = solve_conv(
        y, Kt, lam, solver=solver, max_iter=max_iter, tol=tol, z0=z_init, nonneg=nonneg,
        method=method,
    )  # fmt: skip
    return output_converter(Y)(res.z)


def solve_conv(
    y: torch.Tensor,
    K: torch.Tensor,
    lam: float,
    *,
    solver: str,
    max_iter: int,
    tol: float,
    z0: torch.Tensor | None = None,
    nonneg: bool = False,
    method: str = "auto",
) -> SolveResult:
    """The convolutional lasso by ``solver`` ("fista" or "workingset", already resolved
    by :func:`pick_solver`); tensor level, does not validate."""
    if solver == "workingset":
        from .conv_workingset import solve_conv_lasso_ws  # that module imports this one

        return solve_conv_lasso_ws(y, K, lam, max_iter=max_iter, tol=tol, z0=z0, nonneg=nonneg)
    return solve_conv_lasso(
        y, K, lam, max_iter=max_iter, tol=tol, z0=z0, nonneg=nonneg, method=method
    )


def resolve_solver(solver: str, max_iter: int | None, y: torch.Tensor) -> tuple[str, int]:
    """Check ``solver`` and ``max_iter`` (public arguments) and resolve "auto" and the
    solver's default budget for images ``y`` (n, c, H, W)."""
    check_choice(solver, "solver", CONV_SOLVERS)
    solver = pick_solver(solver, y)
    return solver, check_int(DEFAULT_MAX_ITER[solver] if max_iter is None else max_iter, "max_iter")


def pick_solver(solver: str, y: torch.Tensor) -> str:
    """``solver`` with "auto" resolved for images ``y`` (n, c, H, W)."""
    if solver != "auto":
        return solver
    big = y.shape[-2] * y.shape[-1] >= WORKINGSET_MIN_PIXELS
    return "workingset" if big and y.device.type == "cpu" else "fista"
