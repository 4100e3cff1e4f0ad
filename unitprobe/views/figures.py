"""Figures from unitprobe's result tables.

Every figure is one function that takes a tidy DataFrame in a schema of ``DESIGN.md``
(``probes.csv``, ``ablation.csv``, ...) plus keyword options and returns a matplotlib
:class:`~matplotlib.figure.Figure`. Figures never touch a model. They are drawn on an Agg canvas
(no window, no global pyplot state), sized by the number of rows and columns they show, with
colour-blind-safe colours (seaborn ``colorblind`` for categories, ``viridis``/``cividis`` for
sequential values, ``vlag`` centred at 0 for signed values) and no text under 8 pt.

:func:`save_figure` writes PNG (200 dpi) and PDF (TrueType fonts embedded);
:func:`render_all` draws every figure whose table exists in a results directory, and
:data:`FIGURES` lists them with a one-sentence caption each.

Example
-------
>>> probes = pd.read_csv("results/probes.csv")
>>> fig = plot_probe_heatmap(probes, state="h", layer=0)
>>> save_figure(fig, "results/figures/probe_r2")
[PosixPath('results/figures/probe_r2.png'), PosixPath('results/figures/probe_r2.pdf')]
"""

from __future__ import annotations

import logging
import math
import textwrap
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, NullLocator

from unitprobe import schemas
from unitprobe.errors import DataError
from unitprobe.views import style as _style

__all__ = [
    "FIGURES",
    "FigureSpec",
    "plot_ablation",
    "plot_capacity_curve",
    "plot_identifiability",
    "plot_input_lag",
    "plot_partial_r2",
    "plot_probe_heatmap",
    "plot_receptive_fields",
    "plot_role_stability",
    "plot_role_traces",
    "plot_roles",
    "plot_specialization",
    "plot_unit_attribution",
    "render_all",
    "save_figure",
]

log = logging.getLogger(__name__)

FORMATS = ("png", "pdf", "svg")
ABLATION_MODES = ("zero", "mean", "resample")
_ANNOT_FONT = _style.MIN_FONT_PT
_MAX_ANNOTATED_ROWS = 40
_MAX_ANNOTATED_COLS = 16


class _EmptySelectionError(DataError):
    """The table is well formed but holds no rows for this figure (render_all skips it)."""


# ---------------------------------------------------------------------------------------------
# small pure helpers: validation, unit ids, ordering, formatting
# ---------------------------------------------------------------------------------------------


