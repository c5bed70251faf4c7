"""The lecture's family of regularized latent-variable energy-based models."""

from .lista import LISTA, LISTAConfig
from .psd import PSD, PSDConfig
from .sparse_coding import SparseCoding, SparseCodingConfig

__all__ = ["SparseCoding", "SparseCodingConfig", "LISTA", "LISTAConfig", "PSD", "PSDConfig"]
