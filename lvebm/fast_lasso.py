"""Fast dense lasso: variable-metric FISTA on the Gram form, stopped by the duality gap.

Solves, independently for every row (``b = y W``, ``G = W^T W``, ``yy = ||y||^2``)::

    min_z  0.5*||y - W z||^2 + lam*||z||_1  =  0.5*yy - z.b + 0.5*z^T G z + lam*||z||_1.

Three things make it faster than textbook FISTA (:func:`lvebm.solvers.fista`) on real
dictionaries, whose Gram matrix typically has one dominant eigenvalue (a learned MNIST
dictionary: about 49 against 8 for the next one, because all atoms share the mean digit):

* **Rank-one-plus-identity metric** ``M = a I + c u u^T`` with ``u`` the top eigenvector,
  ``a`` the second eigenvalue and ``a + c`` the first, so ``M >= G``. The forward step
  ``x - M^{-1} grad`` is cheap (Sherman-Morrison) and the proximal step in the metric
  ``M`` reduces to a monotone piecewise-linear equation in one scalar per row (Becker &
  Fadili 2012, "A quasi-Newton proximal splitting method"), solved by Newton's method
  warm-started from the previous iteration's root. The step no longer pays for the top
  eigenvalue: on the digit dictionary FISTA needs about 3x fewer iterations.
* **One matmul per iteration**: ``z G`` is kept, and ``x G`` for the extrapolated point is
  the same linear combination of ``z G`` and the previous ``z G`` that ``x`` is of ``z``.
  The duality gap of ``z`` then costs no extra matmul.
* **Per-row stopping and freezing**: a row stops when its duality gap is below ``tol``
  times its objective (a certificate: the relative suboptimality is at most ``tol``);
  finished rows are dropped from the working set, so the matmul shrinks as rows converge.

The functions here do not validate their arguments; :func:`lvebm.sparse_encode` does.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .compiled import maybe_compiled
from .ops import _shrink
from .solvers import SolveResult

__all__ = ["RankOneMetric", "rank_one_metric", "gram_duality_gap", "vmfista_lasso"]

#: Iterations between two duality-gap checks (the check costs a few elementwise passes).
CHECK_EVERY = 5


class RankOneMetric(NamedTuple):
    """The metric ``M = a I + c u u^T >= G`` for a Gram matrix ``G`` (k, k).

    ``u`` (k,) is the unit top eigenvector of ``G`` and ``l1`` its eigenvalue
    (``G u = l1 u``), so products with ``u`` of ``z G`` are ``l1 * z.u``.
    """

    u: torch.Tensor
    a: float
    c: float
    l1: float


def rank_one_metric(G: torch.Tensor) -> RankOneMetric:
    """Best rank-one-plus-identity majorant of the Gram matrix ``G`` (k, k).

    With eigenvalues ``l_1 >= l_2 >= ...`` and top eigenvector ``u``, ``M = l_2 I +
    (l_1 - l_2) u u^T`` satisfies ``M >= G`` and equals ``G`` on ``u``. Eigenvalues are
    computed in float64 and both are padded by one part in 10^6 so that a float32 ``G``
    is majorised despite round-off.
    """
    evals, evecs = torch.linalg.eigh(G.to(torch.float64))
    l1 = max(float(evals[-1]), torch.finfo(torch.float64).tiny)
    l2 = float(evals[-2]) if G.shape[0] > 1 else l1
    a = max(l2, 1e-3 * l1) * (1.0 + 1e-6)
    c = max(l1 * (1.0 + 1e-6) - a, 0.0)
    return RankOneMetric(evecs[:, -1].to(G.dtype), a, c, l1)


def gram_duality_gap(
    z: torch.Tensor,
    zG: torch.Tensor,
    b: torch.Tensor,
    yy: torch.Tensor,
    lam: float,
    nonneg: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Duality gap and primal objective per row from the Gram form, each of shape (n,).

    ``W^T r = b - z G`` and ``||r||^2 = yy - 2 z.b + z.zG`` give the residual ``r = y - W z``
    without ``y``; the dual point is ``theta = r * min(1, lam / ||W^T r||_inf)`` as in
    :func:`lvebm.duality_gap`. With ``nonneg`` the dual constraint is one-sided,
    ``W^T theta <= lam``, so only positive correlations scale ``theta``.
    """
    zb = (z * b).sum(1)
    rr = torch.clamp(yy - 2.0 * zb + (z * zG).sum(1), min=0)  # ||r||^2, (n,)
    primal = 0.5 * rr + lam * z.abs().sum(1)
    corr = (b - zG).amax(1) if nonneg else (b - zG).abs().amax(1)  # ||W^T r||_inf
    tiny = torch.finfo(z.dtype).tiny
    s = torch.clamp(lam / torch.clamp(corr, min=tiny), max=1.0)
    dual = s * (yy - zb) - 0.5 * s * s * rr
    return torch.clamp(primal - dual, min=0), primal


