"""Saving and loading models: safetensors weights + a JSON config, atomic, no pickle.

A saved model is a folder holding ``model.safetensors`` (the tensors) and
``config.json`` (``format``, ``format_version``, ``kind``, the model's config, and
the SHA-256 of the weights file). Each file is written to a temporary file in the
same folder, fsynced and renamed, so a crash never leaves a half-written file;
the config is written last and names the weights' checksum, so a torn pair is
detected on load. Loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ._checks import CheckpointError, LvebmTypeError, LvebmValueError

__all__ = [
    "save",
    "load",
    "register_model",
    "atomic_write_bytes",
    "model_kind",
    "write_model_files",
    "read_model_files",
    "MODEL_KINDS",
]

FORMAT = "lvebm-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"

#: kind name -> model class; filled by :func:`register_model`.
MODEL_KINDS: dict[str, type] = {}


def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` loadable by :func:`load` under ``cls.kind``.

    The class provides ``kind`` (str), ``config_dict() -> dict`` and the classmethod
    ``from_config_dict(dict)`` returning an instance whose ``load_state_dict`` accepts
    the saved tensors.
    """
    MODEL_KINDS[cls.kind] = cls
    return cls


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def model_kind(model: Any) -> str | None:
    """The registered kind of ``model``'s class, or None for an unregistered module."""
    kind = type(model).__dict__.get("kind")
    return kind if MODEL_KINDS.get(kind) is type(model) else None


def write_model_files(
    folder: Path, model: Any, *, writer: Callable[[Path, bytes], None] = atomic_write_bytes
) -> None:
    """Write ``model.safetensors`` then ``config.json`` (kind, config, weights' SHA-256).

    Unregistered modules (plain ``nn.Module``) get ``kind`` and ``config`` null; they can
    be checkpointed but not rebuilt by :func:`load`. Does not validate.
    """
    kind = model_kind(model)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    blob = st_save(tensors)
    writer(folder / WEIGHTS, blob)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": None if kind is None else model.config_dict(),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    }
    writer(folder / CONFIG, json.dumps(config, indent=2).encode())


def save(model: Any, path: str | os.PathLike) -> Path:
    """Save ``model`` to the folder ``path`` (created if needed); returns the folder.

    Writes ``model.safetensors`` and ``config.json``, each atomically; the config,
    written last, holds the weights' checksum so that a torn pair is detected on load.
    """
    if model_kind(model) is None:
        raise LvebmTypeError(
            f"`model` must be an lvebm model ({', '.join(sorted(MODEL_KINDS))}); "
            f"got {type(model).__name__}."
        )
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise LvebmValueError(f"`path` must be a folder; {folder} is a file.")
    write_model_files(folder, model)
    return folder


def _read_config(folder: Path, *, registered: bool = True) -> dict:
    cfg_path = folder / CONFIG
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: not found; `path` must be a folder written by save().")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: corrupted config ({exc}).") from exc
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: not an lvebm model config.")
    version = cfg.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: format version {version!r} is newer than this lvebm supports "
            f"({FORMAT_VERSION}); upgrade lvebm."
        )
    if registered and cfg.get("kind") not in MODEL_KINDS:
        known = ", ".join(sorted(MODEL_KINDS))
        raise CheckpointError(
            f"{cfg_path}: unknown model kind {cfg.get('kind')!r} (known: {known})."
        )
    return cfg


def read_safetensors(path: Path, expected_sha: str, what: str) -> dict[str, torch.Tensor]:
    """Tensors of the safetensors file ``path`` after checking its SHA-256 against
    ``expected_sha``; :class:`CheckpointError` naming ``what`` and the file otherwise."""
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} not found.")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != expected_sha:
        raise CheckpointError(
            f"{path}: checksum mismatch; the file is truncated, corrupted or from another save."
        )
    try:
        return st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors ({exc}).") from exc


def read_model_files(
    folder: Path, *, registered: bool = True
) -> tuple[str | None, dict | None, dict[str, torch.Tensor]]:
    """Read and verify ``config.json`` + ``model.safetensors``: (kind, config, tensors)."""
    cfg = _read_config(folder, registered=registered)
    tensors = read_safetensors(folder / WEIGHTS, cfg.get("weights_sha256", ""), "weights file")
    return cfg.get("kind"), cfg.get("config"), tensors


def load(path: str | os.PathLike, *, device: Any = None) -> Any:
    """Load a model saved by :func:`save`, whatever its kind, optionally onto ``device``.

    ``path`` is the folder (or its ``config.json``); a training checkpoint's ``step-*``
    folder is a valid ``path`` too. Raises :class:`CheckpointError` naming the file for
    a missing, truncated, corrupted, unknown-kind or future-version save.
    """
    from ._backend import resolve_device

    dev = resolve_device(device)
    folder = Path(path)
    if folder.is_file() and folder.name in (CONFIG, WEIGHTS):
        folder = folder.parent
    if not folder.exists():
        raise CheckpointError(f"{folder}: not found; `path` must be a folder written by save().")
    kind, config, tensors = read_model_files(folder)
    cls = MODEL_KINDS[kind]
    try:
        model = cls.from_config_dict(config)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: config and weights do not match ({exc}).") from exc
    return model.to(dev)