def _require_columns(df: pd.DataFrame, columns: Iterable[str], table: str) -> None:
    """Raise DataError naming every column of ``columns`` that ``df`` lacks."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{table} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(
            f"{table} table is missing column(s) {', '.join(map(repr, missing))}; "
            f"it has {list(map(str, df.columns))}"
        )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _as_int_or_str(value: Any) -> int | str | None:
    """A unit/layer id as ``int`` where it is integral (``3``, ``3.0``, ``"3"``), else ``str``.

    Handles the mixed ``unit`` column of probes.csv (ints and ``"all"``) whatever dtype pandas
    gave it; missing values become ``None``.
    """
    if _is_missing(value) or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else str(value)
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else text


def _id_key(value: int | str | None) -> tuple[int, int, str]:
    """Sort key: integers in numeric order, then strings (``"all"``), then missing."""
    if value is None:
        return (2, 0, "")
    if isinstance(value, int):
        return (0, value, "")
    return (1, 0, value)


def _as_bool(value: Any, column: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "1.0"):
        return True
    if text in ("false", "0", "no", "0.0"):
        return False
    raise DataError(f"column {column!r} holds {value!r}, must be a boolean (True/False)")


def _unique(values: Iterable[Hashable]) -> list:
    """Distinct values in order of first appearance (missing values dropped)."""
    seen: dict = {}
    for v in values:
        if not _is_missing(v) and v is not pd.NA:
            seen.setdefault(v, None)
    return list(seen)


def _unit_label(layer: int | None, unit: int | str | None, multi_layer: bool) -> str:
    name = "population" if unit == "all" else str(unit)
    if multi_layer and layer is not None:
        return f"L{layer} {name}" if unit == "all" else f"L{layer} u{name}"
    return name


def _fmt_value(value: float, digits: int = 2) -> str:
    """Compact number for a cell: fixed point where it reads well, else 2 significant digits."""
    if not np.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "")
    if value == 0 or 0.01 <= abs(value) < 100:
        return f"{value:.{digits}f}"
    return f"{value:.2g}"


def _fmt_vif(value: float) -> str:
    if _is_missing(value):
        return "n/a"
    if not np.isfinite(value):
        return "∞"
    if value >= 100:
        return f"{value:.2g}".replace("e+0", "e").replace("e+", "e")
    return f"{value:.1f}"


def _truncate(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Wrap ``text`` to lines that fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(int(width_in * 72 / (0.56 * fontsize)), 20)
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def _grid(
    df: pd.DataFrame,
    row: str,
    col: str,
    values: Sequence[str],
    rows: Sequence[Hashable],
    cols: Sequence[Hashable],
    table: str,
) -> dict[str, np.ndarray]:
    """Matrices ``{value: ndarray of shape (len(rows), len(cols))}`` from a long table.

    Cells without a row are NaN; two rows for one cell are an error (the table is ambiguous).
    """
    keys = list(zip(df[row], df[col], strict=True))
    if len(set(keys)) != len(keys):
        dup = pd.Series(keys)[pd.Series(keys).duplicated()].iloc[0]
        raise DataError(
            f"{table} table has more than one row for {row}={dup[0]!r}, {col}={dup[1]!r}; "
            "filter it (e.g. by state, layer, method) before plotting"
        )
    r_index = {r: i for i, r in enumerate(rows)}
    c_index = {c: j for j, c in enumerate(cols)}
    data = {v: pd.to_numeric(df[v], errors="coerce").to_numpy(dtype=float) for v in values}
    out = {v: np.full((len(rows), len(cols)), np.nan) for v in values}
    for idx, (r, c) in enumerate(keys):
        if r in r_index and c in c_index:
            for v in values:
                out[v][r_index[r], c_index[c]] = data[v][idx]
    return out


def _numeric(df: pd.DataFrame, columns: Iterable[str], table: str) -> pd.DataFrame:
    df = df.copy()
    for c in columns:
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna()
        if bad.any():
            raise DataError(
                f"{table} column {c!r} holds non-numeric value {df[c][bad].iloc[0]!r}; "
                "must be a number"
            )
        df[c] = converted.astype(float)
    return df


def _with_ids(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    df = df.copy()
    for c in columns:
        df[f"_{c}"] = [_as_int_or_str(v) for v in df[c]]
    return df


def _pick(value: Any, available: Sequence[Any], what: str, table: str) -> Any:
    """``value`` if available, or the first available one when ``value`` is None."""
    if not available:
        raise _EmptySelectionError(f"{table} table has no rows to plot")
    if value is None:
        return available[0]
    if value not in available:
        raise DataError(f"{what} == {value!r} is not in the {table} table; available: {available}")
    return value


def _rotate_xticks(ax: Axes, labels: Sequence[str], *, limit: int = 3) -> None:
    if any(len(str(s)) > limit for s in labels):
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")


def _heatmap(
    ax: Axes,
    matrix: np.ndarray,
    rows: Sequence[str],
    cols: Sequence[str],
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    center: float | None = None,
    annot: np.ndarray | None = None,
    cbar: bool = True,
    cbar_label: str = "",
) -> None:
    """One seaborn heatmap with readable ticks; ``matrix`` is ndarray of shape (rows, cols)."""
    frame = pd.DataFrame(matrix, index=list(rows), columns=list(cols))
    with warnings.catch_warnings():
        # seaborn 0.13 calls Colormap.set_bad, which matplotlib >= 3.11 marks as pending removal
        warnings.filterwarnings("ignore", "The set_bad function", PendingDeprecationWarning)
        sns.heatmap(
            frame,
            ax=ax,
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            center=center,
            annot=annot if annot is not None else False,
            fmt="",
            annot_kws={"fontsize": _ANNOT_FONT},
            linewidths=0.5,
            linecolor="white",
            cbar=cbar,
            cbar_kws={"label": _wrap(cbar_label, ax.figure.get_figheight() - 1.0, 9)}
            if cbar
            else None,
            xticklabels=True,
            yticklabels=True,
        )
    ax.tick_params(axis="y", labelrotation=0, length=0)
    ax.tick_params(axis="x", length=0)
    _rotate_xticks(ax, cols)


def _annotations(*matrices: np.ndarray, fmts: Sequence[Callable[[float], str]]) -> np.ndarray:
    """String matrix whose cells join the formatted values of ``matrices`` line by line."""
    shape = matrices[0].shape
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        parts = [f(m[idx]) for m, f in zip(matrices, fmts, strict=True) if not np.isnan(m[idx])]
        out[idx] = "\n".join(parts)
    return out


def _layer_breaks(ax: Axes, layers: Sequence[Any]) -> None:
    """Thin horizontal lines between consecutive heatmap rows of different layers."""
    for i in range(1, len(layers)):
        if layers[i] != layers[i - 1]:
            ax.axhline(i, color="0.15", linewidth=0.8)


def _panel_grid(n: int, max_cols: int) -> tuple[int, int]:
    ncols = max(1, min(n, max_cols))
    return math.ceil(n / ncols), ncols


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------

_PROBE_COLUMNS = ("layer", "unit", "state", "target")


def _probe_rows(
    probes: pd.DataFrame, value_columns: Sequence[str], state: str, layer: int | None
) -> tuple[pd.DataFrame, list[tuple], list[str], list[Hashable], bool]:
    """Rows of one state and layer: (layer, unit) keys with "all" last, labels, targets."""
    _require_columns(probes, (*_PROBE_COLUMNS, *value_columns), "probes")
    df = _numeric(_with_ids(probes, "layer", "unit"), value_columns, "probes")
    states = _unique(df["state"])
    if state not in states:
        raise DataError(f"state == {state!r} has no rows in the probes table; available: {states}")
    df = df[df["state"] == state]
    layers = sorted({v for v in df["_layer"] if v is not None}, key=_id_key)
    if layer is not None:
        if layer not in layers:
            raise DataError(
                f"layer == {layer!r} has no {state!r} rows in the probes table; "
                f"available layers: {layers}"
            )
        # a population row without a layer belongs to every layer
        df = df[(df["_layer"] == layer) | ((df["_unit"] == "all") & df["_layer"].isna())]
    multi = layer is None and len(layers) > 1
    keys = _unique(zip(df["_layer"], df["_unit"], strict=True))
    single = sorted(
        (k for k in keys if k[1] != "all"), key=lambda k: (_id_key(k[0]), _id_key(k[1]))
    )
    pop = sorted((k for k in keys if k[1] == "all"), key=lambda k: _id_key(k[0]))
    rows = single + pop
    labels = [_unit_label(lay, u, multi) for lay, u in rows]
    df = df.assign(_row=list(zip(df["_layer"], df["_unit"], strict=True)))
    return df, rows, labels, _unique(df["target"]), multi


def _probe_figure(
    probes: pd.DataFrame,
    *,
    value: str,
    annotate: Sequence[tuple[str, Callable[[float], str]]],
    state: str,
    layer: int | None,
    title: str,
    cbar_label: str,
    note: str,
) -> Figure:
    columns = [value, *(c for c, _ in annotate if c != value)]
    df, rows, labels, targets, multi = _probe_rows(probes, columns, state, layer)
    mats = _grid(df, "_row", "target", columns, rows, targets, "probes")
    n_rows, n_cols = len(rows), len(targets)
    annotated = n_rows <= _MAX_ANNOTATED_ROWS and n_cols <= _MAX_ANNOTATED_COLS
    cell_h = 0.17 + 0.14 * len(annotate) if annotated else 0.2
    width = max(4.6, 1.6 + 0.72 * n_cols + 1.0)
    height = 1.6 + cell_h * n_rows
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        annot = None
        if annotated and annotate:
            annot = _annotations(*(mats[c] for c, _ in annotate), fmts=[f for _, f in annotate])
        _heatmap(
            ax,
            mats[value],
            labels,
            [str(t) for t in targets],
            cmap=_style.SEQUENTIAL,
            vmin=0.0,
            vmax=1.0,
            annot=annot,
            cbar_label=cbar_label,
        )
        n_single = sum(1 for r in rows if r[1] != "all")
        _layer_breaks(ax, [r[0] for r in rows[:n_single]])
        if 0 < n_single < n_rows:
            ax.axhline(n_single, color="white", linewidth=4)
            ax.axhline(n_single, color="0.15", linewidth=1.2)
        ax.set_xlabel("probe target")
        ax.set_ylabel("layer / unit" if multi else "unit")
        shown = sorted({r[0] for r in rows if r[0] is not None}, key=_id_key)
        where = f"layer {shown[0]}" if len(shown) == 1 else "all layers"
        full = f"{title} ({where}, state {state})"
        ax.set_title(_wrap(f"{full}\n{note}", width - 0.4, 9), fontsize=9)
    return fig


def plot_probe_heatmap(probes: pd.DataFrame, *, state: str = "h", layer: int | None = 0) -> Figure:
    """Units × targets heatmap of held-out probe R², each cell annotated with its selectivity.

    Parameters
    ----------
    probes : DataFrame
        ``probes.csv`` rows: ``layer``, ``unit`` (int, or ``"all"`` for the population probe),
        ``state``, ``target``, ``r2``, ``selectivity`` (other columns are ignored).
    state : {"h", "c"}, default "h"
        Which state's probes to show.
    layer : int or None, default 0
        Layer to show; ``None`` shows every layer (rows labelled ``L<layer> u<unit>``).

    Returns
    -------
    Figure
        One heatmap, rows = units in order then the population probe (below a separating
        line), columns = targets in table order; colour = R² on a fixed 0..1 scale; cell text
        ``"<R²>\\n<selectivity with sign>"``.
    """
    return _probe_figure(
        probes,
        value="r2",
        annotate=[("r2", lambda v: f"{v:.2f}"), ("selectivity", lambda v: f"{v:+.2f}")],
        state=state,
        layer=layer,
        title="Linear-probe R² per unit",
        cbar_label="held-out R²",
        note="cell: held-out R² (top), selectivity = R² − R² on the untrained network (bottom)",
    )


def plot_partial_r2(probes: pd.DataFrame, *, state: str = "h", layer: int | None = 0) -> Figure:
    """Units × targets heatmap of partial R² (what a unit explains once other targets are out).

    Parameters
    ----------
    probes : DataFrame
        ``probes.csv`` rows with ``layer``, ``unit``, ``state``, ``target``, ``partial_r2``.
    state : {"h", "c"}, default "h"
    layer : int or None, default 0
        ``None`` shows every layer.

    Returns
    -------
    Figure
        Layout as :func:`plot_probe_heatmap`; colour and cell text = partial R² (0..1 scale).
    """
    fig = _probe_figure(
        probes,
        value="partial_r2",
        annotate=[("partial_r2", lambda v: f"{v:.2f}")],
        state=state,
        layer=layer,
        title="Partial R² per unit",
        cbar_label="held-out partial R²",
        note="cell: R² of the unit for the part of the target the other targets do not explain",
    )
    shown = probes[probes["state"].astype(str) == state]
    if pd.to_numeric(shown["partial_r2"], errors="coerce").isna().all():
        notes = shown["note"].dropna().astype(str) if "note" in shown else pd.Series([], dtype=str)
        notes = notes[notes != ""]
        why = notes.mode().iloc[0] if len(notes) else "see the note column of probes.csv"
        if "explained by controls" in why:
            why = "each target is a linear combination of the others"
            why += "\n(see the identifiability figure)"
        fig.axes[0].text(
            0.5,
            0.5,
            f"partial R² undefined everywhere:\n{why}",
            transform=fig.axes[0].transAxes,
            ha="center",
            va="center",
            fontsize=10,
            bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.5"},
        )
    return fig


# ---------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------

_ABLATION_LABELS = {
    "delta_mse": "Δ MSE, ablated − intact (normalized units²)",
    "rel_delta": "relative Δ MSE (Δ MSE / intact MSE)",
}


def _group_key(units: str) -> tuple:
    members = [_as_int_or_str(m) for m in str(units).split("+")]
    return (len(members), [_id_key(m) for m in members])


def _units_str(value: Any) -> str:
    v = _as_int_or_str(value)
    return str(v).replace(" ", "")


def plot_ablation(
    ablation: pd.DataFrame, *, mode: str | None = None, value: str = "delta_mse"
) -> Figure:
    """Ablated units × outputs heatmap of the loss increase, one panel per ablation mode.

    Parameters
    ----------
    ablation : DataFrame
        ``ablation.csv`` rows: ``layer``, ``units`` (``"3"`` or ``"1+4"``), ``mode``,
        ``target`` (output name or ``"all"``), and ``value``.
    mode : {"zero", "mean", "resample"} or None, default None
        Show one mode; ``None`` shows every mode in the table (zero, mean, resample order).
    value : {"delta_mse", "rel_delta"}, default "delta_mse"
        ``delta_mse`` is in normalized output units²; ``rel_delta`` is relative to the intact MSE.

    Returns
    -------
    Figure
        One heatmap per mode; rows = single units (in order) then groups (by size, below a
        line); columns = outputs then ``all``; diverging colours centred at 0 on one shared
        symmetric scale (red: ablation hurts); cells annotated with the value.
    """
    if value not in _ABLATION_LABELS:
        raise DataError(f"value == {value!r}, must be one of {list(_ABLATION_LABELS)}")
    _require_columns(ablation, ("layer", "units", "mode", "target", value), "ablation")
    df = _numeric(_with_ids(ablation, "layer"), [value], "ablation")
    df["_units"] = [_units_str(u) for u in df["units"]]
    present = _unique(df["mode"])
    ordered = [m for m in ABLATION_MODES if m in present] + [
        m for m in present if m not in ABLATION_MODES
    ]
    modes = [_pick(mode, ordered, "mode", "ablation")] if mode is not None else ordered
    if not modes:
        raise _EmptySelectionError("ablation table has no rows to plot")
    df = df[df["mode"].isin(modes)]
    layers = sorted({v for v in df["_layer"] if v is not None}, key=_id_key)
    multi = len(layers) > 1
    keys = _unique(zip(df["_layer"], df["_units"], strict=True))
    keys.sort(key=lambda k: (_group_key(k[1])[0] > 1, _id_key(k[0]), _group_key(k[1])))
    n_single = sum(1 for k in keys if "+" not in k[1])
    labels = [f"L{lay}: {u}" if multi else u for lay, u in keys]
    targets = _unique(df["target"])
    targets = [t for t in targets if t != "all"] + [t for t in targets if t == "all"]
    df = df.assign(_row=list(zip(df["_layer"], df["_units"], strict=True)))
    mats = {
        m: _grid(df[df["mode"] == m], "_row", "target", [value], keys, targets, "ablation")[value]
        for m in modes
    }
    bound = max((np.nanmax(np.abs(a)) for a in mats.values() if np.isfinite(a).any()), default=0)
    bound = float(bound) if bound > 0 else 1.0
    annotated = len(keys) <= _MAX_ANNOTATED_ROWS and len(targets) <= _MAX_ANNOTATED_COLS
    label_w = 0.09 * max(len(s) for s in labels)
    panel_w = max(1.5, 0.62 * len(targets))
    width = max(4.6, 1.2 + label_w + len(modes) * (panel_w + 0.35) + 1.1)
    height = 1.9 + (0.32 if annotated else 0.2) * len(keys)
    with _style.style():
        fig = _style.new_figure(width, height)
        axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)[0]
        for i, (ax, m) in enumerate(zip(axes, modes, strict=True)):
            annot = _annotations(mats[m], fmts=[lambda v: _fmt_value(v, 3)]) if annotated else None
            _heatmap(
                ax,
                mats[m],
                labels,
                [str(t) for t in targets],
                cmap=_style.DIVERGING,
                vmin=-bound,
                vmax=bound,
                center=0.0,
                annot=annot,
                cbar=False,
            )
            if 0 < n_single < len(keys):
                ax.axhline(n_single, color="0.15", linewidth=1.2)
            ax.set_title(f"{m} ablation")
            ax.set_xlabel("output")
            ax.set_ylabel("ablated unit(s)" if i == 0 else "")
            if i > 0:
                ax.tick_params(axis="y", labelleft=False)
        cbar = fig.colorbar(axes[0].collections[0], ax=list(axes), shrink=0.9, aspect=25)
        cbar.set_label(_wrap(_ABLATION_LABELS[value], height - 1.0, 9))
        what = "Δ MSE" if value == "delta_mse" else "relative Δ MSE"
        fig.suptitle(_wrap(f"Ablation: {what} per output when units are silenced", width, 10))
    return fig


# ---------------------------------------------------------------------------------------------
# attribution
# ---------------------------------------------------------------------------------------------

_ATTRIBUTION_COLUMNS = ("method", "target", "kind", "feature", "lag", "layer", "unit")


def _attribution_rows(
    attribution: pd.DataFrame, kind: str, value: str, method: str | None
) -> tuple[pd.DataFrame, str]:
    _require_columns(attribution, (*_ATTRIBUTION_COLUMNS, value), "attribution")
    df = attribution[attribution["kind"] == kind]
    if df.empty:
        raise _EmptySelectionError(
            f"attribution table has no rows with kind == {kind!r}; "
            f"kinds present: {_unique(attribution['kind'])}"
        )
    chosen = _pick(method, _unique(df["method"]), "method", f"attribution ({kind})")
    df = _numeric(df[df["method"] == chosen], [value], "attribution")
    return df, chosen


def plot_input_lag(
    attribution: pd.DataFrame, *, method: str | None = None, value: str = "attribution"
) -> Figure:
    """Input feature × lag heatmaps of output attribution, one panel per output.

    Parameters
    ----------
    attribution : DataFrame
        ``attribution.csv``; rows with ``kind == "input_lag"`` are used: ``target`` = output
        name, ``feature`` = input series, ``lag`` = 0, 1, 2, ... steps back.
    method : str or None, default None
        Attribution method to show; ``None`` takes the first one in the table.
    value : {"attribution", "attribution_signed"}, default "attribution"
        Mean absolute attribution (sequential colours from 0) or signed (diverging around 0).

    Returns
    -------
    Figure
        One heatmap per output (rows = input features, columns = lag), one shared scale.
    """
    if value not in ("attribution", "attribution_signed"):
        raise DataError(f"value == {value!r}, must be 'attribution' or 'attribution_signed'")
    df, chosen = _attribution_rows(attribution, "input_lag", value, method)
    df = _with_ids(df, "lag")
    if any(v is None or not isinstance(v, int) for v in df["_lag"]):
        raise DataError("attribution rows of kind 'input_lag' need an integer lag on every row")
    outputs = _unique(df["target"])
    features = _unique(df["feature"])
    lags = sorted(set(df["_lag"]))
    mats = {
        o: _grid(df[df["target"] == o], "feature", "_lag", [value], features, lags, "attribution")[
            value
        ]
        for o in outputs
    }
    signed = value == "attribution_signed"
    peak = max((np.nanmax(np.abs(a)) for a in mats.values() if np.isfinite(a).any()), default=0)
    peak = float(peak) if peak > 0 else 1.0
    nrows, ncols = _panel_grid(len(outputs), 3)
    feat_w = 0.085 * max(len(str(f)) for f in features)
    panel_w = max(1.8, 0.36 * len(lags))
    width = max(4.6, feat_w + 0.9 + ncols * (panel_w + 0.3) + 1.1)
    height = 1.4 + nrows * (0.9 + 0.32 * len(features))
    with _style.style():
        fig = _style.new_figure(width, height)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
        flat = axes.ravel()
        for i, o in enumerate(outputs):
            ax = flat[i]
            _heatmap(
                ax,
                mats[o],
                [str(f) for f in features],
                [str(lag) for lag in lags],
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
            _wrap(
                f"Which input, how many steps back, drives each output (method: {chosen})",
                width,
                10,
            )
        )
    return fig


def plot_unit_attribution(
    attribution: pd.DataFrame, *, method: str | None = None, value: str = "attribution"
) -> Figure:
    """Grouped bars: attribution of each output to each unit (bars per unit, hue = output).

    Parameters
    ----------
    attribution : DataFrame
        ``attribution.csv``; rows with ``kind == "unit"`` are used (``target`` = output,
        ``layer``/``unit`` set).
    method : str or None, default None
        Attribution method; ``None`` takes the first one in the table.
    value : {"attribution", "attribution_signed"}, default "attribution"

    Returns
    -------
    Figure
        One bar axis; x = unit, one bar per output (colour-blind palette), y = mean |attribution|.
    """
    if value not in ("attribution", "attribution_signed"):
        raise DataError(f"value == {value!r}, must be 'attribution' or 'attribution_signed'")
    df, chosen = _attribution_rows(attribution, "unit", value, method)
    df = _with_ids(df, "layer", "unit")
    keys = sorted(
        _unique(zip(df["_layer"], df["_unit"], strict=True)),
        key=lambda k: (_id_key(k[0]), _id_key(k[1])),
    )
    multi = len({k[0] for k in keys}) > 1
    label_of = {k: _unit_label(k[0], k[1], multi) for k in keys}
    df = df.assign(
        _label=[label_of[k] for k in zip(df["_layer"], df["_unit"], strict=True)],
        _row=list(zip(df["_layer"], df["_unit"], strict=True)),
    )
    outputs = _unique(df["target"])
    _grid(df, "_row", "target", [value], keys, outputs, "attribution")  # rejects duplicates
    order = [label_of[k] for k in keys]
    width = max(4.6, 1.4 + len(keys) * (0.22 * len(outputs) + 0.25))
    with _style.style():
        fig = _style.new_figure(width, 3.2)
        ax = fig.subplots()
        sns.barplot(
            data=df,
            x="_label",
            y=value,
            hue="target",
            order=order,
            hue_order=outputs,
            palette=_style.categorical(len(outputs)),
            errorbar=None,
            ax=ax,
            saturation=1.0,
        )
        if value == "attribution_signed":
            ax.axhline(0, color="0.2", linewidth=0.8)
        ax.set_xlabel("layer / unit" if multi else "unit")
        ax.set_ylabel("mean |attribution|" if value == "attribution" else "mean attribution")
        _rotate_xticks(ax, order, limit=4)
        ax.legend(title="output", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title(
            _wrap(f"How much each output depends on each unit (method: {chosen})", width - 1.0, 9)
        )
    return fig


def plot_receptive_fields(
    attribution: pd.DataFrame, *, method: str | None = None, target: str | None = None
) -> Figure:
    """Units × (input feature, lag) heatmap of signed attribution: each unit's receptive field.

    Parameters
    ----------
    attribution : DataFrame
        ``attribution.csv``; rows with ``kind == "unit_input_lag"`` are used: ``layer``,
        ``unit``, ``feature``, ``lag`` set, ``target`` = the unit quantity attributed (``"h"``).
    method : str or None, default None
        Attribution method; ``None`` takes the first one in the table.
    target : str or None, default None
        Unit quantity; ``None`` takes ``"h"`` if present, else the first one.

    Returns
    -------
    Figure
        One heatmap; rows = units, columns grouped by input feature (names on top, separated by
        lines), lag 0, 1, ... within a group; colours diverge around 0 (``vlag``) on a symmetric
        scale; values are ``attribution_signed``.
    """
    value = "attribution_signed"
    df, chosen = _attribution_rows(attribution, "unit_input_lag", value, method)
    targets = _unique(df["target"])
    if target is None and "h" in targets:
        target = "h"
    target = _pick(target, targets, "target", "attribution (unit_input_lag)")
    df = _with_ids(df[df["target"] == target], "layer", "unit", "lag")
    if any(v is None or not isinstance(v, int) for v in df["_lag"]):
        raise DataError(
            "attribution rows of kind 'unit_input_lag' need an integer lag on every row"
        )
    keys = sorted(
        _unique(zip(df["_layer"], df["_unit"], strict=True)),
        key=lambda k: (_id_key(k[0]), _id_key(k[1])),
    )
    multi = len({k[0] for k in keys}) > 1
    features = _unique(df["feature"])
    lags = sorted(set(df["_lag"]))
    cols = [(f, lag) for f in features for lag in lags]
    df = df.assign(
        _row=list(zip(df["_layer"], df["_unit"], strict=True)),
        _col=list(zip(df["feature"], df["_lag"], strict=True)),
    )
    mat = _grid(df, "_row", "_col", [value], keys, cols, "attribution")[value]
    bound = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    bound = bound if bound > 0 else 1.0
    width = max(4.6, 1.6 + 0.3 * len(cols) + 1.2)
    height = 2.0 + 0.28 * len(keys)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        _heatmap(
            ax,
            mat,
            [_unit_label(lay, u, multi) for lay, u in keys],
            [str(lag) for _, lag in cols],
            cmap=_style.DIVERGING,
            vmin=-bound,
            vmax=bound,
            center=0.0,
            cbar_label=f"mean signed attribution to {target}",
        )
        for k in range(1, len(features)):
            ax.axvline(k * len(lags), color="0.15", linewidth=1.5)
        _layer_breaks(ax, [k[0] for k in keys])
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
        ax.set_title(
            _wrap(
                f"Receptive fields: what drives each unit's {target} (method: {chosen})", width, 9
            )
        )
    return fig


# ---------------------------------------------------------------------------------------------
# traces
# ---------------------------------------------------------------------------------------------

_TRACE_COLUMNS = schemas.TRACES


def _has_role(role: Any) -> bool:
    return not (_is_missing(role) or role is pd.NA or str(role).strip() in ("", "none"))


def plot_role_traces(
    traces: pd.DataFrame, *, sequence: int | str | None = None, max_units: int = 8
) -> Figure:
    """Small multiples: each role unit's activation over time against its role's target.

    The traces table (``traces.csv``) holds one row per unit × sequence × time step:

    ============  ========================================================================
    column        meaning
    ============  ========================================================================
    layer         0-based layer of the unit
    unit          0-based unit within its layer
    role          the unit's role from ``roles.csv`` (a target such as ``X[t-1]``, or ``none``)
    sequence      id of the evaluation sequence (int)
    step          time step within the sequence, 0-based (int)
    activation    the unit's hidden state ``h`` at that step (unitless, in (−1, 1))
    target_value  value of the role's target at that step, z-scored over the table's steps
                  (mean 0, sd 1) so it can share a plot with the activation; NaN if role none
    ============  ========================================================================

    Parameters
    ----------
    traces : DataFrame
        Table above.
    sequence : int or str or None, default None
        Sequence to draw; ``None`` takes the lowest sequence id.
    max_units : int, default 8
        At most this many role units (in layer, unit order) are drawn.

    Returns
    -------
    Figure
        One panel per unit with a role (``role`` not ``none``): activation ``h`` on the left
        axis, z-scored target (dashed) on a twin right axis; title gives the unit, role and
        Pearson r between the two curves; one legend for the figure.
    """
    if not isinstance(max_units, int | np.integer) or isinstance(max_units, bool) or max_units < 1:
        raise DataError(f"max_units == {max_units!r}, must be an int >= 1")
    _require_columns(traces, _TRACE_COLUMNS, "traces")
    df = _numeric(_with_ids(traces, "layer", "unit", "sequence"), ["step", "activation"], "traces")
    df = _numeric(df, ["target_value"], "traces")
    df = df[[_has_role(r) for r in df["role"]]]
    if df.empty:
        raise _EmptySelectionError("traces table has no unit with a role (every role is 'none')")
    sequences = sorted(set(df["_sequence"]), key=_id_key)
    if sequence is not None:
        sequence = _as_int_or_str(sequence)
    seq = _pick(sequence, sequences, "sequence", "traces")
    df = df[df["_sequence"] == seq]
    keys = sorted(
        _unique(zip(df["_layer"], df["_unit"], strict=True)),
        key=lambda k: (_id_key(k[0]), _id_key(k[1])),
    )
    multi = len({k[0] for k in keys}) > 1
    keys = keys[: int(max_units)]
    nrows, ncols = _panel_grid(len(keys), math.ceil(len(keys) / math.ceil(len(keys) / 4)))
    colors = _style.categorical(2)
    with _style.style():
        fig = _style.new_figure(max(4.6, 2.9 * ncols + 0.3), 0.9 + 2.2 * nrows)
        fig.get_layout_engine().set(wspace=0.06, hspace=0.06)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        flat = axes.ravel()
        for i, (lay, u) in enumerate(keys):
            ax = flat[i]
            rows = df[(df["_layer"] == lay) & (df["_unit"] == u)].sort_values("step")
            roles = _unique(rows["role"])
            role = roles[0]
            ax.plot(rows["step"], rows["activation"], color=colors[0], linewidth=1.4)
            twin = ax.twinx()
            twin.spines["right"].set_visible(True)
            twin.plot(
                rows["step"], rows["target_value"], color=colors[1], linewidth=1.4, linestyle="--"
            )
            a, t = rows["activation"].to_numpy(), rows["target_value"].to_numpy()
            ok = np.isfinite(a) & np.isfinite(t)
            r = (
                np.corrcoef(a[ok], t[ok])[0, 1]
                if ok.sum() > 2 and a[ok].std() > 0 and t[ok].std() > 0
                else np.nan
            )
            name = f"unit {_unit_label(lay, u, multi)}" if not multi else _unit_label(lay, u, True)
            title = f"{name} → {role}" + (f"\nr = {r:.2f}" if np.isfinite(r) else "")
            ax.set_title(title)
            ax.set_ylabel("activation h", color=colors[0])
            twin.set_ylabel("target (z-score)", color=colors[1])
            if i // ncols == nrows - 1 or i + ncols >= len(keys):
                ax.set_xlabel("time step")
                ax.tick_params(axis="x", labelbottom=True)
        for ax in flat[len(keys) :]:
            ax.remove()
        handles = [
            Line2D([], [], color=colors[0], linewidth=1.4, label="unit activation h (left axis)"),
            Line2D(
                [],
                [],
                color=colors[1],
                linewidth=1.4,
                linestyle="--",
                label="role target, z-scored (right axis)",
            ),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
        fig.suptitle(f"Role units over time (sequence {seq})")
    return fig


# ---------------------------------------------------------------------------------------------
# identifiability
# ---------------------------------------------------------------------------------------------


def plot_identifiability(
    identifiability: pd.DataFrame, *, threshold: float | None = None
) -> Figure:
    """Targets × targets matrix of r² between probe targets, non-separable pairs hatched.

    Parameters
    ----------
    identifiability : DataFrame
        ``identifiability.csv``: ``target_a``, ``target_b``, ``r2``, ``separable`` (bool), plus
        one row per target with ``target_b == "VIF"`` whose VIF is in a ``vif`` column if there
        is one (and not NaN), else in ``r2``.
    threshold : float or None, default None
        The r² at or above which the analysis called a pair non-separable, for the legend
        text; ``None`` reads it from a ``threshold`` column if the table has one.

    Returns
    -------
    Figure
        Symmetric heatmap (``cividis``, 0..1) annotated with r²; off-diagonal cells of pairs with
        ``separable == False`` are hatched and outlined; each row label carries the target's
        variance inflation factor (VIF).
    """
    _require_columns(
        identifiability, ("target_a", "target_b", "r2", "separable"), "identifiability"
    )
    df = _numeric(identifiability, ["r2"], "identifiability")
    if threshold is None and "threshold" in df.columns:
        given = pd.to_numeric(df["threshold"], errors="coerce").dropna().unique()
        threshold = float(given[0]) if len(given) == 1 else None
    is_vif = df["target_b"].astype(str) == "VIF"
    vif_rows, pairs = df[is_vif], df[~is_vif]
    vif: dict = {}
    for _, row in vif_rows.iterrows():
        v = row["vif"] if "vif" in df.columns and not _is_missing(row["vif"]) else row["r2"]
        vif[row["target_a"]] = float(pd.to_numeric(v, errors="coerce"))
    targets = _unique([*pairs["target_a"], *pairs["target_b"], *vif_rows["target_a"]])
    if len(targets) < 1:
        raise _EmptySelectionError("identifiability table has no targets")
    index = {t: i for i, t in enumerate(targets)}
    n = len(targets)
    mat = np.full((n, n), np.nan)
    np.fill_diagonal(mat, 1.0)
    inseparable = np.zeros((n, n), dtype=bool)
    for _, row in pairs.iterrows():
        i, j = index[row["target_a"]], index[row["target_b"]]
        mat[i, j] = mat[j, i] = row["r2"]
        if i != j and not _as_bool(row["separable"], "separable"):
            inseparable[i, j] = inseparable[j, i] = True
    row_labels = [f"{t}  (VIF {_fmt_vif(vif[t])})" if t in vif else str(t) for t in targets]
    label_w = 0.075 * max(len(s) for s in row_labels)
    cell = 0.62
    width = max(4.8, label_w + 1.2 + cell * n + 1.2)
    height = max(3.0, 2.3 + 0.45 * n)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        annot = _annotations(mat, fmts=[lambda v: f"{v:.3f}"])
        _heatmap(
            ax,
            mat,
            row_labels,
            [str(t) for t in targets],
            cmap=_style.SEQUENTIAL_ALT,
            vmin=0.0,
            vmax=1.0,
            annot=annot if n <= 14 else None,
            cbar_label="r² between targets (across samples)",
        )
        for i, j in zip(*np.nonzero(inseparable), strict=True):
            ax.add_patch(
                Rectangle(
                    (j, i),
                    1,
                    1,
                    fill=False,
                    hatch="///",
                    edgecolor="0.1",
                    linewidth=1.5,
                    zorder=2,
                )
            )
        for text in ax.texts:
            x, y = text.get_position()
            if inseparable[int(y), int(x)]:
                text.set_color("black")
                text.set_bbox({"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"})
                text.set_zorder(3)
        ax.set_xlabel("probe target")
        ax.set_ylabel("probe target (variance inflation factor)")
        legend_text = (
            f"r² ≥ {threshold:g}: not separable by a probe"
            if threshold is not None
            else "hatched: pair not separable by a probe"
        )
        fig.legend(
            handles=[Patch(facecolor="white", edgecolor="0.1", hatch="///", label=legend_text)],
            loc="outside lower center",
            frameon=False,
        )
        ax.set_title(
            _wrap("Identifiability: how much each probe target predicts another", width, 9)
        )
    return fig


# ---------------------------------------------------------------------------------------------
# roles
# ---------------------------------------------------------------------------------------------

_ROLE_LENGTHS = {
    "confidence": ("confidence (0–1)", (0.0, 1.0)),
    "delta_mse": ("Δ MSE when the unit is ablated (normalized units²)", None),
}


def plot_roles(
    roles: pd.DataFrame, *, length: str = "confidence", max_evidence_chars: int = 72
) -> Figure:
    """One-glance role summary: one bar per unit, coloured by role, with the evidence beside it.

    Parameters
    ----------
    roles : DataFrame
        ``roles.csv``: ``layer``, ``unit``, ``role``, ``confidence``, ``decided_by``,
        ``evidence`` (and ``delta_mse`` when ``length="delta_mse"``).
    length : {"confidence", "delta_mse"}, default "confidence"
        What the bar length shows.
    max_evidence_chars : int, default 72
        Evidence text is cut to this many characters (with "…").

    Returns
    -------
    Figure
        Horizontal bars, units top to bottom; colour = role (``none`` grey); to the right of
        each bar ``"<role> · <decided_by>: <evidence>"``; legend of roles.
    """
    if length not in _ROLE_LENGTHS:
        raise DataError(f"length == {length!r}, must be one of {list(_ROLE_LENGTHS)}")
    _require_columns(roles, ("layer", "unit", "role", length, "decided_by", "evidence"), "roles")
    if roles.empty:
        raise _EmptySelectionError("roles table has no rows")
    df = _numeric(_with_ids(roles, "layer", "unit"), [length], "roles")
    order = sorted(
        range(len(df)), key=lambda i: (_id_key(df["_layer"].iloc[i]), _id_key(df["_unit"].iloc[i]))
    )
    df = df.iloc[order].reset_index(drop=True)
    multi = len(set(df["_layer"])) > 1
    labels = [_unit_label(a, b, multi) for a, b in zip(df["_layer"], df["_unit"], strict=True)]
    role_names = ["none" if not _has_role(r) else str(r) for r in df["role"]]
    named = _unique(r for r in role_names if r != "none")
    palette = dict(zip(named, _style.categorical(len(named)), strict=True))
    palette["none"] = _style.NEUTRAL
    values = df[length].fillna(0.0).to_numpy()
    texts = [
        _truncate(
            f"{r} · {d}: {e}" if not _is_missing(e) else f"{r} · {d}",
            max_evidence_chars,
        )
        for r, d, e in zip(role_names, df["decided_by"], df["evidence"], strict=True)
    ]
    xlabel, xlim = _ROLE_LENGTHS[length]
    if xlim is None:
        top = float(np.nanmax(np.abs(values))) if len(values) else 1.0
        lo = min(0.0, float(np.nanmin(values)) * 1.05)
        xlim = (lo, top * 1.05 if top > 0 else 1.0)
    text_w = 0.058 * max(len(t) for t in texts)
    width = max(5.0, 1.0 + 0.08 * max(len(s) for s in labels) + 2.4 + text_w)
    height = 1.5 + 0.3 * len(df) + 0.2 * math.ceil((len(named) + 1) / 4)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        y = np.arange(len(df))
        ax.barh(y, values, color=[palette[r] for r in role_names], height=0.7)
        ax.set_yticks(y, labels)
        ax.set_ylim(len(df) - 0.5, -0.5)
        ax.set_xlim(*xlim)
        ax.tick_params(axis="y", length=0)
        transform = mpl.transforms.blended_transform_factory(ax.transAxes, ax.transData)
        for yi, text in zip(y, texts, strict=True):
            ax.text(1.03, yi, text, transform=transform, va="center", ha="left", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("layer / unit" if multi else "unit")
        shown = [*named, "none"] if "none" in role_names else named
        handles = [Patch(color=palette[r], label=r) for r in shown]
        fig.legend(
            handles=handles,
            title="role",
            loc="outside lower center",
            ncols=min(len(handles), 6),
            frameon=False,
        )
        what = xlabel.split(" (")[0]
        fig.suptitle(_wrap(f"Unit roles (bar: {what}; text: role · deciding evidence)", width, 10))
    return fig


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------


def _sweep_axis(ax: Axes, units: np.ndarray) -> None:
    """Units on a log₂ axis with the sweep's own values as ticks."""
    values = np.unique(units[np.isfinite(units)])
    if len(values) and values.min() > 0 and values.max() / values.min() >= 4:
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{v:g}" for v in values])
    ax.set_xlabel("units in the layer")


