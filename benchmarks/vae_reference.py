"""lvebm's default VAE vs the PyTorch-examples reference VAE, trained identically.

Both see the same binarised MNIST digits (pixel > 0.5), the same train/test split, 30
epochs of batch 128, and are scored by the same estimators: held-out negative ELBO
(exact KL, 10-sample Monte-Carlo reconstruction) and the importance-weighted NLL bound
(k = 1000 by default), in nats per digit.

The reference is the ``vae/main.py`` model of github.com/pytorch/examples, copied
literally: 784-400-20 ReLU MLP, sigmoid output, BCE(sum) + KL, Adam(lr=1e-3), constant
learning rate, its own training loop.

Run::

    OMP_NUM_THREADS=2 python benchmarks/vae_reference.py --data $LVEBM_MNIST
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import lvebm
from lvebm.data import load_mnist
from lvebm.models.vae import DEFAULT_HIDDEN, DEFAULT_WARMUP_EPOCHS, LOG_2PI, gaussian_kl


class ReferenceVAE(nn.Module):
    """pytorch/examples vae/main.py, verbatim apart from formatting."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def reference_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def train_reference(X: torch.Tensor, *, epochs: int, batch_size: int, seed: int) -> ReferenceVAE:
    torch.manual_seed(seed)
    model = ReferenceVAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(X, batch_size=batch_size, shuffle=True)
    model.train()
    for _ in range(epochs):
        for x in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            reference_loss(recon, x, mu, logvar).backward()
            opt.step()
    return model.eval()


def _bernoulli_ll(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-7, 1 - 1e-7)  # the reference outputs probabilities, not logits
    return (x * p.log() + (1 - x) * (1 - p).log()).sum(-1)


@torch.no_grad()
def reference_scores(model: ReferenceVAE, X: torch.Tensor, *, k: int, seed: int) -> dict:
    """Negative ELBO (10 MC samples, exact KL) and IWAE NLL (k samples) per digit, means."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = model.encode(X)
    eps = torch.randn(10, *mu.shape, generator=gen)
    z = mu + torch.exp(0.5 * logvar) * eps
    elbo = _bernoulli_ll(X, model.decode(z)).mean(0) - gaussian_kl(mu, logvar).sum(1)
    nll = []
    for xb, mb, lb in zip(X.split(100), mu.split(100), logvar.split(100), strict=True):
        eps = torch.randn(k, *mb.shape, generator=gen)
        z = mb + torch.exp(0.5 * lb) * eps
        log_q = -0.5 * ((z - mb).pow(2) * torch.exp(-lb) + lb + LOG_2PI).sum(-1)
        log_p = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_w = _bernoulli_ll(xb, model.decode(z)) + log_p - log_q
        nll.append(math.log(k) - torch.logsumexp(log_w, 0))
    return {"neg_elbo": float(-elbo.mean()), "iwae_nll": float(torch.cat(nll).mean())}


def lvebm_scores(model: lvebm.VAE, X: torch.Tensor, *, k: int, seed: int) -> dict:
    return {
        "neg_elbo": float(-model.elbo(X, n_samples=10, seed=seed).mean()),
        "iwae_nll": float(model.nll(X, k=k, seed=seed, batch_size=100).mean()),
    }


def split_binarised_mnist(path, *, n_test: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Binarised digits (pixel > 0.5) as (n, 784) float32, split by a seeded permutation."""
    images, _ = load_mnist(path)
    X = torch.from_numpy((images.reshape(len(images), -1) > 0.5).astype(np.float32))
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[n_test:]], X[order[:n_test]]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="MNIST .npz/IDX (default $LVEBM_MNIST)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--latent", type=int, default=32, help="lvebm VAE latent size")
    p.add_argument("--hidden", type=int, nargs="+", default=list(DEFAULT_HIDDEN))
    p.add_argument("--warmup-epochs", type=float, default=DEFAULT_WARMUP_EPOCHS)
    p.add_argument("--lr", type=float, default=None, help="default: VAE.fit's default")
    p.add_argument("--k", type=int, default=1000, help="IWAE samples")
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    Xtr, Xte = split_binarised_mnist(args.data, n_test=args.n_test, seed=args.seed)
    results = {"n_train": len(Xtr), "n_test": len(Xte), "epochs": args.epochs,
               "batch_size": args.batch_size, "k": args.k}  # fmt: skip
    t0 = time.perf_counter()
    ours = lvebm.VAE(784, args.latent, hidden=tuple(args.hidden), seed=args.seed)
    lr = (
        args.lr
        if args.lr is not None
        else inspect.signature(lvebm.VAE.fit).parameters["lr"].default
    )
    ours.fit(Xtr, epochs=args.epochs, batch_size=args.batch_size, lr=lr,
             warmup_epochs=args.warmup_epochs, seed=args.seed, progress=False)  # fmt: skip
    results["lvebm"] = {
        "latent": args.latent, "hidden": args.hidden, "lr": lr,
        "warmup_epochs": args.warmup_epochs, "train_seconds": round(time.perf_counter() - t0, 1),
        **lvebm_scores(ours, Xte, k=args.k, seed=args.seed),
        "train_neg_elbo": float(-ours.elbo(Xtr[:2000], n_samples=10).mean()),
    }  # fmt: skip
    print("lvebm    ", json.dumps(results["lvebm"]), flush=True)
    if not args.skip_reference:
        t0 = time.perf_counter()
        ref = train_reference(Xtr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
        results["reference"] = {
            "latent": 20, "hidden": [400], "lr": 1e-3,
            "train_seconds": round(time.perf_counter() - t0, 1),
            **reference_scores(ref, Xte, k=args.k, seed=args.seed),
            "train_neg_elbo": reference_scores(ref, Xtr[:2000], k=1, seed=args.seed)["neg_elbo"],
        }  # fmt: skip
        print("reference", json.dumps(results["reference"]), flush=True)
        gain = results["reference"]["neg_elbo"] - results["lvebm"]["neg_elbo"]
        results["neg_elbo_gain_nats"] = gain
        print(f"lvebm beats the reference by {gain:.2f} nats of held-out -ELBO")
    if args.json:
        from pathlib import Path

        from lvebm.io import atomic_write_bytes

        atomic_write_bytes(Path(args.json), (json.dumps(results, indent=2) + "\n").encode())
    return results


if __name__ == "__main__":
    main()
