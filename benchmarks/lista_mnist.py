"""LISTA on MNIST: code error versus steps, FISTA-iteration equivalents, energy versus time.

The problem of ``benchmarks/_mnist_problem.py``: 7,000 training and 1,000 held-out
digits of the shared 8k MNIST file, the fixed 256-atom dictionary learned by
``SparseCoding(784, 256, 0.1).fit(X_train, epochs=5)``, lam = 0.1 and reference codes
``z*`` from FISTA to convergence. For each K, a LISTA is trained with the library's
defaults (``LISTA(W, 0.1, steps=K).fit(X, codes=Z)``, 30 epochs, batch 256) and its
held-out code error ``sum ||z - z*||^2 / sum ||z*||^2`` is compared with ISTA's and
FISTA's after t iterations from zero. By default the training set ``(X, Z)`` is the
7,000 digits plus 19 random affine copies of each (``deformed_training_set``, 140,000
rows with FISTA codes to 1e-5), so 30 epochs are 16,410 Adam steps; ``--augment
shifts`` uses the four one-pixel shifts instead, ``--augment none`` the digits alone,
``--views`` sets the number of copies.

    python -m benchmarks.lista_mnist --data ../shared/data/mnist-8k.npz --out docs/figures

prints the FISTA-equivalent table, the amortized-inference timing row (issue 7) as a
ratio and one JSON line, and writes ``lista_mnist_error.png`` and
``lista_mnist_energy_time.png``. ``--epochs`` takes one value or one per K (the
larger networks can be given fewer); ``benchmarks/lista_mnist_ablation.py`` compares
other training recipes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import lvebm
from lvebm.lasso import lasso_objective
from lvebm.models.lista import DEFAULT_VIEWS
from lvebm.ops import gram_lipschitz
from lvebm.regularizers import L1
from lvebm.solvers import GramLeastSquares, fista
from lvebm.unrolled import code_error, fista_equivalent, fista_error_curve

from ._mnist_problem import affine_training_set, mnist_problem, shifted_training_set

CURVE_ITERS = 400


def held_out_curves(p, max_iter: int, cache: Path | None = None) -> dict[str, list[float]]:
    file = None if cache is None else cache / f"curves_{max_iter}.json"
    if file is not None and file.exists():
        return json.loads(file.read_text())
    y, D, zs = (torch.tensor(a, dtype=torch.float64) for a in (p.X_test, p.W, p.Z_test))
    curves = {
        "FISTA": fista_error_curve(y, D, p.lam, zs, max_iter=max_iter),
        "ISTA": fista_error_curve(y, D, p.lam, zs, max_iter=max_iter, accelerate=False),
    }
    if file is not None:
        file.write_text(json.dumps(curves))
    return curves


def train_lista(p, K: int, *, seed: int = 0, cache: Path | None = None, training_set=None,
                tag: str = "", init_from=None, **fit_options):  # fmt: skip
    """A LISTA trained with the library's defaults (plus ``fit_options``); (net, seconds).

    ``training_set`` is ``(X, Z)`` (rows and target codes), default the problem's
    training rows; ``tag`` names it in the cache. ``init_from``: a trained shallower
    LISTA whose layers start this one (:meth:`lvebm.LISTA.init_from`). With ``cache``, a
    network trained before with the same settings is loaded instead (seconds is then
    the original training time).
    """
    opts = "_".join(f"{k}-{v}" for k, v in sorted(fit_options.items()))
    grown = "" if init_from is None else f"from{init_from.steps}"
    name = "_".join(x for x in (f"lista_K{K}_seed{seed}", tag, opts, grown) if x)
    folder = None if cache is None else cache / name
    if folder is not None and (folder / "seconds.txt").exists():
        return lvebm.load(folder), float((folder / "seconds.txt").read_text())
    net = lvebm.LISTA(p.W, p.lam, steps=K)
    if init_from is not None:
        net.init_from(init_from)
    X, Z = (p.X_train, p.Z_train) if training_set is None else training_set
    start = time.perf_counter()
    net.fit(X, codes=Z, seed=seed, progress=False, **fit_options)
    seconds = time.perf_counter() - start
    if folder is not None:
        lvebm.save(net, folder)
        (folder / "seconds.txt").write_text(f"{seconds:.2f}")
    return net, seconds


def errors(net, p) -> tuple[float, float]:
    """(held-out, training) code errors."""
    test = code_error(torch.tensor(net.encode(p.X_test)), torch.tensor(p.Z_test))
    train = code_error(torch.tensor(net.encode(p.X_train)), torch.tensor(p.Z_train))
    return test, train


def best_time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def amortized_row(net, p, fista_curve) -> dict:
    """Wall time of LISTA and of FISTA run to the same held-out code error (float32, CPU)."""
    y = torch.tensor(p.X_test)
    D = torch.tensor(p.W)
    err = code_error(torch.tensor(net.encode(p.X_test)), torch.tensor(p.Z_test))
    iters = int(fista_equivalent(err, fista_curve))
    with torch.no_grad():
        t_lista = best_time(lambda: net(y), repeats=10)
    t_fista = best_time(
        lambda: lvebm.sparse_encode(y, D, p.lam, method="vmfista", max_iter=iters, tol=1e-300),
        repeats=10,
    )
    return {
        "benchmark": "amortized_inference",
        "n_digits": int(y.shape[0]),
        "lista_steps": net.steps,
        "code_error": err,
        "fista_iterations": iters,
        "lista_seconds": t_lista,
        "fista_seconds": t_fista,
        "speedup": t_fista / t_lista,
        "threads": torch.get_num_threads(),
    }


def _timed_fista(y, D, lam, L, max_iter, *, keep: bool = True):
    """FISTA's iterates with their times, excluding the time spent copying them."""
    iterates: list[tuple[float, torch.Tensor]] = []
    overhead = 0.0

    def record(t, z):
        nonlocal overhead
        now = time.perf_counter()
        iterates.append((now - start - overhead, z.clone() if keep else None))
        overhead += time.perf_counter() - now

    start = time.perf_counter()
    f = GramLeastSquares.from_dictionary(y, D)  # y W and W^T W count as FISTA's time
    fista(f, L1(), y.new_zeros(y.shape[0], D.shape[1]), lam=lam, L=L, max_iter=max_iter,
          tol=0.0, callback=record)  # fmt: skip
    return iterates


