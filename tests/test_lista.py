"""LISTA (and its CP / ALISTA variants) and PSD: ISTA at init, gradients, training, I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_dictionary
from reference import numpy_ista

import lvebm
import lvebm.data
from lvebm.lasso import lasso_objective
from lvebm.models.psd import psd_energy
from lvebm.unrolled import (
    analytic_weights,
    code_error,
    fista_equivalent,
    fista_error_curve,
    support_shrink,
)


def planted_problem(rng, *, d=20, k=40, n=700, p=0.1, noise=0.01):
    """Signals ``y = D z + noise`` from sparse Gaussian codes on a random unit-norm ``D``."""
    D = random_dictionary(rng, d, k)
    Z = rng.normal(size=(n, k)) * (rng.random((n, k)) < p)
    Y = Z @ D.T + noise * rng.normal(size=(n, d))
    return D, Y


@pytest.mark.parametrize("variant", ["lista", "cp"])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_untrained_lista_equals_ista_steps(rng, variant, tied, steps):
    d, k, n, lam = 10, 16, 6, 0.1
    W = random_dictionary(rng, d, k)
    Y = rng.normal(size=(n, d))
    net = lvebm.LISTA(W, lam, steps=steps, tied=tied, variant=variant)
    Z = net.encode(Y)
    assert Z.dtype == np.float64
    np.testing.assert_allclose(Z, numpy_ista(Y, W, lam, steps), rtol=0, atol=1e-13)
    ista = lvebm.sparse_encode(Y, W, lam, method="ista", max_iter=steps, tol=1e-300)
    np.testing.assert_allclose(Z, ista, rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "options",
    [
        {"variant": "lista"},
        {"variant": "lista", "tied": True},
        {"variant": "cp", "support": 10.0, "support_max": 30.0},
        {"variant": "alista", "support": 10.0, "support_max": 30.0},
    ],
)
def test_gradients_through_all_layers_pass_gradcheck(rng, options):
    d, k, n = 5, 8, 3
    W = torch.tensor(random_dictionary(rng, d, k))
    net = lvebm.LISTA(W, 0.05, steps=3, **options)
    y = torch.tensor(rng.normal(size=(n, d)), requires_grad=True)
    params = [p for p in net.parameters()]
    names = [name for name, _ in net.named_parameters()]

    def fn(y, *values):
        return torch.func.functional_call(net, dict(zip(names, values, strict=True)), (y,))

    inputs = (y,) + tuple(p.detach().clone().requires_grad_(True) for p in params)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5)


def test_every_layer_receives_gradient(rng):
    W = torch.tensor(random_dictionary(rng, 6, 10))
    net = lvebm.LISTA(W, 0.05, steps=4)
    net(torch.tensor(rng.normal(size=(5, 6)))).pow(2).sum().backward()
    for t in range(4):
        assert net.W_e.grad[t].abs().sum() > 0
        assert net.theta.grad[t].abs().sum() > 0
    for t in range(3):
        assert net.S.grad[t].abs().sum() > 0


def test_support_shrink_keeps_the_largest_entries_and_shrinks_the_rest():
    v = torch.tensor([[3.0, -0.5, 1.0, -2.0, 0.2]])
    out = support_shrink(v, torch.tensor(0.4), 40.0)  # 40% of 5 entries: keep 2
    torch.testing.assert_close(out, torch.tensor([[3.0, -0.1, 0.6, -2.0, 0.0]]))
    torch.testing.assert_close(support_shrink(v, torch.tensor(0.4), 0.0), lvebm.shrink(v, 0.4))


def test_analytic_weights_minimise_coherence_under_unit_diagonal(rng):
    D = torch.tensor(random_dictionary(rng, 12, 20))
    Wa = analytic_weights(D)
    torch.testing.assert_close(torch.diagonal(Wa.T @ D), torch.ones(20, dtype=D.dtype))
    best = torch.linalg.matrix_norm(Wa.T @ D)
    for _ in range(5):  # feasible perturbations (diagonal kept at 1) never do better
        E = torch.tensor(rng.normal(size=(12, 20)))
        E = E - D * ((E * D).sum(0) / (D * D).sum(0))  # d_i^T e_i = 0
        assert torch.linalg.matrix_norm((Wa + 0.1 * E).T @ D) > best


def test_fista_error_curve_matches_independent_runs(rng):
    W = random_dictionary(rng, 15, 30)
    Y = rng.normal(size=(8, 15))
    Zs = lvebm.sparse_encode(Y, W, 0.2, tol=1e-12, max_iter=100_000)
    Yt, Wt, Zt = (torch.tensor(a) for a in (Y, W, Zs))
    curve = fista_error_curve(Yt, Wt, 0.2, Zt, max_iter=12)
    for t in (1, 5, 12):
        Zt_t = lvebm.sparse_encode(Y, W, 0.2, method="fista", max_iter=t, tol=1e-300)
        assert curve[t - 1] == pytest.approx(code_error(torch.tensor(Zt_t), Zt), rel=1e-10)
    assert fista_equivalent(curve[4], curve) <= 5
    assert fista_equivalent(-1.0, curve) == float("inf")


@pytest.mark.parametrize("target", ["fista", "energy"])
def test_training_reduces_held_out_error(rng, target):
    D, Y = planted_problem(rng)
    Y = Y.astype(np.float32)
    train, test = Y[:600], Y[600:]
    Z_test = lvebm.sparse_encode(test.astype(np.float64), D, 0.1, tol=1e-10, max_iter=50_000)
    net = lvebm.LISTA(D.astype(np.float32), 0.1, steps=2)
    before_err = code_error(torch.tensor(net.encode(test)), torch.tensor(Z_test))
    before_energy = net.energy(test, net.encode(test)).mean()
    net.fit(train, target=target, epochs=15, batch_size=50, lr=3e-3, progress=False)
    after_err = code_error(torch.tensor(net.encode(test)), torch.tensor(Z_test))
    after_energy = net.energy(test, net.encode(test)).mean()
    assert after_energy < 0.95 * before_energy
    if target == "fista":
        assert after_err < 0.5 * before_err


@pytest.mark.parametrize(
    "options", [{}, {"tied": True}, {"variant": "cp"}, {"variant": "alista", "support": 5.0}]
)
def test_save_load_round_trip_gives_identical_codes(rng, tmp_path, options):
    D, Y = planted_problem(rng, n=200)
    net = lvebm.LISTA(D.astype(np.float32), 0.1, steps=3, support_max=20.0, **options)
    net.fit(Y.astype(np.float32), epochs=1, batch_size=50, progress=False)
    lvebm.save(net, tmp_path / "net")
    back = lvebm.load(tmp_path / "net")
    assert back.config == net.config
    np.testing.assert_array_equal(
        back.encode(Y.astype(np.float32)), net.encode(Y.astype(np.float32))
    )


@pytest.mark.parametrize("encoder", ["tanh", "lista"])
def test_psd_training_lowers_energy_and_encoder_error(rng, encoder):
    D, Y = planted_problem(rng)
    Y = Y.astype(np.float32)
    model = lvebm.PSD(20, 40, 0.1, encoder=encoder, seed=0)
    model.fit(Y[:600], epochs=6, batch_size=50, lr=1e-2, progress=False)
    h = model.history_
    assert h[-1] < 0.8 * h[0]
    assert all(b <= a * 1.02 for a, b in zip(h, h[1:], strict=False))
    test = Y[600:]
    Zs = lvebm.sparse_encode(test, model.dictionary.detach().numpy(), 0.1, tol=1e-8)
    err = code_error(torch.tensor(model.encode(test)), torch.tensor(Zs))
    assert err < 0.5


def test_psd_inference_satisfies_its_optimality_conditions(rng):
    d, k, n, lam, alpha = 12, 20, 5, 0.1, 0.5
    model = lvebm.PSD(d, k, lam, alpha=alpha, seed=1, dtype=torch.float64)
    Y = rng.normal(size=(n, d))
    Z = model.infer(Y, tol=1e-13, max_iter=100_000)
    W = model.dictionary.detach().numpy()
    P = model.encode(Y)
    corr = (Y - Z @ W.T) @ W - alpha * (Z - P)  # = -grad of the smooth part
    on = Z != 0
    np.testing.assert_allclose(corr[on], lam * np.sign(Z[on]), atol=1e-7)
    assert np.all(np.abs(corr[~on]) <= lam + 1e-7)
    e_star = model.energy(Y, Z)
    assert np.all(e_star <= model.energy(Y, Z + 1e-3 * rng.normal(size=Z.shape)))
    ref = psd_energy(*(torch.tensor(a) for a in (Y, W, Z, P)), lam, alpha).numpy()
    np.testing.assert_allclose(e_star, ref)


def test_psd_save_load_round_trip(rng, tmp_path):
    D, Y = planted_problem(rng, n=200)
    model = lvebm.PSD(20, 40, 0.1).fit(Y.astype(np.float32), epochs=1, progress=False)
    back = lvebm.load(lvebm.save(model, tmp_path / "psd"))
    np.testing.assert_array_equal(
        back.encode(Y.astype(np.float32)), model.encode(Y.astype(np.float32))
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda W: lvebm.LISTA(W, 0.1, steps=0), ValueError, "`steps` must be an integer >= 1"),
        (lambda W: lvebm.LISTA(W, -1.0), ValueError, "`lam` must be a finite float >= 0"),
        (lambda W: lvebm.LISTA(W, 0.1, variant="x"), ValueError, "`variant` must be one of"),
        (lambda W: lvebm.LISTA(W[0], 0.1), ValueError, "`dictionary` must be a 2-d array"),
        (lambda W: lvebm.LISTA(W, 0.1, tied=1), TypeError, "`tied` must be a bool"),
        (lambda W: lvebm.LISTA(W, 0.1).fit(np.ones((4, 3))), ValueError, "`data` and `dictionary`"),
        (lambda W: lvebm.LISTA(W, 0.1).fit(np.ones((4, 6)), target="x"), ValueError, "`target`"),
        (lambda W: lvebm.LISTA(W, 0.1).fit(np.ones((4, 6)), codes=np.ones((4, 2))), ValueError,
         "`codes` must have shape"),
        (lambda W: lvebm.PSD(6, 8, 0.1, encoder="mlp"), ValueError, "`encoder` must be one of"),
        (lambda W: lvebm.PSD(6, 8, 0.1, alpha=-1), ValueError, "`alpha` must be a finite float"),
    ],
)  # fmt: skip
def test_bad_arguments_raise_named_errors(rng, call, error, match):
    with pytest.raises(error, match=match):
        call(random_dictionary(rng, 6, 8))


def test_shift_images_moves_pixels_and_zero_fills():
    img = np.arange(1, 13, dtype=np.float32).reshape(1, 3, 4)
    out = lvebm.data.shift_images(img, [(1, 0), (0, -1), (0, 0)])
    np.testing.assert_array_equal(out[0, 1:], img[0, :-1])
    np.testing.assert_array_equal(out[0, 0], 0)
    np.testing.assert_array_equal(out[1, :, :-1], img[0, :, 1:])
    np.testing.assert_array_equal(out[1, :, -1], 0)
    np.testing.assert_array_equal(out[2], img[0])


@pytest.mark.parametrize(
    ("schedule", "factors"),
    [("step", [1.0, 1.0, 0.1, 0.1]), ("constant", [1.0] * 4), ("cosine", [1.0, 0.5, 0.0, 0.0])],
)
def test_learning_rate_schedules(schedule, factors):
    from lvebm.models.lista import _lr_factor

    got = [_lr_factor(schedule, i, 10) for i in (0, 5, 8, 10)]
    expected = factors if schedule != "cosine" else [1.0, 0.5, 0.5 * (1 + np.cos(0.8 * np.pi)), 0.0]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_cli_trains_lista_and_psd_with_metrics(rng, tmp_path):
    from lvebm.cli import main

    D, Y = planted_problem(rng, d=16, k=24, n=400)
    np.save(tmp_path / "y.npy", Y.astype(np.float32))
    sc = lvebm.SparseCoding.from_dictionary(D.astype(np.float32), 0.1)
    lvebm.save(sc, tmp_path / "sc")
    out = tmp_path / "lista"
    args = ["train", "lista", "--dictionary", str(tmp_path / "sc"), "--steps", "2", "--data",
            str(tmp_path / "y.npy"), "--epochs", "3", "--batch-size", "50", "--augment", "none",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    untrained = lvebm.LISTA(sc.dictionary, 0.1, steps=2)
    Xte = np.load(tmp_path / "y.npy")[np.random.default_rng(0).permutation(400)[:50]]
    Zs = lvebm.sparse_encode(Xte.astype(np.float64), D, 0.1, tol=1e-7, max_iter=20_000)
    before = code_error(torch.tensor(untrained.encode(Xte)).double(), torch.tensor(Zs))
    assert m["held_out_code_error"] < before
    assert m["fista_iterations_to_match"] >= 2
    np.testing.assert_allclose(lvebm.load(out).encode(Xte), lvebm.load(out).encode(Xte))
    assert (out / "code_error.png").read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "psd"
    args = ["train", "psd", "--data", str(tmp_path / "y.npy"), "--atoms", "24", "--epochs", "2",
            "--batch-size", "50", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["epoch_mean_energy"][-1] < m["epoch_mean_energy"][0]
    assert lvebm.load(out).kind == "psd"


def test_deformed_training_set_appends_copies_with_their_lasso_codes(rng):
    from lvebm.models.lista import deformed_training_set

    images = np.zeros((6, 8, 8), dtype=np.float32)
    images[:, 2:6, 3:5] = rng.uniform(0.5, 1.0, size=(6, 4, 2))
    X = images.reshape(6, 64)
    D = random_dictionary(rng, 64, 32).astype(np.float32)
    Xf, Zf = deformed_training_set(X, (8, 8), D, 0.05, views=3, seed=1)
    assert Xf.shape == (24, 64) and Zf.shape == (24, 32)
    np.testing.assert_array_equal(Xf[:6], X)
    assert np.abs(Xf[6:] - np.tile(X, (3, 1))).max() > 0.1  # the copies are deformed
    X64, D64 = torch.tensor(Xf).double(), torch.tensor(D).double()
    best = lasso_objective(X64, D64, lvebm.sparse_encode(X64, D64, 0.05, tol=1e-10), 0.05)
    got = lasso_objective(X64, D64, torch.tensor(Zf).double(), 0.05)
    assert bool(torch.all(got - best <= 1e-4 * best))  # the copies' codes are lasso optima
    given = np.ones((6, 32), dtype=np.float32)
    _, Zg = deformed_training_set(X, (8, 8), D, 0.05, views=1, codes=given)
    np.testing.assert_array_equal(Zg[:6], given)
    with pytest.raises(ValueError, match="flattened 8x8 images"):
        deformed_training_set(X[:, :63], (8, 8), D, 0.05)


@pytest.mark.parametrize(
    ("mode", "target", "rows"),
    [
        ("affine", "fista", 12),
        ("affine", "energy", 12),
        ("shifts", "fista", 15),
        ("none", "fista", 3),
    ],
)
def test_cli_augment_modes(rng, mode, target, rows):
    from lvebm.cli.lista import augment

    X = rng.uniform(size=(3, 36)).astype(np.float32)
    D = random_dictionary(rng, 36, 20).astype(np.float32)
    Xf, Zf = augment(X, (6, 6), D, 0.1, mode, target, views=3)
    assert Xf.shape == (rows, 36)
    assert (Zf is None) == (target == "energy")
    if Zf is not None:
        assert Zf.shape == (rows, 20)


@pytest.mark.parametrize("variant", ["lista", "cp", "alista"])
def test_init_from_a_shallower_network_reproduces_its_layers(rng, variant):
    D = random_dictionary(rng, 12, 20)
    Y = torch.tensor(rng.normal(size=(30, 12)))
    small = lvebm.LISTA(D, 0.1, steps=2, variant=variant)
    with torch.no_grad():
        for q in small.parameters():  # as if trained: away from the initialisation
            q.mul_(torch.tensor(rng.uniform(0.8, 1.2, size=q.shape)))
    deep = lvebm.LISTA(D, 0.1, steps=5, variant=variant).init_from(small)
    torch.testing.assert_close(deep(Y, steps=2), small(Y), rtol=0, atol=1e-12)
    fresh = lvebm.LISTA(D, 0.1, steps=5, variant=variant)
    for name, q in fresh.named_parameters():  # later layers keep their initialisation
        n = dict(small.named_parameters())[name].shape[0]
        torch.testing.assert_close(dict(deep.named_parameters())[name][n:], q[n:])
    with pytest.raises(ValueError, match="at most 5 layers"):
        deep.init_from(lvebm.LISTA(D, 0.1, steps=6, variant=variant))
    with pytest.raises(ValueError, match="must be a LISTA"):
        deep.init_from(object())
