"""Training checkpoints: weights + config + training state, versioned, atomic, no pickle.

A checkpoint directory holds one folder per saved step, ``step-000000120/``::

    config.json          the model's kind and config (same format as :func:`lvebm.save`)
    model.safetensors    the model's ``state_dict()``
    state.safetensors    every tensor of the training state (optimiser moments, generator
                         states, model-specific state such as online statistics)
    state.json           format, format_version, kind, step, epoch, batch, history, the
                         run's shape (n_samples, batch_size) and the rest of the state as
                         JSON, tensors replaced by ``{"__tensor__": key}``, plus the
                         SHA-256 of ``state.safetensors``

A checkpoint folder is also a saved model: ``lvebm.load(".../step-000000120")`` works.

Atomicity: a checkpoint is written into a hidden temporary folder in the same
directory (every file fsynced), which is then renamed to its final ``step-*`` name
and the directory fsynced. A rename is atomic, so a ``step-*`` folder is always
complete; a crash leaves at most a hidden ``.tmp-*`` folder, removed on the next
save. Old checkpoints are pruned by renaming them to a hidden ``.trash-*`` name
before deleting them, so a crash during pruning never leaves a half-deleted
checkpoint. Loading parses JSON and safetensors only and verifies both checksums.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as st_save

from ._checks import CheckpointError, LvebmTypeError
from .io import CONFIG, model_kind, read_model_files, read_safetensors, write_model_files

__all__ = [
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "latest_checkpoint",
    "list_checkpoints",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "step_folder_name",
    "discard_checkpoints_after",
]

CHECKPOINT_FORMAT = "lvebm-checkpoint"
CHECKPOINT_VERSION = 1
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
_STEP_DIR = re.compile(r"^step-(\d{9})$")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    path : the ``step-*`` folder
    kind, config : the model's registered kind and config dict (None for unregistered modules)
    weights : the model's tensors
    step, epoch, batch : optimisation steps done, current epoch, batches done in it
    history : mean loss of every finished epoch
    meta : the run's shape (``n_samples``, ``batch_size``, ``seed``, ``epochs``) and
        the loss sum of the current epoch (``epoch_loss_sum``)
    state : the training-state tree (``loop``, ``optimizer``, ``extra``, ``rng``), tensors
        restored
    """

    path: Path
    kind: str | None
    config: dict | None
    weights: dict[str, torch.Tensor]
    step: int
    epoch: int
    batch: int
    history: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)


