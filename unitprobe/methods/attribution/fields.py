"""Receptive fields: unit ``u`` at step ``t`` <- input feature ``f`` at step ``t - lag``.

The Jacobian (or integrated gradients) of every unit at once, by forward-mode differentiation
of the LSTM recurrence (:func:`unitprobe.model.lstm.lstm_cell`, the cell :func:`run` steps
through), checked against Captum's ``NeuronGradient`` and ``NeuronIntegratedGradients``.
:func:`receptive_fields` returns the ``receptive_fields`` table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from unitprobe import schemas
from unitprobe.config import AttributionConfig
from unitprobe.errors import DataError
from unitprobe.methods.attribution._common import (
    Baseline,
    attribution_mode,
    baseline_tensor,
    batches,
    resolve_data,
    resolve_layer,
    resolve_max_lag,
    resolve_steps,
    resolve_units,
    subsample,
)
from unitprobe.model.lstm import SITES, UnitLSTM, lstm_cell
from unitprobe.validation import check_choice, check_int

__all__ = ["FieldArrays", "receptive_field_arrays", "receptive_fields"]


def _shift(d: Tensor, n_lags: int) -> Tensor:
    """Tangents indexed by lag at step t-1 -> at step t: lag k becomes k+1, lag 0 starts at 0,
    lags from ``n_lags`` on leave the window."""
    return torch.cat([d.new_zeros(1, *d.shape[1:]), d[: n_lags - 1]])


def _site_jacobians(
    model: UnitLSTM, x: Tensor, layer: int, site: str, n_lags: int
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(t, jac)`` for every step, ``jac`` of shape (min(t + 1, n_lags), F, N, H).

    ``jac[lag, f, n, u] = d site_u[n, t] / d x[n, t - lag, f]`` for the lags whose source step
    exists, by forward-mode differentiation of the LSTM recurrence with one tangent per
    (lag, feature) kept in a sliding window: a tangent enters at its source step and leaves
    ``n_lags`` steps later, so the cost is at most that of ``n_lags * F`` forward passes
    whatever the sequence length (less in the first ``n_lags`` steps, where fewer sources
    exist).
    The values come from :func:`~unitprobe.model.lstm.lstm_cell`; the tangents follow its
    equations. Tested against autograd and Captum's ``NeuronGradient``.
    """
    n, n_steps, n_in = x.shape
    n_units = model.config.n_units
    weights = [model.layer_weights(k) for k in range(layer + 1)]
    h = [x.new_zeros(n, n_units) for _ in weights]
    c = [x.new_zeros(n, n_units) for _ in weights]
    # (lags so far, F, N, H); the first step's shift brings in lag 0
    dh = [x.new_zeros(0, n_in, n, n_units) for _ in weights]
    dc = [x.new_zeros(0, n_in, n, n_units) for _ in weights]
    for t in range(n_steps):
        below, d_below = x[:, t], None
        for k, (w_ih, w_hh, bias) in enumerate(weights):
            i, f, g, o, c_new, h_new = lstm_cell(below, h[k], c[k], w_ih, w_hh, bias)
            tanh_c = c_new.tanh()
            # (W, F, N, 4H), W = min(t + 1, n_lags)
            d_pre = _shift(dh[k], n_lags) @ w_hh.T
            if k == 0:
                d_pre[0] += w_ih.T[:, None, :]  # d x[t - 0, f] = e_f enters at lag 0
            else:
                d_pre += d_below @ w_ih.T
            # in place on views of d_pre: the tangents are the large tensors, and every
            # temporary of their size costs an allocation and a pass over memory
            dp_i, dp_f, dp_g, dp_o = d_pre.chunk(4, dim=-1)
            d_gate = {
                "i": dp_i.mul_(i * (1 - i)),
                "f": dp_f.mul_(f * (1 - f)),
                "g": dp_g.mul_(1 - g * g),
                "o": dp_o.mul_(o * (1 - o)),
            }
            dc_k = _shift(dc[k], n_lags).mul_(f)
            dc_k.addcmul_(d_gate["f"], c[k]).addcmul_(d_gate["i"], g).addcmul_(d_gate["g"], i)
            dc[k] = dc_k
            dh[k] = torch.mul(dc_k, o * (1 - tanh_c * tanh_c)).addcmul_(d_gate["o"], tanh_c)
            h[k], c[k] = h_new, c_new
            below, d_below = h_new, dh[k]
        yield t, dh[layer] if site == "h" else dc[layer] if site == "c" else d_gate[site]


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Points in [0, 1] and weights summing to 1 (Captum's ``gausslegendre``)."""
    points, weights = np.polynomial.legendre.leggauss(n)
    return 0.5 * (points + 1.0), 0.5 * weights


class FieldArrays(NamedTuple):
    """Every unit's mean receptive field in one layer (:func:`receptive_field_arrays`).

    Attributes
    ----------
    signed : ndarray of float64, shape (max_lag + 1, n_inputs, n_units)
        ``signed[lag, f, u]``: the mean coefficient of unit ``u`` on input ``f`` at ``lag``.
    absolute : ndarray of float64 of the same shape, or None
        The mean ``|coefficient|`` (None when not asked for).
    input_names : list of str
    n_sequences : int
        Sequences averaged over.
    steps : list of int
        Target steps averaged over.
    max_lag : int
    """

    signed: np.ndarray
    absolute: np.ndarray | None
    input_names: list[str]
    n_sequences: int
    steps: list[int]
    max_lag: int


def receptive_field_arrays(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    *,
    layer: int = 0,
    site: str = "h",
    max_lag: int | None = None,
    method: str = AttributionConfig.field_methods[0],
    steps: int | Sequence[int] | None = None,
    baseline: Baseline = AttributionConfig.baseline,
    n_steps_ig: int = AttributionConfig.field_n_steps_ig,
    max_sequences: int | None = AttributionConfig.max_sequences,
    batch_size: int = AttributionConfig.field_batch_size,
    seed: int = 0,
    with_absolute: bool = True,
) -> FieldArrays:
    """Every unit's receptive field as arrays: :func:`receptive_fields` without the table.

    The parameters are :func:`receptive_fields`' (every unit of the layer is computed);
    ``with_absolute=False`` skips the mean ``|coefficient|``. The null networks of
    :mod:`unitprobe.pipeline.nulls` read their fields this way.

    Returns
    -------
    FieldArrays
        ``signed`` (and ``absolute``) of shape (max_lag + 1, n_inputs, n_units): the values of
        :func:`receptive_fields`' ``attribution_signed`` (and ``attribution``) columns.

    Example
    -------
    >>> fields = receptive_field_arrays(model, x, ["K", "X"], with_absolute=False)
    >>> fields.signed[1, 0]  # every unit's mean coefficient on K[t-1]
    """
    x, in_names, _ = resolve_data(model, inputs, input_names, None)
    check_choice(method, "method", schemas.FIELD_METHODS)
    check_choice(site, "site", SITES)
    check_int(n_steps_ig, "n_steps_ig", minimum=2)
    check_int(max_sequences, "max_sequences", minimum=1, allow_none=True)
    check_int(batch_size, "batch_size", minimum=1)
    layer = resolve_layer(layer, model.config.n_layers)
    n_steps = x.shape[1]
    lag_max = resolve_max_lag(max_lag, n_steps)
    target_steps = set(resolve_steps(steps, n_steps, lag_max, None).tolist())
    base = baseline_tensor(baseline, x)
    if base.ndim == 3:
        raise DataError("receptive_fields takes a baseline of shape (n_steps, n_inputs)")
    x = x[torch.as_tensor(subsample(x.shape[0], max_sequences, seed), device=x.device)]
    n_lags = lag_max + 1
    shape = (n_lags, x.shape[2], model.config.n_units)
    signed = x.new_zeros(shape, dtype=torch.float64)  # sums over sequences and steps
    absolute = x.new_zeros(shape, dtype=torch.float64) if with_absolute else None
    count = np.zeros(n_lags)
    if method == "gradient":
        alphas, weights = np.ones(1), np.ones(1)
    else:
        alphas, weights = _gauss_legendre(n_steps_ig)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device).reshape(1, 1, -1, 1, 1)
    last = max(target_steps)
    with attribution_mode(model), torch.no_grad():
        for sl in batches(x.shape[0], batch_size):
            xb = x[sl, : last + 1]
            diff = xb - base[: last + 1]  # (B, T, F)
            path = torch.cat([base[: last + 1] + float(a) * diff for a in alphas])  # (A*B, T, F)
            for t, jac in _site_jacobians(model, path, layer, site, n_lags):
                if t not in target_steps:
                    continue
                if method == "integrated_gradients":
                    jac = jac.unflatten(2, (len(alphas), -1))  # (W, F, A, B, H)
                    jac = (jac * w).sum(dim=2)  # quadrature over the path: (W, F, B, H)
                    src = torch.arange(t, t - len(jac), -1, device=x.device)
                    jac = jac * diff[:, src].permute(1, 2, 0)[..., None]  # x (x - b)[t - lag]
                valid = slice(0, len(jac))  # lags whose source step exists
                signed[valid] += jac[valid].sum(dim=2).double()
                if absolute is not None:  # the sum of |jac| over sequences, no |jac| copy
                    absolute[valid] += torch.linalg.vector_norm(jac[valid], ord=1, dim=2).double()
                count[valid] += xb.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_signed = signed.cpu().numpy() / count[:, None, None]
        mean_abs = None if absolute is None else absolute.cpu().numpy() / count[:, None, None]
    return FieldArrays(
        signed=mean_signed,
        absolute=mean_abs,
        input_names=list(in_names),
        n_sequences=int(x.shape[0]),
        steps=sorted(target_steps),
        max_lag=lag_max,
    )


