"""Issue 5's experiments on convolutional sparse coding, one command each.

    python benchmarks/conv_experiments.py sweep     # 1..32 grey kernels, 9x9 (filter sweep)
    python benchmarks/conv_experiments.py color     # 16 colour kernels, 9x9, and sparse maps
    python benchmarks/conv_experiments.py encoder   # encoder maps vs optimal, error vs FISTA
    python benchmarks/conv_experiments.py joint     # kernels and encoder trained together
    python benchmarks/conv_experiments.py mnist     # features worth: CNN init, few labels

Figures go to docs/figures/conv_*.png, numbers to docs/figures/conv_*.json. Single
thread, seeded; training uses crops of the Tikhonov high-pass filtered scikit-image
images scaled to unit std (the CLI's ``--preprocess highpass``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import lvebm
from lvebm.cli.conv import PREPROCESS, load_images
from lvebm.conv_lasso import conv_operator, solve_conv_lasso
from lvebm.plotting import save_atom_grid, save_conv_maps
from lvebm.preprocess import sample_crops

FIG = Path("docs/figures")


def _crops(spec: str, n: int, size: int, seed: int = 0, pre: str = "highpass") -> np.ndarray:
    prep = [PREPROCESS[pre](im) for im in load_images(spec)]
    return sample_crops(prep, size, n, seed=seed)


def _write(name: str, payload: dict) -> None:
    FIG.mkdir(parents=True, exist_ok=True)
    (FIG / name).write_text(json.dumps(payload, indent=2) + "\n")


def sweep(args) -> None:
    crops = _crops("natural", args.n_crops, 32, pre=args.preprocess)
    tag = "" if args.preprocess == "highpass" else f"_{args.preprocess}"
    previous = FIG / "conv_sweep.json"  # runs of other filter counts are kept
    out = json.loads(previous.read_text())["runs"] if previous.exists() else {}
    for m in args.filters:
        model = lvebm.ConvSparseCoding(m, 9, 1, args.lam, seed=0)
        start = time.perf_counter()
        model.fit(
            crops, epochs=args.epochs, batch_size=16, max_iter=100, kernel_steps=10, progress=False
        )
        K = model.kernels.numpy()[:, 0]
        save_atom_grid(K, FIG / f"conv_sweep_{m}{tag}.png", title=f"{m} kernels 9x9{tag}")
        out[f"{m}{tag}"] = {"seconds": round(time.perf_counter() - start, 1),
                       "epochs": args.epochs, "crops": args.n_crops,
                       "energy": model.history_}  # fmt: skip
        lvebm.save(model, f"/tmp/conv_models/sweep_{m}{tag}")
        print(m, out[f"{m}{tag}"], flush=True)
    _write("conv_sweep.json", {"lam": args.lam, "runs": out})  # runs without "crops": 64


def color(args) -> None:
    crops = _crops("natural-color", args.n_crops, 32)
    model = lvebm.ConvSparseCoding(16, 9, 3, args.lam, seed=0)
    model.fit(
        crops, epochs=args.epochs, batch_size=16, max_iter=100, kernel_steps=10, progress=False
    )
    save_atom_grid(model.kernels.numpy(), FIG / "conv_color_kernels.png",
                   title="16 colour kernels 9x9")  # fmt: skip
    test = _crops("natural-color", 1, 128, seed=7)
    Z = model.encode(test, max_iter=500)
    save_conv_maps(
        test[0],
        model.reconstruct(Z)[0],
        Z[0],
        FIG / "conv_color_maps.png",
        title="colour image (128 px crop), reconstruction and its busiest maps",
    )
    lvebm.save(model, "/tmp/conv_models/color")
    _write("conv_color.json", {"lam": args.lam, "energy": model.history_,
                               "nonzero_fraction": float((Z != 0).mean())})  # fmt: skip


def encoder(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crops = _crops("natural", args.n_crops, 32)
    if Path("/tmp/conv_models/sweep_16/config.json").exists():  # reuse the sweep's kernels
        model = lvebm.load("/tmp/conv_models/sweep_16")
    else:
        model = lvebm.ConvSparseCoding(16, 9, 1, args.lam, seed=0)
        model.fit(
            crops, epochs=args.epochs, batch_size=16, max_iter=100, kernel_steps=10, progress=False
        )
    model.fit_encoder(crops, epochs=30, batch_size=16, lr=3e-3, progress=False)
    r = _encoder_report(model, args.lam)
    test, zstar, enc = r.pop("test"), r.pop("zstar"), r.pop("enc")
    _error_figure(r, FIG / "conv_encoder_error.png")
    busiest = torch.argsort(-(zstar[0] != 0).flatten(1).sum(1))[:4]
    fig, axes = plt.subplots(2, 5, figsize=(10, 4.2))
    for row, (maps, name) in enumerate(((zstar[0], "optimal"), (enc[0], "encoder"))):
        axes[row, 0].imshow(test[0, 0], cmap="gray")
        axes[row, 0].set_title("image", fontsize=8)
        for j, i in enumerate(busiest.tolist()):
            v = float(zstar[0, i].abs().max())
            axes[row, j + 1].imshow(maps[i], cmap="RdBu_r", vmin=-v, vmax=v)
            axes[row, j + 1].set_title(f"{name} map {i}", fontsize=8)
    for a in axes.ravel():
        a.axis("off")
    fig.savefig(FIG / "conv_encoder_maps.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    _write("conv_encoder.json", {"lam": args.lam, **r,
                                 "encoder_loss_history": model.encoder_history_})  # fmt: skip


def _encoder_report(model, lam: float) -> dict:
    """The encoder's maps on 16 new 40x40 crops against the optimal ones and FISTA's.

    Relative errors ``||z - z*|| / ||z*||`` of the trained encoder, of the untrained one
    (one ISTA step) and of FISTA after ``fista_iters`` iterations from zero and from
    the encoder; also the crops, ``z*`` and the encoder's maps (tensors).
    """
    test = torch.from_numpy(_crops("natural", 16, 40, seed=5))
    K = model.kernels.data
    zstar = solve_conv_lasso(test, K, lam, max_iter=3000, tol=1e-7).z
    enc = model.encoder(test).detach()
    rel = lambda z: float(torch.linalg.vector_norm(z - zstar) / torch.linalg.vector_norm(zstar))  # noqa: E731
    iters = [1, 2, 3, 5, 10, 20, 30, 50, 75, 100]
    untrained = lvebm.ConvSparseCoding.from_kernels(K, lam)
    untrained.encoder.init_from_kernels(K, lam, conv_operator(K, (40, 40)).lipschitz())
    return {
        "test": test, "zstar": zstar, "enc": enc,
        "encoder_rel_error": rel(enc),
        "untrained_rel_error": rel(untrained.encoder(test).detach()),
        "fista_iters": iters,
        "fista_rel_error": [rel(solve_conv_lasso(test, K, lam, max_iter=k, tol=1e-12).z)
                            for k in iters],
        "warm_rel_error": [rel(solve_conv_lasso(test, K, lam, max_iter=k, tol=1e-12, z0=enc).z)
                           for k in iters],
    }  # fmt: skip


def _error_figure(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = r["fista_iters"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(iters, r["fista_rel_error"], "o-", label="FISTA from zero")
    ax.loglog(iters, r["warm_rel_error"], "s-", label="FISTA from the encoder")
    ax.axhline(r["encoder_rel_error"], color="C3", ls="--", label="trained encoder (1 pass)")
    ax.axhline(r["untrained_rel_error"], color="C7", ls=":",
               label="untrained encoder = 1 ISTA step")  # fmt: skip
    ax.set_xlabel("FISTA iterations")
    ax.set_ylabel("||z - z*|| / ||z*||")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def joint(args) -> None:
    """Kernels and encoder trained together (convolutional PSD, ``fit(alpha=...)``)."""
    crops = _crops("natural", args.n_crops, 32)
    model = lvebm.ConvSparseCoding(16, 9, 1, args.lam, seed=0)
    start = time.perf_counter()
    model.fit(crops, epochs=args.epochs, batch_size=16, max_iter=100, kernel_steps=10,
              alpha=args.alpha, encoder_lr=3e-3, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    r = _encoder_report(model, args.lam)
    K = model.kernels.data
    _error_figure(r, FIG / "conv_joint_error.png")
    title = f"16 kernels 9x9, trained with the encoder (alpha={args.alpha})"
    save_atom_grid(K.numpy()[:, 0], FIG / "conv_joint_kernels.png", title=title)
    for tensor in ("test", "zstar", "enc"):
        r.pop(tensor)
    run = {"lam": args.lam, "alpha": args.alpha, "epochs": args.epochs,
           "seconds": round(seconds, 1), "energy": model.history_}  # fmt: skip
    _write("conv_joint.json", {**run, **r})
    print(json.dumps({k: r[k] for k in ("encoder_rel_error", "fista_rel_error")}))


def _cnn(m: int) -> torch.nn.Module:
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, m, 7, padding=3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(m, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )  # fmt: skip


def _train_cnn(X, y, Xt, yt, init, seed: int, steps: int) -> float:
    torch.manual_seed(seed)
    net = _cnn(16)
    if init is not None:
        w = net[0].weight.data
        net[0].weight.data = init * (w.std() / init.std())  # same scale as the default init
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((net(Xt).argmax(1) == yt).float().mean())


def mnist(args) -> None:
    images, labels = lvebm.data.load_mnist(args.mnist)
    X = torch.from_numpy(images[:, None] - images.mean())
    y = torch.from_numpy(labels)
    Xtr, ytr, Xt, yt = X[:6000], y[:6000], X[6000:], y[6000:]
    csc = lvebm.ConvSparseCoding(16, 7, 1, 0.1, seed=0)
    csc.fit(
        Xtr[:128].numpy(),
        epochs=args.epochs,
        batch_size=16,
        max_iter=100,
        kernel_steps=10,
        progress=False,
    )
    save_atom_grid(csc.kernels.numpy()[:, 0], FIG / "conv_mnist_kernels.png",
                   title="16 kernels 7x7 learned on MNIST")  # fmt: skip
    learned = csc.kernels.data.clone()
    rng = np.random.default_rng(0)
    results = {}
    for per_class in (50, 100, 500):
        for name, init in (("random", None), ("csc", learned)):
            accs = []
            for seed in range(3):
                pick = np.concatenate([rng.permutation(np.nonzero(ytr.numpy() == c)[0])[:per_class]
                                       for c in range(10)])  # fmt: skip
                accs.append(_train_cnn(Xtr[pick], ytr[pick], Xt, yt,
                                       init, seed, args.steps))  # fmt: skip
            results[f"{per_class}/{name}"] = {"mean": float(np.mean(accs)),
                                              "std": float(np.std(accs)), "accs": accs}  # fmt: skip
            print(per_class, name, results[f"{per_class}/{name}"], flush=True)
    _write("conv_mnist.json", {"steps": args.steps, "results": results})


def main() -> None:
    p = argparse.ArgumentParser(description="issue 5 experiments")
    p.add_argument("experiment", choices=["sweep", "color", "encoder", "joint", "mnist"])
    p.add_argument("--alpha", type=float, default=1.0, help="prediction weight (joint)")
    p.add_argument("--lam", type=float, default=0.5)
    p.add_argument(
        "--filters",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16, 32],
        help="filter counts of the sweep (e.g. 64)",
    )
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--n-crops", type=int, default=64)
    p.add_argument(
        "--preprocess", choices=sorted(PREPROCESS), default="highpass", help="sweep's images"
    )
    p.add_argument("--steps", type=int, default=300, help="CNN training steps (mnist)")
    p.add_argument("--mnist", default=None, help="MNIST path (default $LVEBM_MNIST / shared)")
    args = p.parse_args()
    torch.set_num_threads(1)
    experiments = {"sweep": sweep, "color": color, "encoder": encoder, "joint": joint,
                   "mnist": mnist}  # fmt: skip
    experiments[args.experiment](args)


if __name__ == "__main__":
    main()
