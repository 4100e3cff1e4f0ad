"""Where training runs: the ``--device`` names and their resolution to a ``torch.device``.

Training (``unitprobe train``, each configuration of ``unitprobe sweep``) runs on the CPU or on
a CUDA GPU; checkpoints and every analysis stay on the CPU. ``auto`` takes the GPU when torch
sees one. Resolving a name never initializes CUDA: it asks only
``torch.cuda.is_available()`` (and ``torch.cuda.device_count()`` for ``cuda:N``).

Example
-------
>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("auto").type in ("cpu", "cuda")
True
"""

from __future__ import annotations

import re

import torch

from unitprobe.errors import UnitprobeError

__all__ = ["DEFAULT_DEVICE", "DEVICES", "check_device", "resolve_device"]

#: The device names of ``--device``; the library also takes ``cuda:N`` (GPU number N).
DEVICES = ("cpu", "cuda", "auto")
#: Where training runs unless told otherwise.
DEFAULT_DEVICE = "cpu"
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


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
