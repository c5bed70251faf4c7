"""LISTA: a network that predicts sparse codes by unrolling ISTA (amortized inference)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .._backend import ArrayLike, as_batch, as_tensor, output_converter, resolve_device
from .._checks import (
    LvebmTypeError,
    LvebmValueError,
    check_choice,
    check_finite,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_shape,
)
from ..data import random_affine_images
from ..io import register_model
from ..lasso import lasso_objective, sparse_encode
from ..ops import gram_lipschitz
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs
from ..unrolled import analytic_weights, coupled_forward, lista_forward

__all__ = ["LISTA", "LISTAConfig", "deformed_training_set"]

VARIANTS = ("lista", "cp", "alista")
#: FISTA settings of the supervised targets computed by ``fit`` (relative change per step).
TARGET_TOL = 1e-6
TARGET_MAX_ITER = 10_000
#: FISTA settings of the deformed copies' target codes (``deformed_training_set``).
AUGMENT_TOL, AUGMENT_MAX_ITER = 1e-5, 1000
#: Deformed copies per image of ``deformed_training_set`` (measured on MNIST, docs/lista.md).
DEFAULT_VIEWS = 19
#: Fraction of the training steps after which ``schedule="step"`` divides the rate by 10.
STEP_DECAY_AT = 0.8


def _lr_factor(schedule: str, i: int, total: int) -> float:
    """Learning-rate multiplier at step ``i`` of ``total``."""
    if schedule == "step":
        return 0.1 if i >= STEP_DECAY_AT * total else 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(i, total) / total))
    return 1.0


@dataclass(frozen=True)
class LISTAConfig:
    """What defines a LISTA network (saved as JSON)."""

    n_features: int
    n_atoms: int
    lam: float
    steps: int = 3
    tied: bool = False
    variant: str = "lista"
    support: float = 0.0
    support_max: float = 0.0


@register_model
class LISTA(nn.Module):
    """Learned ISTA: ``steps`` unrolled, trainable ISTA layers that predict sparse codes.

    The codes it imitates minimise, per sample, the sparse-coding energy::

        E(y, z) = 0.5 * ||y - D z||^2 + lam * ||z||_1,     D (d, k) the fixed dictionary

    and the network computes, from ``z = 0``, ``steps`` layers of (``variant="lista"``)::

        z <- shrink_theta(W_e y + S z),   initialised as W_e = D^T/L, S = I - D^T D/L,
                                          theta = lam/L   (L = ||D^T D||_2)

    so that untrained it *is* ``steps`` iterations of ISTA. ``variant="cp"`` couples
    the weights (``S = I - W^T D``, LISTA-CP) and ``"alista"`` fixes ``W`` analytically
    and learns only a step size and a threshold per layer (ALISTA).

    Parameters
    ----------
    dictionary : array or tensor of shape (d, k)
        The decoder ``D``; kept fixed (a buffer), normally with unit-norm columns.
    lam : float >= 0
        Sparsity weight of the energy.
    steps : int >= 1
        Number of layers ``K``.
    tied : bool
        Share one set of weights by all layers (a recurrent network) instead of one per layer.
    variant : {"lista", "cp", "alista"}
    support : float >= 0
        Support selection: layer ``t`` lets its ``min(t*support, support_max)`` percent
        largest entries through unshrunk. 0 disables it.
    support_max : float >= 0
    device, dtype : default the dictionary's device and float dtype family.

    Examples
    --------
    >>> import numpy as np
    >>> D = np.eye(4)
    >>> net = LISTA(D, 0.5, steps=2)
    >>> net.encode(np.array([[2.0, 0.2, -1.0, 0.0]]))
    array([[ 1.5,  0. , -0.5,  0. ]])
    """

    kind = "lista"

    def __init__(
        self,
        dictionary: ArrayLike,
        lam: float,
        *,
        steps: int = 3,
        tied: bool = False,
        variant: str = "lista",
        support: float = 0.0,
        support_max: float = 0.0,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dev = resolve_device(device, getattr(dictionary, "device", None))
        D = as_tensor(dictionary, "dictionary", device=dev, dtype=dtype)
        check_ndim(D, "dictionary", 2, "(d, k)")
        check_nonempty(D, "dictionary")
        check_finite(D, "dictionary")
        if not isinstance(tied, bool):
            raise LvebmTypeError(f"`tied` must be a bool; got {tied!r}.")
        self.config = LISTAConfig(
            D.shape[0], D.shape[1], check_nonneg_float(lam, "lam"), check_int(steps, "steps"),
            tied, check_choice(variant, "variant", VARIANTS),
            check_nonneg_float(support, "support"), check_nonneg_float(support_max, "support_max"),
        )  # fmt: skip
        self.register_buffer("dictionary", D.clone())
        self._init_weights(D)
        self.history_: list[float] = []

    def _init_weights(self, D: torch.Tensor) -> None:
        """The ISTA point (or ALISTA's analytic weights) for every layer."""
        cfg = self.config
        d, k = D.shape
        L = max(gram_lipschitz(D.T @ D), torch.finfo(D.dtype).tiny)
        T = 1 if cfg.tied else cfg.steps
        if cfg.variant == "lista":
            S = torch.eye(k, dtype=D.dtype, device=D.device) - D.T @ D / L
            n_S = 1 if cfg.tied else cfg.steps - 1
            self.W_e = nn.Parameter((D.T / L).expand(T, k, d).clone())
            self.S = nn.Parameter(S.expand(n_S, k, k).clone())
            self.theta = nn.Parameter(
                torch.full((T, k), cfg.lam / L, dtype=D.dtype, device=D.device)
            )
        elif cfg.variant == "cp":
            self.W = nn.Parameter((D / L).expand(T, d, k).clone())
            self.theta = nn.Parameter(
                torch.full((T, k), cfg.lam / L, dtype=D.dtype, device=D.device)
            )
        else:
            Wa = analytic_weights(D)
            gamma = 1.0 / max(float(torch.linalg.matrix_norm(Wa.T @ D, ord=2)), 1e-12)
            self.register_buffer("W_analytic", Wa[None])  # (1, d, k)
            self.gamma = nn.Parameter(
                torch.full((cfg.steps,), gamma, dtype=D.dtype, device=D.device)
            )
            self.theta = nn.Parameter(
                torch.full((cfg.steps, 1), cfg.lam * gamma, dtype=D.dtype, device=D.device)
            )

    # -- persistence --------------------------------------------------------------------
    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> LISTA:
        d, k = cfg["n_features"], cfg["n_atoms"]
        gen = torch.Generator().manual_seed(0)
        placeholder = torch.randn(d, k, generator=gen)  # overwritten by load_state_dict
        return cls(
            placeholder, cfg["lam"], steps=cfg["steps"], tied=cfg["tied"], variant=cfg["variant"],
            support=cfg["support"], support_max=cfg["support_max"],
        )  # fmt: skip

    @property
    def lam(self) -> float:
        return self.config.lam

    @property
    def steps(self) -> int:
        return self.config.steps

    # -- inference ----------------------------------------------------------------------
    def forward(self, y: torch.Tensor, *, steps: int | None = None) -> torch.Tensor:
        """Codes (n, k) of a batch ``y`` (n, d) after ``steps`` layers (default all); no checks."""
        cfg = self.config
        K = cfg.steps if steps is None else steps
        ss = {"support": cfg.support, "support_max": cfg.support_max}
        if cfg.variant == "lista":
            return lista_forward(y, self.W_e, self.S, self.theta, steps=K, **ss)
        if cfg.variant == "cp":
            return coupled_forward(y, self.dictionary, self.W, self.theta, steps=K, **ss)
        return coupled_forward(y, self.dictionary, self.W_analytic, self.theta, self.gamma,
                               steps=K, **ss)  # fmt: skip

    @torch.no_grad()
    def init_from(self, shallower: LISTA) -> LISTA:
        """Copy the layers of a trained ``shallower`` network into the first layers of this one.

        The remaining layers keep their initialisation (ISTA steps, or ALISTA's), so
        the first ``shallower.steps`` layers compute exactly what ``shallower`` does and
        training starts from it: deep unrolled networks trained from the ISTA point
        alone train slowly (docs/lista.md). Both networks must have the same
        dictionary shape, variant and tying, and ``shallower`` no more layers.
        """
        b = self.config
        a = shallower.config if isinstance(shallower, LISTA) else None
        key = (b.n_features, b.n_atoms, b.variant, b.tied)
        if a is None or (a.n_features, a.n_atoms, a.variant, a.tied) != key or a.steps > b.steps:
            raise LvebmValueError(
                "`shallower` must be a LISTA with the same dictionary shape, variant and tying "
                f"and at most {b.steps} layers; got {a if a is not None else type(shallower)}."
            )
        mine = dict(self.named_parameters())
        for name, q in shallower.named_parameters():  # stacked along the layer axis
            mine[name][: q.shape[0]].copy_(q)
        return self

    def _signals(self, y: ArrayLike, name: str = "y") -> torch.Tensor:
        return as_batch(y, name, self.dictionary, "(n, d)", "dictionary")

    def encode(self, y: ArrayLike) -> ArrayLike:
        """Predicted codes (n, k) of the signals ``y`` (n, d); same kind as ``y``."""
        yt = self._signals(y)
        with torch.no_grad():
            return output_converter(y)(self(yt))

    def energy(self, y: ArrayLike, z: ArrayLike) -> ArrayLike:
        """``0.5*||y - D z||^2 + lam*||z||_1`` per sample; y (n, d), z (n, k) -> (n,)."""
        yt = self._signals(y)
        zt = as_tensor(z, "z", device=yt.device, dtype=yt.dtype)
        check_shape(zt, "z", (yt.shape[0], self.config.n_atoms))
        with torch.no_grad():
            return output_converter(y)(lasso_objective(yt, self.dictionary, zt, self.lam))

    # -- learning -----------------------------------------------------------------------
    def fit(
        self,
        data: ArrayLike,
        *,
        target: str = "fista",
        codes: ArrayLike | None = None,
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 1e-3,
        schedule: str = "step",
        seed: int | None = 0,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> LISTA:
        """Train the layers by backpropagation through the unrolled network.

        ``target="fista"`` (supervised, the original LISTA) minimises the mean
        ``||z(y) - z*(y)||^2`` with ``z*`` the optimal codes, given as ``codes`` (n, k)
        or computed here by FISTA (tol ``TARGET_TOL``); ``target="energy"``
        (unsupervised) minimises the mean energy ``E(y, z(y))`` directly.

        Adam with rate ``lr``; ``schedule="step"`` divides it by 10 for the last
        ``1 - STEP_DECAY_AT`` of the steps, ``"cosine"`` anneals it to 0, ``"constant"``
        keeps it (the step count is Adam's, so a resumed run continues the schedule).
        On MNIST (docs/lista.md) what mattered was more data: deformed copies of the
        digits with their codes (:func:`deformed_training_set`, passed as ``data`` and
        ``codes``), and so more steps; the schedule changed little. ``history_`` holds
        each epoch's mean loss. ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are
        passed to :func:`lvebm.training.run_epochs` (weights and Adam state are
        checkpointed).
        """
        Y = self._signals(data, "data")
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        check_choice(target, "target", ("fista", "energy"))
        Z = None
        if target == "fista":
            Z = self._targets(Y, codes)
        check_choice(schedule, "schedule", ("step", "cosine", "constant"))
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        total = epochs * math.ceil(Y.shape[0] / batch_size)
        first = next(iter(self.parameters()))
        D, lam = self.dictionary, self.lam

        def step(idx: torch.Tensor) -> float:
            yb = Y[idx]
            z = self(yb)
            if Z is None:
                loss = lasso_objective(yb, D, z, lam).mean()
            else:
                loss = (z - Z[idx]).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            done = int(opt.state[first]["step"]) if first in opt.state else 0
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(schedule, done, total)
            opt.step()
            return float(loss.detach())

        index = torch.arange(Y.shape[0], device=Y.device)
        self.history_ = run_epochs(
            self, index, step, epochs=epochs, batch_size=batch_size, seed=seed,
            progress=progress, callback=callback, desc="LISTA", optimizer=opt,
            checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
        )  # fmt: skip
        return self

    def _targets(self, Y: torch.Tensor, codes: ArrayLike | None) -> torch.Tensor:
        if codes is None:
            with torch.no_grad():
                return sparse_encode(Y, self.dictionary, self.lam, tol=TARGET_TOL,
                                     max_iter=TARGET_MAX_ITER)  # fmt: skip
        Z = as_tensor(codes, "codes", device=Y.device, dtype=Y.dtype)
        check_shape(Z, "codes", (Y.shape[0], self.config.n_atoms))
        check_finite(Z, "codes")
        return Z


def deformed_training_set(
    X: np.ndarray,
    image_shape: tuple[int, int],
    dictionary: ArrayLike,
    lam: float,
    *,
    views: int = DEFAULT_VIEWS,
    codes: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Image rows and ``views`` random affine copies of each, with their lasso codes.

    ``X`` (n, H*W) holds flattened images of shape ``image_shape``; the copies are
    :func:`lvebm.data.random_affine_images` (rotations up to 10 degrees, scales 0.9-1.1,
    shifts up to 2 pixels of a 28-pixel image, in proportion for other sizes). Returns
    ``(X_fit, Z_fit)`` of shapes ((views + 1) * n, H*W) and ((views + 1) * n, k): the
    originals first (with ``codes`` when given, else computed), then the copies, whose
    codes minimise ``0.5*||y - D z||^2 + lam*||z||_1`` (FISTA to ``AUGMENT_TOL``).
    LISTA over-fits a few thousand digits; these copies are what made a 3-step network
    match 55 FISTA iterations on MNIST (docs/lista.md).
    """
    X = np.asarray(X, dtype=np.float32)
    H, W = image_shape
    if X.ndim != 2 or X.shape[1] != H * W:
        raise LvebmValueError(
            f"`X` must be (n, {H * W}) flattened {H}x{W} images; got shape {X.shape}."
        )
    D = np.asarray(dictionary, dtype=np.float32)

    def encode(rows: np.ndarray) -> np.ndarray:
        return sparse_encode(rows, D, lam, tol=AUGMENT_TOL, max_iter=AUGMENT_MAX_ITER)

    shift = 2.0 * min(H, W) / 28  # 2 pixels on MNIST
    copies = random_affine_images(X.reshape(-1, H, W), views, shift=shift, seed=seed)
    copies = copies.reshape(-1, H * W)
    Z0 = encode(X) if codes is None else np.asarray(codes, dtype=np.float32)
    return np.concatenate([X, copies]), np.concatenate([Z0, encode(copies)])
