"""Variational autoencoder: Gaussian encoder, reparameterised sampling, MLP decoder.

The negative ELBO per sample, with ``q(z|y) = N(mu(y), diag exp(logvar(y)))`` and
``p(z) = N(0, I)``::

    -ELBO(y) = E_q[-log p(y|z)] + beta * KL(q(z|y) || p(z))

read as an energy: a reconstruction cost plus ``beta`` times a "spring" that pulls each
posterior "fuzzy ball" towards the origin and keeps it from shrinking (beta = 1 gives
the true bound on ``-log p(y)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from .._backend import ArrayLike, as_tensor, make_generator, output_converter, resolve_device
from .._checks import (
    LvebmValueError,
    check_choice,
    check_finite,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
)
from ..io import register_model
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs
from ._nets import check_hidden, mlp

__all__ = [
    "VAE",
    "VAEConfig",
    "VAELoss",
    "Posterior",
    "gaussian_kl",
    "reparameterize",
    "log_likelihood",
]

LIKELIHOODS = ("bernoulli", "gaussian")
#: Default hidden widths of the encoder (the decoder mirrors them); chosen by
#: benchmarks/vae_reference.py (see docs/vae.md).
DEFAULT_HIDDEN = (512,)
#: Default KL warm-up of ``fit``, in epochs.
DEFAULT_WARMUP_EPOCHS = 0.0
LOG_2PI = math.log(2.0 * math.pi)


class Posterior(NamedTuple):
    """``q(z|y)``: mean and log-variance, each of shape (n, k)."""

    mean: torch.Tensor
    logvar: torch.Tensor


class VAELoss(NamedTuple):
    """Batch means, in nats per sample: ``total = reconstruction + beta * kl``."""

    total: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


# -- pure functions ---------------------------------------------------------------------
def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, 1))`` per dimension, shape (n, k), in nats.

    Closed form ``0.5 * (mean^2 + exp(logvar) - 1 - logvar)``.
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``z = mean + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``: differentiable in both."""
    return mean + torch.exp(0.5 * logvar) * eps


def log_likelihood(
    y: torch.Tensor, out: torch.Tensor, likelihood: str, log_sigma: torch.Tensor
) -> torch.Tensor:
    """``log p(y | z)`` summed over features, shape (...,), from the decoder output ``out``.

    "bernoulli": ``out`` are logits, ``sum y log p + (1 - y) log(1 - p)``;
    "gaussian": ``out`` is the mean and ``log_sigma`` a scalar log standard deviation.
    No validation.
    """
    if likelihood == "bernoulli":
        nll = nn.functional.binary_cross_entropy_with_logits(
            out, y.expand_as(out), reduction="none"
        )
        return -nll.sum(-1)
    r = (y - out) * torch.exp(-log_sigma)
    return -0.5 * (r.pow(2) + LOG_2PI).sum(-1) - y.shape[-1] * log_sigma


def _log_normal(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mean, diag exp(logvar))`` summed over the last axis."""
    return -0.5 * ((z - mean).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


class _FitState:
    """What ``VAE.fit``'s steps mutate besides the weights and Adam: noise and step count."""

    def __init__(self, gen: torch.Generator):
        self.gen, self.n_steps = gen, 0

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state(), "n_steps": self.n_steps}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])
        self.n_steps = int(state["n_steps"])


def cosine_lr(lr: float, step: int, total: int) -> float:
    """Cosine decay from ``lr`` at step 0 to ``lr / 100`` at ``total``."""
    floor = lr / 100
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(step, total) / total))


@dataclass(frozen=True)
class VAEConfig:
    """What defines a VAE (saved as JSON)."""

    n_features: int
    n_latent: int
    hidden: tuple[int, ...]
    likelihood: str
    beta: float


