"""The lecture's VAE pictures: 2-d posterior "fuzzy balls" for beta = 1, 0 and a large beta (50).

Runs ``lvebm train vae --latent 2`` (via its library function) on binarised MNIST digits
for each beta, each into ``OUT/beta-B/`` (model, metrics.json, latent_balls.png,
latent_grid.png, samples.png), then puts the three ball pictures side by side in
``OUT/vae_latent_balls.png`` and prints mean posterior std, mean |mu|, per-dim KL and
active units for each.

Run::

    LVEBM_MNIST=... python benchmarks/vae_latent_pictures.py --out docs/figures
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402

import lvebm  # noqa: E402
from lvebm.cli._common import load_vectors, write_json  # noqa: E402
from lvebm.cli.vae import train_and_report  # noqa: E402

CMAP = plt.get_cmap("tab10")


def _side_by_side(vectors, args, results: dict) -> None:
    """The balls of every beta in one figure, on shared axes (the held-out split of the runs)."""
    test = np.random.default_rng(args.seed).permutation(len(vectors.X))[:1000]
    X = (vectors.X[test] > 0.5).astype(np.float32)
    posts = [lvebm.load(args.out / f"vae-beta-{b:g}").encode(X) for b in args.betas]
    lim = 1.05 * max(float(np.abs(q.mean).max() + np.exp(0.5 * q.logvar).max()) for q in posts)
    fig, axes = plt.subplots(1, len(args.betas), figsize=(5 * len(args.betas), 5))
    for ax, beta, q in zip(axes, args.betas, posts, strict=True):
        std = np.exp(0.5 * q.logvar)
        for m, s, lab in zip(q.mean, std, vectors.labels[test], strict=True):
            ax.add_patch(Ellipse(tuple(m), 2 * s[0], 2 * s[1], color=CMAP(int(lab)), alpha=0.3,
                                 lw=0))  # fmt: skip
        ax.scatter(q.mean[:, 0], q.mean[:, 1], s=1, c=[CMAP(int(v)) for v in vectors.labels[test]])
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, ls="--", color="k", lw=0.8))
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        r = results[f"beta={beta:g}"]
        dist = r["mean_distance_of_means_from_origin"]
        ax.set_title(f"beta={beta:g}: mean std {r['mean_posterior_std']:.3f}, mean |mu| {dist:.2f}",
                     fontsize=9)  # fmt: skip
    fig.savefig(args.out / "vae_latent_balls.png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="mnist", help="mnist (default $LVEBM_MNIST), digits, PATH")
    p.add_argument("--out", type=Path, default=Path("docs/figures"))
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 0.0, 50.0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    vectors = load_vectors(args.data)
    results = {}
    for beta in args.betas:
        out = args.out / f"vae-beta-{beta:g}"
        m = train_and_report(vectors, latent=2, beta=beta, hidden=(512,), likelihood="bernoulli",
                             binarize=0.5, epochs=args.epochs, batch_size=128, lr=3e-3,
                             n_test=1000, iwae_k=100, seed=args.seed, device=None, out=out,
                             progress=False)  # fmt: skip
        keep = ("test_neg_elbo_nats", "mean_posterior_std", "mean_distance_of_means_from_origin",
                "kl_per_dim", "active_units_kl_gt_0.01", "active_units_cov_gt_0.01")  # fmt: skip
        results[f"beta={beta:g}"] = {k: m[k] for k in keep}
        print(f"beta={beta:g}", json.dumps(results[f"beta={beta:g}"]), flush=True)
    _side_by_side(vectors, args, results)
    write_json(args.out / "vae_latent_pictures.json", results)
    return results


if __name__ == "__main__":
    main()