def vmfista_lasso(
    b: torch.Tensor,
    G: torch.Tensor,
    yy: torch.Tensor,
    lam: float,
    *,
    metric: RankOneMetric | None = None,
    nonneg: bool = False,
    max_iter: int = 1000,
    tol: float = 1e-4,
    z0: torch.Tensor | None = None,
) -> SolveResult:
    """Batched lasso in Gram form by variable-metric FISTA; does not validate.

    b (n, k), G (k, k), yy (n,), z0 (n, k) or None; ``metric`` defaults to
    :func:`rank_one_metric` of ``G``. Every :data:`CHECK_EVERY` iterations a row stops
    when its objective ``P`` changed by at most ``tol * P`` since the last check, or its
    duality gap is at most ``tol * P`` (both with a round-off allowance of
    ``10 eps ||y||^2``). The gap rule is a certificate (relative suboptimality <= tol);
    the change rule is what usually fires first, because the gap of the scaled-residual
    dual point closes only at the square root of the suboptimality. Momentum restarts
    per row when it points uphill (O'Donoghue & Candes 2015). Returns ``SolveResult``
    with z (n, k), the iterations run, whether every row stopped by the rule, and the
    objective (n,).
    """
    n, k = b.shape
    metric = rank_one_metric(G) if metric is None else metric
    z_out = torch.zeros_like(b) if z0 is None else z0.clone()  # (n, k)
    obj_out = torch.zeros(n, dtype=b.dtype, device=b.device)
    s = _State.start(z_out, G, b, yy, metric)
    consts = _update_consts(metric, lam)
    n_iter, converged = 0, False
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        _step(s, G, consts, nonneg)
        if n_iter % CHECK_EVERY and n_iter < max_iter:
            continue
        done, primal = _stopped(s, lam, tol, nonneg)
        if n_iter == max_iter:
            done = torch.ones_like(done)
        if bool(done.any()):
            z_out[s.rows[done]] = s.z[done]
            obj_out[s.rows[done]] = primal[done]
            keep = ~done
            if not bool(keep.any()):
                converged = n_iter < max_iter
                break
            s = s.select(keep)
    return SolveResult(z_out, n_iter, converged, obj_out)


def _update_consts(metric: RankOneMetric, lam: float) -> tuple[torch.Tensor, ...]:
    """``(u, u*u, a, c, l1, lam)`` for :func:`_vm_update` (scalars as 0-d tensors)."""
    u = metric.u
    return (u, u * u, *(u.new_tensor(v) for v in (metric.a, metric.c, metric.l1, lam)))


def _stopped(s: _State, lam: float, tol: float, nonneg: bool):
    """Rows that meet the stopping rule (see :func:`vmfista_lasso`) and all objectives."""
    gap, primal = gram_duality_gap(s.z, s.zG, s.b, s.yy, lam, nonneg)
    slack = tol * primal + 10 * torch.finfo(s.b.dtype).eps * s.yy  # (m,)
    done = (gap <= slack) | ((s.primal_prev - primal).abs() <= slack)
    s.primal_prev = primal
    return done, primal


class _State:
    """Per-row iterates of the working set (m rows): codes, their products with G and
    with u, FISTA's momentum, the data, and the rows' indices in the full batch."""

    FIELDS = (
        "z",
        "zG",
        "zu",
        "z_prev",
        "zG_prev",
        "zu_prev",
        "t",
        "alpha",
        "b",
        "bu",
        "yy",
        "rows",
        "primal_prev",
    )

    def __init__(self, **fields: torch.Tensor):
        for name in self.FIELDS:
            setattr(self, name, fields[name])

    @classmethod
    def start(cls, z, G, b, yy, metric: RankOneMetric) -> _State:
        n = b.shape[0]
        zG, zu = z @ G, z @ metric.u  # (n, k), (n,)
        t = torch.ones(n, dtype=b.dtype, device=b.device)
        return cls(
            z=z.clone(), zG=zG, zu=zu, z_prev=z, zG_prev=zG, zu_prev=zu, t=t,
            alpha=torch.zeros_like(t), b=b, bu=b @ metric.u, yy=yy,
            rows=torch.arange(n, device=b.device), primal_prev=torch.full_like(t, torch.inf),
        )  # fmt: skip

    def select(self, keep: torch.Tensor) -> _State:
        """The rows where ``keep`` is True (a compacted copy, so the matmul shrinks)."""
        return _State(**{name: getattr(self, name)[keep] for name in self.FIELDS})


