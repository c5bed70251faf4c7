"""Convolutional sparse coding: kernels, energy, FISTA inference, kernel learning, encoder."""

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
    check_finite,
    check_int,
    check_ndim,
    check_nonempty,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
    check_shape,
    fail,
)
from ..conv_lasso import (
    CONV_METHODS,
    conv_objective,
    conv_operator,
    map_shape,
    resolve_solver,
    solve_conv,
    solve_conv_lasso,
)
from ..io import register_model
from ..training import TrainState, check_checkpoint_args, check_fit_args, run_epochs
from .conv_encoder import ConvEncoder

__all__ = ["ConvSparseCoding", "ConvSparseCodingConfig"]

#: Maps are kept between epochs for warm starts while their total size stays below this.
WARM_START_MAX = 20_000_000
#: Power-iteration steps per kernel update (warm-started, so a few suffice) and margin.
KERNEL_POWER_ITERS = 3
KERNEL_STEP_MARGIN = 1.05
#: Step halvings tried by a kernel step before it gives up (keeps the kernels).
KERNEL_HALVINGS = 20


@dataclass(frozen=True)
class ConvSparseCodingConfig:
    """What defines a convolutional sparse-coding model (saved as JSON)."""

    n_filters: int
    kernel_size: int
    in_channels: int
    lam: float
    nonlinearity: str = "shrink"


def _unit_kernels(K: torch.Tensor) -> torch.Tensor:
    """Scale every kernel K[i] (c, s, s) to unit Frobenius norm."""
    norms = torch.linalg.vector_norm(K.flatten(1), dim=1).clamp(min=1e-12)
    return K / norms.view(-1, 1, 1, 1)


