"""Attributions for a :class:`~unitprobe.model.lstm.UnitLSTM`: what drives an output,
what a unit reads.

Three kinds of attribution, one tidy table (``attribution.csv`` in DESIGN.md):

* ``input_lag`` — output ``o`` at step ``t`` ← input feature ``f`` at step ``t - lag``
  (:func:`input_lag_attribution`; Captum ``IntegratedGradients``, ``Saliency``,
  ``InputXGradient`` on the fused forward);
* ``unit`` — output ``o`` ← hidden unit ``u`` of a layer, its states at all steps summed
  (:func:`unit_attribution`; Captum ``LayerIntegratedGradients``, ``LayerConductance``,
  ``LayerGradientXActivation`` on that layer's hidden state);
* ``unit_input_lag`` — unit ``u`` at step ``t`` ← input ``f`` at step ``t - lag``, the unit's
  receptive field (:func:`receptive_fields`; the Jacobian or integrated gradients of every unit
  at once by forward-mode differentiation, checked against Captum's ``NeuronGradient`` and
  ``NeuronIntegratedGradients``). :func:`unit_formula` reads it as a short linear formula.

Every table has the columns of :data:`COLUMNS`: ``method``, ``target`` (output name, or the site
name such as ``"h"`` for receptive fields), ``kind``, ``feature``, ``lag`` (0 = the same step),
``layer``, ``unit``, ``attribution`` (mean of the absolute per-example attribution) and
``attribution_signed`` (mean of the signed one). Columns that do not apply to a kind are empty
(``<NA>``/``None``). Means run over sequences and target steps.

Conventions
-----------
* Inputs are in the model's normalized units. The ``"zero"`` baseline is 0 in those units, which
  for standardized data is the dataset mean of every feature; the ``"mean"`` baseline is the
  per-feature, per-step mean over the sequences passed in, shape (n_steps, n_features).
  Input x lag attributions default to ``"mean"``: Fibonacci-type series grow with t, so an
  early input sits far from the overall mean (0) while carrying little information, and a
  zero baseline credits old lags for merely being early (on a trained ``fibonacci`` model,
  lags 0 and 1 get 29% of the mass from 0 and 70% from the per-step mean). For stationary
  tasks the two baselines coincide.
* Target steps: ``steps=None`` picks the last ``min(10, T - max_lag)`` steps, so every lag up to
  ``max_lag`` exists at every target step (receptive fields, which cost the same for any number
  of steps, use every step ``t >= max_lag``). ``max_lag=None`` means ``min(10, T - 1)``. If
  explicit steps are earlier than a lag, that lag is averaged over the steps where it exists.
* Sampling: input-lag and unit attributions evaluate at most ``max_examples`` (sequence, target
  step) pairs, spread evenly over the target steps and drawn without repetition with
  ``seed``; receptive fields use at most ``max_sequences`` sequences.
* Integrated gradients use Gauss-Legendre quadrature (Captum's default). Their completeness
  error (``sum of attributions - (F(x) - F(baseline))``) is reported in ``df.attrs``:
  ``convergence_delta_max`` (largest absolute error) and ``convergence_delta_mean``.
* All computations run with cuDNN disabled (cuDNN refuses the backward pass of an RNN in eval
  mode) and with the model's parameters temporarily frozen; they run on the model's device.

Example
-------
>>> from unitprobe.model.planted import planted_lstm
>>> model = planted_lstm(2, [(0, 0), (0, 1)], n_outputs=1, readout=np.array([[0.0, 1.0]]))
>>> x = np.random.default_rng(0).normal(size=(64, 12, 2)).astype(np.float32)
>>> rf = receptive_fields(model, x, ["K", "X"])
>>> unit_formula(rf, layer=0, unit=1, top=1)
'0.0962·K[t-1]'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    LayerConductance,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    Saliency,
)
from torch import Tensor, nn
from tqdm.auto import tqdm

from unitprobe import schemas
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.model.lstm import SITES, UnitLSTM, as_tensor

__all__ = [
    "COLUMNS",
    "INPUT_METHODS",
    "UNIT_METHODS",
    "FIELD_METHODS",
    "BASELINES",
    "input_lag_attribution",
    "input_lag_per_sequence",
    "unit_attribution",
    "unit_attribution_per_sequence",
    "receptive_fields",
    "unit_formula",
    "attribution_table",
    "no_cudnn",
]

COLUMNS = schemas.ATTRIBUTION
INPUT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient")
UNIT_METHODS = ("layer_integrated_gradients", "layer_conductance", "layer_gradient_x_activation")
FIELD_METHODS = ("gradient", "integrated_gradients")
BASELINES = ("zero", "mean")
DEFAULT_MAX_LAG = 10
DEFAULT_N_TARGET_STEPS = 10

_DTYPES = {
    "method": object,
    "target": object,
    "kind": object,
    "feature": object,
    "lag": "Int64",
    "layer": "Int64",
    "unit": "Int64",
    "attribution": "float64",
    "attribution_signed": "float64",
}

Baseline = str | np.ndarray
_INTEGRATED_LAYER_METHODS = {
    "layer_integrated_gradients": LayerIntegratedGradients,
    "layer_conductance": LayerConductance,
}


# ---------------------------------------------------------------------------------------------
# Context: cuDNN off, parameters frozen
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_cudnn() -> Iterator[None]:
    """Disable cuDNN inside a ``with`` block (restored afterwards, also on error).

    cuDNN refuses the backward pass of an RNN in eval mode, which every gradient-based
    attribution of an LSTM needs; PyTorch's native kernels have no such limit.
    """
    with torch.backends.cudnn.flags(enabled=False):
        yield


@contextlib.contextmanager
def _attribution_mode(model: nn.Module) -> Iterator[None]:
    """cuDNN off and parameters frozen (no weight gradients computed); both restored."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with no_cudnn():
            yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------
# Forward functions handed to Captum
# ---------------------------------------------------------------------------------------------


