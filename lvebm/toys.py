"""A multimodal toy for conditional latent-variable EBMs: ellipses whose shape depends on x.

``x ~ U(0, 1)`` is observed; the angle ``theta ~ U(0, 2 pi)`` is not; ``y`` is the point
``(a(x) cos theta, b(x) sin theta)`` plus a little Gaussian noise, with semi-axes
``a(x) = 0.5 + x`` and ``b(x) = 1.5 - x``: for one ``x`` the answer is a whole ellipse,
not a point, so a deterministic predictor ``y = f(x)`` can only return its centre.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ._backend import make_generator
from ._checks import check_int, check_nonneg_float, check_positive_float

__all__ = ["ellipse_axes", "ellipse_data", "energy_grid", "CollapseStats", "collapse_stats"]


def ellipse_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes ``a(x) = 0.5 + x`` and ``b(x) = 1.5 - x`` for ``x`` in [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 + x, 1.5 - x


def ellipse_data(
    n: int, *, noise: float = 0.02, x: float | None = None, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs: x (n, 1) and y (n, 2) float32; ``x`` fixes the condition if given."""
    n = check_int(n, "n")
    noise = check_nonneg_float(noise, "noise")
    gen = make_generator(seed)
    u = torch.rand(n, 1, generator=gen, dtype=torch.float64).numpy()
    xs = u if x is None else np.full((n, 1), float(x))
    theta = 2 * np.pi * torch.rand(n, generator=gen, dtype=torch.float64).numpy()
    a, b = ellipse_axes(xs[:, 0])
    y = np.stack([a * np.cos(theta), b * np.sin(theta)], axis=1)
    y = y + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64).numpy()
    return xs.astype(np.float32), y.astype(np.float32)


def _distance_to_ellipse(y: np.ndarray, a: float, b: float, n_theta: int = 2048) -> np.ndarray:
    """Euclidean distance from points y (m, 2) to the ellipse, by a dense angle grid."""
    t = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    curve = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)  # (n_theta, 2)
    d2 = ((y[:, None, :] - curve[None]) ** 2).sum(-1)  # (m, n_theta)
    return np.sqrt(d2.min(1))


def energy_grid(
    model: Any, x: float, *, extent: float = 2.0, resolution: int = 81, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Free energy ``F(x, y)`` on a square grid of ``y`` in ``[-extent, extent]^2``.

    Returns the grid points (r*r, 2) and F (r, r) (row i is the i-th y2 value).
    """
    extent = check_positive_float(extent, "extent")
    r = check_int(resolution, "resolution", minimum=2)
    g = np.linspace(-extent, extent, r)
    Y1, Y2 = np.meshgrid(g, g)
    pts = np.stack([Y1.ravel(), Y2.ravel()], axis=1).astype(np.float32)
    xs = np.full((pts.shape[0], 1), x, dtype=np.float32)
    F = np.asarray(model.free_energy(xs, pts, max_iter=max_iter, tol=1e-5))
    return pts, F.reshape(r, r)


class CollapseStats(NamedTuple):
    """How concentrated the low-energy set is, for one ``x``.

    threshold : the energy level used (the 90th percentile of F on data points)
    fraction_below : fraction of the y-grid with F below ``threshold``
    fraction_near_data : fraction of the grid within ``near`` of the ellipse (the ideal)
    mean_on_data, mean_off_data : mean F on data points / on grid points farther than
        ``4 * near`` from the ellipse
    """

    threshold: float
    fraction_below: float
    fraction_near_data: float
    mean_on_data: float
    mean_off_data: float


def collapse_stats(
    model: Any, x: float, *, near: float = 0.1, n_data: int = 500, extent: float = 2.0,
    resolution: int = 81, seed: int = 1,
) -> CollapseStats:  # fmt: skip
    """Measure collapse: the share of the y-plane with data-like free energy at condition ``x``."""
    near = check_positive_float(near, "near")
    xs, ys = ellipse_data(n_data, x=x, seed=seed)
    F_data = np.asarray(model.free_energy(xs, ys, max_iter=300, tol=1e-5))
    pts, F = energy_grid(model, x, extent=extent, resolution=resolution)
    a, b = ellipse_axes(np.array(x))
    dist = _distance_to_ellipse(pts.astype(np.float64), float(a), float(b))
    threshold = float(np.quantile(F_data, 0.9))
    F = F.ravel()
    return CollapseStats(
        threshold,
        float((F <= threshold).mean()),
        float((dist <= near).mean()),
        float(F_data.mean()),
        float(F[dist > 4 * near].mean()),
    )
