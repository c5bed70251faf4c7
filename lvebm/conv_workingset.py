"""Working-set solver for the convolutional lasso on large images.

Solves, for every image ``y`` (c, H, W) with kernels ``K`` (m, c, s, s), the problem and
boundary of :func:`lvebm.conv_lasso.solve_conv_lasso`::

    min_z  0.5*||y - sum_i K_i * z_i||^2 + lam*sum_i ||z_i||_1,   z (m, H+s-1, W+s-1)

On natural images about 1% of the map entries are non-zero at the optimum (76k of 8.6M
on ``camera`` with 32 8x8 kernels at lam = 0.05). The solver follows Celer (Massias,
Gramfort & Salmon 2018): an outer loop computes the full gradient with one dense
adjoint, certifies with the duality gap, and picks a *working set* (the current support
plus the entries closest to violating their optimality condition, twice the support's
size); an inner FISTA solves the lasso restricted to those columns. Restricted to a
working set the operator is a sparse matrix with ``c*s*s`` entries per column (a few ms
per product, against ~100 ms for a full-image transform), and it is far better
conditioned (largest eigenvalue about 6 against 51 for the full operator), so both the
cost per iteration and the number of iterations fall. Dual points are the rescaled
residual and its extrapolation from the last residuals (Celer's dual extrapolation),
whichever is better. Once the relative gap is below :data:`CG_FROM`, an active-set
finish solves the sign-fixed least squares on the support by conjugate gradients (entries
whose sign flips leave the support), which makes the gap certify the accuracy that the
primal already has: the rescaled dual point needs every correlation within about
``tol`` of ``lam``, which first-order steps reach slowly.

Does not validate; :func:`lvebm.conv_sparse_encode` does.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.sparse
import torch

from .conv_lasso import conv_operator, map_shape
from .ops import _nonneg_shrink, _shrink
from .solvers import SolveResult

__all__ = ["RestrictedConv", "solve_conv_lasso_ws"]

#: Size of the first working set, and its size relative to the support afterwards.
WS_START = 10_000
WS_GROWTH = 2.0
#: Inner iterations between two restricted duality-gap checks.
INNER_CHECK = 10
#: Inner iterations per working set at most.
INNER_MAX = 2_000
#: Inner tolerance: a fraction of the outer gap (Celer's choice).
INNER_FRACTION = 0.3
#: Residuals kept for dual extrapolation.
EXTRAPOLATE = 5
#: Power-iteration steps for the first working set and for the next ones (warm-started
#: from the last vector), and the safety margin on ``L`` (an objective that rises at a
#: check doubles ``L`` anyway).
POWER_ITERS = (8, 3)
L_MARGIN = 1.25
#: Support solve: tried once the relative gap is below CG_FROM; stops when every
#: support entry's optimality condition holds to CG_TOL * lam; at most CG_MAX steps.
CG_FROM = 1e-2
CG_TOL = 1e-5
CG_MAX = 400
CG_ROUNDS = 4
#: Entries sampled to estimate the working set's score threshold before the exact top-k.
SCORE_SAMPLE = 100_000


class RestrictedConv:
    """The synthesis operator restricted to a working set of map entries.

    ``ws`` (S,) holds flat indices into the maps (m, Hm, Wm), sorted. Signals live on the
    padded grid (c, Hm+s-1, Wm+s-1), flattened, where map entry ``(k, p, q)`` paints
    ``[p, p+s) x [q, q+s)`` with ``K[k]`` (the image is the window starting at
    ``(s-1, s-1)``). ``forward`` (S,) -> (c*Hp*Wp,); ``adjoint`` back. On the CPU the
    products are scipy CSR/CSC matrix-vector products (3x faster than torch's here),
    elsewhere (or with ``use_scipy=False``) a torch CSR product and an ``index_add_``.
    """

    def __init__(
        self,
        K: torch.Tensor,
        maps: tuple[int, int],
        ws: torch.Tensor,
        *,
        use_scipy: bool | None = None,
    ):
        m, c, s, _ = K.shape
        Hm, Wm = maps
        Hp, Wp = Hm + s - 1, Wm + s - 1
        self.n_pixels, self.size = c * Hp * Wp, ws.numel()
        shape = (self.size, self.n_pixels)
        if K.device.type == "cpu" if use_scipy is None else use_scipy:  # int32: less traffic
            k, rest = np.divmod(ws.numpy(), Hm * Wm)
            a = np.arange(s, dtype=np.int32)
            off = np.arange(c, dtype=np.int32)[:, None, None] * (Hp * Wp) + a[:, None] * Wp + a
            base = (rest // Wm * Wp + rest % Wm).astype(np.int32)
            idx = base[:, None] + off.ravel()  # (S, c*s*s)
            data = K.reshape(m, -1).numpy()[k].ravel()
            rows = np.arange(0, idx.size + 1, idx.shape[1], dtype=np.int32)
            self._At = scipy.sparse.csr_matrix((data, idx.ravel(), rows), shape)
            return
        k, rest = ws // (Hm * Wm), ws % (Hm * Wm)
        a = torch.arange(s, device=ws.device)
        off = torch.arange(c, device=ws.device)[:, None, None] * (Hp * Wp) + a[:, None] * Wp + a
        self.idx = (rest // Wm * Wp + rest % Wm)[:, None] + off.flatten()  # (S, c*s*s)
        self.coef = K.reshape(m, -1)[k]  # (S, c*s*s)
        rows = torch.arange(0, self.idx.numel() + 1, self.idx.shape[1], device=ws.device)
        with warnings.catch_warnings():  # torch calls its sparse CSR tensors "beta"
            warnings.simplefilter("ignore", UserWarning)
            self._At = torch.sparse_csr_tensor(
                rows, self.idx.flatten(), self.coef.flatten(), shape, check_invariants=False
            )

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if isinstance(self._At, torch.Tensor):
            out = v.new_zeros(self.n_pixels)
            return out.index_add_(0, self.idx.flatten(), (v[:, None] * self.coef).flatten())
        return torch.from_numpy(self._At.T @ v.numpy())

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        if isinstance(self._At, torch.Tensor):
            return self._At @ r
        return torch.from_numpy(self._At @ r.numpy())


class _Problem:
    """One image on the padded grid: ``y`` and the image mask (c*Hp*Wp,), ``lam``, sign
    constraint, and the dual objective of a residual ``rho = y - A z`` (zero outside)."""

    def __init__(self, y: torch.Tensor, s: int, lam: float, nonneg: bool):
        c, H, W = y.shape
        self.shape = (c, H + 2 * (s - 1), W + 2 * (s - 1))
        self.window = (slice(None), slice(s - 1, s - 1 + H), slice(s - 1, s - 1 + W))
        ypad = y.new_zeros(self.shape)
        ypad[self.window] = y
        mask = torch.zeros(self.shape, dtype=y.dtype, device=y.device)
        mask[self.window] = 1.0
        self.y, self.mask = ypad.flatten(), mask.flatten()
        self.yy = float(y.double().pow(2).sum())
        self.lam, self.nonneg = lam, nonneg

    def prox(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Soft thresholding of ``x`` by ``t`` (one-sided with ``nonneg``)."""
        return _nonneg_shrink(x, t) if self.nonneg else _shrink(x, float(t))

    def residual(self, Az: torch.Tensor) -> torch.Tensor:
        """``A z - y`` on the image (zero outside it), overwriting ``Az``."""
        return Az.sub_(self.y).mul_(self.mask)

    def correlation(self, g: torch.Tensor) -> float:
        """``||A^T rho||_inf`` (largest positive entry with ``nonneg``) from ``g = A^T rho``."""
        return float(g.max() if self.nonneg else g.abs().max())

    def dual(self, rho: torch.Tensor, corr: float) -> float:
        """``D(theta) = 0.5||y||^2 - 0.5||y - theta||^2`` at ``theta = rho*min(1, lam/corr)``."""
        scale = min(1.0, self.lam / corr) if corr > 0 else 1.0
        return 0.5 * self.yy - 0.5 * float((self.y - scale * rho).double().pow(2).sum())

    def primal(self, rho: torch.Tensor, z: torch.Tensor) -> float:
        return 0.5 * float(rho.double().pow(2).sum()) + self.lam * float(z.double().abs().sum())


def _extrapolate(history: deque) -> torch.Tensor | None:
    """Celer's dual extrapolation: the affine combination ``sum_k c_k rho_k`` of the last
    residuals that a linearly converging sequence would reach, or None if the residuals'
    differences are (numerically) dependent."""
    if len(history) < history.maxlen:
        return None
    R = torch.stack(list(history)).double()  # (K+1, n)
    U = R[1:] - R[:-1]  # (K, n)
    try:
        c = torch.linalg.solve(U @ U.T, torch.ones(U.shape[0], dtype=U.dtype, device=U.device))
    except RuntimeError:
        return None
    if not bool(torch.isfinite(c).all()) or float(c.sum()) == 0.0:
        return None
    return ((c / c.sum()) @ R[1:]).to(history[0].dtype)


def _start_vector(v: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``v`` with its zero entries (new in the working set) drawn at random."""
    new = v == 0
    fill = torch.randn(int(new.sum()), generator=gen, dtype=v.dtype).to(v.device)
    return v.masked_scatter(new, fill)


def _power(
    op: RestrictedConv, mask: torch.Tensor, v: torch.Tensor, steps: int
) -> tuple[float, torch.Tensor]:
    """Power iteration on ``A_ws^T diag(mask) A_ws`` from ``v``: estimate and vector."""
    est = 0.0
    for _ in range(steps):
        u = op.adjoint(op.forward(v) * mask)
        norm = float(u.norm())
        if norm == 0.0:
            return 0.0, v
        est, v = norm / float(v.norm()), u / norm
    return est, v


class _Inner(NamedTuple):
    z: torch.Tensor  # codes on the working set (S,)
    rho: torch.Tensor  # residual y - A z on the padded grid
    L: float  # step constant used (raised if the objective rose)
    n_iter: int
    primal: float  # objective at z
    extrapolated: torch.Tensor | None  # extrapolated residual, a candidate dual point


def _inner(op: RestrictedConv, prob: _Problem, z: torch.Tensor, L: float, eps: float,
           max_iter: int, report: Callable[[int, float], None]) -> _Inner:  # fmt: skip
    """FISTA with restart on the working set until the restricted duality gap is <= eps.

    Every :data:`INNER_CHECK` iterations the objective and the gap are evaluated (and
    ``report(iterations, objective)`` called); if the objective rose (``L``
    underestimated by the power iteration) ``L`` doubles and the momentum restarts.
    """
    x, t, lam = z.clone(), 1.0, prob.lam  # x is updated in place
    history: deque = deque(maxlen=EXTRAPOLATE + 1)
    acc, previous, it = None, float("inf"), 0
    rho = prob.residual(op.forward(z)).neg_()
    primal = prob.primal(rho, z)
    for it in range(1, max_iter + 1):  # noqa: B007 (reported)
        grad = op.adjoint(prob.residual(op.forward(x)))
        z_new = prob.prox(x.sub_(grad, alpha=1.0 / L), lam / L)  # x is rebuilt below
        d = z_new - z
        # restart test (x - z_new).d > 0 with x already moved by -grad/L: (x_old - z_new).d
        if float(torch.dot(x.add_(grad, alpha=1.0 / L).sub_(z_new), d)) > 0:
            t_new, x = 1.0, z_new.clone()
        else:
            t_new = 0.5 * (1.0 + (1.0 + 4.0 * t * t) ** 0.5)
            x = torch.add(z_new, d, alpha=(t - 1.0) / t_new)
        z, t = z_new, t_new
        if it % INNER_CHECK:
            continue
        rho = prob.residual(op.forward(z)).neg_()
        primal = prob.primal(rho, z)
        report(it, primal)
        if primal > previous * (1.0 + 1e-3):
            L, x, t = 2.0 * L, z.clone(), 1.0
        previous = primal
        history.append(rho)
        dual = prob.dual(rho, prob.correlation(op.adjoint(rho)))
        acc = _extrapolate(history)
        if acc is not None:
            dual = max(dual, prob.dual(acc, prob.correlation(op.adjoint(acc))))
        if primal - dual <= eps:
            break
    return _Inner(z, rho, L, it, primal, acc)


def _support_solve(K, maps, prob: _Problem, z: torch.Tensor):
    """Active-set finish: conjugate gradients on the support of ``z`` with its signs
    fixed, ``A_S^T A_S z_S = A_S^T y - lam sign(z_S)``; entries whose sign flips leave
    the support and the solve repeats (at most :data:`CG_ROUNDS` times). Returns the new
    full ``z`` and its residual ``y - A z``, or None if no consistent solution came."""
    S = z.nonzero().squeeze(1)
    x = z[S].clone()
    for _ in range(CG_ROUNDS):
        if S.numel() == 0:
            return None
        op = RestrictedConv(K, maps, S)
        sign = torch.sign(x)
        x = _cg(op, prob, x, sign)
        if x is None:
            return None
        keep = torch.sign(x) == sign
        if bool(keep.all()):
            out = torch.zeros_like(z)
            out[S] = x
            return out, prob.residual(op.forward(x)).neg_()
        S, x = S[keep], x[keep]
    return None


def _cg(op: RestrictedConv, prob: _Problem, x: torch.Tensor, sign: torch.Tensor):
    """CG for ``A^T A x = A^T y - lam sign`` from ``x`` until every equation holds to
    ``CG_TOL * lam``; None after :data:`CG_MAX` steps."""
    r = op.adjoint(prob.residual(op.forward(x)).neg_()) - prob.lam * sign  # rhs - A^T A x
    p, rr = r.clone(), float(torch.dot(r, r))
    for _ in range(CG_MAX):
        if float(r.abs().max()) <= CG_TOL * prob.lam:
            return x
        Ap = op.adjoint(op.forward(p).mul_(prob.mask))
        alpha = rr / float(torch.dot(p, Ap))
        x = x.add(p, alpha=alpha)
        r.sub_(Ap, alpha=alpha)
        rr_new = float(torch.dot(r, r))
        p = r.add(p, alpha=rr_new / rr)
        rr = rr_new
    return None


def _certify(dense, prob: _Problem, rho, acc, primal: float) -> tuple[float, torch.Tensor]:
    """Duality gap of the better dual point (``rho`` or its extrapolation ``acc``, each
    rescaled) and the full correlation ``A^T rho`` (maps' shape, flattened)."""
    dual, g = _full_dual(dense, prob, rho)
    if acc is not None:
        dual = max(dual, _full_dual(dense, prob, acc)[0])
    return primal - dual, g


def _finish(K, maps, prob: _Problem, z: torch.Tensor, primal: float):
    """The active-set finish (:func:`_support_solve`) if it lowers the objective:
    ``(z, rho, objective)``, else None."""
    solved = _support_solve(K, maps, prob, z)
    if solved is None:
        return None
    value = prob.primal(solved[1], solved[0])
    return (*solved, value) if value < primal else None


def _image_residual(dense, prob: _Problem, z: torch.Tensor, maps_shape) -> torch.Tensor:
    """``y - A z`` on the padded grid, flattened, from full maps ``z`` (dense product)."""
    rho = torch.zeros(prob.shape, dtype=z.dtype, device=z.device)
    rho[prob.window] = (
        prob.y.view(prob.shape)[prob.window] - dense.forward(z.view(maps_shape)[None])[0]
    )
    return rho.flatten()


def _full_dual(dense, prob: _Problem, rho: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Dual objective at the rescaled ``rho`` and the full ``A^T rho`` (dense adjoint)."""
    g = dense.adjoint(rho.view(prob.shape)[prob.window][None])[0].flatten()
    return prob.dual(rho, prob.correlation(g)), g


def _working_set(g: torch.Tensor, z: torch.Tensor, nonneg: bool) -> torch.Tensor:
    """The support of ``z`` plus the entries whose correlation ``g = A^T rho`` is closest
    to violating ``|g| <= lam`` (``g <= lam`` with ``nonneg``); sorted flat indices."""
    score = g.clone() if nonneg else g.abs()
    score[z != 0] = float("inf")
    size = min(score.numel(), max(WS_START, int(WS_GROWTH * int((z != 0).sum()))))
    return _top(score, size).sort().values


def _top(score: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of the ``size`` largest entries of ``score`` (1-d), in no order.

    A full top-k over millions of entries is slow on the CPU (0.2 s for 150k of 8.6M), so
    a threshold a little below the wanted quantile is estimated on a fixed random sample,
    and the exact top-k runs on the entries above it (all entries if too few are).
    """
    n = score.numel()
    if n > 4 * SCORE_SAMPLE and size < n // 4:
        gen = torch.Generator().manual_seed(0)
        pick = torch.randint(0, n, (SCORE_SAMPLE,), generator=gen).to(score.device)
        tau = torch.quantile(score[pick].double(), 1.0 - 1.5 * size / n)
        cand = (score >= tau).nonzero().squeeze(1)
        if cand.numel() >= size:
            return cand[torch.topk(score[cand], size, sorted=False).indices]
    return torch.topk(score, size, sorted=False).indices


def _solve_one(y, K, lam, *, tol, max_iter, z0, nonneg, callback):
    """One image (c, H, W): returns ``(z (m, Hm, Wm), objective, inner iterations, converged)``;
    ``callback(iterations, objective)`` at every inner check."""
    m, c, s, _ = K.shape
    maps = map_shape(tuple(y.shape[-2:]), s)
    dense = conv_operator(K, tuple(y.shape[-2:]))
    prob = _Problem(y, s, lam, nonneg)
    if z0 is None:  # y - A 0 = y: no transform needed
        z, rho = y.new_zeros(m * maps[0] * maps[1]), prob.y.clone()
    else:
        z = z0.flatten().clone()
        rho = _image_residual(dense, prob, z, (m,) + maps)
    power = torch.zeros_like(z)  # power-iteration vector, kept across working sets
    gen = torch.Generator().manual_seed(0)
    acc, used, converged, primal = None, 0, False, prob.primal(rho, z)
    while True:
        gap, g = _certify(dense, prob, rho, acc, primal)
        if tol * primal < gap <= CG_FROM * primal:
            finished = _finish(K, maps, prob, z, primal)
            if finished is not None:
                z, rho, primal, acc = *finished, None
                if callback is not None:
                    callback(used, primal)
                gap, g = _certify(dense, prob, rho, None, primal)
        if gap <= tol * primal:
            converged = True
            break
        if used >= max_iter:
            break
        ws = _working_set(g, z, nonneg)
        op = RestrictedConv(K, maps, ws)
        steps = POWER_ITERS[0] if used == 0 else POWER_ITERS[1]
        est, power[ws] = _power(op, prob.mask, _start_vector(power[ws], gen), steps)

        def report(it: int, value: float, start: int = used) -> None:
            if callback is not None:
                callback(start + it, value)

        inner = _inner(op, prob, z[ws], max(L_MARGIN * est, 1e-12),
                       INNER_FRACTION * gap, min(INNER_MAX, max_iter - used), report)  # fmt: skip
        used += inner.n_iter
        z.zero_()
        z[ws] = inner.z
        rho, acc, primal = inner.rho, inner.extrapolated, inner.primal
    return z.view((m,) + maps), primal, used, converged


def solve_conv_lasso_ws(
    y: torch.Tensor,
    K: torch.Tensor,
    lam: float,
    *,
    max_iter: int = 5_000,
    tol: float = 1e-4,
    z0: torch.Tensor | None = None,
    nonneg: bool = False,
    callback: Callable[[int, float], None] | None = None,
) -> SolveResult:
    """Convolutional lasso by the working-set method; does not validate.

    y (n, c, H, W), K (m, c, s, s), z0 (n, m, H+s-1, W+s-1) or None. Each image stops when
    its duality gap is at most ``tol`` times its objective (a certificate: relative
    suboptimality <= tol) or after ``max_iter`` inner (restricted FISTA) iterations.
    Images are solved one after the other. ``n_iter`` is the largest number of inner
    iterations any image used; ``objective`` (n,) the primal objectives.
    ``callback(iterations, objective)``, if given, sees the current image's objective at
    every inner check (every :data:`INNER_CHECK` iterations), e.g. to time its descent.
    """
    n = y.shape[0]
    maps, objective = [], torch.empty(n, dtype=torch.float64)
    converged, most = True, 0
    for i in range(n):
        zi, objective[i], used, ok = _solve_one(
            y[i], K, lam, tol=tol, max_iter=max_iter, nonneg=nonneg,
            z0=None if z0 is None else z0[i], callback=callback,
        )  # fmt: skip
        maps.append(zi)
        converged &= ok
        most = max(most, used)
    return SolveResult(torch.stack(maps), most, converged, objective.to(y.dtype))
