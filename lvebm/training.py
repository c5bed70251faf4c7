"""The one fit loop every model uses: shuffled mini-batches, progress, callbacks, NaN stop.

A model's ``fit`` validates its data, then calls :func:`run_epochs` with a ``step``
function that takes one batch (b, ...) and returns the batch's loss as a float.
The loop owns the order of batches (a seeded ``torch.Generator``), the progress bar,
the per-step :class:`TrainState` passed to callbacks, and divergence detection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ._backend import make_generator
from ._checks import DivergenceError, check_int

__all__ = ["TrainState", "run_epochs", "check_fit_args"]


@dataclass
class TrainState:
    """What a callback sees after every step.

    step : optimisation steps taken so far (1-based)
    epoch : current epoch (0-based)
    loss : this step's loss
    model : the model being trained
    history : mean loss of every finished epoch
    """

    step: int
    epoch: int
    loss: float
    model: torch.nn.Module
    history: list[float] = field(default_factory=list)


def check_fit_args(epochs: int, batch_size: int) -> tuple[int, int]:
    """Validate the arguments every ``fit`` shares."""
    return check_int(epochs, "epochs"), check_int(batch_size, "batch_size")


def _check_finite_state(model: torch.nn.Module, loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise DivergenceError(
            f"training diverged at step {step}: the loss is {loss}. "
            "Lower the learning rate (`lr`) or check the data for extreme values."
        )
    for name, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise DivergenceError(
                f"training diverged at step {step}: parameter `{name}` has NaN or Inf. "
                "Lower the learning rate (`lr`)."
            )


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
) -> list[float]:
    """Run ``epochs`` passes over ``data`` (n, ...) in shuffled mini-batches.

    Returns the mean loss of every epoch. Raises :class:`DivergenceError` when a loss
    or a parameter becomes NaN/Inf (the model keeps the last finite step's weights
    only if the step function does not modify them before returning the loss).
    """
    n = data.shape[0]
    gen = make_generator(seed)
    n_batches = math.ceil(n / batch_size)
    state = TrainState(step=0, epoch=0, loss=float("nan"), model=model)
    bar = tqdm(
        total=epochs * n_batches, desc=desc, disable=not progress, leave=False, mininterval=1.0
    )
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen).to(data.device)
            total = 0.0
            for b in range(n_batches):
                batch = data[order[b * batch_size : (b + 1) * batch_size]]
                loss = float(step(batch))
                state.step += 1
                state.epoch, state.loss = epoch, loss
                _check_finite_state(model, loss, state.step)
                total += loss * batch.shape[0]
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.4g}")
                if callback is not None:
                    callback(state)
            state.history.append(total / n)
    finally:
        bar.close()
    return state.history
