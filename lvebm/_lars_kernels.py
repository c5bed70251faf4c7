"""numba kernels of :mod:`lvebm.lars_lasso` (imported on first use: compiling takes seconds).

Shapes: G (k, k), B (n, k), yy (n,) float64, Z (n, k) out. Per row the homotopy keeps
``c = b - G z`` (the correlations, minus the gradient) in float64, the active set ``A``
(atoms in the order they entered) with their signs ``s_A`` and ``M = G_AA^{-1}`` (float64),
updated in ``na^2`` per atom entering or leaving (the homotopy only needs a warm start's
accuracy: the CD/Newton rounds of :mod:`lvebm._cd_kernels` certify every row).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._cd_kernels import _solve_row, row_workspace
from ._numba_scalars import FASTMATH

#: Relative size under which a new Cholesky pivot counts as zero (the atom entering is
#: a combination of the active ones): the homotopy stops there and CD finishes.
_PIVOT_TOL = 1e-10


@njit(fastmath=FASTMATH, cache=True)
def _append(G, A, na, M, u, j):
    """Grow M = G_AA^{-1} (na x na) by atom j as row and column na (bordering: with
    g = G_Aj, u = M g and the Schur complement d = G_jj - g.u, M += u u^T / d and the new
    border is -u / d, 1 / d). Returns d, or 0 if it is ~zero (atom j is a combination of
    A's; M is then left as it was). u (first na entries) holds M g on return."""
    for r in range(na):
        M[na, r] = G[j, A[r]]  # g, parked in the new row until u is known
    d = G[j, j]
    for r in range(na):
        s = 0.0
        for m in range(na):
            s += M[r, m] * M[na, m]
        u[r] = s
    for r in range(na):
        d -= M[na, r] * u[r]
    if d <= _PIVOT_TOL * G[j, j] or d <= 0.0:
        return 0.0
    inv = 1.0 / d
    for r in range(na):
        f = u[r] * inv
        for m in range(na):
            M[r, m] += f * u[m]
        M[r, na] = -f
        M[na, r] = -f
    M[na, na] = inv
    return d


@njit(fastmath=FASTMATH, cache=True)
def _remove(M, na, p, q):
    """Delete atom p from M = G_AA^{-1} (na x na): the inverse of G_AA without row and
    column p is M_{-p,-p} - M_{-p,p} M_{p,-p} / M_pp, stored compacted in place."""
    for m in range(na):
        q[m] = M[p, m]
    f0 = 1.0 / q[p]
    for r in range(na):
        f = q[r] * f0
        for m in range(na):
            M[r, m] -= f * q[m]
    # shift rows and columns after p up and left (row p of the result is row p + 1)
    for r in range(na):
        for m in range(p, na - 1):
            M[r, m] = M[r, m + 1]
    for r in range(p, na - 1):
        for m in range(na - 1):
            M[r, m] = M[r + 1, m]


@njit(fastmath=FASTMATH, cache=True)
def _times(M, sA, na, w):
    """w = M s_A (na x na by na)."""
    for r in range(na):
        s = 0.0
        for m in range(na):
            s += M[r, m] * sA[m]
        w[r] = s


@njit(fastmath=FASTMATH, cache=True)
def _gather_product(G, A, w, na, a):
    """a = G[:, A] w (k) in a's dtype (G's), from G's rows (G is symmetric), four rows
    per pass over a. (2-d indexing throughout: a row view would touch the reference
    count that the threads share.)"""
    k = a.shape[0]
    cast = a.dtype.type
    r = na % 4
    for m in range(k):
        a[m] = 0.0
    for q in range(r):
        wq = cast(w[q])
        i = A[q]
        for m in range(k):
            a[m] += wq * G[i, m]
    while r < na:
        w0, w1, w2, w3 = cast(w[r]), cast(w[r + 1]), cast(w[r + 2]), cast(w[r + 3])
        i0, i1, i2, i3 = A[r], A[r + 1], A[r + 2], A[r + 3]
        for m in range(k):
            a[m] += (w0 * G[i0, m] + w1 * G[i1, m]) + (w2 * G[i2, m] + w3 * G[i3, m])
        r += 4


@njit(fastmath=FASTMATH, cache=True)
def lars_row(G, b, z, lam, nonneg, max_steps, ws):
    """The lasso path of one row from ``lam_max`` down to ``lam`` (LARS with the lasso
    modification: an atom leaves when its coefficient reaches zero).

    Along a segment every active correlation has magnitude ``C`` and ``z_A`` moves by
    ``w = G_AA^{-1} s_A`` per unit decrease of ``C``, so ``c`` moves by ``-a``,
    ``a = G w``; the segment ends where an inactive ``|c_j|`` (``c_j`` if ``nonneg``)
    reaches ``C``, an active coefficient reaches zero, or ``C`` reaches ``lam``.
    Writes z (float64, k); returns the steps taken, or -1 if it stopped early (step cap,
    a singular ``G_AA`` or more active atoms than ``M`` holds), leaving z on the path at
    a larger ``lam`` (a warm start).
    """
    c, a, w, tmp, sA, A, skip, M = ws
    k = b.shape[0]
    C = 0.0
    j_new = -1
    for j in range(k):
        z[j] = 0.0
        c[j] = b[j]
        skip[j] = G[j, j] <= 0.0  # a zero atom never enters
        cj = c[j] if nonneg else abs(c[j])
        if not skip[j] and cj > C:
            C = cj
            j_new = j
    if C <= lam:
        return 0
    na = 0
    steps = 0
    left = -1  # the atom that just left: its |c_j| is C, it must not re-enter at once
    while True:
        if j_new >= 0:  # an atom enters with the sign of its correlation
            d = _append(G, A, na, M, tmp, j_new) if na < M.shape[0] else 0.0
            if d == 0.0:
                return -1
            A[na] = j_new
            sA[na] = 1.0 if c[j_new] > 0 else -1.0
            skip[j_new] = True  # active
            # w = M s_A after bordering: w_A -= kappa u, w_j = kappa, with u = M_old g
            kappa = sA[na]
            for r in range(na):
                kappa -= tmp[r] * sA[r]
            kappa /= d
            for r in range(na):
                w[r] -= kappa * tmp[r]
            w[na] = kappa
            na += 1
        elif left >= 0:  # an atom left: M was deflated, w is computed anew
            _times(M, sA, na, w)
        if steps >= max_steps:
            return -1
        steps += 1
        _gather_product(G, A, w, na, a)
        gamma = C - lam
        j_new = -1
        drop = -1
        # where an inactive c_j reaches +C or -C: t = (C -+ c_j) / (1 -+ a_j), when
        # positive; computed for all j without branches (vectorised), then the least
        for j in range(k):
            num = C - c[j]
            den = 1.0 - a[j]
            t1 = num / den if den > 0.0 and num > 0.0 else np.inf
            num = C + c[j]
            den = 1.0 + a[j]
            t2 = num / den if den > 0.0 and num > 0.0 and not nonneg else np.inf
            t = min(t1, t2)
            tmp[j] = np.inf if skip[j] else t
        if left >= 0:
            tmp[left] = np.inf
        least = np.inf
        for j in range(k):
            least = min(least, tmp[j])
        if least < gamma:
            gamma = least
            for j in range(k):
                if tmp[j] == least:
                    j_new = j
                    break
        for r in range(na):
            zr = z[A[r]]
            if zr * w[r] < 0.0:
                t = -zr / w[r]
                if t < gamma:
                    gamma = t
                    drop = r
                    j_new = -1
        for r in range(na):
            z[A[r]] += gamma * w[r]
        for m in range(k):
            c[m] -= gamma * a[m]
        C -= gamma
        left = -1
        if drop >= 0:  # the coefficient reached zero: the atom leaves
            left = A[drop]
            z[left] = 0.0
            skip[left] = False
            for r in range(drop, na - 1):
                A[r] = A[r + 1]
                sA[r] = sA[r + 1]
            _remove(M, na, drop, tmp)
            na -= 1
        elif j_new < 0:
            return steps


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def lars_rows(
    G, B, yy, Z, lam, nonneg, tol, slack, max_steps, max_active, max_sweeps, block,
    max_rounds, max_fact, steps, rounds, obj,
):  # fmt: skip
    """Every row of B: the homotopy into Z, then CD/Newton rounds (``_solve_row``) until
    the duality gap rule holds; steps[i], rounds[i] (-1: not converged) and obj[i] get
    row i's homotopy steps (-1: stopped early), polishing rounds and objective. At most
    ``max_active`` atoms are active at once (M is that size)."""
    n, k = B.shape
    nblocks = (n + block - 1) // block
    for blk in prange(nblocks):
        path_ws = (
            np.empty(k, np.float64),
            np.empty(k, G.dtype),
            np.empty(k, np.float64),
            np.empty(k, np.float64),
            np.empty(k, np.float64),
            np.empty(k, np.int64),
            np.empty(k, np.bool_),
            np.empty((max_active, max_active), np.float64),
        )
        cd_ws = row_workspace(G)
        zrow = np.empty(k, np.float64)
        for i in range(blk * block, min(n, (blk + 1) * block)):
            steps[i] = lars_row(G, B[i], zrow, lam, nonneg, max_steps, path_ws)
            for j in range(k):
                Z[i, j] = zrow[j]
            rounds[i], obj[i] = _solve_row(
                G, B[i], yy[i], Z[i], lam, nonneg, tol, slack, max_sweeps, max_rounds,
                max_fact, cd_ws,
            )  # fmt: skip
