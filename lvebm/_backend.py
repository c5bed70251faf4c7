"""NumPy <-> torch conversion, device and dtype resolution, random generators.

The rule for public functions: what comes in as a NumPy array goes back as a NumPy
array, what comes in as a tensor goes back as a tensor on the caller's device, and the
floating dtype family is kept (float32 stays float32, float64 stays float64; integer
input is computed in float64 for NumPy and float32 for torch, like their defaults).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._checks import (
    LvebmTypeError,
    LvebmValueError,
    _show,
    check_finite,
    check_ndim,
    check_nonempty,
    check_same_size,
    check_seed,
)

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences


def resolve_device(device: Any, default: torch.device | None = None) -> torch.device:
    """Return a usable ``torch.device`` for ``device`` (None -> ``default`` or CPU).

    Raises a clear error for an unknown string or a CUDA device that is not present.
    """
    if device is None:
        return default if default is not None else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise LvebmValueError(
            f"`device` must be a torch device such as 'cpu' or 'cuda:0'; got {_show(device)}."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LvebmValueError(f"`device` is {str(dev)!r} but CUDA is not available here.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise LvebmValueError(
                f"`device` is {str(dev)!r} but only {torch.cuda.device_count()} CUDA "
                "device(s) exist."
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise LvebmValueError(f"`device` must be 'cpu' or 'cuda[:i]'; got {str(dev)!r}.")
    return dev


def _float_dtype_of(x: Any) -> torch.dtype:
    if isinstance(x, torch.Tensor):
        return x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
    dt = np.asarray(x).dtype
    if dt == np.float32 or dt == np.float16:
        return torch.float32
    return torch.float64


def as_tensor(
    x: ArrayLike,
    name: str,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Convert ``x`` (array, tensor or nested list) to a floating tensor.

    ``dtype`` None keeps the input's float family (see module docstring).
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise LvebmTypeError(
                f"`{name}` must be a NumPy array or a torch tensor; got {_show(x)}."
            ) from exc
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise LvebmTypeError(
                f"`{name}` must be a numeric array or tensor; got dtype {arr.dtype}."
            )
        if np.iscomplexobj(arr):
            raise LvebmTypeError(f"`{name}` must be real-valued; got dtype {arr.dtype}.")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise LvebmTypeError(f"`{name}` must be real-valued; got dtype {t.dtype}.")
    target = dtype if dtype is not None else _float_dtype_of(x)
    return t.to(device=device if device is not None else t.device, dtype=target)


def as_batch(
    x: ArrayLike, name: str, like: torch.Tensor, layout: str, ref_name: str, ref_dim: int = 0
) -> torch.Tensor:
    """``x`` as a tensor on ``like``'s device and dtype, validated as a model's input batch.

    ``layout`` names the expected dimensions, e.g. "(n, d)" or "(n, c, H, W)"; ``x`` must
    have that many, be non-empty and finite, and its dimension 1 must equal dimension
    ``ref_dim`` of ``like`` (the parameter called ``ref_name``, e.g. the dictionary).
    """
    t = as_tensor(x, name, device=like.device, dtype=like.dtype)
    check_ndim(t, name, layout.count(",") + 1, layout)
    check_nonempty(t, name)
    check_same_size(t.shape[1], name, like.shape[ref_dim], ref_name)
    check_finite(t, name)
    return t


def output_converter(like: Any) -> Callable[[torch.Tensor], Any]:
    """Return a function mapping a result tensor back to ``like``'s kind and device."""
    if isinstance(like, torch.Tensor):
        dev = like.device
        return lambda t: t.to(dev)
    return lambda t: t.detach().cpu().numpy()


def make_generator(seed: int | None, device: torch.device | None = None) -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed`` (None: a fresh non-deterministic seed)."""
    seed = check_seed(seed)
    gen = torch.Generator(device=device if device is not None else "cpu")
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen
