"""``lvebm train vae``: a VAE with its held-out bounds, latent "fuzzy balls" and sample grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..io import save
from ..models import VAE
from ..models.vae import DEFAULT_HIDDEN, gaussian_kl
from ..plotting import save_atom_grid, save_latent_balls
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

#: A latent unit is "active" when its mean KL over held-out data exceeds this (nats).
ACTIVE_KL = 0.01


def register(train, top) -> None:
    p = train.add_parser("vae", help="train a variational autoencoder")
    add_data_args(p)
    p.add_argument("--latent", type=positive_int, default=2, help="latent dimension k")
    p.add_argument("--beta", type=nonneg_float, default=1.0, help="weight of the KL term")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=list(DEFAULT_HIDDEN))
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian"], default="bernoulli")
    p.add_argument("--binarize", type=float, default=0.5,
                   help="threshold pixels at this value (negative: keep grey levels)")  # fmt: skip
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=3e-3)
    p.add_argument("--n-test", type=positive_int, default=1000, help="held-out digits")
    p.add_argument("--iwae-k", type=positive_int, default=100,
                   help="importance samples of the NLL")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_args(p)
    p.set_defaults(run=run)


def latent_stats(model: VAE, X: np.ndarray) -> dict:
    """Posterior geometry on ``X``: mean std, mean |mu|, per-dim KL and active units.

    Active units are counted two ways: mean KL above ``ACTIVE_KL`` nats, and Burda et al.'s
    (2016) ``Cov_y(E_q[z_d]) > 0.01``.
    """
    q = model.encode(torch.as_tensor(X))
    mean, logvar = q.mean.cpu(), q.logvar.cpu()
    kl = gaussian_kl(mean, logvar).mean(0)  # (k,)
    cov = mean.var(0)  # (k,)
    return {
        "mean_posterior_std": float(torch.exp(0.5 * logvar).mean()),
        "mean_distance_of_means_from_origin": float(mean.norm(dim=1).mean()),
        "kl_per_dim": [round(float(v), 4) for v in kl],
        "active_units_kl_gt_0.01": int((kl > ACTIVE_KL).sum()),
        "active_units_cov_gt_0.01": int((cov > 0.01).sum()),
    }


def train_and_report(vectors, *, latent: int, beta: float, hidden: tuple[int, ...],
                     likelihood: str, binarize: float, epochs: int, batch_size: int, lr: float,
                     n_test: int, iwae_k: int, seed: int, device, out: Path,
                     progress: bool = True, checkpoint_every: int | None = None,
                     resume: bool = False) -> dict:  # fmt: skip
    """Fit on all but ``n_test`` samples, save model, metrics.json and figures; return metrics.

    Checkpoints go to ``out/checkpoints`` (every ``checkpoint_every`` steps, else every
    epoch); ``resume`` continues from the newest one there.
    """
    X = vectors.X if binarize < 0 else (vectors.X > binarize).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    model = VAE(X.shape[1], latent, hidden=tuple(hidden), likelihood=likelihood, beta=beta,
                seed=seed, device=device)  # fmt: skip
    start = time.perf_counter()
    model.fit(X[train], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
              checkpoint_dir=out / "checkpoints", checkpoint_every=checkpoint_every,
              resume=resume)  # fmt: skip
    seconds = time.perf_counter() - start
    Xte = X[test]
    metrics = {
        "n_train": int(len(train)), "n_test": int(len(test)), "latent": latent, "beta": beta,
        "hidden": list(hidden), "likelihood": likelihood,
        "binarized_at": None if binarize < 0 else binarize, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed, "train_seconds": round(seconds, 1),
        "epoch_mean_loss": [round(v, 3) for v in model.history_],
        "test_neg_elbo_nats": float(-model.elbo(Xte, n_samples=10, seed=seed).mean()),
        f"test_iwae_nll_nats_k{iwae_k}": float(model.nll(Xte, k=iwae_k, seed=seed).mean()),
        **latent_stats(model, Xte),
    }  # fmt: skip
    _figures(model, vectors, Xte, test, out, title=f"beta={beta:g}")
    save(model, out)
    write_json(out / "metrics.json", metrics)
    return metrics


def _figures(model: VAE, vectors, Xte: np.ndarray, test: np.ndarray, out: Path, title: str):
    shape = vectors.image_shape
    samples = model.sample(64, seed=0).cpu().numpy()
    if len(shape) == 2:
        save_atom_grid(2 * samples.reshape((-1,) + shape) - 1, out / "samples.png",
                       title=f"prior samples, {title}")  # fmt: skip
    if model.config.n_latent != 2:
        return
    q = model.encode(Xte)
    labels = vectors.labels[test] if vectors.labels is not None else np.zeros(len(test))
    save_latent_balls(q.mean, np.exp(0.5 * q.logvar), labels, out / "latent_balls.png",
                      title=f"posterior mean +- std of held-out digits, {title}")  # fmt: skip
    if len(shape) == 2:  # decoded means over a 15 x 15 grid of the latent plane
        g = np.linspace(-2.5, 2.5, 15, dtype=np.float32)
        Z = np.stack(np.meshgrid(g, -g), axis=-1).reshape(-1, 2)
        imgs = model.decode(Z).reshape((-1,) + shape)
        save_atom_grid(2 * imgs - 1, out / "latent_grid.png",
                       title=f"decoded z over [-2.5, 2.5]^2, {title}")  # fmt: skip


def run(args) -> None:
    check_out_folder(args.out)
    vectors = load_vectors(args.data, patch_size=args.patch_size, n_patches=args.n_patches,
                           whitening=args.whiten, seed=args.seed)  # fmt: skip
    metrics = train_and_report(
        vectors, latent=args.latent, beta=args.beta, hidden=tuple(args.hidden),
        likelihood=args.likelihood, binarize=args.binarize, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, n_test=args.n_test, iwae_k=args.iwae_k,
        seed=args.seed, device=args.device, out=args.out,
        checkpoint_every=args.checkpoint_every, resume=args.resume,
    )  # fmt: skip
    print(f"wrote {args.out}: held-out -ELBO {metrics['test_neg_elbo_nats']:.2f} nats, "
          f"{metrics['active_units_kl_gt_0.01']} active units")  # fmt: skip
