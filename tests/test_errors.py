"""Every bad input the suite tries, with the error and message it must get.

One table (torch.optim's ``optim_error_inputs`` style) drives one parametrized test and
is rendered into ``docs/errors.md`` by ``python tests/render_error_table.py``; a test
checks that the page is current. API rows expect an lvebm exception; CLI rows expect
exit status 2 and exactly one stderr line ``error: ...``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import lvebm
from lvebm import CheckpointError, LvebmTypeError, LvebmValueError
from lvebm.checkpoint import load_checkpoint
from lvebm.cli import main
from lvebm.data import load_array, load_mnist, read_idx, sample_patches, whiten
from lvebm.diagnostics import atom_usage, gabor_likeness
from lvebm.plotting import save_atom_grid, tile_grid
from lvebm.training import run_epochs

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


class CliError(Exception):
    """A CLI call that exited 2 with one ``error: ...`` line (the line is the message)."""


@dataclass(frozen=True)
class Case:
    call: str  # what is called, as a user writes it
    bad: str  # what is wrong with the input
    error: type[BaseException]
    match: str  # regex the message must match
    run: Callable[[Path], object]  # does the call, given a scratch folder


# -- fixtures built inside the scratch folder -------------------------------------------
rng = np.random.default_rng(0)
Y = rng.normal(size=(6, 5))
W = rng.normal(size=(5, 8))
W /= np.linalg.norm(W, axis=0)


def _with(a: np.ndarray, index, value) -> np.ndarray:
    a = a.copy()
    a[index] = value
    return a


def _file(tmp: Path, name: str, content: bytes | np.ndarray | dict) -> Path:
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    else:
        np.save(path, content)
    return path


CFG = {"n_features": 5, "n_atoms": 8, "lam": 0.1}


def _model() -> lvebm.SparseCoding:
    return lvebm.SparseCoding(5, 8, 0.1, seed=0)


def _saved(tmp: Path, edit: Callable[[Path], None] | None = None) -> Path:
    folder = lvebm.save(_model(), tmp / "model")
    if edit is not None:
        edit(folder)
    return folder


def _edit_config(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(changes)
        (folder / "config.json").write_text(json.dumps(cfg))

    return edit


def _truncate(name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        blob = (folder / name).read_bytes()
        (folder / name).write_bytes(blob[: len(blob) // 2])

    return edit


def _checkpoint(tmp: Path, edit: Callable[[Path], None] | None = None) -> Path:
    """A real checkpoint folder from a 1-epoch fit of 5-d signals with 8 atoms."""
    folder = tmp / "ckpt"
    _model().fit(Y.astype(np.float32), epochs=1, batch_size=3, progress=False,
                 checkpoint_dir=folder)  # fmt: skip
    step = sorted(folder.iterdir())[-1]
    if edit is not None:
        edit(step)
    return folder


def _edit_state(**changes) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        doc = json.loads((folder / "state.json").read_text())
        doc.update(changes)
        (folder / "state.json").write_text(json.dumps(doc))

    return edit


def _resume(tmp: Path, model: lvebm.SparseCoding, *, batch_size: int = 3) -> object:
    return model.fit(Y.astype(np.float32), epochs=2, batch_size=batch_size, progress=False,
                     checkpoint_dir=_checkpoint(tmp), resume=True)  # fmt: skip


def _resume_plain_module(checkpoint: Path) -> object:
    model = torch.nn.Linear(5, 8)
    return run_epochs(model, torch.arange(6), lambda b: 0.0, epochs=2, batch_size=3, seed=0,
                      progress=False, resume=checkpoint)  # fmt: skip


def _out_with_checkpoints(tmp: Path) -> Path:
    """An --out folder whose checkpoints/ holds a run with 8 atoms."""
    _checkpoint(tmp).rename(tmp / "checkpoints")
    return tmp


def _out_with_vae_checkpoints(tmp: Path) -> Path:
    """An --out folder whose checkpoints/ holds a VAE run with 2 latents (35 training rows)."""
    lvebm.VAE(12, 2, hidden=(8,)).fit(V12[5:], epochs=1, batch_size=16, progress=False,
                                      checkpoint_dir=tmp / "checkpoints")  # fmt: skip
    return tmp


def _out_with_psd_checkpoints(tmp: Path) -> Path:
    """An --out folder whose checkpoints/ holds a PSD run with 8 atoms on 5 training rows."""
    lvebm.PSD(5, 8, 0.1).fit(Y[:5].astype(np.float32), epochs=1, batch_size=3, progress=False,
                             checkpoint_dir=tmp / "checkpoints")  # fmt: skip
    return tmp


def _idx(tmp: Path, payload: bytes) -> Path:
    return _file(tmp, "images-idx3-ubyte", payload)


def cli(*argv: str | Callable[[Path], object]) -> Callable[[Path], object]:
    """A row runner for ``lvebm ARGV``; callables in ARGV build files in the scratch folder."""

    def run(tmp: Path) -> object:
        args = [str(a(tmp)) if callable(a) else a for a in argv]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        assert code == 2, f"exit status {code}, stderr {err.getvalue()!r}"
        assert len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
        raise CliError(lines[0])

    return run


def npy(name: str, array: np.ndarray) -> Callable[[Path], Path]:
    return lambda tmp: _file(tmp, name, array)


def out(tmp: Path) -> Path:
    return tmp / "out"


X15 = rng.normal(size=(40, 15)).astype(np.float32)
TRAIN = ("train", "sparse-coding", "--epochs", "1", "--atoms", "4", "--out", out)
SC = lvebm.SparseCoding
V12 = (rng.random(size=(40, 12)) > 0.5).astype(np.float32)
VAE_ARGS = ("train", "vae", "--data", npy("v12.npy", V12), "--hidden", "8", "--n-test", "5",
            "--epochs", "1", "--batch-size", "16", "--iwae-k", "2", "--out", out)  # fmt: skip

# -- the table ---------------------------------------------------------------------------
V, T, K = LvebmValueError, LvebmTypeError, CheckpointError
# fmt: off
TABLE: list[Case] = [
    # sparse_encode / duality_gap
    Case("sparse_encode(Y, W, lam)", "Y is 1-d", V, r"`Y` must be a 2-d array of shape \(n, d\)",
         lambda t: lvebm.sparse_encode(Y[0], W, 0.1)),
    Case("sparse_encode(Y, W, lam)", "W is 3-d", V, r"`W` must be a 2-d array of shape \(d, k\)",
         lambda t: lvebm.sparse_encode(Y, W[None], 0.1)),
    Case("sparse_encode(Y, W, lam)", "Y has 5 features, W has 4 rows", V,
         r"`Y` and `W` disagree: Y has size 5 where W has size 4",
         lambda t: lvebm.sparse_encode(Y, W[:4], 0.1)),
    Case("sparse_encode(Y, W, lam)", "NaN in Y", V, r"`Y` must contain only finite values",
         lambda t: lvebm.sparse_encode(_with(Y, (0, 0), np.nan), W, 0.1)),
    Case("sparse_encode(Y, W, lam)", "Inf in W", V, r"`W` must contain only finite values",
         lambda t: lvebm.sparse_encode(Y, _with(W, (1, 1), np.inf), 0.1)),
    Case("sparse_encode(Y, W, lam)", "lam < 0", V, r"`lam` must be a finite float >= 0; got -0.1",
         lambda t: lvebm.sparse_encode(Y, W, -0.1)),
    Case("sparse_encode(Y, W, lam)", "lam is NaN", V, r"`lam` must be a finite float >= 0; got nan",
         lambda t: lvebm.sparse_encode(Y, W, float("nan"))),
    Case("sparse_encode(Y, W, lam)", "lam is a string", T, r"`lam` must be a finite float",
         lambda t: lvebm.sparse_encode(Y, W, "0.1")),
    Case("sparse_encode(Y, W, lam)", "W has zero atoms", V, r"`W` must not be empty",
         lambda t: lvebm.sparse_encode(Y, W[:, :0], 0.1)),
    Case("sparse_encode(Y, W, lam)", "Y has no samples", V, r"`Y` must not be empty",
         lambda t: lvebm.sparse_encode(Y[:0], W, 0.1)),
    Case("sparse_encode(..., method=)", "unknown method", V, r"`method` must be one of 'auto'",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, method="omp")),
    Case("sparse_encode(..., max_iter=)", "max_iter = 0", V, r"`max_iter` must be an integer >= 1",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, max_iter=0)),
    Case("sparse_encode(..., tol=)", "tol = 0", V, r"`tol` must be a finite float > 0",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, tol=0.0)),
    Case("sparse_encode(..., z0=)", "z0 of the wrong shape", V, r"`z0` must have shape \(6, 8\)",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, z0=np.zeros((6, 7)))),
    Case("sparse_encode(..., device=)", "unknown device", V, r"`device` must be a torch device",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, device="potato")),
    Case("sparse_encode(..., device=)", "absent CUDA device", V, r"`device` is 'cuda:99' but",
         lambda t: lvebm.sparse_encode(Y, W, 0.1, device="cuda:99")),
    Case("sparse_encode(Y, W, lam)", "complex Y", T, r"`Y` must be real-valued",
         lambda t: lvebm.sparse_encode(Y + 1j, W, 0.1)),
    Case("sparse_encode(Y, W, lam)", "Y of strings", T, r"`Y` must be a numeric array",
         lambda t: lvebm.sparse_encode([["a", "b"]], W, 0.1)),
    Case("duality_gap(Y, W, Z, lam)", "Z of the wrong shape", V, r"`Z` must have shape \(6, 8\)",
         lambda t: lvebm.duality_gap(Y, W, np.zeros((6, 3)), 0.1)),
    Case("duality_gap(Y, W, Z, lam)", "NaN in Z", V, r"`Z` must contain only finite values",
         lambda t: lvebm.duality_gap(Y, W, np.full((6, 8), np.nan), 0.1)),
    # shrink
    Case("shrink(x, theta)", "theta < 0", V, r"`theta` must be finite and >= 0",
         lambda t: lvebm.shrink(Y, -1.0)),
    Case("shrink(x, theta)", "theta does not broadcast", V, r"`theta` of shape \(3,\) does not",
         lambda t: lvebm.shrink(Y, np.ones(3))),
    Case("shrink(x, theta)", "NaN in x", V, r"`x` must contain only finite values",
         lambda t: lvebm.shrink(_with(Y, (2, 2), np.nan), 0.5)),
    # SparseCoding
    Case("SparseCoding(d, k, lam)", "zero atoms", V, r"`n_atoms` must be an integer >= 1; got 0",
         lambda t: SC(5, 0, 0.1)),
    Case("SparseCoding(d, k, lam)", "d is a float", T, r"`n_features` must be an integer",
         lambda t: SC(5.5, 8, 0.1)),
    Case("SparseCoding(d, k, lam)", "lam < 0", V, r"`lam` must be a finite float >= 0; got -1",
         lambda t: SC(5, 8, -1.0)),
    Case("SparseCoding(..., device=)", "absent CUDA device", V, r"`device` is 'cuda:99' but",
         lambda t: SC(5, 8, 0.1, device="cuda:99")),
    Case("SparseCoding.from_dictionary(W, lam)", "Inf in W", V, r"`W` must contain only finite",
         lambda t: SC.from_dictionary(_with(W, (0, 0), np.inf), 0.1)),
    Case("SparseCoding.from_dictionary(W, lam)", "W is 1-d", V, r"`W` must be a 2-d array",
         lambda t: SC.from_dictionary(W[0], 0.1)),
    Case("model.encode(y)", "y has 4 features, model 5", V, r"`y` and `dictionary` disagree",
         lambda t: _model().encode(Y[:, :4])),
    Case("model.encode(y)", "y is 3-d", V, r"`y` must be a 2-d array of shape \(n, d\)",
         lambda t: _model().encode(Y[None])),
    Case("model.energy(y, z)", "z has 7 atoms, model 8", V, r"`z` and `dictionary` disagree",
         lambda t: _model().energy(Y, np.zeros((6, 7)))),
    Case("model.energy(y, z)", "z has 5 rows, y 6", V, r"`z` and `y` disagree",
         lambda t: _model().energy(Y, np.zeros((5, 8)))),
    Case("model.reconstruct(z)", "z has 9 atoms, model 8", V, r"`z` and `dictionary` disagree",
         lambda t: _model().reconstruct(np.zeros((2, 9)))),
    Case("model.fit(data)", "NaN in data", V, r"`data` must contain only finite values",
         lambda t: _model().fit(_with(Y, (3, 1), np.nan), progress=False)),
    Case("model.fit(data)", "empty data", V, r"`data` must not be empty",
         lambda t: _model().fit(Y[:0], progress=False)),
    Case("model.fit(..., epochs=)", "epochs = 0", V, r"`epochs` must be an integer >= 1; got 0",
         lambda t: _model().fit(Y, epochs=0, progress=False)),
    Case("model.fit(..., batch_size=)", "batch_size < 0", V, r"`batch_size` must be an integer",
         lambda t: _model().fit(Y, batch_size=-3, progress=False)),
    Case("model.fit(..., lr=)", "lr = 0", V, r"`lr` must be a finite float > 0; got 0.0",
         lambda t: _model().fit(Y, lr=0.0, progress=False)),
    Case("model.fit(..., method=)", "unknown method", V, r"`method` must be one of 'online'",
         lambda t: _model().fit(Y, method="adam", progress=False)),
    Case("model.fit(..., init=)", "unknown init", V, r"`init` must be one of 'data', 'random'",
         lambda t: _model().fit(Y, init="pca", progress=False)),
    Case("model.fit(..., checkpoint_every=)", "checkpoint_every = 0", V,
         r"`checkpoint_every` must be an integer >= 1",
         lambda t: _model().fit(Y, checkpoint_dir=t, checkpoint_every=0, progress=False)),
    Case("model.fit(..., resume=True)", "no checkpoint_dir", T,
         r"`resume=True` needs `checkpoint_dir`",
         lambda t: _model().fit(Y, resume=True, progress=False)),
    Case("model.fit(..., resume=path)", "checkpoint path does not exist", K,
         r"missing: checkpoint not found",
         lambda t: _model().fit(Y, resume=t / "missing", progress=False)),
    Case("model.fit(..., resume=True)", "checkpoint of a model with other settings", K,
         r"made with config .*'n_atoms': 8.*resume with the same model settings",
         lambda t: _resume(t, SC(5, 9, 0.1))),
    Case("model.fit(..., resume=True)", "other batch size than the checkpoint", K,
         r"made with batch_size=3, but this run has batch_size=2",
         lambda t: _resume(t, _model(), batch_size=2)),
    Case("run_epochs(model, ...)", "checkpoint of a SparseCoding resumed into a plain module", K,
         r"holds a 'sparse_coding' model but the model being trained is None",
         lambda t: _resume_plain_module(_checkpoint(t))),
    Case("SparseCoding(..., dtype=)", "integer dtype", T, r"`dtype` must be a floating torch dtype",
         lambda t: SC(5, 8, 0.1, dtype=torch.int64)),
    Case("SparseCoding(..., seed=)", "negative seed", V, r"`seed` must be an integer >= 0 or None",
         lambda t: SC(5, 8, 0.1, seed=-1)),
    Case("model.fit(..., seed=)", "seed is a string", T, r"`seed` must be an integer >= 0 or None",
         lambda t: _model().fit(Y, seed="a", progress=False)),
    Case("model.fit(..., reinit_dead=)", "reinit_dead is a string", T,
         r"`reinit_dead` must be True or False", lambda t: _model().fit(Y, reinit_dead="yes")),
    Case("model.fit(..., callback=)", "callback not callable", T, r"`callback` must be callable",
         lambda t: _model().fit(Y, callback=3, progress=False)),
    Case("model.fit(..., checkpoint_dir=)", "checkpoint_dir is a file", V,
         r"`checkpoint_dir` must be a folder; .* is a file",
         lambda t: _model().fit(Y, checkpoint_dir=_file(t, "f", b"x"), progress=False)),
    # LISTA / PSD
    Case("LISTA(dictionary, lam)", "NaN in dictionary", V, r"`dictionary` must contain only finite",
         lambda t: lvebm.LISTA(_with(W, (0, 1), np.nan), 0.1)),
    Case("LISTA(dictionary, lam, steps=)", "zero layers", V, r"`steps` must be an integer >= 1",
         lambda t: lvebm.LISTA(W, 0.1, steps=0)),
    Case("LISTA(dictionary, lam, tied=)", "tied is an int", T, r"`tied` must be a bool; got 1",
         lambda t: lvebm.LISTA(W, 0.1, tied=1)),
    Case("LISTA.fit(data, codes=)", "NaN in codes", V, r"`codes` must contain only finite",
         lambda t: lvebm.LISTA(W, 0.1).fit(Y, codes=np.full((6, 8), np.nan), progress=False)),
    Case("LISTA.encode(y)", "y has 4 features, dictionary 5", V,
         r"`y` and `dictionary` disagree", lambda t: lvebm.LISTA(W, 0.1).encode(Y[:, :4])),
    Case("PSD(d, k, lam, alpha=)", "alpha < 0", V, r"`alpha` must be a finite float >= 0",
         lambda t: lvebm.PSD(5, 8, 0.1, alpha=-1.0)),
    Case("PSD(d, k, lam, encoder=)", "unknown encoder", V, r"`encoder` must be one of 'tanh'",
         lambda t: lvebm.PSD(5, 8, 0.1, encoder="mlp")),
    Case("PSD.fit(..., resume=True)", "checkpoint of another kind (sparse coding)", K,
         r"holds a 'sparse_coding' model but the model being trained is 'psd'",
         lambda t: lvebm.PSD(5, 8, 0.1).fit(Y, batch_size=3, checkpoint_dir=_checkpoint(t),
                                            resume=True, progress=False)),
    # VAE / LatentEBM
    Case("VAE(d, k)", "zero latent dimensions", V, r"`n_latent` must be an integer >= 1; got 0",
         lambda t: lvebm.VAE(4, 0)),
    Case("VAE(d, k, hidden=)", "a hidden layer of width 0", T,
         r"`hidden` must be a tuple of integers >= 1", lambda t: lvebm.VAE(4, 2, hidden=(0,))),
    Case("VAE.fit(data)", "Bernoulli data outside [0, 1]", V, r"`data` must lie in \[0, 1\]",
         lambda t: lvebm.VAE(4, 2).fit(np.full((5, 4), 3.0), progress=False)),
    Case("VAE.fit(..., warmup_epochs=)", "warmup_epochs < 0", V,
         r"`warmup_epochs` must be a finite float >= 0",
         lambda t: lvebm.VAE(4, 2).fit(np.zeros((5, 4)), warmup_epochs=-1, progress=False)),
    Case("VAE.decode(z)", "z has 3 latents, model 2", V, r"`z` and `n_latent` disagree",
         lambda t: lvebm.VAE(4, 2).decode(np.zeros((5, 3)))),
    Case("LatentEBM.infer(x, y)", "4 targets for 3 inputs", V, r"`y` and `x` disagree",
         lambda t: lvebm.LatentEBM.mlp(1, 2, 2).infer(np.zeros((3, 1)), np.zeros((4, 2)))),
    Case("LatentEBM.fit(x, y)", "NaN in y", V, r"`y` must contain only finite values",
         lambda t: lvebm.LatentEBM.mlp(1, 2, 2).fit(np.zeros((3, 1)), np.full((3, 2), np.nan),
                                                    progress=False)),
    # convolutional sparse coding
    Case("ConvSparseCoding(m, s, c, lam)", "zero filters", V,
         r"`n_filters` must be an integer >= 1; got 0",
         lambda t: lvebm.ConvSparseCoding(0, 3, 1, 0.1)),
    Case("ConvSparseCoding.fit(images)", "kernel larger than the images", V,
         r"`images` must be at least 9 x 9 pixels \(kernel_size\)",
         lambda t: lvebm.ConvSparseCoding(2, 9, 1, 0.1).fit(np.zeros((2, 1, 6, 6)),
                                                            progress=False)),
    Case("ConvSparseCoding.encode(images)", "images are 3-d", V,
         r"`images` must be a 4-d array of shape \(n, c, H, W\)",
         lambda t: lvebm.ConvSparseCoding(2, 3, 1, 0.1).encode(np.zeros((2, 6, 6)))),
    # save / load
    Case("lvebm.save(model, path)", "not an lvebm model", T, r"`model` must be an lvebm model",
         lambda t: lvebm.save(torch.nn.Linear(2, 2), t / "m")),
    Case("lvebm.save(model, path)", "path is a file", V, r"`path` must be a folder; .* is a file",
         lambda t: lvebm.save(_model(), _file(t, "f", b"x"))),
    Case("lvebm.load(path)", "folder does not exist", K, r"nowhere: not found",
         lambda t: lvebm.load(t / "nowhere")),
    Case("lvebm.load(path)", "truncated weights", K, r"model.safetensors: checksum mismatch",
         lambda t: lvebm.load(_saved(t, _truncate("model.safetensors")))),
    Case("lvebm.load(path)", "corrupted config.json", K, r"config.json: corrupted config",
         lambda t: lvebm.load(_saved(t, lambda f: (f / "config.json").write_text("{oops")))),
    Case("lvebm.load(path)", "future format version", K,
         r"config.json: format version 99 is newer than this lvebm supports",
         lambda t: lvebm.load(_saved(t, _edit_config(format_version=99)))),
    Case("lvebm.load(path)", "unknown model kind", K, r"unknown model kind 'gan'",
         lambda t: lvebm.load(_saved(t, _edit_config(kind="gan")))),
    Case("lvebm.load(path)", "config does not match weights", K, r"config and weights do not match",
         lambda t: lvebm.load(_saved(t, _edit_config(config={**CFG, "n_features": 3})))),
    Case("lvebm.load(path, device=)", "absent CUDA device", V, r"`device` is 'cuda:99' but",
         lambda t: lvebm.load(_saved(t), device="cuda:99")),
    Case("load_checkpoint(path)", "truncated training state", K,
         r"state.safetensors: checksum mismatch",
         lambda t: load_checkpoint(_checkpoint(t, _truncate("state.safetensors")))),
    Case("load_checkpoint(path)", "future checkpoint version", K,
         r"state.json: checkpoint format version 7 is newer",
         lambda t: load_checkpoint(_checkpoint(t, _edit_state(format_version=7)))),
    Case("load_checkpoint(path)", "corrupted state.json", K,
         r"state.json: corrupted training state",
         lambda t: load_checkpoint(_checkpoint(t, lambda f: (f / "state.json").write_text("[")))),
    Case("load_checkpoint(path)", "a saved model, not a checkpoint", K,
         r"state.json: not found; .* is not a training checkpoint",
         lambda t: load_checkpoint(_saved(t))),
    Case("load_checkpoint(path)", "folder without checkpoints", K, r"holds no checkpoint",
         lambda t: load_checkpoint(t)),
    # data files
    Case("load_array(path)", "file does not exist", V, r"`data` file not found",
         lambda t: load_array(t / "none.npy")),
    Case("load_array(path)", "not an array file", V, r"not a .npy/.npz file \(no NumPy or zip",
         lambda t: load_array(_file(t, "x.npy", b"garbage bytes"))),
    Case("load_array(path)", "pickled object array (never unpickled)", V,
         r"not a readable .npy/.npz file",
         lambda t: load_array(_file(t, "o.npy", np.array([{"a": 1}], dtype=object)))),
    Case("load_array(path)", ".npz without a data array", V, r"must hold `data`, `images` or `X`",
         lambda t: load_array(_file(t, "d.npz", {"a": np.ones(2), "b": np.ones(2)}))),
    Case("read_idx(path)", "bad magic number", V, r"not an IDX file \(bad magic number\)",
         lambda t: read_idx(_idx(t, b"\x01\x02\x03\x04"))),
    Case("read_idx(path)", "truncated payload", V, r"IDX payload has 3 bytes, expected 4",
         lambda t: read_idx(_idx(t, b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x02abc"))),
    Case("load_mnist(path)", ".npz without labels", V, r"must hold arrays `images` and `labels`",
         lambda t: load_mnist(_file(t, "m.npz", {"images": np.zeros((2, 4, 4))}))),
    Case("load_mnist(split=)", "unknown split", V, r"`split` must be one of 'train', 'test'",
         lambda t: load_mnist(t, split="val")),
    Case("sample_patches(images, size, n)", "patch larger than every image", V,
         r"no grey image of at least 9x9 pixels",
         lambda t: sample_patches([np.zeros((8, 8))], 9, 5)),
    Case("whiten(patches)", "no patches", V, r"`patches` must be a non-empty \(n, s\*s\) array",
         lambda t: whiten(np.zeros((0, 16)))),
    Case("whiten(patches, method='1/f')", "patches not square", V,
         r"`patches` must be square for 1/f whitening",
         lambda t: whiten(rng.normal(size=(4, 15)), method="1/f")),
    Case("load_array(path)", "path is a folder", V,
         r"`data` must be a .npy/.npz file; .* is a folder", lambda t: load_array(t)),
    Case("whiten(patches)", "NaN in patches", V, r"`patches` must contain only finite values",
         lambda t: whiten(np.full((4, 16), np.nan))),
    # figures and diagnostics
    Case("tile_grid(atoms)", "atoms is 2-d", V, r"`atoms` must be a non-empty \(k, h, w\)",
         lambda t: tile_grid(np.ones((3, 3)))),
    Case("save_atom_grid(atoms, path)", "NaN in atoms", V, r"`atoms` must contain only finite",
         lambda t: save_atom_grid(np.full((2, 3, 3), np.nan), t / "a.png")),
    Case("atom_usage(Z)", "Z is 1-d", V, r"`Z` must be a non-empty \(n, k\) array of codes",
         lambda t: atom_usage(np.ones(3))),
    Case("gabor_likeness(W, patch_shape)", "W rows do not match the patch", V,
         r"`W` must be \(d, k\) with d = 9 pixels",
         lambda t: gabor_likeness(np.ones((10, 4)), (3, 3))),
    # command line
    Case("lvebm train sparse-coding", "--atoms 0", CliError,
         r"argument --atoms: must be an integer >= 1; got 0", cli(*TRAIN, "--atoms", "0")),
    Case("lvebm train sparse-coding", "--lam -1", CliError,
         r"argument --lam: must be a finite number >= 0; got -1", cli(*TRAIN, "--lam", "-1")),
    Case("lvebm train sparse-coding", "--lam nan", CliError,
         r"argument --lam: must be a finite number >= 0; got nan", cli(*TRAIN, "--lam", "nan")),
    Case("lvebm train sparse-coding", "--epochs x", CliError,
         r"argument --epochs: must be an integer >= 1; got 'x'", cli(*TRAIN, "--epochs", "x")),
    Case("lvebm train sparse-coding", "--lr 0", CliError,
         r"argument --lr: must be a finite number > 0; got 0", cli(*TRAIN, "--lr", "0")),
    Case("lvebm train sparse-coding", "--method adam", CliError,
         r"argument --method: invalid choice: 'adam'", cli(*TRAIN, "--method", "adam")),
    Case("lvebm train sparse-coding", "--whiten pca", CliError,
         r"argument --whiten: invalid choice: 'pca'", cli(*TRAIN, "--whiten", "pca")),
    Case("lvebm train sparse-coding", "--checkpoint-every 0", CliError,
         r"argument --checkpoint-every: must be an integer >= 1",
         cli(*TRAIN, "--checkpoint-every", "0")),
    Case("lvebm train sparse-coding", "no --out", CliError,
         r"the following arguments are required: --out", cli("train", "sparse-coding")),
    Case("lvebm", "unknown command", CliError, r"argument COMMAND: invalid choice: 'fit'",
         cli("fit")),
    Case("lvebm train sparse-coding", "--data file does not exist", CliError,
         r"`data` file not found", cli(*TRAIN, "--data", "no-such-file.npy")),
    Case("lvebm train sparse-coding", "--data is not an array file", CliError,
         r"not a readable .npy/.npz file",
         cli(*TRAIN, "--data", lambda t: _file(t, "bad.npy", b"\x93NUMPY garbage"))),
    Case("lvebm train sparse-coding", "--data is a 1-d array", CliError,
         r"`--data` array must be \(n, d\) vectors or \(n, H, W\) images; got \(5,\)",
         cli(*TRAIN, "--data", npy("v.npy", np.ones(5)))),
    Case("lvebm train sparse-coding", "--data is a 4-d array", CliError,
         r"`--data` array must be \(n, d\) vectors",
         cli(*TRAIN, "--data", npy("v.npy", np.ones((2, 1, 3, 3))))),
    Case("lvebm train sparse-coding", "--data holds NaN", CliError,
         r"`data` must contain only finite values",
         cli(*TRAIN, "--data", npy("nan.npy", _with(X15, (0, 0), np.nan)))),
    Case("lvebm train sparse-coding", "--data has no rows", CliError, r"`data` must not be empty",
         cli(*TRAIN, "--data", npy("empty.npy", X15[:0]))),
    Case("lvebm train sparse-coding", "--device cuda:99 (absent)", CliError,
         r"`device` is 'cuda:99' but",
         cli(*TRAIN, "--data", npy("x.npy", X15), "--device", "cuda:99")),
    Case("lvebm train sparse-coding", "--device potato", CliError, r"`device` must be",
         cli(*TRAIN, "--data", npy("x.npy", X15), "--device", "potato")),
    Case("lvebm train sparse-coding", "--out is an existing file", CliError,
         r"`--out` must be a folder; .*taken is a file",
         cli(*TRAIN[:-1], lambda t: _file(t, "taken", b"x"), "--data", npy("x.npy", X15))),
    Case("lvebm train sparse-coding --resume", "checkpoints made with other --atoms", CliError,
         r"made with config .*'n_atoms': 8",
         cli(*TRAIN[:-1], _out_with_checkpoints, "--data", npy("y.npy", Y.astype(np.float32)),
             "--epochs", "2", "--batch-size", "3", "--resume")),
    Case("lvebm train vae", "--latent 0", CliError,
         r"argument --latent: must be an integer >= 1; got 0", cli(*VAE_ARGS, "--latent", "0")),
    Case("lvebm train vae", "--beta -1", CliError,
         r"argument --beta: must be a finite number >= 0", cli(*VAE_ARGS, "--beta", "-1")),
    Case("lvebm train vae --resume", "checkpoints made with other --latent", CliError,
         r"made with config .*'n_latent': 2",
         cli(*VAE_ARGS, "--latent", "3", "--resume", "--out", _out_with_vae_checkpoints)),
    Case("lvebm train latent-ebm", "--lam -5", CliError,
         r"argument --lam: must be a finite number >= 0; got -5",
         cli("train", "latent-ebm", "--lam", "-5", "--out", out)),
    Case("lvebm train latent-ebm", "--hidden 64 0", CliError,
         r"argument --hidden: must be an integer >= 1; got 0",
         cli("train", "latent-ebm", "--hidden", "64", "0", "--out", out)),
    Case("lvebm train psd --resume", "checkpoints made with other --atoms", CliError,
         r"made with config .*'n_atoms': 8",
         cli("train", "psd", "--data", npy("y.npy", Y.astype(np.float32)), "--atoms", "4",
             "--epochs", "1", "--batch-size", "3", "--test-fraction", "0.2", "--resume",
             "--out", _out_with_psd_checkpoints)),
    Case("lvebm train lista", "--dictionary is not a saved model", CliError,
         r"config.json: not found",
         cli("train", "lista", "--dictionary", lambda t: t, "--data", npy("x.npy", X15),
             "--out", out)),
    Case("lvebm train conv-sparse-coding", "--kernel larger than --crop", CliError,
         r"`--kernel` \(40\) must not be larger than `--crop` \(32\)",
         cli("train", "conv-sparse-coding", "--kernel", "40", "--crop", "32", "--out", out)),
    Case("lvebm train conv-sparse-coding", "--filters 0", CliError,
         r"argument --filters: must be an integer >= 1; got 0",
         cli("train", "conv-sparse-coding", "--filters", "0", "--out", out)),
    Case("lvebm encode MODEL DATA", "MODEL folder does not exist", CliError, r"nowhere: not found",
         cli("encode", "nowhere", "digits", "--out", "codes.npz")),
    Case("lvebm encode MODEL DATA", "DATA has 15 features, MODEL 5", CliError,
         r"`y` and `dictionary` disagree: y has size 15 where dictionary has size 5",
         cli("encode", _saved, npy("x.npy", X15), "--out", lambda t: t / "c.npz")),
    Case("lvebm encode MODEL DATA", "MODEL weights truncated", CliError, r"checksum mismatch",
         cli("encode", lambda t: _saved(t, _truncate("model.safetensors")), npy("x.npy", X15),
             "--out", lambda t: t / "c.npz")),
]
# fmt: on


def _id(case: Case) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{case.call} {case.bad}".lower()).strip("-")


@pytest.mark.parametrize("case", TABLE, ids=[_id(c) for c in TABLE])
def test_bad_input_gets_its_error_and_message(case, tmp_path):
    with pytest.raises(case.error, match=case.match):
        case.run(tmp_path)


def test_table_has_at_least_40_distinct_bad_inputs():
    assert len({(c.call, c.bad) for c in TABLE}) == len(TABLE) >= 40


def test_docs_error_table_lists_every_case_with_a_matching_message():
    """docs/errors.md has one row per case, in order, whose message matches the case's regex.

    (Messages are compared by regex, not verbatim, so that e.g. registering a new model
    kind, which lengthens one message, does not make the page stale.)
    """
    rows = [ln for ln in DOC.read_text().splitlines() if re.match(r"\| \d+ \|", ln)]
    stale = "docs/errors.md is stale: run `python tests/render_error_table.py`"
    assert len(rows) == len(TABLE), stale
    for row, case in zip(rows, TABLE, strict=True):
        num, call, bad, error, message = row[2:-2].split(" | ", 4)
        assert (call, bad) == (f"`{case.call}`", case.bad), stale
        assert error == ("exit 2" if case.error is CliError else case.error.__name__), stale
        assert re.search(case.match, message.replace("\\|", "|")), stale


# -- rendering ---------------------------------------------------------------------------
def _message(case: Case, tmp: Path) -> str:
    try:
        case.run(tmp)
    except case.error as exc:
        text = str(exc)
    else:  # pragma: no cover - the parametrized test reports this case
        return "(no error raised)"
    text = text.replace(str(tmp), "…")
    return re.sub(r"/tmp/[^\s']*", "…", text)


def render_markdown(scratch: Path) -> str:
    """The table as Markdown: call, bad input, error type, the message it really gets."""
    rows = [
        "# Bad inputs and their errors",
        "",
        "Every bad input that `tests/test_errors.py` tries, with the error it raises and "
        "the message it gets (scratch paths shown as `…`). Command-line rows exit with "
        "status 2 and print the one line shown. Generated by "
        "`python tests/render_error_table.py`; a test fails when this page is stale.",
        "",
        f"{len(TABLE)} bad inputs.",
        "",
        "| # | call | bad input | error | message |",
        "|---|---|---|---|---|",
    ]
    for i, case in enumerate(TABLE, 1):
        tmp = scratch / f"case{i}"
        tmp.mkdir()
        name = "exit 2" if case.error is CliError else case.error.__name__
        msg = " ".join(_message(case, tmp).split()).replace("|", "\\|")
        rows.append(f"| {i} | `{case.call}` | {case.bad} | {name} | {msg} |")
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_finite_check_finds_one_bad_entry_and_passes_finite_values_whose_sum_overflows(bad):
    from lvebm._checks import check_finite

    x = torch.full((4, 5), 3e38)  # finite, but the float32 sum overflows to inf
    check_finite(x, "x")
    x[2, 3] = bad
    with pytest.raises(lvebm.LvebmValueError, match="`x` must contain only finite values"):
        check_finite(x, "x")
