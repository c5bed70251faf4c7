"""The variable-metric FISTA lasso path (lvebm.fast_lasso): metric, prox, gap, stopping."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import random_dictionary
from reference import lasso_objective, sklearn_lasso

import lvebm
from lvebm import _numba, lasso
from lvebm.fast_lasso import (
    CHECK_EVERY,
    _metric_prox,
    default_fused,
    gram_duality_gap,
    rank_one_metric,
    vmfista_lasso,
)

#: sparse_encode pinned to the solver under test (the default "auto" may pick "cd").
vm_encode = functools.partial(lvebm.sparse_encode, method="vmfista")


@pytest.fixture(params=["numba", "torch"])
def update(request, monkeypatch):
    """Runs a test with vmfista's numba kernels (the CPU default, where numba is
    installed) and with its torch update (the path a GPU takes; LVEBM_NUMBA=0)."""
    if request.param == "numba" and not _numba.available():
        pytest.skip("numba is not installed")
    monkeypatch.setenv("LVEBM_NUMBA", "1" if request.param == "numba" else "0")
    return request.param


def digit_like_dictionary(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    """Unit-norm atoms sharing a common positive component, like a learned digit dictionary:
    ``W^T W`` then has one dominant eigenvalue (the case the rank-one metric is built for)."""
    W = 0.5 * rng.normal(size=(d, k)) + np.abs(rng.normal(size=(d, 1)))
    return W / np.linalg.norm(W, axis=0)


def test_rank_one_metric_majorises_gram_and_matches_it_on_top_eigenvector(rng):
    W = torch.tensor(digit_like_dictionary(rng, 30, 50))
    G = W.T @ W
    m = rank_one_metric(G)
    M = m.a * torch.eye(50, dtype=G.dtype) + m.c * torch.outer(m.u, m.u)
    assert torch.linalg.eigvalsh(M - G).min() >= -1e-10
    np.testing.assert_allclose(G @ m.u, m.l1 * m.u, atol=1e-10)
    evals = torch.linalg.eigvalsh(G)
    assert m.l1 > 3 * evals[-2]  # the dominant eigenvalue this dictionary is meant to have
    np.testing.assert_allclose(m.a, evals[-2], rtol=1e-5)


@pytest.mark.parametrize("nonneg", [False, True])
def test_metric_prox_fixed_point_satisfies_prox_optimality(rng, nonneg):
    W = torch.tensor(digit_like_dictionary(rng, 20, 40))
    m = rank_one_metric(W.T @ W)
    n, lam = 6, 0.3
    w0 = torch.tensor(rng.normal(size=(n, 40)))
    omega = torch.tensor(rng.normal(size=n))
    alpha = torch.zeros(n, dtype=torch.float64)
    for _ in range(50):  # Newton on a piecewise-linear increasing scalar equation
        wu = w0 @ m.u + omega
        z, alpha = _metric_prox(w0.clone(), omega, wu, alpha, m.u, m.u * m.u, m.a, m.c, lam, nonneg)
    w = w0 + omega[:, None] * m.u
    M = m.a * torch.eye(40, dtype=w.dtype) + m.c * torch.outer(m.u, m.u)
    g = (w - z) @ M  # must lie in lam * subdifferential of ||.||_1 (+ normal cone of z >= 0)
    on = z != 0
    np.testing.assert_allclose(g[on], lam * torch.sign(z[on]), atol=1e-10)
    if nonneg:
        assert z.min() >= 0 and g[~on].max() <= lam + 1e-10
    else:
        assert g[~on].abs().max() <= lam + 1e-10


def test_gram_duality_gap_equals_residual_form(rng):
    d, k, n, lam = 15, 25, 7, 0.2
    W = torch.tensor(random_dictionary(rng, d, k))
    y = torch.tensor(rng.normal(size=(n, d)))
    z = torch.tensor(rng.normal(size=(n, k))) * (torch.rand(n, k, dtype=torch.float64) < 0.3)
    gap, primal = gram_duality_gap(z, z @ (W.T @ W), y @ W, y.pow(2).sum(1), lam)
    np.testing.assert_allclose(gap, lvebm.duality_gap(y, W, z, lam), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(primal, lasso.lasso_objective(y, W, z, lam), rtol=1e-12)


@pytest.mark.parametrize("lam", [0.05, 0.5])
@pytest.mark.parametrize("nonneg", [False, True])
def test_vmfista_matches_sklearn_on_dictionary_with_dominant_eigenvalue(rng, lam, nonneg, update):
    d, k, n = 40, 80, 30
    W = digit_like_dictionary(rng, d, k)
    Y = np.abs(rng.normal(size=(n, d)))
    Z = vm_encode(Y, W, lam, tol=1e-12, max_iter=100_000, nonneg=nonneg)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, lam, positive=nonneg), lam)
    assert np.all((lasso_objective(Y, W, Z, lam) - ref) / ref <= 1e-6)
    if nonneg:
        assert Z.min() >= 0


def test_vmfista_default_tol_certifies_small_suboptimality(rng, update):
    d, k, n, lam = 40, 80, 50, 0.1
    W = digit_like_dictionary(rng, d, k)
    Y = np.abs(rng.normal(size=(n, d)))
    Z = vm_encode(Y, W, lam)  # default rule: objective change or gap, tol 1e-5
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, lam), lam)
    ours = lasso_objective(Y, W, Z, lam)
    assert (ours.mean() - ref.mean()) / ref.mean() <= 1e-4
    # near the optimum the subgradient conditions hold up to the gap's square-root scale
    corr = (Y - Z @ W.T) @ W
    assert np.all(np.abs(corr) <= lam * 1.05)


def test_vmfista_result_record_is_consistent(rng):
    d, k, n, lam = 20, 30, 12, 0.2
    W = torch.tensor(random_dictionary(rng, d, k))
    y = torch.tensor(rng.normal(size=(n, d)))
    res = vmfista_lasso(y @ W, W.T @ W, y.pow(2).sum(1), lam, tol=1e-9, max_iter=10_000)
    assert res.converged and res.n_iter % CHECK_EVERY == 0
    np.testing.assert_allclose(res.objective, lasso.lasso_objective(y, W, res.z, lam), rtol=1e-10)
    capped = vmfista_lasso(y @ W, W.T @ W, y.pow(2).sum(1), lam, tol=1e-15, max_iter=7)
    assert capped.n_iter == 7 and not capped.converged
    assert torch.all(capped.objective > 0)


def test_vmfista_warm_start_at_optimum_stops_at_first_check(rng):
    d, k, n, lam = 20, 30, 10, 0.2
    W = random_dictionary(rng, d, k)
    Y = rng.normal(size=(n, d))
    Z = vm_encode(Y, W, lam, tol=1e-12, max_iter=50_000)
    Wt, y = torch.tensor(W), torch.tensor(Y)
    res = vmfista_lasso(
        y @ Wt, Wt.T @ Wt, y.pow(2).sum(1), lam, tol=1e-8, z0=torch.tensor(Z), max_iter=1000
    )
    assert res.n_iter <= 2 * CHECK_EVERY
    np.testing.assert_allclose(res.objective.numpy(), lasso_objective(Y, W, Z, lam), rtol=1e-10)


def test_vmfista_least_squares_when_lambda_is_zero(rng):
    d, k, n = 30, 10, 5
    W = random_dictionary(rng, d, k)
    Y = rng.normal(size=(n, d))
    Z = vm_encode(Y, W, 0.0, tol=1e-12, max_iter=100_000)
    np.testing.assert_allclose(Z, np.linalg.lstsq(W, Y.T, rcond=None)[0].T, atol=1e-6)


def test_vmfista_chunking_does_not_change_codes(rng, monkeypatch):
    d, k, n, lam = 12, 16, 40, 0.1
    W = random_dictionary(rng, d, k)
    Y = rng.normal(size=(n, d))
    whole = vm_encode(Y, W, lam, tol=1e-12, max_iter=50_000)
    monkeypatch.setattr(lasso, "CHUNK_ELEMENTS", 7 * k)  # 7 rows per chunk
    assert lasso.chunk_rows(k) == 7
    chunked = vm_encode(Y, W, lam, tol=1e-12, max_iter=50_000)
    # BLAS rounds a row's product differently in a 7-row and a 40-row batch; a slowly
    # converging row carries that difference to ~1e-6 in its codes at equal objective
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    np.testing.assert_allclose(
        lasso_objective(Y, W, chunked, lam), lasso_objective(Y, W, whole, lam), rtol=1e-10
    )


def test_vmfista_float32_agrees_with_float64_on_digit_like_dictionary(rng):
    W = digit_like_dictionary(rng, 40, 60)
    Y = np.abs(rng.normal(size=(25, 40)))
    z64 = vm_encode(Y, W, 0.2, tol=1e-12, max_iter=50_000)
    z32 = vm_encode(Y.astype(np.float32), W.astype(np.float32), 0.2)
    assert z32.dtype == np.float32
    o64 = lasso_objective(Y, W, z64, 0.2)
    o32 = lasso_objective(Y, W, z32.astype(np.float64), 0.2)
    np.testing.assert_allclose(o32, o64, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tol": 0.0}, "`tol` must be a finite float > 0"),
        (
            {"method": "omp"},
            "`method` must be one of 'auto', 'vmfista', 'lars', 'cd', 'fista', 'ista'",
        ),
        ({"max_iter": 0}, "`max_iter` must be an integer >= 1"),
    ],
)
def test_sparse_encode_rejects_bad_solver_options(rng, kwargs, match):
    W = random_dictionary(rng, 5, 6)
    with pytest.raises(ValueError, match=match):
        lvebm.sparse_encode(rng.normal(size=(2, 5)), W, 0.1, **kwargs)


@pytest.mark.parametrize("nonneg", [False, True])
def test_compiled_vmfista_update_matches_the_eager_one(monkeypatch, nonneg):
    """LVEBM_COMPILE=always fuses vmfista's torch update; objectives must match eager ones."""
    import lvebm.compiled

    monkeypatch.setenv("LVEBM_NUMBA", "0")  # the torch path (the one a GPU takes)
    rng = np.random.default_rng(0)
    W = np.abs(random_dictionary(rng, 30, 60)).astype(np.float32)  # a dominant eigenvalue
    Y = np.abs(rng.normal(size=(40, 30))).astype(np.float32)
    monkeypatch.setenv("LVEBM_COMPILE", "0")
    eager = vm_encode(Y, W, 0.2, nonneg=nonneg, tol=1e-7)
    monkeypatch.setenv("LVEBM_COMPILE", "always")
    monkeypatch.setattr(lvebm.compiled, "_CACHE", {})
    fused = vm_encode(Y, W, 0.2, nonneg=nonneg, tol=1e-7)
    assert lvebm.compiled._CACHE, "the compiled path was not taken"
    obj_f, obj_e = lasso_objective(Y, W, fused, 0.2), lasso_objective(Y, W, eager, 0.2)
    np.testing.assert_allclose(obj_f, obj_e, rtol=1e-5)


