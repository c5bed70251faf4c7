"""The one fit loop every model uses: batches, progress, callbacks, NaN stop, checkpoints.

A model's ``fit`` validates its data, then calls :func:`run_epochs` with a ``step``
function that takes one batch (b, ...) and returns the batch's loss as a float.
The loop owns the order of batches (a seeded ``torch.Generator``), the progress bar,
the per-step :class:`TrainState` passed to callbacks, divergence detection, Ctrl-C
handling, and checkpoint/resume.

Checkpoint/resume for a model comes for free when its ``fit`` forwards
``checkpoint_dir``, ``checkpoint_every`` and ``resume`` to :func:`run_epochs` and
hands over everything its ``step`` mutates besides the model's ``state_dict()``:

* ``optimizer``: a ``torch.optim.Optimizer`` (its ``state_dict`` is saved and restored);
* ``extra_state``: any object with ``state_dict() -> dict`` and
  ``load_state_dict(dict)`` (the :class:`Stateful` protocol) for the rest: running
  statistics, warm-start buffers, schedulers, private ``torch.Generator`` states.
  The dict may nest dicts, lists and tuples of tensors, NumPy arrays, numbers and
  strings; it is stored as safetensors + JSON (never pickle).

The loop also saves and restores the global torch and NumPy RNG states, so a
``step`` that draws from them (dropout, ``torch.randn`` without a generator) resumes
exactly. Resuming from a checkpoint gives bit-identical results on CPU.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ._backend import make_generator
from ._checks import (
    CheckpointError,
    DivergenceError,
    LvebmTypeError,
    LvebmValueError,
    TrainingInterrupted,
    check_callable,
    check_int,
)
from .checkpoint import (
    Checkpoint,
    discard_checkpoints_after,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from .io import model_kind

__all__ = ["TrainState", "Stateful", "run_epochs", "check_fit_args", "check_checkpoint_args"]


@dataclass
class TrainState:
    """What a callback sees after every step.

    step : optimisation steps taken so far (1-based, counted across resumes)
    epoch : epoch of this step (0-based)
    loss : this step's loss
    model : the model being trained
    history : mean loss of every finished epoch
    checkpoint : folder of the newest checkpoint written, or None
    """

    step: int
    epoch: int
    loss: float
    model: torch.nn.Module
    history: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


class Stateful(Protocol):
    """Anything with ``state_dict()`` and ``load_state_dict(d)`` (optimisers, fit state)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> Any: ...


def check_fit_args(epochs: int, batch_size: int) -> tuple[int, int]:
    """Validate the arguments every ``fit`` shares."""
    return check_int(epochs, "epochs"), check_int(batch_size, "batch_size")


def check_checkpoint_args(
    checkpoint_dir: Any, checkpoint_every: Any, resume: Any
) -> tuple[Path | None, int | None, bool | Path]:
    """Validate ``checkpoint_dir`` (path or None), ``checkpoint_every`` (int >= 1 or None)
    and ``resume`` (bool, or the path of a checkpoint to resume from)."""
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise LvebmTypeError(
            f"`checkpoint_dir` must be a path or None; got {type(checkpoint_dir).__name__}."
        )
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    if folder is not None and folder.exists() and not folder.is_dir():
        raise LvebmValueError(f"`checkpoint_dir` must be a folder; {folder} is a file.")
    every = None if checkpoint_every is None else check_int(checkpoint_every, "checkpoint_every")
    if isinstance(resume, (str, os.PathLike)):
        resume = Path(resume)
    elif not isinstance(resume, bool):
        raise LvebmTypeError(f"`resume` must be a bool or a checkpoint path; got {resume!r}.")
    if resume is True and folder is None:
        raise LvebmTypeError("`resume=True` needs `checkpoint_dir` (where to find checkpoints).")
    return folder, every, resume