class _LSTMLayer(nn.Module):
    """One LSTM layer that returns only its hidden states, shape (N, T, H)."""

    def __init__(self, model: UnitLSTM, layer: int) -> None:
        super().__init__()
        n_in = model.config.n_inputs if layer == 0 else model.config.n_units
        self.lstm = nn.LSTM(n_in, model.config.n_units, 1, batch_first=True)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(self.lstm, f"{name}_l0").data = getattr(model.lstm, f"{name}_l{layer}").data
        self.lstm.flatten_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.lstm(x)[0]


class _LayerStack(nn.Module):
    """The model as a stack of one-layer modules, so Captum can hook any layer's hidden state.

    Shares storage with ``model`` (no copies); computes the same function as ``model.forward``.
    """

    def __init__(self, model: UnitLSTM) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_LSTMLayer(model, k) for k in range(model.config.n_layers))
        self.readout = model.readout
        self.to(next(model.parameters()).device)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.readout(x)


class _AtSteps(nn.Module):
    """``forward(z + offset)`` read at one step per example: (B, T, F) -> (B, n_outputs).

    Attributing to ``z = x - baseline`` from ``z = 0`` is attributing to ``x`` from the
    baseline; the per-example step picks the target step, so one Captum call covers many
    (sequence, step) pairs.
    """

    def __init__(self, forward: nn.Module) -> None:
        super().__init__()
        self.inner = forward

    def forward(self, z: Tensor, offset: Tensor, step: Tensor) -> Tensor:
        out = self.inner(z + offset)  # (B, T, O)
        return out[torch.arange(out.shape[0], device=out.device), step]  # (B, O)


# ---------------------------------------------------------------------------------------------
# Validation and sampling helpers
# ---------------------------------------------------------------------------------------------


def _resolve_data(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
) -> tuple[Tensor, list[str], list[str]]:
    """Accept an array or a dataset-like object; return inputs on the model's device and names."""
    if not isinstance(model, UnitLSTM):
        raise UnitprobeError(f"model must be a UnitLSTM, got {type(model).__name__}")
    if hasattr(inputs, "inputs"):  # a dataset: take its arrays and names unless given
        if input_names is None:
            input_names = getattr(inputs, "input_names", None)
        if output_names is None:
            output_names = getattr(inputs, "output_names", None)
        inputs = inputs.inputs
    x = as_tensor(inputs if isinstance(inputs, Tensor) else np.asarray(inputs, np.float32), model)
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or infinite values")
    n_in, n_out = model.config.n_inputs, model.config.n_outputs
    in_names = [f"x{k}" for k in range(n_in)] if input_names is None else list(input_names)
    out_names = [f"y{k}" for k in range(n_out)] if output_names is None else list(output_names)
    if len(in_names) != n_in:
        raise DataError(f"{len(in_names)} input_names {in_names} for a model with {n_in} inputs")
    if len(out_names) != n_out:
        raise DataError(
            f"{len(out_names)} output_names {out_names} for a model with {n_out} outputs"
        )
    return x, [str(s) for s in in_names], [str(s) for s in out_names]


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UnitprobeError(f"{name} == {value!r}, must be one of {', '.join(allowed)}")


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UnitprobeError(f"{name} == {value!r}, must be an integer >= {minimum}")


def _resolve_max_lag(max_lag: int | None, n_steps: int) -> int:
    _check_int("max_lag", max_lag, 0, allow_none=True)
    if max_lag is None:
        return min(DEFAULT_MAX_LAG, n_steps - 1)
    if max_lag > n_steps - 1:
        raise UnitprobeError(f"max_lag == {max_lag}, must be <= n_steps - 1 == {n_steps - 1}")
    return int(max_lag)


def _resolve_steps(
    steps: int | Sequence[int] | None, n_steps: int, max_lag: int, last: int | None
) -> np.ndarray:
    """Sorted unique target steps; None: the last ``last`` steps >= max_lag (all if None)."""
    if steps is None:
        first = max_lag if last is None else max(max_lag, n_steps - last)
        return np.arange(first, n_steps)
    raw = np.atleast_1d(np.asarray(steps))
    if raw.size == 0 or raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise UnitprobeError(f"steps == {steps!r}, must be an int or a non-empty list of ints")
    bad = raw[(raw < -n_steps) | (raw >= n_steps)]
    if bad.size:
        raise UnitprobeError(f"steps {bad.tolist()} out of range for sequences of {n_steps} steps")
    return np.unique(raw % n_steps)


def _baseline_tensor(baseline: Baseline, x: Tensor) -> Tensor:
    """The baseline as a (T, F) or (N, T, F) tensor on x's device."""
    if isinstance(baseline, str):
        _check_choice("baseline", baseline, BASELINES)
        return torch.zeros_like(x[0]) if baseline == "zero" else x.mean(dim=0)
    b = torch.as_tensor(np.asarray(baseline), dtype=x.dtype, device=x.device)
    if b.shape not in (x.shape[1:], x.shape):
        raise DataError(
            f"baseline has shape {tuple(b.shape)}, expected (n_steps, n_features) == "
            f"{tuple(x.shape[1:])} or the inputs' shape {tuple(x.shape)}"
        )
    return b


def _subsample(n: int, max_n: int | None, seed: int) -> np.ndarray:
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def _sampled_pairs(
    x: Tensor, baseline: Baseline, steps: np.ndarray, max_examples: int | None, seed: int
) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """The baseline tensor and :func:`_pairs` for ``x`` (a baseline shared by the pairs)."""
    base = _baseline_tensor(baseline, x)
    if base.ndim == 3:
        raise DataError("a per-sequence baseline cannot be used with pair sampling; pass (T, F)")
    return base, *_pairs(x.shape[0], steps, max_examples, seed)