def receptive_fields(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None = None,
    *,
    layer: int = 0,
    site: str = "h",
    units: int | Sequence[int] | None = None,
    max_lag: int | None = None,
    method: str = AttributionConfig.field_methods[0],
    steps: int | Sequence[int] | None = None,
    baseline: Baseline = AttributionConfig.baseline,
    n_steps_ig: int = AttributionConfig.field_n_steps_ig,
    max_sequences: int | None = AttributionConfig.max_sequences,
    batch_size: int = AttributionConfig.field_batch_size,
    seed: int = 0,
) -> pd.DataFrame:
    """Each unit's receptive field: its activation <- every input at every lag.

    ``method="gradient"``: the Jacobian ``J = d site_u[t] / d x_f[t - lag]`` averaged over
    sequences and target steps — ``attribution_signed`` is the mean coefficient (a local linear
    "formula" of the unit), ``attribution`` the mean ``|J|``.
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
    baseline : {"zero", "mean"} or ndarray of shape (n_steps, n_inputs), default "mean"
        Integrated gradients only: where the path starts, the per-step mean of ``inputs``
        (``AttributionConfig.baseline``), 0 in normalized units, or given.
    n_steps_ig : int, default 16
        Quadrature points of integrated gradients.
    max_sequences : int or None, default 128
        Sequences used (a random subset with ``seed``); None uses all.
    batch_size : int, default 128 (``AttributionConfig.field_batch_size``)
        Sequences per pass (memory: ``batch_size * n_steps_ig * (max_lag + 1) * n_inputs``
        tangents of ``n_units`` floats).
    seed : int, default 0

    Returns
    -------
    DataFrame
        The ``receptive_fields`` table (:data:`unitprobe.schemas.SCHEMAS`): ``method``,
        ``state`` (= ``site``), ``layer``, ``unit``, ``feature``, ``lag``, ``attribution``,
        ``attribution_signed``; one row per (unit, feature, lag). ``attrs``: ``n_sequences``,
        ``steps``, ``max_lag``, ``site``.

    Example
    -------
    >>> rf = receptive_fields(model, x, ["K", "X"])
    >>> rf.loc[rf.groupby("unit")["attribution"].idxmax(), ["unit", "feature", "lag"]]
    """
    chosen = resolve_units(units, model.config.n_units)
    fields = receptive_field_arrays(
        model, inputs, input_names, layer=layer, site=site, max_lag=max_lag, method=method,
        steps=steps, baseline=baseline, n_steps_ig=n_steps_ig, max_sequences=max_sequences,
        batch_size=batch_size, seed=seed,
    )  # fmt: skip
    mean_signed, mean_abs, in_names = fields.signed, fields.absolute, fields.input_names
    layer = resolve_layer(layer, model.config.n_layers)
    n_lags = fields.max_lag + 1
    units_idx = np.asarray(chosen, dtype=np.int64)
    n_in = len(in_names)
    # rows in unit, feature, lag order; arrays are (lag, feature, unit)
    pick = (slice(None), slice(None), units_idx)
    columns = {
        "method": method,
        "state": site,
        "layer": layer,
        "unit": np.repeat(units_idx, n_in * n_lags),
        "feature": np.tile(np.repeat(np.asarray(in_names, dtype=object), n_lags), len(chosen)),
        "lag": np.tile(np.arange(n_lags), n_in * len(chosen)),
        "attribution": mean_abs[pick].transpose(2, 1, 0).reshape(-1),
        "attribution_signed": mean_signed[pick].transpose(2, 1, 0).reshape(-1),
    }
    df = schemas.schema("receptive_fields").coerce(
        pd.DataFrame(columns, columns=schemas.columns("receptive_fields"))
    )
    df.attrs.update(
        n_sequences=fields.n_sequences, steps=fields.steps, max_lag=fields.max_lag, site=site
    )
    return df
