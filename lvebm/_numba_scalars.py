"""Scalar pieces shared by the numba kernels (:mod:`lvebm._cd_kernels`,
:mod:`lvebm._vm_kernels`); importing this module imports numba."""

from __future__ import annotations

from numba import njit

#: numba's fast-math flags without "nnan"/"ninf" (the kernels compare against zero and
#: thresholds and must stay correct if a value overflows).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(fastmath=FASTMATH, inline="always")
def shrink(u, t, nonneg):
    """Soft thresholding of the scalar ``u`` by ``t >= 0`` (one-sided if ``nonneg``)."""
    if u > t:
        return u - t
    if u < -t and not nonneg:
        return u + t
    return 0.0
