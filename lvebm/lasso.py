"""Batched lasso: ``sparse_encode`` and the duality gap of its codes.

Objective per sample (the library's convention everywhere)::

    0.5 * ||y - W z||^2 + lam * ||z||_1,     W of shape (d, k).
"""

from __future__ import annotations

from typing import Any

import torch

from . import _numba, cd_lasso, lars_lasso
from ._backend import ArrayLike, as_tensor, output_converter, resolve_device
from ._checks import (
    LvebmValueError,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
    check_shape,
)
from .fast_lasso import RankOneMetric, rank_one_metric, vmfista_lasso
from .operators import Dense
from .ops import gram_lipschitz
from .regularizers import L1, NonNegL1
from .solvers import GramLeastSquares, LeastSquares, SolveResult, fista

__all__ = ["sparse_encode", "solve_lasso", "duality_gap", "lasso_objective"]

#: Rows solved at once; bounds memory to a few chunk-sized (chunk, k) buffers.
CHUNK_ROWS = 65536
#: Cap on chunk elements (rows * atoms), so that many atoms do not multiply the memory:
#: the solvers hold about a dozen (chunk, k) buffers of at most 4M elements each.
CHUNK_ELEMENTS = 1 << 22

#: Default ``tol`` per method: relative objective still to go / duality gap for
#: "vmfista", relative duality gap for "lars" and "cd", relative change of the codes for
#: "fista" and "ista" (for float32 problems).
DEFAULT_TOL = {"fista": 1e-6, "ista": 1e-6, "vmfista": 1e-5, "lars": 1e-5, "cd": 1e-5}
#: The same for float64 problems: tight enough that the objective agrees with an exact
#: lasso solver (scikit-learn's) to 1e-6 relative on random and learned dictionaries.
DEFAULT_TOL_FLOAT64 = {
    "fista": 1e-9, "ista": 1e-9, "vmfista": 1e-10, "lars": 1e-10, "cd": 1e-10,
}  # fmt: skip
#: The methods ``sparse_encode`` accepts ("auto" picks "lars", "cd" or "vmfista").
METHODS = ("auto", "vmfista", "lars", "cd", "fista", "ista")
#: The methods that run compiled per-row code (CPU, numba).
NUMBA_METHODS = ("lars", "cd")
#: Rows that "auto" solves by "lars" ("cd" from a warm start) first, to measure the
#: support size it then decides on.
AUTO_SAMPLE_ROWS = 32
#: Sweep budget per row of "cd" (and of "lars"'s CD rounds); rows left unfinished (rare:
#: coherent atoms with supports near the signal dimension, where sweeps crawl and G_SS is
#: near singular) finish by "vmfista" from where they were left.
CD_MAX_SWEEPS = 300
#: vmfista iterations that start "cd" when no z0 is given: from their codes CD needs
#: fewer sweeps and rounds (on the digits at lam 0.5, 0.44 s against 0.56-0.60 s from
#: zero; flat between 3 and 15 iterations).
CD_WARM_START_ITERS = 8


def default_max_iter(dtype: torch.dtype) -> int:
    """The default iteration cap of :func:`sparse_encode` for problems in ``dtype``."""
    return 20_000 if dtype == torch.float64 else 1000


def default_tol(method: str, dtype: torch.dtype) -> float:
    """The default ``tol`` of ``method`` for problems in ``dtype``."""
    return (DEFAULT_TOL_FLOAT64 if dtype == torch.float64 else DEFAULT_TOL)[method]


