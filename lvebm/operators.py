"""Linear decoders ``A`` used by the solvers: ``forward(z) = A z``, ``adjoint(r) = A^T r``.

Batched: ``forward`` maps codes (n, ...) to signals (n, ...); ``adjoint`` maps back.
``lipschitz()`` is the largest eigenvalue of ``A^T A``, the Lipschitz constant of the
gradient of ``0.5*||y - A z||^2``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .ops import gram_lipschitz

__all__ = ["LinearOperator", "Dense"]


class LinearOperator(ABC):
    """Abstract batched linear operator with its adjoint."""

    @abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``A z`` for a batch of codes."""

    @abstractmethod
    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """``A^T r`` for a batch of signals."""

    @abstractmethod
    def lipschitz(self) -> float:
        """Largest eigenvalue of ``A^T A``."""


class Dense(LinearOperator):
    """A dictionary ``W`` of shape (d, k): codes (n, k) -> signals (n, d) as ``z @ W.T``."""

    def __init__(self, W: torch.Tensor):
        self.W = W

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T  # (n, d)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        return r @ self.W  # (n, k)

    def gram(self) -> torch.Tensor:
        """``W^T W`` of shape (k, k)."""
        return self.W.T @ self.W

    def lipschitz(self) -> float:
        return gram_lipschitz(self.gram())
