"""Helpers shared by the command modules: data resolution, metrics, devices."""

from __future__ import annotations

import argparse
import json
import math
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
    p.add_argument(
        "--patch-size", type=positive_int, default=12, help="patch side for --data patches"
    )
    p.add_argument("--n-patches", type=positive_int, default=20000, help="patches to sample")
    p.add_argument(
        "--whiten", default="zca", choices=["zca", "1/f", "none"], help="patch whitening"
    )


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {value}")
    return value


def nonneg_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0; got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = nonneg_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0; got {text}")
    return value


def add_checkpoint_args(p) -> None:
    """``--resume`` and ``--checkpoint-every``, shared by every ``train`` command.

    Checkpoints are written to ``OUT/checkpoints``; pass both values to the model's
    ``fit(checkpoint_dir=out / "checkpoints", checkpoint_every=..., resume=...)``.
    """
    p.add_argument(
        "--resume", action="store_true",
        help="continue from the newest checkpoint in OUT/checkpoints (same settings)",
    )  # fmt: skip
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=None, metavar="STEPS",
        help="write a checkpoint every STEPS steps (default: every epoch)",
    )  # fmt: skip


def check_out_folder(out: Path) -> Path:
    """Fail before any work when ``--out`` (or a parent) is an existing file."""
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise LvebmValueError(f"`--out` must be a folder; {p} is a file.")
    return out


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