def chunk_rows(k: int) -> int:
    """Rows per chunk for ``k`` atoms: ``CHUNK_ROWS``, fewer when ``k`` is large."""
    return max(1, min(CHUNK_ROWS, CHUNK_ELEMENTS // max(k, 1)))


def _check_problem(Y: Any, W: Any, lam: Any, device: Any):
    dev = resolve_device(device, Y.device if isinstance(Y, torch.Tensor) else None)
    y = as_tensor(Y, "Y", device=dev)
    Wt = as_tensor(W, "W", device=dev, dtype=y.dtype)
    check_ndim(y, "Y", 2, "(n, d)")
    check_ndim(Wt, "W", 2, "(d, k)")
    check_nonempty(y, "Y")
    check_nonempty(Wt, "W")
    check_same_size(y.shape[1], "Y", Wt.shape[0], "W")
    check_finite(y, "Y")
    check_finite(Wt, "W")
    lam = check_nonneg_float(lam, "lam")
    return y, Wt, lam, dev


def solve_lasso(
    y: torch.Tensor,
    W: torch.Tensor,
    lam: float,
    *,
    method: str = "fista",
    max_iter: int = 1000,
    tol: float | None = None,
    z0: torch.Tensor | None = None,
    nonneg: bool = False,
    L: float | None = None,
    metric: RankOneMetric | None = None,
) -> SolveResult:
    """Tensor-level lasso solver behind :func:`sparse_encode`; does not validate.

    y (n, d), W (d, k), z0 (n, k) or None; returns a :class:`SolveResult` with z (n, k).
    ``L`` (largest eigenvalue of ``W^T W``, for "fista"/"ista") and ``metric`` (for
    "vmfista") are computed when not given; ``tol`` None takes :func:`default_tol`.
    """
    n, d = y.shape
    k = W.shape[1]
    tol = default_tol(method, y.dtype) if tol is None else tol
    if method in ("lars", "cd", "vmfista"):
        G = W.T @ W  # (k, k)
        b = y @ W  # (n, k)
        yy = y.pow(2).sum(1)
    sweeps = min(max_iter, CD_MAX_SWEEPS)
    if method == "lars":
        z, steps, rounds, objective = lars_lasso.lars_lasso(
            b, G, yy, lam, nonneg=nonneg, tol=tol, max_iter=sweeps, max_active=min(k, d)
        )
        return _finish_rows(z, int(steps.max()), rounds, objective, b, G, yy, lam, nonneg,
                            max_iter, tol, metric)  # fmt: skip
    if method == "cd":
        if z0 is None:  # a few vmfista iterations find most of the support for CD
            z0 = vmfista_lasso(
                b, G, yy, lam, metric=metric, nonneg=nonneg, max_iter=CD_WARM_START_ITERS,
                tol=tol,
            ).z  # fmt: skip
        z, rounds, objective = cd_lasso.cd_lasso(
            b, G, yy, lam, nonneg=nonneg, tol=tol, max_iter=sweeps, z0=z0
        )
        return _finish_rows(z, int(rounds.max()), rounds, objective, b, G, yy, lam, nonneg,
                            max_iter, tol, metric)  # fmt: skip
    if method == "vmfista":
        return vmfista_lasso(
            b, G, yy, lam, metric=metric, nonneg=nonneg, max_iter=max_iter,
            tol=tol, z0=z0,
        )  # fmt: skip
    use_gram = k <= 2 * d
    G = W.T @ W if use_gram else None
    if L is None:
        L = gram_lipschitz(G if G is not None else W.T @ W)
    L = max(L, torch.finfo(y.dtype).tiny)
    reg = NonNegL1() if nonneg else L1()
    f = GramLeastSquares(G, y @ W, y.pow(2).sum(1)) if use_gram else LeastSquares(y, Dense(W))
    if z0 is None:
        z0 = torch.zeros(n, k, dtype=y.dtype, device=y.device)
    return fista(
        f, reg, z0, lam=lam, L=L, max_iter=max_iter, tol=tol, accelerate=(method == "fista")
    )


def _finish_rows(z, n_iter, rounds, objective, b, G, yy, lam, nonneg, max_iter, tol, metric):
    """SolveResult of the per-row methods ("lars", "cd"): rows whose CD rounds did not
    converge (``rounds`` -1: coherent atoms, supports near d) go on by vmfista from
    where they were left; ``objective`` (n,) float64 per row."""
    objective = objective.to(b.dtype)
    stuck = (rounds < 0).nonzero().squeeze(1)
    if len(stuck) == 0:
        return SolveResult(z, n_iter, True, objective)
    rest = vmfista_lasso(
        b[stuck], G, yy[stuck], lam, metric=metric, nonneg=nonneg, max_iter=max_iter,
        tol=tol, z0=z[stuck],
    )  # fmt: skip
    z[stuck] = rest.z
    objective[stuck] = rest.objective
    return SolveResult(z, rest.n_iter, rest.converged, objective)


def sparse_encode(
    Y: ArrayLike,
    W: ArrayLike,
    lam: float,
    *,
    method: str = "auto",
    max_iter: int | None = None,
    tol: float | None = None,
    z0: ArrayLike | None = None,
    nonneg: bool = False,
    device: Any = None,
) -> ArrayLike:
    """Sparse codes of the rows of ``Y`` on the dictionary ``W`` (batched lasso).

    Minimises, independently for every row ``y`` of ``Y``::

        0.5 * ||y - W z||^2 + lam * ||z||_1        (z >= 0 as well if ``nonneg``)

    by homotopy (LARS), coordinate descent with a Newton finish, variable-metric FISTA,
    FISTA or ISTA, on the Gram form ``W^T W`` (by default the fastest for the problem).

    Parameters
    ----------
    Y : array or tensor of shape (n, d)
        Signals, one per row.
    W : array or tensor of shape (d, k)
        Dictionary, one atom per column (unit norm is conventional, not required).
    lam : float >= 0
        Weight of the L1 term.
    method : {"auto", "lars", "cd", "vmfista", "fista", "ista"}, default "auto"
        "lars" (CPU, needs numba): per row, the exact lasso path from ``lam_max`` down to
        ``lam`` (LARS with the lasso modification, see :mod:`lvebm.lars_lasso`), then
        certified by the duality gap; no iterations, its work grows as ``k s^2`` with the
        support size ``s``; ignores ``z0``.
        "cd" (CPU, needs numba): per-row coordinate descent with a Newton finish on the
        support (see :mod:`lvebm.cd_lasso`), started (without ``z0``) from 8 vmfista
        iterations; exact once the support is found, its work grows with the support size.
        "vmfista": FISTA in the metric ``a I + c u u^T`` built from the top eigenvector
        ``u`` of ``W^T W`` (see :mod:`lvebm.fast_lasso`), one batched matmul per
        iteration, rows leave the working set as they stop; the method for GPUs and dense
        codes. "auto" (default): on a CPU with numba, solves the first 32 rows by "lars"
        (by "cd" when ``z0`` is given) and, from their mean support size, the rest by
        that method or "vmfista", whichever :func:`lvebm.lars_lasso.prefer_lars`
        (:func:`lvebm.cd_lasso.prefer_cd`) predicts faster; elsewhere "vmfista".
        "fista"/"ista": textbook steps ``1/L``, ``L`` the largest eigenvalue of ``W^T W``.
    max_iter : int, optional
        Iteration cap; default 1,000 for float32 and 20,000 for float64 problems (small
        λ on an ill-conditioned dictionary needs thousands of iterations for 1e-6); for
        "cd" it caps the coordinate sweeps per row (at most 300), for "lars" those of its
        CD rounds (the path's steps are capped at ``max(max_iter, 4 k)``).
    tol : float > 0, optional
        Stopping rule, per row. "vmfista": checked every 5 iterations; stop when, at two
        checks in a row, the objective still to go — the last decrease, scaled up by
        ``rho / (1 - rho)`` when the last two decreases shrink only by ``rho > 1/2`` — is
        at most ``tol`` relative, or when the duality gap (see :func:`duality_gap`) is at
        most ``tol`` times the objective; default 1e-5 for
        float32 and 1e-10 for float64 problems. "cd" and "lars": stop when the duality
        gap is at most ``tol`` times the objective (plus ``10 eps ||y||^2`` for
        round-off); same defaults. "fista"/"ista": stop when
        ``||z_t - z_{t-1}|| / ||z_t|| <= tol``; default 1e-6 (float32), 1e-9 (float64).
        The float64 defaults give objectives within 1e-6 (relative) of scikit-learn's
        exact lasso; the float32 ones are the speed defaults of docs/benchmarks.md.
    z0 : array of shape (n, k), optional
        Warm start.
    nonneg : bool
        Constrain codes to be non-negative.
    device : str or torch.device, optional
        Where to compute (default: ``Y``'s device, CPU for NumPy input).

    Returns
    -------
    Z : same kind as ``Y`` (NumPy array or tensor on ``Y``'s device), shape (n, k),
        dtype float32 if ``Y`` is float32, float64 otherwise; a tensor without gradient
        history (inputs that require grad are read, not differentiated through).

    Notes
    -----
    Atoms are the *columns* of ``W``; scikit-learn's ``sparse_encode`` takes atoms as
    rows (``dictionary = W.T``). With ``algorithm="lasso_cd"`` scikit-learn minimises
    ``0.5*||y - W z||^2 + alpha*||z||_1`` per sample, so ``alpha == lam``.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.eye(3)
    >>> sparse_encode(np.array([[2.0, 0.5, -1.5]]), W, 1.0)
    array([[ 1. ,  0. , -0.5]])
    """
    y, Wt, lam, dev = _check_problem(Y, W, lam, device)
    y, Wt = y.detach(), Wt.detach()  # codes are solved for, not differentiated
    check_choice(method, "method", METHODS)
    max_iter = default_max_iter(y.dtype) if max_iter is None else check_int(max_iter, "max_iter")
    if tol is not None:
        tol = check_positive_float(tol, "tol")
    if method in NUMBA_METHODS and (dev.type != "cpu" or not _numba.available()):
        numba_state = "present" if _numba.available() else "absent or off (LVEBM_NUMBA=0)"
        raise LvebmValueError(
            f'method "{method}" runs on the CPU and needs numba; use method="vmfista" '
            f"(device {dev.type}, numba {numba_state})"
        )
    n, k = y.shape[0], Wt.shape[1]
    z_init = None
    if z0 is not None:
        z_init = as_tensor(z0, "z0", device=dev, dtype=y.dtype).detach()
        check_shape(z_init, "z0", (n, k))
        check_finite(z_init, "z0")
    Z = torch.empty(n, k, dtype=y.dtype, device=dev)  # chunks land here: no second copy
    start = 0
    if method == "auto":
        method = "vmfista"
        if dev.type == "cpu" and _numba.available():
            # A first sample of rows by "lars" (by "cd" from a warm start: the homotopy
            # cannot use one); its mean support size decides the rest.
            sample = "lars" if z_init is None else "cd"
            start = min(n, AUTO_SAMPLE_ROWS)
            init = None if z_init is None else z_init[:start]
            _encode_rows(Z[:start], y[:start], Wt, lam, sample, max_iter, tol, init, nonneg, None)
            support = (Z[:start] != 0).sum(1).double().mean().item()
            prefer = lars_lasso.prefer_lars if sample == "lars" else cd_lasso.prefer_cd
            method = sample if prefer(support, k) else "vmfista"
    # one eigendecomposition serves every chunk of "vmfista" and CD's vmfista start
    metric = rank_one_metric(Wt.T @ Wt) if method in ("vmfista", "cd") else None
    if start < n:
        init = None if z_init is None else z_init[start:]
        _encode_rows(Z[start:], y[start:], Wt, lam, method, max_iter, tol, init, nonneg, metric)
    return output_converter(Y)(Z)


def _encode_rows(out, y, W, lam, method, max_iter, tol, z_init, nonneg, metric) -> None:
    """Write into ``out`` (n, k) the codes of the rows y (n, d) by ``method``, in chunks of
    :func:`chunk_rows` (each chunk lands in ``out``: no second copy of the codes);
    ``metric`` (vmfista's, None: computed per chunk) is shared by the chunks."""
    n, k = y.shape[0], W.shape[1]
    tol = default_tol(method, y.dtype) if tol is None else tol
    L = gram_lipschitz(W.T @ W) if method in ("fista", "ista") else None
    step = chunk_rows(k)
    for start in range(0, n, step):
        stop = min(n, start + step)
        init = None if z_init is None else z_init[start:stop]
        res = solve_lasso(
            y[start:stop], W, lam, method=method, max_iter=max_iter, tol=tol, z0=init,
            nonneg=nonneg, L=L, metric=metric,
        )  # fmt: skip
        out[start:stop] = res.z


def lasso_objective(y: torch.Tensor, W: torch.Tensor, z: torch.Tensor, lam: float) -> torch.Tensor:
    """``0.5*||y - W z||^2 + lam*||z||_1`` per sample, shape (n,); no validation."""
    r = y - z @ W.T
    return 0.5 * r.pow(2).sum(1) + lam * z.abs().sum(1)


def duality_gap(
    Y: ArrayLike, W: ArrayLike, Z: ArrayLike, lam: float, *, nonneg: bool = False
) -> ArrayLike:
    """Lasso duality gap of the codes ``Z`` (n, k), per sample, shape (n,).

    With ``r = y - W z`` and the dual point ``theta = r * min(1, lam / ||W^T r||_inf)``
    (feasible: ``||W^T theta||_inf <= lam``), the gap is
    ``P(z) - D(theta)`` where ``P`` is the lasso objective and
    ``D(theta) = theta.y - 0.5*||theta||^2``. It is >= 0 and 0 exactly at the optimum,
    so it certifies how far from optimal each code is (in objective units). With
    ``nonneg`` (codes ``z >= 0``, which must hold) the dual constraint is one-sided,
    ``W^T theta <= lam``, so only positive correlations scale ``theta``.
    """
    y, Wt, lam, _ = _check_problem(Y, W, lam, None)
    z = as_tensor(Z, "Z", device=y.device, dtype=y.dtype)
    check_shape(z, "Z", (y.shape[0], Wt.shape[1]))
    check_finite(z, "Z")
    if check_bool(nonneg, "nonneg") and bool((z < 0).any()):
        raise LvebmValueError("`Z` has negative entries but `nonneg=True`.")
    gap = _duality_gap(y, Wt, z, lam, nonneg)
    return output_converter(Y)(gap)


def _duality_gap(
    y: torch.Tensor, W: torch.Tensor, z: torch.Tensor, lam: float, nonneg: bool = False
) -> torch.Tensor:
    r = y - z @ W.T  # (n, d)
    c = r @ W
    corr = c.amax(dim=1) if nonneg else c.abs().amax(dim=1)  # the dual constraint's max, (n,)
    if lam == 0:
        s = torch.where(corr > 0, torch.zeros_like(corr), torch.ones_like(corr))
    else:
        s = torch.clamp(lam / torch.clamp(corr, min=torch.finfo(y.dtype).tiny), max=1.0)
    theta = r * s[:, None]
    primal = 0.5 * r.pow(2).sum(1) + lam * z.abs().sum(1)
    dual = (theta * y).sum(1) - 0.5 * theta.pow(2).sum(1)
    return torch.clamp(primal - dual, min=0)
