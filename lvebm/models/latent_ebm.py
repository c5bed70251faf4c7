"""Conditional latent-variable EBM: ``E(x, y, z) = C(y, Dec(Pred(x), z)) + lam * R(z)``.

The predictor turns the observed ``x`` into a context ``h = Pred(x)``; the decoder maps
the context and a latent ``z`` to a prediction ``y_hat = Dec(h, z)``; the cost ``C``
compares it with ``y`` and the regularizer ``R`` limits the information ``z`` can carry.
Inference minimises over ``z``; the free energy is ``F(x, y) = min_z E(x, y, z)``.
Without ``R`` (``lam = 0``) and a latent as large as ``y``, every ``y`` can be
reconstructed and the energy surface collapses to zero (docs/latent_ebm.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .._backend import ArrayLike, as_tensor, make_generator, output_converter, resolve_device
from .._checks import (
    LvebmTypeError,
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
from ..regularizers import L2, REGISTRY, Regularizer
from ..solvers import SolveResult, prox_gradient
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs
from ._nets import check_hidden, mlp

__all__ = ["LatentEBM", "ConcatDecoder", "MLPArchitecture", "squared_cost", "absolute_cost"]


def squared_cost(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """``0.5 * ||y - y_hat||^2`` per sample, shape (n,)."""
    return 0.5 * (y - y_hat).reshape(y.shape[0], -1).pow(2).sum(1)


def absolute_cost(y: torch.Tensor, y_hat: torch.Tensor) -> torch.Tensor:
    """``||y - y_hat||_1`` per sample, shape (n,)."""
    return (y - y_hat).reshape(y.shape[0], -1).abs().sum(1)


COSTS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "squared": squared_cost,
    "absolute": absolute_cost,
}


class ConcatDecoder(nn.Module):
    """``Dec(h, z) = net([h, z])``: a network applied to the context and latent side by side."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h, z], dim=-1))  # (n, n_context + k) -> (n, d_y)


@dataclass(frozen=True)
class MLPArchitecture:
    """The standard MLP predictor and concat-decoder of :meth:`LatentEBM.mlp` (saved as JSON)."""

    n_x: int
    n_y: int
    n_latent: int
    n_context: int
    hidden: tuple[int, ...]
    cost: str
    regularizer: str
    lam: float


