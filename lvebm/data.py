"""Data: MNIST (IDX or .npz), scikit-learn's 8x8 digits, natural images and their patches.

Images come back as float arrays in [0, 1]; vectors as (n, d) float32 arrays; images
as (n, c, H, W). Nothing here downloads unless asked, and never in tests.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np

from ._checks import LvebmValueError, check_choice, check_int

__all__ = [
    "load_mnist",
    "read_idx",
    "load_digits",
    "load_array",
    "natural_images",
    "sample_patches",
    "whiten",
    "default_mnist_path",
    "shift_images",
    "random_affine_images",
]

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
#: The four standard MNIST files and their MD5 checksums.
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GREY_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "grass", "gravel", "brick", "rocket")
COLOR_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")


def default_mnist_path() -> Path | None:
    """``$LVEBM_MNIST`` if set, else ``../shared/data/mnist-8k.npz`` from the cwd, if present."""
    env = os.environ.get("LVEBM_MNIST")
    if env:
        return Path(env)
    candidate = Path.cwd().parent / "shared" / "data" / "mnist-8k.npz"
    return candidate if candidate.exists() else None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or not."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise LvebmValueError(f"{path}: cannot read IDX file ({exc}).") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise LvebmValueError(f"{path}: not an IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise LvebmValueError(f"{path}: truncated IDX header.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise LvebmValueError(
            f"{path}: IDX payload has {len(raw) - header} bytes, expected {expected} for shape "
            f"{shape}; the file is truncated or corrupted."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _download_mnist(cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for name, md5 in MNIST_FILES.items():
        target = cache / name
        if target.exists() and hashlib.md5(target.read_bytes()).hexdigest() == md5:
            continue
        with urllib.request.urlopen(MNIST_MIRROR + name, timeout=60) as resp:
            blob = resp.read()
        if hashlib.md5(blob).hexdigest() != md5:
            raise LvebmValueError(f"downloaded {name} fails its MD5 checksum; not kept.")
        from .io import atomic_write_bytes

        atomic_write_bytes(target, blob)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).exists():
            return folder / name
    return None


def load_mnist(
    path: str | os.PathLike | None = None,
    *,
    split: str = "train",
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images (n, 28, 28) as float32 in [0, 1] and labels (n,) as int64.

    ``path`` is a folder of the standard IDX files (gzipped or not) or an ``.npz``
    holding ``images`` and ``labels``. With no path, ``$LVEBM_MNIST`` or the shared
    8k-digit file is used; failing that, with ``download=True``, the IDX files are
    fetched into ``cache_dir`` (default ``~/.cache/lvebm/mnist``) and checked by MD5.
    ``split`` picks "train" or "test" from IDX folders (``.npz`` files hold one set).
    """
    check_choice(split, "split", ("train", "test"))
    if path is None:
        path = default_mnist_path()
        if path is None:
            if not download:
                raise LvebmValueError(
                    "`path` must point to MNIST (IDX folder or .npz); none given, "
                    "$LVEBM_MNIST unset. Pass download=True to fetch it."
                )
            path = Path(cache_dir or Path.home() / ".cache" / "lvebm" / "mnist")
            _download_mnist(Path(path))
    path = Path(path)
    if path.is_dir():
        prefix = "train" if split == "train" else "t10k"
        img = _find_idx(path, f"{prefix}-images-idx3-ubyte")
        lab = _find_idx(path, f"{prefix}-labels-idx1-ubyte")
        if img is None or lab is None:
            raise LvebmValueError(f"{path}: no MNIST IDX files for split {split!r} found.")
        images, labels = read_idx(img), read_idx(lab)
    elif path.suffix == ".npz":
        images, labels = _read_npz_pair(path)
    else:
        raise LvebmValueError(f"`path` must be an MNIST folder or an .npz file; got {path}.")
    if images.ndim != 3 or labels.shape != (images.shape[0],):
        raise LvebmValueError(
            f"{path}: expected images (n, H, W) and labels (n,); got {images.shape} and "
            f"{labels.shape}."
        )
    scale = 255.0 if images.dtype == np.uint8 or images.max() > 1.0 else 1.0
    return (images.astype(np.float32) / scale), labels.astype(np.int64)