def _step(s: _State, G: torch.Tensor, consts: tuple, nonneg: bool) -> None:
    """One variable-metric FISTA iteration on the working set, updating ``s`` in place;
    ``consts`` from :func:`_update_consts`.

    The elementwise part (:func:`_vm_update`) is fused by ``torch.compile`` for large
    working sets (:mod:`lvebm.compiled`); the one matmul is ``z_new G``.
    """
    update = maybe_compiled(_vm_update, s.z.numel(), dynamic=True)
    z_new, s.alpha, s.t = update(
        s.z, s.z_prev, s.zG, s.zG_prev, s.zu, s.zu_prev, s.t, s.alpha, s.b, s.bu, *consts, nonneg
    )
    s.z_prev, s.zG_prev, s.zu_prev = s.z, s.zG, s.zu
    s.z, s.zG, s.zu = z_new, z_new @ G, z_new @ consts[0]  # consts[0] is u


def _vm_update(z, z_prev, zG, zG_prev, zu, zu_prev, t, alpha, b, bu, u, uu, a, c, l1, lam,
               nonneg: bool):  # fmt: skip
    """The elementwise part of a vmfista iteration; returns ``(z_new, alpha, t)``.

    ``x = z + beta (z - z_prev)``; ``x G`` and ``x.u`` follow by the same combination.
    The forward step is ``w = x - M^{-1}(x G - b) = w0 + omega u`` (Sherman-Morrison),
    then :func:`_metric_prox`. ``u`` (k,), ``uu = u * u``; ``a, c, l1, lam`` are 0-d
    tensors so a compiled update serves every dictionary.
    """
    t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
    beta = (t - 1.0) / t_new  # (m,)
    x = torch.addcmul(z, beta[:, None], z - z_prev)  # (m, k)
    xG = torch.addcmul(zG, beta[:, None], zG - zG_prev)
    xu = zu + beta * (zu - zu_prev)
    w0 = x - xG.sub_(b).div_(a)  # (temporaries are updated in place: cheaper when eager)
    omega = (c / (a * (a + c))) * (l1 * xu - bu)  # (m,)
    z_new, alpha = _metric_prox(w0, omega, alpha, u, uu, a, c, lam, nonneg)
    uphill = (x.sub_(z_new) * (z_new - z)).sum(1) > 0  # gradient restart test
    return z_new, alpha, torch.where(uphill, torch.ones_like(t_new), t_new)


def _metric_prox(w0, omega, alpha, u, uu, a, c, lam, nonneg: bool):
    """``argmin_z 0.5*||z - w||_M^2 + lam*||z||_1`` (``z >= 0`` if ``nonneg``) per row,
    for ``w = w0 + omega u`` (w0 (m, k), omega (m,)) and ``M = a I + c u u^T``.

    The minimiser is ``z(alpha) = shrink(w - alpha u / a, lam / a)`` where the scalar
    ``alpha`` solves ``phi(alpha) = alpha - c u.(z(alpha) - w) = 0``; ``phi`` is increasing
    and piecewise linear, so one Newton step from last iteration's root is exact once
    the sign pattern settles (Becker & Fadili 2012). Returns ``(z, alpha)``, alpha (m,).
    """
    theta = lam / a
    wu = w0 @ u + omega  # w.u, (m,)
    z = _soft(torch.addr(w0, omega - alpha / a, u), theta, nonneg)
    phi = alpha - c * (z @ u - wu)
    dphi = 1.0 + (c / a) * ((z != 0).to(w0.dtype) @ uu)
    alpha = alpha - phi / dphi
    return _soft(torch.addr(w0, omega - alpha / a, u), theta, nonneg), alpha


def _soft(v: torch.Tensor, theta: torch.Tensor, nonneg: bool) -> torch.Tensor:
    """Soft thresholding (one-sided with ``nonneg``) by a 0-d tensor ``theta``,
    overwriting ``v`` (a temporary)."""
    if nonneg:
        return v.sub_(theta).clamp_(min=0)
    if torch.compiler.is_compiling():  # fused anyway; keeps theta a tensor input
        return v.sub_(torch.clamp(v, -theta, theta))
    return _shrink(v, float(theta))  # a float threshold: one softshrink pass, not two
