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

On a CPU with numba, everything but the matmul runs as compiled kernels that walk each
row once (:mod:`lvebm._vm_kernels`: about 30% off a solve on the digits); elsewhere the
torch update :func:`_vm_update` runs, fused by ``torch.compile`` on large working sets.

The functions here do not validate their arguments; :func:`lvebm.sparse_encode` does.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import torch

from . import _numba
from .compiled import maybe_compiled
from .ops import _shrink
from .solvers import SolveResult

__all__ = ["RankOneMetric", "rank_one_metric", "gram_duality_gap", "vmfista_lasso"]

#: Iterations between two duality-gap checks (the check costs a few elementwise passes).
CHECK_EVERY = 5
#: Finished rows leave the working set once they are this share of it (a compaction
#: copies the whole state; until then they iterate on, their codes already recorded).
COMPACT_SHARE = 1 / 16


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
    evals, evecs = torch.linalg.eigh(G.detach().to(torch.float64))
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
    dot = torch.linalg.vecdot
    g = b - zG  # W^T r, (n, k)
    corr = g.amax(1) if nonneg else g.abs().amax(1)  # (vector_norm is 4-10x slower on CPU)
    return _gap(dot(z, b), dot(z, zG), z.abs().sum(1), corr, yy, lam)


def _gap(zb, zzG, z_l1, corr, yy, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Duality gap and primal objective (each (n,)) of :func:`gram_duality_gap` from
    ``z.b``, ``z.zG``, ``||z||_1`` and ``||W^T r||_inf`` (one-sided with ``nonneg``)."""
    rr = torch.clamp(yy - 2.0 * zb + zzG, min=0)  # ||r||^2, (n,)
    primal = 0.5 * rr + lam * z_l1
    s = torch.clamp(lam / torch.clamp(corr, min=torch.finfo(corr.dtype).tiny), max=1.0)
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
    fused: bool | None = None,
) -> SolveResult:
    """Batched lasso in Gram form by variable-metric FISTA; does not validate.

    b (n, k), G (k, k), yy (n,), z0 (n, k) or None; ``metric`` defaults to
    :func:`rank_one_metric` of ``G``. Every :data:`CHECK_EVERY` iterations a row stops
    when the objective ``P`` still to go, estimated from its last two decreases between
    checks (:func:`_remaining`), was at most ``tol * P`` at this check and the one before,
    or when its duality gap is at most ``tol * P`` (both with a round-off allowance of
    ``10 eps ||y||^2``). The gap rule is a certificate (relative suboptimality <= tol);
    the change rule is what usually fires first, because the gap of the scaled-residual
    dual point closes only at the square root of the suboptimality. Momentum restarts
    per row when it points uphill (O'Donoghue & Candes 2015). Returns ``SolveResult``
    with z (n, k), the iterations run, whether every row stopped by the rule, and the
    objective (n,). ``fused`` runs each iteration's elementwise part as compiled numba
    kernels (one pass per row, :mod:`lvebm._vm_kernels`); None: on a CPU when numba is
    installed. Both ways compute the same iterates up to float round-off.
    """
    n, k = b.shape
    fused = default_fused(b) if fused is None else fused
    if fused:  # the kernels write numpy views; nothing here is differentiated
        b, G, yy = b.detach(), G.detach(), yy.detach()
        z0 = None if z0 is None else z0.detach()
    metric = rank_one_metric(G) if metric is None else metric
    if fused:
        metric = metric._replace(u=metric.u.detach())
    z_out = torch.zeros_like(b) if z0 is None else z0.clone()  # (n, k)
    obj_out = torch.zeros(n, dtype=b.dtype, device=b.device)
    H = _forward_matrix(G, metric)
    s = _State.start(z_out, H, b, yy, metric)
    s.primal_prev = _objectives(s, metric.a, lam, nonneg, fused)[1]  # first check's reference
    consts = _update_consts(metric, lam, fused)
    n_iter, converged = 0, False
    with _numba.torch_threads() if fused else nullcontext():
        for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
            _step(s, H, consts, nonneg, fused)
            if n_iter % CHECK_EVERY and n_iter < max_iter:
                continue
            done, primal = _stopped(s, metric.a, lam, tol, nonneg, fused)
            if n_iter == max_iter:
                done = torch.ones_like(done)
            if bool(done.any()):
                z_out[s.rows[done]] = s.z[done]
                obj_out[s.rows[done]] = primal[done]
                s.finished |= done
                left = int((~s.finished).sum())
                if left == 0:
                    converged = n_iter < max_iter
                    break
                if len(s.rows) - left >= COMPACT_SHARE * len(s.rows):
                    s = s.select(~s.finished)
    return SolveResult(z_out, n_iter, converged, obj_out)


def _forward_matrix(G: torch.Tensor, metric: RankOneMetric) -> torch.Tensor:
    """``H = [I - G/a | u | 0]`` (k, kp), ``kp`` the multiple of 8 above ``k``:
    ``z @ H + [b/a | 0]`` holds ``v = z - (z G - b)/a`` (the forward step of ``z`` in the
    ``a I`` part of the metric) in its first ``k`` columns and ``z.u`` in column ``k``,
    from one ``addmm`` (padding the width to a multiple of 8 keeps BLAS on its fast
    path: k + 1 = 257 columns cost a third more than 256 or 264)."""
    k = G.shape[0]
    H = torch.zeros(k, _padded(k), dtype=G.dtype, device=G.device)
    H[:, :k] = torch.eye(k, dtype=G.dtype, device=G.device) - G / metric.a
    H[:, k] = metric.u
    return H


def _padded(k: int) -> int:
    """Width of ``[v | z.u]`` rounded up to a multiple of 8."""
    return (k + 1 + 7) // 8 * 8


def _update_consts(metric: RankOneMetric, lam: float, fused: bool) -> tuple:
    """``(u, u*u, a, c, l1, lam)`` for the update: NumPy arrays and floats for the numba
    kernel (``fused``), else tensors with the scalars as 0-d tensors for
    :func:`_vm_update` (so that a compiled update serves every dictionary)."""
    u = metric.u
    scalars = tuple(u.new_tensor(v) for v in (metric.a, metric.c, metric.l1, lam))
    if fused:  # the same scalars, rounded to the data's dtype as the torch update sees them
        return (u.numpy(), (u * u).numpy(), *(float(x) for x in scalars))
    return (u, u * u, *scalars)


def default_fused(b: torch.Tensor) -> bool:
    """Whether :func:`vmfista_lasso` runs its numba kernels by default for data ``b``:
    on a CPU, in float32 or float64, with numba installed."""
    dtypes = (torch.float32, torch.float64)
    return b.device.type == "cpu" and b.dtype in dtypes and _numba.available()


def _stopped(s: _State, a: float, lam: float, tol: float, nonneg: bool, fused: bool):
    """Rows that meet the stopping rule (see :func:`vmfista_lasso`) and all objectives.

    The change part needs a small estimated remainder (:func:`_remaining`) at two
    checks in a row, so that a row entering a slow stretch (whose first check shows a
    sudden small decrease) is not taken for converged.
    """
    gap, primal = _objectives(s, a, lam, nonneg, fused)
    noise = 2 * torch.finfo(primal.dtype).eps * s.yy  # round-off of the Gram-form objective
    slack = tol * primal + 5 * noise  # (m,)
    drop = s.primal_prev - primal  # decrease since the last check
    small = _remaining(drop, s.drop_prev, noise) <= slack
    done = (gap <= slack) | (small & s.small_prev)
    s.primal_prev, s.drop_prev, s.small_prev = primal, drop, small
    return done, primal


def _objectives(s: _State, a: float, lam: float, nonneg: bool, fused: bool):
    """Duality gap and primal objective per row (each (m,)) of the working set.

    The Gram-form quantities come from ``e = v - z``: ``W^T r = b - z G = a e``, so
    ``z.zG = z.b - a z.e`` and ``||W^T r||_inf = a ||e||_inf``. With ``fused``, one
    numba pass per row computes the same.
    """
    if fused:
        from . import _vm_kernels

        gap, primal = torch.empty_like(s.yy), torch.empty_like(s.yy)
        _vm_kernels.vm_objectives(
            s.z.numpy(), s.vz.numpy(), s.ba.numpy(), s.yy.numpy(), a, lam, nonneg,
            gap.numpy(), primal.numpy(),
        )  # fmt: skip
        return gap, primal
    dot = torch.linalg.vecdot
    e = s.vz[:, : s.z.shape[1]] - s.z  # (m, k)
    zb = a * dot(s.z, s.ba[:, : s.z.shape[1]])
    zzG = zb - a * dot(s.z, e)
    corr = a * (e.amax(1) if nonneg else e.abs_().amax(1))  # (e is overwritten)
    return _gap(zb, zzG, s.z.abs().sum(1), corr, s.yy, lam)


def _remaining(drop: torch.Tensor, drop_prev: torch.Tensor, noise: torch.Tensor):
    """Objective still to go, estimated per row from the last two decreases between
    checks as the tail of a geometric sequence, ``|drop| * max(1, rho / (1 - rho))`` with
    ``rho = drop / drop_prev`` clamped to [0, 0.99]; ``rho = 0`` when either decrease is
    within round-off (``noise``) or not a decrease. A steady slow decrease (a plateau of
    an ill-conditioned row, ``rho`` near 1) is so told from convergence."""
    steady = (drop > noise) & (drop_prev > noise)
    rho = torch.where(steady, drop / drop_prev, torch.zeros_like(drop)).clamp(0.0, 0.99)
    return drop.abs() * torch.clamp(rho / (1.0 - rho), min=1.0)


class _State:
    """Per-row iterates of the working set (m rows): the codes ``z`` and their last
    change ``d = z - z_prev``, the matmul's output ``vz = [v | z.u | 0]`` (see
    :func:`_forward_matrix`) now and one iteration back, FISTA's momentum ``t``, the
    prox's root ``alpha``, the data (``ba = [b/a | 0]``, ``b.u``, ``||y||^2``), the rows'
    indices in the full batch, their objectives at the last check, and whether they
    have met the stopping rule (their codes are then recorded)."""

    FIELDS = (
        "z", "d", "vz", "vz_prev", "t", "alpha", "ba", "bu", "yy", "rows",
        "primal_prev", "drop_prev", "small_prev", "finished",
    )  # fmt: skip

    def __init__(self, **fields: torch.Tensor):
        for name in self.FIELDS:
            setattr(self, name, fields[name])

    @classmethod
    def start(cls, z, H, b, yy, metric: RankOneMetric) -> _State:
        n, k = b.shape
        ba = b.new_zeros(n, H.shape[1])
        torch.div(b, metric.a, out=ba[:, :k])
        vz = torch.addmm(ba, z, H)  # (n, kp): [v | z.u | 0]
        t = torch.ones(n, dtype=b.dtype, device=b.device)
        return cls(
            z=z.contiguous().clone(), d=torch.zeros_like(z), vz=vz, vz_prev=vz.clone(), t=t,
            alpha=torch.zeros_like(t), ba=ba, bu=b @ metric.u, yy=yy,
            rows=torch.arange(n, device=b.device), primal_prev=torch.full_like(t, torch.inf),
            drop_prev=torch.full_like(t, torch.inf),
            small_prev=torch.zeros_like(t, dtype=torch.bool),
            finished=torch.zeros_like(t, dtype=torch.bool),
        )  # fmt: skip

    def select(self, keep: torch.Tensor) -> _State:
        """The rows where ``keep`` is True (a compacted copy, so the matmul shrinks)."""
        return _State(**{name: getattr(self, name)[keep] for name in self.FIELDS})


def _step(s: _State, H: torch.Tensor, consts: tuple, nonneg: bool, fused: bool) -> None:
    """One variable-metric FISTA iteration on the working set, updating ``s`` in place;
    ``H`` from :func:`_forward_matrix`, ``consts`` from :func:`_update_consts`.

    The elementwise part is one numba pass per row with ``fused`` (CPU), else
    :func:`_vm_update`, itself fused by ``torch.compile`` for large working sets
    (:mod:`lvebm.compiled`); the one matmul gives ``[v | z.u]`` into the older buffer.
    """
    k = s.z.shape[1]
    if fused:
        from . import _vm_kernels

        _vm_kernels.vm_update(
            s.z.numpy(), s.d.numpy(), s.vz.numpy(), s.vz_prev.numpy(), s.t.numpy(),
            s.alpha.numpy(), s.bu.numpy(), *consts, nonneg,
        )  # fmt: skip
    else:
        update = maybe_compiled(_vm_update, s.z.numel(), dynamic=True)
        s.z, s.d, s.alpha, s.t = update(
            s.z, s.d, s.vz[:, :k], s.vz_prev[:, :k], s.vz[:, k], s.vz_prev[:, k], s.t,
            s.alpha, s.bu, *consts, nonneg,
        )  # fmt: skip
    s.vz, s.vz_prev = torch.addmm(s.ba, s.z, H, out=s.vz_prev), s.vz


def _vm_update(z, d, v, v_prev, zu, zu_prev, t, alpha, bu, u, uu, a, c, l1, lam,
               nonneg: bool):  # fmt: skip
    """The elementwise part of a vmfista iteration; returns ``(z_new, d_new, alpha, t)``.

    The extrapolated point ``x = z + beta d`` is never formed: its forward step
    ``w0 = x - (x G - b)/a`` is the same combination of ``v`` and ``v_prev``, and
    ``x.u`` of ``zu`` and ``zu_prev``. The full forward step in the metric is
    ``w = x - M^{-1}(x G - b) = w0 + omega u`` (Sherman-Morrison), then
    :func:`_metric_prox`. The restart test ``(x - z_new).(z_new - z) > 0`` is
    ``beta d.d_new > d_new.d_new``. ``u`` (k,), ``uu = u * u``; ``a, c, l1, lam`` are
    0-d tensors so a compiled update serves every dictionary.
    """
    t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
    beta = (t - 1.0) / t_new  # (m,)
    w0 = torch.lerp(v_prev, v, (1.0 + beta)[:, None])  # (m, k)
    xu = zu + beta * (zu - zu_prev)
    grad_u = (l1 * xu - bu) / a  # (x G - b).u / a, since G u = l1 u
    omega = (c / (a + c)) * grad_u
    wu = xu - grad_u + omega  # w.u, (m,)
    z_new, alpha = _metric_prox(w0, omega, wu, alpha, u, uu, a, c, lam, nonneg)
    d_new = z_new - z
    dot = torch.linalg.vecdot
    uphill = beta * dot(d, d_new) > dot(d_new, d_new)
    return z_new, d_new, alpha, torch.where(uphill, torch.ones_like(t_new), t_new)


def _metric_prox(w0, omega, wu, alpha, u, uu, a, c, lam, nonneg: bool):
    """``argmin_z 0.5*||z - w||_M^2 + lam*||z||_1`` (``z >= 0`` if ``nonneg``) per row,
    for ``w = w0 + omega u`` (w0 (m, k), overwritten; omega, ``wu = w.u`` (m,)) and
    ``M = a I + c u u^T``.

    The minimiser is ``z(alpha) = shrink(w - alpha u / a, lam / a)`` where the scalar
    ``alpha`` solves ``phi(alpha) = alpha - c u.(z(alpha) - w) = 0``; ``phi`` is increasing
    and piecewise linear, so one Newton step from last iteration's root is exact once
    the sign pattern settles (Becker & Fadili 2012). Returns ``(z, alpha)``, alpha (m,).
    """
    theta = lam / a
    z = _soft(torch.addr(w0, omega - alpha / a, u), theta, nonneg)
    phi = alpha - c * (z @ u - wu)
    active = z.sign() if nonneg else z.sign().abs_()  # 1 where z != 0 (faster than z != 0)
    dphi = 1.0 + (c / a) * (active @ uu)
    alpha = alpha - phi / dphi
    return _soft(w0.addr_(omega - alpha / a, u), theta, nonneg), alpha


def _soft(v: torch.Tensor, theta: torch.Tensor, nonneg: bool) -> torch.Tensor:
    """Soft thresholding (one-sided with ``nonneg``) by a 0-d tensor ``theta``,
    overwriting ``v`` (a temporary)."""
    if nonneg:
        return v.sub_(theta).clamp_(min=0)
    if torch.compiler.is_compiling():  # fused anyway; keeps theta a tensor input
        return v.sub_(torch.clamp(v, -theta, theta))
    return _shrink(v, float(theta))  # a float threshold: one softshrink pass, not two