def _read_npz_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "images" not in f or "labels" not in f:
                raise LvebmValueError(f"{path}: .npz must hold arrays `images` and `labels`.")
            return f["images"], f["labels"]
    except (OSError, ValueError) as exc:
        if isinstance(exc, LvebmValueError):
            raise
        raise LvebmValueError(f"{path}: cannot read .npz ({exc}).") from exc


def load_array(path: str | os.PathLike) -> np.ndarray:
    """An array from ``.npy``, or from ``.npz`` (key ``data``, ``images``, ``X`` or the only one).

    Never unpickles. Returns the array as stored (callers flatten/scale).
    """
    path = Path(path)
    if not path.exists():
        raise LvebmValueError(f"`data` file not found: {path}.")
    if not path.is_file():
        raise LvebmValueError(f"`data` must be a .npy/.npz file; {path} is a folder.")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise LvebmValueError(f"{path}: not a .npy/.npz file (no NumPy or zip header).")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LvebmValueError(f"{path}: not a readable .npy/.npz file ({exc}).") from exc
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        for key in ("data", "images", "X"):
            if key in keys:
                return loaded[key]
        if len(keys) == 1:
            return loaded[keys[0]]
    raise LvebmValueError(f"{path}: .npz must hold `data`, `images` or `X`; has {keys}.")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: images (n, 8, 8) in [0, 1], labels (n,)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def natural_images(
    *, color: bool = False, names: tuple[str, ...] | None = None
) -> list[np.ndarray]:
    """scikit-image's natural images as float32 in [0, 1].

    Grey: a list of (H, W) arrays (colour ones converted by luminance). Colour: a list of
    (3, H, W) arrays. ``names`` picks from ``GREY_IMAGES`` / ``COLOR_IMAGES``.
    """
    import skimage.data
    from skimage.color import rgb2gray

    names = names or (COLOR_IMAGES if color else GREY_IMAGES)
    out = []
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise LvebmValueError(f"`names` has unknown scikit-image image {name!r}.")
        img = np.asarray(loader(), dtype=np.float64)
        img = img / 255.0 if img.max() > 1.0 else img
        if color:
            if img.ndim != 3:
                continue
            out.append(img[..., :3].transpose(2, 0, 1).astype(np.float32))
        else:
            out.append((rgb2gray(img[..., :3]) if img.ndim == 3 else img).astype(np.float32))
    return out


def sample_patches(
    images: list[np.ndarray], size: int, n: int, *, seed: int | None = 0
) -> np.ndarray:
    """``n`` random ``size`` x ``size`` patches from grey images, flattened: (n, size*size).

    Images are chosen with probability proportional to their number of patch positions.
    """
    size, n = check_int(size, "size"), check_int(n, "n")
    valid = [im for im in images if im.ndim == 2 and min(im.shape) >= size]
    if not valid:
        raise LvebmValueError(f"`images` has no grey image of at least {size}x{size} pixels.")
    rng = np.random.default_rng(seed)
    weights = np.array([(h - size + 1) * (w - size + 1) for h, w in (im.shape for im in valid)])
    which = rng.choice(len(valid), size=n, p=weights / weights.sum())
    out = np.empty((n, size * size), dtype=np.float32)
    for i, j in enumerate(which):
        h, w = valid[j].shape
        r, c = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        out[i] = valid[j][r : r + size, c : c + size].ravel()
    return out