def _pairs(
    n_sequences: int, steps: np.ndarray, max_examples: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, step) pairs: no pair twice, steps balanced, sequences used evenly.

    Pair ``k`` has step ``steps[k % S]`` (so every step gets the same number of pairs, within
    one); each step takes its own run of consecutive positions in a random permutation of the
    sequences, the runs laid end to end (modulo N). Below ``N`` pairs no sequence repeats;
    ``max_examples=None`` gives all ``N * S`` pairs.
    """
    n_steps = len(steps)
    total = n_sequences * n_steps
    m = total if max_examples is None else min(max_examples, total)
    perm = np.random.default_rng(seed).permutation(n_sequences)
    k = np.arange(m)
    s, r = k % n_steps, k // n_steps
    per_step = (m - np.arange(n_steps) + n_steps - 1) // n_steps  # pairs of each step
    offset = np.concatenate([[0], np.cumsum(per_step)[:-1]])
    return perm[(offset[s] + r) % n_sequences], steps[s]


def _as_steps(step: int | Sequence[int] | np.ndarray, n: int, n_steps: int) -> np.ndarray:
    s = np.asarray(step)
    if s.ndim == 0:
        s = np.full(n, int(s))
    if s.shape != (n,) or not np.issubdtype(s.dtype, np.integer):
        raise UnitprobeError(f"step must be an int or {n} ints (one per sequence), got {step!r}")
    if s.min() < 0 or s.max() >= n_steps:
        raise UnitprobeError(
            f"step values {s.min()}..{s.max()} out of range for sequences of {n_steps} steps"
        )
    return s.astype(np.int64)


def _check_output(output: int, n_outputs: int) -> None:
    _check_int("output", output, 0)
    if output >= n_outputs:
        raise UnitprobeError(f"output == {output}, model has {n_outputs} outputs (0-based)")


def _resolve_layer(layer: int | None, n_layers: int) -> int:
    if layer is None:
        return n_layers - 1
    _check_int("layer", layer, 0)
    if layer >= n_layers:
        raise UnitprobeError(f"layer == {layer}, model has {n_layers} layer(s) (0-based)")
    return int(layer)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(_DTYPES)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _delta_attrs(deltas: list[np.ndarray]) -> dict[str, float | None]:
    if not deltas:
        return {"convergence_delta_max": None, "convergence_delta_mean": None}
    d = np.abs(np.concatenate(deltas))
    return {"convergence_delta_max": float(d.max()), "convergence_delta_mean": float(d.mean())}


# ---------------------------------------------------------------------------------------------
# Outputs <- inputs x lag
# ---------------------------------------------------------------------------------------------


def _input_attr_source(
    model: UnitLSTM,
    x: Tensor,
    base: Tensor,
    step: np.ndarray,
    output: int,
    method: str,
    n_steps_ig: int,
) -> tuple[Tensor, Tensor | None]:
    """Attributions indexed by source step, (B, T, F), and IG deltas (B,) for one batch."""
    forward = _AtSteps(model)
    z = (x - base).requires_grad_()
    offset = base.expand_as(x).contiguous()
    args = (offset, torch.as_tensor(step, device=x.device))
    if method == "integrated_gradients":
        attr, delta = IntegratedGradients(forward).attribute(
            z,
            baselines=torch.zeros_like(z),
            target=output,
            additional_forward_args=args,
            n_steps=n_steps_ig,
            return_convergence_delta=True,
        )
        return attr.detach(), delta.detach()
    if method == "saliency":
        attr = Saliency(forward).attribute(
            z, target=output, abs=False, additional_forward_args=args
        )
    else:
        attr = InputXGradient(forward).attribute(z, target=output, additional_forward_args=args)
    return attr.detach(), None


def _source_to_lag(attr: np.ndarray, step: np.ndarray, n_lags: int) -> np.ndarray:
    """(N, T, F) by source step -> (N, n_lags, F) by lag ``step - source``; NaN where lag > step."""
    lag = np.arange(n_lags)
    source = step[:, None] - lag[None, :]  # (N, n_lags)
    out = np.take_along_axis(attr, np.clip(source, 0, None)[:, :, None], axis=1)
    out[source < 0] = np.nan
    return out


def input_lag_per_sequence(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    step: int | Sequence[int] | np.ndarray,
    output: int,
    *,
    method: str = "integrated_gradients",
    baseline: Baseline = "zero",
    n_steps_ig: int = 32,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sequence attribution of one output at one step to every input at every lag.

    Captum's ``IntegratedGradients`` (or ``Saliency`` / ``InputXGradient``) on the fused
    forward with the target ``(step, output)`` of each sequence, batched over sequences.

    Parameters
    ----------
    model : UnitLSTM
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
        Normalized inputs.
    step : int or array of int of shape (n_sequences,)
        Target step ``t`` (0-based), the same for all sequences or one per sequence.
    output : int
        Output index ``o``.
    method : {"integrated_gradients", "saliency", "input_x_gradient"}
        ``saliency`` is the signed gradient; ``input_x_gradient`` multiplies it by
        ``x - baseline``.
    baseline : {"zero", "mean"} or ndarray of shape (n_steps, n_inputs) or like ``inputs``
        ``"mean"`` is the per-step mean of ``inputs``.
    n_steps_ig : int, default 32
        Quadrature points of integrated gradients.
    batch_size : int, default 256
        Sequences per Captum call (each expanded ``n_steps_ig`` times).

    Returns
    -------
    attributions : ndarray of shape (n_sequences, max(step) + 1, n_inputs)
        ``attributions[n, lag, f]`` is the attribution of ``output[n, step_n, o]`` to
        ``inputs[n, step_n - lag, f]``; NaN where ``lag > step_n``. For integrated gradients the
        sum over lags and features equals ``F(x) - F(baseline)`` up to ``delta``.
    delta : ndarray of shape (n_sequences,) or None
        Integrated gradients' completeness error per sequence; None for the other methods.

    Example
    -------
    >>> attr, delta = input_lag_per_sequence(model, x, step=9, output=0, n_steps_ig=64)
    >>> np.nansum(attr, axis=(1, 2))  # == model(x)[:, 9, 0] - model(0)[:, 9, 0] (+ delta)
    """
    _check_choice("method", method, INPUT_METHODS)
    _check_int("n_steps_ig", n_steps_ig, 1)
    _check_int("batch_size", batch_size, 1)
    _check_output(output, model.config.n_outputs)
    x = as_tensor(inputs, model)
    steps = _as_steps(step, x.shape[0], x.shape[1])
    base = _baseline_tensor(baseline, x)
    n_src = int(steps.max()) + 1  # the model is causal: later inputs cannot matter
    x = x[:, :n_src]
    base = base[..., :n_src, :]
    attrs, deltas = [], []
    with _attribution_mode(model):
        for sl in _batches(x.shape[0], batch_size):
            b = base[sl] if base.ndim == 3 else base
            attr, delta = _input_attr_source(model, x[sl], b, steps[sl], output, method, n_steps_ig)
            attrs.append(attr.cpu().double().numpy())
            if delta is not None:
                deltas.append(delta.cpu().double().numpy())
    per_lag = _source_to_lag(np.concatenate(attrs), steps, n_src)
    return per_lag, (np.concatenate(deltas) if deltas else None)


