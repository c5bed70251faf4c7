"""lvebm: regularized latent-variable energy-based models."""

from .lasso import duality_gap, sparse_encode
from .ops import nonneg_shrink, shrink

__all__ = ["sparse_encode", "shrink", "nonneg_shrink", "duality_gap"]
__version__ = "0.1.0"
