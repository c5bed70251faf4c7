"""``lvebm encode MODEL DATA --out codes.npz``: codes of data under a saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._checks import LvebmValueError
from ..io import atomic_write_bytes, load
from ..models import LatentEBM
from ..models.vae import Posterior
from ._common import load_vectors


def register(train, top) -> None:
    p = top.add_parser("encode", help="encode data with a saved model")
    p.add_argument("model", type=Path, help="folder written by `lvebm train`")
    p.add_argument("data", help="digits, mnist, patches or a PATH")
    p.add_argument(
        "--out", type=Path, required=True,
        help="output .npz: array `codes` (a VAE: its posterior mean, plus `logvar`)",
    )  # fmt: skip
    p.add_argument("--device", default=None)
    p.set_defaults(run=run)


def run(args) -> None:
    model = load(args.model, device=args.device)
    X = load_vectors(args.data).X
    arrays = encoded_arrays(model, X)
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}: codes of shape {arrays['codes'].shape}")


def encoded_arrays(model, X) -> dict[str, np.ndarray]:
    """The arrays ``lvebm encode`` writes: ``codes`` from ``model.encode(X)``; a VAE's
    posterior gives its mean as ``codes`` and its log-variance as ``logvar``."""
    if isinstance(model, LatentEBM):
        raise LvebmValueError(
            "a latent_ebm model has no encoder: its latent is inferred per (x, y) pair by "
            "minimising the energy (LatentEBM.infer), not computed from data alone."
        )
    out = model.encode(X)  # X is a NumPy array, so the results are NumPy arrays too
    if isinstance(out, Posterior):
        return {"codes": np.asarray(out.mean), "logvar": np.asarray(out.logvar)}
    return {"codes": np.asarray(out)}