# -- tree <-> (JSON, tensors) -----------------------------------------------------------
def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of ``obj``; tensors go to ``tensors`` under unique keys."""
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        # stored widened (safetensors' torch side lacks unsigned types wider than 8 bits)
        wide = np.float64 if obj.dtype.kind == "f" else np.int64
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).astype(wide))
        return {"__ndarray__": key, "dtype": obj.dtype.str}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{key}/{k}", tensors) for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (int, str)):
                raise LvebmTypeError(f"training state key {k!r} must be a str or int.")
            items.append([k, _encode(v, f"{key}/{k}", tensors)])
        return {"__items__": items}
    raise LvebmTypeError(
        f"training state at `{key}` must hold tensors, arrays, numbers, strings, lists, "
        f"tuples or dicts; got {type(obj).__name__}."
    )


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj or "__ndarray__" in obj:
        key = obj.get("__tensor__", obj.get("__ndarray__"))
        if key not in tensors:
            raise CheckpointError(f"{where}: state tensor {key!r} is missing.")
        if "__tensor__" in obj:
            return tensors[key]
        return tensors[key].numpy().astype(np.dtype(obj["dtype"]))
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {k: _decode(v, tensors, where) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


# -- writing ----------------------------------------------------------------------------
def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def step_folder_name(step: int) -> str:
    return f"step-{step:09d}"


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    *,
    step: int,
    epoch: int,
    batch: int,
    history: list[float],
    meta: dict[str, Any],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write a checkpoint of ``model`` and the training ``state`` tree atomically.

    Returns the new ``step-*`` folder (an existing folder for the same step is kept
    as is and returned). Afterwards only the ``keep`` newest checkpoints remain.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / step_folder_name(step)
    if final.exists():
        return final
    _remove_hidden(directory)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "state", tensors)
    blob = st_save(tensors)
    doc = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "kind": model_kind(model),
        "step": step,
        "epoch": epoch,
        "batch": batch,
        "history": list(history),
        "meta": meta,
        "state": tree,
        "state_sha256": hashlib.sha256(blob).hexdigest(),
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=directory))
    try:
        write_model_files(tmp, model, writer=_write_synced)
        _write_synced(tmp / STATE_TENSORS, blob)
        _write_synced(tmp / STATE_JSON, json.dumps(doc, indent=1).encode())
        _fsync_dir(tmp)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(directory)
    _prune(directory, keep)
    return final


def _remove_hidden(directory: Path) -> None:
    """Delete leftovers of interrupted saves and prunes (``.tmp-*``, ``.trash-*``)."""
    for p in directory.iterdir():
        if p.is_dir() and (p.name.startswith(".tmp-step-") or p.name.startswith(".trash-")):
            shutil.rmtree(p, ignore_errors=True)


def _discard(directory: Path, folders: list[Path]) -> None:
    """Delete checkpoint folders crash-safely: rename to a hidden name, then remove."""
    for old in folders:
        trash = directory / f".trash-{old.name}"
        os.rename(old, trash)
        shutil.rmtree(trash, ignore_errors=True)


def _prune(directory: Path, keep: int) -> None:
    _discard(directory, list_checkpoints(directory)[:-keep])


def discard_checkpoints_after(directory: str | os.PathLike, step: int) -> int:
    """Delete the checkpoints of ``directory`` newer than ``step``; return how many.

    Used when a run starts afresh (``step=0``) or resumes from an older checkpoint:
    the newer ones belong to an abandoned run and must not be resumed from later.
    """
    directory = Path(directory)
    newer = [p for p in list_checkpoints(directory) if int(p.name[5:]) > step]
    _discard(directory, newer)
    return len(newer)


# -- reading ----------------------------------------------------------------------------
def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """The complete ``step-*`` folders of a checkpoint directory, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest checkpoint folder in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def _read_state_doc(folder: Path) -> dict:
    path = folder / STATE_JSON
    if not path.is_file():
        raise CheckpointError(
            f"{path}: not found; `{folder}` is not a training checkpoint (a step-* folder "
            "written during training)."
        )
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted training state ({exc}).") from exc
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an lvebm training checkpoint.")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this lvebm "
            f"supports ({CHECKPOINT_VERSION}); upgrade lvebm."
        )
    for key in ("step", "epoch", "batch"):
        if not isinstance(doc.get(key), int) or doc[key] < 0:
            raise CheckpointError(f"{path}: field `{key}` is missing or invalid.")
    return doc


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint: a ``step-*`` folder, or a directory of them (newest).

    Raises :class:`CheckpointError`, naming the file, when anything is missing,
    truncated, corrupted, or written by a newer format version.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint not found.")
    if not (folder / STATE_JSON).exists() and not (folder / CONFIG).exists():
        newest = latest_checkpoint(folder)
        if newest is None:
            raise CheckpointError(f"{folder}: holds no checkpoint (no step-* folder).")
        folder = newest
    doc = _read_state_doc(folder)
    kind, config, weights = read_model_files(folder, registered=doc.get("kind") is not None)
    if kind != doc.get("kind"):
        raise CheckpointError(
            f"{folder / STATE_JSON}: kind {doc.get('kind')!r} disagrees with {folder / CONFIG} "
            f"({kind!r}); the checkpoint is torn."
        )
    tensors = read_safetensors(
        folder / STATE_TENSORS, doc.get("state_sha256", ""), "training-state tensors"
    )
    return Checkpoint(
        path=folder, kind=kind, config=config, weights=weights, step=doc["step"],
        epoch=doc["epoch"], batch=doc["batch"], history=list(doc.get("history", [])),
        meta=dict(doc.get("meta", {})), state=_decode(doc.get("state", {}), tensors, folder),
    )  # fmt: skip
