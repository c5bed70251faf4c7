"""The lecture's family of regularized latent-variable energy-based models."""

from .conv import ConvSparseCoding, ConvSparseCodingConfig
from .conv_encoder import ConvEncoder
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
    "ConvSparseCoding",
    "ConvSparseCodingConfig",
    "ConvEncoder",
]
