"""The lecture's family of regularized latent-variable energy-based models."""

from .latent_ebm import LatentEBM
from .lista import LISTA, LISTAConfig
from .psd import PSD, PSDConfig
from .sparse_coding import SparseCoding, SparseCodingConfig
from .vae import VAE, VAEConfig

__all__ = [
    "SparseCoding",
    "SparseCodingConfig",
    "LISTA",
    "LISTAConfig",
    "PSD",
    "PSDConfig",
    "LatentEBM",
    "VAE",
    "VAEConfig",
]
