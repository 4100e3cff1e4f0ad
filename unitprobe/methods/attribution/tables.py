"""Every attribution of an analysis in one call: the ``input_lag``, ``unit_attribution`` and
``receptive_fields`` tables, with the settings of an :class:`~unitprobe.config.AttributionConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from unitprobe import schemas
from unitprobe.config import AttributionConfig
from unitprobe.methods.attribution._common import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MEMORY_BUDGET_MB,
    resolve_data,
    resolve_layer,
)
from unitprobe.methods.attribution.fields import receptive_fields
from unitprobe.methods.attribution.inputs import input_lag_attribution
from unitprobe.methods.attribution.units import unit_attribution
from unitprobe.model.lstm import UnitLSTM

__all__ = ["attribution_tables"]


def attribution_tables(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    *,
    config: AttributionConfig | None = None,
    layers: Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    progress: bool = False,
) -> dict[str, pd.DataFrame]:
    """All three attribution tables of a model.

    * ``input_lag``: :func:`~unitprobe.methods.attribution.inputs.input_lag_attribution` for
      each of ``config.methods``;
    * ``unit_attribution``: :func:`~unitprobe.methods.attribution.units.unit_attribution` for
      each of ``config.unit_methods`` and each layer;
    * ``receptive_fields``: :func:`~unitprobe.methods.attribution.fields.receptive_fields` for
      each of ``config.field_methods`` and each layer (site ``h``, all units).

    Every integrated-gradients part starts from ``config.baseline``. Input-lag and unit
    attributions use ``config.n_steps_ig`` and at most ``config.max_examples`` (sequence, step)
    pairs per output; receptive fields use ``config.field_n_steps_ig`` and at most
    ``config.max_sequences`` sequences (a random subset with ``seed``). Lags go up to
    ``min(10, n_steps - 1)``; target steps are the functions' defaults.

    Parameters
    ----------
    model : UnitLSTM
    inputs : ndarray of shape (n_sequences, n_steps, n_inputs), or a dataset
        As in :func:`~unitprobe.methods.attribution.inputs.input_lag_attribution`.
    input_names : list of str, length n_inputs, optional
    output_names : list of str, length n_outputs, optional
    config : AttributionConfig, optional
        Methods, baseline, quadrature and sampling; default ``AttributionConfig()``.
    layers : sequence of int, optional
        Layers for unit attributions and receptive fields; default all.
    seed : int, default 0
        Seed of the pair and sequence sampling (one stream, already derived by the caller).
    batch_size : int, default 64
        Most sequences per Captum call of the input-lag and unit attributions.
    memory_budget_mb : float, default 256
        Bound on one Captum call's autograd graph (fewer sequences per call where needed): the
        stage's peak memory is about this plus the model and the data.
    progress : bool, default False
        Show progress bars.

    Returns
    -------
    dict of str to DataFrame
        ``{"input_lag": ..., "unit_attribution": ..., "receptive_fields": ...}``, each with
        exactly the columns and dtypes of its schema (:data:`unitprobe.schemas.SCHEMAS`);
        a table whose methods are empty has no rows. The ``input_lag`` and
        ``unit_attribution`` frames carry ``attrs["convergence_delta_max"]`` and
        ``attrs["convergence_delta_mean"]``: the largest and the mean absolute
        integrated-gradients completeness error (output units) over the table's parts, None
        when no part uses an integrated method. ``receptive_fields.attrs``: ``max_lag`` (when
        there are fields).

    Example
    -------
    >>> tables = attribution_tables(model, dataset, config=AttributionConfig(max_examples=256))
    >>> tables["input_lag"].nlargest(3, "attribution")
    """
    config = config if config is not None else AttributionConfig()
    x, in_names, out_names = resolve_data(model, inputs, input_names, output_names)
    x = x.cpu().numpy()
    layer_list = (
        list(range(model.config.n_layers))
        if layers is None
        else [resolve_layer(k, model.config.n_layers) for k in layers]
    )
    common = {"baseline": config.baseline, "n_steps_ig": config.n_steps_ig, "seed": seed}
    sampled = {
        "max_examples": config.max_examples,
        "progress": progress,
        "batch_size": batch_size,
        "memory_budget_mb": memory_budget_mb,
    }
    input_parts = [
        input_lag_attribution(model, x, in_names, out_names, method=m, **common, **sampled)
        for m in config.methods
    ]
    unit_parts = [
        unit_attribution(model, x, out_names, layer=k, method=m, **common, **sampled)
        for m in config.unit_methods
        for k in layer_list
    ]
    field_parts = [
        receptive_fields(
            model,
            x,
            in_names,
            layer=k,
            method=m,
            baseline=config.baseline,
            n_steps_ig=config.field_n_steps_ig,
            max_sequences=config.max_sequences,
            batch_size=config.field_batch_size,
            seed=seed,
        )
        for m in config.field_methods
        for k in layer_list
    ]
    tables = {
        "input_lag": _concat("input_lag", input_parts),
        "unit_attribution": _concat("unit_attribution", unit_parts),
        "receptive_fields": _concat("receptive_fields", field_parts),
    }
    for name in ("input_lag", "unit_attribution"):
        tables[name].attrs = _pooled_deltas(input_parts if name == "input_lag" else unit_parts)
    if field_parts:
        tables["receptive_fields"].attrs = {"max_lag": field_parts[0].attrs["max_lag"]}
    return tables


def _concat(name: str, parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts one under the other, as table ``name`` (no rows if there are no parts)."""
    if not parts:
        return schemas.SCHEMAS[name].empty()
    return schemas.SCHEMAS[name].coerce(pd.concat(parts, ignore_index=True))


def _pooled_deltas(parts: list[pd.DataFrame]) -> dict[str, float | None]:
    """Largest and mean completeness error over the parts that have one (None if none).

    Every part evaluates the same (sequence, step) pairs for every output, so the mean of the
    parts' means is the mean over all their examples.
    """
    found = [p.attrs for p in parts if p.attrs.get("convergence_delta_max") is not None]
    if not found:
        return {"convergence_delta_max": None, "convergence_delta_mean": None}
    return {
        "convergence_delta_max": max(a["convergence_delta_max"] for a in found),
        "convergence_delta_mean": sum(a["convergence_delta_mean"] for a in found) / len(found),
    }
