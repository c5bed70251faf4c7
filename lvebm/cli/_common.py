"""Helpers shared by the command modules: data resolution, metrics, devices."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._checks import LvebmValueError
from ..data import load_array, load_digits, load_mnist, natural_images, sample_patches, whiten
from ..io import atomic_write_bytes

DATA_CHOICES = "mnist, digits, patches, or a PATH (.npz/.npy array, MNIST folder)"


@dataclass
class Vectors:
    """Training vectors (n, d) float32, the image shape of one vector, labels or None."""

    X: np.ndarray
    image_shape: tuple[int, ...]
    labels: np.ndarray | None


def add_data_args(p) -> None:
    p.add_argument("--data", default="digits", help=f"training data: {DATA_CHOICES}")
    p.add_argument("--patch-size", type=int, default=12, help="patch side for --data patches")
    p.add_argument("--n-patches", type=int, default=20000, help="patches to sample")
    p.add_argument(
        "--whiten", default="zca", choices=["zca", "1/f", "none"], help="patch whitening"
    )


def load_vectors(spec: str, *, patch_size: int = 12, n_patches: int = 20000,
                 whitening: str = "zca", seed: int = 0) -> Vectors:  # fmt: skip
    """Resolve ``--data``: a named embedded set or a file/folder, as flattened vectors."""
    if spec == "digits":
        images, labels = load_digits()
    elif spec == "mnist":
        images, labels = load_mnist()
    elif spec == "patches":
        P = sample_patches(natural_images(), patch_size, n_patches, seed=seed)
        return Vectors(whiten(P, method=whitening), (patch_size, patch_size), None)
    else:
        path = Path(spec)
        if path.is_dir() or (path.suffix == ".npz" and _has_labels(path)):
            images, labels = load_mnist(path)
        else:
            arr = np.asarray(load_array(path), dtype=np.float32)
            if arr.ndim == 2:
                side = int(round(np.sqrt(arr.shape[1])))
                shape = (side, side) if side * side == arr.shape[1] else (arr.shape[1],)
                return Vectors(arr, shape, None)
            if arr.ndim != 3:
                raise LvebmValueError(
                    f"`--data` array must be (n, d) vectors or (n, H, W) images; got {arr.shape}."
                )
            images, labels = arr, None
    images = np.asarray(images, dtype=np.float32)
    return Vectors(images.reshape(images.shape[0], -1), tuple(images.shape[1:]), labels)


def _has_labels(path: Path) -> bool:
    try:
        with np.load(path, allow_pickle=False) as f:
            return "images" in f and "labels" in f
    except (OSError, ValueError):
        return False


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