def _task_lines(
    ax: Axes,
    df: pd.DataFrame,
    y: str,
    lo: str | None,
    hi: str | None,
    tasks: list,
    colors: dict,
) -> None:
    for task in tasks:
        rows = df[df["task"] == task].sort_values("units")
        ax.plot(rows["units"], rows[y], marker="o", markersize=4, color=colors[task], label=task)
        if lo is not None and hi is not None:
            ax.fill_between(
                rows["units"], rows[lo], rows[hi], color=colors[task], alpha=0.22, linewidth=0
            )


def plot_capacity_curve(sweep_summary: pd.DataFrame) -> Figure:
    """Validation MSE against the number of units, one line with a band per task (log y).

    Parameters
    ----------
    sweep_summary : DataFrame
        Columns ``task``, ``units``, ``mean`` (validation MSE over seeds, normalized units²),
        ``lo``, ``hi`` (its interval over seeds), optional ``knee`` (bool: the smallest
        sufficient number of units, marked with a star).

    Returns
    -------
    Figure
        One axis, log₂ units on x, log MSE on y, colour-blind palette per task.
    """
    _require_columns(sweep_summary, ("task", "units", "mean", "lo", "hi"), "sweep_summary")
    df = _numeric(sweep_summary, ["units", "mean", "lo", "hi"], "sweep_summary")
    if df.empty:
        raise _EmptySelectionError("sweep_summary table has no rows")
    nonpositive = df[(df[["mean", "lo", "hi"]] <= 0).any(axis=1)]
    if not nonpositive.empty:
        raise DataError(
            "sweep_summary mean/lo/hi must be > 0 for a log axis; "
            f"row {nonpositive.index[0]} has {nonpositive[['mean', 'lo', 'hi']].iloc[0].tolist()}"
        )
    tasks = _unique(df["task"])
    colors = dict(zip(tasks, _style.categorical(len(tasks)), strict=True))
    with _style.style():
        fig = _style.new_figure(6.4, 3.8)
        ax = fig.subplots()
        _task_lines(ax, df, "mean", "lo", "hi", tasks, colors)
        ax.set_yscale("log")
        _sweep_axis(ax, df["units"].to_numpy())
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Patch(color="0.5", alpha=0.3, label="interval over seeds (lo–hi)"))
        if "knee" in df.columns:
            knee = df[[_as_bool(v, "knee") for v in df["knee"]]]
            for task in tasks:
                k = knee[knee["task"] == task]
                ax.scatter(
                    k["units"],
                    k["mean"],
                    marker="*",
                    s=170,
                    color=colors[task],
                    edgecolor="black",
                    linewidth=0.8,
                    zorder=4,
                )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="*",
                    linestyle="",
                    markersize=11,
                    markerfacecolor="white",
                    markeredgecolor="black",
                    label="knee (enough units)",
                )
            )
        ax.legend(
            handles=handles,
            title="task",
            frameon=False,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
        ax.set_ylabel("validation MSE (normalized units²)")
        ax.set_title("Capacity: validation error vs number of units")
    return fig


def plot_specialization(sweep_summary: pd.DataFrame) -> Figure:
    """Specialization and redundancy of units against the number of units, per task.

    Parameters
    ----------
    sweep_summary : DataFrame
        Columns ``task``, ``units``, ``specialization``, ``redundancy`` (unitless indices), and
        optionally ``specialization_lo``/``specialization_hi`` and ``redundancy_lo``/
        ``redundancy_hi`` for an interval band.

    Returns
    -------
    Figure
        Two panels side by side (specialization, redundancy), one line per task.
    """
    metrics = ("specialization", "redundancy")
    _require_columns(sweep_summary, ("task", "units", *metrics), "sweep_summary")
    bands = [c for m in metrics for c in (f"{m}_lo", f"{m}_hi") if c in sweep_summary.columns]
    df = _numeric(sweep_summary, ["units", *metrics, *bands], "sweep_summary")
    if df.empty:
        raise _EmptySelectionError("sweep_summary table has no rows")
    tasks = _unique(df["task"])
    colors = dict(zip(tasks, _style.categorical(len(tasks)), strict=True))
    with _style.style():
        fig = _style.new_figure(7.2, 3.3)
        axes = fig.subplots(1, 2, sharex=True)
        for ax, m in zip(axes, metrics, strict=True):
            lo, hi = f"{m}_lo", f"{m}_hi"
            has_band = lo in df.columns and hi in df.columns
            _task_lines(
                ax, df, m, lo if has_band else None, hi if has_band else None, tasks, colors
            )
            _sweep_axis(ax, df["units"].to_numpy())
            ax.set_ylabel(f"{m} (unitless index)")
            ax.set_title(m.capitalize())
        handles, _ = axes[0].get_legend_handles_labels()
        fig.legend(handles=handles, title="task", loc="outside right upper", frameon=False)
        fig.suptitle("Do units specialize or duplicate each other as the layer grows?")
    return fig


def plot_role_stability(stability: pd.DataFrame) -> Figure:
    """How often each role is found across runs, and how stable its unit is.

    Parameters
    ----------
    stability : DataFrame
        Columns ``role``, ``frequency`` (fraction of runs in which some unit takes the role,
        0..1), ``stability`` (0..1); an optional ``task`` column colours the bars by task.

    Returns
    -------
    Figure
        Two horizontal-bar panels sharing the role axis: frequency and stability, x from 0 to 1.
    """
    _require_columns(stability, ("role", "frequency", "stability"), "stability")
    df = _numeric(stability, ["frequency", "stability"], "stability")
    if df.empty:
        raise _EmptySelectionError("stability table has no rows")
    df = df.assign(role=df["role"].astype(str))
    hue = "task" if "task" in df.columns else None
    hue_order = _unique(df["task"]) if hue else None
    key = ["role", hue] if hue else ["role"]
    if df.duplicated(key).any():
        raise DataError(f"stability table has more than one row per {key}; aggregate it first")
    roles = _unique(df["role"])
    n_hue = len(hue_order) if hue else 1
    label_w = 0.08 * max(len(r) for r in roles)
    with _style.style():
        fig = _style.new_figure(
            max(5.6, 5.0 + label_w), 1.5 + 0.28 * len(roles) * max(1, n_hue * 0.7)
        )
        fig.get_layout_engine().set(wspace=0.08)
        axes = fig.subplots(1, 2, sharey=True)
        labels = {
            "frequency": "fraction of runs with the role",
            "stability": "stability (0–1)",
        }
        for ax, m in zip(axes, ("frequency", "stability"), strict=True):
            sns.barplot(
                data=df,
                y="role",
                x=m,
                hue=hue,
                order=roles,
                hue_order=hue_order,
                color=None if hue else _style.categorical(1)[0],
                palette=_style.categorical(n_hue) if hue else None,
                errorbar=None,
                orient="h",
                ax=ax,
                saturation=1.0,
                legend=bool(hue) and m == "stability",
            )
            ax.set_xlim(0, 1)
            ax.set_xlabel(_wrap(labels[m], 2.6, 9))
            ax.set_title(m.capitalize())
            ax.tick_params(axis="y", length=0)
        axes[0].set_ylabel("role")
        axes[1].set_ylabel("")
        if hue:
            axes[1].legend(title="task", frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
        fig.suptitle("Role stability across runs")
    return fig


# ---------------------------------------------------------------------------------------------
# saving, registry, render_all
# ---------------------------------------------------------------------------------------------


def save_figure(
    fig: Figure, path_stem: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<format>`` for each format, then close it.

    Parameters
    ----------
    fig : Figure
    path_stem : str or Path
        Path without extension (``results/figures/probe_r2``); parent folders are created.
    formats : sequence of {"png", "pdf", "svg"}, default ("png", "pdf")
        PNG at 200 dpi; PDF with TrueType (Type 42) fonts embedded; SVG with text as text.

    Returns
    -------
    list of Path
        Written files, in ``formats`` order.
    """
    if isinstance(formats, str):
        formats = (formats,)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise DataError(f"formats == {tuple(formats)!r}, each must be one of {FORMATS}")
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with _style.style(), mpl.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}.{fmt}")
                metadata = {"CreationDate": None} if fmt == "pdf" else None
                fig.savefig(path, format=fmt, dpi=_style.PNG_DPI, metadata=metadata)
                written.append(path)
    finally:
        plt.close(fig)
    return written


class FigureSpec(NamedTuple):
    """One entry of :data:`FIGURES`: file name, function, input table, one-sentence caption."""

    name: str
    function: Callable[..., Figure]
    table: str
    caption: str


#: Every figure: ``(name, function, table, caption)``; ``table`` is the CSV stem it reads.
FIGURES: list[FigureSpec] = [
    FigureSpec(
        "probe_r2",
        plot_probe_heatmap,
        "probes",
        "Held-out R² of a linear probe from each unit's hidden state (and from all units together,"
        " bottom row) to each target, with selectivity over an untrained network in each cell.",
    ),
    FigureSpec(
        "probe_partial_r2",
        plot_partial_r2,
        "probes",
        "Partial R² of each unit for each target: what the unit explains of the target once the"
        " other targets are regressed out.",
    ),
    FigureSpec(
        "ablation",
        plot_ablation,
        "ablation",
        "Increase in each output's mean squared error when single units or groups of units are"
        " ablated, one panel per ablation mode.",
    ),
    FigureSpec(
        "input_lag",
        plot_input_lag,
        "attribution",
        "Mean absolute attribution of each output to each input feature at each lag, showing how"
        " far back and on which input each prediction relies.",
    ),
    FigureSpec(
        "unit_attribution",
        plot_unit_attribution,
        "attribution",
        "Mean absolute attribution of each output to each unit's hidden state.",
    ),
    FigureSpec(
        "receptive_fields",
        plot_receptive_fields,
        "attribution",
        "Signed attribution of each unit's activation to each input feature and lag, the unit's"
        " receptive field.",
    ),
    FigureSpec(
        "identifiability",
        plot_identifiability,
        "identifiability",
        "Squared correlation between probe targets, with pairs too collinear for a probe to tell"
        " apart hatched and each target's variance inflation factor in its label.",
    ),
    FigureSpec(
        "roles",
        plot_roles,
        "roles",
        "The role assigned to each unit, with its confidence and the evidence that decided it.",
    ),
    FigureSpec(
        "role_traces",
        plot_role_traces,
        "traces",
        "Activation of each unit with a role over one sequence, drawn against its role's"
        " target (z-scored).",
    ),
    FigureSpec(
        "capacity_curve",
        plot_capacity_curve,
        "sweep_summary",
        "Validation error against the number of units for each task, with its interval over"
        " seeds and the knee where more units stop helping.",
    ),
    FigureSpec(
        "specialization",
        plot_specialization,
        "sweep_summary",
        "How specialized and how redundant the units are as the number of units grows, per task.",
    ),
    FigureSpec(
        "role_stability",
        plot_role_stability,
        "role_stability",
        "How often each role is found across training runs and how stable its assignment is.",
    ),
]

#: Tables render_all cannot do without.
REQUIRED_TABLES = ("probes", "roles")

#: Options render_all passes (whole tables rather than the single-layer defaults).
_RENDER_OPTIONS: dict[str, dict[str, Any]] = {
    "probe_r2": {"layer": None},
    "probe_partial_r2": {"layer": None},
}


def _probe_state(probes: pd.DataFrame) -> str:
    states = _unique(probes["state"]) if "state" in probes.columns else []
    return "h" if "h" in states or not states else str(states[0])


def render_all(
    results_dir: str | Path,
    out_dir: str | Path | None = None,
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Draw every figure whose table exists in ``results_dir`` and save it.

    Parameters
    ----------
    results_dir : str or Path
        Folder written by ``unitprobe analyze``: ``probes.csv`` and ``roles.csv`` are required;
        ``ablation.csv``, ``attribution.csv``, ``identifiability.csv``, ``traces.csv``,
        ``sweep_summary.csv``, ``role_stability.csv`` are drawn when present.
    out_dir : str or Path or None, default None
        Where figures go; ``None`` means ``results_dir/figures``.
    formats : sequence of str, default ("png", "pdf")

    Returns
    -------
    list of Path
        Written files, ``<out_dir>/<name>.<format>``, in :data:`FIGURES` order. A figure whose
        table exists but holds no rows of the kind it needs (e.g. no receptive-field rows) is
        skipped.

    Raises
    ------
    DataError
        ``results_dir`` or a required table is missing, or a table lacks a needed column.
    """
    results = Path(results_dir)
    if not results.is_dir():
        raise DataError(f"results directory {results} does not exist or is not a directory")
    for name in REQUIRED_TABLES:
        if not (results / f"{name}.csv").is_file():
            raise DataError(
                f"results directory {results} has no {name}.csv; run `unitprobe analyze` first"
            )
    out = Path(out_dir) if out_dir is not None else results / "figures"
    tables: dict[str, pd.DataFrame | None] = {}
    written: list[Path] = []
    for spec in FIGURES:
        if spec.table not in tables:
            path = results / f"{spec.table}.csv"
            tables[spec.table] = pd.read_csv(path) if path.is_file() else None
        table = tables[spec.table]
        if table is None:
            continue
        options = dict(_RENDER_OPTIONS.get(spec.name, {}))
        if spec.table == "probes":
            options["state"] = _probe_state(table)
        try:
            fig = spec.function(table, **options)
        except _EmptySelectionError as err:
            log.info("skipping figure %s: %s", spec.name, err)
            continue
        except DataError as err:
            raise DataError(f"{results / (spec.table + '.csv')}: {err}") from err
        written.extend(save_figure(fig, out / spec.name, formats))
    return written
