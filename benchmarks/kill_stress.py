"""Kill `lvebm train sparse-coding` with SIGKILL at random moments, resume it each time.

Checks after every kill that each complete checkpoint loads (checksums, format), and at
the end that the final dictionary equals an uninterrupted run's bit for bit. Prints one
JSON line. Usage::

    OMP_NUM_THREADS=1 python benchmarks/kill_stress.py [--kills 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import lvebm
from lvebm.checkpoint import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lvebm", "train", "sparse-coding", "--data", str(data),
            "--atoms", "24", "--lam", "0.5", "--epochs", "3", "--batch-size", "10",
            "--checkpoint-every", "1", "--seed", "0", "--out", str(out), *extra]  # fmt: skip


def _newest_step(folder: Path) -> int:
    found = list_checkpoints(folder)
    return int(found[-1].name[5:]) if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        data = tmp / "x.npy"
        np.save(data, np.random.default_rng(0).normal(size=(400, 15)).astype(np.float32))
        subprocess.run(_command(data, tmp / "ref"), env=env, capture_output=True, check=True)
        out, ckpts = tmp / "run", tmp / "run" / "checkpoints"
        kills = checked = mid_write = 0
        while kills < args.kills:
            before = _newest_step(ckpts)
            extra = ["--resume"] if kills else []
            quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            proc = subprocess.Popen(_command(data, out, *extra), env=env, **quiet)
            while proc.poll() is None and _newest_step(ckpts) <= before:
                time.sleep(0.002)  # wait until this process has made progress
            time.sleep(rnd.uniform(0, 0.6))
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            mid_write += any(p.name.startswith(".tmp-") for p in ckpts.iterdir())
            for path in list_checkpoints(ckpts):
                load_checkpoint(path)
                lvebm.load(path)
                checked += 1
        subprocess.run(_command(data, out, "--resume"), env=env, capture_output=True, check=True)
        same = torch.equal(lvebm.load(tmp / "ref").dictionary, lvebm.load(out).dictionary)
    result = {"kills": kills, "killed_mid_write": mid_write,
              "checkpoints_loaded_after_kills": checked, "bit_identical": same}  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
