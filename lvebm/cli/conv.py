"""``lvebm train conv-sparse-coding``: kernels learned on natural images, figures, metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._checks import LvebmValueError
from ..data import load_array, natural_images
from ..io import save
from ..models import ConvSparseCoding
from ..plotting import save_atom_grid, save_conv_maps
from ..preprocess import highpass, local_contrast_normalize, sample_crops, whiten_images
from ._common import (
    add_checkpoint_args,
    check_out_folder,
    nonneg_float,
    positive_int,
    write_json,
)

IMAGE_CHOICES = "natural, natural-color, or a PATH (.npy/.npz of (n,[c,]H,W), or a PNG/JPEG)"


def _unit_std(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.std(x)), 1e-12)).astype(np.float32)


#: ``--preprocess`` choices; each output is scaled to unit standard deviation per image so
#: that ``--lam`` means the same thing for every image set.
PREPROCESS = {
    "highpass": lambda x: _unit_std(highpass(x, lam=5.0)),
    "lcn": lambda x: _unit_std(local_contrast_normalize(x)),
    "whiten": whiten_images,
    "none": lambda x: _unit_std(np.asarray(x, dtype=np.float32) - np.mean(x)),
}


def register(train, top) -> None:
    p = train.add_parser("conv-sparse-coding", help="learn convolutional sparse-coding kernels")
    p.add_argument("--images", default="natural", help=f"training images: {IMAGE_CHOICES}")
    p.add_argument("--filters", type=positive_int, default=8, help="number of kernels m")
    p.add_argument("--kernel", type=positive_int, default=9, help="kernel side s")
    p.add_argument(
        "--lam", type=nonneg_float, default=0.5, help="L1 weight lambda (unit-std images)"
    )
    p.add_argument(
        "--preprocess",
        choices=sorted(PREPROCESS),
        default="highpass",
        help="image preprocessing (Tikhonov high-pass, local contrast norm., 1/f whitening)",
    )
    p.add_argument("--crop", type=positive_int, default=48, help="side of the training crops")
    p.add_argument("--n-crops", type=positive_int, default=128, help="number of training crops")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--max-iter", type=positive_int, default=100, help="FISTA iterations per batch")
    p.add_argument(
        "--alpha", type=nonneg_float, default=0.0,
        help="weight of ||Z - Enc(Y)||^2: > 0 trains the convolutional encoder jointly (PSD)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_args(p)
    p.set_defaults(run=run)


def load_images(spec: str) -> list[np.ndarray]:
    """Resolve ``--images`` to a list of float images (c, H, W) in roughly [0, 1]."""
    if spec in ("natural", "natural-color"):
        color = spec == "natural-color"
        return [im if color else im[None] for im in natural_images(color=color)]
    path = Path(spec)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"):
        if not path.exists():
            raise LvebmValueError(f"`--images` file not found: {path}.")
        import skimage.io

        arr = np.asarray(skimage.io.imread(path), dtype=np.float32)
        arr = arr[..., :3].transpose(2, 0, 1) if arr.ndim == 3 else arr[None]
        return [arr / 255.0 if arr.max() > 1.0 else arr]
    arr = np.asarray(load_array(path), dtype=np.float32)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise LvebmValueError(
            f"`--images` array must be (n, H, W) or (n, c, H, W); got shape {arr.shape}."
        )
    return list(arr / 255.0 if arr.max() > 1.0 else arr)


def train_and_report(
    images: list[np.ndarray],
    *,
    filters: int,
    kernel: int,
    lam: float,
    preprocess: str,
    crop: int,
    n_crops: int,
    epochs: int,
    batch_size: int,
    max_iter: int,
    seed: int,
    out: Path,
    alpha: float = 0.0,
    progress: bool = True,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> dict:
    """Fit on crops of preprocessed images; write the model, kernels.png, maps.png, metrics.json."""
    prep = [PREPROCESS[preprocess](im) for im in images]
    crops = sample_crops(prep, crop, n_crops, seed=seed)  # (n, c, crop, crop)
    model = ConvSparseCoding(filters, kernel, crops.shape[1], lam, seed=seed)
    start = time.perf_counter()
    model.fit(
        crops, epochs=epochs, batch_size=batch_size, max_iter=max_iter, alpha=alpha, seed=seed,
        progress=progress, checkpoint_dir=out / "checkpoints", checkpoint_every=checkpoint_every,
        resume=resume,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    test = sample_crops(prep, min(2 * crop, min(p.shape[-1] for p in prep)), 4, seed=seed + 99)
    Z = model.encode(test, max_iter=500, tol=1e-4)
    R = model.reconstruct(Z)
    K = model.kernels.numpy()
    save_atom_grid(
        K[:, 0] if K.shape[1] == 1 else K,
        out / "kernels.png",
        title=f"{filters} kernels {kernel}x{kernel}, lambda={lam}",
    )
    save_conv_maps(
        test[0],
        R[0],
        Z[0],
        out / "maps.png",
        title=f"sparse maps of a {test.shape[-1]}px test crop",
    )
    metrics = {
        "images": len(images),
        "preprocess": preprocess,
        "crops": n_crops,
        "crop": crop,
        "filters": filters,
        "kernel": kernel,
        "in_channels": int(crops.shape[1]),
        "lam": lam,
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(seconds, 3),
        "epoch_mean_energy": model.history_,
        "test_mean_energy": float(model.energy(test, Z).mean()),
        "test_nonzero_fraction": float((Z != 0).mean()),
        "test_relative_residual": float(np.linalg.norm(test - R) / np.linalg.norm(test)),
        "alpha": alpha,
    }
    if alpha > 0:  # the jointly trained encoder against the optimal maps
        err = np.linalg.norm(model.predict(test) - Z) / max(np.linalg.norm(Z), 1e-30)
        metrics["test_encoder_relative_error"] = float(err)
    save(model, out)
    write_json(out / "metrics.json", metrics)
    return metrics


def run(args) -> None:
    check_out_folder(args.out)
    if args.kernel > args.crop:
        raise LvebmValueError(
            f"`--kernel` ({args.kernel}) must not be larger than `--crop` ({args.crop})."
        )
    metrics = train_and_report(
        load_images(args.images),
        filters=args.filters,
        kernel=args.kernel,
        lam=args.lam,
        preprocess=args.preprocess,
        crop=args.crop,
        n_crops=args.n_crops,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_iter=args.max_iter,
        seed=args.seed,
        out=args.out,
        alpha=args.alpha,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
    )
    print(
        f"wrote {args.out}: test energy {metrics['test_mean_energy']:.4f}, "
        f"{100 * metrics['test_nonzero_fraction']:.2f}% non-zero map entries"
    )
