"""Sparse coding: a dictionary, its energy, FISTA inference and dictionary learning."""

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
    check_bool,
    check_callable,
    check_choice,
    check_finite,
    check_float_dtype,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
    check_seed,
)
from ..dictionary import OnlineStats, online_update, reinit_dead_atoms, sgd_update
from ..io import register_model
from ..lasso import lasso_objective, solve_lasso, sparse_encode
from ..ops import normalize_columns
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs

__all__ = ["SparseCoding", "SparseCodingConfig"]

#: Forgetting exponent of the online statistics; > 1 discounts early batches faster.
ONLINE_RHO = 4.0
#: The batch encoder of ``fit`` and its tolerance (objective change over 5 iterations):
#: warm-started variable-metric FISTA, measured in docs/benchmarks.md.
FIT_SOLVER, FIT_TOL = "vmfista", 1e-4
#: Steps between dead-atom checks during fit.
DEAD_CHECK_EVERY = 10
#: Codes are kept between epochs for warm starts while n * k stays below this.
WARM_START_MAX = 50_000_000


@dataclass(frozen=True)
class SparseCodingConfig:
    """What defines a sparse-coding model (saved as JSON)."""

    n_features: int
    n_atoms: int
    lam: float


@dataclass
class _FitState:
    """What ``SparseCoding.fit``'s steps mutate besides the dictionary; checkpointed."""

    stats: OnlineStats  # online statistics A (k, k), B (d, k), t
    codes: torch.Tensor | None  # warm-start codes (n, k)
    usage: torch.Tensor  # (k,) non-zero counts since the last dead-atom check
    gen: torch.Generator  # initial atoms and dead-atom replacement noise
    n_steps: int = 0
    n_reinit: int = 0

    def state_dict(self) -> dict:
        return {
            "A": self.stats.A, "B": self.stats.B, "t": self.stats.t, "codes": self.codes,
            "usage": self.usage, "generator": self.gen.get_state(), "n_steps": self.n_steps,
            "n_reinit": self.n_reinit,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        if (state["codes"] is None) != (self.codes is None):
            raise ValueError("warm-start codes are present in only one of checkpoint and fit")
        self.stats.A.copy_(state["A"])
        self.stats.B.copy_(state["B"])
        self.stats.t = int(state["t"])
        if self.codes is not None:
            self.codes.copy_(state["codes"])
        self.usage.copy_(state["usage"])
        self.gen.set_state(state["generator"])
        self.n_steps, self.n_reinit = int(state["n_steps"]), int(state["n_reinit"])


@register_model
class SparseCoding(nn.Module):
    """Sparse coding with a learned dictionary.

    Energy per sample::

        E(y, z) = 0.5 * ||y - W z||^2 + lam * ||z||_1,   W (d, k) with unit-norm columns

    inference minimises it over ``z`` (FISTA), ``free_energy(y) = min_z E(y, z)``.

    Parameters
    ----------
    n_features : int
        Signal dimension ``d``.
    n_atoms : int
        Number of atoms ``k``.
    lam : float >= 0
        Sparsity weight.
    seed : int, optional
        Seed of the random initial dictionary (Gaussian, unit-normed columns).
    device, dtype : where and in what precision the dictionary lives (default CPU, float32).

    Examples
    --------
    >>> import numpy as np
    >>> sc = SparseCoding(8, 16, lam=0.1, seed=0)
    >>> sc.dictionary.shape
    torch.Size([8, 16])
    >>> sc.encode(np.zeros((3, 8), dtype=np.float32)).shape
    (3, 16)
    """

    kind = "sparse_coding"

    def __init__(
        self,
        n_features: int,
        n_atoms: int,
        lam: float = 0.1,
        *,
        seed: int | None = 0,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        check_float_dtype(dtype)
        self.config = SparseCodingConfig(
            check_int(n_features, "n_features"),
            check_int(n_atoms, "n_atoms"),
            check_nonneg_float(lam, "lam"),
        )
        gen = make_generator(seed)
        W = torch.randn(n_features, n_atoms, generator=gen, dtype=dtype)
        self.dictionary = nn.Parameter(
            normalize_columns(W).to(resolve_device(device)), requires_grad=False
        )
        self.history_: list[float] = []
        self.n_reinit_ = 0

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_dictionary(cls, W: ArrayLike, lam: float, *, device: Any = None) -> SparseCoding:
        """A model holding the given dictionary ``W`` (d, k); columns are renormalised."""
        Wt = as_tensor(W, "W", device=resolve_device(device))
        check_ndim(Wt, "W", 2, "(d, k)")
        check_nonempty(Wt, "W")
        check_finite(Wt, "W")
        model = cls(Wt.shape[0], Wt.shape[1], lam, seed=0, device=Wt.device, dtype=Wt.dtype)
        model.dictionary.data = normalize_columns(Wt.clone())
        return model

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> SparseCoding:
        return cls(cfg["n_features"], cfg["n_atoms"], cfg["lam"])

    @property
    def lam(self) -> float:
        return self.config.lam

    # -- energy and inference ---------------------------------------------------------
    def _signals(self, y: ArrayLike, name: str = "y") -> torch.Tensor:
        return as_batch(y, name, self.dictionary, "(n, d)", "dictionary")

    def energy(self, y: ArrayLike, z: ArrayLike) -> ArrayLike:
        """``0.5*||y - W z||^2 + lam*||z||_1`` per sample; y (n, d), z (n, k) -> (n,)."""
        yt = self._signals(y)
        zt = as_tensor(z, "z", device=yt.device, dtype=yt.dtype)
        check_ndim(zt, "z", 2, "(n, k)")
        check_same_size(zt.shape[0], "z", yt.shape[0], "y")
        check_same_size(zt.shape[1], "z", self.config.n_atoms, "dictionary")
        with torch.no_grad():
            return output_converter(y)(lasso_objective(yt, self.dictionary, zt, self.lam))

    def encode(
        self,
        y: ArrayLike,
        *,
        method: str = "fista",
        max_iter: int = 1000,
        tol: float = 1e-6,
        z0: ArrayLike | None = None,
        nonneg: bool = False,
    ) -> ArrayLike:
        """Optimal codes (n, k) of the signals ``y`` (n, d); see :func:`lvebm.sparse_encode`."""
        yt = self._signals(y)
        z = sparse_encode(
            yt, self.dictionary.detach(), self.lam, method=method, max_iter=max_iter, tol=tol,
            z0=z0, nonneg=nonneg,
        )  # fmt: skip
        return output_converter(y)(z)

    def free_energy(self, y: ArrayLike, *, max_iter: int = 1000, tol: float = 1e-6) -> ArrayLike:
        """``min_z E(y, z)`` per sample, shape (n,)."""
        yt = self._signals(y)
        z = self.encode(yt, max_iter=max_iter, tol=tol)
        with torch.no_grad():
            return output_converter(y)(lasso_objective(yt, self.dictionary, z, self.lam))

    def reconstruct(self, z: ArrayLike) -> ArrayLike:
        """``W z`` for codes (n, k) -> signals (n, d)."""
        zt = as_tensor(z, "z", device=self.dictionary.device, dtype=self.dictionary.dtype)
        check_ndim(zt, "z", 2, "(n, k)")
        check_same_size(zt.shape[1], "z", self.config.n_atoms, "dictionary")
        with torch.no_grad():
            return output_converter(z)(zt @ self.dictionary.T)

    # -- learning ---------------------------------------------------------------------
    def fit(
        self,
        data: ArrayLike,
        *,
        epochs: int = 5,
        batch_size: int = 256,
        lr: float = 1.0,
        seed: int | None = 0,
        method: str = "online",
        init: str = "data",
        reinit_dead: bool = True,
        nonneg: bool = False,
        positive_dict: bool = False,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> SparseCoding:
        """Learn the dictionary from ``data`` (n, d) by mini-batch alternating minimisation.

        Each step infers the batch's codes with FISTA (warm-started from the previous
        epoch's codes), then updates ``W`` with ``method`` ("online": Mairal et al.'s
        block-coordinate update, the default, SPAMS's method; "sgd": a gradient step
        of size ``lr``, the lecture's method) and renormalises its columns to unit
        norm. ``init="data"`` starts from random unit-normed training samples,
        ``"random"`` from Gaussian directions (seeded), ``"current"`` continues from the
        present dictionary. With ``reinit_dead``, atoms unused for ``DEAD_CHECK_EVERY``
        steps are replaced by badly reconstructed samples. ``nonneg=True`` constrains the
        codes to ``z >= 0``; ``positive_dict=True`` also keeps the atoms ``>= 0`` (the
        initial ones included). Both together are non-negative sparse coding, an NMF
        with an L1 penalty: the parts-based model that learns pen strokes on MNIST,
        where signed sparse coding learns whole-digit prototypes (docs/sparse_coding.md).
        ``history_`` holds each epoch's mean energy.

        ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are passed to
        :func:`lvebm.training.run_epochs`: checkpoints hold the dictionary and the fit's
        state (online statistics ``A``, ``B``, ``t``, warm-start codes, usage counters,
        generators), so a resumed fit ends bit-identical to an uninterrupted one on CPU.
        """
        Y = self._signals(data, "data")
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        seed, reinit_dead = check_seed(seed), check_bool(reinit_dead, "reinit_dead")
        nonneg = check_bool(nonneg, "nonneg")
        positive_dict = check_bool(positive_dict, "positive_dict")
        check_callable(callback, "callback")
        check_choice(method, "method", ("online", "sgd"))
        check_choice(init, "init", ("data", "random", "current"))
        n, k = Y.shape[0], self.config.n_atoms
        gen = make_generator(None if seed is None else seed + 1)
        self.dictionary.data = _initial_dictionary(
            Y, self.dictionary.data, init, positive=positive_dict, generator=gen
        )
        fs = _FitState(
            stats=OnlineStats.zeros(self.dictionary.data),
            codes=Y.new_zeros(n, k) if n * k <= WARM_START_MAX else None,
            usage=torch.zeros(k, dtype=torch.long, device=Y.device),
            gen=gen,
            n_reinit=self.n_reinit_,
        )

        def step(idx: torch.Tensor) -> float:
            W = self.dictionary.data
            yb = Y[idx]
            z0 = fs.codes[idx] if fs.codes is not None else None
            res = solve_lasso(yb, W, self.lam, method=FIT_SOLVER, max_iter=300, tol=FIT_TOL,
                              z0=z0, nonneg=nonneg)  # fmt: skip
            z = res.z
            if fs.codes is not None:
                fs.codes[idx] = z
            fs.usage.add_((z != 0).sum(0))
            if method == "online":
                W = online_update(W, yb, z, fs.stats, rho=ONLINE_RHO, positive=positive_dict)
            else:
                W = sgd_update(W, yb, z, lr=lr, positive=positive_dict)
            if reinit_dead and fs.n_steps % DEAD_CHECK_EVERY == DEAD_CHECK_EVERY - 1:
                W, n_new = reinit_dead_atoms(
                    W, yb, z, fs.usage, generator=fs.gen, stats=fs.stats, positive=positive_dict
                )
                fs.n_reinit += n_new
                fs.usage.zero_()
            fs.n_steps += 1
            self.dictionary.data = W
            return float(res.objective.mean())

        index = torch.arange(n, device=Y.device)
        try:
            self.history_ = run_epochs(
                self, index, step, epochs=epochs, batch_size=batch_size, seed=seed,
                progress=progress, callback=callback, desc="sparse coding", extra_state=fs,
                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
            )  # fmt: skip
        finally:
            self.n_reinit_ = fs.n_reinit
        return self


def _initial_dictionary(
    Y: torch.Tensor, W: torch.Tensor, init: str, *, positive: bool, generator: torch.Generator
) -> torch.Tensor:
    """The starting dictionary (d, k) of a fit on ``Y`` (n, d); see ``SparseCoding.fit``.

    ``positive`` takes absolute values (Gaussian directions and signed samples become
    non-negative); a column left all-zero is replaced by a random non-negative one.
    """
    (n, d), k = Y.shape, W.shape[1]
    if init == "data":
        W0 = Y[torch.randperm(n, generator=generator)[:k].to(Y.device)].T.clone()
        if n < k:  # fewer samples than atoms: pad with random directions
            extra = torch.randn(d, k - n, generator=generator, dtype=Y.dtype)
            W0 = torch.cat([W0, extra.to(Y.device)], dim=1)
        W0 = W0 + 1e-6 * W0.abs().max()
    elif init == "random":
        W0 = torch.randn(d, k, generator=generator, dtype=Y.dtype).to(Y.device)
    elif not positive:
        return W  # "current": continue unchanged
    else:
        W0 = W.clone()
    if positive:
        W0 = W0.abs()
        empty = W0.sum(0) == 0
        if bool(empty.any()):
            fill = torch.rand(d, int(empty.sum()), generator=generator, dtype=Y.dtype)
            W0[:, empty] = fill.to(Y.device)
    return normalize_columns(W0)
