"""Convolutional encoder of convolutional predictive sparse decomposition (Kavukcuoglu 2010).

``Enc(Y) = g * phi(corr(pad(Y, s-1), W_e) - b)``: one correlation with encoder kernels
``W_e`` (m, c, s, s) that maps images (n, c, H, W) to full-support maps
(n, m, H+s-1, W+s-1) like the decoder's adjoint, a non-linearity ``phi`` and a learned
per-map diagonal scaling ``g`` (m,). ``phi`` is soft shrinkage with per-map thresholds
``b >= 0`` ("shrink") or ``tanh`` with per-map biases ("tanh").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import _shrink

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """Feed-forward predictor of optimal sparse maps; see the module docstring.

    Parameters
    ----------
    n_filters, kernel_size, in_channels : m, s, c of the maps it predicts.
    nonlinearity : {"shrink", "tanh"}
    """

    def __init__(
        self,
        n_filters: int,
        kernel_size: int,
        in_channels: int = 1,
        *,
        nonlinearity: str = "shrink",
    ):
        super().__init__()
        m, c, s = n_filters, in_channels, kernel_size
        self.nonlinearity = nonlinearity
        self.weight = nn.Parameter(torch.zeros(m, c, s, s))
        self.bias = nn.Parameter(torch.zeros(m))
        self.scale = nn.Parameter(torch.ones(m))

    @torch.no_grad()
    def init_from_kernels(self, K: torch.Tensor, lam: float, L: float) -> None:
        """Start as one ISTA step from zero: ``W_e = K / L``, ``b = lam / L``, ``g = 1``.

        With "shrink" the untrained encoder then equals ``shrink(A^T y / L, lam / L)``.
        """
        self.weight.copy_(K / L)
        self.bias.fill_(lam / L)
        self.scale.fill_(1.0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Maps (n, m, H+s-1, W+s-1) predicted from images y (n, c, H, W)."""
        s = self.weight.shape[-1]
        u = F.conv2d(F.pad(y, (s - 1,) * 4), self.weight)  # (n, m, H+s-1, W+s-1)
        b = self.bias.view(1, -1, 1, 1)
        if self.nonlinearity == "shrink":
            h = _shrink(u, b.abs())
        else:
            h = torch.tanh(u - b)
        return self.scale.view(1, -1, 1, 1) * h
