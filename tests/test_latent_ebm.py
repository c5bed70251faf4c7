"""LatentEBM: inference reaches closed-form minimisers, free energy, training, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_dictionary
from reference import lasso_objective, sklearn_lasso
from torch import nn

import lvebm
from lvebm.regularizers import Regularizer
from lvebm.solvers import prox_gradient
from lvebm.toys import collapse_stats, ellipse_axes, ellipse_data


class LinearDecoder(nn.Module):
    """``Dec(h, z) = W z``: makes the energy a ridge / lasso problem."""

    def __init__(self, W: np.ndarray):
        super().__init__()
        self.W = nn.Parameter(torch.as_tensor(W))

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T + 0.0 * h[:, :1]


class ProxOnlyL2(Regularizer):
    """``0.5||z||^2`` declared non-smooth: exercises the prox path with a user subclass."""

    def value(self, z):
        return 0.5 * z.pow(2).sum(1)

    def prox(self, v, t):
        return v / (1.0 + t)


def linear_ebm(W, reg, lam):
    pred = nn.Linear(1, 1).double()
    return lvebm.LatentEBM(pred, LinearDecoder(W), n_latent=W.shape[1], regularizer=reg, lam=lam)


def ridge(W, Y, lam):
    return np.linalg.solve(W.T @ W + lam * np.eye(W.shape[1]), W.T @ Y.T).T


@pytest.mark.parametrize("reg", [lvebm.L2(), ProxOnlyL2()], ids=["gradient", "user-prox"])
def test_inference_reaches_ridge_solution(rng, reg):
    d, k, n, lam = 8, 5, 12, 0.3
    W, Y = rng.normal(size=(d, k)), rng.normal(size=(n, d))
    ebm = linear_ebm(W, reg, lam)
    res = ebm.infer(np.zeros((n, 1)), Y, max_iter=5000, tol=1e-10)
    Zr = ridge(W, Y, lam)
    np.testing.assert_allclose(res.z.numpy(), Zr, atol=1e-6)
    expected = 0.5 * ((Y - Zr @ W.T) ** 2).sum(1) + lam * 0.5 * (Zr**2).sum(1)
    np.testing.assert_allclose(res.objective.numpy(), expected, rtol=1e-8)


@pytest.mark.parametrize("positive", [False, True])
def test_inference_with_l1_matches_sklearn_lasso(rng, positive):
    d, k, n, lam = 10, 12, 6, 0.3
    W, Y = random_dictionary(rng, d, k), rng.normal(size=(n, d))
    reg = lvebm.NonNegL1() if positive else lvebm.L1()
    F = linear_ebm(W, reg, lam).free_energy(np.zeros((n, 1)), Y, max_iter=5000, tol=1e-10)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, lam, positive=positive), lam)
    assert np.all((F - ref) / ref <= 1e-6)


def test_prox_gradient_is_monotone_and_batch_split_invariant(rng):
    W, Y = rng.normal(size=(6, 4)), rng.normal(size=(10, 6))
    ebm = linear_ebm(W, lvebm.L1(), 0.1)
    X = np.zeros((10, 1))
    whole = ebm.infer(X, Y, max_iter=3000, tol=1e-9).z.numpy()
    parts = (slice(0, 5), slice(5, 10))
    halves = [ebm.infer(X[s], Y[s], max_iter=3000, tol=1e-9).z.numpy() for s in parts]
    np.testing.assert_allclose(whole, np.concatenate(halves), atol=1e-7)
    # monotone: objective after 1, 5, 50 iterations never increases
    f = [ebm.infer(X, Y, max_iter=m, tol=1e-30).objective.numpy() for m in (1, 5, 50)]
    assert np.all(f[1] <= f[0] + 1e-12) and np.all(f[2] <= f[1] + 1e-12)


def test_prox_gradient_on_nonconvex_cost_reaches_stationary_point():
    # f(z) = 0.5 (tanh(z) - y)^2 + 0.5 lam z^2: stationary point where the gradient vanishes
    y = torch.tensor([[0.5], [-0.8], [0.0]], dtype=torch.float64)
    lam = 0.1

    class Term:
        def value_and_grad(self, z):
            t = torch.tanh(z)
            return 0.5 * ((t - y) ** 2).sum(1), (t - y) * (1 - t**2)

    res = prox_gradient(Term(), lvebm.L2(), torch.zeros_like(y), lam=lam, max_iter=5000, tol=1e-10)
    t = torch.tanh(res.z)
    grad = (t - y) * (1 - t**2) + lam * res.z
    assert res.converged and grad.abs().max() < 1e-7


def test_free_energy_is_min_of_energy(rng):
    ebm = lvebm.LatentEBM.mlp(1, 2, 2, hidden=(8,), lam=0.2, seed=0)
    x, y = ellipse_data(6, seed=0)
    res = ebm.infer(x, y, max_iter=2000, tol=1e-9)
    np.testing.assert_allclose(ebm.energy(x, y, res.z.numpy()), res.objective.numpy(), rtol=1e-5)
    for _ in range(5):
        z = rng.normal(size=(6, 2)).astype(np.float32)
        assert np.all(ebm.energy(x, y, z) >= res.objective.numpy() - 1e-6)


def test_fit_lowers_free_energy_of_data():
    x, y = ellipse_data(256, seed=0)
    ebm = lvebm.LatentEBM.mlp(1, 2, 2, hidden=(16,), lam=0.5, seed=0)
    before = ebm.free_energy(x, y, max_iter=200).mean()
    ebm.fit(x, y, epochs=6, batch_size=32, lr=1e-2, max_iter=30, progress=False)
    assert ebm.free_energy(x, y, max_iter=200).mean() < 0.3 * before
    assert ebm.history_[-1] < ebm.history_[0]


def test_collapse_stats_on_an_oracle_energy():
    # F = squared distance to the true ellipse: the low-energy set is the ellipse itself
    class Oracle:
        def free_energy(self, x, y, **_):
            a, b = ellipse_axes(x[:, 0])
            r = np.sqrt((y[:, 0] / a) ** 2 + (y[:, 1] / b) ** 2)
            return (r - 1.0) ** 2

    s = collapse_stats(Oracle(), 0.5, resolution=61)
    assert s.fraction_below < 0.1 and s.mean_off_data > 100 * s.mean_on_data


def test_save_load_round_trip(tmp_path):
    ebm = lvebm.LatentEBM.mlp(1, 2, 3, hidden=(8, 8), regularizer="l1", lam=0.3, seed=1)
    x, y = ellipse_data(5, seed=2)
    lvebm.save(ebm, tmp_path / "m")
    back = lvebm.load(tmp_path / "m")
    assert isinstance(back.regularizer, lvebm.L1) and back.lam == 0.3
    np.testing.assert_array_equal(back.free_energy(x, y), ebm.free_energy(x, y))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: lvebm.LatentEBM.mlp(1, 2, 2, lam=-1.0), ValueError, "`lam` must be"),
        (lambda: lvebm.LatentEBM.mlp(1, 2, 2, regularizer="l0"), ValueError, "`regularizer`"),
        (lambda: lvebm.LatentEBM.mlp(1, 2, 0), ValueError, "`n_latent`"),
        (lambda: lvebm.LatentEBM.mlp(1, 2, 2, hidden=4), TypeError, "`hidden`"),
        (lambda: lvebm.LatentEBM(nn.Identity(), "dec", n_latent=2), TypeError, "`decoder`"),
        (
            lambda: lvebm.LatentEBM(nn.Identity(), nn.Identity(), n_latent=2, regularizer="l1"),
            TypeError,
            "`regularizer` must be an lvebm Regularizer",
        ),  # fmt: skip
        (
            lambda: lvebm.LatentEBM(nn.Identity(), nn.Identity(), n_latent=2, cost="hinge"),
            ValueError,
            "`cost`",
        ),  # fmt: skip
        (
            lambda: lvebm.LatentEBM.mlp(1, 2, 2).energy(
                np.zeros((3, 1)), np.zeros((3, 2)), np.zeros((3, 5))
            ),
            ValueError,
            "`z`",
        ),  # fmt: skip
        (
            lambda: lvebm.LatentEBM.mlp(1, 2, 2).free_energy(np.zeros((3, 1)), np.zeros((4, 2))),
            ValueError,
            "`y` and `x` disagree",
        ),  # fmt: skip
        (
            lambda: lvebm.save(linear_ebm(np.eye(2), lvebm.L2(), 0.1), "/tmp/never"),
            TypeError,
            "custom modules",
        ),  # fmt: skip
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_fit_resumed_after_a_crash_is_bit_identical(tmp_path):
    x, y = ellipse_data(96, seed=0)

    class Crash(Exception):
        pass

    def fit(**kw):
        ebm = lvebm.LatentEBM.mlp(1, 2, 2, hidden=(8,), lam=0.5, seed=0)
        return ebm.fit(x, y, epochs=2, batch_size=32, max_iter=10, progress=False, **kw)

    def crash_at_4(state):
        if state.step == 4:
            raise Crash

    ref = fit()
    with pytest.raises(Crash):
        fit(checkpoint_dir=tmp_path, checkpoint_every=1, callback=crash_at_4)
    resumed = fit(checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history_ == ref.history_


def test_cli_train_latent_ebm_reports_collapse_without_regularizer(tmp_path):
    import json

    from lvebm.cli import main

    out = tmp_path / "lam0"
    argv = ["train", "latent-ebm", "--lam", "0", "--hidden", "16", "--n", "128", "--epochs", "3",
            "--batch-size", "64", "--max-iter", "20", "--resolution", "15",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    # lam = 0 with a latent as large as y: (almost) the whole plane is as low as the data
    assert m["fraction_below"] > 0.5 > m["fraction_near_data"]
    assert (out / "landscape.png").exists() and lvebm.load(out).lam == 0.0
    assert main(["train", "latent-ebm", "--lam", "-1", "--out", str(out)]) == 2
