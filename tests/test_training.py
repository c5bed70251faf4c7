"""The fit loop: exact resume from any step, divergence stop, Ctrl-C, atomic checkpoints."""

from __future__ import annotations

import os
import re
import signal

import numpy as np
import pytest
import torch

import lvebm
from lvebm import checkpoint as ckpt
from lvebm.training import run_epochs


class Crash(Exception):
    """Stands in for a crash at a chosen step (raised from a callback)."""


def _crash_at(step):
    def callback(state):
        if state.step == step:
            raise Crash

    return callback


@pytest.fixture
def signals():
    rng = np.random.default_rng(3)
    return rng.normal(size=(150, 12)).astype(np.float32)


def _fit_sc(X, method, **kw):
    # lam large enough that some atoms die and get re-initialised from the generator
    model = lvebm.SparseCoding(12, 20, 3.0, seed=0)
    return model.fit(X, epochs=3, batch_size=32, seed=1, method=method, lr=0.5,
                     progress=False, **kw)  # fmt: skip


@pytest.mark.parametrize("method", ["online", "sgd"])
def test_sparse_coding_resumed_from_any_step_is_bit_identical(signals, tmp_path, method):
    ref = _fit_sc(signals, method)
    assert ref.n_reinit_ > 0  # the generator-driven re-initialisation is exercised
    for crash in (4, 5, 9, 14):  # mid-epoch, last batch of an epoch, first of the next
        folder = tmp_path / f"{method}-{crash}"
        with pytest.raises(Crash):
            _fit_sc(signals, method, checkpoint_dir=folder, checkpoint_every=1,
                    callback=_crash_at(crash))  # fmt: skip
        assert ckpt.load_checkpoint(folder).step == crash - 1
        resumed = _fit_sc(signals, method, checkpoint_dir=folder, resume=True)
        assert torch.equal(resumed.dictionary, ref.dictionary)
        assert resumed.history_ == ref.history_
        assert resumed.n_reinit_ == ref.n_reinit_


class _Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 1)
        self.register_buffer("seen", torch.zeros(()))


def _fit_regression(tmp, *, crash=None, resume=False, epochs=3, every=3):
    torch.manual_seed(0)
    model = _Regression()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    X = torch.linspace(-1, 1, 70 * 5).reshape(70, 5)
    y = X @ torch.arange(1.0, 6.0)

    def step(idx):
        noise = 0.01 * torch.randn(len(idx))  # draws from the global RNG: must resume too
        loss = (model.lin(X[idx]).squeeze(1) - y[idx] - noise).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.seen += len(idx)
        return loss.item()

    callback = None if crash is None else _crash_at(crash)
    hist = run_epochs(model, torch.arange(70), step, epochs=epochs, batch_size=16, seed=2,
                      progress=False, optimizer=opt, checkpoint_dir=tmp, checkpoint_every=every,
                      resume=resume, callback=callback)  # fmt: skip
    return model, opt, hist


def test_run_epochs_resume_restores_optimizer_buffers_and_global_rng(tmp_path):
    ref, ref_opt, ref_hist = _fit_regression(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit_regression(tmp_path / "run", crash=8)
    model, opt, hist = _fit_regression(tmp_path / "run", resume=True)
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert float(model.seen) == 3 * 70
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"],
                       ref_opt.state_dict()["state"][0]["exp_avg"])  # fmt: skip
    assert hist == ref_hist


def test_resume_with_more_epochs_continues_a_finished_run(tmp_path):
    ref, _, ref_hist = _fit_regression(tmp_path / "ref", epochs=4)
    _fit_regression(tmp_path / "run", epochs=2)
    model, _, hist = _fit_regression(tmp_path / "run", epochs=4, resume=True)
    assert hist == ref_hist
    assert torch.equal(model.lin.weight, ref.lin.weight)


