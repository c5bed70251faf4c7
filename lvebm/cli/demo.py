"""``lvebm demo``: the main job on embedded data — dictionaries for digits and natural patches."""

from __future__ import annotations

from pathlib import Path

from ..data import default_mnist_path
from ._common import load_vectors, write_json
from .sparse_coding import train_and_report


def register(train, top) -> None:
    p = top.add_parser("demo", help="run the tour on embedded data and write figures")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args) -> None:
    results = {}
    digits = "mnist" if default_mnist_path() is not None else "digits"
    print(f"[1/2] non-negative sparse coding of {digits} digits (pen strokes): "
          "256 atoms, lambda=0.1, 10 epochs")  # fmt: skip
    results["digits"] = train_and_report(
        load_vectors(digits), atoms=256 if digits == "mnist" else 64, lam=0.1, epochs=10,
        batch_size=256, method="online", lr=1.0, seed=args.seed, device=None,
        init="random", nonneg=True, positive_dict=True, out=args.out / "sparse-coding-digits",
    )  # fmt: skip
    print("[2/2] sparse coding of ZCA-whitened 12x12 natural-image patches: 64 atoms, lambda=1.5")
    results["patches"] = train_and_report(
        load_vectors("patches", n_patches=30000, seed=args.seed), atoms=64, lam=1.5, epochs=3,
        batch_size=256, method="online", lr=1.0, seed=args.seed, device=None,
        out=args.out / "sparse-coding-patches",
    )  # fmt: skip
    write_json(args.out / "results.json", results)
    print(f"wrote {args.out}/ (atoms.png, metrics.json and the model in each subfolder)")
