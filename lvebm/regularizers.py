"""Regularizers ``R(z)`` that limit the information of a latent code.

Each regularizer is unweighted: the energy carries the weight, ``lam * R(z)``.
``value(z)`` is per sample (shape (n,) for codes (n, ...)); ``prox(v, t)`` returns
``argmin_u 0.5*||u - v||^2 + t*R(u)``; smooth regularizers also give ``grad``.
Users can add their own by subclassing :class:`Regularizer` (the only base class).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .ops import _nonneg_shrink, _shrink

__all__ = ["Regularizer", "L1", "NonNegL1", "L2"]


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.reshape(z.shape[0], -1)


class Regularizer(ABC):
    """Abstract regularizer: a convex function of the code with a cheap prox."""

    #: True when ``grad`` exists and plain gradient descent is appropriate.
    smooth: bool = False

    @abstractmethod
    def value(self, z: torch.Tensor) -> torch.Tensor:
        """``R(z)`` per sample, shape (n,)."""

    @abstractmethod
    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        """``argmin_u 0.5*||u - v||^2 + t*R(u)``, same shape as ``v``."""

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        """Gradient of ``R`` (smooth regularizers only)."""
        raise NotImplementedError(f"{type(self).__name__} is not smooth; use its prox.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class L1(Regularizer):
    """``R(z) = ||z||_1`` (sparse coding)."""

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return _flat(z).abs().sum(dim=1)

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return _shrink(v, t)


class NonNegL1(Regularizer):
    """``R(z) = ||z||_1`` restricted to ``z >= 0`` (+inf elsewhere; ``value`` assumes z >= 0)."""

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return _flat(z).abs().sum(dim=1)

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return _nonneg_shrink(v, t)


class L2(Regularizer):
    """``R(z) = 0.5*||z||^2`` (weight decay on the code; ridge when the decoder is linear)."""

    smooth = True

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return 0.5 * _flat(z).pow(2).sum(dim=1)

    def prox(self, v: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        return v / (1.0 + t)

    def grad(self, z: torch.Tensor) -> torch.Tensor:
        return z


REGISTRY: dict[str, type[Regularizer]] = {"l1": L1, "nonneg_l1": NonNegL1, "l2": L2}
