"""Hand-wired LSTMs whose units hold known lagged inputs: ground truth for the methods.

A planted model answers "which unit holds what?" by construction, so probes, ablations,
attributions and role assignment can be checked against it. Each unit is a delay-line tap:
unit ``u`` holds input feature ``f`` from ``lag`` steps back, scaled by ``gain``.

The gates are saturated by large biases (input and output gates open, forget gate shut), so
``c[t] = tanh(pre_g)`` and ``h[t] = tanh(c[t])``. A lag-0 tap reads the input directly
(``pre_g = gain * x_f[t]``); a lag-``k`` tap reads the lag-``k-1`` tap of the same feature through
the recurrent weights (``pre_g = h_src[t-1]``). With a small gain both tanh are close to linear,
so ``h_u[t] ≈ gain * x_f[t - lag]`` (at steps ``t >= lag``; 0 before).

A tap may also be a *mixture*, a mapping ``{(feature, lag): weight}``: the unit holds
``gain * sum(weight * x_feature[t - lag])``. Lag-0 entries read the input directly (``pre_g +=
gain * weight * x_f[t]``); a lag-``k`` entry reads the unit holding the plain tap ``(feature,
k - 1)`` through the recurrent weights (``pre_g += weight * h_src[t-1]``). Several units may hold
the same tap (redundant units); a lag chain reads the first unit that holds its source tap.

Example
-------
>>> # seed task inputs (K, X): units hold K[t], K[t-1], X[t], X[t-1]; unit 4 is dead
>>> model = planted_lstm(2, [(0, 0), (0, 1), (1, 0), (1, 1), None], n_outputs=1)
>>> # unit 2 holds the mixture 0.7*K[t] + 0.3*X[t]
>>> mixed = planted_lstm(2, [(0, 0), (1, 0), {(0, 0): 0.7, (1, 0): 0.3}])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import ModelConfig, UnitLSTM

__all__ = ["planted_lstm"]

Tap = tuple[int, int] | Mapping[tuple[int, int], float] | None


def planted_lstm(
    n_inputs: int,
    taps: Sequence[Tap],
    *,
    n_outputs: int = 1,
    readout: np.ndarray | None = None,
    gain: float = 0.1,
    saturation: float = 30.0,
) -> UnitLSTM:
    """Build a one-layer :class:`UnitLSTM` whose units are delay-line taps.

    Parameters
    ----------
    n_inputs : int
        Input features.
    taps : sequence of ``(feature, lag)``, mapping or None, length n_units
        What each unit holds; ``None`` makes a dead unit (all weights in and out zero, so its
        h is exactly 0). A tap with ``lag > 0`` needs the tap ``(feature, lag - 1)`` too. A
        mapping ``{(feature, lag): weight}`` makes a mixture unit (module docstring); its
        entries with ``lag > 0`` need the plain tap ``(feature, lag - 1)``.
    n_outputs : int, default 1
    readout : ndarray of shape (n_outputs, n_units), optional
        Readout weights (bias 0). Default zeros. Columns of dead units are forced to 0.
    gain : float, default 0.1
        Input scale of the lag-0 taps; ``h ≈ gain * x`` while ``|gain * x| << 1``.
    saturation : float, default 30
        Gate bias magnitude that pins the gates open (i, o) or shut (f).

    Returns
    -------
    UnitLSTM
        In eval mode, float32.
    """
    taps = list(taps)
    n_units = len(taps)
    model = UnitLSTM(ModelConfig(n_inputs=n_inputs, n_units=n_units, n_outputs=n_outputs))
    index: dict[tuple[int, int], int] = {}
    for u, tap in enumerate(taps):
        if isinstance(tap, (tuple, list)):
            index.setdefault(_check_tap(tap, u, n_inputs), u)
    w_ih = torch.zeros(4 * n_units, n_inputs)
    w_hh = torch.zeros(4 * n_units, n_units)
    bias = torch.zeros(4 * n_units)
    g_rows = slice(2 * n_units, 3 * n_units)  # gate order i, f, g, o
    for u, tap in enumerate(taps):
        if tap is None:
            continue
        bias[u] = saturation  # input gate open
        bias[n_units + u] = -saturation  # forget gate shut
        bias[3 * n_units + u] = saturation  # output gate open
        if isinstance(tap, Mapping):
            entries = _mixture(tap, u, n_inputs)
        elif isinstance(tap, (tuple, list)):
            entries = {_check_tap(tap, u, n_inputs): 1.0}
        else:
            raise UnitprobeError(f"tap {tap!r} of unit {u}: give (feature, lag), a mapping or None")
        for (feature, lag), weight in entries.items():
            if lag == 0:
                w_ih[g_rows][u, feature] += gain * weight
            elif (feature, lag - 1) in index:
                w_hh[g_rows][u, index[(feature, lag - 1)]] += weight
            else:
                raise UnitprobeError(
                    f"tap {_text(tap)} of unit {u} needs a unit holding {(feature, lag - 1)}"
                )
    out = np.zeros((n_outputs, n_units)) if readout is None else np.asarray(readout, float)
    if out.shape != (n_outputs, n_units):
        raise UnitprobeError(f"readout has shape {out.shape}, expected {(n_outputs, n_units)}")
    out = out.copy()
    out[:, [u for u, tap in enumerate(taps) if tap is None]] = 0.0
    with torch.no_grad():
        model.lstm.weight_ih_l0.copy_(w_ih)
        model.lstm.weight_hh_l0.copy_(w_hh)
        model.lstm.bias_ih_l0.copy_(bias)
        model.lstm.bias_hh_l0.zero_()
        model.readout.weight.copy_(torch.as_tensor(out, dtype=torch.float32))
        model.readout.bias.zero_()
    return model.eval()


def _check_tap(tap: tuple | list, u: int, n_inputs: int) -> tuple[int, int]:
    """``tap`` as ``(feature, lag)`` if it is a valid plain tap of unit ``u``."""
    ok = len(tap) == 2 and all(isinstance(v, (int, np.integer)) for v in tap)
    if not ok or not 0 <= tap[0] < n_inputs or tap[1] < 0:
        raise UnitprobeError(f"tap {_text(tap)} of unit {u} is invalid for {n_inputs} inputs")
    return int(tap[0]), int(tap[1])


def _mixture(tap: Mapping, u: int, n_inputs: int) -> dict[tuple[int, int], float]:
    """The entries of a mixture tap, checked: ``{(feature, lag): weight}``."""
    if not tap:
        raise UnitprobeError(f"mixture tap of unit {u} is empty; give {{(feature, lag): weight}}")
    out = {}
    for key, weight in tap.items():
        if not isinstance(key, tuple):
            raise UnitprobeError(f"mixture tap of unit {u} has key {key!r}, not (feature, lag)")
        if not isinstance(weight, (int, float, np.number)) or not math.isfinite(float(weight)):
            raise UnitprobeError(f"mixture tap of unit {u}: weight of {key} == {weight!r}")
        out[_check_tap(key, u, n_inputs)] = float(weight)
    return out


def _text(tap: Tap) -> str:
    return str(tuple(tap)) if isinstance(tap, list) else str(tap)
