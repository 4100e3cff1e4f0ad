"""Unit attribution: output ``o`` <- hidden unit ``u`` of a layer, its states at all steps summed.

Captum's ``LayerIntegratedGradients``, ``LayerConductance`` and ``LayerGradientXActivation`` on
the hidden state of one layer (the layer's tap in
:class:`~unitprobe.methods.attribution._common.CaptumNetwork`).
:func:`unit_attribution_per_sequence` gives the per-example attributions;
:func:`unit_attribution` averages them into the ``unit_attribution`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import LayerConductance, LayerGradientXActivation, LayerIntegratedGradients
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
    resolve_layer,
    resolve_steps,
    sampled_pairs,
)
from unitprobe.model.lstm import UnitLSTM, as_tensor
from unitprobe.validation import check_choice, check_int

__all__ = ["unit_attribution_per_sequence", "unit_attribution"]

_INTEGRATED_LAYER_METHODS = {
    "layer_integrated_gradients": LayerIntegratedGradients,
    "layer_conductance": LayerConductance,
}


def unit_attribution_per_sequence(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    step: int | Sequence[int] | np.ndarray,
    output: int,
    *,
    layer: int | None = None,
    method: str = AttributionConfig.unit_methods[0],
    baseline: Baseline = "zero",
    n_steps_ig: int = AttributionConfig.n_steps_ig,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-sequence attribution of one output at one step to each hidden unit of a layer.

    Captum's layer methods on the hidden state ``h`` of ``layer`` (a one-layer-per-module view
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
    baseline : {"zero", "mean"} or ndarray, default "zero"
        Input baseline, as in
        :func:`~unitprobe.methods.attribution.inputs.input_lag_per_sequence` (``"zero"`` here,
        so one sequence's attribution does not depend on the others passed with it;
        :func:`unit_attribution` passes the ``"mean"`` baseline of all its inputs).
    n_steps_ig : int, default 32
        Quadrature points. Layer integrated gradients of the last layer use one: the readout
        is linear in its ``h``, so the midpoint rule is exact there.
    batch_size : int, default 64
        Most sequences per Captum call (each expanded ``n_steps_ig`` times).
    memory_budget_mb : float, default 256
        Fewer sequences per call where the call's autograd graph would exceed this (see
        :func:`~unitprobe.methods.attribution._common.budget_batch_size`): the peak memory
        of the attribution stays about this plus the model and data.

    Returns
    -------
    attributions : ndarray of shape (n_sequences, n_units)
        For the two integrated methods, the sum over units equals
        ``F(x) - F(baseline)`` (outputs at ``step``) up to ``delta``.
    delta : ndarray of shape (n_sequences,) or None
        Completeness error per sequence (integrated methods only).
    """
    check_choice(method, "method", schemas.UNIT_ATTRIBUTION_METHODS)
    check_int(n_steps_ig, "n_steps_ig", minimum=2)
    check_int(batch_size, "batch_size", minimum=1)
    check_output(output, model.config.n_outputs)
    layer = resolve_layer(layer, model.config.n_layers)
    x = as_tensor(inputs, model)
    steps = as_steps(step, x.shape[0], x.shape[1])
    base = baseline_tensor(baseline, x)
    n_src = int(steps.max()) + 1
    x, base = x[:, :n_src], base[..., :n_src, :]
    if method == "layer_integrated_gradients" and layer == model.config.n_layers - 1:
        n_steps_ig = 1  # the readout is linear in the last layer's h: one point is exact
    attrs, deltas = [], []
    with attribution_mode(model):
        forward = CaptumNetwork(model)
        hooked = forward.taps[layer]
        points = 1 if method == "layer_gradient_x_activation" else n_steps_ig
        size = budget_batch_size(model, n_src, points, batch_size, memory_budget_mb)
        for sl in batches(x.shape[0], size):
            b = base[sl] if base.ndim == 3 else base
            z = x[sl] - b
            args = (b.expand_as(z).contiguous(), torch.as_tensor(steps[sl], device=x.device))
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
    method: str = AttributionConfig.unit_methods[0],
    baseline: Baseline = AttributionConfig.baseline,
    steps: int | Sequence[int] | None = None,
    n_steps_ig: int = AttributionConfig.n_steps_ig,
    max_examples: int | None = AttributionConfig.max_examples,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Contribution of each hidden unit of a layer to each output (``unit_attribution`` table).

    See :func:`unit_attribution_per_sequence` for the per-example attribution; this averages it
    over (sequence, target step) pairs: ``attribution`` is the mean absolute value,
    ``attribution_signed`` the mean signed value.

    Parameters
    ----------
    model : UnitLSTM
    inputs : ndarray of shape (n_sequences, n_steps, n_inputs), or a dataset
    output_names : list of str, optional
    layer : int, optional
        Default the last layer (the one the readout reads).
    method : {"layer_integrated_gradients", "layer_conductance", "layer_gradient_x_activation"}
    baseline : {"mean", "zero"} or ndarray of shape (n_steps, n_inputs), default "mean"
        As in :func:`~unitprobe.methods.attribution.inputs.input_lag_attribution`.
    steps : int or list of int, optional
        Target steps; default the last ``min(10, n_steps)``.
    n_steps_ig : int, default 32
    max_examples : int or None, default 512
        Budget of (sequence, target step) pairs per output.
    batch_size : int, default 64
        Most sequences per Captum call (each expanded ``n_steps_ig`` times).
    memory_budget_mb : float, default 256
        Fewer sequences per call where the call's autograd graph would exceed this (see
        :func:`~unitprobe.methods.attribution._common.budget_batch_size`): the peak memory
        of the attribution stays about this plus the model and data.
    seed : int, default 0
    progress : bool, default False

    Returns
    -------
    DataFrame
        The ``unit_attribution`` table (:data:`unitprobe.schemas.SCHEMAS`): ``method``,
        ``output``, ``layer``, ``unit``, ``attribution``, ``attribution_signed``; one row per
        (output, unit). ``attrs``: ``convergence_delta_max`` / ``convergence_delta_mean``
        (integrated methods; None otherwise), ``n_examples``, ``steps``, ``layer``,
        ``baseline``.

    Example
    -------
    >>> unit_attribution(model, x, ["y"]).nlargest(2, "attribution")[["unit", "attribution"]]
    """
    x, _, out_names = resolve_data(model, inputs, None, output_names)
    check_choice(method, "method", schemas.UNIT_ATTRIBUTION_METHODS)
    check_int(max_examples, "max_examples", minimum=1, allow_none=True)
    layer = resolve_layer(layer, model.config.n_layers)
    target_steps = resolve_steps(steps, x.shape[1], 0, DEFAULT_N_TARGET_STEPS)
    base, seq, step = sampled_pairs(x, baseline, target_steps, max_examples, seed)
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
            memory_budget_mb=memory_budget_mb,
        )
        if delta is not None:
            deltas.append(delta)
        rows += [
            {
                "method": method,
                "output": out_name,
                "layer": layer,
                "unit": u,
                "attribution": np.abs(attr[:, u]).mean(),
                "attribution_signed": attr[:, u].mean(),
            }
            for u in range(attr.shape[1])
        ]
    df = schemas.frame("unit_attribution", rows)
    df.attrs.update(delta_attrs(deltas))
    df.attrs.update(
        n_examples=len(seq),
        steps=target_steps.tolist(),
        layer=layer,
        baseline=baseline_name(baseline),
    )
    return df
