"""SparseCoding: planted recovery, unit-norm atoms, decreasing energy, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_dictionary
from reference import lasso_objective

import lvebm
from lvebm.dictionary import OnlineStats, online_update, sgd_update


def planted_data(seed: int, d: int = 20, k: int = 40, n: int = 4000, nnz: int = 3):
    """Signals from 3-sparse combinations of 40 random unit atoms in 20 dimensions."""
    rng = np.random.default_rng(seed)
    W = random_dictionary(rng, d, k)
    Z = np.zeros((n, k))
    for i in range(n):
        idx = rng.choice(k, nnz, replace=False)
        Z[i, idx] = rng.choice([-1, 1], nnz) * rng.uniform(0.5, 1.5, nnz)
    return W, Z @ W.T


def matched_fraction(W_true: np.ndarray, W_learned: np.ndarray, threshold: float = 0.95) -> float:
    """Fraction of true atoms matched by a learned atom with |cosine| > threshold."""
    cos = np.abs(W_true.T @ W_learned)  # (k_true, k_learned), both unit norm
    return float((cos.max(axis=1) > threshold).mean())


def test_recovers_planted_dictionary():
    W_true, Y = planted_data(0)
    model = lvebm.SparseCoding(20, 40, lam=0.2, seed=1)
    model.fit(Y.astype(np.float32), epochs=10, batch_size=256, seed=1, progress=False)
    assert matched_fraction(W_true, model.dictionary.numpy().astype(np.float64)) >= 0.9


def test_sgd_method_also_recovers_planted_dictionary():
    W_true, Y = planted_data(0)
    model = lvebm.SparseCoding(20, 40, lam=0.1, seed=1)
    model.fit(Y.astype(np.float32), epochs=10, batch_size=64, lr=1.0, method="sgd", seed=1,
              progress=False)  # fmt: skip
    assert matched_fraction(W_true, model.dictionary.numpy().astype(np.float64)) >= 0.9


@pytest.mark.parametrize("method", ["online", "sgd"])
def test_columns_have_unit_norm_after_every_step(method):
    _, Y = planted_data(3, n=600)
    norms = []

    def record(state):
        norms.append(torch.linalg.vector_norm(state.model.dictionary, dim=0))

    lvebm.SparseCoding(20, 30, 0.1, seed=0).fit(
        Y.astype(np.float32), epochs=2, batch_size=100, method=method, progress=False,
        callback=record,
    )  # fmt: skip
    assert len(norms) == 12
    for n in norms:
        torch.testing.assert_close(n, torch.ones_like(n), atol=1e-5, rtol=0)


def test_training_lowers_the_energy_of_held_out_data():
    W_true, Y = planted_data(4, n=3000)
    train, test = Y[:2500].astype(np.float32), Y[2500:].astype(np.float32)
    model = lvebm.SparseCoding(20, 40, 0.05, seed=0)
    before = float(model.free_energy(test).mean())
    model.fit(train, epochs=5, progress=False)
    after = float(model.free_energy(test).mean())
    assert after < 0.8 * before  # a random overcomplete dictionary already codes fairly well
    assert model.history_[-1] < model.history_[0]


def test_online_update_decreases_surrogate_objective():
    rng = np.random.default_rng(0)
    W = torch.tensor(random_dictionary(rng, 10, 15))
    Y = torch.tensor(rng.normal(size=(50, 10)))
    Z = torch.tensor(lvebm.sparse_encode(Y.numpy(), W.numpy(), 0.1))
    stats = OnlineStats.zeros(W)

    def surrogate(W_):
        return 0.5 * torch.trace(W_.T @ W_ @ stats.A) - torch.trace(W_.T @ stats.B)

    W_new = online_update(W, Y, Z, stats)
    assert surrogate(W_new) <= surrogate(W) + 1e-12
    W_sgd = sgd_update(W, Y, Z, lr=0.01)
    loss = lambda W_: 0.5 * ((Y - Z @ W_.T) ** 2).sum()  # noqa: E731
    assert loss(W_sgd) < loss(W)


def test_energy_and_free_energy_match_lasso_objective(rng):
    W = random_dictionary(rng, 12, 20)
    Y = rng.normal(size=(7, 12))
    model = lvebm.SparseCoding.from_dictionary(W, 0.2)
    Z = model.encode(Y, tol=1e-10, max_iter=20000)
    np.testing.assert_allclose(model.energy(Y, Z), lasso_objective(Y, W, Z, 0.2), rtol=1e-10)
    np.testing.assert_allclose(model.free_energy(Y, tol=1e-10, max_iter=20000),
                               lasso_objective(Y, W, Z, 0.2), rtol=1e-8)  # fmt: skip
    assert np.all(model.energy(Y, Z) >= 0)


def test_save_load_round_trip_gives_identical_codes(tmp_path, rng):
    W = random_dictionary(rng, 16, 24).astype(np.float32)
    model = lvebm.SparseCoding.from_dictionary(W, 0.15)
    Y = rng.normal(size=(9, 16)).astype(np.float32)
    lvebm.save(model, tmp_path / "m")
    loaded = lvebm.load(tmp_path / "m")
    assert isinstance(loaded, lvebm.SparseCoding) and loaded.lam == 0.15
    np.testing.assert_array_equal(loaded.encode(Y), model.encode(Y))


def test_load_rejects_corrupted_weights(tmp_path, rng):
    model = lvebm.SparseCoding(8, 10, 0.1)
    folder = lvebm.save(model, tmp_path / "m")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(lvebm.CheckpointError, match="checksum"):
        lvebm.load(folder)


def test_dead_atoms_are_replaced_by_worst_residuals_with_unit_norm(rng):
    from lvebm.dictionary import reinit_dead_atoms

    W = torch.tensor(random_dictionary(rng, 10, 12))
    Y = torch.tensor(rng.normal(size=(50, 10)))
    Z = torch.zeros(50, 12, dtype=torch.float64)  # residual = Y
    usage = torch.ones(12, dtype=torch.long)
    usage[[2, 5]] = 0
    W_new, n_new = reinit_dead_atoms(W, Y, Z, usage, generator=torch.Generator().manual_seed(0))
    assert n_new == 2
    assert torch.equal(W_new[:, 0], W[:, 0])  # live atoms untouched
    worst = Y[torch.argmax((Y**2).sum(1))]
    cos = torch.abs(W_new[:, [2, 5]].T @ worst) / torch.linalg.vector_norm(worst)
    assert cos.max() > 0.999  # the worst-reconstructed sample became an atom
    ones = torch.ones(12, dtype=torch.float64)
    torch.testing.assert_close(torch.linalg.vector_norm(W_new, dim=0), ones)


def test_fit_reinitialises_atoms_that_never_fire():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(1000, 10)).astype(np.float32)
    model = lvebm.SparseCoding(10, 12, lam=0.1, seed=0)
    W = model.dictionary.data
    W[:, 4] = 0
    W[0, 4] = 1e-3  # an atom far too small to ever be selected... after normalisation:
    W[:, 4] = -W[:, 5]  # ...make it the exact negative of another, so at most one is used
    model.fit(Y, epochs=3, init="current", progress=False)
    cos = torch.abs(model.dictionary[:, 4] @ model.dictionary[:, 5])
    assert model.n_reinit_ >= 1 or cos < 0.99


def test_fit_is_reproducible_with_a_seed():
    _, Y = planted_data(5, n=500)
    a = lvebm.SparseCoding(20, 16, 0.1, seed=0).fit(
        Y.astype(np.float32), epochs=2, seed=3, progress=False
    )
    b = lvebm.SparseCoding(20, 16, 0.1, seed=0).fit(
        Y.astype(np.float32), epochs=2, seed=3, progress=False
    )
    torch.testing.assert_close(a.dictionary, b.dictionary, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_encode_returns_input_kind(dtype, device):
    model = lvebm.SparseCoding(6, 9, 0.1, device=device, dtype=dtype)
    y = torch.randn(4, 6, dtype=dtype, device=device)
    z = model.encode(y)
    assert isinstance(z, torch.Tensor) and z.dtype == dtype and z.shape == (4, 9)


@pytest.mark.parametrize("method", ["online", "sgd"])
def test_positive_dict_keeps_atoms_nonnegative_and_unit_norm_after_every_step(method, rng):
    W_true = np.abs(random_dictionary(rng, 20, 30))
    Z = np.abs(rng.normal(size=(600, 30))) * (rng.random((600, 30)) < 0.1)
    Y = (Z @ W_true.T).astype(np.float32)
    mins, norms = [], []

    def record(state):
        mins.append(float(state.model.dictionary.min()))
        norms.append(torch.linalg.vector_norm(state.model.dictionary, dim=0))

    model = lvebm.SparseCoding(20, 30, 0.05, seed=0)
    model.fit(Y, epochs=3, batch_size=100, method=method, init="random", nonneg=True,
              positive_dict=True, progress=False, callback=record)  # fmt: skip
    assert len(mins) == 18 and min(mins) >= 0
    for n in norms:
        torch.testing.assert_close(n, torch.ones_like(n), atol=1e-5, rtol=0)
    assert model.history_[-1] < model.history_[0]
    codes = model.encode(Y, nonneg=True)
    assert codes.min() >= 0


def test_random_init_is_seeded_and_positive_dict_makes_it_nonnegative(rng):
    Y = rng.normal(size=(200, 12)).astype(np.float32)
    a = lvebm.SparseCoding(12, 10, 0.1).fit(Y, epochs=1, init="random", seed=4, progress=False)
    b = lvebm.SparseCoding(12, 10, 0.1).fit(Y, epochs=1, init="random", seed=4, progress=False)
    torch.testing.assert_close(a.dictionary, b.dictionary, rtol=0, atol=0)
    c = lvebm.SparseCoding(12, 10, 0.1).fit(Y, epochs=1, init="random", seed=4, nonneg=True,
                                            positive_dict=True, progress=False)  # fmt: skip
    assert float(c.dictionary.min()) >= 0


def test_nonneg_duality_gap_vanishes_at_the_nonneg_optimum(rng):
    W = np.abs(random_dictionary(rng, 20, 30))
    Y = np.abs(rng.normal(size=(6, 20)))
    Z = lvebm.sparse_encode(Y, W, 0.3, nonneg=True, method="fista", tol=1e-13, max_iter=50_000)
    gap = lvebm.duality_gap(Y, W, Z, 0.3, nonneg=True)
    assert gap.max() < 1e-9 * lasso_objective(Y, W, Z, 0.3).min()
    assert lvebm.duality_gap(Y, W, 0.5 * Z, 0.3, nonneg=True).min() > 1e-6
    with pytest.raises(lvebm.LvebmValueError, match="negative entries"):
        lvebm.duality_gap(Y, W, -Z - 1, 0.3, nonneg=True)


def test_atom_extent_counts_effective_pixels_and_positive_grids_put_zero_at_black():
    from lvebm.diagnostics import atom_extent
    from lvebm.plotting import tile_grid

    W = np.zeros((16, 3))
    W[:, 0] = 0.25  # flat: 16 pixels
    W[5, 1] = -1.0  # one pixel
    W[[2, 3], 2] = [0.6, 0.8]
    np.testing.assert_allclose(atom_extent(W), [16.0, 1.0, 1.0 / (0.6**4 + 0.8**4)])
    grid = tile_grid(np.abs(W).T.reshape(3, 4, 4), pad=1)
    assert grid.min() == 0.0 and grid.max() == 1.0  # non-negative atoms: zero is black
    assert tile_grid(W.T.reshape(3, 4, 4))[0, 0] == 0.5  # signed atoms: zero is mid-grey
