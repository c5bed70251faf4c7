"""Proximal-gradient solvers: ISTA and FISTA on ``f(z) + lam * R(z)``.

``f`` is a smooth data term given as an object with ``grad(z)`` and ``value(z)``
(per sample); the two provided are the least-squares term
``f(z) = 0.5*||y - A z||^2`` on a :class:`~lvebm.operators.LinearOperator`, and its
Gram form (``G = W^T W``, ``b = y W``), which is cheaper when there are many samples
and the dictionary has fewer atoms than twice the signal dimension.

Only this module holds iteration logic. The functions do not validate their
arguments; the public entry points (``sparse_encode``, the models) do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple, Protocol

import torch

from .compiled import maybe_compiled
from .operators import LinearOperator
from .ops import _nonneg_shrink, _shrink
from .regularizers import L1, NonNegL1, Regularizer

__all__ = [
    "SolveResult",
    "LeastSquares",
    "GramLeastSquares",
    "WithPrediction",
    "fista",
    "ista",
    "prox_gradient",
]

#: Step halvings tried per iteration by the backtracking line search.
MAX_BACKTRACK = 60


class SolveResult(NamedTuple):
    """What a solver returns.

    z : codes, shape (n, ...)
    n_iter : iterations run
    converged : whether every sample met the stopping rule before ``max_iter``
    objective : final ``f(z) + lam*R(z)`` per sample, shape (n,)
    """

    z: torch.Tensor
    n_iter: int
    converged: bool
    objective: torch.Tensor


class SmoothTerm(Protocol):
    def grad(self, z: torch.Tensor) -> torch.Tensor: ...

    def value(self, z: torch.Tensor) -> torch.Tensor: ...


class DifferentiableTerm(Protocol):
    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


class LeastSquares:
    """``f(z) = 0.5*||y - A z||^2`` per sample, for any linear operator ``A``."""

    def __init__(self, y: torch.Tensor, op: LinearOperator):
        self.y, self.op = y, op

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(self.op.forward(z) - self.y)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        r = self.op.forward(z) - self.y
        return 0.5 * r.reshape(r.shape[0], -1).pow(2).sum(dim=1)


class GramLeastSquares:
    """``f(z) = 0.5*||y||^2 - z.b + 0.5*z^T G z`` with ``G = W^T W`` (k, k), ``b = y W`` (n, k).

    Equal to ``0.5*||y - W z||^2`` without touching ``y`` inside the loop.
    """

    def __init__(self, G: torch.Tensor, b: torch.Tensor, yy: torch.Tensor):
        self.G, self.b, self.yy = G, b, yy

    @classmethod
    def from_dictionary(cls, y: torch.Tensor, W: torch.Tensor) -> GramLeastSquares:
        return cls(W.T @ W, y @ W, y.pow(2).sum(dim=1))

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.G - self.b  # (n, k)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        Gz = z @ self.G
        return torch.clamp(0.5 * self.yy - (z * self.b).sum(1) + 0.5 * (z * Gz).sum(1), min=0)


class WithPrediction:
    """``f(z) + 0.5*alpha*||z - p||^2`` per sample: a smooth term plus a pull towards ``p``.

    The inference energy of predictive sparse decomposition, where ``p = Enc(y)`` is an
    encoder's prediction of the code (same shape as ``z``). Its gradient's Lipschitz
    constant is ``f``'s plus ``alpha``.
    """

    def __init__(self, f: SmoothTerm, p: torch.Tensor, alpha: float):
        self.f, self.p, self.alpha = f, p, alpha

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        return self.f.grad(z) + self.alpha * (z - self.p)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        d = (z - self.p).reshape(z.shape[0], -1)
        return self.f.value(z) + 0.5 * self.alpha * d.pow(2).sum(1)


def _row_norms(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1)


def _update_step(reg: Regularizer, numel: int) -> tuple[Callable, bool]:
    """The elementwise part of a FISTA iteration for ``reg`` and whether it is compiled:
    fused by ``torch.compile`` for large iterates with an L1 penalty
    (:mod:`lvebm.compiled`), eager otherwise."""
    fn = {L1: _l1_update, NonNegL1: _nonneg_l1_update}.get(type(reg))
    if fn is None:
        return partial(_fista_update, reg.prox), False
    update = maybe_compiled(fn, numel)
    return update, update is not fn


def _l1_update(x, g, z, t, step, thresh, accelerate: bool, restart: bool):
    return _fista_update(_shrink, x, g, z, t, step, thresh, accelerate, restart)


def _nonneg_l1_update(x, g, z, t, step, thresh, accelerate: bool, restart: bool):
    return _fista_update(_nonneg_shrink, x, g, z, t, step, thresh, accelerate, restart)


def _fista_update(prox, x, g, z, t, step, thresh, accelerate: bool, restart: bool):
    """One (F)ISTA update from the extrapolated point ``x`` (n, ...) and ``g = grad f(x)``.

    Returns ``(z_new, x_new, t_new, ||z_new - z||, ||z_new||)`` (norms per sample, (n,)).
    With ``restart``, a sample's momentum is reset when ``(x - z_new).(z_new - z) > 0``.
    """
    z_new = prox(x - step * g, thresh)
    diff = z_new - z
    if accelerate:
        t_new = 0.5 * (1.0 + torch.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_new
        if restart:
            uphill = _row_dots(x - z_new, diff) > 0
            beta = torch.where(uphill, torch.zeros_like(beta), beta)
            t_new = torch.where(uphill, torch.ones_like(t_new), t_new)
        x_new = z_new + _per_row(beta, diff) * diff
    else:
        t_new, x_new = t, z_new
    return z_new, x_new, t_new, _row_norms(diff), _row_norms(z_new)


def _row_dots(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner products of two (n, ...) tensors, (n,)."""
    return torch.linalg.vecdot(a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1))


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector (n,) to broadcast against ``like`` (n, ...)."""
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def fista(
    f: SmoothTerm,
    reg: Regularizer,
    z0: torch.Tensor,
    *,
    lam: float,
    L: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
    restart: bool = True,
    accelerate: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> SolveResult:
    """Minimise ``f(z) + lam*R(z)`` per sample by FISTA (Beck & Teboulle 2009).

    Step ``1/L`` with ``L`` the Lipschitz constant of ``grad f``. Momentum is kept per
    sample; with ``restart`` a sample's momentum is reset when it points uphill
    (gradient scheme of O'Donoghue & Candes 2015). Stops when every sample's relative
    change ``||z_t - z_{t-1}|| <= tol * ||z_t||`` (a zero code counts as converged when
    it stops moving). ``accelerate=False`` gives ISTA. ``callback(t, z_t)``, if given,
    sees every iterate (t = 1, 2, ...), e.g. to record an error-versus-iterations curve.

    Parameters
    ----------
    f : smooth term with ``grad`` and ``value``
    reg : regularizer with ``prox``
    z0 : starting codes (n, ...), not modified
    lam, L : weight of ``R`` and Lipschitz constant (> 0)
    """
    step = 1.0 / L
    z = z0.clone()
    x = z.clone()
    t = torch.ones(z.shape[0], dtype=z.dtype, device=z.device)
    converged = False
    n_iter = 0
    update, compiled = _update_step(reg, z.numel())
    step_t, thresh_t = step, step * lam
    if compiled:  # 0-d tensors, so that the compiled update is not specialised to one step
        step_t, thresh_t = (z.new_tensor(v) for v in (step, step * lam))
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        z, x, t, change, norm = update(x, f.grad(x), z, t, step_t, thresh_t, accelerate, restart)
        if callback is not None:
            callback(n_iter, z)
        if bool((change <= tol * norm).all()):
            converged = True
            break
    objective = f.value(z) + lam * reg.value(z)
    return SolveResult(z, n_iter, converged, objective)


def ista(
    f: SmoothTerm,
    reg: Regularizer,
    z0: torch.Tensor,
    *,
    lam: float,
    L: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> SolveResult:
    """Minimise ``f(z) + lam*R(z)`` by ISTA: ``z <- prox_{lam/L}(z - grad f(z) / L)``.

    Same stopping rule and return value as :func:`fista`.
    """
    return fista(f, reg, z0, lam=lam, L=L, max_iter=max_iter, tol=tol, accelerate=False)


def _smooth_part(
    f: DifferentiableTerm, reg: Regularizer, lam: float, z: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value (n,) and gradient of the part handled by gradient steps (f, plus lam*R if smooth)."""
    v, g = f.value_and_grad(z)
    if reg.smooth:
        v, g = v + lam * reg.value(z), g + lam * reg.grad(z)
    return v, g


def prox_gradient(
    f: DifferentiableTerm,
    reg: Regularizer,
    z0: torch.Tensor,
    *,
    lam: float,
    L0: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> SolveResult:
    """Minimise ``f(z) + lam*R(z)`` per sample with a per-sample backtracking line search.

    For any differentiable ``f`` (a decoder's cost through autograd, not necessarily
    convex) whose Lipschitz constant is unknown. A non-smooth ``R`` is handled by its
    prox, ``z <- prox_{lam/L}(z - grad f(z) / L)``; a smooth one (``reg.smooth``) by
    plain gradient steps on ``f + lam*R``. Each sample keeps its own ``L``: doubled
    until the sufficient-decrease test of Beck & Teboulle (2009, sec. 4)
    ``f(z+) <= f(z) + <g, z+ - z> + L/2 ||z+ - z||^2`` holds, then relaxed by a factor
    ``0.8`` after a clear decrease so that steps can grow again. Each accepted step does
    not increase the objective, so for non-convex ``f`` it reaches a stationary point.
    Stops when every sample's relative change is at most ``tol`` (as :func:`fista`).
    """
    n = z0.shape[0]
    z = z0.clone()
    L = torch.full((n,), float(L0), dtype=z.dtype, device=z.device)
    fz, g = _smooth_part(f, reg, lam, z)
    slack = 10 * torch.finfo(z.dtype).eps
    converged, n_iter = False, 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (n_iter is reported)
        for _ in range(MAX_BACKTRACK):
            step = _per_row(1.0 / L, z)
            v = z - step * g
            z_new = v if reg.smooth else reg.prox(v, step * lam)
            f_new, g_new = _smooth_part(f, reg, lam, z_new)
            d = z_new - z
            bound = fz + (g * d).reshape(n, -1).sum(1) + 0.5 * L * _row_norms(d).pow(2)
            ok = f_new <= bound + slack * (1.0 + fz.abs())
            if bool(ok.all()):
                break
            L = torch.where(ok, L, 2.0 * L)
        # relax L only while the decrease is far above round-off; near the minimum the
        # test is decided by rounding, and relaxing there makes the iterates oscillate
        reliable = fz - f_new > 1e4 * slack * (1.0 + fz.abs())
        L = torch.where(reliable, 0.8 * L, L)
        z, fz, g = z_new, f_new, g_new
        if bool((_row_norms(d) <= tol * _row_norms(z)).all()):
            converged = True
            break
    objective = fz if reg.smooth else fz + lam * reg.value(z)
    return SolveResult(z, n_iter, converged, objective)
