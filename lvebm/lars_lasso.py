"""Batched lasso by homotopy (LARS with the lasso modification), one row at a time (CPU).

Objective per row, in Gram form (``b = W^T y``, ``G = W^T W``, ``yy = ||y||^2``)::

    0.5 * z^T G z - b^T z + 0.5 * yy + lam * ||z||_1  ==  0.5 * ||y - W z||^2 + lam * ||z||_1

(with ``z >= 0`` as well when ``nonneg``). The solution is piecewise linear in ``lam``
(Efron, Hastie, Johnstone & Tibshirani 2004; Osborne, Presnell & Turlach 2000). Each row,
in compiled code (numba, :mod:`lvebm._lars_kernels`), follows it from
``lam_max = ||b||_inf``, where ``z = 0``, down to ``lam``: along a segment the active
atoms ``A`` keep ``|c_A| = C`` (``c = b - G z``) and ``z_A`` moves by
``G_AA^{-1} sign(c_A)`` per unit decrease of ``C``; a segment ends where another atom's
correlation reaches ``C`` (it enters) or an active coefficient reaches zero (it leaves).
A step costs ``k * |A|`` for ``G[:, A] w`` and ``|A|^2`` for the inverse of ``G_AA``,
kept by bordering and deflation; the whole path about ``k s^2 / 2`` for ``s`` nonzeros
at the end, without iterations whose count depends on the conditioning of ``G``.

Every row is then certified as :mod:`lvebm.cd_lasso` certifies its rows: the exact
gradient and the duality gap from the codes; a row that fails the gap rule (round-off
on an ill-conditioned ``G_AA``, or a path cut short by the step cap or a singular
``G_AA``) goes on by CD/Newton rounds from where the path left it.
"""

from __future__ import annotations

import numpy as np
import torch

from ._numba import torch_threads
from .cd_lasso import _BLOCK, _MAX_FACTORISATIONS, _MAX_ROUNDS

__all__ = ["lars_lasso", "prefer_lars"]

#: Rows per work item of the parallel loop (each item allocates its scratch once; 64
#: measured 10-20% faster than 8 on the digits).
_LARS_BLOCK = 8 * _BLOCK
#: Relative throughput per flop of a vmfista iteration against the homotopy's per-row
#: steps, fitted to the digits (lars/vmfista time: 0.48 at 34 nonzeros, 0.8 at 53, 2.2
#: at 101); used by :func:`prefer_lars`.
_BATCH_ADVANTAGE = 10.0


def prefer_lars(mean_support: float, k: int) -> bool:
    """Whether the homotopy should beat batched vmfista at this mean support size and
    ``k`` atoms.

    Cost model per row: about ``s`` steps of ``k * (s / 2) + 4 k`` (the product with the
    active atoms and the scan for the next event) against ``2 k^2`` per vmfista
    iteration times 40 iterations, whose batched matmuls run ``_BATCH_ADVANTAGE`` times
    faster per flop. On 256 digit atoms the crossover is near ``s = 60``.
    """
    s = float(mean_support)
    lars = s * (k * s / 2 + 4 * k)
    batch = 2.0 * k * k * 40 / _BATCH_ADVANTAGE
    return lars < batch


def lars_lasso(
    b: torch.Tensor,
    G: torch.Tensor,
    yy: torch.Tensor,
    lam: float,
    *,
    nonneg: bool = False,
    tol: float = 1e-6,
    max_iter: int = 1000,
    max_active: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve the batched lasso in Gram form by homotopy, then certify (CPU tensors).

    b (n, k) = Y W, G (k, k) = W^T W, yy (n,) = row norms of Y squared. ``tol``: the
    duality-gap rule of :func:`lvebm.cd_lasso.cd_lasso`; ``max_iter`` caps the homotopy
    steps per row (at least ``4 k``) and the CD sweeps of a row that needs them;
    ``max_active`` (default ``k``) the active atoms (rank of ``W`` is enough: more are
    linearly dependent). Returns ``(z, steps, rounds, objective)``: codes (n, k) in
    ``b``'s dtype; per row the homotopy steps (-1: cut short), the CD rounds after it
    (0: the path's end met the gap rule; -1: not converged) and the objective (n,) in
    float64. Uses ``torch.get_num_threads()`` threads.
    """
    from . import _lars_kernels as kernels  # compiles, or loads numba's cache, on first use

    Bn = b.detach().contiguous().numpy()
    Gn = G.detach().contiguous().numpy()
    yyn = yy.detach().to(torch.float64).contiguous().numpy()
    n, k = Bn.shape
    Z = np.zeros_like(Bn)
    steps = np.zeros(n, np.int64)
    rounds = np.zeros(n, np.int64)
    objective = np.zeros(n, np.float64)
    eps = float(np.finfo(Bn.dtype).eps)
    active = k if max_active is None else max(1, min(k, int(max_active)))
    with torch_threads():
        kernels.lars_rows(
            Gn, Bn, yyn, Z, float(lam), bool(nonneg), float(tol), 10.0 * eps,
            max(int(max_iter), 4 * k), active, int(max_iter), _LARS_BLOCK, _MAX_ROUNDS,
            _MAX_FACTORISATIONS, steps, rounds, objective,
        )  # fmt: skip
    return (
        torch.from_numpy(Z),
        torch.from_numpy(steps),
        torch.from_numpy(rounds),
        torch.from_numpy(objective),
    )