def _check_finite_state(model: torch.nn.Module, loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise DivergenceError(f"training diverged at step {step}: the loss is {loss}.", step=step)
    named = [("parameter", name, p) for name, p in model.named_parameters()]
    named += [("buffer", name, b) for name, b in model.named_buffers() if b.is_floating_point()]
    if not named:
        return
    finite = torch.stack([torch.isfinite(t).all().to("cpu") for _, _, t in named])  # one sync
    if bool(finite.all()):
        return
    kind, name, _ = named[int((~finite).nonzero()[0])]
    raise DivergenceError(
        f"training diverged at step {step}: {kind} `{name}` has NaN or Inf.", step=step
    )


@dataclass
class _Loop:
    """Where the loop stands; everything needed to continue it exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches done in the current epoch
    loss_sum: float = 0.0  # sum of loss * batch size in the current epoch
    history: list[float] = field(default_factory=list)
    gen_state: torch.Tensor | None = None  # batch-order generator at the start of the epoch


@contextmanager
def _deferred_sigint() -> Iterator[dict]:
    """Turn the first Ctrl-C into a flag checked between steps (a second one interrupts now).

    Only in the main thread and when SIGINT has Python's default handler.
    """
    flag = {"hit": False}
    usable = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if usable else None
    if previous is not signal.default_int_handler:
        yield flag
        return

    def handler(signum, frame):
        if flag["hit"]:
            raise KeyboardInterrupt
        flag["hit"] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])


def _restore(
    ckpt: Checkpoint, model, optimizer, extra_state, gen, n: int, batch_size: int
) -> _Loop:
    """Load ``ckpt`` into the model, optimiser, extra state and generator; return the loop."""
    where = ckpt.path
    kind = model_kind(model)
    if ckpt.kind != kind:
        raise CheckpointError(
            f"{where}: holds a {ckpt.kind!r} model but the model being trained is {kind!r}."
        )
    if kind is not None and ckpt.config != _json_roundtrip(model.config_dict()):
        raise CheckpointError(
            f"{where}: made with config {ckpt.config}, but the model has "
            f"{model.config_dict()}; resume with the same model settings."
        )
    for name, value in (("n_samples", n), ("batch_size", batch_size)):
        if ckpt.meta.get(name) != value:
            raise CheckpointError(
                f"{where}: made with {name}={ckpt.meta.get(name)}, but this run has "
                f"{name}={value}; resume with the same data and batch size."
            )
    state = ckpt.state
    try:
        model.load_state_dict(ckpt.weights)
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if extra_state is not None:
            extra_state.load_state_dict(state["extra"])
        gen.set_state(state["loop"]["generator"])
        _set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise CheckpointError(
            f"{where}: training state does not fit this model/optimizer ({exc})."
        ) from exc
    return _Loop(
        step=ckpt.step, epoch=ckpt.epoch, batch=ckpt.batch,
        loss_sum=float(ckpt.meta.get("epoch_loss_sum", 0.0)), history=list(ckpt.history),
        gen_state=gen.get_state(),
    )  # fmt: skip


def _json_roundtrip(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj))


def run_epochs(
    model: torch.nn.Module,
    data: torch.Tensor,
    step: Callable[[torch.Tensor], float],
    *,
    epochs: int,
    batch_size: int,
    seed: int | None,
    progress: bool = True,
    callback: Callable[[TrainState], None] | None = None,
    desc: str = "train",
    optimizer: torch.optim.Optimizer | None = None,
    extra_state: Stateful | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool | str | Path = False,
    keep: int = 2,
) -> list[float]:
    """Run ``epochs`` passes over ``data`` (n, ...) in shuffled mini-batches.

    Returns the mean loss of every epoch (including epochs done before a resume).

    Checkpoints (see :mod:`lvebm.checkpoint`) are written to ``checkpoint_dir`` every
    ``checkpoint_every`` steps (None: at the end of every epoch) and at the end; the
    ``keep`` newest are kept. ``resume=True`` continues from the newest checkpoint in
    ``checkpoint_dir`` (starting afresh, with a warning, if there is none); a path
    resumes from that checkpoint. ``epochs`` counts from the very start, so resuming a
    finished run with a larger ``epochs`` trains the extra epochs.

    Raises :class:`DivergenceError` when a loss, parameter or buffer becomes NaN/Inf
    (no checkpoint is written after that; the last good one is kept and named in the
    message), and :class:`TrainingInterrupted` (a ``KeyboardInterrupt``) after the
    first Ctrl-C, once the current step is finished and a checkpoint saved.
    """
    epochs, batch_size = check_fit_args(epochs, batch_size)
    check_callable(callback, "callback")
    folder, every, resume = check_checkpoint_args(checkpoint_dir, checkpoint_every, resume)
    keep = check_int(keep, "keep")
    n = data.shape[0]
    n_batches = math.ceil(n / batch_size)
    gen = make_generator(seed)
    loop = _Loop(gen_state=gen.get_state())
    source = None
    ckpt = _resume_source(folder, resume)
    if ckpt is not None:
        loop = _restore(ckpt, model, optimizer, extra_state, gen, n, batch_size)
        source = ckpt.path
    if folder is not None:
        _discard_abandoned(folder, loop.step)
    meta = {"n_samples": n, "batch_size": batch_size, "seed": seed, "epochs": epochs}
    state = TrainState(step=loop.step, epoch=loop.epoch, loss=float("nan"), model=model,
                       history=loop.history, checkpoint=source)  # fmt: skip

    saved_at = -1  # the step of the last checkpoint this run wrote

    def checkpoint() -> None:
        nonlocal saved_at
        if folder is not None and saved_at != loop.step:
            saved_at = loop.step
            state.checkpoint = save_checkpoint(
                folder, model, step=loop.step, epoch=loop.epoch, batch=loop.batch,
                history=loop.history, meta={**meta, "epoch_loss_sum": loop.loss_sum},
                state={
                    "loop": {"generator": loop.gen_state},
                    "optimizer": None if optimizer is None else optimizer.state_dict(),
                    "extra": None if extra_state is None else extra_state.state_dict(),
                    "rng": _rng_state(),
                },
                keep=keep,
            )  # fmt: skip

    bar = tqdm(total=epochs * n_batches, initial=min(loop.step, epochs * n_batches), desc=desc,
               disable=not progress, leave=False, mininterval=1.0)  # fmt: skip
    order = None
    try:
        with _deferred_sigint() as sigint:
            while loop.epoch < epochs:
                if order is None:
                    gen.set_state(loop.gen_state)
                    order = torch.randperm(n, generator=gen).to(data.device)
                b = loop.batch
                batch = data[order[b * batch_size : (b + 1) * batch_size]]
                loss = float(step(batch))
                loop.step += 1
                state.step, state.epoch, state.loss = loop.step, loop.epoch, loss
                try:
                    _check_finite_state(model, loss, loop.step)
                except DivergenceError as exc:
                    raise _diverged(exc, state.checkpoint if folder else None) from None
                loop.batch += 1
                loop.loss_sum += loss * batch.shape[0]
                if loop.batch == n_batches:  # epoch finished
                    loop.history.append(loop.loss_sum / n)
                    loop.epoch, loop.batch, loop.loss_sum = loop.epoch + 1, 0, 0.0
                    loop.gen_state, order = gen.get_state(), None
                bar.update(1)
                bar.set_postfix(epoch=state.epoch, loss=f"{loss:.4g}")
                if callback is not None:
                    callback(state)
                due = loop.step % every == 0 if every else loop.batch == 0
                if due or loop.epoch == epochs:
                    checkpoint()
                if sigint["hit"]:
                    checkpoint()
                    raise TrainingInterrupted(loop.step, state.checkpoint if folder else None)
    finally:
        bar.close()
    return loop.history


def _resume_source(folder: Path | None, resume: bool | Path) -> Checkpoint | None:
    """The checkpoint to resume from: ``resume`` itself, or the newest readable one.

    With ``resume=True`` a newest checkpoint that fails to load (corrupted on disk) is
    skipped with a warning in favour of the previous one.
    """
    if resume is False:
        return None
    if resume is not True:
        return load_checkpoint(resume)
    found = list_checkpoints(folder)
    if not found:
        warnings.warn(f"no checkpoint in {folder}; training from the start.", stacklevel=4)
        return None
    errors = []
    for path in reversed(found):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping unreadable checkpoint: {exc}", stacklevel=4)
            errors.append(exc)
    raise errors[0]


def _discard_abandoned(folder: Path, step: int) -> None:
    """Remove checkpoints newer than the starting step (an abandoned or unreadable run's)."""
    n_old = discard_checkpoints_after(folder, step)
    if n_old:
        what = "a fresh start" if step == 0 else f"resuming from step {step}"
        warnings.warn(
            f"removed {n_old} checkpoint(s) newer than step {step} from {folder} ({what}).",
            stacklevel=3,
        )


def _diverged(exc: DivergenceError, last_good: Path | None) -> DivergenceError:
    """Add what to do next to a divergence error: the kept checkpoint and the usual fix."""
    fix = "Lower the learning rate (`lr`) or check the data for extreme values"
    if last_good is not None:
        where = (
            f" The last good checkpoint is kept at {last_good}; resume from it with a "
            f"lower `lr` (CLI: --resume --lr ...)."
        )
    else:
        where = " No checkpoint was written yet (pass `checkpoint_dir` to keep good states)."
    return DivergenceError(f"{exc} {fix}.{where}", step=exc.step, checkpoint=last_good)
