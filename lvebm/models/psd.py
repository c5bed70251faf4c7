"""Predictive sparse decomposition: sparse coding with a trained feed-forward code predictor."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .._backend import (
    ArrayLike,
    as_batch,
    as_tensor,
    make_generator,
    output_converter,
    resolve_device,
)
from .._checks import (
    check_choice,
    check_int,
    check_nonneg_float,
    check_positive_float,
    check_seed,
    check_shape,
)
from ..dictionary import OnlineStats, online_update
from ..io import register_model
from ..operators import Dense
from ..ops import gram_lipschitz, normalize_columns
from ..regularizers import L1
from ..solvers import LeastSquares, WithPrediction, fista
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs
from .lista import LISTA

__all__ = ["PSD", "PSDConfig", "psd_energy"]

ENCODERS = ("tanh", "lista")
#: FISTA settings of the inner inference during training (warm-started at Enc(y)).
INFER_MAX_ITER = 200
INFER_TOL = 1e-4


@dataclass(frozen=True)
class PSDConfig:
    """What defines a PSD model (saved as JSON)."""

    n_features: int
    n_atoms: int
    lam: float
    alpha: float = 1.0
    encoder: str = "tanh"
    encoder_steps: int = 3


def psd_energy(
    y: torch.Tensor, W: torch.Tensor, z: torch.Tensor, p: torch.Tensor, lam: float, alpha: float
) -> torch.Tensor:
    """``0.5*||y - W z||^2 + 0.5*alpha*||z - p||^2 + lam*||z||_1`` per sample, (n,); no checks."""
    r = y - z @ W.T  # (n, d)
    return 0.5 * r.pow(2).sum(1) + 0.5 * alpha * (z - p).pow(2).sum(1) + lam * z.abs().sum(1)


class _TanhEncoder(nn.Module):
    """``Enc(y) = g * tanh(W_e y + b)`` with a learned per-atom gain ``g`` (k,).

    Starts at ``W_e = W^T / L`` (the first ISTA step before its shrinkage), ``b = 0``,
    ``g = 1``.
    """

    def __init__(self, W: torch.Tensor):
        super().__init__()
        d, k = W.shape
        L = max(gram_lipschitz(W.T @ W), 1e-12)
        self.W_e = nn.Parameter(W.T / L)  # (k, d)
        self.b = nn.Parameter(W.new_zeros(k))
        self.g = nn.Parameter(W.new_ones(k))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.g * torch.tanh(y @ self.W_e.T + self.b)  # (n, k)


@register_model
class PSD(nn.Module):
    """Predictive sparse decomposition (Kavukcuoglu, Ranzato & LeCun 2008).

    Energy per sample, with the library's 0.5 convention on the quadratic terms::

        E(y, z) = 0.5*||y - W z||^2 + 0.5*alpha*||z - Enc(y)||^2 + lam*||z||_1

    W (d, k) with unit-norm columns. This is the paper's
    ``||y - W z||^2 + alpha*||z - Enc(y)||^2 + lam'*||z||_1`` halved, with
    ``lam = lam'/2``, so ``lam`` means what it means in :class:`SparseCoding` and
    ``alpha = 0`` gives back sparse coding. Training alternates FISTA inference of
    ``z* = argmin_z E(y, z)`` (warm-started at ``Enc(y)``) with a dictionary update
    and a gradient step of the encoder towards ``z*``; at test time ``encode`` is
    the encoder alone.

    Parameters
    ----------
    n_features, n_atoms : int
        ``d`` and ``k``.
    lam : float >= 0
    alpha : float >= 0
        Weight of the prediction term.
    encoder : {"tanh", "lista"}
        ``g * tanh(W_e y + b)`` or a :class:`LISTA` with ``encoder_steps`` layers.
    encoder_steps : int >= 1
    seed : int, optional
        Seed of the random initial dictionary.
    device, dtype : default CPU, float32.
    """

    kind = "psd"

    def __init__(
        self,
        n_features: int,
        n_atoms: int,
        lam: float = 0.1,
        *,
        alpha: float = 1.0,
        encoder: str = "tanh",
        encoder_steps: int = 3,
        seed: int | None = 0,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.config = PSDConfig(
            check_int(n_features, "n_features"), check_int(n_atoms, "n_atoms"),
            check_nonneg_float(lam, "lam"), check_nonneg_float(alpha, "alpha"),
            check_choice(encoder, "encoder", ENCODERS), check_int(encoder_steps, "encoder_steps"),
        )  # fmt: skip
        gen = make_generator(seed)
        W = normalize_columns(torch.randn(n_features, n_atoms, generator=gen, dtype=dtype))
        W = W.to(resolve_device(device))
        self.dictionary = nn.Parameter(W, requires_grad=False)
        self.encoder = self._make_encoder(W)
        self.history_: list[float] = []

    def _make_encoder(self, W: torch.Tensor) -> nn.Module:
        if self.config.encoder == "tanh":
            return _TanhEncoder(W)
        return LISTA(W, self.config.lam, steps=self.config.encoder_steps)

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> PSD:
        return cls(cfg["n_features"], cfg["n_atoms"], cfg["lam"], alpha=cfg["alpha"],
                   encoder=cfg["encoder"], encoder_steps=cfg["encoder_steps"])  # fmt: skip

    @property
    def lam(self) -> float:
        return self.config.lam

    def _signals(self, y: ArrayLike, name: str = "y") -> torch.Tensor:
        return as_batch(y, name, self.dictionary, "(n, d)", "dictionary")

    # -- energy, prediction and inference ------------------------------------------------
    def encode(self, y: ArrayLike) -> ArrayLike:
        """The encoder's codes ``Enc(y)`` (n, k) for signals ``y`` (n, d) (no optimisation)."""
        yt = self._signals(y)
        with torch.no_grad():
            return output_converter(y)(self.encoder(yt))

    def energy(self, y: ArrayLike, z: ArrayLike) -> ArrayLike:
        """``E(y, z)`` per sample (see the class docstring); y (n, d), z (n, k) -> (n,)."""
        yt = self._signals(y)
        zt = as_tensor(z, "z", device=yt.device, dtype=yt.dtype)
        check_shape(zt, "z", (yt.shape[0], self.config.n_atoms))
        with torch.no_grad():
            p = self.encoder(yt)
            return output_converter(y)(
                psd_energy(yt, self.dictionary, zt, p, self.lam, self.config.alpha)
            )

    def infer(self, y: ArrayLike, *, max_iter: int = 1000, tol: float = 1e-6) -> ArrayLike:
        """``argmin_z E(y, z)`` (n, k) by FISTA warm-started at ``Enc(y)``."""
        yt = self._signals(y)
        max_iter, tol = check_int(max_iter, "max_iter"), check_positive_float(tol, "tol")
        with torch.no_grad():
            return output_converter(y)(self._infer(yt, max_iter=max_iter, tol=tol))

    def _infer(self, y: torch.Tensor, *, max_iter: int, tol: float) -> torch.Tensor:
        W, alpha = self.dictionary.detach(), self.config.alpha
        p = self.encoder(y).detach()
        L = gram_lipschitz(W.T @ W) + alpha
        f = WithPrediction(LeastSquares(y, Dense(W)), p, alpha)
        return fista(f, L1(), p, lam=self.lam, L=L, max_iter=max_iter, tol=tol).z

    # -- learning -----------------------------------------------------------------------
    def fit(
        self,
        data: ArrayLike,
        *,
        epochs: int = 10,
        batch_size: int = 256,
        lr: float = 1e-3,
        seed: int | None = 0,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> PSD:
        """Train dictionary and encoder jointly on ``data`` (n, d).

        Each step: ``z* = argmin_z E(y, z)`` by FISTA from ``Enc(y)``; the dictionary
        takes an online block-coordinate step on ``0.5*||y - W z*||^2`` (as in
        :meth:`SparseCoding.fit`) and is renormalised; the encoder takes an Adam step
        (rate ``lr``) on ``0.5*alpha*||z* - Enc(y)||^2``. The dictionary starts from
        random unit-normed training samples. ``history_`` holds each epoch's mean
        energy ``E(y, z*)``. ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are
        passed to :func:`lvebm.training.run_epochs` (weights, Adam state and the online
        statistics are checkpointed).
        """
        Y = self._signals(data, "data")
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        seed = check_seed(seed)
        n, k = Y.shape[0], self.config.n_atoms
        gen = make_generator(None if seed is None else seed + 1)
        pick = torch.randint(0, n, (k,), generator=gen).to(Y.device)
        W0 = Y[pick].T + 1e-3 * torch.randn(Y.shape[1], k, generator=gen, dtype=Y.dtype)
        self.dictionary.data = normalize_columns(W0.to(Y.device))
        self.encoder = self._make_encoder(self.dictionary.data)
        stats = OnlineStats.zeros(self.dictionary.data)
        opt = torch.optim.Adam(self.encoder.parameters(), lr=lr)
        alpha = self.config.alpha

        def step(idx: torch.Tensor) -> float:
            yb = Y[idx]
            with torch.no_grad():
                z = self._infer(yb, max_iter=INFER_MAX_ITER, tol=INFER_TOL)  # (b, k)
            p = self.encoder(yb)
            loss = 0.5 * alpha * (z - p).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                energy = psd_energy(yb, self.dictionary, z, p, self.lam, alpha).mean()
                self.dictionary.data = online_update(self.dictionary.data, yb, z, stats)
            return float(energy)

        index = torch.arange(n, device=Y.device)
        self.history_ = run_epochs(
            self, index, step, epochs=epochs, batch_size=batch_size, seed=seed,
            progress=progress, callback=callback, desc="PSD", optimizer=opt,
            extra_state=stats, checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every, resume=resume,
        )  # fmt: skip
        return self
