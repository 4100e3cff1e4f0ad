"""Where the torch work runs: the ``--device`` names and their resolution to a ``torch.device``.

Training (``unitprobe train``, each configuration of ``unitprobe sweep``) and the analysis
commands (``analyze``, ``patch``, ``probe``, ``ablate``, ``attribute``) run on the CPU or on a
CUDA GPU; checkpoints are always saved from the CPU. ``auto`` takes the GPU when torch sees
one. Resolving a name never initializes CUDA: it asks only ``torch.cuda.is_available()`` (and
``torch.cuda.device_count()`` for ``cuda:N``). :func:`on_device` gives a model on a device
without moving the caller's; :func:`full_float32` keeps a GPU's float32 kernels from rounding
to TensorFloat-32, so an analysis on a GPU matches the CPU's up to float32 rounding.

Example
-------
>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("auto").type in ("cpu", "cuda")
True
"""

from __future__ import annotations

import contextlib
import copy
import re
from collections.abc import Iterator
from typing import TypeVar

import torch
from torch import nn

from unitprobe.errors import UnitprobeError

__all__ = [
    "DEFAULT_DEVICE",
    "DEVICES",
    "check_device",
    "full_float32",
    "on_device",
    "resolve_device",
]

#: The device names of ``--device``; the library also takes ``cuda:N`` (GPU number N).
DEVICES = ("cpu", "cuda", "auto")
#: Where training and the analysis commands run unless told otherwise.
DEFAULT_DEVICE = "cpu"
_CUDA_INDEX = re.compile(r"cuda:(\d+)")
Module = TypeVar("Module", bound=nn.Module)


def check_device(name: str | torch.device) -> str:
    """Return a device name unitprobe accepts, without looking for a GPU.

    Parameters
    ----------
    name : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (a ``torch.device`` counts as its
        name, ``torch.device("cuda", 1)`` as ``"cuda:1"``).

    Returns
    -------
    str
        The name.

    Raises
    ------
    UnitprobeError
        Any other name (the message lists the allowed ones).
    """
    text = str(name) if isinstance(name, torch.device) else name
    if not isinstance(text, str) or not (text in DEVICES or _CUDA_INDEX.fullmatch(text)):
        raise UnitprobeError(
            f"device == {name!r}, must be one of {', '.join(DEVICES)} (or cuda:N for GPU N)"
        )
    return text


def resolve_device(name: str | torch.device) -> torch.device:
    """The ``torch.device`` a device name stands for, checked against this machine.

    Parameters
    ----------
    name : str or torch.device
        ``"cpu"``; ``"cuda"`` (the current GPU) or ``"cuda:N"``; ``"auto"`` (``cuda`` when
        ``torch.cuda.is_available()``, else ``cpu``).

    Returns
    -------
    torch.device
        ``device(type='cpu')``, ``device(type='cuda')`` or ``device(type='cuda', index=N)``.

    Raises
    ------
    UnitprobeError
        An unknown name; ``cuda`` or ``cuda:N`` where torch sees no CUDA device (the message
        says to use ``--device cpu`` or ``auto``); ``cuda:N`` beyond the GPUs torch sees.
    """
    text = check_device(name)
    if text == "cpu":
        return torch.device("cpu")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        raise UnitprobeError(_no_cuda_message(text))
    index = _CUDA_INDEX.fullmatch(text)
    if index is not None and int(index.group(1)) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UnitprobeError(
            f"device == {text!r}, but torch sees {count} CUDA device(s): cuda:0 .. cuda:{count - 1}"
        )
    return torch.device(text)


def _no_cuda_message(name: str) -> str:
    """One line: no CUDA device, why if the torch build says so, and what to use instead."""
    gpu_build = torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None
    why = "" if gpu_build else " (this torch is a CPU-only build)"
    return (
        f"no CUDA device is available for device {name!r}{why}; use --device cpu or --device auto"
    )


def on_device(module: Module, device: str | torch.device) -> Module:
    """``module`` with its parameters on ``device``, never moving the caller's module.

    Parameters
    ----------
    module : nn.Module
    device : str or torch.device
        A name :func:`resolve_device` accepts, or a ``torch.device``.

    Returns
    -------
    nn.Module
        ``module`` itself when its parameters are already there (so on the CPU nothing is
        copied and results stay bit-identical), else a copy moved there (same mode).

    Raises
    ------
    UnitprobeError
        As :func:`resolve_device`.

    Example
    -------
    >>> cpu_model = on_device(model, "cpu")
    """
    where = resolve_device(device)
    param = next(module.parameters(), None)
    if param is None or _same_device(param.device, where):
        return module
    return copy.deepcopy(module).to(where)


def _same_device(have: torch.device, want: torch.device) -> bool:
    """``want`` without an index (``cuda``) matches any index of its type."""
    return have.type == want.type and (want.index is None or have.index == want.index)


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """Inside, a GPU computes float32 in float32: no TensorFloat-32 in cuDNN or cuBLAS.

    torch lets cuDNN's float32 LSTM kernels round their products to TF32 (10-bit mantissas)
    by default; the analysis needs float32 (its exact ablations and patches and its
    thresholds assume float32 rounding). The flags are torch's
    ``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cuda.matmul.allow_tf32``, set to
    False inside and restored after. Without CUDA nothing is touched (the CPU has no TF32);
    nor where torch's per-operator precision API has set cuDNN's convolutions and RNNs
    apart (torch then refuses to read the one flag): that choice is the user's.

    Example
    -------
    >>> with full_float32():
    ...     table = ablation_table(model.cuda(), dataset)
    """
    if not torch.cuda.is_available():
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    try:
        saved = (cudnn.allow_tf32, matmul.allow_tf32)
    except RuntimeError:  # per-operator precision set through torch's newer API
        saved = None
    if saved is None:
        yield
        return
    cudnn.allow_tf32, matmul.allow_tf32 = False, False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
