"""Foreign checkpoint layouts: one ``nn.LSTM`` and one linear readout, wherever they sit.

Checkpoints are rarely a bare ``{"lstm.weight_ih_l0": ..., "readout.bias": ...}``. People save
``{"state_dict": ...}``, the PyTorch tutorial's ``{"model_state_dict": ..., "epoch": ...,
"optimizer_state_dict": ...}``, Lightning's ``{"state_dict": {"model.rnn.weight_ih_l0": ...,
"model.fc.weight": ...}}``, ``DataParallel``'s ``module.`` prefixes, or their own module names
(``encoder.lstm.*``, ``head.*``). :func:`canonical_state` finds the weights in all of them and
renames them to unitprobe's keys:

- **the tensors**: the dict itself, or the one dict of tensors found under its keys (two levels
  deep at most) that holds an LSTM;
- **the LSTM**: every prefix ``P`` with a ``P + "weight_ih_l0"`` key; ``P + "weight_hh_l{k}"``
  of shape ``(4 H, H)`` makes it an LSTM (``3 H`` is a GRU, ``H`` a plain RNN: refused), and
  ``_reverse`` or ``weight_hr`` keys (bidirectional, ``proj_size``) are refused. Biases may be
  absent (``bias=False``, all of them): they are zeros;
- **the readout**: a prefix ``Q`` whose ``Q + "weight"`` is a 2-D tensor reading the last
  layer's ``H`` units (``Q + "bias"`` optional, zeros if absent). Any other tensor left over
  means the head is more than one linear layer, and is refused by name.

Exactly one reading must fit; otherwise the error lists the candidates, and ``lstm`` /
``readout`` (``--lstm KEY_PREFIX --readout KEY_PREFIX``) choose among them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from unitprobe.errors import CheckpointError

__all__ = ["Layout", "canonical_state", "find_layout"]

_LSTM_KEY = re.compile(r"^(.*)weight_ih_l0$")
#: Keys a tensor dict may sit under in a training checkpoint, most specific first.
_NESTS = ("state_dict", "model_state_dict", "model", "net", "module", "network", "weights")


@dataclass(frozen=True)
class Layout:
    """Where the weights sit: the key path of the tensor dict (``()`` for the top level), the
    LSTM's key prefix and layer count, and the readout's key prefix."""

    where: tuple[str, ...]
    lstm: str
    n_layers: int
    readout: str

    def describe(self) -> str:
        """One line: where each part was found."""
        inside = "".join(f"[{k!r}]" for k in self.where) or "the top level"
        return (
            f"LSTM at '{self.lstm}*' ({self.n_layers} layer(s)) and readout at "
            f"'{self.readout}*' in {inside}"
        )


def _tensor_dicts(
    obj: Any, where: tuple[str, ...] = (), depth: int = 2
) -> Iterator[tuple[tuple[str, ...], Mapping[str, Any]]]:
    """(key path, dict) of every dict holding tensors, up to ``depth`` levels below ``obj``."""
    if not isinstance(obj, Mapping):
        return
    if any(isinstance(v, Tensor) for v in obj.values()):
        yield where, obj
    if depth == 0:
        return
    nested = [k for k in _NESTS if isinstance(obj.get(k), Mapping)]
    nested += [k for k in obj if isinstance(k, str) and k not in nested
               and isinstance(obj[k], Mapping)]  # fmt: skip
    for key in nested:
        yield from _tensor_dicts(obj[key], (*where, key), depth - 1)


def _lstm_prefixes(state: Mapping[str, Any]) -> list[str]:
    found = []
    for key in state:
        match = _LSTM_KEY.match(str(key))
        if match and isinstance(state[key], Tensor):
            found.append(match.group(1))
    return sorted(found)


def _check_lstm(state: Mapping[str, Any], prefix: str, where: str) -> tuple[int, int]:
    """(layers, units) of the LSTM at ``prefix``; refuses what unitprobe cannot analyze."""
    for key in state:
        name = str(key)
        if not name.startswith(prefix):
            continue
        if name.endswith("_reverse"):
            raise CheckpointError(
                f"{where}: '{name}' shows a bidirectional LSTM; unitprobe analyzes one direction "
                "of recurrence (save an LSTM with bidirectional=False)"
            )
        if name[len(prefix) :].startswith("weight_hr_l"):
            raise CheckpointError(
                f"{where}: '{name}' shows an LSTM with proj_size; unitprobe reads h as the units "
                "themselves (save an LSTM with proj_size=0)"
            )
    w_hh = state.get(f"{prefix}weight_hh_l0")
    if not isinstance(w_hh, Tensor) or w_hh.ndim != 2:
        raise CheckpointError(f"{where}: '{prefix}weight_ih_l0' has no 2-D '{prefix}weight_hh_l0'")
    rows, units = w_hh.shape
    kind = {3 * units: "a GRU", units: "a plain RNN"}.get(rows)
    if kind is not None and rows != 4 * units:
        raise CheckpointError(
            f"{where}: '{prefix}weight_hh_l0' has shape {tuple(w_hh.shape)}: {kind}, not an "
            "LSTM (whose gates i, f, g, o need 4 x units rows)"
        )
    n_layers = 1
    while f"{prefix}weight_ih_l{n_layers}" in state:
        n_layers += 1
    last = state.get(f"{prefix}weight_hh_l{n_layers - 1}")
    last = last if isinstance(last, Tensor) and last.ndim == 2 else w_hh  # else: missing keys
    # the units are a quarter of the gate rows; other shape errors are the loader's to name
    return n_layers, int(last.shape[0] // 4)


def _lstm_keys(prefix: str, n_layers: int) -> list[str]:
    return [f"{prefix}{p}_l{k}" for k in range(n_layers)
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]  # fmt: skip


def _readouts(state: Mapping[str, Any], lstm: str, units: int) -> list[str]:
    """Prefixes ``Q`` of 2-D ``Q + 'weight'`` tensors outside the LSTM that read ``units``."""
    found = []
    for key, value in state.items():
        name = str(key)
        if name.startswith(lstm) and _LSTM_PART.match(name[len(lstm) :]):
            continue
        if name.endswith("weight") and isinstance(value, Tensor) and value.ndim == 2:
            if value.shape[1] == units:
                found.append(name[: -len("weight")])
    return sorted(found)


_LSTM_PART = re.compile(r"^(weight|bias)_(ih|hh)_l\d+$")


def find_layout(
    obj: Any, where: str = "checkpoint", *, lstm: str | None = None, readout: str | None = None
) -> Layout:
    """Where the LSTM and its readout sit in a loaded checkpoint (module doc).

    Parameters
    ----------
    obj : dict
        What ``torch.load`` returned.
    where : str
        The file, for messages.
    lstm, readout : str, optional
        Key prefixes that choose among several candidates (``"model.rnn."``, ``"head."``).

    Raises
    ------
    CheckpointError
        No LSTM; several readings and no choice; a bidirectional, projected, GRU or plain-RNN
        recurrence; a head that is not one linear layer; a chosen prefix that is not there.
    """
    readings = [(path, state, p) for path, state in _tensor_dicts(obj)
                for p in _lstm_prefixes(state)]  # fmt: skip
    if not readings:
        found = sorted(map(str, obj))[:6] if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(
            f"{where} is neither a unitprobe checkpoint nor an LSTM state_dict "
            f"(expected keys 'lstm.weight_ih_l0', ..., 'readout.weight'; found {found})"
        )
    if lstm is not None:
        readings = [r for r in readings if r[2] == lstm]
        if not readings:
            raise CheckpointError(f"{where}: no LSTM at --lstm '{lstm}' (no '{lstm}weight_ih_l0')")
    if len(readings) > 1:
        names = ", ".join(f"'{p}'" + _at(w) for w, _, p in readings)
        raise CheckpointError(
            f"{where} holds several LSTMs ({names}); choose one with --lstm KEY_PREFIX"
        )
    path, state, prefix = readings[0]
    n_layers, units = _check_lstm(state, prefix, where)
    heads = _readouts(state, prefix, units)
    if readout is not None:
        if readout not in heads:
            raise CheckpointError(
                f"{where}: no linear readout of {units} units at --readout '{readout}' "
                f"(candidates: {', '.join(map(repr, heads)) or 'none'})"
            )
        heads = [readout]
    if not heads:
        raise CheckpointError(
            f"{where}: no linear readout of the LSTM's {units} units (a 2-D '...weight' "
            f"with {units} columns outside '{prefix}*')"
        )
    if len(heads) > 1:
        raise CheckpointError(
            f"{where}: several linear layers read the LSTM's {units} units "
            f"({', '.join(map(repr, heads))}); choose one with --readout KEY_PREFIX"
        )
    head = heads[0]
    if readout is None:
        used = {*_lstm_keys(prefix, n_layers), f"{head}weight", f"{head}bias"}
        rest = sorted(str(k) for k, v in state.items()
                      if isinstance(v, Tensor) and str(k) not in used)  # fmt: skip
        if rest:
            raise CheckpointError(
                f"{where}: the head is more than one linear layer after the LSTM: "
                f"{', '.join(rest[:4])} also hold weights; unitprobe analyzes an LSTM with a "
                "linear readout (choose the parts with --lstm and --readout to analyze them)"
            )
    return Layout(where=path, lstm=prefix, n_layers=n_layers, readout=head)


def _at(where: tuple[str, ...]) -> str:
    return f" in {''.join(f'[{k!r}]' for k in where)}" if where else ""


def canonical_state(
    obj: Any, where: str = "checkpoint", *, lstm: str | None = None, readout: str | None = None
) -> tuple[dict[str, Tensor], Layout]:
    """The weights of :func:`find_layout`'s reading under unitprobe's keys (``lstm.*_l{k}``,
    ``readout.weight``, ``readout.bias``), absent biases as zeros; and the layout."""
    layout = find_layout(obj, where, lstm=lstm, readout=readout)
    state: Mapping[str, Any] = obj
    for key in layout.where:
        state = state[key]
    out: dict[str, Tensor] = {}
    # bias=False leaves out every bias; a file missing only some of them is damaged, and the
    # missing ones stay missing (the loader names them)
    no_bias = not any(str(k).startswith(f"{layout.lstm}bias_") for k in state)
    for k in range(layout.n_layers):
        w_hh = state[f"{layout.lstm}weight_hh_l{k}"]
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            value = state.get(f"{layout.lstm}{part}_l{k}")
            if value is None and no_bias and part.startswith("bias"):
                value = torch.zeros(w_hh.shape[0], dtype=w_hh.dtype, device=w_hh.device)
            if value is not None:
                out[f"lstm.{part}_l{k}"] = value
    weight = state[f"{layout.readout}weight"]
    bias = state.get(f"{layout.readout}bias")
    out["readout.weight"] = weight
    if bias is None:  # Linear(bias=False)
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
    out["readout.bias"] = bias
    return out, layout