def energy_vs_time(nets: dict[int, lvebm.LISTA], p, max_iter: int = 200) -> dict:
    """Mean held-out energy against wall time: FISTA's iterates and each LISTA.

    FISTA's clock excludes the time spent recording its iterates (copies only; the
    energies are evaluated afterwards); each iterate's time is the best of 3 runs, and
    each LISTA's the best of 10, to damp the noise of a shared machine.
    """
    y, D = torch.tensor(p.X_test), torch.tensor(p.W)
    L = gram_lipschitz(D.T @ D)  # a property of the dictionary, computed once
    runs = [_timed_fista(y, D, p.lam, L, max_iter, keep=r == 0) for r in range(3)]
    iterates = [(min(r[i][0] for r in runs), runs[0][i][1]) for i in range(len(runs[0]))]
    energy = [(t, float(lasso_objective(y, D, z, p.lam).mean())) for t, z in iterates]
    out = {"FISTA": energy, "optimum": float(lasso_objective(y, D, torch.tensor(p.Z_test),
                                                             p.lam).mean())}  # fmt: skip
    for K, net in nets.items():
        with torch.no_grad():
            secs = best_time(lambda net=net: net(y), repeats=10)
            out[f"LISTA K={K}"] = [(secs, float(lasso_objective(y, D, net(y), p.lam).mean()))]
    return out


