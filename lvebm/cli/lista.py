"""``lvebm train lista`` and ``lvebm train psd``: amortized inference with figures and metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .._checks import LvebmValueError
from ..data import random_affine_images, shift_images
from ..io import load, save
from ..lasso import sparse_encode
from ..models import LISTA, PSD, SparseCoding
from ..models.lista import DEFAULT_VIEWS, deformed_training_set
from ..plotting import save_atom_grid
from ..unrolled import code_error, fista_equivalent, fista_error_curve
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

#: FISTA iterations shown and searched for the FISTA-equivalent of a code error.
CURVE_ITERS = 400


def register(train, top) -> None:
    p = train.add_parser("lista", help="train LISTA to predict the codes of a saved dictionary")
    add_data_args(p)
    p.add_argument(
        "--dictionary",
        type=Path,
        required=True,
        help="folder of a saved sparse-coding model (lvebm train sparse-coding)",
    )
    p.add_argument("--steps", type=positive_int, default=3, help="layers K")
    p.add_argument(
        "--lam", type=nonneg_float, default=None, help="L1 weight (default: the dictionary model's)"
    )
    p.add_argument("--variant", choices=["lista", "cp", "alista"], default="lista")
    p.add_argument("--tied", action="store_true", help="share weights across layers")
    p.add_argument("--target", choices=["fista", "energy"], default="fista")
    p.add_argument(
        "--augment",
        choices=["affine", "shifts", "none"],
        default="affine",
        help="add randomly deformed (affine) or one-pixel shifted copies of image data, "
        "with their FISTA codes",
    )
    p.add_argument(
        "--views", type=positive_int, default=DEFAULT_VIEWS,
        help="deformed copies per image of --augment affine",
    )  # fmt: skip
    _add_common(p, epochs=30, lr=None)
    p.set_defaults(run=run_lista)

    q = train.add_parser("psd", help="predictive sparse decomposition: dictionary + encoder")
    add_data_args(q)
    q.add_argument("--atoms", type=positive_int, default=256)
    q.add_argument("--lam", type=nonneg_float, default=0.1)
    q.add_argument("--alpha", type=nonneg_float, default=1.0, help="weight of the prediction term")
    q.add_argument("--encoder", choices=["tanh", "lista"], default="tanh")
    q.add_argument("--encoder-steps", type=positive_int, default=3)
    _add_common(q, epochs=10, lr=1e-3)
    q.set_defaults(run=run_psd)  # fmt: skip


def _add_common(p, *, epochs: int, lr: float | None) -> None:
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=positive_float, default=lr, help="Adam learning rate")
    p.add_argument("--test-fraction", type=float, default=0.125,
                   help="share of the data held out for the metrics")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_args(p)


def split(X: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) rows of ``X`` by a seeded permutation."""
    if not 0.0 < fraction < 1.0:
        raise LvebmValueError(f"`--test-fraction` must be in (0, 1); got {fraction}.")
    order = np.random.default_rng(seed).permutation(X.shape[0])
    n_test = max(1, int(round(fraction * X.shape[0])))
    return X[order[n_test:]], X[order[:n_test]]


def code_report(encode, X_test: np.ndarray, W: np.ndarray, lam: float, steps: int) -> dict:
    """Held-out code error against FISTA-to-convergence and its FISTA/ISTA equivalents."""
    y, D = torch.tensor(X_test, dtype=torch.float64), torch.tensor(W, dtype=torch.float64)
    z_star = sparse_encode(y, D, lam, tol=1e-7, max_iter=20_000)
    err = code_error(torch.tensor(encode(X_test), dtype=torch.float64), z_star)
    curves = {
        "FISTA": fista_error_curve(y, D, lam, z_star, max_iter=CURVE_ITERS),
        "ISTA": fista_error_curve(y, D, lam, z_star, max_iter=CURVE_ITERS, accelerate=False),
    }
    f_eq = fista_equivalent(err, curves["FISTA"])
    return {
        "held_out_code_error": err,
        "fista_iterations_to_match": f_eq if np.isfinite(f_eq) else None,
        "ista_iterations_to_match": _finite(fista_equivalent(err, curves["ISTA"])),
        "fista_iterations_per_step": f_eq / steps if np.isfinite(f_eq) else None,
        "curves": {k: v[:100] for k, v in curves.items()},
    }


#: One-pixel shifts (dy, dx) of ``--augment shifts``.
SHIFTS = [(1, 0), (-1, 0), (0, 1), (0, -1)]


