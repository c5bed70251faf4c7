"""Fault tolerance of a real training process: SIGKILL, resume, Ctrl-C, resume again.

The resumed run must end with the same dictionary, bit for bit, as an uninterrupted
run with the same seed, and every checkpoint left behind by the killed process must
load (checkpoints are never half-written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import lvebm
from lvebm.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from lvebm.cli import main

ROOT = Path(__file__).resolve().parents[1]
TOTAL_STEPS = 3 * 40  # epochs x ceil(400 / 10)


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lvebm", "train", "sparse-coding", "--data", str(data),
            "--atoms", "24", "--lam", "0.5", "--epochs", "3", "--batch-size", "10",
            "--checkpoint-every", "3", "--seed", "0", "--out", str(out), *extra]  # fmt: skip


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _wait_for_step(proc: subprocess.Popen, folder: Path, step: int, timeout: float = 60) -> int:
    """Poll until a checkpoint of at least ``step`` exists; return its step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        newest = latest_checkpoint(folder)
        if newest is not None and int(newest.name.split("-")[1]) >= step:
            return int(newest.name.split("-")[1])
        if proc.poll() is not None:
            pytest.fail(f"training ended before step {step}: {proc.communicate()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"no checkpoint of step {step} within {timeout} s")


def _main_single_thread(argv: list[str]) -> int:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(threads)


def _assert_every_checkpoint_loads(folder: Path) -> None:
    found = list_checkpoints(folder)
    assert found
    for path in found:
        ck = load_checkpoint(path)  # verifies both checksums and the format
        assert ck.step == int(path.name.split("-")[1])
        assert torch.isfinite(lvebm.load(path).dictionary).all()


@pytest.mark.slow
def test_sigkill_then_resume_then_ctrl_c_then_resume_is_bit_identical(tmp_path):
    data = tmp_path / "signals.npy"
    np.save(data, np.random.default_rng(0).normal(size=(400, 15)).astype(np.float32))
    ref_out, out = tmp_path / "uninterrupted", tmp_path / "interrupted"
    ckpts = out / "checkpoints"

    # the uninterrupted reference and the last resume run in this process (one thread,
    # like the subprocesses) to save two interpreter start-ups
    assert _main_single_thread(_command(data, ref_out)[3:]) == 0

    proc = _start(_command(data, out))
    killed_after = _wait_for_step(proc, ckpts, 20)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "metrics.json").exists()  # it really died mid-training
    _assert_every_checkpoint_loads(ckpts)
    assert load_checkpoint(ckpts).step < TOTAL_STEPS

    proc = _start(_command(data, out, "--resume"))
    _wait_for_step(proc, ckpts, killed_after + 20)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]  # the lines before are the progress bar's
    assert last.startswith("interrupted: training interrupted after step")
    assert "--resume" in last
    _assert_every_checkpoint_loads(ckpts)
    interrupted_at = load_checkpoint(ckpts).step
    assert killed_after < interrupted_at < TOTAL_STEPS

    assert _main_single_thread(_command(data, out, "--resume")[3:]) == 0
    W_ref = lvebm.load(ref_out).dictionary
    W = lvebm.load(out).dictionary
    assert torch.equal(W, W_ref)
    m_ref = json.loads((ref_out / "metrics.json").read_text())
    m = json.loads((out / "metrics.json").read_text())
    assert m["epoch_mean_energy"] == m_ref["epoch_mean_energy"]
    assert m["dead_atoms_reinitialised"] == m_ref["dead_atoms_reinitialised"]
