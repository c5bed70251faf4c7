"""LISTA on whitened natural-image patches: code error versus steps, FISTA equivalents.

The problem of ``benchmarks/_patches_problem.py``: 100,000 whitened 12 x 12 training
patches, 2,000 held-out patches of an image not trained on, a fixed 256-atom
dictionary learned on the training patches, lam = 1.0, reference codes FISTA to
convergence. Each K is trained with the library's defaults (``LISTA(W, lam,
steps=K).fit(X_train, codes=Z_train)``, batch 256; 30 epochs unless ``--epochs``
says otherwise); no augmentation: patches are plentiful.

    python -m benchmarks.lista_patches --out docs/figures

prints the FISTA-equivalent table and one JSON line, and writes
``lista_patches_error.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from ._patches_problem import LAM, N_ATOMS, PATCH, patches_problem
from .lista_mnist import (
    CURVE_ITERS,
    error_table,
    held_out_curves,
    plot_errors,
    steps_and_epochs,
    train_all,
)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", default="1,2,3,5,10,16", help="comma list of K")
    ap.add_argument("--epochs", default="30", help="epochs, one value or one per K")
    ap.add_argument("--cache", type=Path, default=Path(".cache/lista_patches"))
    ap.add_argument("--out", type=Path, default=None, help="folder for the figure and JSON")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ks, epochs = steps_and_epochs(args.steps, args.epochs)
    p = patches_problem(cache=args.cache, seed=args.seed)
    curves = held_out_curves(p, CURVE_ITERS, args.cache)
    trained = train_all(p, ks, epochs, seed=args.seed, cache=args.cache)
    table, _ = error_table(p, trained, epochs, curves)
    nnz = float((p.Z_test != 0).sum(1).mean())
    results = {"benchmark": "lista_patches", "patch": PATCH, "atoms": N_ATOMS, "lam": LAM,
               "n_train": int(p.X_train.shape[0]), "n_test": int(p.X_test.shape[0]),
               "mean_nonzeros": nnz, "table": table}  # fmt: skip
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        title = f"whitened {PATCH}x{PATCH} patches, {N_ATOMS} atoms, λ = {LAM}"
        plot_errors(curves, {r["K"]: r["test_error"] for r in table},
                    args.out / "lista_patches_error.png", title)  # fmt: skip
        results["curves"] = {k: v[:100] for k, v in curves.items()}
        (args.out / "lista_patches.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "curves"}))
    return results


if __name__ == "__main__":
    main()
