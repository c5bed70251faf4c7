"""``lvebm train latent-ebm``: the ellipse toy, its energy landscape and collapse numbers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..io import save
from ..models import LatentEBM
from ..plotting import save_energy_landscapes
from ..toys import collapse_stats, ellipse_axes, ellipse_data, energy_grid
from ._common import (
    add_checkpoint_args,
    check_out_folder,
    nonneg_float,
    positive_float,
    positive_int,
    write_json,
)


def register(train, top) -> None:
    p = train.add_parser("latent-ebm", help="conditional latent-variable EBM on the ellipse toy")
    p.add_argument("--latent", type=positive_int, default=2, help="latent size (2 = size of y)")
    p.add_argument("--lam", type=nonneg_float, default=5.0, help="weight of R (0: no regularizer)")
    p.add_argument("--regularizer", choices=["l1", "l2", "nonneg_l1"], default="l2")
    p.add_argument("--hidden", type=positive_int, nargs="+", default=[64, 64])
    p.add_argument("--n", type=positive_int, default=2000, help="training pairs (x, y)")
    p.add_argument("--epochs", type=positive_int, default=20)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--max-iter", type=positive_int, default=50, help="inference steps per batch")
    p.add_argument("--x", type=float, default=0.2, help="condition of the landscape figure")
    p.add_argument("--resolution", type=positive_int, default=41, help="y-grid points per side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_args(p)
    p.set_defaults(run=run)


def run(args) -> None:
    check_out_folder(args.out)
    x, y = ellipse_data(args.n, seed=args.seed)
    model = LatentEBM.mlp(
        1, 2, args.latent, hidden=tuple(args.hidden), lam=args.lam,
        regularizer=args.regularizer, seed=args.seed, device=args.device,
    )  # fmt: skip
    start = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
              max_iter=args.max_iter, seed=args.seed, checkpoint_dir=args.out / "checkpoints",
              checkpoint_every=args.checkpoint_every, resume=args.resume)  # fmt: skip
    stats = collapse_stats(model, args.x, resolution=args.resolution, n_data=200)
    metrics = {
        "n_train": args.n, "latent": args.latent, "lam": args.lam,
        "regularizer": args.regularizer, "epochs": args.epochs,
        "train_seconds": round(time.perf_counter() - start, 1),
        "epoch_mean_energy": model.history_, "x": args.x, **stats._asdict(),
    }  # fmt: skip
    _, F = energy_grid(model, args.x, resolution=args.resolution)
    t = np.linspace(0, 2 * np.pi, 200)
    a, b = ellipse_axes(np.array(args.x))
    curve = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    title = (f"lam={args.lam:g} {args.regularizer}: {100 * stats.fraction_below:.0f}% of the "
             f"plane as low as data")  # fmt: skip
    save_energy_landscapes([(title, F)], 2.0, args.out / "landscape.png", curve=curve)
    save(model, args.out)
    write_json(args.out / "metrics.json", metrics)
    print(f"wrote {args.out}: {100 * stats.fraction_below:.1f}% of the y-plane as low as data "
          f"(ideal {100 * stats.fraction_near_data:.1f}%)")  # fmt: skip
