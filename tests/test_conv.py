"""Convolutional sparse coding: operator vs a dense matrix, adjointness, FISTA vs the dense
lasso, boundary coverage, kernel learning, the encoder, save/load, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import conv_matrix, lasso_objective

import lvebm
from lvebm.conv_lasso import conv_objective
from lvebm.operators import Conv2d
from lvebm.preprocess import highpass, local_contrast_normalize, whiten_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _kernels(rng, m, c, s):
    K = rng.normal(size=(m, c, s, s))
    return K / np.linalg.norm(K.reshape(m, -1), axis=1)[:, None, None, None]


@pytest.mark.parametrize("method", ["fft", "direct", "mixed"])
@pytest.mark.parametrize("c", [1, 3])
def test_conv_operator_equals_dense_toeplitz_matrix(rng, method, c):
    K = _kernels(rng, 4, c, 3)
    A = conv_matrix(K, (5, 7))
    op = Conv2d(torch.tensor(K), (5, 7), method=method)
    z = rng.normal(size=(2, 4, 7, 9))
    y = rng.normal(size=(2, c, 5, 7))
    fwd = op.forward(torch.tensor(z)).reshape(2, -1).numpy()
    adj = op.adjoint(torch.tensor(y)).reshape(2, -1).numpy()
    np.testing.assert_allclose(fwd, z.reshape(2, -1) @ A.T, atol=1e-12)
    np.testing.assert_allclose(adj, y.reshape(2, -1) @ A, atol=1e-12)


@pytest.mark.parametrize("method", ["fft", "direct", "mixed"])
def test_conv_adjointness_float64(rng, method):
    K = torch.tensor(_kernels(rng, 6, 2, 5))
    op = Conv2d(K, (13, 10), method=method)
    z = torch.tensor(rng.normal(size=(3, 6, 17, 14)))
    y = torch.tensor(rng.normal(size=(3, 2, 13, 10)))
    lhs = float((op.forward(z) * y).sum())
    rhs = float((z * op.adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_conv_lipschitz_bounds_the_dense_spectral_norm(rng):
    K = _kernels(rng, 3, 2, 4)
    A = conv_matrix(K, (9, 8))
    exact = np.linalg.eigvalsh(A.T @ A)[-1]
    op = Conv2d(torch.tensor(K), (9, 8))
    assert op.power_lipschitz(n_iter=3000, tol=1e-13) == pytest.approx(exact, rel=1e-6)
    assert exact <= op.lipschitz() * (1 + 1e-12)  # the spectral bound is a safe step


def test_boundary_every_pixel_is_covered_by_every_tap(rng):
    m, s = 2, 3
    ones = torch.ones(m, 1, s, s, dtype=torch.float64)
    op = Conv2d(ones, (6, 5), method="direct")
    covered = op.forward(torch.ones(1, m, 8, 7, dtype=torch.float64))
    assert torch.all(covered == m * s * s)  # corners included: no pixel sees fewer taps
    # maps reach outside the image: a corner map entry touches exactly one pixel
    touches = op.adjoint(torch.ones(1, 1, 6, 5, dtype=torch.float64))
    assert touches[0, 0, 0, 0] == 1 and touches[0, 0, 2, 2] == s * s
    # any image is reproducible: the synthesis of one random kernel has full row rank
    A = conv_matrix(_kernels(rng, 1, 1, s), (6, 5))
    assert np.linalg.matrix_rank(A) == 30


def test_conv_encode_matches_dense_sparse_encode(rng):
    m, s, H, W, lam = 3, 3, 6, 5, 0.1
    K = _kernels(rng, m, 1, s)
    A = conv_matrix(K, (H, W))
    Y = rng.normal(size=(4, 1, H, W))
    Z = lvebm.conv_sparse_encode(Y, K, lam, tol=1e-11, max_iter=50_000)
    Zd = lvebm.sparse_encode(Y.reshape(4, -1), A, lam, method="fista", tol=1e-11, max_iter=50_000)
    ours = lasso_objective(Y.reshape(4, -1), A, Z.reshape(4, -1), lam)
    ref = lasso_objective(Y.reshape(4, -1), A, Zd, lam)
    assert np.all(np.abs(ours - ref) <= 1e-8 * ref)
    np.testing.assert_allclose(Z.reshape(4, -1), Zd, atol=1e-5)


def test_conv_fista_satisfies_subgradient_conditions(rng):
    lam = 0.2
    K = _kernels(rng, 3, 1, 5)
    Y = torch.tensor(rng.normal(size=(2, 1, 12, 12)))
    Z = lvebm.conv_sparse_encode(Y, K, lam, tol=1e-10, max_iter=20_000, method="fft")
    op = Conv2d(torch.tensor(K), (12, 12))
    g = op.adjoint(op.forward(Z) - Y)
    on = Z != 0
    assert torch.allclose(g[on], -lam * torch.sign(Z[on]), atol=1e-6)
    assert bool((g[~on].abs() <= lam + 1e-6).all())


def test_fft_and_direct_forms_give_the_same_maps(rng):
    K = _kernels(rng, 3, 3, 4)
    Y = rng.normal(size=(2, 3, 9, 8))
    Zf = lvebm.conv_sparse_encode(Y, K, 0.3, method="fft", tol=1e-10, max_iter=5000)
    Zd = lvebm.conv_sparse_encode(Y, K, 0.3, method="direct", tol=1e-10, max_iter=5000)
    np.testing.assert_allclose(Zf, Zd, atol=1e-7)


def _planted_images(rng) -> tuple[np.ndarray, np.ndarray]:
    """24 images (24, 1, 16, 16) made of 3 random 5x5 kernels and 3%-sparse maps; (Y, K)."""
    K = _kernels(rng, 3, 1, 5)
    Z = rng.normal(size=(24, 3, 20, 20)) * (rng.random((24, 3, 20, 20)) < 0.03)
    return lvebm.ConvSparseCoding.from_kernels(K, 0.05).reconstruct(Z.astype(np.float32)), K


@pytest.fixture(scope="module")
def fitted():
    Y, K = _planted_images(np.random.default_rng(1))
    model = lvebm.ConvSparseCoding(3, 5, lam=0.05, seed=0)
    model.fit(Y, epochs=6, batch_size=8, progress=False)
    return model, Y, K


def test_fit_keeps_kernels_unit_norm_and_lowers_the_energy(fitted):
    model, Y, _ = fitted
    norms = torch.linalg.vector_norm(model.kernels.flatten(1), dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)
    h = model.history_
    assert h[-1] < 0.85 * h[0] and all(b <= a * 1.001 for a, b in zip(h, h[1:], strict=False))


def test_energy_and_free_energy_agree_with_the_objective(rng):
    model = lvebm.ConvSparseCoding.from_kernels(_kernels(rng, 2, 1, 3), 0.1)
    Y = rng.normal(size=(3, 1, 8, 8)).astype(np.float32)
    Z = model.encode(Y, tol=1e-6, max_iter=5000)
    A = conv_matrix(model.kernels.double().numpy(), (8, 8))
    ref = lasso_objective(Y.reshape(3, -1).astype(np.float64), A, Z.reshape(3, -1), 0.1)
    np.testing.assert_allclose(model.energy(Y, Z), ref, rtol=1e-5)
    np.testing.assert_allclose(model.free_energy(Y, tol=1e-6, max_iter=5000), ref, rtol=1e-5)


def test_untrained_encoder_is_one_ista_step(rng):
    model = lvebm.ConvSparseCoding.from_kernels(_kernels(rng, 3, 1, 5), 0.2)
    y = torch.tensor(rng.normal(size=(2, 1, 12, 12)), dtype=torch.float32)
    op = Conv2d(model.kernels.data, (12, 12))
    L = op.lipschitz()
    model.encoder.init_from_kernels(model.kernels.data, 0.2, L)
    expected = lvebm.shrink(op.adjoint(y) / L, 0.2 / L)
    torch.testing.assert_close(model.predict(y), expected, atol=1e-6, rtol=1e-5)


def test_encoder_training_reduces_its_prediction_error(fitted):
    model, Y, _ = fitted
    model.fit_encoder(Y, epochs=8, batch_size=8, lr=1e-2, progress=False)
    h = model.encoder_history_
    assert h[-1] < 0.7 * h[0]


def test_save_load_round_trip_gives_identical_maps(fitted, tmp_path):
    model, Y, _ = fitted
    lvebm.save(model, tmp_path / "csc")
    back = lvebm.load(tmp_path / "csc")
    assert isinstance(back, lvebm.ConvSparseCoding) and back.config == model.config
    torch.testing.assert_close(back.kernels, model.kernels, atol=0, rtol=0)
    np.testing.assert_array_equal(back.encode(Y[:2]), model.encode(Y[:2]))
    np.testing.assert_array_equal(back.predict(Y[:2]), model.predict(Y[:2]))


def test_conv_energy_matches_objective_helper_in_float64(rng):
    K = torch.tensor(_kernels(rng, 2, 2, 3))
    y = torch.tensor(rng.normal(size=(2, 2, 5, 5)))
    z = torch.tensor(rng.normal(size=(2, 2, 7, 7)))
    A = conv_matrix(K.numpy(), (5, 5))
    ref = lasso_objective(y.reshape(2, -1).numpy(), A, z.reshape(2, -1).numpy(), 0.3)
    np.testing.assert_allclose(conv_objective(y, K, z, 0.3).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: lvebm.conv_sparse_encode(np.ones((2, 5, 5)), np.ones((1, 1, 3, 3)), 0.1),
         ValueError, r"`Y` must be a 4-d array of shape \(n, c, H, W\)"),
        (lambda: lvebm.conv_sparse_encode(np.ones((1, 2, 5, 5)), np.ones((1, 1, 3, 3)), 0.1),
         ValueError, r"`Y` and `K` disagree"),
        (lambda: lvebm.conv_sparse_encode(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 2)), 0.1),
         ValueError, r"`K` must be square kernels"),
        (lambda: lvebm.conv_sparse_encode(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), -1.0),
         ValueError, r"`lam` must be a finite float >= 0"),
        (lambda: lvebm.ConvSparseCoding(0, 3), ValueError, r"`n_filters` must be an integer"),
        (lambda: lvebm.ConvSparseCoding(2, 3, nonlinearity="relu"), ValueError, r"`nonlinearity`"),
        (lambda: lvebm.ConvSparseCoding(2, 3).encode(np.ones((1, 3, 8, 8))), ValueError,
         r"`images` and `kernels` disagree"),
        (lambda: lvebm.ConvSparseCoding(2, 3).energy(np.ones((1, 1, 8, 8)), np.ones((1, 2, 8, 8))),
         ValueError, r"`maps` must have shape \(1, 2, 10, 10\)"),
    ],
)  # fmt: skip
def test_conv_bad_inputs_raise_named_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_highpass_matches_sporco_tikhonov_filter():
    signal = pytest.importorskip("sporco.signal")
    img = np.random.default_rng(0).random((40, 50))
    _, ref = signal.tikhonov_filter(img, 5.0, 16)
    np.testing.assert_allclose(highpass(img, lam=5.0, npad=16), ref, atol=1e-6)


def test_preprocessing_removes_the_local_mean_and_flat_images_vanish(rng):
    flat = np.full((1, 3, 16, 16), 0.7)
    assert np.abs(local_contrast_normalize(flat)).max() < 1e-6
    assert np.abs(highpass(flat)).max() < 1e-6
    img = rng.random((2, 1, 32, 32))
    w = whiten_images(img)
    assert np.allclose(w.mean(axis=(-2, -1)), 0, atol=1e-5)
    assert np.allclose(w.std(axis=(-2, -1)), 1, atol=1e-4)


@pytest.mark.parametrize("alpha", [None, "1.0"])
def test_cli_trains_and_writes_kernels_maps_metrics(tmp_path, rng, alpha):
    import json

    from lvebm.cli import main

    np.save(tmp_path / "imgs.npy", rng.random((2, 40, 40)).astype(np.float32))
    out = tmp_path / "run"
    argv = ["train", "conv-sparse-coding", "--images", str(tmp_path / "imgs.npy"),
            "--filters", "2", "--kernel", "5", "--lam", "0.05", "--crop", "16",
            "--n-crops", "8", "--epochs", "2", "--batch-size", "4", "--max-iter", "20",
            "--out", str(out)] + ([] if alpha is None else ["--alpha", alpha])  # fmt: skip
    assert main(argv) == 0
    assert (out / "kernels.png").stat().st_size > 0 and (out / "maps.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = lvebm.load(out)
    norms = torch.linalg.vector_norm(model.kernels.flatten(1), dim=1)
    assert torch.allclose(norms, torch.ones(2), atol=1e-5)
    assert 0 < metrics["test_relative_residual"] < 1 and len(metrics["epoch_mean_energy"]) == 2
    if alpha is not None:  # the jointly trained encoder predicts maps in the optimum's direction
        assert 0 < metrics["test_encoder_relative_error"] < 1.0


def test_kernel_step_never_increases_the_batch_data_term(rng):
    """Even a far too long step is halved until the fixed-maps data term does not rise."""
    from lvebm.models.conv import _kernel_step, _synth, _unit_kernels

    y = torch.tensor(rng.normal(size=(2, 1, 12, 12)))
    K = _unit_kernels(torch.tensor(rng.normal(size=(3, 1, 4, 4))))
    z = torch.tensor(rng.normal(size=(2, 3, 15, 15))) * (torch.rand(2, 3, 15, 15) < 0.2)

    def data_term(K):
        return float((_synth(K, z, (12, 12)) - y).pow(2).sum())

    for step in (1e-3, 1.0, 1e3):
        K_new = _kernel_step(y, K, z, step)
        assert data_term(K_new) <= data_term(K)
        norms = torch.linalg.vector_norm(K_new.flatten(1), dim=1)
        torch.testing.assert_close(norms, torch.ones(3, dtype=norms.dtype))


def test_conv_lasso_with_a_prediction_term_satisfies_its_kkt_conditions(rng):
    from lvebm.conv_lasso import solve_conv_lasso

    lam, alpha = 0.2, 0.7
    K = torch.tensor(_kernels(rng, 3, 1, 5))
    Y = torch.tensor(rng.normal(size=(2, 1, 12, 12)))
    P = torch.tensor(rng.normal(size=(2, 3, 16, 16))) * 0.3
    res = solve_conv_lasso(Y, K, lam, tol=1e-11, max_iter=20_000, method="fft",
                           prediction=P, alpha=alpha)  # fmt: skip
    Z = res.z
    op = Conv2d(K, (12, 12))
    g = op.adjoint(op.forward(Z) - Y) + alpha * (Z - P)  # gradient of the smooth part
    on = Z != 0
    assert torch.allclose(g[on], -lam * torch.sign(Z[on]), atol=1e-6)
    assert bool((g[~on].abs() <= lam + 1e-6).all())
    expected = conv_objective(Y, K, Z, lam) + 0.5 * alpha * (Z - P).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(res.objective, expected)
    plain = solve_conv_lasso(Y, K, lam, tol=1e-11, max_iter=20_000, method="fft")
    assert (Z - plain.z).abs().max() > 1e-3  # the prediction term changes the optimum


def test_joint_encoder_training_lowers_the_psd_energy_and_the_prediction_error():
    Y, _ = _planted_images(np.random.default_rng(2))
    model = lvebm.ConvSparseCoding(3, 5, lam=0.05, seed=0)
    L = Conv2d(model.kernels.data, (20, 20)).lipschitz()
    model.encoder.init_from_kernels(model.kernels.data, 0.05, L)
    untrained = lvebm.ConvSparseCoding.from_kernels(model.kernels.data.clone(), 0.05)
    untrained.encoder.load_state_dict(model.encoder.state_dict())
    model.fit(Y, epochs=8, batch_size=8, alpha=1.0, encoder_lr=1e-2, progress=False)
    h = model.history_
    assert h[-1] < 0.85 * h[0]
    norms = torch.linalg.vector_norm(model.kernels.flatten(1), dim=1)
    assert torch.allclose(norms, torch.ones(3), atol=1e-5)

    def prediction_error(m):  # against the optimal maps of the trained kernels
        z_star = torch.as_tensor(model.encode(Y, tol=1e-5, max_iter=3000))
        return float((torch.as_tensor(m.predict(Y)) - z_star).pow(2).sum() / z_star.pow(2).sum())

    assert prediction_error(model) < 0.8 * prediction_error(untrained)
