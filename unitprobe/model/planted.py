"""Hand-wired LSTMs whose units hold known lagged inputs: ground truth for the methods.

A planted model answers "which unit holds what?" by construction, so probes, ablations,
attributions and role assignment can be checked against it. Each unit is a delay-line tap:
unit ``u`` holds input feature ``f`` from ``lag`` steps back, scaled by ``gain``.

The gates are saturated by large biases (input and output gates open, forget gate shut), so
``c[t] = tanh(pre_g)`` and ``h[t] = tanh(c[t])``. A lag-0 tap reads the input directly
(``pre_g = gain * x_f[t]``); a lag-``k`` tap reads the lag-``k-1`` tap of the same feature through
the recurrent weights (``pre_g = h_src[t-1]``). With a small gain both tanh are close to linear,
so ``h_u[t] ≈ gain * x_f[t - lag]`` (at steps ``t >= lag``; 0 before). A smaller ``saturation``
makes the gates leaky: with bias magnitude ``s``, ``c[t] = sigmoid(-s) * c[t-1] + sigmoid(s) *
tanh(pre_g)`` (``sigmoid(-4) ≈ 0.018`` of the cell leaks through at ``s = 4``).

A tap may also be a *mixture*, a mapping ``{(feature, lag): weight}``: the unit holds
``gain * sum(weight * x_feature[t - lag])``. Lag-0 entries read the input directly (``pre_g +=
gain * weight * x_f[t]``); a lag-``k`` entry reads the unit holding the plain tap ``(feature,
k - 1)`` through the recurrent weights (``pre_g += weight * h_src[t-1]``). Several units may hold
the same tap (redundant units); a lag chain reads the first unit that holds its source tap.

A tap ``"random"`` makes an untrained *filler* unit: PyTorch's default LSTM initialisation for a
layer of this width (uniform in ``±1 / sqrt(n_units)``), drawn from a generator seeded by
``seed``. A filler unit reads every input and the other filler units' h, never a planted unit's,
and no planted unit reads it: an untrained network beside the planted one, so that what the
planted units hold does not change with filler and the filler holds nothing by construction
(``None``, a dead unit, is read by no unit).

Several layers: ``taps`` given as one list of taps per layer builds a stacked model. A tap
``(feature, lag)`` of a layer above the first holds ``feature[t - lag]`` too, by copying the unit
of the layer below that holds it (its h at the same step, through the input weights) or else by
a lag chain within its own layer (the unit holding ``(feature, lag - 1)`` one step back). Copies
and chains pass h on with weight 1, so ``gain`` scales the lag-0 taps of the first layer only.

:func:`planted_terms` names what every unit holds, in the form of the roles table.

Example
-------
>>> # seed task inputs (K, X): units hold K[t], K[t-1], X[t], X[t-1]; unit 4 is dead
>>> model = planted_lstm(2, [(0, 0), (0, 1), (1, 0), (1, 1), None], n_outputs=1)
>>> # unit 2 holds the mixture 0.7*K[t] + 0.3*X[t]
>>> mixed = planted_lstm(2, [(0, 0), (1, 0), {(0, 0): 0.7, (1, 0): 0.3}])
>>> # two layers: layer 1 copies K[t-1], chains it on to K[t-2]; unit 2 of each is filler
>>> deep = planted_lstm(2, [[(0, 0), (0, 1), "random"], [(0, 1), (0, 2), "random"]], seed=3)
>>> planted_terms([[(0, 0), (0, 1), "random"], [(0, 1), (0, 2), "random"]], ["K", "X"])
[['K[t]', 'K[t-1]', 'random'], ['K[t-1]', 'K[t-2]', 'random']]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch

from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import ModelConfig, UnitLSTM, layer_params
from unitprobe.schemas import formula_text
from unitprobe.validation import check_int

__all__ = ["planted_lstm", "planted_terms", "planted_term_sets"]

Tap = tuple[int, int] | Mapping[tuple[int, int], float] | Literal["random"] | None
RANDOM = "random"
# one source of a planted unit's cell candidate: ("input", feature) reads x scaled by gain,
# ("below", unit) the layer below's h at the same step, ("chain", unit) this layer's h one
# step back; each with its weight
Source = tuple[str, int, float]


def planted_lstm(
    n_inputs: int,
    taps: Sequence[Tap] | Sequence[Sequence[Tap]],
    *,
    n_outputs: int = 1,
    readout: np.ndarray | None = None,
    gain: float = 0.1,
    saturation: float = 30.0,
    seed: int = 0,
) -> UnitLSTM:
    """Build a :class:`UnitLSTM` whose units are delay-line taps.

    Parameters
    ----------
    n_inputs : int
        Input features.
    taps : sequence of taps (length n_units), or sequence of them (length n_layers)
        What each unit holds; one list of taps builds one layer, a list of such lists (all of
        one length) one layer per list. A tap is ``(feature, lag)``, a mapping, ``"random"``
        or ``None``. ``None`` makes a dead unit (all weights in and out zero, so its h is
        exactly 0). In the first layer a tap with ``lag > 0`` needs the tap ``(feature, lag -
        1)`` too; in a layer above, a tap ``(feature, lag)`` needs the layer below to hold it
        (it is copied) or, failing that, its own layer to hold ``(feature, lag - 1)`` (a lag
        chain). A mapping ``{(feature, lag): weight}`` makes a mixture unit (module docstring);
        each entry needs its source as a plain tap would. ``"random"`` makes an untrained
        filler unit, which reads and is read by no planted unit.
    n_outputs : int, default 1
    readout : ndarray of shape (n_outputs, n_units), optional
        Readout weights from the last layer (bias 0). Default zeros. Columns of dead units are
        forced to 0.
    gain : float, default 0.1
        Input scale of the first layer's lag-0 taps; ``h ≈ gain * x`` while ``|gain * x| <<
        1``. Copies and lag chains pass h on with weight 1.
    saturation : float, default 30
        Gate bias magnitude that pins the gates open (i, o) or shut (f). A small one leaks:
        a fraction ``sigmoid(-saturation)`` of the cell carries over each step.
    seed : int, default 0
        Seed of the filler units' weights, drawn from their own generator (torch's global
        random state is left as it was): the values ``nn.LSTM(n_inputs, n_units, n_layers)``
        draws after ``torch.manual_seed(seed)``, in the filler units' rows, except that no
        unit reads a dead one and filler reads no planted unit.

    Returns
    -------
    UnitLSTM
        In eval mode, float32, ``n_layers`` layers of ``n_units`` units.

    Example
    -------
    >>> model = planted_lstm(2, [(0, 0), (0, 1), "random", None], readout=np.ones((1, 4)))
    """
    layers = _layers(taps, n_inputs)
    n_units, n_layers = len(layers[0]), len(layers)
    seed = check_int(seed, "seed", minimum=0)
    config = ModelConfig(n_inputs, n_units, n_outputs, n_layers)
    with torch.random.fork_rng(devices=[]):  # its default init is overwritten below
        model = UnitLSTM(config)
    generator = torch.Generator().manual_seed(seed)
    out = np.zeros((n_outputs, n_units)) if readout is None else np.asarray(readout, float)
    if out.shape != (n_outputs, n_units):
        raise UnitprobeError(f"readout has shape {out.shape}, expected {(n_outputs, n_units)}")
    out = out.copy()
    out[:, _dead(layers[-1])] = 0.0
    with torch.no_grad():
        for k, (layer, sources) in enumerate(zip(layers, _wiring(layers), strict=True)):
            below = layers[k - 1] if k else None
            params = _layer_params(layer, sources, below, n_inputs, gain, saturation, generator)
            for param, value in zip(layer_params(model, k), params, strict=True):
                param.copy_(value)
        model.readout.weight.copy_(torch.as_tensor(out, dtype=torch.float32))
        model.readout.bias.zero_()
    return model.eval()


def planted_terms(
    taps: Sequence[Tap] | Sequence[Sequence[Tap]], input_names: Sequence[str]
) -> list[list[str | None]]:
    """What every unit of ``planted_lstm(len(input_names), taps)`` holds, as the roles name it.

    Parameters
    ----------
    taps : as in :func:`planted_lstm`
    input_names : sequence of str, length n_inputs
        The input series' names (``["K", "X"]``).

    Returns
    -------
    list (per layer) of list (per unit) of str or None
        ``"K[t-1]"`` for a plain tap; for a mixture the formula ``"0.7·K[t] + 0.3·X[t]"``
        (coefficients scaled to absolute sum 1, ``:.2g``, largest first, ties by name then
        lag, a negative one written ``- 0.3·X[t]``; zero weights left out, a single term
        named plainly); ``None`` for a dead unit and ``"random"`` for a filler unit.

    Example
    -------
    >>> planted_terms([(0, 0), (0, 1), {(1, 0): -0.3, (0, 0): 0.7}, None], ["K", "X"])
    [['K[t]', 'K[t-1]', '0.7·K[t] - 0.3·X[t]', None]]
    """
    names = list(input_names)
    layers = _layers(taps, len(names))
    _wiring(layers)  # only networks planted_lstm can build
    return [[_formula(unit, names) for unit in layer] for layer in layers]


def planted_term_sets(
    taps: Sequence[Tap] | Sequence[Sequence[Tap]], input_names: Sequence[str]
) -> list[list[frozenset[str]]]:
    """The terms every unit holds, as sets: :func:`planted_terms` without the coefficients.

    Returns
    -------
    list (per layer) of list (per unit) of frozenset of str
        ``{"K[t]", "X[t]"}`` for the mixture ``{(0, 0): 0.7, (1, 0): 0.3}``; empty for dead
        and filler units, which hold no planted term.

    Example
    -------
    >>> [layer] = planted_term_sets([(0, 0), {(0, 0): 0.7, (1, 0): 0.3}, "random"], ["K", "X"])
    >>> layer == [{"K[t]"}, {"K[t]", "X[t]"}, set()]
    True
    """
    names = list(input_names)
    layers = _layers(taps, len(names))
    _wiring(layers)
    return [[frozenset(_terms(unit, names)) for unit in layer] for layer in layers]


def _layer_params(
    layer: list,
    sources: list[list[Source] | None],
    below: list | None,
    n_inputs: int,
    gain: float,
    saturation: float,
    generator: torch.Generator,
) -> list[torch.Tensor]:
    """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of one planted layer.

    Every layer draws PyTorch's default initialisation (in its parameter order) and keeps the
    rows of its filler units only, so a filler unit's weights depend on the seed, its place
    and the width, not on what the other units are.
    """
    n_units = len(layer)
    n_in = n_inputs if below is None else n_units
    bound = 1.0 / math.sqrt(n_units)
    shapes = [(4 * n_units, n_in), (4 * n_units, n_units), (4 * n_units,), (4 * n_units,)]
    # a new network's weights, made on the CPU (where the generator draws)
    drawn = [
        torch.empty(s, device="cpu").uniform_(-bound, bound, generator=generator) for s in shapes
    ]
    w_ih, w_hh, bias, bias_hh = (torch.zeros(s, device="cpu") for s in shapes)
    g_rows = slice(2 * n_units, 3 * n_units)  # gate order i, f, g, o
    for u, unit in enumerate(layer):
        if unit is None:
            continue
        if unit == RANDOM:
            rows = [u, n_units + u, 2 * n_units + u, 3 * n_units + u]
            for param, value in zip((w_ih, w_hh, bias, bias_hh), drawn, strict=True):
                param[rows] = value[rows]
            continue
        bias[u] = saturation  # input gate open
        bias[n_units + u] = -saturation  # forget gate shut
        bias[3 * n_units + u] = saturation  # output gate open
        for kind, column, weight in sources[u]:
            if kind == "input":
                w_ih[g_rows][u, column] += gain * weight
            elif kind == "below":
                w_ih[g_rows][u, column] += weight
            else:
                w_hh[g_rows][u, column] += weight
    w_hh[:, _dead(layer)] = 0.0  # a dead unit is read by no unit, filler included
    filler = [r for u, unit in enumerate(layer) if unit == RANDOM
              for r in (u, n_units + u, 2 * n_units + u, 3 * n_units + u)]  # fmt: skip
    # filler reads no planted unit: an untrained network beside the planted one
    w_hh[np.ix_(filler, _planted(layer))] = 0.0
    if below is not None:
        w_ih[:, _dead(below)] = 0.0
        w_ih[np.ix_(filler, _planted(below))] = 0.0
    return [w_ih, w_hh, bias, bias_hh]


def _planted(layer: list) -> list[int]:
    """The units of a layer that hold a planted tap (neither dead nor filler)."""
    return [u for u, unit in enumerate(layer) if unit is not None and unit != RANDOM]


def _wiring(layers: list[list]) -> list[list[list[Source] | None]]:
    """Where each planted unit's cell candidate reads from (None for dead and filler units).

    Raises a :class:`UnitprobeError` naming the unit when a source is missing.
    """
    wiring = []
    held_below: dict[tuple[int, int], int] = {}
    for k, layer in enumerate(layers):
        held: dict[tuple[int, int], int] = {}
        for u, unit in enumerate(layer):
            if isinstance(unit, tuple):
                held.setdefault(unit, u)
        sources: list[list[Source] | None] = []
        for u, unit in enumerate(layer):
            if unit is None or unit == RANDOM:
                sources.append(None)
                continue
            entries = unit if isinstance(unit, dict) else {unit: 1.0}
            sources.append([])
            for (feature, lag), weight in entries.items():
                if k == 0 and lag == 0:
                    sources[u].append(("input", feature, weight))
                elif k > 0 and (feature, lag) in held_below:
                    sources[u].append(("below", held_below[(feature, lag)], weight))
                elif lag > 0 and (feature, lag - 1) in held:
                    sources[u].append(("chain", held[(feature, lag - 1)], weight))
                else:
                    raise UnitprobeError(_missing(unit, u, k, len(layers), (feature, lag)))
        wiring.append(sources)
        held_below = held
    return wiring


def _missing(unit: tuple | dict, u: int, k: int, n_layers: int, cell: tuple[int, int]) -> str:
    """The error message of a tap entry ``cell`` of unit ``u`` of layer ``k`` with no source."""
    feature, lag = cell
    text = f"tap {_text(unit)} of {_where(u, k, n_layers)} needs a unit holding"
    if k == 0:
        return f"{text} {(feature, lag - 1)}"
    if lag == 0:
        return f"{text} {cell} in layer {k - 1}"
    return f"{text} {cell} in layer {k - 1} or {(feature, lag - 1)} in layer {k}"


def _layers(taps: Sequence, n_inputs: int) -> list[list]:
    """``taps`` checked, one list per layer; each unit ``None``, ``"random"``, ``(feature,
    lag)`` or ``{(feature, lag): weight}``."""
    taps = list(taps)
    nested = [_is_layer(tap) for tap in taps]
    if taps and all(nested):
        layers = [list(layer) for layer in taps]
    elif any(nested):
        raise UnitprobeError(
            "taps mixes single taps and lists of taps; give one tap per unit, or one list "
            "of taps per layer"
        )
    else:
        layers = [taps]
    for k, layer in enumerate(layers[1:], start=1):
        if len(layer) != len(layers[0]):
            raise UnitprobeError(
                f"layer {k} has {len(layer)} taps, layer 0 has {len(layers[0])}; every layer "
                "has the same number of units"
            )
    return [[_unit(tap, u, k, len(layers), n_inputs) for u, tap in enumerate(layer)]
            for k, layer in enumerate(layers)]  # fmt: skip


def _is_layer(tap: object) -> bool:
    """Whether an entry of ``taps`` is a list of taps (no plain tap holds anything but
    numbers, no list of taps holds a number)."""
    return isinstance(tap, (list, tuple)) and not any(
        isinstance(v, (int, float, np.number)) for v in tap
    )


def _unit(tap: Tap, u: int, k: int, n_layers: int, n_inputs: int) -> object:
    """One unit's tap, checked and in canonical form (see :func:`_layers`)."""
    where = _where(u, k, n_layers)
    if tap is None or (isinstance(tap, str) and tap == RANDOM):
        return tap
    if isinstance(tap, Mapping):
        return _mixture(tap, where, n_inputs)
    if isinstance(tap, (tuple, list)):
        return _check_tap(tap, where, n_inputs)
    raise UnitprobeError(
        f"tap {tap!r} of {where}: give (feature, lag), a mapping, {RANDOM!r} or None"
    )


