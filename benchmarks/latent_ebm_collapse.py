"""The lecture's collapse demo on the ellipse toy: lam = 0 vs lam > 0, latent as large as y.

Trains two ``LatentEBM.mlp(1, 2, 2)`` models (latent size 2 = size of y) by lowering the
free energy of data only, then measures, for fixed conditions x, the share of a y-grid
whose free energy is as low as the data's (below the 90th percentile of F on data) and
the mean F on data vs off data (> 0.4 from the ellipse). Writes
``docs/figures/latent_ebm_collapse.png`` and a JSON of the numbers.

Run::

    OMP_NUM_THREADS=2 python benchmarks/latent_ebm_collapse.py --out docs/figures
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import lvebm
from lvebm.io import atomic_write_bytes
from lvebm.plotting import save_energy_landscapes
from lvebm.toys import collapse_stats, ellipse_axes, ellipse_data, energy_grid


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    p.add_argument("--lam", type=float, default=5.0, help="weight of R for the regularised model")
    p.add_argument("--regularizer", default="l2", choices=["l1", "l2", "nonneg_l1"])
    p.add_argument("--n", type=int, default=2000, help="training pairs")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--x", type=float, nargs="+", default=[0.2, 0.7], help="conditions to probe")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    x, y = ellipse_data(args.n, seed=args.seed)
    results: dict = {"n_train": args.n, "epochs": args.epochs, "latent": 2, "models": {}}
    panels = []
    for name, lam in (("lam=0", 0.0), (f"lam={args.lam:g} {args.regularizer}", args.lam)):
        t0 = time.perf_counter()
        model = lvebm.LatentEBM.mlp(1, 2, 2, hidden=(64, 64), lam=lam,
                                    regularizer=args.regularizer, seed=args.seed)  # fmt: skip
        model.fit(x, y, epochs=args.epochs, batch_size=128, lr=2e-3, max_iter=50,
                  seed=args.seed, progress=False)  # fmt: skip
        stats = {f"x={v:g}": collapse_stats(model, v, resolution=41)._asdict() for v in args.x}
        results["models"][name] = {"lam": lam, "regularizer": args.regularizer,
                                   "train_seconds": round(time.perf_counter() - t0, 1),
                                   "final_train_energy": model.history_[-1], **stats}  # fmt: skip
        print(name, json.dumps(stats), flush=True)
        _, F = energy_grid(model, args.x[0], resolution=41)
        s = stats[f"x={args.x[0]:g}"]
        panels.append((f"{name}: {100 * s['fraction_below']:.0f}% of the plane as low as data\n"
                       f"mean F on data {s['mean_on_data']:.2g}, off data "
                       f"{s['mean_off_data']:.2g}", F))  # fmt: skip
    t = np.linspace(0, 2 * np.pi, 200)
    a, b = ellipse_axes(np.array(args.x[0]))
    curve = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    _, yd = ellipse_data(200, x=args.x[0], seed=args.seed + 5)
    save_energy_landscapes(panels, 2.0, args.out / "latent_ebm_collapse.png", curve=curve,
                           data=yd)  # fmt: skip
    atomic_write_bytes(args.out / "latent_ebm_collapse.json",
                       (json.dumps(results, indent=2) + "\n").encode())  # fmt: skip
    return results


if __name__ == "__main__":
    main()
