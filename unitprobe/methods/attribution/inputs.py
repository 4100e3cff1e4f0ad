"""Input x lag attribution: output ``o`` at step ``t`` <- input feature ``f`` at step ``t - lag``.

Captum's ``IntegratedGradients``, ``Saliency`` and ``InputXGradient`` on the model's forward
(:class:`~unitprobe.methods.attribution._common.CaptumNetwork`), read at one target step per
(sequence, step) pair. :func:`input_lag_per_sequence` gives the per-example attributions;
:func:`input_lag_attribution` averages them into the ``input_lag`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe import schemas
from unitprobe.config import AttributionConfig
from unitprobe.methods.attribution._common import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MEMORY_BUDGET_MB,
    DEFAULT_N_TARGET_STEPS,
    Baseline,
    CaptumNetwork,
    as_steps,
    attribution_mode,
    baseline_name,
    baseline_tensor,
    batches,
    budget_batch_size,
    check_output,
    delta_attrs,
    resolve_data,
    resolve_max_lag,
    resolve_steps,
    sampled_pairs,
)
from unitprobe.model.lstm import UnitLSTM, as_tensor
from unitprobe.validation import check_choice, check_int

__all__ = ["input_lag_per_sequence", "input_lag_attribution"]


def _source_attributions(
    forward: CaptumNetwork,
    x: Tensor,
    base: Tensor,
    step: np.ndarray,
    output: int,
    method: str,
    n_steps_ig: int,
) -> tuple[Tensor, Tensor | None]:
    """Attributions indexed by source step, (B, T, F), and IG deltas (B,) for one batch."""
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
    n_steps_ig: int = AttributionConfig.n_steps_ig,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sequence attribution of one output at one step to every input at every lag.

    Captum's ``IntegratedGradients`` (or ``Saliency`` / ``InputXGradient``) on the model's
    forward with the target ``(step, output)`` of each sequence, batched over the sequences
    of one target step, which run only up to that step (later inputs cannot matter).

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
        ``"mean"`` is the per-step mean of ``inputs``. The default is ``"zero"`` here, so one
        sequence's attribution does not depend on the others passed with it;
        :func:`input_lag_attribution` passes the ``"mean"`` baseline of all its inputs.
    n_steps_ig : int, default 32
        Quadrature points of integrated gradients.
    batch_size : int, default 64
        Most sequences per Captum call (each expanded ``n_steps_ig`` times).
    memory_budget_mb : float, default 256
        Fewer sequences per call where the call's autograd graph would exceed this (see
        :func:`~unitprobe.methods.attribution._common.budget_batch_size`): the peak memory
        of the attribution stays about this plus the model and data.

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
    check_choice(method, "method", schemas.ATTRIBUTION_METHODS)
    check_int(n_steps_ig, "n_steps_ig", minimum=2)
    check_int(batch_size, "batch_size", minimum=1)
    check_output(output, model.config.n_outputs)
    x = as_tensor(inputs, model)
    steps = as_steps(step, x.shape[0], x.shape[1])
    base = baseline_tensor(baseline, x)
    n_src = int(steps.max()) + 1  # the model is causal: later inputs cannot matter
    attrs = np.zeros((x.shape[0], n_src, x.shape[2]))  # by source step
    deltas = np.full(x.shape[0], np.nan) if method == "integrated_gradients" else None
    with attribution_mode(model):
        forward = CaptumNetwork(model)
        points = n_steps_ig if method == "integrated_gradients" else 1
        # the sequences of one target step run only up to that step
        for target in np.unique(steps).tolist():
            rows_all = np.flatnonzero(steps == target)
            length = target + 1
            size = budget_batch_size(model, length, points, batch_size, memory_budget_mb)
            for sl in batches(len(rows_all), size):
                rows = rows_all[sl]
                index = torch.as_tensor(rows, device=x.device)
                b = base[index, :length] if base.ndim == 3 else base[:length]
                attr, delta = _source_attributions(
                    forward, x[index, :length], b, steps[rows], output, method, n_steps_ig
                )
                attrs[rows, :length] = attr.cpu().double().numpy()
                if delta is not None:
                    deltas[rows] = delta.cpu().double().numpy()
    return _source_to_lag(attrs, steps, n_src), deltas


def _lag_rows(
    per_lag: np.ndarray, method: str, output: str, input_names: list[str]
) -> list[dict[str, Any]]:
    """(N, n_lags, F) per-example attributions -> one ``input_lag`` row per (feature, lag)."""
    valid = ~np.isnan(per_lag)
    count = valid.sum(axis=0)  # (n_lags, F)
    with np.errstate(invalid="ignore", divide="ignore"):
        signed = np.where(valid, per_lag, 0.0).sum(axis=0) / count
        absolute = np.where(valid, np.abs(per_lag), 0.0).sum(axis=0) / count
    return [
        {
            "method": method,
            "output": output,
            "feature": name,
            "lag": lag,
            "attribution": absolute[lag, f],
            "attribution_signed": signed[lag, f],
        }
        for f, name in enumerate(input_names)
        for lag in range(per_lag.shape[1])
    ]


def input_lag_attribution(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    *,
    method: str = AttributionConfig.methods[0],
    baseline: Baseline = AttributionConfig.baseline,
    steps: int | Sequence[int] | None = None,
    max_lag: int | None = None,
    n_steps_ig: int = AttributionConfig.n_steps_ig,
    max_examples: int | None = AttributionConfig.max_examples,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Attribution of every output to every input feature at every lag (``input_lag`` table).

    For each output ``o`` and each evaluated (sequence ``n``, target step ``t``) pair, the
    attribution of ``output[n, t, o]`` to ``inputs[n, t - lag, f]`` (see
    :func:`input_lag_per_sequence`), averaged over the pairs into one value per
    (output, feature, lag): ``attribution`` is the mean absolute value, ``attribution_signed``
    the mean signed value.

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
    baseline : {"mean", "zero"} or ndarray of shape (n_steps, n_inputs)
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
    batch_size : int, default 64
        Most sequences per Captum call (each expanded ``n_steps_ig`` times).
    memory_budget_mb : float, default 256
        Fewer sequences per call where the call's autograd graph would exceed this (see
        :func:`~unitprobe.methods.attribution._common.budget_batch_size`): the peak memory
        of the attribution stays about this plus the model and data.
    seed : int, default 0
        Seed of the pair sampling.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    DataFrame
        The ``input_lag`` table (:data:`unitprobe.schemas.SCHEMAS`): ``method``, ``output``,
        ``feature``, ``lag``, ``attribution``, ``attribution_signed``; one row per (output,
        feature, lag), ``lag`` in ``0..max_lag``. ``attrs``: ``convergence_delta_max`` /
        ``convergence_delta_mean`` (integrated gradients, in output units; None otherwise),
        ``n_examples``, ``steps``, ``max_lag``, ``baseline``.

    Example
    -------
    >>> df = input_lag_attribution(model, x, ["K", "X"], ["K_next"])
    >>> df.sort_values("attribution").tail(1)[["feature", "lag"]]
    """
    x, in_names, out_names = resolve_data(model, inputs, input_names, output_names)
    check_choice(method, "method", schemas.ATTRIBUTION_METHODS)
    check_int(max_examples, "max_examples", minimum=1, allow_none=True)
    n_steps = x.shape[1]
    lag_max = resolve_max_lag(max_lag, n_steps)
    target_steps = resolve_steps(steps, n_steps, lag_max, DEFAULT_N_TARGET_STEPS)
    base, seq, step = sampled_pairs(x, baseline, target_steps, max_examples, seed)
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
            memory_budget_mb=memory_budget_mb,
        )
        per_lag = per_lag[:, : lag_max + 1]
        if per_lag.shape[1] < lag_max + 1:  # explicit steps earlier than max_lag
            pad = np.full((len(seq), lag_max + 1 - per_lag.shape[1], per_lag.shape[2]), np.nan)
            per_lag = np.concatenate([per_lag, pad], axis=1)
        rows += _lag_rows(per_lag, method, out_name, in_names)
        if delta is not None:
            deltas.append(delta)
    df = schemas.frame("input_lag", rows)
    df.attrs.update(delta_attrs(deltas))
    df.attrs.update(
        n_examples=len(seq),
        steps=target_steps.tolist(),
        max_lag=lag_max,
        baseline=baseline_name(baseline),
    )
    return df