@register_model
class ConvSparseCoding(nn.Module):
    """Convolutional sparse coding with learned kernels.

    Energy per image::

        E(y, z) = 0.5 * ||y - sum_i K_i * z_i||^2 + lam * sum_i ||z_i||_1

    with kernels ``K`` (m, c, s, s) of unit norm, images ``y`` (c, H, W) and maps
    ``z`` (m, H+s-1, W+s-1) that cover the full image support (boundary: see
    :class:`lvebm.operators.Conv2d`). ``encode`` minimises over ``z`` (batched FISTA),
    ``free_energy(y) = min_z E(y, z)``, ``fit`` learns the kernels, and ``encoder``
    (a :class:`ConvEncoder`) is trained by ``fit_encoder`` to predict the optimal maps.

    Parameters
    ----------
    n_filters, kernel_size : int
        ``m`` and ``s``.
    in_channels : int
        ``c`` (1 for grey, 3 for colour).
    lam : float >= 0
    nonlinearity : {"shrink", "tanh"}
        The encoder's non-linearity.
    seed, device, dtype : initial random kernels, where and in what precision they live.

    Examples
    --------
    >>> import numpy as np
    >>> csc = ConvSparseCoding(4, 5, lam=0.1, seed=0)
    >>> csc.kernels.shape
    torch.Size([4, 1, 5, 5])
    >>> csc.encode(np.zeros((2, 1, 16, 16), dtype=np.float32)).shape
    (2, 4, 20, 20)
    """

    kind = "conv_sparse_coding"

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        in_channels: int = 1,
        lam: float = 0.1,
        *,
        nonlinearity: str = "shrink",
        seed: int | None = 0,
        device: Any = None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.config = ConvSparseCodingConfig(
            check_int(n_filters, "n_filters"),
            check_int(kernel_size, "kernel_size"),
            check_int(in_channels, "in_channels"),
            check_nonneg_float(lam, "lam"),
            check_choice(nonlinearity, "nonlinearity", ("shrink", "tanh")),
        )
        shape = (n_filters, in_channels, kernel_size, kernel_size)
        K = torch.randn(shape, generator=make_generator(seed), dtype=dtype)
        dev = resolve_device(device)
        self.kernels = nn.Parameter(_unit_kernels(K).to(dev), requires_grad=False)
        self.encoder = ConvEncoder(
            n_filters, kernel_size, in_channels, nonlinearity=nonlinearity
        ).to(device=dev, dtype=dtype)
        self.history_: list[float] = []
        self.encoder_history_: list[float] = []

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_kernels(
        cls, kernels: ArrayLike, lam: float, *, device: Any = None, nonlinearity: str = "shrink"
    ) -> ConvSparseCoding:
        """A model holding the given kernels (m, c, s, s), renormalised to unit norm."""
        K = as_tensor(kernels, "kernels", device=resolve_device(device))
        check_ndim(K, "kernels", 4, "(m, c, s, s)")
        check_nonempty(K, "kernels")
        if K.shape[2] != K.shape[3]:
            raise fail("kernels", "square kernels of shape (m, c, s, s)", K)
        check_finite(K, "kernels")
        m, c, s, _ = K.shape
        model = cls(m, s, c, lam, nonlinearity=nonlinearity, seed=0, device=K.device, dtype=K.dtype)
        model.kernels.data = _unit_kernels(K.clone())
        return model

    def config_dict(self) -> dict:
        return asdict(self.config)

    @classmethod
    def from_config_dict(cls, cfg: dict) -> ConvSparseCoding:
        return cls(
            cfg["n_filters"],
            cfg["kernel_size"],
            cfg["in_channels"],
            cfg["lam"],
            nonlinearity=cfg.get("nonlinearity", "shrink"),
        )

    @property
    def lam(self) -> float:
        return self.config.lam

    # -- energy and inference ---------------------------------------------------------
    def _images(self, y: ArrayLike, name: str = "images") -> torch.Tensor:
        return as_batch(y, name, self.kernels, "(n, c, H, W)", "kernels", 1)

    def _maps(self, z: ArrayLike, y: torch.Tensor, name: str = "maps") -> torch.Tensor:
        zt = as_tensor(z, name, device=y.device, dtype=y.dtype)
        shape = (y.shape[0], self.config.n_filters) + self.map_shape(tuple(y.shape[-2:]))
        check_shape(zt, name, shape)
        check_finite(zt, name)
        return zt

    def map_shape(self, image_shape: tuple[int, int]) -> tuple[int, int]:
        """Spatial size (H+s-1, W+s-1) of the maps of an (H, W) image."""
        return map_shape(image_shape, self.config.kernel_size)

    def energy(self, images: ArrayLike, maps: ArrayLike) -> ArrayLike:
        """``E(y, z)`` per image: images (n, c, H, W), maps (n, m, H+s-1, W+s-1) -> (n,)."""
        y = self._images(images)
        z = self._maps(maps, y)
        with torch.no_grad():
            return output_converter(images)(conv_objective(y, self.kernels, z, self.lam))

    def encode(
        self,
        images: ArrayLike,
        *,
        solver: str = "auto",
        max_iter: int | None = None,
        tol: float = 1e-4,
        z0: ArrayLike | None = None,
        method: str = "auto",
    ) -> ArrayLike:
        """Optimal maps (n, m, H+s-1, W+s-1) of images (n, c, H, W).

        ``solver``, ``max_iter`` and ``tol`` as in :func:`lvebm.conv_sparse_encode`
        (batched FISTA, or the working set for large images on the CPU); ``z0``
        warm-starts; ``method`` ("auto", "fft", "direct", "mixed") picks FISTA's
        convolution.
        """
        y = self._images(images)
        solver, max_iter = resolve_solver(solver, max_iter, y)
        tol = check_positive_float(tol, "tol")
        check_choice(method, "method", CONV_METHODS)
        z_init = None if z0 is None else self._maps(z0, y, "z0")
        with torch.no_grad():
            res = solve_conv(y, self.kernels.detach(), self.lam, solver=solver,
                             max_iter=max_iter, tol=tol, z0=z_init, method=method)  # fmt: skip
        return output_converter(images)(res.z)

    def free_energy(
        self, images: ArrayLike, *, max_iter: int | None = None, tol: float = 1e-4
    ) -> ArrayLike:
        """``min_z E(y, z)`` per image, shape (n,)."""
        y = self._images(images)
        z = self.encode(y, max_iter=max_iter, tol=tol)
        with torch.no_grad():
            return output_converter(images)(conv_objective(y, self.kernels, z, self.lam))

    def reconstruct(self, maps: ArrayLike) -> ArrayLike:
        """``sum_i K_i * z_i``: maps (n, m, H+s-1, W+s-1) -> images (n, c, H, W)."""
        z = as_tensor(maps, "maps", device=self.kernels.device, dtype=self.kernels.dtype)
        check_ndim(z, "maps", 4, "(n, m, H+s-1, W+s-1)")
        check_same_size(z.shape[1], "maps", self.config.n_filters, "kernels")
        s = self.config.kernel_size
        if min(z.shape[-2:]) < s:
            raise fail("maps", f"at least {s} x {s} pixels (kernel_size)", z)
        image_shape = (z.shape[2] - s + 1, z.shape[3] - s + 1)
        with torch.no_grad():
            y = conv_operator(self.kernels, image_shape, "direct").forward(z)
        return output_converter(maps)(y)

    def predict(self, images: ArrayLike) -> ArrayLike:
        """The encoder's maps (n, m, H+s-1, W+s-1): one feed-forward pass, no optimisation."""
        y = self._images(images)
        with torch.no_grad():
            return output_converter(images)(self.encoder(y))

    # -- learning ---------------------------------------------------------------------
    def fit(
        self,
        images: ArrayLike,
        *,
        epochs: int = 5,
        batch_size: int = 16,
        lr: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-3,
        kernel_steps: int = 5,
        alpha: float = 0.0,
        encoder_lr: float = 1e-3,
        seed: int | None = 0,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: bool | str | os.PathLike = False,
    ) -> ConvSparseCoding:
        """Learn the kernels from ``images`` (n, c, H, W), e.g. crops of natural images.

        Alternating minimisation per mini-batch: maps by FISTA (``max_iter``, ``tol``;
        warm-started from the previous epoch when they fit in memory), then one
        projected gradient step on the kernels, ``K <- normalise(K - lr/L_K grad_K E)``,
        where ``L_K`` is the Lipschitz constant of the gradient in ``K`` (estimated
        by a warm-started power iteration, plus 5%), so ``lr=1`` is the majorisation
        step; every kernel is renormalised to unit norm after each step. ``history_``
        holds each epoch's mean energy (measured before the kernel step).

        ``alpha > 0`` trains the encoder jointly (convolutional predictive sparse
        decomposition, Kavukcuoglu et al. 2010): the energy gains
        ``0.5*alpha*||Z - Enc(Y)||^2``, each batch's maps minimise it by FISTA started at
        the encoder's prediction, the kernels take the same step, and the encoder (started
        as one ISTA step) takes an Adam step (``encoder_lr``) towards the maps.

        ``checkpoint_dir``, ``checkpoint_every`` and ``resume`` are passed to
        :func:`lvebm.training.run_epochs` (kernels, warm-start maps and the power-iteration
        vector are checkpointed, so a resumed fit is bit-identical on CPU). The training
        images must be at least ``kernel_size`` pixels on each side.
        """
        Y = self._images(images)
        s = self.config.kernel_size
        if min(Y.shape[-2:]) < s:
            raise fail("images", f"at least {s} x {s} pixels (kernel_size) to learn from", Y)
        check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        max_iter = check_int(max_iter, "max_iter")
        tol = check_positive_float(tol, "tol")
        kernel_steps = check_int(kernel_steps, "kernel_steps")
        alpha = check_nonneg_float(alpha, "alpha")
        encoder_lr = check_positive_float(encoder_lr, "encoder_lr")
        n = Y.shape[0]
        full = (n, self.config.n_filters) + self.map_shape(tuple(Y.shape[-2:]))
        warm = alpha == 0 and torch.Size(full).numel() <= WARM_START_MAX
        maps = Y.new_zeros(full) if warm else None  # with an encoder, FISTA starts at Enc(y)
        opt = None
        if alpha > 0:
            L = conv_operator(self.kernels.data, tuple(Y.shape[-2:])).lipschitz()
            self.encoder.init_from_kernels(self.kernels.data, self.lam, L)
            opt = torch.optim.Adam(self.encoder.parameters(), lr=encoder_lr)
        gen = make_generator(None if seed is None else seed + 1)
        v = torch.randn(self.kernels.shape, generator=gen, dtype=Y.dtype).to(Y.device)
        fs = _ConvFitState(maps, v)

        def step(idx: torch.Tensor) -> float:
            yb, K = Y[idx], self.kernels.data
            z0 = maps[idx] if maps is not None else None
            p = None
            if opt is not None:
                with torch.no_grad():
                    p = self.encoder(yb)
            res = solve_conv_lasso(yb, K, self.lam, max_iter=max_iter, tol=tol, z0=z0,
                                   prediction=p, alpha=alpha)  # fmt: skip
            if maps is not None:
                maps[idx] = res.z
            L_K, fs.v = _kernel_lipschitz(yb, res.z, fs.v)
            for _ in range(kernel_steps):
                K = _kernel_step(yb, K, res.z, lr / (KERNEL_STEP_MARGIN * L_K))
            self.kernels.data = K
            if opt is not None:
                _encoder_step(self.encoder, opt, yb, res.z, alpha)
            return float(res.objective.mean())

        index = torch.arange(n, device=Y.device)
        self.history_ = run_epochs(
            self,
            index,
            step,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            callback=callback,
            desc="conv sparse coding",
            optimizer=opt,
            extra_state=fs,
            checkpoint_dir=checkpoint_dir,
            checkpoint_every=checkpoint_every,
            resume=resume,
        )
        return self

    def fit_encoder(
        self,
        images: ArrayLike,
        *,
        epochs: int = 5,
        batch_size: int = 16,
        lr: float = 1e-3,
        max_iter: int = 200,
        tol: float = 1e-4,
        seed: int | None = 0,
        progress: bool = True,
        callback: Callable[[TrainState], None] | None = None,
    ) -> ConvSparseCoding:
        """Train the encoder to predict the optimal maps of ``images`` (n, c, H, W).

        Targets ``z*`` come from :meth:`encode` (computed once); the loss is
        ``0.5*||z* - Enc(y)||^2`` per image, minimised by Adam (``lr``). The encoder
        starts as one ISTA step from zero (:meth:`ConvEncoder.init_from_kernels`).
        ``encoder_history_`` holds each epoch's mean loss.
        """
        Y = self._images(images)
        epochs, batch_size = check_fit_args(epochs, batch_size)
        lr = check_positive_float(lr, "lr")
        Z = self.encode(Y, max_iter=max_iter, tol=tol)
        L = conv_operator(self.kernels, tuple(Y.shape[-2:])).lipschitz()
        self.encoder.init_from_kernels(self.kernels.data, self.lam, L)
        opt = torch.optim.Adam(self.encoder.parameters(), lr=lr)

        def step(idx: torch.Tensor) -> float:
            return _encoder_step(self.encoder, opt, Y[idx], Z[idx], 1.0)

        index = torch.arange(Y.shape[0], device=Y.device)
        self.encoder_history_ = run_epochs(
            self,
            index,
            step,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            progress=progress,
            callback=callback,
            desc="conv encoder",
        )
        return self


