"""Small network builders shared by the models (MLPs with seeded initialisation)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from .._checks import LvebmTypeError

__all__ = ["mlp", "check_hidden"]


def mlp(sizes: list[int], *, generator: torch.Generator | None = None) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them (none after the last).

    Weights and biases are drawn like PyTorch's default ``nn.Linear`` initialisation,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, but from ``generator`` (never the global RNG).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layer = nn.Linear(a, b)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(a)
            for p in (layer.weight, layer.bias):
                p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound - bound)
        layers.append(layer)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def check_hidden(hidden: Any) -> tuple[int, ...]:
    """Return ``hidden`` as a tuple of layer widths >= 1 or raise."""
    if isinstance(hidden, (int, str)) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
    ):
        raise LvebmTypeError(f"`hidden` must be a tuple of integers >= 1; got {hidden!r}.")
    return tuple(int(h) for h in hidden)