def _where(u: int, k: int, n_layers: int) -> str:
    return f"unit {u}" if n_layers == 1 else f"unit {u} of layer {k}"


def _check_tap(tap: tuple | list, where: str, n_inputs: int) -> tuple[int, int]:
    """``tap`` as ``(feature, lag)`` if it is a valid plain tap of the unit ``where``."""
    ok = len(tap) == 2 and all(isinstance(v, (int, np.integer)) for v in tap)
    if not ok or not 0 <= tap[0] < n_inputs or tap[1] < 0:
        raise UnitprobeError(f"tap {_text(tap)} of {where} is invalid for {n_inputs} inputs")
    return int(tap[0]), int(tap[1])


def _mixture(tap: Mapping, where: str, n_inputs: int) -> dict[tuple[int, int], float]:
    """The entries of a mixture tap, checked: ``{(feature, lag): weight}``."""
    if not tap:
        raise UnitprobeError(f"mixture tap of {where} is empty; give {{(feature, lag): weight}}")
    out = {}
    for key, weight in tap.items():
        if not isinstance(key, tuple):
            raise UnitprobeError(f"mixture tap of {where} has key {key!r}, not (feature, lag)")
        if not isinstance(weight, (int, float, np.number)) or not math.isfinite(float(weight)):
            raise UnitprobeError(f"mixture tap of {where}: weight of {key} == {weight!r}")
        out[_check_tap(key, where, n_inputs)] = float(weight)
    return out


