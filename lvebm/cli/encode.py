"""``lvebm encode MODEL DATA --out codes.npz``: codes of data under a saved model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._checks import LvebmValueError
from ..io import atomic_write_bytes, load
from ._common import load_vectors


def register(train, top) -> None:
    p = top.add_parser("encode", help="encode data with a saved model")
    p.add_argument("model", type=Path, help="folder written by `lvebm train`")
    p.add_argument("data", help="digits, mnist, patches or a PATH")
    p.add_argument("--out", type=Path, required=True, help="output .npz (array `codes`)")
    p.add_argument("--device", default=None)
    p.set_defaults(run=run)


def run(args) -> None:
    model = load(args.model, device=args.device)
    X = load_vectors(args.data).X
    if not hasattr(model, "encode"):
        raise LvebmValueError(f"model of kind {model.kind!r} has no encode().")
    codes = np.asarray(model.encode(X))
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, codes=codes)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}: codes of shape {codes.shape}")
