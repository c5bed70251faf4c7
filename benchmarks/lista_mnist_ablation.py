"""Which training recipe makes a 3-step LISTA predict held-out MNIST codes best?

Same problem as ``benchmarks/lista_mnist.py`` (7,000 training / 1,000 held-out
digits, fixed 256-atom dictionary, lam = 0.1, reference codes = FISTA to
convergence). Every recipe trains ``LISTA(W, 0.1, steps=3)`` (untied, initialised at
ISTA) for 30 epochs of batch 256 with Adam, through the network's ``forward``, with
the loop written out here so that the recipes can differ in ways ``fit`` does not
expose (per-sample random shifts, layer-wise stages, penalties towards the ISTA
initialisation, an energy term). Prints one JSON line per recipe: held-out and
training code errors and the FISTA iterations (from zero) that reach the held-out
error.

    python -m benchmarks.lista_mnist_ablation --data ../shared/data/mnist-8k.npz base aug_full
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import lvebm
from lvebm.lasso import lasso_objective
from lvebm.unrolled import code_error, fista_equivalent, fista_error_curve

from ._mnist_problem import mnist_problem, shifted_training_set

#: recipe name -> options of :func:`train`.
RECIPES = {
    "base": {},
    "lr1e-4": {"lr": 1e-4},
    "lr3e-4": {"lr": 3e-4},
    "lr3e-3": {"lr": 3e-3},
    "cosine": {"sched": "cos"},
    "cosine_lr3e-4": {"lr": 3e-4, "sched": "cos"},
    "step": {"sched": "step"},
    "tied_cosine": {"tied": True, "sched": "cos"},
    "layerwise_cosine": {"layerwise": True, "sched": "cos"},
    "energy": {"target": "energy"},
    "supervised+energy": {"energy_weight": 1.0},
    "support_selection": {"support": 5.0, "support_max": 30.0},
    "penalty_to_init_1e-3": {"wd_init": 1e-3},
    "aug_random_view_step": {"augment": "random", "sched": "step"},
    "aug_full_step": {"augment": "full", "sched": "step"},
    "more_steps_150_epochs_step": {"epochs": 150, "sched": "step"},
}


def train(p, *, aug=None, lr=1e-3, sched="const", tied=False, layerwise=False, target="fista",
          energy_weight=0.0, support=0.0, support_max=0.0, wd_init=0.0, augment=None,
          epochs=30, batch_size=256, seed=0):  # fmt: skip
    D = torch.tensor(p.W)
    X, Z = torch.tensor(p.X_train), torch.tensor(p.Z_train)
    if augment is not None:
        XA, ZA = (torch.tensor(a) for a in aug)
        if augment == "full":
            X, Z = XA, ZA
        else:  # "random": same 7,000 rows per epoch, each a random one of its 5 views
            n = X.shape[0]
            XA, ZA = XA.reshape(5, n, -1), ZA.reshape(5, n, -1)
    torch.manual_seed(seed)
    net = lvebm.LISTA(D, p.lam, steps=3, tied=tied, support=support, support_max=support_max)
    init = {name: q.detach().clone() for name, q in net.named_parameters()}
    n = X.shape[0]
    n_batches = math.ceil(n / batch_size)
    gen = torch.Generator().manual_seed(seed)
    stages = [(t, epochs // 3) for t in (1, 2, 3)] if layerwise else [(3, epochs)]
    for K, ep in stages:
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        total, it = ep * n_batches, 0
        for _ in range(ep):
            order = torch.randperm(n, generator=gen)
            for b in range(n_batches):
                idx = order[b * batch_size : (b + 1) * batch_size]
                factor = {"const": 1.0, "step": 0.1 if it >= 0.8 * total else 1.0,
                          "cos": 0.5 * (1 + math.cos(math.pi * it / total))}[sched]  # fmt: skip
                for g in opt.param_groups:
                    g["lr"] = lr * factor
                if augment == "random":
                    view = torch.randint(0, 5, (len(idx),), generator=gen)
                    yb, zb = XA[view, idx], ZA[view, idx]
                else:
                    yb, zb = X[idx], Z[idx]
                z = net(yb, steps=K)
                energy = lasso_objective(yb, D, z, p.lam).mean()
                loss = energy if target == "energy" else (z - zb).pow(2).sum(1).mean()
                if target != "energy" and energy_weight:
                    loss = loss + energy_weight * energy
                if wd_init:
                    loss = loss + wd_init * sum(
                        (q - init[name]).pow(2).sum() for name, q in net.named_parameters()
                    )
                opt.zero_grad()
                loss.backward()
                opt.step()
                it += 1
    return net


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", default=list(RECIPES), help=", ".join(RECIPES))
    ap.add_argument("--data", default=None)
    ap.add_argument("--cache", type=Path, default=Path(".cache/lista"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    p = mnist_problem(args.data, cache=args.cache)
    y, D, zs = (torch.tensor(a, dtype=torch.float64) for a in (p.X_test, p.W, p.Z_test))
    curve = fista_error_curve(y, D, p.lam, zs, max_iter=400)
    aug = shifted_training_set(p, cache=args.cache)
    for name in args.recipes:
        start = time.perf_counter()
        net = train(p, aug=aug, **RECIPES[name])
        with torch.no_grad():
            test = code_error(net(torch.tensor(p.X_test)), torch.tensor(p.Z_test))
            train_err = code_error(net(torch.tensor(p.X_train)), torch.tensor(p.Z_train))
        row = {"recipe": name, "test_error": test, "train_error": train_err,
               "fista_iterations": fista_equivalent(test, curve),
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