@dataclass
class _ConvFitState:
    """What ``ConvSparseCoding.fit``'s steps mutate besides the kernels; checkpointed."""

    maps: torch.Tensor | None  # warm-start maps (n, m, H+s-1, W+s-1), or None when too big
    v: torch.Tensor  # the warm-started power-iteration vector of the kernel step's L_K

    def state_dict(self) -> dict:
        return {"maps": self.maps, "v": self.v}

    def load_state_dict(self, state: dict) -> None:
        if (state["maps"] is None) != (self.maps is None):
            raise ValueError("warm-start maps are present in only one of checkpoint and fit")
        if self.maps is not None:
            self.maps.copy_(state["maps"])
        self.v = state["v"].to(device=self.v.device, dtype=self.v.dtype)


def _encoder_step(encoder: ConvEncoder, opt, y: torch.Tensor, z: torch.Tensor,
                  alpha: float) -> float:  # fmt: skip
    """One Adam step on ``0.5*alpha*||z - Enc(y)||^2`` (batch mean); returns the loss."""
    with torch.enable_grad():
        loss = 0.5 * alpha * (encoder(y) - z).pow(2).flatten(1).sum(1).mean()
        opt.zero_grad()
        loss.backward()
    opt.step()
    return float(loss.detach())


def _synth(K: torch.Tensor, z: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    return conv_operator(K, image_shape).forward(z)


def _kernel_grad(y: torch.Tensor, K: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Gradient in ``K`` of ``0.5*||y - sum_i K_i * z_i||^2`` summed over the batch."""
    return _kernel_value_and_grad(y, K, z)[1]


def _kernel_value_and_grad(
    y: torch.Tensor, K: torch.Tensor, z: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """``0.5*||y - sum_i K_i * z_i||^2`` summed over the batch, and its gradient in ``K``."""
    with torch.enable_grad():
        Kx = K.detach().requires_grad_(True)
        value = 0.5 * (_synth(Kx, z, tuple(y.shape[-2:])) - y).pow(2).sum()
        (grad,) = torch.autograd.grad(value, Kx)
    return float(value.detach()), grad


def _kernel_step(y: torch.Tensor, K: torch.Tensor, z: torch.Tensor, step: float) -> torch.Tensor:
    """One projected gradient step ``normalise(K - step * grad_K)`` on the kernels (maps
    ``z`` fixed), halving ``step`` until the batch's data term does not increase: the
    unit-norm projection is not convex, so the majorisation step alone can overshoot
    (a single kernel once jumped by a norm of 1.0 and the epoch energy rose by 24%).
    Returns ``K`` unchanged if no halving helps."""
    shape = tuple(y.shape[-2:])
    before, grad = _kernel_value_and_grad(y, K, z)
    for _ in range(KERNEL_HALVINGS):
        K_new = _unit_kernels(K - step * grad)
        if 0.5 * float((_synth(K_new, z, shape) - y).pow(2).sum()) <= before:
            return K_new
        step /= 2
    return K


def _kernel_lipschitz(
    y: torch.Tensor, z: torch.Tensor, v: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Lipschitz constant of ``_kernel_grad`` in ``K`` (z fixed), and the new iterate.

    ``KERNEL_POWER_ITERS`` power-iteration steps on ``K -> A_z^T A_z K`` warm-started
    from ``v`` (the previous batch's eigenvector, so a few steps suffice).
    """
    L_K = 0.0
    for _ in range(KERNEL_POWER_ITERS):
        v = v / torch.linalg.vector_norm(v).clamp(min=1e-30)
        w = _kernel_grad(torch.zeros_like(y), v, z)  # A_z^T A_z v
        L_K, v = float(torch.linalg.vector_norm(w)), w
    return max(L_K, torch.finfo(y.dtype).tiny), v