def whiten(patches: np.ndarray, *, method: str = "zca", eps: float = 0.1) -> np.ndarray:
    """Whiten flattened square patches (n, s*s); each patch's mean is removed first.

    ``"zca"``: ``X C^{-1/2}`` with ``C`` the patch covariance plus ``eps * mean
    eigenvalue`` (ZCA keeps patches looking like images). ``"1/f"``: Olshausen & Field's
    filter ``|f| exp(-(|f|/f0)^4)`` applied to each patch in the Fourier domain,
    flattening the natural ``1/f`` amplitude spectrum (f0 = 0.4 of Nyquist).
    ``"none"``: mean removal only. Output is scaled to unit mean variance per pixel.
    """
    check_choice(method, "method", ("zca", "1/f", "none"))
    X = np.asarray(patches, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0:
        raise LvebmValueError(f"`patches` must be a non-empty (n, s*s) array; got {X.shape}.")
    if not np.isfinite(X).all():
        raise LvebmValueError("`patches` must contain only finite values; it has NaN or Inf.")
    X = X - X.mean(axis=1, keepdims=True)
    if method == "zca":
        C = X.T @ X / X.shape[0]
        vals, vecs = np.linalg.eigh(C)
        vals = np.maximum(vals, 0) + eps * vals.mean()
        X = X @ (vecs / np.sqrt(vals)) @ vecs.T
    elif method == "1/f":
        s = int(round(np.sqrt(X.shape[1])))
        if s * s != X.shape[1]:
            raise LvebmValueError(f"`patches` must be square for 1/f whitening; d={X.shape[1]}.")
        f = np.fft.fftfreq(s)
        rho = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / 0.5
        filt = rho * np.exp(-((rho / 0.4) ** 4))
        F = np.fft.fft2(X.reshape(-1, s, s)) * filt
        X = np.real(np.fft.ifft2(F)).reshape(X.shape[0], -1)
    X /= np.sqrt(np.maximum(X.var(), 1e-12))
    return X.astype(np.float32)


def shift_images(images: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """Translated copies of ``images`` (n, H, W), zero-filled: (len(offsets) * n, H, W).

    Copy ``j`` (rows ``j*n`` to ``(j+1)*n``) is every image moved by ``offsets[j] =
    (dy, dx)`` pixels (down and right for positive values); data augmentation for
    models trained on centred digits.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise LvebmValueError(f"`images` must be a 3-d array (n, H, W); got shape {images.shape}.")
    n, H, W = images.shape
    out = np.zeros((len(offsets), n, H, W), dtype=images.dtype)
    for j, (dy, dx) in enumerate(offsets):
        if abs(dy) >= H or abs(dx) >= W:
            raise LvebmValueError(f"`offsets` must be smaller than the images; got {(dy, dx)}.")
        src = images[:, max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)]
        out[j, :, max(0, dy) : H - max(0, -dy), max(0, dx) : W - max(0, -dx)] = src
    return out.reshape(len(offsets) * n, H, W)


def random_affine_images(
    images: np.ndarray,
    n_views: int,
    *,
    rotation: float = 10.0,
    shift: float = 2.0,
    scale: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Randomly deformed copies of ``images`` (n, H, W): (n_views * n, H, W), zero-filled.

    Copy ``j`` (rows ``j*n`` to ``(j+1)*n``) draws for every image an independent
    rotation uniform in ``[-rotation, rotation]`` degrees, an isotropic scale uniform in
    ``[1 - scale, 1 + scale]`` and a translation uniform in ``[-shift, shift]`` pixels
    on each axis, about the image centre, resampled bilinearly with zeros outside. Data
    augmentation for models trained on centred digits: small deformations keep the
    class and the stroke statistics.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise LvebmValueError(f"`images` must be a 3-d array (n, H, W); got shape {images.shape}.")
    n_views = check_int(n_views, "n_views")
    for name, value in (("rotation", rotation), ("shift", shift), ("scale", scale)):
        if not np.isfinite(value) or value < 0:
            raise LvebmValueError(f"`{name}` must be a finite number >= 0; got {value!r}.")
    if scale >= 1:
        raise LvebmValueError(f"`scale` must be < 1 (a scale factor stays positive); got {scale}.")
    import torch
    import torch.nn.functional as F

    n, H, W = images.shape
    gen = torch.Generator().manual_seed(seed)
    m = n_views * n

    def uniform(half_width: float) -> torch.Tensor:
        return (2 * torch.rand(m, generator=gen, dtype=torch.float64) - 1) * half_width

    angle = torch.deg2rad(uniform(rotation))
    s = 1 + uniform(scale)
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse transform.
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([
        torch.stack([cos, -sin * H / W, uniform(shift) * 2 / W], 1),
        torch.stack([sin * W / H, cos, uniform(shift) * 2 / H], 1),
    ], 1)  # fmt: skip
    src = torch.as_tensor(images, dtype=torch.float32).repeat(n_views, 1, 1)[:, None]
    grid = F.affine_grid(theta.float(), [m, 1, H, W], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].numpy().astype(images.dtype, copy=False)
