"""``lvebm train sparse-coding``: dictionary learning with its figure and metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..diagnostics import atom_extent, atom_usage, gabor_likeness
from ..io import save
from ..lasso import duality_gap
from ..models import SparseCoding
from ..plotting import save_atom_grid
from ._common import (
    add_checkpoint_args,
    add_data_args,
    check_out_folder,
    load_vectors,
    nonneg_float,
    positive_float,
    positive_int,
    write_json,
)


def register(train, top) -> None:
    p = train.add_parser("sparse-coding", help="learn a sparse-coding dictionary")
    add_data_args(p)
    p.add_argument("--atoms", type=positive_int, default=256, help="number of atoms k")
    p.add_argument("--lam", type=nonneg_float, default=0.1, help="L1 weight lambda")
    p.add_argument("--epochs", type=positive_int, default=5)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--method", choices=["online", "sgd"], default="online")
    p.add_argument("--lr", type=positive_float, default=1.0, help="step size of --method sgd")
    p.add_argument(
        "--init",
        choices=["data", "random"],
        default="data",
        help="initial atoms: random training samples or Gaussian directions",
    )
    p.add_argument("--nonneg", action="store_true", help="non-negative codes z >= 0")
    p.add_argument(
        "--positive-dict",
        action="store_true",
        help="non-negative atoms (with --nonneg: parts, e.g. pen strokes)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_args(p)
    p.set_defaults(run=run)


def train_and_report(vectors, *, atoms: int, lam: float, epochs: int, batch_size: int,
                     method: str, lr: float, seed: int, device, out: Path,
                     init: str = "data", nonneg: bool = False, positive_dict: bool = False,
                     progress: bool = True, checkpoint_every: int | None = None,
                     resume: bool = False) -> dict:  # fmt: skip
    """Fit, save the model to ``out``, write ``atoms.png`` and ``metrics.json``; return metrics.

    Checkpoints go to ``out/checkpoints`` (every ``checkpoint_every`` steps, else every
    epoch); ``resume`` continues from the newest one there.
    """
    X = vectors.X
    model = SparseCoding(X.shape[1], atoms, lam, seed=seed, device=device)
    start = time.perf_counter()
    model.fit(X, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, method=method,
              init=init, nonneg=nonneg, positive_dict=positive_dict, progress=progress,
              checkpoint_dir=out / "checkpoints", checkpoint_every=checkpoint_every,
              resume=resume)  # fmt: skip
    seconds = time.perf_counter() - start
    W = model.dictionary.detach().cpu().numpy()
    Z = model.encode(X, nonneg=nonneg)
    gap = duality_gap(X, W, Z, lam, nonneg=nonneg)
    metrics = {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "atoms": atoms,
        "lam": lam,
        "epochs": epochs,
        "batch_size": batch_size,
        "method": method,
        "init": init,
        "nonneg": nonneg,
        "positive_dict": positive_dict,
        "seed": seed,
        "train_seconds": round(seconds, 3),
        "epoch_mean_energy": model.history_,
        "final_mean_energy": float(model.energy(X, Z).mean()),
        "mean_nonzeros_per_code": float((Z != 0).sum(1).mean()),
        "reconstruction_mse": float(((X - Z @ W.T) ** 2).mean()),
        "duality_gap_mean": float(gap.mean()),
        "duality_gap_max": float(gap.max()),
        "dead_atoms_reinitialised": model.n_reinit_,
        "atom_usage": _usage_summary(atom_usage(Z)),
    }
    shape = vectors.image_shape
    if len(shape) == 2:
        atoms_img = W.T.reshape((atoms,) + shape)
        metrics["atom_extent_pixels_median"] = float(np.median(atom_extent(W)))
        save_atom_grid(atoms_img, out / "atoms.png", title=f"{atoms} atoms, lambda={lam}")
        if shape[0] == shape[1] and shape[0] <= 16:
            frac, r2 = gabor_likeness(W, shape)
            metrics["gabor_fraction_r2_gt_0.8"] = frac
            metrics["gabor_r2_median"] = float(np.median(r2))
    save(model, out)
    write_json(out / "metrics.json", metrics)
    return metrics


def _usage_summary(usage: np.ndarray) -> dict:
    return {
        "min": float(usage.min()),
        "median": float(np.median(usage)),
        "max": float(usage.max()),
        "unused": int((usage == 0).sum()),
    }


def run(args) -> None:
    check_out_folder(args.out)
    vectors = load_vectors(args.data, patch_size=args.patch_size, n_patches=args.n_patches,
                           whitening=args.whiten, seed=args.seed)  # fmt: skip
    metrics = train_and_report(
        vectors, atoms=args.atoms, lam=args.lam, epochs=args.epochs, batch_size=args.batch_size,
        method=args.method, lr=args.lr, seed=args.seed, device=args.device, out=args.out,
        init=args.init, nonneg=args.nonneg, positive_dict=args.positive_dict,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
    )  # fmt: skip
    print(f"wrote {args.out}: mean energy {metrics['final_mean_energy']:.4f}, "
          f"{metrics['mean_nonzeros_per_code']:.1f} non-zeros per code")  # fmt: skip
