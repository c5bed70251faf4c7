"""The working-set convolutional lasso: its restricted operator against the dense one,
its optimum against batched FISTA's (float64), the duality-gap certificate, warm starts,
the sign constraint and the solver choice of ``conv_sparse_encode``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lvebm
import lvebm.conv_workingset as cw
from lvebm.conv_lasso import conv_objective, pick_solver, solve_conv_lasso
from lvebm.operators import Conv2d

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def small_sets(monkeypatch):
    """Working sets far smaller than the maps, so the outer loop really grows them."""
    monkeypatch.setattr(cw, "WS_START", 40)


def _kernels(rng, m, c, s):
    K = rng.normal(size=(m, c, s, s))
    return torch.tensor(K / np.linalg.norm(K.reshape(m, -1), axis=1)[:, None, None, None])


@pytest.mark.parametrize("use_scipy", [True, False])
@pytest.mark.parametrize("c", [1, 3])
def test_restricted_operator_is_the_dense_operator_on_its_columns(rng, use_scipy, c):
    K = _kernels(rng, 3, c, 4)
    H, W, s = 9, 11, 4
    Hm, Wm = H + s - 1, W + s - 1
    dense = Conv2d(K, (H, W), method="direct")
    ws = torch.tensor(np.sort(rng.choice(3 * Hm * Wm, 25, replace=False)))
    op = cw.RestrictedConv(K, (Hm, Wm), ws, use_scipy=use_scipy)
    v = torch.tensor(rng.normal(size=25))
    z = torch.zeros(3 * Hm * Wm, dtype=torch.float64)
    z[ws] = v
    padded = op.forward(v).view(c, H + 2 * (s - 1), W + 2 * (s - 1))
    window = padded[:, s - 1 : s - 1 + H, s - 1 : s - 1 + W]
    np.testing.assert_allclose(window, dense.forward(z.view(1, 3, Hm, Wm))[0], atol=1e-12)
    r = torch.zeros_like(padded)
    r[:, s - 1 : s - 1 + H, s - 1 : s - 1 + W] = torch.tensor(rng.normal(size=(c, H, W)))
    full = dense.adjoint(r[None, :, s - 1 : s - 1 + H, s - 1 : s - 1 + W])[0].flatten()
    np.testing.assert_allclose(op.adjoint(r.flatten()), full[ws], atol=1e-12)


@pytest.mark.parametrize("c,nonneg", [(1, False), (3, False), (1, True)])
def test_working_set_reaches_the_fista_optimum(rng, small_sets, c, nonneg):
    K = _kernels(rng, 4, c, 5)
    y = torch.tensor(rng.normal(size=(2, c, 21, 18)))
    lam = 0.8
    ref = solve_conv_lasso(y, K, lam, max_iter=20_000, tol=1e-12, method="direct", nonneg=nonneg)
    res = cw.solve_conv_lasso_ws(y, K, lam, tol=1e-10, nonneg=nonneg)
    assert res.converged
    np.testing.assert_allclose(res.objective, ref.objective, rtol=1e-9)
    np.testing.assert_allclose(conv_objective(y, K, res.z, lam), ref.objective, rtol=1e-9)
    np.testing.assert_allclose(res.z, ref.z, atol=1e-5)
    if nonneg:
        assert float(res.z.min()) >= 0.0


def test_gap_stop_certifies_the_relative_suboptimality(rng, small_sets):
    K = _kernels(rng, 3, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 30, 30)))
    best = float(solve_conv_lasso(y, K, 0.5, max_iter=20_000, tol=1e-12).objective[0])
    for tol in (1e-2, 1e-4):
        res = cw.solve_conv_lasso_ws(y, K, 0.5, tol=tol)
        assert res.converged
        assert best <= float(res.objective[0]) <= best * (1 + tol)


def test_working_set_uses_far_fewer_columns_than_the_maps(rng, small_sets):
    K = _kernels(rng, 4, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 24, 24)))
    seen = []
    original = cw.RestrictedConv.__init__

    def spy(self, K, maps, ws, **kw):
        seen.append(ws.numel())
        original(self, K, maps, ws, **kw)

    cw.RestrictedConv.__init__ = spy
    try:
        res = cw.solve_conv_lasso_ws(y, K, 1.5, tol=1e-8)
    finally:
        cw.RestrictedConv.__init__ = original
    assert res.converged and len(seen) >= 2
    assert max(seen) < res.z.numel() / 2


def test_warm_start_at_the_optimum_stops_at_once(rng, small_sets):
    K = _kernels(rng, 3, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 20, 20)))
    z = cw.solve_conv_lasso_ws(y, K, 0.5, tol=1e-10).z
    calls = []
    res = cw.solve_conv_lasso_ws(y, K, 0.5, tol=1e-8, z0=z, callback=lambda t, v: calls.append(v))
    assert res.converged and res.n_iter == 0 and calls == []


def test_callback_reports_a_descending_objective(rng, small_sets):
    K = _kernels(rng, 3, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 20, 20)))
    seen = []
    res = cw.solve_conv_lasso_ws(y, K, 0.5, tol=1e-9, callback=lambda t, v: seen.append((t, v)))
    its = [t for t, _ in seen]
    assert its == sorted(its) and its[-1] <= res.n_iter
    assert seen[-1][1] <= seen[0][1]
    assert seen[-1][1] == pytest.approx(float(res.objective[0]), rel=1e-12)


def test_float32_input_gives_float32_maps_near_the_float64_optimum(rng, small_sets):
    K = _kernels(rng, 3, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 20, 20)))
    z64 = cw.solve_conv_lasso_ws(y, K, 0.5, tol=1e-10).z
    res = cw.solve_conv_lasso_ws(y.float(), K.float(), 0.5, tol=1e-5)
    assert res.z.dtype == torch.float32
    f32 = float(conv_objective(y, K, res.z.double(), 0.5)[0])
    f64 = float(conv_objective(y, K, z64, 0.5)[0])
    assert f64 <= f32 <= f64 * (1 + 1e-4)


def test_conv_sparse_encode_solvers_agree(rng):
    K = _kernels(rng, 3, 1, 5).numpy()
    Y = rng.normal(size=(2, 1, 16, 16))
    a = lvebm.conv_sparse_encode(Y, K, 0.6, solver="fista", tol=1e-10, max_iter=20_000)
    b = lvebm.conv_sparse_encode(Y, K, 0.6, solver="workingset", tol=1e-10)
    Yt, Kt = torch.tensor(Y), torch.tensor(K)
    fa = conv_objective(Yt, Kt, torch.tensor(a), 0.6)
    fb = conv_objective(Yt, Kt, torch.tensor(b), 0.6)
    np.testing.assert_allclose(fb, fa, rtol=1e-9)


def test_auto_solver_takes_the_working_set_for_large_cpu_images():
    assert pick_solver("auto", torch.zeros(1, 1, 128, 128)) == "workingset"
    assert pick_solver("auto", torch.zeros(4, 1, 32, 32)) == "fista"
    assert pick_solver("fista", torch.zeros(1, 1, 512, 512)) == "fista"


def test_conv_sparse_encode_rejects_an_unknown_solver():
    with pytest.raises(ValueError, match="solver"):
        lvebm.conv_sparse_encode(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), 0.1, solver="cd")


def test_model_encode_takes_the_solver(rng):
    model = lvebm.ConvSparseCoding(3, 5, 1, 0.6, seed=0)
    Y = rng.normal(size=(1, 1, 16, 16))
    a = model.encode(Y, solver="workingset", tol=1e-10)
    b = model.encode(Y, solver="fista", tol=1e-10, max_iter=20_000)
    K = model.kernels.detach().double()
    fa = conv_objective(torch.tensor(Y), K, torch.tensor(a).double(), 0.6)
    fb = conv_objective(torch.tensor(Y), K, torch.tensor(b).double(), 0.6)
    np.testing.assert_allclose(fa, fb, rtol=1e-6)
    with pytest.raises(ValueError, match="solver"):
        model.encode(Y, solver="admm")


@pytest.fixture
def support_problem(rng):
    """A 20x20 image, 3 kernels 5x5, lam 0.5: (K, y, lam, its optimal maps flattened,
    the padded-grid problem)."""
    K = _kernels(rng, 3, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 20, 20)))
    zstar = solve_conv_lasso(y, K, 0.5, max_iter=50_000, tol=1e-13).z[0].flatten()
    return K, y, 0.5, zstar, cw._Problem(y[0], 5, 0.5, nonneg=False)


def test_support_solve_recovers_the_optimum_from_the_right_signs(rng, support_problem):
    K, y, lam, zstar, prob = support_problem
    start = zstar * (1 + 0.3 * torch.tensor(rng.uniform(size=zstar.shape)))  # same signs
    z, rho = cw._support_solve(K, (24, 24), prob, start)
    np.testing.assert_allclose(z, zstar, atol=1e-3)  # CG stops at 1e-5 * lam per equation
    np.testing.assert_allclose(
        conv_objective(y, K, z.view(1, 3, 24, 24), lam),
        conv_objective(y, K, zstar.view(1, 3, 24, 24), lam),
        rtol=1e-9,
    )
    full = Conv2d(K, (20, 20), method="direct").forward(z.view(1, 3, 24, 24))
    np.testing.assert_allclose(rho.view(1, 28, 28)[:, 4:24, 4:24], (y - full)[0], atol=1e-12)


def test_support_solve_keeps_signs_and_never_grows_the_support(rng, support_problem):
    K, y, lam, zstar, prob = support_problem
    start = zstar.clone()
    off = (zstar == 0).nonzero().squeeze(1)
    start[off[::20]] = torch.tensor(rng.choice([-1e-3, 1e-3], size=off[::20].numel()))
    out = cw._support_solve(K, (24, 24), prob, start)
    assert out is not None
    z, _ = out
    moved = z != 0
    assert bool((start[moved] != 0).all())  # no entry outside the given support
    assert bool((torch.sign(z[moved]) == torch.sign(start[moved])).all())


def test_solver_result_is_never_worse_than_its_iterates(rng, small_sets):
    K = _kernels(rng, 4, 1, 5)
    y = torch.tensor(rng.normal(size=(1, 1, 24, 24)))
    seen = []
    res = cw.solve_conv_lasso_ws(y, K, 0.4, tol=1e-9, callback=lambda t, v: seen.append(v))
    assert float(res.objective[0]) <= min(seen) * (1 + 1e-12)
