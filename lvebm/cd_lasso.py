"""Batched lasso by coordinate descent with a Newton finish, one row at a time (CPU).

Objective per row, in Gram form (``b = W^T y``, ``G = W^T W``, ``yy = ||y||^2``)::

    0.5 * z^T G z - b^T z + 0.5 * yy + lam * ||z||_1  ==  0.5 * ||y - W z||^2 + lam * ||z||_1

(with ``z >= 0`` as well when ``nonneg``). Each row runs, in compiled code (numba):

1. a sweep of exact coordinate minimisations over all ``k`` coordinates, keeping the
   gradient ``g = G z - b`` current (a change ``d`` of ``z_j`` adds ``d * G[j]`` to ``g``);
2. sweeps over the nonzero coordinates only, on the gathered ``G_AA`` (cost ``|A|`` per
   change instead of ``k``), until the objective still to go is small;
3. a Newton step on the support ``S``: ``x = G_SS^{-1} (b_S - lam * sign(z_S))`` by a
   float64 Cholesky factorisation, taken up to the first sign change (inside the orthant
   the objective is a convex quadratic minimised at ``x``, so it decreases all the way);
   coordinates that reach zero leave the support and the step is solved again;
4. ``g`` recomputed exactly from the support, and the duality gap of the rescaled
   residual (as in :func:`lvebm.lasso.duality_gap`); the row stops when the gap is at
   most ``tol`` times its objective (plus a round-off allowance), else back to 1.

When the support is right, step 3 lands on the exact optimum, so rows finish with a gap
at round-off level after a few rounds. The work per row grows with the support size
``s`` (``s^3 / 6`` per factorisation, ``s^2`` per sweep), not with ``k^2`` as a
batched FISTA iteration does; :func:`prefer_cd` compares the two.
"""

from __future__ import annotations

import numpy as np
import torch

from ._numba import torch_threads

__all__ = ["cd_lasso", "prefer_cd"]

#: Rows per work item of the parallel loop (each item allocates its scratch once).
_BLOCK = 8
#: Newton rounds (each ends with an exact gap check) before a row is left unfinished.
_MAX_ROUNDS = 50
#: Factorisations per round: each drops the coordinates whose sign would change.
_MAX_FACTORISATIONS = 8
#: Relative throughput per flop of a vmfista iteration (batched matmul plus the fused
#: numba update) against CD's per-row compiled code on a CPU, fitted to the digits
#: (CD started by 8 vmfista iterations / vmfista time: 0.66 at support 34, 0.93 at 53);
#: used by :func:`prefer_cd`.
_BATCH_ADVANTAGE = 25.0


def prefer_cd(mean_support: float, k: int) -> bool:
    """Whether CD should beat batched vmfista at this mean support size and ``k`` atoms.

    Flop model per row, from the counts measured on the digits (about 4 factorisations,
    30 active sweeps and 4 full-gradient refreshes per row for CD, 40 iterations for
    vmfista): ``4 s^3 / 6 + 30 s^2 + 4 s k`` for CD against ``2 k^2 * 40`` for vmfista,
    whose iterations run ``_BATCH_ADVANTAGE`` times faster per flop. On 256 digit atoms
    the crossover is near ``s = 50``: CD (started by a few vmfista iterations, as
    ``sparse_encode`` runs it) measured 1.5x faster at ``s = 34`` (lam 0.5), 1.1x at
    ``s = 53`` (lam 0.3), and 3-4x slower at ``s = 101`` (lam 0.1).
    """
    s = float(mean_support)
    cd = 4 * s**3 / 6 + 30 * s**2 + 4 * s * k
    batch = 2.0 * k * k * 40 / _BATCH_ADVANTAGE
    return cd < batch


def cd_lasso(
    b: torch.Tensor,
    G: torch.Tensor,
    yy: torch.Tensor,
    lam: float,
    *,
    nonneg: bool = False,
    tol: float = 1e-6,
    max_iter: int = 1000,
    z0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve the batched lasso in Gram form by CD with a Newton finish (CPU tensors).

    b (n, k) = Y W, G (k, k) = W^T W, yy (n,) = row norms of Y squared, z0 (n, k) or None.
    Returns ``(z, rounds, objective)``: codes (n, k) in ``b``'s dtype; per row the Newton
    rounds run (``max_iter`` caps the sweeps per row; a row that used them all without
    meeting the gap rule gets ``-1``); per row the objective (n,) in float64.
    Uses ``torch.get_num_threads()`` threads.
    """
    from . import _cd_kernels as kernels  # compiles, or loads numba's cache, on first use

    Bn = b.detach().contiguous().numpy()
    Gn = G.detach().contiguous().numpy()
    yyn = yy.detach().to(torch.float64).contiguous().numpy()
    Z = np.zeros_like(Bn) if z0 is None else z0.detach().to(b.dtype).numpy().copy()
    rounds = np.zeros(len(Bn), np.int64)
    objective = np.zeros(len(Bn), np.float64)
    eps = float(np.finfo(Bn.dtype).eps)
    with torch_threads():
        kernels.cd_rows(
            Gn, Bn, yyn, Z, float(lam), bool(nonneg), float(tol), 10.0 * eps, int(max_iter),
            _BLOCK, _MAX_ROUNDS, _MAX_FACTORISATIONS, rounds, objective,
        )  # fmt: skip
    return torch.from_numpy(Z), torch.from_numpy(rounds), torch.from_numpy(objective)
