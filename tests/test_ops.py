"""shrink is the proximal operator of the L1 norm; column normalisation."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

import lvebm
from lvebm.ops import normalize_columns

floats = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(v=floats, theta=st.floats(0, 5, allow_nan=False))
def test_shrink_is_prox_of_l1(v, theta):
    res = minimize_scalar(
        lambda u: 0.5 * (u - v) ** 2 + theta * abs(u),
        bounds=(-20, 20),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert abs(float(lvebm.shrink(np.array([v]), theta)[0]) - res.x) < 1e-6


def test_shrink_known_values_and_properties():
    x = np.array([-3.0, -0.5, 0.0, 0.2, 2.0])
    np.testing.assert_array_equal(lvebm.shrink(x, 1.0), [-2.0, 0.0, 0.0, 0.0, 1.0])
    out = lvebm.shrink(x, 0.7)
    assert np.all(np.abs(out) <= np.abs(x))  # never grows
    assert np.all(out * x >= 0)  # never flips sign
    np.testing.assert_array_equal(lvebm.shrink(x, 0.0), x)


def test_nonneg_shrink_clamps_below_zero():
    np.testing.assert_array_equal(lvebm.nonneg_shrink(np.array([-1.0, 0.5, 3.0]), 1.0), [0, 0, 2.0])


def test_normalize_columns_gives_unit_norms():
    W = torch.randn(7, 11, dtype=torch.float64) * 5
    norms = torch.linalg.vector_norm(normalize_columns(W), dim=0)
    torch.testing.assert_close(norms, torch.ones(11, dtype=torch.float64))
