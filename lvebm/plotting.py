"""Figures: atom and filter grids (PNG), written with matplotlib's Agg backend."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._checks import LvebmValueError

__all__ = ["tile_grid", "save_atom_grid", "save_energy_landscapes", "save_latent_balls"]


def tile_grid(atoms: np.ndarray, *, pad: int = 1) -> np.ndarray:
    """Tile atoms (k, h, w) or (k, 3, h, w) into one image, each scaled to [-1, 1] symmetrically.

    Returns (H, W) for grey, (H, W, 3) for colour, in [0, 1] with 0.5 meaning zero; when
    every atom is non-negative (a ``positive_dict`` dictionary), each is scaled to
    [0, 1] instead, so zero is black and faint strokes keep their contrast.
    """
    atoms = np.asarray(atoms, dtype=np.float64)
    if atoms.ndim not in (3, 4) or atoms.shape[0] == 0 or (atoms.ndim == 4 and atoms.shape[1] != 3):
        raise LvebmValueError(
            f"`atoms` must be a non-empty (k, h, w) or (k, 3, h, w) array; got {atoms.shape}."
        )
    if not np.isfinite(atoms).all():
        raise LvebmValueError("`atoms` must contain only finite values; it has NaN or Inf.")
    color = atoms.ndim == 4
    k = atoms.shape[0]
    h, w = atoms.shape[-2:]
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    shape = (rows * (h + pad) + pad, cols * (w + pad) + pad) + ((3,) if color else ())
    positive = bool((atoms >= 0).all())
    grid = np.full(shape, 0.0 if positive else 0.5)
    for i, atom in enumerate(atoms):
        scale = max(np.abs(atom).max(), 1e-12)
        tile = atom / scale if positive else 0.5 + 0.5 * atom / scale
        if color:
            tile = tile.transpose(1, 2, 0)
        r, c = divmod(i, cols)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = tile  # noqa: E501
    return grid


def save_atom_grid(atoms: np.ndarray, path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Save a grid of atoms (k, h, w) or (k, 3, h, w) as a PNG; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = tile_grid(atoms)
    size = max(4.0, min(12.0, grid.shape[1] / 25))
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(
        grid, cmap=None if grid.ndim == 3 else "gray", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.axis("off")
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def save_energy_landscapes(
    panels: list[tuple[str, np.ndarray]],
    extent: float,
    path: str | os.PathLike,
    *,
    curve: np.ndarray | None = None,
    data: np.ndarray | None = None,
) -> Path:
    """Free-energy maps side by side: ``panels`` of (title, F (r, r)) over ``[-extent, extent]^2``.

    ``curve`` (m, 2) draws the true data manifold, ``data`` (n, 2) training points. Colours
    are log10(F) so that near-zero and large energies both show.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.2), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, (title, F) in zip(axes[0], panels, strict=True):
        im = ax.imshow(np.log10(np.maximum(F, 1e-8)), origin="lower", cmap="viridis",
                       extent=(-extent, extent, -extent, extent))  # fmt: skip
        if data is not None:
            ax.scatter(data[:, 0], data[:, 1], s=2, c="w", alpha=0.5)
        if curve is not None:
            ax.plot(curve[:, 0], curve[:, 1], "r--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("y1")
        ax.set_ylabel("y2")
        fig.colorbar(im, ax=ax, label="log10 F(x, y)", shrink=0.8)
    return _save(fig, path)


def save_latent_balls(
    mean: np.ndarray,
    std: np.ndarray,
    labels: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    limit: float | None = None,
) -> Path:
    """Posterior "fuzzy balls" of a 2-d VAE: an ellipse of mean +- std per sample, by label."""
    from matplotlib.patches import Ellipse

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    cmap = plt.get_cmap("tab10")
    for m, s, lab in zip(mean, std, labels, strict=True):
        ax.add_patch(Ellipse(tuple(m), 2 * s[0], 2 * s[1], color=cmap(int(lab) % 10), alpha=0.25,
                             lw=0))  # fmt: skip
    ax.scatter(mean[:, 0], mean[:, 1], s=1, c=[cmap(int(v) % 10) for v in labels])
    lim = limit if limit is not None else float(np.abs(mean).max() + std.max()) * 1.05
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, ls="--", color="k", lw=0.8))
    for d in range(10):
        ax.scatter([], [], color=cmap(d), label=str(d))
    ax.legend(loc="upper right", fontsize=7, markerscale=2, ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def save_conv_maps(
    image: np.ndarray, recon: np.ndarray, maps: np.ndarray, path: str | os.PathLike,
    *, n_maps: int = 8, title: str | None = None,
) -> Path:  # fmt: skip
    """Save an image (c, H, W), its reconstruction and its ``n_maps`` busiest sparse maps.

    Maps (m, H+s-1, W+s-1) are shown on a symmetric grey scale (mid-grey is zero), each
    titled with its fraction of non-zeros.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-(maps != 0).sum(axis=(1, 2)))[:n_maps]
    cols = 2 + len(order)
    fig, axes = plt.subplots(1, cols, figsize=(2.0 * cols, 2.4))

    def show(ax, img, name):
        if img.ndim == 3 and img.shape[0] == 3:
            lo, hi = img.min(), img.max()
            ax.imshow(((img - lo) / max(hi - lo, 1e-12)).transpose(1, 2, 0))
        else:
            v = max(np.abs(img).max(), 1e-12)
            ax.imshow(img.reshape(img.shape[-2:]), cmap="gray", vmin=-v, vmax=v)
        ax.set_title(name, fontsize=8)
        ax.axis("off")

    show(axes[0], image, "image")
    show(axes[1], recon, "reconstruction")
    for ax, i in zip(axes[2:], order, strict=False):
        show(ax, maps[i], f"map {i}: {100 * (maps[i] != 0).mean():.1f}% nz")
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