def augment(X: np.ndarray, image_shape: tuple[int, ...], W: np.ndarray, lam: float,
            mode: str, target: str, *, views: int = DEFAULT_VIEWS,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """Training rows (and FISTA codes for ``target="fista"``), with deformed copies if asked.

    Copies apply to 2-d image data only; other data is returned as is.
    """
    if len(image_shape) == 2 and mode == "affine" and target == "fista":
        return deformed_training_set(X, image_shape, W, lam, views=views, seed=seed)
    if len(image_shape) == 2 and mode != "none":
        images = X.reshape((-1,) + image_shape)
        copies = (random_affine_images(images, views, seed=seed) if mode == "affine"
                  else shift_images(images, SHIFTS))  # fmt: skip
        X = np.concatenate([X, copies.reshape(copies.shape[0], -1)])
    if target != "fista":
        return X, None
    return X, sparse_encode(X, W, lam, tol=1e-5, max_iter=1000)


def _finite(x: float) -> float | None:
    return x if np.isfinite(x) else None


def plot_code_error(report: dict, steps: int, label: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in report["curves"].items():
        ax.semilogy(np.arange(1, len(curve) + 1), curve, label=name)
    ax.semilogy([steps], [report["held_out_code_error"]], "o", color="C3", label=label)
    ax.set_xlabel("iterations / layers")
    ax.set_ylabel("held-out code error ||z - z*||² / ||z*||²")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_lista(args) -> None:
    check_out_folder(args.out)
    sc = load(args.dictionary)
    if not isinstance(sc, SparseCoding):
        raise LvebmValueError(
            f"`--dictionary` must be a sparse-coding model folder; got a {sc.kind!r} model."
        )
    W = sc.dictionary.detach().cpu().numpy()
    lam = sc.lam if args.lam is None else args.lam
    vectors = load_vectors(args.data, patch_size=args.patch_size, n_patches=args.n_patches,
                           whitening=args.whiten, seed=args.seed)  # fmt: skip
    X_train, X_test = split(vectors.X, args.test_fraction, args.seed)
    net = LISTA(W, lam, steps=args.steps, tied=args.tied, variant=args.variant)
    lr = {} if args.lr is None else {"lr": args.lr}
    start = time.perf_counter()
    X_fit, codes = augment(X_train, vectors.image_shape, W, lam, args.augment, args.target,
                           views=args.views, seed=args.seed)  # fmt: skip
    net.fit(X_fit, target=args.target, codes=codes, epochs=args.epochs,
            batch_size=args.batch_size, seed=args.seed, checkpoint_dir=args.out / "checkpoints",
            checkpoint_every=args.checkpoint_every, resume=args.resume, **lr)  # fmt: skip
    seconds = time.perf_counter() - start
    report = code_report(net.encode, X_test, W, lam, args.steps)
    save(net, args.out)
    plot_code_error(report, args.steps, f"LISTA K={args.steps}", args.out / "code_error.png")
    metrics = {"steps": args.steps, "lam": lam, "variant": args.variant, "tied": args.tied,
               "target": args.target, "epochs": args.epochs, "batch_size": args.batch_size,
               "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
               "augment": args.augment, "views": args.views, "n_fit_rows": int(X_fit.shape[0]),
               "train_seconds": round(seconds, 2), "epoch_mean_loss": net.history_,
               **report}  # fmt: skip
    write_json(args.out / "metrics.json", metrics)
    print(f"wrote {args.out}: held-out code error {report['held_out_code_error']:.4f}, matched by "
          f"FISTA after {report['fista_iterations_to_match']} iterations")  # fmt: skip


def run_psd(args) -> None:
    check_out_folder(args.out)
    vectors = load_vectors(args.data, patch_size=args.patch_size, n_patches=args.n_patches,
                           whitening=args.whiten, seed=args.seed)  # fmt: skip
    X_train, X_test = split(vectors.X, args.test_fraction, args.seed)
    model = PSD(X_train.shape[1], args.atoms, args.lam, alpha=args.alpha, encoder=args.encoder,
                encoder_steps=args.encoder_steps, seed=args.seed)  # fmt: skip
    start = time.perf_counter()
    model.fit(X_train, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              seed=args.seed, checkpoint_dir=args.out / "checkpoints",
              checkpoint_every=args.checkpoint_every, resume=args.resume)  # fmt: skip
    seconds = time.perf_counter() - start
    W = model.dictionary.detach().cpu().numpy()
    steps = args.encoder_steps if args.encoder == "lista" else 1
    report = code_report(model.encode, X_test, W, args.lam, steps)
    save(model, args.out)
    shape = vectors.image_shape
    if len(shape) == 2:
        save_atom_grid(W.T.reshape((args.atoms,) + shape), args.out / "atoms.png",
                       title=f"PSD: {args.atoms} atoms, lambda={args.lam}")  # fmt: skip
    plot_code_error(report, steps, f"PSD encoder ({args.encoder})", args.out / "code_error.png")
    metrics = {"atoms": args.atoms, "lam": args.lam, "alpha": args.alpha,
               "encoder": args.encoder, "epochs": args.epochs, "n_train": int(X_train.shape[0]),
               "n_test": int(X_test.shape[0]), "train_seconds": round(seconds, 2),
               "epoch_mean_energy": model.history_, **report}  # fmt: skip
    write_json(args.out / "metrics.json", metrics)
    print(f"wrote {args.out}: encoder's held-out code error {report['held_out_code_error']:.4f} "
          f"(FISTA needs {report['fista_iterations_to_match']} iterations)")  # fmt: skip
