"""Property-based tests (hypothesis) over random problems, float64.

* shrink is the proximal operator of the L1 norm (optimality of each coordinate, and
  no perturbation does better);
* FISTA's codes satisfy the lasso sub-gradient (KKT) conditions;
* energies (sparse coding, PSD, LISTA, latent-variable EBM) are finite and non-negative,
  and the sparse-coding free energy lies below ``0.5||y||^2``;
* encoding is invariant to the order of the samples and to splitting the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import lvebm

FAST = settings(max_examples=25, deadline=None)
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
seeds = st.integers(0, 2**32 - 1)


def _problem(seed: int, d: int, k: int, n: int):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(d, k))
    W /= np.linalg.norm(W, axis=0)
    return W, rng.normal(size=(n, d))


@FAST
@given(v=arrays(np.float64, st.integers(1, 20), elements=finite), theta=st.floats(0, 100))
def test_shrink_is_the_prox_of_l1(v, theta):
    u = lvebm.shrink(v, theta)
    # sub-gradient optimality of 0.5(u - v)^2 + theta|u| in every coordinate
    on = u != 0
    assert np.allclose((v - u)[on], theta * np.sign(u[on]), atol=1e-9 * (1 + np.abs(v[on])))
    assert np.all(np.abs(v[~on]) <= theta * (1 + 1e-12))

    def objective(x):
        return 0.5 * np.sum((x - v) ** 2) + theta * np.sum(np.abs(x))

    rng = np.random.default_rng(0)
    for _ in range(5):
        assert objective(u) <= objective(u + rng.normal(scale=0.1, size=u.shape)) + 1e-9


@FAST
@given(seed=seeds, d=st.integers(2, 12), ratio=st.sampled_from([0.5, 1.0, 2.0]),
       n=st.integers(1, 6), lam=st.floats(0.01, 2.0))  # fmt: skip
def test_fista_codes_satisfy_lasso_kkt_conditions(seed, d, ratio, n, lam):
    W, Y = _problem(seed, d, max(1, int(ratio * d)), n)
    Z = lvebm.sparse_encode(Y, W, lam, method="fista", tol=1e-14, max_iter=50_000)
    G = (Y - Z @ W.T) @ W  # (n, k): W^T (y - W z) per sample, must lie in lam * d|z|
    on = Z != 0
    assert np.all(np.abs(G[on] - lam * np.sign(Z[on])) <= 1e-6)
    assert np.all(np.abs(G[~on]) <= lam + 1e-6)


@FAST
@given(seed=seeds, d=st.integers(1, 10), k=st.integers(1, 15), n=st.integers(1, 8),
       lam=st.floats(0, 10), scale=st.floats(1e-3, 1e3))  # fmt: skip
def test_energies_are_finite_and_non_negative(seed, d, k, n, lam, scale):
    rng = np.random.default_rng(seed)
    model = lvebm.SparseCoding(d, k, lam, seed=seed % 1000, dtype=torch.float64)
    Y = scale * rng.normal(size=(n, d))
    Z = scale * rng.normal(size=(n, k)) * (rng.random(size=(n, k)) < 0.5)
    E = model.energy(Y, Z)
    assert E.shape == (n,) and np.all(np.isfinite(E)) and np.all(E >= 0)
    F = model.free_energy(Y, max_iter=200)
    assert np.all(np.isfinite(F)) and np.all(F >= 0)
    assert np.all(F <= 0.5 * np.sum(Y**2, axis=1) * (1 + 1e-9) + 1e-12)  # z = 0 is feasible


@FAST
@given(seed=seeds, d=st.integers(2, 10), k=st.integers(2, 16), n=st.integers(2, 12),
       lam=st.floats(0.05, 1.0), cut=st.integers(1, 11))  # fmt: skip
def test_encode_is_invariant_to_batch_order_and_splitting(seed, d, k, n, lam, cut):
    W, Y = _problem(seed, d, k, n)
    perm = np.random.default_rng(seed + 1).permutation(n)
    cut = min(cut, n - 1)
    # "fista"'s rule pins the codes; vmfista's pins the objective (codes only to its root).
    kw = dict(method="fista", tol=1e-13, max_iter=50_000)
    Z = lvebm.sparse_encode(Y, W, lam, **kw)
    Z_perm = lvebm.sparse_encode(Y[perm], W, lam, **kw)
    Z_split = np.concatenate([lvebm.sparse_encode(Y[:cut], W, lam, **kw),
                              lvebm.sparse_encode(Y[cut:], W, lam, **kw)])  # fmt: skip
    np.testing.assert_allclose(Z_perm, Z[perm], atol=1e-7)
    np.testing.assert_allclose(Z_split, Z, atol=1e-7)


def _other_energy(kind: str, rng: np.random.Generator, d: int, k: int, n: int, lam: float,
                  scale: float) -> np.ndarray:  # fmt: skip
    """The energy of a random ``kind`` model on random finite (scaled) data and codes."""
    Y = (scale * rng.normal(size=(n, d))).astype(np.float32)
    Z = (scale * rng.normal(size=(n, k))).astype(np.float32)
    if kind == "psd":
        return lvebm.PSD(d, k, lam, alpha=1.0, seed=0).energy(Y, Z)
    if kind == "lista":
        W = rng.normal(size=(d, k)).astype(np.float32)
        return lvebm.LISTA(W / np.linalg.norm(W, axis=0), lam, steps=2).energy(Y, Z)
    X = rng.normal(size=(n, 1)).astype(np.float32)
    return lvebm.LatentEBM.mlp(1, d, k, hidden=(4,), lam=lam, seed=0).energy(X, Y, Z)


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(["psd", "lista", "latent_ebm"]), seed=seeds, d=st.integers(1, 8),
       k=st.integers(1, 8), n=st.integers(1, 6), lam=st.floats(0, 10),
       scale=st.floats(1e-3, 1e2))  # fmt: skip
def test_other_models_energies_are_finite_and_non_negative(kind, seed, d, k, n, lam, scale):
    E = _other_energy(kind, np.random.default_rng(seed), d, k, n, lam, scale)
    assert E.shape == (n,) and np.all(np.isfinite(E)) and np.all(E >= 0)
