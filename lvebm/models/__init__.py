"""The lecture's family of regularized latent-variable energy-based models."""

from .sparse_coding import SparseCoding, SparseCodingConfig

__all__ = ["SparseCoding", "SparseCodingConfig"]