def _dead(layer: list) -> list[int]:
    return [u for u, unit in enumerate(layer) if unit is None]


def _ranked(unit: object, names: list[str]) -> list[tuple[str, float]]:
    """A planted unit's terms ``NAME[t-lag]`` with nonzero weight, largest ``|weight|`` first
    (ties by name, then lag: the order of the roles' formulas)."""
    entries = unit if isinstance(unit, dict) else {unit: 1.0}
    ranked = sorted(
        ((names[f], lag, w) for (f, lag), w in entries.items() if w != 0.0),
        key=lambda item: (-abs(item[2]), item[0], item[1]),
    )
    return [(f"{name}[t]" if lag == 0 else f"{name}[t-{lag}]", w) for name, lag, w in ranked]


def _terms(unit: object, names: list[str]) -> list[str]:
    if unit is None or unit == RANDOM:
        return []
    return [term for term, _ in _ranked(unit, names)]


def _formula(unit: object, names: list[str]) -> str | None:
    """What a unit holds: a term, a formula (``"0.7·K[t] + 0.3·X[t]"``), ``"random"`` or None."""
    if unit is None or unit == RANDOM:
        return unit
    ranked = _ranked(unit, names)
    if len(ranked) <= 1:
        return ranked[0][0] if ranked else None
    return formula_text(ranked)


def _text(tap: object) -> str:
    return str(tuple(tap)) if isinstance(tap, list) else str(tap)