def _lag_rows(
    per_lag: np.ndarray, method: str, target: str, input_names: list[str]
) -> list[dict[str, Any]]:
    """(N, n_lags, F) per-example attributions -> one row per (feature, lag)."""
    valid = ~np.isnan(per_lag)
    count = valid.sum(axis=0)  # (n_lags, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        signed = np.where(valid, per_lag, 0.0).sum(axis=0) / count
        absolute = np.where(valid, np.abs(per_lag), 0.0).sum(axis=0) / count
    rows = []
    for f, name in enumerate(input_names):
        for lag in range(per_lag.shape[1]):
            rows.append(
                {
                    "method": method,
                    "target": target,
                    "kind": "input_lag",
                    "feature": name,
                    "lag": lag,
                    "layer": pd.NA,
                    "unit": pd.NA,
                    "attribution": absolute[lag, f],
                    "attribution_signed": signed[lag, f],
                }
            )
    return rows


def input_lag_attribution(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    *,
    method: str = "integrated_gradients",
    baseline: Baseline = "mean",
    steps: int | Sequence[int] | None = None,
    max_lag: int | None = None,
    n_steps_ig: int = 32,
    max_examples: int | None = 512,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Attribution of every output to every input feature at every lag (kind ``input_lag``).

    For each output ``o`` and each evaluated (sequence ``n``, target step ``t``) pair, the
    attribution of ``output[n, t, o]`` to ``inputs[n, t - lag, f]`` (see
    :func:`input_lag_per_sequence`), averaged over the pairs into one value per
    (output, feature, lag).

    Parameters
    ----------
    model : UnitLSTM
    inputs : ndarray of shape (n_sequences, n_steps, n_inputs), or a dataset
        Normalized inputs; a dataset object with ``inputs``, ``input_names`` and
        ``output_names`` attributes also works (its names are used unless given).
    input_names : list of str, length n_inputs, optional
        Default ``x0, x1, ...``.
    output_names : list of str, length n_outputs, optional
        Default ``y0, y1, ...``.
    method : {"integrated_gradients", "saliency", "input_x_gradient"}
    baseline : {"zero", "mean"} or ndarray of shape (n_steps, n_inputs)
        ``"zero"``: 0 in normalized units (the dataset mean of standardized data); ``"mean"``:
        per-feature, per-step mean over all ``inputs``.
    steps : int or list of int, optional
        Target steps; default the last ``min(10, n_steps - max_lag)`` steps.
    max_lag : int, optional
        Largest lag reported; default ``min(10, n_steps - 1)``.
    n_steps_ig : int, default 32
    max_examples : int or None, default 512
        Budget of (sequence, target step) pairs per output, spread evenly over the steps;
        None evaluates every pair.
    batch_size : int, default 256
        Pairs per Captum call.
    seed : int, default 0
        Seed of the pair sampling.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`; one row per (output, feature, lag), ``lag`` in
        ``0..max_lag``. ``attrs``: ``convergence_delta_max`` / ``convergence_delta_mean``
        (integrated gradients, in output units; None otherwise), ``n_examples``, ``steps``,
        ``max_lag``, ``baseline``.

    Example
    -------
    >>> df = input_lag_attribution(model, x, ["K", "X"], ["K_next"])
    >>> df.sort_values("attribution").tail(1)[["feature", "lag"]]
    """
    x, in_names, out_names = _resolve_data(model, inputs, input_names, output_names)
    _check_choice("method", method, INPUT_METHODS)
    _check_int("max_examples", max_examples, 1, allow_none=True)
    n_steps = x.shape[1]
    lag_max = _resolve_max_lag(max_lag, n_steps)
    target_steps = _resolve_steps(steps, n_steps, lag_max, DEFAULT_N_TARGET_STEPS)
    base, seq, step = _sampled_pairs(x, baseline, target_steps, max_examples, seed)
    rows: list[dict[str, Any]] = []
    deltas: list[np.ndarray] = []
    for o, out_name in enumerate(tqdm(out_names, desc="input_lag", disable=not progress)):
        per_lag, delta = input_lag_per_sequence(
            model,
            x[seq],
            step,
            o,
            method=method,
            baseline=base.cpu().numpy(),
            n_steps_ig=n_steps_ig,
            batch_size=batch_size,
        )
        per_lag = per_lag[:, : lag_max + 1]
        if per_lag.shape[1] < lag_max + 1:  # explicit steps earlier than max_lag
            pad = np.full((len(seq), lag_max + 1 - per_lag.shape[1], per_lag.shape[2]), np.nan)
            per_lag = np.concatenate([per_lag, pad], axis=1)
        rows += _lag_rows(per_lag, method, out_name, in_names)
        if delta is not None:
            deltas.append(delta)
    df = _frame(rows)
    df.attrs.update(_delta_attrs(deltas))
    df.attrs.update(
        n_examples=len(seq),
        steps=target_steps.tolist(),
        max_lag=lag_max,
        baseline=baseline if isinstance(baseline, str) else "array",
    )
    return df


# ---------------------------------------------------------------------------------------------
# Outputs <- units
# ---------------------------------------------------------------------------------------------


def unit_attribution_per_sequence(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    step: int | Sequence[int] | np.ndarray,
    output: int,
    *,
    layer: int | None = None,
    method: str = "layer_integrated_gradients",
    baseline: Baseline = "zero",
    n_steps_ig: int = 32,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sequence attribution of one output at one step to each hidden unit of a layer.

    Captum's layer methods on the hidden state ``h`` of ``layer`` (a one-layer-per-module copy
    of the model that shares its weights, so each layer's ``h`` is hookable). A unit's
    attribution is the sum over its states at all steps up to ``step`` (for the last layer only
    the state at ``step`` itself matters: the readout is per step).

    Parameters
    ----------
    model : UnitLSTM
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
    step : int or array of int of shape (n_sequences,)
    output : int
    layer : int, optional
        Default the last layer.
    method : {"layer_integrated_gradients", "layer_conductance", "layer_gradient_x_activation"}
        Integrated gradients along the straight line in ``h`` space from ``h(baseline)`` to
        ``h(x)``; conductance (the input-path integrated gradients flowing through each unit);
        or ``h * dF/dh`` (no baseline, no completeness).
    baseline : {"zero", "mean"} or ndarray
        Input baseline, as in :func:`input_lag_per_sequence`.
    n_steps_ig : int, default 32
        Quadrature points. Layer integrated gradients of the last layer use one: the readout
        is linear in its ``h``, so the midpoint rule is exact there.
    batch_size : int, default 256

    Returns
    -------
    attributions : ndarray of shape (n_sequences, n_units)
        For the two integrated methods, the sum over units equals
        ``F(x) - F(baseline)`` (outputs at ``step``) up to ``delta``.
    delta : ndarray of shape (n_sequences,) or None
        Completeness error per sequence (integrated methods only).
    """
    _check_choice("method", method, UNIT_METHODS)
    _check_int("n_steps_ig", n_steps_ig, 1)
    _check_int("batch_size", batch_size, 1)
    _check_output(output, model.config.n_outputs)
    layer = _resolve_layer(layer, model.config.n_layers)
    x = as_tensor(inputs, model)
    steps = _as_steps(step, x.shape[0], x.shape[1])
    base = _baseline_tensor(baseline, x)
    n_src = int(steps.max()) + 1
    x, base = x[:, :n_src], base[..., :n_src, :]
    if method == "layer_integrated_gradients" and layer == model.config.n_layers - 1:
        n_steps_ig = 1  # the readout is linear in the last layer's h: one point is exact
    attrs, deltas = [], []
    with _attribution_mode(model):
        forward = _AtSteps(_LayerStack(model))
        hooked = forward.inner.layers[layer]
        for sl in _batches(x.shape[0], batch_size):
            b = base[sl] if base.ndim == 3 else base
            z = x[sl] - b
            args = (b.expand_as(z).contiguous(), torch.as_tensor(steps[sl], device=x.device))
            delta = None
            if method == "layer_gradient_x_activation":
                attr = LayerGradientXActivation(forward, hooked).attribute(
                    z, target=output, additional_forward_args=args
                )
            else:
                algo = _INTEGRATED_LAYER_METHODS[method](forward, hooked)
                attr, delta = algo.attribute(
                    z,
                    baselines=torch.zeros_like(z),
                    target=output,
                    additional_forward_args=args,
                    n_steps=n_steps_ig,
                    return_convergence_delta=True,
                )
                deltas.append(delta.detach().cpu().double().numpy())
            attrs.append(attr.detach().sum(dim=1).cpu().double().numpy())  # (B, T, H) -> (B, H)
    return np.concatenate(attrs), (np.concatenate(deltas) if deltas else None)


def unit_attribution(
    model: UnitLSTM,
    inputs: Any,
    output_names: Sequence[str] | None = None,
    *,
    layer: int | None = None,
    method: str = "layer_integrated_gradients",
    baseline: Baseline = "zero",
    steps: int | Sequence[int] | None = None,
    n_steps_ig: int = 32,
    max_examples: int | None = 512,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Contribution of each hidden unit of a layer to each output (kind ``unit``).

    See :func:`unit_attribution_per_sequence` for the per-example attribution; this averages it
    over (sequence, target step) pairs.

    Parameters
    ----------
    model : UnitLSTM
    inputs : ndarray of shape (n_sequences, n_steps, n_inputs), or a dataset
    output_names : list of str, optional
    layer : int, optional
        Default the last layer (the one the readout reads).
    method : {"layer_integrated_gradients", "layer_conductance", "layer_gradient_x_activation"}
    baseline : {"zero", "mean"} or ndarray of shape (n_steps, n_inputs)
    steps : int or list of int, optional
        Target steps; default the last ``min(10, n_steps)``.
    n_steps_ig : int, default 32
    max_examples : int or None, default 512
        Budget of (sequence, target step) pairs per output.
    batch_size : int, default 256
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`, one row per (output, unit); ``feature`` None and ``lag``
        ``<NA>``. ``attrs`` as in :func:`input_lag_attribution`, plus ``layer``.

    Example
    -------
    >>> unit_attribution(model, x, ["y"]).nlargest(2, "attribution")[["unit", "attribution"]]
    """
    x, _, out_names = _resolve_data(model, inputs, None, output_names)
    _check_choice("method", method, UNIT_METHODS)
    _check_int("max_examples", max_examples, 1, allow_none=True)
    layer = _resolve_layer(layer, model.config.n_layers)
    target_steps = _resolve_steps(steps, x.shape[1], 0, DEFAULT_N_TARGET_STEPS)
    base, seq, step = _sampled_pairs(x, baseline, target_steps, max_examples, seed)
    rows: list[dict[str, Any]] = []
    deltas: list[np.ndarray] = []
    for o, out_name in enumerate(tqdm(out_names, desc="unit", disable=not progress)):
        attr, delta = unit_attribution_per_sequence(
            model,
            x[seq],
            step,
            o,
            layer=layer,
            method=method,
            baseline=base.cpu().numpy(),
            n_steps_ig=n_steps_ig,
            batch_size=batch_size,
        )
        if delta is not None:
            deltas.append(delta)
        for u in range(attr.shape[1]):
            rows.append(
                {
                    "method": method,
                    "target": out_name,
                    "kind": "unit",
                    "feature": None,
                    "lag": pd.NA,
                    "layer": layer,
                    "unit": u,
                    "attribution": np.abs(attr[:, u]).mean(),
                    "attribution_signed": attr[:, u].mean(),
                }
            )
    df = _frame(rows)
    df.attrs.update(_delta_attrs(deltas))
    df.attrs.update(
        n_examples=len(seq),
        steps=target_steps.tolist(),
        layer=layer,
        baseline=baseline if isinstance(baseline, str) else "array",
    )
    return df


# ---------------------------------------------------------------------------------------------
# Units <- inputs x lag (receptive fields), by forward-mode differentiation
# ---------------------------------------------------------------------------------------------


def _shift(d: Tensor) -> Tensor:
    """Tangents indexed by lag at step t-1 -> at step t: lag k becomes k+1, lag 0 starts at 0."""
    return torch.cat([torch.zeros_like(d[:1]), d[:-1]])


def _site_jacobians(
    model: UnitLSTM, x: Tensor, layer: int, site: str, n_lags: int
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(t, jac)`` for every step, ``jac`` of shape (n_lags, F, N, H).

    ``jac[lag, f, n, u] = d site_u[n, t] / d x[n, t - lag, f]`` (0 where ``t - lag < 0``),
    by forward-mode differentiation of the LSTM recurrence with one tangent per (lag, feature)
    kept in a sliding window: a tangent enters at its source step and leaves ``n_lags`` steps
    later, so the cost is that of ``n_lags * F`` forward passes whatever the sequence length.
    Tested against autograd and Captum's ``NeuronGradient``.
    """
    n, n_steps, n_in = x.shape
    n_units = model.config.n_units
    weights = [model.layer_weights(k) for k in range(layer + 1)]
    h = [x.new_zeros(n, n_units) for _ in weights]
    c = [x.new_zeros(n, n_units) for _ in weights]
    dh = [x.new_zeros(n_lags, n_in, n, n_units) for _ in weights]  # (W, F, N, H)
    dc = [x.new_zeros(n_lags, n_in, n, n_units) for _ in weights]
    for t in range(n_steps):
        below, d_below = x[:, t], None
        for k, (w_ih, w_hh, bias) in enumerate(weights):
            pre = below @ w_ih.T + h[k] @ w_hh.T + bias  # (N, 4H)
            i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=1)
            i, f, g, o = i_pre.sigmoid(), f_pre.sigmoid(), g_pre.tanh(), o_pre.sigmoid()
            c_new = f * c[k] + i * g
            tanh_c = c_new.tanh()
            h_new = o * tanh_c
            d_pre = _shift(dh[k]) @ w_hh.T  # (W, F, N, 4H)
            if k == 0:
                d_pre[0] += w_ih.T[:, None, :]  # d x[t - 0, f] = e_f enters at lag 0
            else:
                d_pre = d_pre + d_below @ w_ih.T
            dp_i, dp_f, dp_g, dp_o = d_pre.chunk(4, dim=-1)
            d_gate = {
                "i": i * (1 - i) * dp_i,
                "f": f * (1 - f) * dp_f,
                "g": (1 - g * g) * dp_g,
                "o": o * (1 - o) * dp_o,
            }
            dc[k] = d_gate["f"] * c[k] + f * _shift(dc[k]) + d_gate["i"] * g + i * d_gate["g"]
            dh[k] = d_gate["o"] * tanh_c + (o * (1 - tanh_c * tanh_c)) * dc[k]
            h[k], c[k] = h_new, c_new
            below, d_below = h_new, dh[k]
        yield t, dh[layer] if site == "h" else dc[layer] if site == "c" else d_gate[site]


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] and weights summing to 1 (Captum's ``gausslegendre``)."""
    points, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (points + 1.0), 0.5 * weights


def _resolve_units(units: int | Sequence[int] | None, n_units: int) -> list[int]:
    if units is None:
        return list(range(n_units))
    chosen = [units] if isinstance(units, (int, np.integer)) else list(units)
    bad = [u for u in chosen if isinstance(u, bool) or not isinstance(u, (int, np.integer))] or [
        u for u in chosen if not 0 <= u < n_units
    ]
    if bad or not chosen:
        raise UnitprobeError(f"units {bad or chosen} invalid, model has {n_units} units (0-based)")
    return [int(u) for u in chosen]


def receptive_fields(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    *,
    layer: int = 0,
    site: str = "h",
    units: int | Sequence[int] | None = None,
    max_lag: int | None = None,
    method: str = "gradient",
    steps: int | Sequence[int] | None = None,
    baseline: Baseline = "zero",
    n_steps_ig: int = 16,
    max_sequences: int | None = 256,
    batch_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """Each unit's receptive field: its activation ← every input at every lag (``unit_input_lag``).

    ``method="gradient"``: the Jacobian ``J = d site_u[t] / d x_f[t - lag]`` averaged over
    sequences and target steps — ``attribution_signed`` is the mean coefficient (a local linear
    "formula" of the unit, see :func:`unit_formula`), ``attribution`` the mean ``|J|``.
    ``method="integrated_gradients"``: ``(x - baseline)[t - lag, f]`` times ``J`` averaged
    along the straight path from the baseline (Captum's ``NeuronIntegratedGradients`` for
    every unit and step at once), then averaged (signed and absolute) like the gradient.

    All units and steps come from one forward-mode pass per batch (cost of about
    ``(max_lag + 1) * n_inputs`` forward passes, times ``n_steps_ig`` for integrated
    gradients), so the field reflects the network's mechanism, not correlations in the data.

    Parameters
    ----------
    model : UnitLSTM
    inputs : ndarray of shape (n_sequences, n_steps, n_inputs), or a dataset
    input_names : list of str, optional
    layer : int, default 0
    site : {"h", "c", "i", "f", "g", "o"}, default "h"
        Which activation of the unit (gates after their nonlinearity).
    units : int or list of int, optional
        Units to report (default all); all are computed anyway.
    max_lag : int, optional
        Default ``min(10, n_steps - 1)``.
    method : {"gradient", "integrated_gradients"}
    steps : int or list of int, optional
        Target steps; default every step ``>= max_lag``.
    baseline : {"zero", "mean"} or ndarray of shape (n_steps, n_inputs)
        Integrated gradients only.
    n_steps_ig : int, default 16
    max_sequences : int or None, default 256
        Sequences used (a random subset with ``seed``); None uses all.
    batch_size : int, default 128
        Sequences per pass (memory: ``batch_size * n_steps_ig * (max_lag + 1) * n_inputs``
        tangents of ``n_units`` floats).
    seed : int, default 0

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`, one row per (unit, feature, lag), ``target`` = ``site``.
        ``attrs``: ``n_sequences``, ``steps``, ``max_lag``, ``site``.

    Example
    -------
    >>> rf = receptive_fields(model, x, ["K", "X"])
    >>> rf.loc[rf.groupby("unit")["attribution"].idxmax(), ["unit", "feature", "lag"]]
    """
    x, in_names, _ = _resolve_data(model, inputs, input_names, None)
    _check_choice("method", method, FIELD_METHODS)
    _check_choice("site", site, SITES)
    _check_int("n_steps_ig", n_steps_ig, 1)
    _check_int("max_sequences", max_sequences, 1, allow_none=True)
    _check_int("batch_size", batch_size, 1)
    layer = _resolve_layer(layer, model.config.n_layers)
    chosen = _resolve_units(units, model.config.n_units)
    n_steps = x.shape[1]
    lag_max = _resolve_max_lag(max_lag, n_steps)
    target_steps = set(_resolve_steps(steps, n_steps, lag_max, None).tolist())
    base = _baseline_tensor(baseline, x)
    if base.ndim == 3:
        raise DataError("receptive_fields takes a baseline of shape (n_steps, n_inputs)")
    x = x[torch.as_tensor(_subsample(x.shape[0], max_sequences, seed), device=x.device)]
    n_lags = lag_max + 1
    shape = (n_lags, x.shape[2], model.config.n_units)
    signed = x.new_zeros(shape, dtype=torch.float64)  # sums over sequences and steps
    absolute = x.new_zeros(shape, dtype=torch.float64)
    count = np.zeros(n_lags)
    if method == "gradient":
        alphas, weights = np.ones(1), np.ones(1)
    else:
        alphas, weights = _gauss_legendre(n_steps_ig)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device).reshape(1, 1, -1, 1, 1)
    last = max(target_steps)
    with _attribution_mode(model), torch.no_grad():
        for sl in _batches(x.shape[0], batch_size):
            xb = x[sl, : last + 1]
            diff = xb - base[: last + 1]  # (B, T, F)
            path = torch.cat([base[: last + 1] + float(a) * diff for a in alphas])  # (A*B, T, F)
            for t, jac in _site_jacobians(model, path, layer, site, n_lags):
                if t not in target_steps:
                    continue
                jac = jac.unflatten(2, (len(alphas), -1))  # (W, F, A, B, H)
                jac = (jac * w).sum(dim=2)  # quadrature over the path: (W, F, B, H)
                if method == "integrated_gradients":
                    src = torch.arange(t, t - n_lags, -1, device=x.device).clamp(min=0)
                    jac = jac * diff[:, src].permute(1, 2, 0)[..., None]  # x (x - b)[t - lag]
                valid = slice(0, min(t, lag_max) + 1)  # lags whose source step exists
                signed[valid] += jac[valid].sum(dim=2).double()
                absolute[valid] += jac[valid].abs().sum(dim=2).double()
                count[valid] += xb.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_signed = signed.cpu().numpy() / count[:, None, None]
        mean_abs = absolute.cpu().numpy() / count[:, None, None]
    rows = [
        {
            "method": method,
            "target": site,
            "kind": "unit_input_lag",
            "feature": name,
            "lag": lag,
            "layer": layer,
            "unit": u,
            "attribution": mean_abs[lag, f, u],
            "attribution_signed": mean_signed[lag, f, u],
        }
        for u in chosen
        for f, name in enumerate(in_names)
        for lag in range(n_lags)
    ]
    df = _frame(rows)
    df.attrs.update(
        n_sequences=int(x.shape[0]), steps=sorted(target_steps), max_lag=lag_max, site=site
    )
    return df


def unit_formula(
    fields: pd.DataFrame,
    layer: int,
    unit: int,
    top: int = 3,
    *,
    method: str | None = None,
    site: str | None = None,
    digits: int = 3,
    rel_tol: float = 1e-3,
) -> str:
    """A short linear formula of a unit from its receptive field's signed coefficients.

    Parameters
    ----------
    fields : DataFrame
        Output of :func:`receptive_fields` (rows of other kinds are ignored).
    layer, unit : int
    top : int, default 3
        Most terms shown, the largest ``|attribution_signed|`` first.
    method, site : str, optional
        Which method / site to use when ``fields`` holds several; default the first present.
    digits : int, default 3
        Significant digits of the coefficients.
    rel_tol : float, default 1e-3
        Terms smaller than ``rel_tol`` times the largest ``|coefficient|`` are dropped (they
        are float rounding or leaks through saturated gates, not a reading).

    Returns
    -------
    str
        Terms ``coef·NAME[t-lag]`` (``NAME[t]`` for lag 0), e.g. ``"0.098·K[t] - 0.004·X[t-1]"``;
        ``"0"`` when every coefficient is zero.
    """
    _check_int("top", top, 1)
    rows = fields[(fields["kind"] == "unit_input_lag")]
    rows = rows[(rows["layer"] == layer) & (rows["unit"] == unit)]
    if rows.empty:
        raise UnitprobeError(f"no receptive-field rows for layer {layer}, unit {unit}")
    rows = rows.sort_values(["feature", "lag"], kind="stable")  # ties: by feature name, then lag
    for column, value in (("method", method), ("target", site)):
        chosen = value if value is not None else rows[column].iloc[0]
        rows = rows[rows[column] == chosen]
        if rows.empty:
            raise UnitprobeError(f"no receptive-field rows with {column} == {chosen!r}")
    coef = rows["attribution_signed"].to_numpy(dtype=float)
    order = np.argsort(-np.abs(np.nan_to_num(coef)), kind="stable")[:top]
    largest = np.nanmax(np.abs(coef)) if np.isfinite(coef).any() else 0.0
    terms = []
    for k in order:
        value = coef[k]
        if not np.isfinite(value) or value == 0.0 or abs(value) < rel_tol * largest:
            continue
        lag = int(rows["lag"].iloc[k])
        name = f"{rows['feature'].iloc[k]}[t{'-' + str(lag) if lag else ''}]"
        sign = "-" if value < 0 else "+"
        terms.append((sign, f"{abs(value):.{digits}g}·{name}"))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    text = ("-" if first_sign == "-" else "") + first
    return text + "".join(f" {sign} {term}" for sign, term in terms[1:])


# ---------------------------------------------------------------------------------------------
# Everything in one table
# ---------------------------------------------------------------------------------------------


def attribution_table(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    *,
    methods: Sequence[str] = ("integrated_gradients",),
    unit_methods: Sequence[str] = ("layer_integrated_gradients",),
    field_methods: Sequence[str] = ("gradient",),
    layers: Sequence[int] | None = None,
    baseline: Baseline = "mean",
    steps: int | Sequence[int] | None = None,
    max_lag: int | None = None,
    n_steps_ig: int = 32,
    max_examples: int | None = 512,
    max_sequences: int | None = 256,
    field_n_steps_ig: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """All three kinds of attribution in one table (``attribution.csv``).

    Rows: :func:`input_lag_attribution` for each of ``methods``, then :func:`unit_attribution`
    for each of ``unit_methods`` and each layer, then :func:`receptive_fields` for each of
    ``field_methods`` and each layer (site ``h``, all units).

    Parameters
    ----------
    model, inputs, input_names, output_names
        As in :func:`input_lag_attribution`.
    methods : sequence of {"integrated_gradients", "saliency", "input_x_gradient"}
    unit_methods : sequence of {"layer_integrated_gradients", "layer_conductance",
        "layer_gradient_x_activation"}
    field_methods : sequence of {"gradient", "integrated_gradients"}
    layers : sequence of int, optional
        Layers for unit attributions and receptive fields; default all.
    baseline, steps, max_lag, n_steps_ig, max_examples, max_sequences, seed, progress
        Passed on (``steps`` applies to input-lag and unit attributions).
    field_n_steps_ig : int, default 16
        Quadrature points of integrated-gradients receptive fields (their cost grows with it).

    Returns
    -------
    DataFrame
        Columns :data:`COLUMNS`. ``attrs["convergence_delta_max"]``: the largest completeness
        error over the integrated-gradients parts (None if there are none).

    Example
    -------
    >>> attribution_table(model, dataset).to_csv("results/attribution.csv", index=False)
    """
    x, in_names, out_names = _resolve_data(model, inputs, input_names, output_names)
    x = x.cpu().numpy()
    for name, chosen, allowed in (
        ("methods", methods, INPUT_METHODS),
        ("unit_methods", unit_methods, UNIT_METHODS),
        ("field_methods", field_methods, FIELD_METHODS),
    ):
        for value in chosen:
            _check_choice(name[:-1], value, allowed)
    layer_list = (
        list(range(model.config.n_layers))
        if layers is None
        else [_resolve_layer(k, model.config.n_layers) for k in layers]
    )
    common = {"baseline": baseline, "n_steps_ig": n_steps_ig, "seed": seed}
    parts = [
        input_lag_attribution(
            model,
            x,
            in_names,
            out_names,
            method=m,
            steps=steps,
            max_lag=max_lag,
            max_examples=max_examples,
            progress=progress,
            **common,
        )
        for m in methods
    ]
    parts += [
        unit_attribution(
            model,
            x,
            out_names,
            layer=k,
            method=m,
            steps=steps,
            max_examples=max_examples,
            progress=progress,
            **common,
        )
        for m in unit_methods
        for k in layer_list
    ]
    parts += [
        receptive_fields(
            model,
            x,
            in_names,
            layer=k,
            method=m,
            max_lag=max_lag,
            baseline=baseline,
            n_steps_ig=field_n_steps_ig,
            max_sequences=max_sequences,
            seed=seed,
        )
        for m in field_methods
        for k in layer_list
    ]
    df = pd.concat(parts, ignore_index=True) if parts else _frame([])
    df = df[list(COLUMNS)].astype(_DTYPES)
    deltas = [p.attrs.get("convergence_delta_max") for p in parts]
    deltas = [d for d in deltas if d is not None]
    df.attrs = {"convergence_delta_max": max(deltas) if deltas else None}
    return df
