"""Diagnostics no peer library gives: atom usage, atom extent, the Gabor-likeness of atoms.

(The lasso duality gap lives in :mod:`lvebm.lasso` beside the objective it certifies.)
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from ._checks import LvebmValueError

__all__ = ["atom_usage", "atom_extent", "gabor_r2", "gabor_likeness"]


def atom_usage(Z: np.ndarray) -> np.ndarray:
    """Fraction of samples in which each atom is active; codes (n, k) -> (k,)."""
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] == 0:
        raise LvebmValueError(f"`Z` must be a non-empty (n, k) array of codes; got {Z.shape}.")
    return (Z != 0).mean(axis=0)


def atom_extent(W: np.ndarray) -> np.ndarray:
    """Effective number of pixels of each atom, ``(sum w^2)^2 / sum w^4``; W (d, k) -> (k,).

    The participation ratio of the atom's energy: ``d`` for a flat atom, 1 for a single
    pixel. On 28x28 MNIST, whole-digit prototypes measure about 50 and pen strokes
    about 15-20 (docs/sparse_coding.md), so it tells the two apart without looking.
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2 or W.size == 0:
        raise LvebmValueError(f"`W` must be a non-empty (d, k) dictionary; got {W.shape}.")
    e = W**2
    return e.sum(0) ** 2 / np.maximum((e**2).sum(0), 1e-300)


def _gabor(params: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    amp, x0, y0, theta, sx, sy, freq, phase, offset = params
    xr = (xx - x0) * np.cos(theta) + (yy - y0) * np.sin(theta)
    yr = -(xx - x0) * np.sin(theta) + (yy - y0) * np.cos(theta)
    env = np.exp(-0.5 * (xr**2 / sx**2 + yr**2 / sy**2))
    return amp * env * np.cos(2 * np.pi * freq * xr + phase) + offset


def gabor_r2(atom: np.ndarray) -> float:
    """R^2 of the best 2-D Gabor fit to a square atom (h, w), from several starting points.

    The Gabor is ``amp * exp(-x'^2/2sx^2 - y'^2/2sy^2) * cos(2 pi f x' + phase) + offset``
    in coordinates rotated by ``theta`` about ``(x0, y0)``.
    """
    a = np.asarray(atom, dtype=np.float64)
    if a.ndim != 2 or not np.isfinite(a).all():
        raise LvebmValueError(f"`atom` must be a finite (h, w) array; got shape {a.shape}.")
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    total = ((a - a.mean()) ** 2).sum()
    if total == 0:
        return 0.0
    r0, c0 = np.unravel_index(np.argmax(np.abs(a)), a.shape)
    spectrum = np.abs(np.fft.fft2(a - a.mean()))
    fy, fx = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    fy, fx = np.fft.fftfreq(h)[fy], np.fft.fftfreq(w)[fx]
    f0 = max(np.hypot(fx, fy), 1.0 / max(h, w))
    theta0 = np.arctan2(fy, fx)
    lo = [-np.inf, -1, -1, -np.inf, 0.5, 0.5, 0.0, -np.inf, -np.inf]
    hi = [np.inf, w, h, np.inf, 2 * max(h, w), 2 * max(h, w), 0.5, np.inf, np.inf]
    best = np.inf
    for phase in (0.0, np.pi / 2):
        for sigma in (1.5, 3.0):
            p0 = [a[r0, c0], c0, r0, theta0, sigma, sigma, min(f0, 0.49), phase, 0.0]
            p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
            try:
                res = least_squares(
                    lambda p: (_gabor(p, xx, yy) - a).ravel(), p0, bounds=(lo, hi), max_nfev=400
                )
            except ValueError:
                continue
            best = min(best, float((res.fun**2).sum()))
    return 1.0 - best / total if np.isfinite(best) else 0.0


def gabor_likeness(W: np.ndarray, patch_shape: tuple[int, int], *, threshold: float = 0.8):
    """Fit a Gabor to every atom of ``W`` (d, k) seen as ``patch_shape`` images.

    Returns ``(fraction of atoms with R^2 > threshold, R^2 per atom (k,))``.
    """
    W = np.asarray(W)
    if W.ndim != 2 or W.shape[0] != int(np.prod(patch_shape)):
        raise LvebmValueError(
            f"`W` must be (d, k) with d = {int(np.prod(patch_shape))} pixels of `patch_shape` "
            f"{tuple(patch_shape)}; got {W.shape}."
        )
    r2 = np.array([gabor_r2(W[:, j].reshape(patch_shape)) for j in range(W.shape[1])])
    return float((r2 > threshold).mean()), r2
