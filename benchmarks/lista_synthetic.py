"""The synthetic benchmark of the unrolled-sparse-coding literature: NMSE (dB) versus layers.

Problem (Chen et al. 2018; Liu et al. 2019): ``A`` (250, 500) with N(0, 1/250) entries
and unit-norm columns; codes ``x`` (500,) with entries non-zero with probability 0.1,
N(0, 1) values; measurements ``b = A x`` (noiseless) or plus Gaussian noise at the
given SNR (dB, per sample). Fresh training batches, a fixed validation set and a
fixed test set of 1,000 each. ``NMSE = 10 log10(sum ||x_hat - x||^2 / sum ||x||^2)``.

Networks are trained to regress ``x`` layer by layer (each new layer first alone at
``lr``, then all layers at ``0.2 lr`` and ``0.02 lr``) as in the literature; every
stage has a fixed number of Adam steps (``--iters``), far fewer than the papers'
stopping-on-validation schedules, so the numbers are a CPU-budget reproduction.

    python benchmarks/lista_synthetic.py --layers 16 --iters 200 --out docs/figures

prints one table row per (model, SNR), the JSON of all curves, and writes
``lista_synthetic_nmse.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import torch

import lvebm
from lvebm.lasso import sparse_encode
from lvebm.unrolled import support_fraction, support_shrink

M, N, P_NONZERO, LAM = 250, 500, 0.1, 0.4
BATCH = 64
#: name -> LISTA options
MODELS = {
    "LISTA": {"variant": "lista"},
    "LISTA-CPSS": {"variant": "cp", "support": 1.2, "support_max": 13.0},
    "ALISTA": {"variant": "alista", "support": 1.2, "support_max": 13.0},
}


def make_problem(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(M, N, generator=g) / math.sqrt(M)
    return A / torch.linalg.vector_norm(A, dim=0, keepdim=True)


def sample(A: torch.Tensor, n: int, snr: float | None, g: torch.Generator):
    """(b (n, M), x (n, N)) with Bernoulli-Gaussian codes; ``snr`` in dB or None."""
    x = torch.randn(n, N, generator=g) * (torch.rand(n, N, generator=g) < P_NONZERO)
    b = x @ A.T
    if snr is not None:
        power = b.pow(2).mean(1, keepdim=True)
        b = b + torch.randn(b.shape, generator=g) * torch.sqrt(power / 10 ** (snr / 10))
    return b, x


def nmse_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return float(10 * torch.log10((x_hat - x).pow(2).sum() / x.pow(2).sum()))


def train_layerwise(net, A, snr, *, iters, lr, seed, val):
    """Layer-wise training; returns the validation NMSE after each layer."""
    g = torch.Generator().manual_seed(seed)
    K = net.steps
    curve = []
    for t in range(1, K + 1):
        for scale, only_new in ((1.0, True), (0.2, False), (0.02, False)):
            masks = _layer_masks(net, t - 1) if only_new else None
            opt = torch.optim.Adam(net.parameters(), lr=lr * scale)
            for _ in range(iters):
                b, x = sample(A, BATCH, snr, g)
                loss = (net(b, steps=t) - x).pow(2).sum(1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if masks is not None:
                    for p, m in zip(net.parameters(), masks, strict=True):
                        if p.grad is None:
                            continue
                        p.grad.mul_(m)
                opt.step()
        with torch.no_grad():
            curve.append(nmse_db(net(val[0], steps=t), val[1]))
    return curve


def _alista_layer(net, b, z, t, gamma, theta):
    """ALISTA layer ``t`` (0-based) from the code ``z`` with the step and threshold given."""
    cfg = net.config
    step = gamma * ((b - z @ net.dictionary.T) @ net.W_analytic[0])
    return support_shrink(z + step, theta, support_fraction(t + 1, cfg.support, cfg.support_max))


def _log_nmse_of(predict, x):
    """log NMSE of ``predict()`` against ``x``."""
    return torch.log((predict() - x).pow(2).sum()) - torch.log(x.pow(2).sum())


def train_greedy(net, A, snr, *, batch, iters, seed, val):
    """Greedy layer-wise training of ALISTA's scalars by L-BFGS on fresh large batches.

    ALISTA learns only a step size and a threshold per layer, so each new layer is a
    two-parameter problem: layer ``t`` is fitted alone on a fresh batch of ``batch``
    samples (the earlier layers' output computed once), then all layers so far are
    refined together on another fresh batch. The loss is the log of the batch NMSE, so
    the optimiser sees the same scale at -10 dB and at -70 dB. Returns the validation
    NMSE after each layer.
    """
    g = torch.Generator().manual_seed(seed)
    curve = []
    for t in range(net.steps):
        b, x = sample(A, batch, snr, g)
        with torch.no_grad():
            z = net(b, steps=t) if t else b.new_zeros(b.shape[0], net.config.n_atoms)
        gamma, theta = (q.detach()[t].clone().requires_grad_() for q in (net.gamma, net.theta))
        new_layer = partial(_alista_layer, net, b, z, t, gamma, theta)
        _lbfgs([gamma, theta], partial(_log_nmse_of, new_layer, x), iters)
        with torch.no_grad():
            net.gamma[t], net.theta[t] = gamma, theta
        b, x = sample(A, batch, snr, g)
        _lbfgs(list(net.parameters()), partial(_log_nmse_of, partial(net, b, steps=t + 1), x),
               iters // 2)  # fmt: skip
        with torch.no_grad():
            curve.append(nmse_db(net(val[0], steps=t + 1), val[1]))
    return curve


def _lbfgs(params, loss_fn, iters: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=iters, tolerance_grad=1e-12,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")  # fmt: skip

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def _layer_masks(net, t):
    """Gradient masks that keep only layer ``t``'s slice of every stacked parameter."""
    masks = []
    for name, p in net.named_parameters():
        m = torch.zeros_like(p)
        row = t - 1 if name == "S" else t  # layer t uses S[t - 1]
        if 0 <= row < p.shape[0]:
            m[row] = 1
        masks.append(m)
    return masks


def baselines(A, b, x, K):
    """NMSE of ISTA and FISTA after 1..K iterations at LAM from zero."""
    out = {}
    for method in ("ista", "fista"):
        out[method.upper()] = [
            nmse_db(sparse_encode(b, A, LAM, method=method, max_iter=t, tol=1e-300), x)
            for t in range(1, K + 1)
        ]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--iters", type=int, default=200, help="Adam steps per stage")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--snr", default="inf,40,20", help="comma list of SNRs in dB (inf: none)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--alista-trainer", choices=["lbfgs", "adam"], default="lbfgs",
                    help="ALISTA: greedy layer-wise L-BFGS on fresh large batches, or the "
                         "layer-wise Adam schedule of the other networks")  # fmt: skip
    ap.add_argument("--greedy-batch", type=int, default=4096, help="ALISTA L-BFGS batch")
    ap.add_argument("--lbfgs-iters", type=int, default=40, help="L-BFGS iterations per layer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for the figure and JSON")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    A = make_problem(args.seed)
    results = {"layers": args.layers, "iters_per_stage": args.iters, "lr": args.lr, "runs": {}}
    for snr_text in args.snr.split(","):
        snr = None if snr_text == "inf" else float(snr_text)
        gv = torch.Generator().manual_seed(10_000 + args.seed)
        val, test = sample(A, 1000, snr, gv), sample(A, 1000, snr, gv)
        runs = baselines(A, *test, args.layers)
        for name in args.models.split(","):
            start = time.perf_counter()
            net = lvebm.LISTA(A, LAM, steps=args.layers, **MODELS[name])
            if MODELS[name]["variant"] == "alista" and args.alista_trainer == "lbfgs":
                train_greedy(net, A, snr, batch=args.greedy_batch, iters=args.lbfgs_iters,
                             seed=args.seed, val=val)  # fmt: skip
            else:
                train_layerwise(net, A, snr, iters=args.iters, lr=args.lr, seed=args.seed,
                                val=val)  # fmt: skip
            with torch.no_grad():
                runs[name] = [nmse_db(net(test[0], steps=t), test[1]) for t in
                              range(1, args.layers + 1)]  # fmt: skip
            runs[name + "_seconds"] = round(time.perf_counter() - start, 1)
        results["runs"][snr_text] = runs
        row = ", ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items() if isinstance(v, list))
        print(f"SNR {snr_text} dB, NMSE after {args.layers} layers: {row}", flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "lista_synthetic.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / "lista_synthetic_nmse.png")
    print(json.dumps(results))
    return results


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snrs = list(results["runs"])
    fig, axes = plt.subplots(1, len(snrs), figsize=(5 * len(snrs), 4), squeeze=False)
    for ax, snr in zip(axes[0], snrs, strict=True):
        for name, curve in results["runs"][snr].items():
            if isinstance(curve, list):
                ax.plot(range(1, len(curve) + 1), curve, marker=".", label=name)
        ax.set_title("noiseless" if snr == "inf" else f"SNR {snr} dB")
        ax.set_xlabel("layers / iterations")
        ax.set_ylabel("NMSE (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
