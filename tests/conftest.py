"""Shared fixtures: seeded generators, devices, data paths."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

# Property tests draw the same examples on every run: CI must not depend on luck.
settings.register_profile("deterministic", derandomize=True, print_blob=True)
settings.load_profile("deterministic")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MNIST_PATH = Path(
    os.environ.get(
        "LVEBM_MNIST", Path(__file__).resolve().parents[1] / ".." / "shared/data/mnist-8k.npz"
    )
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


@pytest.fixture
def mnist_path() -> Path:
    if not MNIST_PATH.exists():
        pytest.skip(f"shared MNIST digits not found at {MNIST_PATH}")
    return MNIST_PATH


def random_dictionary(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    """A (d, k) Gaussian dictionary with unit-norm columns."""
    W = rng.normal(size=(d, k))
    return W / np.linalg.norm(W, axis=0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny problems: one torch thread avoids oversubscription on shared CI cores
    (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