def test_divergence_names_step_and_keeps_last_good_checkpoint(tmp_path):
    model = torch.nn.Linear(2, 1)

    def step(idx):
        if len(model.weight) and int(idx.max()) >= 0 and step.calls == 6:
            with torch.no_grad():
                model.weight.fill_(float("inf"))
        step.calls += 1
        return 1.0

    step.calls = 0
    with pytest.raises(lvebm.DivergenceError, match=r"at step 7: parameter `weight`.*lr") as e:
        run_epochs(model, torch.arange(40), step, epochs=2, batch_size=4, seed=0,
                   progress=False, checkpoint_dir=tmp_path, checkpoint_every=5)  # fmt: skip
    assert e.value.step == 7
    assert e.value.checkpoint == tmp_path / "step-000000005"
    assert str(e.value.checkpoint) in str(e.value)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)][-1] == "step-000000005"
    good = ckpt.load_checkpoint(tmp_path)
    assert torch.isfinite(good.weights["weight"]).all()


def test_nan_loss_is_divergence(tmp_path):
    model = torch.nn.Linear(2, 1)
    losses = iter([1.0, 0.5, float("nan")])
    with pytest.raises(lvebm.DivergenceError, match=r"at step 3: the loss is nan"):
        run_epochs(model, torch.arange(12), lambda idx: next(losses), epochs=1, batch_size=4,
                   seed=0, progress=False)  # fmt: skip


def test_first_ctrl_c_finishes_the_step_saves_and_raises(tmp_path, signals):
    ref = _fit_sc(signals, "online")

    def press_ctrl_c(state):
        if state.step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(lvebm.TrainingInterrupted, match="after step 6") as e:
        _fit_sc(signals, "online", checkpoint_dir=tmp_path, callback=press_ctrl_c)
    assert isinstance(e.value, KeyboardInterrupt)
    assert e.value.checkpoint == tmp_path / "step-000000006"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = _fit_sc(signals, "online", checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.dictionary, ref.dictionary)


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, signals):
    model = lvebm.SparseCoding(12, 20, 0.6, seed=0)
    kw = dict(step=1, epoch=0, batch=1, history=[], meta={}, state={"x": torch.ones(3)})
    first = ckpt.save_checkpoint(tmp_path, model, **kw)

    def torn_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.os, "rename", torn_rename)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(tmp_path, model, **{**kw, "step": 2})
    assert ckpt.list_checkpoints(tmp_path) == [first]
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp folder left
    assert torch.equal(ckpt.load_checkpoint(tmp_path).state["x"], torch.ones(3))


def test_checkpoint_state_tree_round_trips_exactly(tmp_path):
    model = torch.nn.Linear(2, 2)
    state = {
        "ints": {0: torch.arange(3), 7: (1.5, None, "s")},
        "np": np.random.RandomState(5).get_state(),
        "nested": [{"__odd": True}, [2, 3.25, float("inf")]],
    }
    saved = ckpt.save_checkpoint(tmp_path, model, step=3, epoch=0, batch=3, history=[0.1],
                                 meta={}, state=state)  # fmt: skip
    back = ckpt.load_checkpoint(saved).state
    assert torch.equal(back["ints"][0], torch.arange(3))
    assert back["ints"][7] == (1.5, None, "s")
    assert back["np"][0] == "MT19937" and back["np"][1].dtype == np.uint32
    assert np.array_equal(back["np"][1], state["np"][1]) and back["np"][2:] == state["np"][2:]
    assert back["nested"] == [{"__odd": True}, [2, 3.25, float("inf")]]