@register_model
class VAE(nn.Module):
    """Variational autoencoder with MLP encoder and decoder.

    Encoder ``y -> (mu, logvar)`` of shape (n, k) each; decoder ``z -> out`` of shape
    (n, d) (Bernoulli logits or Gaussian means). Loss per sample::

        -log p(y | z) + beta * KL(N(mu, diag exp(logvar)) || N(0, I)),   z = mu + sigma * eps

    Parameters
    ----------
    n_features : int
        Data dimension ``d``.
    n_latent : int
        Latent dimension ``k``.
    hidden : tuple of int
        Encoder hidden widths; the decoder uses them reversed (default ``DEFAULT_HIDDEN``).
    likelihood : "bernoulli" or "gaussian"
        ``p(y|z)``; Bernoulli wants data in [0, 1]; Gaussian has one learned scalar sigma.
    beta : float >= 0
        Weight of the KL term in training (the reported ``elbo`` always uses 1).
    seed : int, optional
        Seed of the weight initialisation.
    device : where the weights live (default CPU); float32.

    Examples
    --------
    >>> import numpy as np
    >>> vae = VAE(16, 2, hidden=(8,), seed=0)
    >>> vae.elbo(np.full((3, 16), 0.5, dtype=np.float32)).shape
    (3,)
    """

    kind = "vae"

    def __init__(
        self,
        n_features: int,
        n_latent: int,
        *,
        hidden: tuple[int, ...] = DEFAULT_HIDDEN,
        likelihood: str = "bernoulli",
        beta: float = 1.0,
        seed: int | None = 0,
        device: Any = None,
    ):
        super().__init__()
        self.config = VAEConfig(
            check_int(n_features, "n_features"),
            check_int(n_latent, "n_latent"),
            check_hidden(hidden),
            check_choice(likelihood, "likelihood", LIKELIHOODS),
            check_nonneg_float(beta, "beta"),
        )
        gen = make_generator(seed)
        d, k, h = n_features, n_latent, list(self.config.hidden)
        self.encoder = mlp([d, *h, 2 * k], generator=gen)
        self.decoder = mlp([k, *h[::-1], d], generator=gen)
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.to(resolve_device(device))
        self.history_: list[float] = []

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> VAE:
        return cls(cfg["n_features"], cfg["n_latent"], hidden=tuple(cfg["hidden"]),
                   likelihood=cfg["likelihood"], beta=cfg["beta"])  # fmt: skip

    @property
    def device(self) -> torch.device:
        return self.log_sigma.device

    # -- validation -------------------------------------------------------------------
    def _data(self, y: ArrayLike, name: str = "y") -> torch.Tensor:
        t = as_tensor(y, name, device=self.device, dtype=torch.float32)
        check_ndim(t, name, 2, "(n, d)")
        check_nonempty(t, name)
        check_same_size(t.shape[1], name, self.config.n_features, "n_features")
        check_finite(t, name)
        if self.config.likelihood == "bernoulli" and bool(((t < 0) | (t > 1)).any()):
            raise LvebmValueError(
                f"`{name}` must lie in [0, 1] for likelihood='bernoulli'; got values in "
                f"[{float(t.min()):.3g}, {float(t.max()):.3g}]."
            )
        return t

    # -- the parts ----------------------------------------------------------------------
    def _posterior(self, y: torch.Tensor) -> Posterior:
        mean, logvar = self.encoder(y).chunk(2, dim=-1)  # (n, k) each
        return Posterior(mean, logvar)

    def _loss(self, y: torch.Tensor, eps: torch.Tensor, beta: float) -> VAELoss:
        q = self._posterior(y)
        z = reparameterize(q.mean, q.logvar, eps)  # (n, k)
        rec = -log_likelihood(y, self.decoder(z), self.config.likelihood, self.log_sigma)
        kl = gaussian_kl(q.mean, q.logvar).sum(1)  # (n,)
        return VAELoss((rec + beta * kl).mean(), rec.mean(), kl.mean())

    def loss(self, y: ArrayLike, *, seed: int | None = None) -> VAELoss:
        """Negative ELBO (with this model's ``beta``) of a batch ``y`` (n, d), one sample of z.

        Returns batch means (differentiable tensors): ``total = reconstruction + beta*kl``.
        """
        yt = self._data(y)
        gen = make_generator(seed, yt.device)
        eps = torch.randn(yt.shape[0], self.config.n_latent, generator=gen, device=yt.device)
        return self._loss(yt, eps, self.config.beta)

    def encode(self, y: ArrayLike) -> Posterior:
        """Posterior ``q(z|y)`` of ``y`` (n, d): ``Posterior(mean, logvar)``, each (n, k)."""
        yt = self._data(y)
        with torch.no_grad():
            q = self._posterior(yt)
        conv = output_converter(y)
        return Posterior(conv(q.mean), conv(q.logvar))

    def decode(self, z: ArrayLike) -> ArrayLike:
        """Mean of ``p(y|z)`` (probabilities or Gaussian means) for codes z (n, k) -> (n, d)."""
        zt = as_tensor(z, "z", device=self.device, dtype=torch.float32)
        check_ndim(zt, "z", 2, "(n, k)")
        check_same_size(zt.shape[1], "z", self.config.n_latent, "n_latent")
        check_finite(zt, "z")
        with torch.no_grad():
            out = self.decoder(zt)
            if self.config.likelihood == "bernoulli":
                out = torch.sigmoid(out)
        return output_converter(z)(out)

    def sample(self, n: int, *, seed: int | None = None) -> torch.Tensor:
        """``n`` decoded prior samples: mean of ``p(y|z)`` at ``z ~ N(0, I)``; tensor (n, d)."""
        n = check_int(n, "n")
        gen = make_generator(seed, self.device)
        z = torch.randn(n, self.config.n_latent, generator=gen, device=self.device)
        return self.decode(z)

    # -- evaluation ---------------------------------------------------------------------
    def elbo(self, y: ArrayLike, *, n_samples: int = 1, seed: int | None = 0) -> ArrayLike:
        """ELBO per sample in nats, shape (n,): ``E_q[log p(y|z)] - KL(q || p)`` (beta = 1).

        The expectation is a Monte-Carlo average over ``n_samples`` draws; the KL is exact.
        """
        yt = self._data(y)
        n_samples = check_int(n_samples, "n_samples")
        gen = make_generator(seed, yt.device)
        with torch.no_grad():
            q = self._posterior(yt)
            eps = torch.randn(n_samples, *q.mean.shape, generator=gen, device=yt.device)
            z = reparameterize(q.mean, q.logvar, eps)  # (s, n, k)
            ll = log_likelihood(yt, self.decoder(z), self.config.likelihood, self.log_sigma)
            out = ll.mean(0) - gaussian_kl(q.mean, q.logvar).sum(1)
        return output_converter(y)(out)

    def nll(
        self, y: ArrayLike, *, k: int = 100, seed: int | None = 0, batch_size: int = 256
    ) -> ArrayLike:
        """Importance-weighted estimate of ``-log p(y)`` per sample (nats), shape (n,).

        ``-log (1/k) sum_i p(y|z_i) p(z_i) / q(z_i|y)`` with ``z_i ~ q(z|y)`` (Burda et al.
        2016): an upper bound on ``-log p(y)`` in expectation, never looser than ``-elbo``,
        tightening as ``k`` grows.
        """
        yt = self._data(y)
        k = check_int(k, "k")
        batch_size = check_int(batch_size, "batch_size")
        gen = make_generator(seed, yt.device)
        parts = []
        with torch.no_grad():
            for yb in yt.split(batch_size):
                q = self._posterior(yb)
                eps = torch.randn(k, *q.mean.shape, generator=gen, device=yt.device)
                z = reparameterize(q.mean, q.logvar, eps)  # (k, b, n_latent)
                ll = log_likelihood(yb, self.decoder(z), self.config.likelihood, self.log_sigma)
                log_prior = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
                log_w = ll + log_prior - _log_normal(z, q.mean, q.logvar)  # (k, b)
                parts.append(math.log(k) - torch.logsumexp(log_w, dim=0))  # (b,)
        return output_converter(y)(torch.cat(parts))

    # -- learning -----------------------------------------------------------------------
    def fit(
        self,
        data: ArrayLike,
        *,
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 3e-3,
        seed: int | None = 0,
        warmup_epochs: float = DEFAULT_WARMUP_EPOCHS,
        init: str = "data",
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> VAE:
        """Train on ``data`` (n, d) by Adam on the negative ELBO, one z sample per example.

        Adam follows the gradient of the batch's summed negative ELBO (as the PyTorch
        example does; with Adam this only matters through its ``eps``, but per-sample means
        make many pixel weights' gradients small enough for ``eps`` to slow them down).
        With ``init="data"`` a Bernoulli decoder's output bias is first set to the logit of
        the data's pixel means (the model then reconstructs the average digit from the
        first step); ``"current"`` continues from the present weights.

        The learning rate follows a cosine decay from ``lr`` to ``lr / 100`` over all
        steps; the KL weight rises linearly from 0 to ``beta`` over the first
        ``warmup_epochs`` epochs (KL annealing; 0 disables it). ``history_`` holds each
        epoch's mean loss.

        ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are passed to
        :func:`lvebm.training.run_epochs` (weights, Adam, the noise generator and the step
        count are checkpointed), so a resumed fit ends bit-identical on CPU.
        """
        Y = self._data(data, "data")
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        warmup_epochs = check_nonneg_float(warmup_epochs, "warmup_epochs")
        n = Y.shape[0]
        total_steps = epochs * math.ceil(n / batch_size)
        warmup_steps = warmup_epochs * math.ceil(n / batch_size)
        check_choice(init, "init", ("data", "current"))
        if init == "data" and self.config.likelihood == "bernoulli":
            with torch.no_grad():
                p = Y.mean(0).clamp(1e-3, 1 - 1e-3)  # (d,)
                self.decoder[-1].bias.copy_(torch.log(p) - torch.log1p(-p))
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        fs = _FitState(make_generator(None if seed is None else seed + 1, Y.device))

        def step(yb: torch.Tensor) -> float:
            t = fs.n_steps
            ramp = min(1.0, (t + 1) / warmup_steps) if warmup_steps > 0 else 1.0
            for group in opt.param_groups:
                group["lr"] = cosine_lr(lr, t, total_steps)
            eps = torch.randn(yb.shape[0], self.config.n_latent, generator=fs.gen, device=Y.device)
            self.train()
            loss = self._loss(yb, eps, ramp * self.config.beta)
            opt.zero_grad(set_to_none=True)
            (loss.total * yb.shape[0]).backward()
            opt.step()
            fs.n_steps += 1
            return float(loss.reconstruction.detach() + self.config.beta * loss.kl.detach())

        try:
            self.history_ = run_epochs(
                self, Y, step, epochs=epochs, batch_size=batch_size, seed=seed,
                progress=progress, callback=callback, desc="vae", optimizer=opt, extra_state=fs,
                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
            )  # fmt: skip
        finally:
            self.eval()
        return self
