"""numba kernels of :mod:`lvebm.cd_lasso` (imported on first use: compiling takes seconds).

Shapes: G (k, k), B (n, k), yy (n,) float64, Z (n, k) in/out. The diagonal of G need not
be one; a coordinate whose atom is zero (``G_jj == 0``) stays at zero.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_scalars import FASTMATH, shrink


@njit(fastmath=FASTMATH, inline="always")
def _minimise_coordinate(G, z, g, j, n, lam, nonneg):
    """Exact minimisation over z[j] of 0.5 z.G z - b.z + lam ||z||_1 on the first n
    coordinates, keeping g = G z - b current on them; returns the objective change."""
    zj = z[j]
    gj = g[j]
    gjj = G[j, j]
    zn = shrink(zj - gj / gjj, lam / gjj, nonneg)
    d = zn - zj
    if d == 0.0:
        return 0.0
    z[j] = zn
    Gj = G[j]
    for m in range(n):
        g[m] += d * Gj[m]
    return d * gj + 0.5 * d * d * gjj + lam * (abs(zn) - abs(zj))


@njit(fastmath=FASTMATH, cache=True)
def _full_sweep(G, z, g, lam, nonneg, A):
    """One pass over every coordinate; g = G z - b kept current. Lists the support in A.

    Returns (objective change, support size).
    """
    k = z.shape[0]
    change = 0.0
    na = 0
    for j in range(k):
        gjj = G[j, j]
        if gjj <= 0.0:
            continue
        change += _minimise_coordinate(G, z, g, j, k, lam, nonneg)
        if z[j] != 0.0:
            A[na] = j
            na += 1
    return change, na


@njit(fastmath=FASTMATH, cache=True)
def _active_sweeps(GA, gA, zA, na, lam, nonneg, tol, objective, max_sweeps):
    """Sweeps over the gathered support problem (GA (na, na), gA, zA) until the objective
    still to go (last decrease, scaled by rho/(1-rho) when decreases shrink by rho) is at
    most ``tol * objective`` twice in a row. Returns (objective, sweeps)."""
    drop_prev = -1.0
    small_prev = False
    sweeps = 0
    while sweeps < max_sweeps:
        change = 0.0
        for a in range(na):
            change += _minimise_coordinate(GA, zA, gA, a, na, lam, nonneg)
        objective += change
        sweeps += 1
        drop = -change
        rho = 0.0
        if drop_prev > 0.0:
            rho = min(drop / drop_prev, 0.99)
        remaining = drop * max(1.0, rho / (1.0 - rho))
        small = remaining <= tol * objective
        if small and small_prev:
            break
        small_prev = small
        drop_prev = drop
    return objective, sweeps


@njit(fastmath=FASTMATH, cache=True)
def _newton(G, b, z, S, ns, lam, L, x):
    """x = G_SS^{-1} (b_S - lam sign(z_S)) in float64; returns the step length t in (0, 1]
    that reaches the first sign change of z_S + t (x - z_S), or -1 if G_SS is singular."""
    for r in range(ns):
        Gr = G[S[r]]
        for c in range(r + 1):
            L[r, c] = Gr[S[c]]
    for j in range(ns):
        s = L[j, j]
        Lj = L[j]
        for m in range(j):
            s -= Lj[m] * Lj[m]
        if s <= 1e-9 * L[j, j] or s <= 0.0:
            return -1.0
        dj = np.sqrt(s)
        L[j, j] = dj
        inv = 1.0 / dj
        for r in range(j + 1, ns):
            Lr = L[r]
            s2 = Lr[j]
            for m in range(j):
                s2 -= Lr[m] * Lj[m]
            Lr[j] = s2 * inv
    for r in range(ns):
        s = b[S[r]] - (lam if z[S[r]] > 0 else -lam)
        Lr = L[r]
        for m in range(r):
            s -= Lr[m] * x[m]
        x[r] = s / Lr[r]
    for r in range(ns - 1, -1, -1):
        s = x[r]
        for m in range(r + 1, ns):
            s -= L[m, r] * x[m]
        x[r] = s / L[r, r]
    t = 1.0
    for r in range(ns):
        zr = z[S[r]]
        if (x[r] > 0) != (zr > 0):
            tr = zr / (zr - x[r])
            if tr < t:
                t = tr
    return t


@njit(fastmath=FASTMATH, cache=True)
def _step(z, S, ns, x, t):
    """z_S += t (x - z_S), zeroing coordinates that reach (or cross) zero; returns the new
    support size (S compacted in place)."""
    kept = 0
    for r in range(ns):
        j = S[r]
        zr = z[j]
        v = zr + t * (x[r] - zr)
        if t < 1.0 and ((v > 0) != (zr > 0) or abs(v) <= 1e-6 * abs(zr)):
            v = 0.0
        z[j] = v
        if v != 0.0:
            S[kept] = j
            kept += 1
    return kept


@njit(fastmath=FASTMATH, cache=True)
def _gradient(G, b, z, g):
    """g = G z - b from the nonzeros of z."""
    k = z.shape[0]
    for m in range(k):
        g[m] = -b[m]
    for j in range(k):
        v = z[j]
        if v != 0.0:
            Gj = G[j]
            for m in range(k):
                g[m] += v * Gj[m]


@njit(fastmath=FASTMATH, cache=True)
def _gap(z, g, b, yy, lam, nonneg):
    """(objective, duality gap) from g = G z - b; the dual point is the residual
    r = y - W z scaled into the feasible set (|W^T theta| <= lam, or W^T theta <= lam)."""
    k = z.shape[0]
    zg = 0.0
    zb = 0.0
    l1 = 0.0
    worst = 0.0
    for j in range(k):
        zg += z[j] * g[j]
        zb += z[j] * b[j]
        l1 += abs(z[j])
        v = -g[j] if nonneg else abs(g[j])
        if v > worst:
            worst = v
    rr = max(yy - zb + zg, 0.0)  # ||y - W z||^2 = yy - 2 b.z + z.G z, z.G z = z.(g + b)
    primal = 0.5 * rr + lam * l1
    s = 1.0 if worst <= lam else lam / worst
    dual = s * (yy - zb) - 0.5 * s * s * rr  # y.theta - ||theta||^2 / 2, theta = s r
    return primal, primal - dual


@njit(cache=True)
def row_workspace(G):
    """Scratch arrays of :func:`_solve_row` for the Gram matrix G (k, k): the gradient,
    the support's indices, its Gram block, gradient and codes (in G's dtype), the
    Cholesky factor and the Newton direction (float64)."""
    k = G.shape[0]
    return (
        np.empty(k, G.dtype),
        np.empty(k, np.int64),
        np.empty((k, k), G.dtype),
        np.empty(k, G.dtype),
        np.empty(k, G.dtype),
        np.empty((k, k), np.float64),
        np.empty(k, np.float64),
    )


@njit(fastmath=FASTMATH, cache=True)
def _solve_row(G, b, yy, z, lam, nonneg, tol, slack, max_sweeps, max_rounds, max_fact, ws):
    """One row (see the module docstring of lvebm.cd_lasso); returns (rounds run, or -1 if
    the sweep budget ran out first; the row's objective)."""
    g, A, GA, gA, zA, L, x = ws
    _gradient(G, b, z, g)
    primal, gap = _gap(z, g, b, yy, lam, nonneg)
    if gap <= tol * primal + slack * yy:
        return 0, primal
    sweeps = 0
    newton_ok = True
    for rounds in range(1, max_rounds + 1):
        change, na = _full_sweep(G, z, g, lam, nonneg, A)
        sweeps += 1
        objective = primal + change
        for a in range(na):
            ja = A[a]
            gA[a] = g[ja]
            zA[a] = z[ja]
            Gj = G[ja]
            for c in range(na):
                GA[a, c] = Gj[A[c]]
        inner_tol = 1e-3 / rounds if newton_ok else tol
        objective, used = _active_sweeps(
            GA, gA, zA, na, lam, nonneg, inner_tol, objective, max_sweeps - sweeps
        )
        sweeps += used
        for a in range(na):
            z[A[a]] = zA[a]
        if newton_ok:
            ns = 0
            for a in range(na):
                if zA[a] != 0.0:
                    A[ns] = A[a]
                    ns += 1
            for _ in range(max_fact):
                if ns == 0:
                    break
                t = _newton(G, b, z, A, ns, lam, L, x)
                if t < 0.0:
                    newton_ok = False
                    break
                ns = _step(z, A, ns, x, t)
                if t >= 1.0:
                    break
        _gradient(G, b, z, g)
        primal, gap = _gap(z, g, b, yy, lam, nonneg)
        if gap <= tol * primal + slack * yy:
            return rounds, primal
        if sweeps >= max_sweeps:
            return -1, primal
    return -1, primal


@njit(fastmath=FASTMATH, cache=True, parallel=True)
def cd_rows(
    G, B, yy, Z, lam, nonneg, tol, slack, max_sweeps, block, max_rounds, max_fact, rounds, obj
):
    """Solve every row of B into Z (warm start: Z's entries); rounds[i] and obj[i] get
    row i's rounds (-1: not converged) and objective."""
    n, k = B.shape
    nblocks = (n + block - 1) // block
    for blk in prange(nblocks):
        ws = row_workspace(G)
        for i in range(blk * block, min(n, (blk + 1) * block)):
            rounds[i], obj[i] = _solve_row(
                G, B[i], yy[i], Z[i], lam, nonneg, tol, slack, max_sweeps, max_rounds,
                max_fact, ws,
            )  # fmt: skip