class _DecoderCost:
    """``f(z) = C(y, Dec(h, z))`` per sample with its autograd gradient in ``z``; no validation."""

    def __init__(self, decoder: nn.Module, cost: Callable, h: torch.Tensor, y: torch.Tensor):
        self.decoder, self.cost, self.h, self.y = decoder, cost, h, y

    def value_and_grad(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            v = self.cost(self.y, self.decoder(self.h, z))  # (n,)
            (g,) = torch.autograd.grad(v.sum(), z)  # rows are independent: per-sample grads
        return v.detach(), g


class _Codes:
    """Warm-start codes (n, k) of ``LatentEBM.fit``; checkpointed with the weights."""

    def __init__(self, codes: torch.Tensor):
        self.codes = codes

    def state_dict(self) -> dict:
        return {"codes": self.codes}

    def load_state_dict(self, state: dict) -> None:
        self.codes.copy_(state["codes"])


@register_model
class LatentEBM(nn.Module):
    """Conditional latent-variable energy-based model built from ``nn.Module`` parts.

    Energy per sample::

        E(x, y, z) = C(y, Dec(Pred(x), z)) + lam * R(z),    F(x, y) = min_z E(x, y, z)

    Parameters
    ----------
    predictor : nn.Module
        ``x`` (n, n_x) -> context ``h`` (n, n_context).
    decoder : nn.Module
        Called as ``decoder(h, z)`` with ``z`` (n, k); returns ``y_hat`` shaped like ``y``.
        Rows must be independent (no batch norm in training mode).
    n_latent : int
        Latent size ``k``.
    cost : "squared" (``0.5||y - y_hat||^2``), "absolute" (``||y - y_hat||_1``) or a
        callable ``(y, y_hat) -> (n,)``.
    regularizer : Regularizer
        ``R``; :class:`~lvebm.L1`, :class:`~lvebm.NonNegL1`, :class:`~lvebm.L2` or a user
        subclass. Non-smooth ones are handled by their prox, smooth ones by gradient steps.
    lam : float >= 0
        Weight of ``R``.

    Notes
    -----
    ``save`` needs the architecture in the config: models built by :meth:`LatentEBM.mlp`
    save and load; models built from arbitrary modules can be used but not saved.

    Examples
    --------
    >>> import numpy as np
    >>> ebm = LatentEBM.mlp(1, 2, 2, hidden=(16,), lam=0.1, seed=0)
    >>> ebm.free_energy(np.zeros((4, 1)), np.ones((4, 2))).shape
    (4,)
    """

    kind = "latent_ebm"

    def __init__(
        self,
        predictor: nn.Module,
        decoder: nn.Module,
        *,
        n_latent: int,
        cost: str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = "squared",
        regularizer: Regularizer | None = None,
        lam: float = 0.1,
    ):
        super().__init__()
        for name, mod in (("predictor", predictor), ("decoder", decoder)):
            if not isinstance(mod, nn.Module):
                raise LvebmTypeError(
                    f"`{name}` must be a torch.nn.Module; got {type(mod).__name__}."
                )
        regularizer = L2() if regularizer is None else regularizer
        if not isinstance(regularizer, Regularizer):
            raise LvebmTypeError(
                f"`regularizer` must be an lvebm Regularizer (L1(), NonNegL1(), L2() or a "
                f"subclass); got {type(regularizer).__name__}."
            )
        if isinstance(cost, str):
            cost = COSTS[check_choice(cost, "cost", tuple(COSTS))]
        elif not callable(cost):
            raise LvebmTypeError(
                f"`cost` must be 'squared', 'absolute' or a callable; got {cost!r}."
            )
        self.predictor, self.decoder = predictor, decoder
        self.n_latent = check_int(n_latent, "n_latent")
        self.cost, self.regularizer = cost, regularizer
        self.lam = check_nonneg_float(lam, "lam")
        self.architecture: MLPArchitecture | None = None
        self.history_: list[float] = []

    # -- the standard architecture (saveable) -------------------------------------------
    @classmethod
    def mlp(
        cls,
        n_x: int,
        n_y: int,
        n_latent: int,
        *,
        hidden: tuple[int, ...] = (64, 64),
        n_context: int = 16,
        cost: str = "squared",
        regularizer: str = "l2",
        lam: float = 0.1,
        seed: int | None = 0,
        device: Any = None,
    ) -> LatentEBM:
        """MLP predictor ``x -> h`` and concat decoder ``[h, z] -> y``, both with ``hidden``
        ReLU layers; ``regularizer`` names one of ``lvebm.regularizers.REGISTRY``.
        """
        arch = MLPArchitecture(
            check_int(n_x, "n_x"), check_int(n_y, "n_y"), check_int(n_latent, "n_latent"),
            check_int(n_context, "n_context"), check_hidden(hidden),
            check_choice(cost, "cost", tuple(COSTS)),
            check_choice(regularizer, "regularizer", tuple(REGISTRY)),
            check_nonneg_float(lam, "lam"),
        )  # fmt: skip
        gen = make_generator(seed)
        h = list(arch.hidden)
        model = cls(
            mlp([n_x, *h, n_context], generator=gen),
            ConcatDecoder(mlp([n_context + n_latent, *h, n_y], generator=gen)),
            n_latent=n_latent, cost=cost, regularizer=REGISTRY[regularizer](), lam=lam,
        )  # fmt: skip
        model.architecture = arch
        return model.to(resolve_device(device))

    def config_dict(self) -> dict:
        if self.architecture is None:
            raise LvebmTypeError(
                "`model` was built from custom modules, whose architecture cannot be saved as "
                "a config; build it with LatentEBM.mlp(...) or save its state_dict yourself."
            )
        return asdict(self.architecture)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> LatentEBM:
        return cls.mlp(cfg["n_x"], cfg["n_y"], cfg["n_latent"], hidden=tuple(cfg["hidden"]),
                       n_context=cfg["n_context"], cost=cfg["cost"],
                       regularizer=cfg["regularizer"], lam=cfg["lam"], seed=None)  # fmt: skip

    # -- validation -------------------------------------------------------------------
    def _param_like(self) -> torch.Tensor:
        return next(self.parameters())

    def _pair(self, x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        p = self._param_like()
        xt = as_tensor(x, "x", device=p.device, dtype=p.dtype)
        yt = as_tensor(y, "y", device=p.device, dtype=p.dtype)
        check_ndim(xt, "x", 2, "(n, n_x)")
        check_nonempty(xt, "x")
        check_nonempty(yt, "y")
        check_same_size(yt.shape[0], "y", xt.shape[0], "x")
        check_finite(xt, "x")
        check_finite(yt, "y")
        return xt, yt

    def _codes(self, z: ArrayLike, n: int, name: str = "z") -> torch.Tensor:
        p = self._param_like()
        zt = as_tensor(z, name, device=p.device, dtype=p.dtype)
        check_ndim(zt, name, 2, "(n, k)")
        check_same_size(zt.shape[0], name, n, "x")
        check_same_size(zt.shape[1], name, self.n_latent, "n_latent")
        check_finite(zt, name)
        return zt

    # -- energy and inference ---------------------------------------------------------
    def _energy(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y_hat = self.decoder(self.predictor(x), z)
        return self.cost(y, y_hat) + self.lam * self.regularizer.value(z)

    def energy(self, x: ArrayLike, y: ArrayLike, z: ArrayLike) -> ArrayLike:
        """``E(x, y, z)`` per sample, shape (n,); x (n, n_x), y (n, ...), z (n, k)."""
        xt, yt = self._pair(x, y)
        zt = self._codes(z, xt.shape[0])
        with torch.no_grad():
            return output_converter(y)(self._energy(xt, yt, zt))

    def _infer(self, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor | None,
               max_iter: int, tol: float) -> SolveResult:  # fmt: skip
        """Minimise ``E`` over ``z`` for every row (no validation)."""
        with torch.no_grad():
            h = self.predictor(x)
        if z0 is None:
            z0 = h.new_zeros(x.shape[0], self.n_latent)
        f = _DecoderCost(self.decoder, self.cost, h, y)
        return prox_gradient(f, self.regularizer, z0, lam=self.lam, max_iter=max_iter, tol=tol)

    def infer(
        self,
        x: ArrayLike,
        y: ArrayLike,
        *,
        z0: ArrayLike | None = None,
        max_iter: int = 500,
        tol: float = 1e-5,
    ) -> SolveResult:
        """``argmin_z E(x, y, z)`` by proximal gradient with backtracking, all rows at once.

        Returns a :class:`~lvebm.solvers.SolveResult` of tensors (``z`` (n, k) and
        ``objective`` = free energy (n,)); starts from ``z0`` (default zeros). For a
        non-convex decoder this is a local minimum.
        """
        xt, yt = self._pair(x, y)
        z0t = None if z0 is None else self._codes(z0, xt.shape[0], "z0")
        return self._infer(xt, yt, z0t, check_int(max_iter, "max_iter"),
                           check_positive_float(tol, "tol"))  # fmt: skip

    def free_energy(self, x: ArrayLike, y: ArrayLike, *, max_iter: int = 500,
                    tol: float = 1e-5) -> ArrayLike:  # fmt: skip
        """``F(x, y) = min_z E(x, y, z)`` per sample, shape (n,)."""
        res = self.infer(x, y, max_iter=max_iter, tol=tol)
        return output_converter(y)(res.objective)

    def predict(self, x: ArrayLike, z: ArrayLike) -> ArrayLike:
        """``Dec(Pred(x), z)``: the ``y`` that code ``z`` produces for ``x``."""
        p = self._param_like()
        xt = as_tensor(x, "x", device=p.device, dtype=p.dtype)
        check_ndim(xt, "x", 2, "(n, n_x)")
        zt = self._codes(z, xt.shape[0])
        with torch.no_grad():
            return output_converter(z)(self.decoder(self.predictor(xt), zt))

    # -- learning -----------------------------------------------------------------------
    def fit(
        self,
        x: ArrayLike,
        y: ArrayLike,
        *,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int | None = 0,
        max_iter: int = 100,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> LatentEBM:
        """Lower the free energy of the data pairs ``(x, y)`` by Adam on the parameters.

        Each step infers the batch's codes ``z*`` (``max_iter`` prox-gradient steps,
        warm-started from the previous epoch's codes), then takes a gradient step on
        the mean ``E(x, y, z*)``. Nothing pushes energy up elsewhere: only ``lam * R``
        keeps the surface from collapsing. ``history_`` holds each epoch's mean energy.
        ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` go to
        :func:`lvebm.training.run_epochs` (weights, Adam and warm-start codes are saved).
        """
        X, Y = self._pair(x, y)
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        max_iter = check_int(max_iter, "max_iter")
        warm = _Codes(X.new_zeros(X.shape[0], self.n_latent))
        opt = torch.optim.Adam(self.parameters(), lr=lr)

        def step(idx: torch.Tensor) -> float:
            xb, yb = X[idx], Y[idx]
            z = self._infer(xb, yb, warm.codes[idx], max_iter, 1e-4).z
            warm.codes[idx] = z
            loss = self._energy(xb, yb, z).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return float(loss.detach())

        index = torch.arange(X.shape[0], device=X.device)
        self.history_ = run_epochs(
            self, index, step, epochs=epochs, batch_size=batch_size, seed=seed,
            progress=progress, callback=callback, desc="latent ebm", optimizer=opt,
            extra_state=warm, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
            resume=resume,
        )  # fmt: skip
        return self
