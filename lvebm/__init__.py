"""lvebm: regularized latent-variable energy-based models.

Sparse coding with ISTA/FISTA and dictionary learning, LISTA and predictive sparse
decomposition, convolutional sparse coding, latent-variable EBMs and VAEs, on PyTorch
(CPU and CUDA). Objective convention everywhere: ``0.5*||y - W z||^2 + lam*||z||_1``
per sample, ``W`` of shape (d, k) with unit-norm columns.
"""

from ._checks import (
    CheckpointError,
    DivergenceError,
    LvebmError,
    LvebmTypeError,
    LvebmValueError,
    TrainingInterrupted,
)
from .conv_lasso import conv_sparse_encode
from .io import load, save
from .lasso import duality_gap, sparse_encode
from .models import LISTA, PSD, VAE, ConvSparseCoding, LatentEBM, SparseCoding
from .ops import nonneg_shrink, shrink
from .regularizers import L1, L2, NonNegL1, Regularizer

__all__ = [
    "sparse_encode",
    "duality_gap",
    "shrink",
    "nonneg_shrink",
    "SparseCoding",
    "LISTA",
    "PSD",
    "VAE",
    "LatentEBM",
    "conv_sparse_encode",
    "ConvSparseCoding",
    "Regularizer",
    "L1",
    "NonNegL1",
    "L2",
    "save",
    "load",
    "LvebmError",
    "LvebmValueError",
    "LvebmTypeError",
    "CheckpointError",
    "DivergenceError",
    "TrainingInterrupted",
]
__version__ = "0.1.0"
