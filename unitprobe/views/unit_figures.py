"""Figures of what units do for the outputs: ablation, attributions and receptive fields.

Each function takes one table in its :mod:`unitprobe.schemas` shape (``ablation``,
``input_lag``, ``unit_attribution``, ``receptive_fields``) and returns a
:class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from unitprobe.errors import DataError
from unitprobe.schemas import ABLATION_MODES, ALL_OUTPUTS
from unitprobe.validation import check_choice
from unitprobe.views import _draw
from unitprobe.views import style as _style

__all__ = ["plot_ablation", "plot_input_lag", "plot_receptive_fields", "plot_unit_attribution"]

_ATTRIBUTION_VALUES = ("attribution", "attribution_signed")

# ---------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------

_ABLATION_LABELS = {
    "delta_mse": "Δ MSE, ablated − intact (normalized units²)",
    "rel_delta": "relative Δ MSE (Δ MSE / intact MSE)",
}


def _group_key(units: str) -> tuple:
    """Sort key of an ``ablation.units`` value (``"3"``, ``"1+4"``): size, then members."""
    members = [m.strip() for m in str(units).split("+")]
    return (len(members), [(0, int(m), "") if m.isdigit() else (1, 0, m) for m in members])


def plot_ablation(
    ablation: pd.DataFrame, *, mode: str | None = None, value: str = "delta_mse"
) -> Figure:
    """Ablated units × outputs heatmap of the loss increase, one panel per ablation mode.

    Parameters
    ----------
    ablation : DataFrame
        ``ablation`` table: ``layer``, ``units`` (``"3"`` or ``"1+4"``), ``mode``, ``output``
        (output name or ``"all"``), and ``value``.
    mode : {"zero", "mean", "resample"} or None, default None
        Show one mode; ``None`` shows every mode in the table (zero, mean, resample order).
    value : {"delta_mse", "rel_delta"}, default "delta_mse"
        ``delta_mse`` is in normalized output units²; ``rel_delta`` is relative to the intact MSE.

    Returns
    -------
    Figure
        One heatmap per mode; rows = single units (in order) then groups (by size, below a
        line); columns = outputs then ``all``; diverging colours centred at 0, each panel on
        its own symmetric scale with its own colour bar (a zero ablation can hurt thousands of
        times more than a mean ablation, which would look blank on a shared scale; red:
        ablation hurts); cells annotated with the value.
    """
    check_choice(value, "value", tuple(_ABLATION_LABELS), error=DataError)
    _draw.require(ablation, ("layer", "units", "mode", "output", value), "ablation")
    df = ablation.assign(_units=[str(u).replace(" ", "") for u in ablation["units"]])
    present = _draw.unique(df["mode"])
    ordered = [m for m in ABLATION_MODES if m in present]
    ordered += [m for m in present if m not in ABLATION_MODES]
    modes = [_draw.pick(mode, ordered, "mode", "ablation")] if mode is not None else ordered
    if not modes:
        raise _draw.EmptySelectionError("ablation table has no rows to plot")
    df = df[df["mode"].isin(modes)]
    multi = len(_draw.unique(df["layer"])) > 1
    keys = _draw.unique(zip(df["layer"], df["_units"], strict=True))
    keys.sort(key=lambda k: (_group_key(k[1])[0] > 1, k[0], _group_key(k[1])))
    n_single = sum(1 for k in keys if "+" not in k[1])
    labels = [f"L{lay}: {u}" if multi else u for lay, u in keys]
    outputs = _draw.unique(df["output"])
    outputs = [o for o in outputs if o != ALL_OUTPUTS] + [o for o in outputs if o == ALL_OUTPUTS]
    df = df.assign(_row=list(zip(df["layer"], df["_units"], strict=True)))
    mats = {
        m: _draw.grid(df[df["mode"] == m], "_row", "output", [value], keys, outputs, "ablation")[
            value
        ]
        for m in modes
    }
    bounds = {m: _draw.symmetric_bound([mats[m]]) for m in modes}
    annotated = len(keys) <= _draw.MAX_ANNOTATED_ROWS and len(outputs) <= _draw.MAX_ANNOTATED_COLS
    label_w = 0.09 * max(len(s) for s in labels)
    panel_w = max(1.5, _draw.span(len(outputs), 0.62, _draw.MAX_COL_LABELS))
    width = max(4.6, 1.2 + label_w + len(modes) * (panel_w + 1.1) + 0.4)
    row_h = 0.32 if annotated else 0.2
    height = 1.9 + _draw.span(n_single, row_h, _draw.MAX_ROW_LABELS, len(keys) - n_single)
    with _style.style():
        fig = _style.new_figure(width, height)
        axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)[0]
        for i, (ax, m) in enumerate(zip(axes, modes, strict=True)):
            annot = (
                _draw.annotations(mats[m], fmts=[lambda v: _draw.fmt_value(v, 3)])
                if annotated
                else None
            )
            _draw.heatmap(
                ax,
                mats[m],
                labels,
                [str(o) for o in outputs],
                cmap=_style.DIVERGING,
                vmin=-bounds[m],
                vmax=bounds[m],
                center=0.0,
                annot=annot,
                cbar=False,
                unit_rows=n_single,
            )
            cbar = fig.colorbar(ax.collections[0], ax=ax, shrink=0.9, aspect=25, pad=0.03)
            if i == len(modes) - 1:
                cbar.set_label(_draw.wrap(_ABLATION_LABELS[value], height - 1.0, 9))
            if 0 < n_single < len(keys):
                ax.axhline(n_single, color="0.15", linewidth=1.2)
            ax.set_title(f"{m} ablation")
            ax.set_xlabel("output")
            ax.set_ylabel("ablated unit(s)" if i == 0 else "")
            if i > 0:
                ax.tick_params(axis="y", labelleft=False)
        what = "Δ MSE" if value == "delta_mse" else "relative Δ MSE"
        fig.suptitle(_draw.wrap(f"Ablation: {what} per output when units are silenced", width, 10))
    return fig


# ---------------------------------------------------------------------------------------------
# attribution
# ---------------------------------------------------------------------------------------------


def _one_method(
    table: pd.DataFrame, name: str, columns: tuple[str, ...], value: str, method: str | None
) -> tuple[pd.DataFrame, str]:
    """Rows of ``table`` for ``method`` (the first method in the table when None)."""
    _draw.require(table, (*columns, value), name)
    chosen = _draw.pick(method, _draw.unique(table["method"]), "method", name)
    return table[table["method"] == chosen], chosen


def plot_input_lag(
    input_lag: pd.DataFrame, *, method: str | None = None, value: str = "attribution"
) -> Figure:
    """Input feature × lag heatmaps of output attribution, one panel per output.

    Parameters
    ----------
    input_lag : DataFrame
        ``input_lag`` table: ``method``, ``output``, ``feature`` (input series), ``lag`` (0, 1,
        2, ... steps back) and ``value``.
    method : str or None, default None
        Attribution method to show; ``None`` takes the first one in the table.
    value : {"attribution", "attribution_signed"}, default "attribution"
        Mean absolute attribution (sequential colours from 0) or signed (diverging around 0).

    Returns
    -------
    Figure
        One heatmap per output (rows = input features, columns = lag), one shared scale.
    """
    check_choice(value, "value", _ATTRIBUTION_VALUES, error=DataError)
    df, chosen = _one_method(
        input_lag, "input_lag", ("method", "output", "feature", "lag"), value, method
    )
    outputs = _draw.unique(df["output"])
    features = _draw.unique(df["feature"])
    lags = sorted(_draw.unique(df["lag"]))
    mats = {
        o: _draw.grid(
            df[df["output"] == o], "feature", "lag", [value], features, lags, "input_lag"
        )[value]
        for o in outputs
    }
    signed = value == "attribution_signed"
    peak = _draw.symmetric_bound(mats.values())
    nrows, ncols = _draw.panel_grid(len(outputs), 3)
    feat_w = 0.085 * max(len(str(f)) for f in features)
    panel_w = max(1.8, _draw.span(len(lags), 0.36, _draw.MAX_COL_LABELS))
    width = max(4.6, feat_w + 0.9 + ncols * (panel_w + 0.3) + 1.1)
    height = 1.4 + nrows * (0.9 + _draw.span(len(features), 0.32, _draw.MAX_ROW_LABELS))
    with _style.style():
        fig = _style.new_figure(width, height)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        flat = axes.ravel()
        for i, o in enumerate(outputs):
            ax = flat[i]
            _draw.heatmap(
                ax,
                mats[o],
                [str(f) for f in features],
                [_draw.step_label(lag) for lag in lags],
                cmap=_style.DIVERGING if signed else _style.SEQUENTIAL,
                vmin=-peak if signed else 0.0,
                vmax=peak,
                center=0.0 if signed else None,
                cbar=False,
            )
            ax.set_title(f"output {o}")
            ax.set_xlabel("lag (steps back)")
            ax.set_ylabel("input feature" if i % ncols == 0 else "")
        for ax in flat[len(outputs) :]:
            ax.remove()
        used = list(flat[: len(outputs)])
        cbar = fig.colorbar(used[0].collections[0], ax=used, shrink=0.9, aspect=20)
        cbar.set_label("mean signed attribution" if signed else "mean |attribution|")
        fig.suptitle(
            _draw.wrap(
                f"Which input, how many steps back, drives each output (method: {chosen})",
                width,
                10,
            )
        )
    return fig


#: Widest (inches) the bars of :func:`plot_unit_attribution` grow; more units get thinner bars.
MAX_BARS_WIDTH = 16.0


def plot_unit_attribution(
    unit_attribution: pd.DataFrame, *, method: str | None = None, value: str = "attribution"
) -> Figure:
    """Grouped bars: attribution of each output to each unit (bars per unit, hue = output).

    Parameters
    ----------
    unit_attribution : DataFrame
        ``unit_attribution`` table: ``method``, ``output``, ``layer``, ``unit`` and ``value``.
    method : str or None, default None
        Attribution method; ``None`` takes the first one in the table.
    value : {"attribution", "attribution_signed"}, default "attribution"

    Returns
    -------
    Figure
        One bar axis; x = unit, one bar per output (colour-blind palette), y = mean |attribution|.
        Bars of a large layer are thinner (the axis stops growing at :data:`MAX_BARS_WIDTH`
        inches) and every 2nd, 4th, ... unit is labelled.
    """
    check_choice(value, "value", _ATTRIBUTION_VALUES, error=DataError)
    df, chosen = _one_method(
        unit_attribution, "unit_attribution", ("method", "output", "layer", "unit"), value, method
    )
    keys = _draw.unit_keys(df)
    multi = len({k[0] for k in keys}) > 1
    label_of = {k: _draw.unit_label(k[0], k[1], multi) for k in keys}
    df = df.assign(_row=list(zip(df["layer"], df["unit"], strict=True)))
    outputs = _draw.unique(df["output"])
    heights = _draw.grid(df, "_row", "output", [value], keys, outputs, "unit_attribution")[value]
    order = [label_of[k] for k in keys]
    slot = 0.22 * len(outputs) + 0.25  # inches per unit: its bars and a gap
    width = max(4.6, 1.4 + min(len(keys) * slot, MAX_BARS_WIDTH))
    bar_w = 0.8 / len(outputs)
    with _style.style():
        fig = _style.new_figure(width, 3.2)
        ax = fig.subplots()
        x = np.arange(len(keys)) - 0.4  # left edge of each unit's group of bars
        for j, (output, color) in enumerate(
            zip(outputs, _style.categorical(len(outputs)), strict=True)
        ):
            ax.bar(
                x + j * bar_w, heights[:, j], bar_w, align="edge", color=color, label=str(output)
            )
        ax.set_xlim(-0.5, len(keys) - 0.5)
        if value == "attribution_signed":
            ax.axhline(0, color="0.2", linewidth=0.8)
        ax.set_xlabel("layer / unit" if multi else "unit")
        ax.set_ylabel("mean |attribution|" if value == "attribution" else "mean attribution")
        step = _draw.label_step(len(order), _draw.MAX_COL_LABELS)
        ax.set_xticks(range(0, len(order), step), order[::step])
        _draw.rotate_xticks(ax, order, limit=4)
        ax.legend(title="output", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(
            _draw.wrap(
                f"How much each output depends on each unit (method: {chosen})", width - 1.0, 9
            )
        )
    return fig


#: How the receptive-field methods are named in titles (the table's ``method`` column).
_FIELD_METHODS = {
    "gradient": "data-averaged Jacobian: gradient of the unit's state",
    "jacobian": "data-averaged Jacobian: gradient of the unit's state",
}


def plot_receptive_fields(
    receptive_fields: pd.DataFrame, *, method: str | None = None, state: str | None = None
) -> Figure:
    """Units × (input feature, lag) heatmap of signed attribution: each unit's receptive field.

    Parameters
    ----------
    receptive_fields : DataFrame
        ``receptive_fields`` table: ``method``, ``state``, ``layer``, ``unit``, ``feature``,
        ``lag``, ``attribution_signed``.
    method : str or None, default None
        Receptive-field method; ``None`` takes the first one in the table.
    state : str or None, default None
        Unit state whose field is shown; ``None`` takes ``"h"`` if present, else the first one.

    Returns
    -------
    Figure
        One heatmap; rows = units, columns grouped by input feature (names on top, separated by
        lines), lag 0, 1, ... within a group; colours diverge around 0 (``vlag``) on a symmetric
        scale; values are ``attribution_signed``.
    """
    value = "attribution_signed"
    columns = ("method", "state", "layer", "unit", "feature", "lag")
    df, chosen = _one_method(receptive_fields, "receptive_fields", columns, value, method)
    states = _draw.unique(df["state"])
    if state is None and "h" in states:
        state = "h"
    state = _draw.pick(state, states, "state", "receptive_fields")
    df = df[df["state"] == state]
    keys = _draw.unit_keys(df)
    multi = len({k[0] for k in keys}) > 1
    features = _draw.unique(df["feature"])
    lags = sorted(_draw.unique(df["lag"]))
    cols = [(f, lag) for f in features for lag in lags]
    df = df.assign(
        _row=list(zip(df["layer"], df["unit"], strict=True)),
        _col=list(zip(df["feature"], df["lag"], strict=True)),
    )
    mat = _draw.grid(df, "_row", "_col", [value], keys, cols, "receptive_fields")[value]
    bound = _draw.symmetric_bound([mat])
    width = max(4.6, 1.6 + _draw.span(len(cols), 0.3, _draw.MAX_COL_LABELS) + 1.2)
    height = 2.0 + _draw.span(len(keys), 0.28, _draw.MAX_ROW_LABELS)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        _draw.heatmap(
            ax,
            mat,
            [_draw.unit_label(lay, u, multi) for lay, u in keys],
            [_draw.step_label(lag) for _, lag in cols],
            cmap=_style.DIVERGING,
            vmin=-bound,
            vmax=bound,
            center=0.0,
            cbar_label=f"mean signed attribution to {state}",
        )
        for k in range(1, len(features)):
            ax.axvline(k * len(lags), color="0.15", linewidth=1.5)
        _draw.layer_breaks(ax, [k[0] for k in keys])
        top = ax.secondary_xaxis("top")
        top.xaxis.set_major_locator(
            FixedLocator([(k + 0.5) * len(lags) for k in range(len(features))])
        )
        top.xaxis.set_minor_locator(NullLocator())
        top.set_xticklabels([str(f) for f in features], fontweight="bold")
        top.tick_params(length=0)
        top.spines["top"].set_visible(False)
        top.set_xlabel("input feature")
        ax.set_xlabel("lag (steps back)")
        ax.set_ylabel("layer / unit" if multi else "unit")
        # wrapped to the axes (the figure less labels and colour bar): a title centred over
        # the axes must not run past the figure's left edge
        how = _FIELD_METHODS.get(chosen, chosen)
        title = f"Receptive fields: what drives each unit's {state} ({how})"
        ax.set_title(_draw.wrap(title, width - 1.2, 9))
    return fig