def test_checkpoints_are_pruned_to_keep_and_each_is_a_loadable_model(tmp_path, signals):
    fitted = _fit_sc(signals, "online", checkpoint_dir=tmp_path, checkpoint_every=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-000000014", "step-000000015"]  # 3 epochs x 5 batches
    loaded = lvebm.load(tmp_path / names[-1])
    assert torch.equal(loaded.dictionary, fitted.dictionary)


def test_cli_divergence_is_one_line_naming_step_and_last_good_checkpoint(tmp_path, capsys):
    from lvebm.cli import main

    X = np.random.default_rng(0).normal(size=(40, 15)).astype(np.float32)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    X[int(order[21])] = 1e19  # finite, but its energy overflows float32 in batch 6 (21 // 4 + 1)
    np.save(tmp_path / "x.npy", X)
    code = main(["train", "sparse-coding", "--data", str(tmp_path / "x.npy"), "--atoms", "4",
                 "--batch-size", "4", "--epochs", "2", "--checkpoint-every", "2", "--seed", "0",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    kept = tmp_path / "out" / "checkpoints" / "step-000000004"
    assert code == 2
    assert re.match(r"error: training diverged at step 6: the loss is (inf|nan)\..*lr", err)
    assert f"last good checkpoint is kept at {kept}" in err
    assert ckpt.latest_checkpoint(tmp_path / "out" / "checkpoints") == kept
    assert torch.isfinite(lvebm.load(kept).dictionary).all()


def _lista(X):
    D = np.random.default_rng(1).normal(size=(12, 16)).astype(np.float32)
    return lvebm.LISTA(D / np.linalg.norm(D, axis=0), 0.2, steps=2)


def _psd(X):
    return lvebm.PSD(12, 16, 0.2, seed=0)


@pytest.mark.parametrize("build", [_lista, _psd], ids=["lista", "psd"])
def test_lista_and_psd_resume_bit_identical(signals, tmp_path, build):
    def fit(**kw):
        return build(signals).fit(signals, epochs=2, batch_size=32, lr=1e-2, seed=1,
                                  progress=False, **kw)  # fmt: skip

    ref = fit()
    with pytest.raises(Crash):
        fit(checkpoint_dir=tmp_path, checkpoint_every=1, callback=_crash_at(7))
    resumed = fit(checkpoint_dir=tmp_path, resume=True)
    for (name, a), b in zip(resumed.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed.history_ == ref.history_


def test_resume_from_an_older_checkpoint_discards_the_newer_ones(tmp_path):
    ref, _, ref_hist = _fit_regression(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit_regression(tmp_path / "run", crash=8)
    older, newer = ckpt.list_checkpoints(tmp_path / "run")
    assert (older.name, newer.name) == ("step-000000003", "step-000000006")
    with pytest.warns(UserWarning, match="removed 1 checkpoint.*resuming from step 3"):
        model, _, hist = _fit_regression(tmp_path / "run", resume=older)
    assert hist == ref_hist and torch.equal(model.lin.weight, ref.lin.weight)


def test_fresh_start_in_a_used_folder_removes_the_old_run(tmp_path):
    _fit_regression(tmp_path, epochs=1, every=2)
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000000005"
    with pytest.warns(UserWarning, match="removed 2 checkpoint.*a fresh start"):
        with pytest.raises(Crash):
            _fit_regression(tmp_path, crash=2, every=1)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-000000001"]


def test_cli_warnings_are_one_line(tmp_path, capsys):
    from lvebm.cli import main

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32))
    code = main(["train", "sparse-coding", "--data", str(tmp_path / "x.npy"), "--atoms", "3",
                 "--epochs", "1", "--out", str(tmp_path / "out"), "--resume"])  # fmt: skip
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert code == 0
    assert (
        f"warning: no checkpoint in {tmp_path / 'out' / 'checkpoints'}; training from the start."
        in lines
    )


def test_resume_skips_a_corrupted_newest_checkpoint(tmp_path):
    ref, _, ref_hist = _fit_regression(tmp_path / "ref")
    with pytest.raises(Crash):
        _fit_regression(tmp_path / "run", crash=8)
    newest = ckpt.latest_checkpoint(tmp_path / "run")
    (newest / "state.safetensors").write_bytes(b"rotten")
    with pytest.warns(UserWarning) as caught:
        model, _, hist = _fit_regression(tmp_path / "run", resume=True)
    messages = [str(w.message) for w in caught]
    assert re.match(r"skipping unreadable checkpoint: .*step-000000006.*checksum", messages[0])
    assert messages[1].startswith("removed 1 checkpoint(s) newer than step 3")
    assert hist == ref_hist and torch.equal(model.lin.weight, ref.lin.weight)


def test_conv_sparse_coding_resume_bit_identical(tmp_path):
    images = np.random.default_rng(0).normal(size=(12, 1, 12, 12)).astype(np.float32)

    def fit(**kw):
        model = lvebm.ConvSparseCoding(3, 5, 1, 0.3, seed=0)
        return model.fit(images, epochs=2, batch_size=4, max_iter=20, progress=False, **kw)

    ref = fit()
    with pytest.raises(Crash):
        fit(checkpoint_dir=tmp_path, checkpoint_every=1, callback=_crash_at(4))
    resumed = fit(checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(resumed.kernels, ref.kernels)
    assert resumed.history_ == ref.history_
