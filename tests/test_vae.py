"""VAE: KL and likelihood against torch.distributions, reparameterised gradients, IWAE."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Normal, kl_divergence

import lvebm
from lvebm.data import load_digits
from lvebm.models.vae import gaussian_kl, log_likelihood, reparameterize


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(7, 5, generator=g, dtype=torch.float64)
    logvar = torch.randn(7, 5, generator=g, dtype=torch.float64)
    ref = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl(mean, logvar), ref, rtol=1e-12, atol=1e-12)


def test_loss_kl_term_is_closed_form_of_its_posterior():
    vae = lvebm.VAE(12, 3, hidden=(8,), seed=0)
    y = torch.rand(6, 12, generator=torch.Generator().manual_seed(1))
    q = vae.encode(y)
    ref = kl_divergence(Normal(q.mean, torch.exp(0.5 * q.logvar)), Normal(0.0, 1.0)).sum(1)
    loss = vae.loss(y, seed=0)
    torch.testing.assert_close(loss.kl, ref.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss.total, loss.reconstruction + vae.config.beta * loss.kl)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_log_likelihood_matches_torch_distributions(likelihood):
    g = torch.Generator().manual_seed(0)
    out = torch.randn(4, 9, generator=g, dtype=torch.float64)
    log_sigma = torch.tensor(-0.3, dtype=torch.float64)
    if likelihood == "bernoulli":
        y = (torch.rand(4, 9, generator=g) > 0.5).double()
        ref = Bernoulli(logits=out).log_prob(y).sum(1)
    else:
        y = torch.randn(4, 9, generator=g, dtype=torch.float64)
        ref = Normal(out, log_sigma.exp()).log_prob(y).sum(1)
    torch.testing.assert_close(log_likelihood(y, out, likelihood, log_sigma), ref)


def test_reparameterised_gradient_matches_finite_differences():
    # with eps fixed, the loss is a deterministic function of (mean, logvar): gradcheck
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(3, 6, generator=g) > 0.5).double()
    W = torch.randn(6, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 2, generator=g, dtype=torch.float64)

    def neg_elbo(mean, logvar):
        z = reparameterize(mean, logvar, eps)
        ll = log_likelihood(y, z @ W.T, "bernoulli", torch.zeros((), dtype=torch.float64))
        return (-ll + gaussian_kl(mean, logvar).sum(1)).sum()

    mean = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    logvar = torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(neg_elbo, (mean, logvar))


def test_reparameterised_gradient_is_unbiased():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = sigma^2 for z ~ N(mu, sigma^2)
    n = 200_000
    mean = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    logvar = torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    per_sample = reparameterize(mean, logvar, eps).pow(2)
    gm, gl = torch.autograd.grad(per_sample.mean(), (mean, logvar))
    # 6-sigma bounds from the per-sample gradient spread (2 z and z eps sigma)
    z = reparameterize(mean, logvar, eps).detach()
    sd_m, sd_l = (2 * z).std() / math.sqrt(n), (z * eps * math.exp(-0.2)).std() / math.sqrt(n)
    assert abs(gm - 2 * 0.7) < 6 * sd_m
    assert abs(gl - math.exp(-0.4)) < 6 * sd_l


def exact_log_px(vae: lvebm.VAE, y: torch.Tensor) -> torch.Tensor:
    """``log p(y) = log int p(y|z) N(z) dz`` by quadrature on a fine grid (1-d latent)."""
    z = torch.linspace(-10, 10, 20001).unsqueeze(1)  # (m, 1)
    with torch.no_grad():
        out = vae.decoder(z)[None].expand(y.shape[0], -1, -1)  # (n, m, d)
        ll = log_likelihood(y[:, None, :].expand_as(out), out, "bernoulli", vae.log_sigma)
    log_prior = -0.5 * (z[:, 0] ** 2 + math.log(2 * math.pi))
    return torch.logsumexp(ll + log_prior, dim=1) + math.log(float(z[1, 0] - z[0, 0]))


def test_iwae_bound_is_tighter_than_elbo_and_approaches_exact_likelihood():
    vae = lvebm.VAE(6, 1, hidden=(8,), seed=3)
    y = (torch.rand(5, 6, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    exact = -exact_log_px(vae, y)
    neg_elbo = -vae.elbo(y, n_samples=20_000, seed=0)
    iwae = vae.nll(y, k=20_000, seed=0)
    assert torch.all(neg_elbo >= exact - 1e-3)  # ELBO is a lower bound
    assert torch.all(iwae <= neg_elbo)
    torch.testing.assert_close(iwae, exact, atol=0.02, rtol=0)


def binarised_digits():
    images, _ = load_digits()
    X = (images.reshape(len(images), -1) > 0.5).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[300:]], X[order[:300]]


def test_trained_vae_beats_pixel_mean_baseline_on_held_out_digits():
    Xtr, Xte = binarised_digits()
    p = Xtr.mean(0).clip(1e-3, 1 - 1e-3)
    baseline = -(Xte * np.log(p) + (1 - Xte) * np.log(1 - p)).sum(1).mean()
    vae = lvebm.VAE(64, 8, hidden=(128,), seed=0)
    vae.fit(Xtr, epochs=15, batch_size=64, seed=0, progress=False)
    neg_elbo = -vae.elbo(Xte, n_samples=5).mean()
    iwae = vae.nll(Xte, k=100).mean()
    assert neg_elbo < baseline - 2.0, (neg_elbo, baseline)
    assert iwae < neg_elbo


def test_save_load_round_trip(tmp_path):
    vae = lvebm.VAE(10, 2, hidden=(6, 4), likelihood="gaussian", beta=0.5, seed=0)
    with torch.no_grad():
        vae.log_sigma.fill_(-0.7)
    y = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    lvebm.save(vae, tmp_path / "v")
    back = lvebm.load(tmp_path / "v")
    assert back.config == vae.config
    np.testing.assert_array_equal(back.encode(y).mean, vae.encode(y).mean)
    np.testing.assert_array_equal(back.elbo(y, seed=1), vae.elbo(y, seed=1))


def test_decode_and_sample_give_probabilities_and_numpy_tensor_round_trip():
    vae = lvebm.VAE(5, 2, hidden=(4,), seed=0)
    s = vae.sample(7, seed=0)
    assert isinstance(s, torch.Tensor) and s.shape == (7, 5)
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    out = vae.decode(np.zeros((3, 2), dtype=np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (3, 5)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: lvebm.VAE(4, 2, likelihood="poisson"), ValueError, "`likelihood`"),
        (lambda: lvebm.VAE(4, 2, beta=-1.0), ValueError, "`beta`"),
        (lambda: lvebm.VAE(4, 0), ValueError, "`n_latent`"),
        (lambda: lvebm.VAE(4, 2, hidden=(0,)), TypeError, "`hidden`"),
        (lambda: lvebm.VAE(4, 2).elbo(np.full((2, 4), 2.0)), ValueError, r"\[0, 1\]"),
        (lambda: lvebm.VAE(4, 2).elbo(np.zeros((2, 5))), ValueError, "n_features"),
        (lambda: lvebm.VAE(4, 2).nll(np.zeros((2, 4)), k=0), ValueError, "`k`"),
        (lambda: lvebm.VAE(4, 2).decode(np.zeros((2, 3))), ValueError, "`z`"),
        (lambda: lvebm.VAE(4, 2).fit(np.zeros((2, 4)), lr=0.0), ValueError, "`lr`"),
        (lambda: lvebm.VAE(4, 2).fit(np.zeros((2, 4)), init="x"), ValueError, "`init`"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cli_train_vae_writes_model_metrics_and_figures(tmp_path):
    from lvebm.cli import main

    out = tmp_path / "run"
    argv = ["train", "vae", "--data", "digits", "--latent", "2", "--beta", "1", "--hidden", "16",
            "--epochs", "1", "--n-test", "200", "--iwae-k", "5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 200 and len(metrics["kl_per_dim"]) == 2
    assert (out / "latent_balls.png").exists() and (out / "latent_grid.png").exists()
    model = lvebm.load(out)
    assert model.config.n_latent == 2
    assert main(["train", "vae", "--data", "digits", "--latent", "0", "--out", str(out)]) == 2


class Crash(Exception):
    """Stands in for a crash at a chosen step (raised from a callback)."""


def test_fit_resumed_after_a_crash_is_bit_identical(tmp_path):
    X = binarised_digits()[1][:150]

    def fit(**kw):
        vae = lvebm.VAE(64, 3, hidden=(16,), seed=0)
        return vae.fit(X, epochs=2, batch_size=32, seed=0, warmup_epochs=1, progress=False, **kw)

    def crash_at_7(state):
        if state.step == 7:  # mid second epoch: lr schedule, KL ramp and noise all in flight
            raise Crash

    ref = fit()
    with pytest.raises(Crash):
        fit(checkpoint_dir=tmp_path, checkpoint_every=1, callback=crash_at_7)
    resumed = fit(checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert resumed.history_ == ref.history_
