"""numba kernels of :mod:`lvebm.fast_lasso`: a vmfista iteration's elementwise part and
its duality gap, each one pass per row (imported on first use: compiling takes seconds).

Shapes (m rows of the working set, k atoms, ``kp >= k + 1`` padded width): z, d (m, k)
updated in place; ``vz`` (m, kp) holds ``[v | z.u | 0]`` from the matmul (see
``fast_lasso._forward_matrix``), ``vz_prev`` the same one iteration back; t, alpha, bu,
yy (m,); ba (m, kp) is ``[b/a | 0]``; u, uu (k,). The arithmetic is the torch update's
(``fast_lasso._vm_update`` / ``_objectives``), fused so every row stays in cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba_scalars import FASTMATH, shrink


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def vm_update(z, d, vz, vz_prev, t, alpha, bu, u, uu, a, c, l1, lam, nonneg):
    """One variable-metric FISTA update of every row, in place on z, d, t, alpha.

    Per row: momentum ``beta``; forward point ``w = w0 + omega u`` with ``w0`` the lerp
    of ``v_prev`` and ``v`` by ``1 + beta``; one Newton step on the metric prox's scalar
    ``alpha``; then the prox, the change ``d``, and the restart test.
    """
    m, k = z.shape
    theta = lam / a
    for i in prange(m):
        ti = t[i]
        t_new = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * ti * ti))
        beta = (ti - 1.0) / t_new
        xu = vz[i, k] + beta * (vz[i, k] - vz_prev[i, k])
        grad_u = (l1 * xu - bu[i]) / a
        omega = (c / (a + c)) * grad_u
        wu = xu - grad_u + omega
        v, vp, zi, di = vz[i], vz_prev[i], z[i], d[i]
        coef = omega - alpha[i] / a
        zu = 0.0
        active_uu = 0.0
        for j in range(k):
            zj = shrink(vp[j] + (1.0 + beta) * (v[j] - vp[j]) + coef * u[j], theta, nonneg)
            zu += zj * u[j]
            if zj != 0.0:
                active_uu += uu[j]
        phi = alpha[i] - c * (zu - wu)
        alpha[i] -= phi / (1.0 + (c / a) * active_uu)
        coef = omega - alpha[i] / a
        dd = 0.0
        nn = 0.0
        for j in range(k):
            zj = shrink(vp[j] + (1.0 + beta) * (v[j] - vp[j]) + coef * u[j], theta, nonneg)
            dj = zj - zi[j]
            dd += di[j] * dj
            nn += dj * dj
            zi[j] = zj
            di[j] = dj
        t[i] = 1.0 if beta * dd > nn else t_new


@njit(fastmath=FASTMATH, parallel=True, cache=True)
def vm_objectives(z, vz, ba, yy, a, lam, nonneg, gap, primal):
    """Duality gap and primal objective of every row into gap, primal (m,).

    With ``e = v - z``: ``W^T r = a e``, ``z.b = a z.ba``, ``z.zG = z.b - a z.e``; the dual
    point scales the residual by ``min(1, lam / ||W^T r||_inf)`` (one-sided if nonneg).
    """
    m, k = z.shape
    tiny = np.finfo(z.dtype).tiny
    for i in prange(m):
        zb = 0.0
        ze = 0.0
        z_l1 = 0.0
        corr = 0.0
        for j in range(k):
            zj = z[i, j]
            e = vz[i, j] - zj
            zb += zj * ba[i, j]
            ze += zj * e
            z_l1 += abs(zj)
            corr = max(corr, e if nonneg else abs(e))
        zb *= a
        rr = max(yy[i] - 2.0 * zb + (zb - a * ze), 0.0)
        p = 0.5 * rr + lam * z_l1
        s = min(lam / max(a * corr, tiny), 1.0)
        primal[i] = p
        gap[i] = max(p - (s * (yy[i] - zb) - 0.5 * s * s * rr), 0.0)
