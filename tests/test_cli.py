"""The command line: train, encode, errors as one line with exit status 2."""

from __future__ import annotations

import json

import numpy as np

import lvebm
from lvebm.cli import main


def test_train_sparse_coding_writes_model_figure_and_metrics(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 16)).astype(np.float32))
    out = tmp_path / "run"
    args = ["train", "sparse-coding", "--data", str(tmp_path / "x.npy"), "--atoms", "8",
            "--lam", "0.2", "--epochs", "2", "--batch-size", "64", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["atoms"] == 8 and metrics["final_mean_energy"] > 0
    assert metrics["duality_gap_max"] < 1e-2 * metrics["final_mean_energy"]
    assert (out / "atoms.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = lvebm.load(out)
    assert model.dictionary.shape == (16, 8)
    assert (
        main(["encode", str(out), str(tmp_path / "x.npy"), "--out", str(tmp_path / "c.npz")]) == 0
    )
    codes = np.load(tmp_path / "c.npz")["codes"]
    np.testing.assert_allclose(codes, model.encode(np.load(tmp_path / "x.npy")), atol=1e-6)


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    assert main(["train", "sparse-coding", "--data", str(tmp_path / "missing.npy"),
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "missing.npy" in err
    np.save(tmp_path / "x.npy", np.ones((10, 4), dtype=np.float32))
    assert main(["train", "sparse-coding", "--data", str(tmp_path / "x.npy"), "--lam", "-1",
                 "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lam" in err and "must be a finite" in err
    assert main(["encode", str(tmp_path / "nomodel"), str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "c.npz")]) == 2  # fmt: skip
    assert "nomodel: not found" in capsys.readouterr().err


def test_train_nonnegative_sparse_coding_from_random_atoms(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", np.abs(rng.normal(size=(300, 16))).astype(np.float32))
    out = tmp_path / "run"
    args = ["train", "sparse-coding", "--data", str(tmp_path / "x.npy"), "--atoms", "8",
            "--lam", "0.2", "--epochs", "2", "--batch-size", "64", "--init", "random",
            "--nonneg", "--positive-dict", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nonneg"] and metrics["positive_dict"] and metrics["init"] == "random"
    assert metrics["duality_gap_max"] < 1e-2 * metrics["final_mean_energy"]
    assert float(lvebm.load(out).dictionary.min()) >= 0


def test_bench_runs_a_benchmark_script_with_its_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LVEBM_MNIST", str(tmp_path / "absent.npz"))  # the script skips cleanly
    assert main(["bench", "lasso_encode", "--lams", "0.5", "--repeats", "1"]) == 0
    assert capsys.readouterr().out.startswith("skipped: MNIST digits not found")
    assert main(["bench", "lasso_encode", "--no-such-option"]) == 2  # the script's own parser


def test_bench_names_the_available_scripts_when_the_name_is_unknown(capsys):
    assert main(["bench", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nosuch'" in err and "lasso_encode" in err


def test_encode_with_a_vae_writes_the_posterior_mean_and_logvar(tmp_path):
    vae = lvebm.VAE(10, 2, hidden=(6,), likelihood="gaussian", seed=0)
    lvebm.save(vae, tmp_path / "v")
    y = np.random.default_rng(0).normal(size=(7, 10)).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    assert main(["encode", str(tmp_path / "v"), str(tmp_path / "y.npy"),
                 "--out", str(tmp_path / "c.npz")]) == 0  # fmt: skip
    with np.load(tmp_path / "c.npz") as f:  # plain arrays: loads without pickle
        posterior = vae.encode(y)
        np.testing.assert_allclose(f["codes"], posterior.mean, atol=1e-6)
        np.testing.assert_allclose(f["logvar"], posterior.logvar, atol=1e-6)
        assert f["codes"].shape == (7, 2)
