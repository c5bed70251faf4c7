"""Figures: atom and filter grids (PNG), written with matplotlib's Agg backend."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ._checks import LvebmValueError

__all__ = ["tile_grid", "save_atom_grid"]


def tile_grid(atoms: np.ndarray, *, pad: int = 1) -> np.ndarray:
    """Tile atoms (k, h, w) or (k, 3, h, w) into one image, each scaled to [-1, 1] symmetrically.

    Returns (H, W) for grey, (H, W, 3) for colour, in [0, 1] with 0.5 meaning zero.
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
    grid = np.full(shape, 0.5)
    for i, atom in enumerate(atoms):
        scale = max(np.abs(atom).max(), 1e-12)
        tile = 0.5 + 0.5 * atom / scale
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
