"""The per-row lasso solvers: coordinate descent with a Newton finish (lvebm.cd_lasso),
the homotopy (lvebm.lars_lasso), and "auto" dispatch."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from conftest import random_dictionary
from reference import lasso_objective, sklearn_lasso
from test_fast_lasso import digit_like_dictionary

import lvebm
from lvebm import _numba, cd_lasso, lars_lasso, lasso
from lvebm._checks import LvebmValueError

pytestmark = pytest.mark.skipif(not _numba.available(), reason="numba is not installed")

cd_encode = functools.partial(lvebm.sparse_encode, method="cd")
#: The per-row methods: both certify every row by the duality gap.
PER_ROW = ["cd", "lars"]


@pytest.mark.parametrize("method", PER_ROW)
@pytest.mark.parametrize("lam", [0.05, 0.5])
@pytest.mark.parametrize("nonneg", [False, True])
def test_matches_sklearn_on_dictionary_with_dominant_eigenvalue(rng, method, lam, nonneg):
    W = digit_like_dictionary(rng, 40, 80)
    Y = np.abs(rng.normal(size=(30, 40)))
    Z = lvebm.sparse_encode(Y, W, lam, nonneg=nonneg, method=method)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, lam, positive=nonneg), lam)
    assert np.all((lasso_objective(Y, W, Z, lam) - ref) / ref <= 1e-8)
    if nonneg:
        assert Z.min() >= 0


@pytest.mark.parametrize("method", PER_ROW)
@pytest.mark.parametrize("lam", [0.002, 0.1])
def test_matches_sklearn_on_overcomplete_dictionary(rng, method, lam):
    # at lam = 0.002 supports reach d = 20 atoms of 60: the Newton systems turn singular
    # and rows finish by sweeps alone (the homotopy stops at d active atoms)
    W = random_dictionary(rng, 20, 60)
    Y = rng.normal(size=(25, 20))
    Z = lvebm.sparse_encode(Y, W, lam, max_iter=20_000, method=method)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, lam), lam)
    assert np.all((lasso_objective(Y, W, Z, lam) - ref) / ref <= 1e-6)


@pytest.mark.parametrize("method", PER_ROW)
def test_least_squares_when_lambda_is_zero(rng, method):
    W = random_dictionary(rng, 30, 10)
    Y = rng.normal(size=(5, 30))
    Z = lvebm.sparse_encode(Y, W, 0.0, method=method)
    np.testing.assert_allclose(Z, np.linalg.lstsq(W, Y.T, rcond=None)[0].T, atol=1e-8)


@pytest.mark.parametrize("method", PER_ROW)
def test_handles_duplicate_and_zero_atoms(rng, method):
    W = random_dictionary(rng, 15, 12)
    W[:, 5] = W[:, 4]  # G_SS singular whenever both are active
    W[:, 7] = 0.0  # an atom that can never be used
    Y = rng.normal(size=(20, 15))
    Z = lvebm.sparse_encode(Y, W, 0.05, method=method)
    assert np.all(Z[:, 7] == 0)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, 0.05), 0.05)
    assert np.all((lasso_objective(Y, W, Z, 0.05) - ref) / ref <= 1e-6)


@pytest.mark.parametrize("method", PER_ROW)
def test_float32_default_is_certified_by_the_duality_gap(rng, method):
    W = digit_like_dictionary(rng, 60, 120)
    Y = np.abs(rng.normal(size=(40, 60)))
    Z32 = lvebm.sparse_encode(Y.astype(np.float32), W.astype(np.float32), 0.3, method=method)
    assert Z32.dtype == np.float32
    ours = lasso_objective(Y, W, Z32.astype(np.float64), 0.3)
    gap = lvebm.duality_gap(Y, W, Z32.astype(np.float64), 0.3)
    allowance = 10 * np.finfo(np.float32).eps * (Y**2).sum(1)
    assert np.all(gap <= 1e-5 * ours + 2 * allowance)


@pytest.mark.parametrize("method", PER_ROW)
def test_float32_default_on_a_coherent_overcomplete_dictionary(rng, method):
    # supports near d = 64: some rows leave CD unfinished and end by vmfista, whose
    # float32 contract (test_fast_lasso) is the bound here
    W = random_dictionary(rng, 64, 256)
    Y = rng.normal(size=(50, 64))
    exact = lasso_objective(Y, W, cd_encode(Y, W, 0.1), 0.1)
    Z32 = lvebm.sparse_encode(Y.astype(np.float32), W.astype(np.float32), 0.1, method=method)
    ours = lasso_objective(Y, W, Z32, 0.1)
    assert (ours.mean() - exact.mean()) / exact.mean() <= 1e-4
    assert np.all((ours - exact) / exact <= 1e-3)


def test_cd_result_record_and_warm_start(rng):
    W = torch.tensor(random_dictionary(rng, 20, 30))
    y = torch.tensor(rng.normal(size=(12, 20)))
    res = lasso.solve_lasso(y, W, 0.2, method="cd", tol=1e-12)
    assert res.converged
    np.testing.assert_allclose(res.objective, lasso.lasso_objective(y, W, res.z, 0.2), rtol=1e-10)
    # warm start at the optimum: every row passes the gap test before any sweep
    z, rounds, _ = cd_lasso.cd_lasso(
        y @ W, W.T @ W, y.pow(2).sum(1), 0.2, tol=1e-8, z0=res.z
    )  # fmt: skip
    assert torch.all(rounds == 0)
    torch.testing.assert_close(z, res.z)
    capped = lasso.solve_lasso(y, W, 0.2, method="cd", tol=1e-15, max_iter=1)
    assert not capped.converged


def test_cd_threads_do_not_change_codes(rng):
    W = random_dictionary(rng, 16, 40)
    Y = rng.normal(size=(64, 16))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = cd_encode(Y, W, 0.1)
        torch.set_num_threads(2)
        two = cd_encode(Y, W, 0.1)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(one, two)


def test_prefer_cd_crossover():
    # measured on 256 digit atoms: CD 1.5x faster at support 34, 3-4x slower at 101
    assert cd_lasso.prefer_cd(34, 256)
    assert not cd_lasso.prefer_cd(101, 256)
    assert cd_lasso.prefer_cd(5, 1024) and not cd_lasso.prefer_cd(500, 1024)


@pytest.mark.parametrize("warm", [False, True])
def test_auto_picks_by_support_and_solves_either_way(rng, monkeypatch, warm):
    # without z0 the sample runs the homotopy, with z0 CD (which uses the warm start)
    W = digit_like_dictionary(rng, 40, 80)
    Y = np.abs(rng.normal(size=(100, 40)))  # more rows than the auto sample
    z0 = np.zeros((100, 80)) if warm else None
    sample, module, rule = ("cd", cd_lasso, "prefer_cd") if warm else ("lars", lars_lasso,
                                                                     "prefer_lars")  # fmt: skip
    chosen = []
    real = lasso.solve_lasso

    def spy(*args, **kwargs):
        chosen.append(kwargs["method"])
        return real(*args, **kwargs)

    monkeypatch.setattr(lasso, "solve_lasso", spy)
    for decision in (True, False):
        chosen.clear()
        monkeypatch.setattr(module, rule, lambda s, k, d=decision: d)
        Z = lvebm.sparse_encode(Y, W, 0.1, z0=z0)
        assert chosen == [sample, sample if decision else "vmfista"]
        ref = lasso_objective(Y, W, sklearn_lasso(Y, W, 0.1), 0.1)
        assert np.all((lasso_objective(Y, W, Z, 0.1) - ref) / ref <= 1e-6)


def test_without_numba_auto_uses_vmfista_and_per_row_methods_are_refused(rng, monkeypatch):
    monkeypatch.setenv("LVEBM_NUMBA", "0")
    W = random_dictionary(rng, 10, 20)
    Y = rng.normal(size=(4, 10))
    Z = lvebm.sparse_encode(Y, W, 0.1)
    ref = lasso_objective(Y, W, sklearn_lasso(Y, W, 0.1), 0.1)
    assert np.all((lasso_objective(Y, W, Z, 0.1) - ref) / ref <= 1e-6)
    for method in PER_ROW:
        with pytest.raises(LvebmValueError, match=f'method "{method}" runs on the CPU and needs'):
            lvebm.sparse_encode(Y, W, 0.1, method=method)


def _gram(y: torch.Tensor, W: torch.Tensor):
    return y @ W, W.T @ W, y.pow(2).sum(1)


def test_lars_path_end_is_exact_without_cd_rounds(rng):
    # generic data: the path lands on the optimum, which the gap rule accepts at once
    W = torch.tensor(random_dictionary(rng, 30, 50))
    y = torch.tensor(rng.normal(size=(40, 30)))
    z, steps, rounds, objective = lars_lasso.lars_lasso(*_gram(y, W), 0.1, tol=1e-12)
    assert torch.all(steps > 0) and torch.all(rounds == 0)
    ref = lasso_objective(y.numpy(), W.numpy(), sklearn_lasso(y.numpy(), W.numpy(), 0.1), 0.1)
    np.testing.assert_allclose(objective.numpy(), ref, rtol=1e-10)
    # the support it ends on has every correlation at +-lam (the lasso's optimality)
    c = (y @ W - z @ (W.T @ W)).numpy()
    on = z.numpy() != 0
    np.testing.assert_allclose(np.abs(c[on]), 0.1, rtol=1e-8)
    assert np.all(np.sign(c[on]) == np.sign(z.numpy()[on]))


def test_lars_zero_codes_at_and_above_lambda_max(rng):
    W = torch.tensor(random_dictionary(rng, 10, 15))
    y = torch.tensor(rng.normal(size=(6, 10)))
    lam_max = float((y @ W).abs().amax())
    z, steps, rounds, _ = lars_lasso.lars_lasso(*_gram(y, W), lam_max)
    assert torch.all(z == 0) and torch.all(steps == 0) and torch.all(rounds == 0)


def test_lars_cut_short_rows_are_finished_by_cd(rng):
    # a step cap of 4 k and at most 3 active atoms: rows needing more leave the path
    # early (-1) and their CD rounds still reach the optimum
    W = torch.tensor(random_dictionary(rng, 30, 20))
    y = torch.tensor(rng.normal(size=(10, 30)))
    z, steps, rounds, objective = lars_lasso.lars_lasso(
        *_gram(y, W), 0.05, tol=1e-12, max_active=3
    )  # fmt: skip
    assert torch.any(steps < 0) and torch.all(rounds >= 0)
    ref = lasso_objective(y.numpy(), W.numpy(), sklearn_lasso(y.numpy(), W.numpy(), 0.05), 0.05)
    np.testing.assert_allclose(objective.numpy(), ref, rtol=1e-9)


def test_lars_crossover():
    # measured on 256 digit atoms: the homotopy 2x faster than vmfista at support 34,
    # 2x slower at 101
    assert lars_lasso.prefer_lars(34, 256)
    assert not lars_lasso.prefer_lars(101, 256)