@pytest.mark.skipif(not _numba.available(), reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nonneg", [False, True])
def test_numba_vmfista_kernels_match_the_torch_update(dtype, nonneg):
    """The fused numba iteration (CPU default) and the torch one give the same iterates."""
    rng = np.random.default_rng(3)
    W = torch.from_numpy(np.abs(random_dictionary(rng, 30, 60)).astype(dtype))
    Y = torch.from_numpy(np.abs(rng.normal(size=(50, 30))).astype(dtype))
    b, G, yy = Y @ W, W.T @ W, Y.pow(2).sum(1)
    assert default_fused(b) and not default_fused(b.to(torch.bfloat16))
    runs = [
        vmfista_lasso(b, G, yy, 0.2, nonneg=nonneg, tol=0.0, max_iter=40, fused=fused)
        for fused in (True, False)
    ]
    atol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(runs[0].z.numpy(), runs[1].z.numpy(), atol=atol)
    np.testing.assert_allclose(runs[0].objective, runs[1].objective, rtol=atol)
    if nonneg:
        assert bool((runs[0].z >= 0).all())


@pytest.mark.parametrize("method", ["auto", "vmfista", "fista"])
def test_sparse_encode_reads_tensors_that_require_grad(rng, method):
    W = torch.tensor(random_dictionary(rng, 10, 20), requires_grad=True)
    Y = torch.tensor(rng.normal(size=(30, 10)), requires_grad=True)
    Z = lvebm.sparse_encode(Y, W, 0.1, method=method)
    assert isinstance(Z, torch.Tensor) and not Z.requires_grad
    plain = lvebm.sparse_encode(Y.detach().numpy(), W.detach().numpy(), 0.1, method=method)
    np.testing.assert_allclose(Z.numpy(), plain)


def test_vmfista_float32_default_is_accurate_on_an_overcomplete_random_dictionary(rng, update):
    # 4x overcomplete, coherent atoms: rows cross slow stretches where the objective
    # barely moves between two checks; the default rule must not take one for the optimum
    # (the plain change rule stopped here at 1.8e-4 mean, 5.8e-4 worst row).
    W = random_dictionary(rng, 64, 256)
    Y = rng.normal(size=(50, 64))
    exact = lasso_objective(Y, W, vm_encode(Y, W, 0.1, tol=1e-12, max_iter=100_000), 0.1)
    Z32 = vm_encode(Y.astype(np.float32), W.astype(np.float32), 0.1)
    ours = lasso_objective(Y, W, Z32.astype(np.float64), 0.1)
    assert (ours.mean() - exact.mean()) / exact.mean() <= 1e-4
    assert np.all((ours - exact) / exact <= 1e-3)