def plot_errors(curves, lista: dict[int, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    t = np.arange(1, 101)
    for name, curve in curves.items():
        ax.semilogy(t, curve[:100], label=name)
    ks = sorted(lista)
    ax.semilogy(ks, [lista[k] for k in ks], "o-", color="C3", label="LISTA (trained, K steps)")
    ax.set_xlabel("iterations / layers K")
    ax.set_ylabel("held-out code error ||z - z*||² / ||z*||²")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_energy_time(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    opt = data["optimum"]
    t, e = zip(*data["FISTA"], strict=True)
    ax.loglog(np.array(t) * 1e3, np.array(e) - opt, label="FISTA iterates")
    for i, (name, pts) in enumerate((k, v) for k, v in data.items() if k.startswith("LISTA")):
        ax.loglog(pts[0][0] * 1e3, pts[0][1] - opt, "o", color=f"C{i + 1}", label=name)
    ax.set_xlabel("wall time for 1,000 held-out digits (ms, 1 thread)")
    ax.set_ylabel("mean energy − optimum")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_all(p, ks: list[int], epochs: list[int], *, init_from: int | None = None,
              **options) -> dict[int, tuple]:  # fmt: skip
    """``{K: (net, seconds)}`` trained by :func:`train_lista` in the order given.

    With ``init_from`` = K0 (which must come first in ``ks``), every deeper network
    starts from the trained K0 network's layers.
    """
    if init_from is not None and ks[0] != init_from:
        raise SystemExit("error: --init-from K0 needs K0 first in --steps")
    trained: dict[int, tuple] = {}
    for K, ep in zip(ks, epochs, strict=True):
        base = trained[init_from][0] if init_from is not None and K > init_from else None
        trained[K] = train_lista(p, K, init_from=base, epochs=ep, **options)
    return trained


def error_table(p, trained: dict[int, tuple], epochs: list[int],
                curves) -> tuple[list[dict], dict]:  # fmt: skip
    """Print each trained LISTA's held-out error and FISTA/ISTA equivalents.

    ``trained`` is :func:`train_all`'s output; returns the table's rows and the
    networks by K.
    """
    rows, nets = [], {}
    print("| K | epochs | LISTA held-out error | train error | FISTA iterations to match | "
          "ratio | ISTA iterations to match | training s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (K, (net, secs)), ep in zip(trained.items(), epochs, strict=True):
        test, train = errors(net, p)
        f_eq, i_eq = fista_equivalent(test, curves["FISTA"]), fista_equivalent(test, curves["ISTA"])
        nets[K] = net
        rows.append({"K": K, "epochs": ep, "test_error": test, "train_error": train,
                     "fista_iterations": f_eq, "ista_iterations": i_eq,
                     "train_seconds": round(secs, 1)})  # fmt: skip
        print(f"| {K} | {ep} | {test:.4f} | {train:.4f} | {f_eq:.0f} | {f_eq / K:.1f}x | "
              f"{i_eq:.0f} | {secs:.0f} |", flush=True)  # fmt: skip
    return rows, nets


def steps_and_epochs(steps: str, epochs: str) -> tuple[list[int], list[int]]:
    """``--steps 1,2,3 --epochs 30`` or ``--epochs 30,30,10``: one epoch count per K."""
    ks = [int(k) for k in steps.split(",")]
    eps = [int(e) for e in epochs.split(",")]
    if len(eps) == 1:
        eps = eps * len(ks)
    if len(eps) != len(ks):
        raise SystemExit("error: --epochs needs one value or one per --steps entry")
    return ks, eps


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="MNIST .npz (default $LVEBM_MNIST)")
    ap.add_argument("--steps", default="1,2,3,5,10,16", help="comma list of K")
    ap.add_argument("--epochs", default="30", help="epochs, one value or one per K")
    ap.add_argument("--cache", type=Path, default=Path(".cache/lista"),
                    help="where the dictionary and reference codes are cached")  # fmt: skip
    ap.add_argument("--out", type=Path, default=None, help="folder for figures and JSON")
    ap.add_argument("--augment", choices=["affine", "shifts", "none"], default="affine",
                    help="training set: digits plus random affine copies (default), plus "
                         "their four one-pixel shifts, or the digits alone")  # fmt: skip
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, help="affine copies per digit")
    ap.add_argument("--init-from", type=int, default=None,
                    help="start every deeper network from this first K's layers")  # fmt: skip
    ap.add_argument("--train-only", action="store_true", help="only train and cache the networks")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ks, epochs = steps_and_epochs(args.steps, args.epochs)
    p = mnist_problem(args.data, cache=args.cache)
    if args.augment == "affine":
        training_set, tag = (
            affine_training_set(p, args.views, cache=args.cache),
            f"affine{args.views}",
        )
    elif args.augment == "shifts":
        training_set, tag = shifted_training_set(p, cache=args.cache), "shifts"
    else:
        training_set, tag = None, "plain"
    trained = train_all(p, ks, epochs, init_from=args.init_from, seed=args.seed,
                        cache=args.cache, training_set=training_set, tag=tag)  # fmt: skip
    if args.train_only:  # fill the cache (e.g. one process per K), report later
        return {}
    curves = held_out_curves(p, CURVE_ITERS, args.cache)
    table, nets = error_table(p, trained, epochs, curves)
    results: dict = {"table": table, "augment": args.augment, "views": args.views,
                     "init_from": args.init_from,
                     "n_fit_rows": int((p.X_train if training_set is None else
                                        training_set[0]).shape[0])}  # fmt: skip
    if 3 in nets:
        row = amortized_row(nets[3], p, curves["FISTA"])
        results["amortized_inference"] = row
        ms_l, ms_f = row["lista_seconds"] * 1e3, row["fista_seconds"] * 1e3
        print(
            f"amortized inference, 1,000 held-out digits: LISTA K=3 {ms_l:.2f} ms vs FISTA "
            f"{row['fista_iterations']} iterations {ms_f:.2f} ms -> {row['speedup']:.1f}x faster"
        )
        print(json.dumps(row))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_errors(curves, {r["K"]: r["test_error"] for r in table},
                    args.out / "lista_mnist_error.png", "MNIST, 256 atoms, λ = 0.1")  # fmt: skip
        et = energy_vs_time(nets, p)
        plot_energy_time(et, args.out / "lista_mnist_energy_time.png")
        results["energy_vs_time"] = et
        results["curves"] = {k: v[:100] for k, v in curves.items()}
        (args.out / "lista_mnist.json").write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
