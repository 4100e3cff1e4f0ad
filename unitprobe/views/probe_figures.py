"""Figures of the probe tables: probe R², partial R², and how identifiable the targets are.

Each function takes tables in their :mod:`unitprobe.schemas` shape (``probes``,
``population_probes``, ``identifiability``, ``vif``) and returns a
:class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from unitprobe.errors import DataError
from unitprobe.views import _draw
from unitprobe.views import style as _style

__all__ = ["plot_identifiability", "plot_partial_r2", "plot_probe_heatmap"]

_PROBE_COLUMNS = ("layer", "unit", "state", "target")
_POPULATION = "population"

# ---------------------------------------------------------------------------------------------
# probe R² and partial R²
# ---------------------------------------------------------------------------------------------


def _probe_rows(
    probes: pd.DataFrame,
    population_probes: pd.DataFrame | None,
    value_columns: Sequence[str],
    state: str,
    layer: int | None,
) -> tuple[pd.DataFrame, list[tuple], list[str], list, bool]:
    """Cells of one state and layer: row keys (units, then population rows), labels, targets.

    Returns the long table of cells (columns ``_row``, ``target`` and ``value_columns``), the row
    keys ``(layer, unit)`` then ``(layer, "population")``, their labels, the targets in table
    order and whether several layers are shown.
    """
    _draw.require(probes, (*_PROBE_COLUMNS, *value_columns), "probes")
    if probes.empty:
        raise _draw.EmptySelectionError("probes table has no rows to plot")
    states = _draw.unique(probes["state"])
    if state not in states:
        raise DataError(f"state == {state!r} has no rows in the probes table; available: {states}")
    df = probes[probes["state"] == state]
    layers = sorted(_draw.unique(df["layer"]))
    if layer is not None:
        if layer not in layers:
            raise DataError(
                f"layer == {layer!r} has no {state!r} rows in the probes table; "
                f"available layers: {layers}"
            )
        df = df[df["layer"] == layer]
    multi = layer is None and len(layers) > 1
    rows: list[tuple] = _draw.unit_keys(df)
    labels = [_draw.unit_label(lay, u, multi) for lay, u in rows]
    cells = df.assign(_row=list(zip(df["layer"], df["unit"], strict=True)))
    cells = cells[["_row", "target", *value_columns]]
    if population_probes is not None:
        _draw.require(
            population_probes, ("layer", "state", "target", *value_columns), "population_probes"
        )
        pop = population_probes[population_probes["state"] == state]
        if layer is not None:
            pop = pop[pop["layer"] == layer]
        pop_rows = [(lay, _POPULATION) for lay in sorted(_draw.unique(pop["layer"]))]
        rows += pop_rows
        labels += [f"L{lay} {_POPULATION}" if multi else _POPULATION for lay, _ in pop_rows]
        pop = pop.assign(_row=[(lay, _POPULATION) for lay in pop["layer"]])
        cells = pd.concat([cells, pop[["_row", "target", *value_columns]]], ignore_index=True)
    return cells, rows, labels, _draw.unique(cells["target"]), multi


def _probe_figure(
    probes: pd.DataFrame,
    population_probes: pd.DataFrame | None,
    *,
    value: str,
    annotate: Sequence[tuple[str, Callable[[float], str]]],
    state: str,
    layer: int | None,
    title: str,
    cbar_label: str,
    note: str,
    undefined: str | None = None,
) -> Figure:
    """One probe heatmap; ``undefined``: the text shown (without colour bar) when no shown
    cell has a value. ``note`` describes the cell text; a heatmap too large for cell text
    says instead where the values are."""
    columns = [value, *(c for c, _ in annotate if c != value)]
    df, rows, labels, targets, multi = _probe_rows(probes, population_probes, columns, state, layer)
    mats = _draw.grid(df, "_row", "target", columns, rows, targets, "probes")
    n_rows, n_cols = len(rows), len(targets)
    n_single = sum(1 for r in rows if r[1] != _POPULATION)
    annotated = n_rows <= _draw.MAX_ANNOTATED_ROWS and n_cols <= _draw.MAX_ANNOTATED_COLS
    blank = undefined is not None and bool(np.isnan(mats[value]).all())
    cell_h = 0.17 + 0.14 * len(annotate) if annotated else 0.2
    width = max(4.6, 1.6 + _draw.span(n_cols, 0.72, _draw.MAX_COL_LABELS) + 1.0)
    height = 1.6 + _draw.span(n_single, cell_h, _draw.MAX_ROW_LABELS, n_rows - n_single)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        annot = None
        if annotated and annotate:
            annot = _draw.annotations(
                *(mats[c] for c, _ in annotate), fmts=[f for _, f in annotate]
            )
        _draw.heatmap(
            ax,
            mats[value],
            labels,
            [str(t) for t in targets],
            cmap=_style.SEQUENTIAL,
            vmin=0.0,
            vmax=1.0,
            annot=annot,
            cbar=not blank,  # a colour bar with no value on it would mean nothing
            cbar_label=cbar_label,
            unit_rows=n_single,
        )
        if blank:
            ax.text(
                0.5,
                0.5,
                undefined,
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=10,
                bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.5"},
            )
        _draw.layer_breaks(ax, [r[0] for r in rows[:n_single]])
        if 0 < n_single < n_rows:
            ax.axhline(n_single, color="white", linewidth=4)
            ax.axhline(n_single, color="0.15", linewidth=1.2)
        ax.set_xlabel("probe target")
        ax.set_ylabel("layer / unit" if multi else "unit")
        shown = sorted({r[0] for r in rows})
        where = f"layer {shown[0]}" if len(shown) == 1 else "all layers"
        full = f"{title} ({where}, state {state})"
        if not annotated:  # the cells carry no text: say where the numbers are
            note = f"colour: {cbar_label}; too many cells to print, probes.csv lists every value"
        ax.set_title(_draw.wrap(f"{full}\n{note}", width - 0.4, 9), fontsize=9)
    return fig


def plot_probe_heatmap(
    probes: pd.DataFrame,
    population_probes: pd.DataFrame | None = None,
    *,
    state: str = "h",
    layer: int | None = 0,
) -> Figure:
    """Units × targets heatmap of held-out probe R², each cell annotated with its selectivity.

    Parameters
    ----------
    probes : DataFrame
        ``probes`` table: ``layer``, ``unit``, ``state``, ``target``, ``r2``, ``selectivity``
        (other columns are ignored).
    population_probes : DataFrame, optional
        ``population_probes`` table (``layer``, ``state``, ``target``, ``r2``,
        ``selectivity``): its rows are drawn below the units, one per layer.
    state : {"h", "c"}, default "h"
        Which state's probes to show.
    layer : int or None, default 0
        Layer to show; ``None`` shows every layer (rows labelled ``L<layer> u<unit>``).

    Returns
    -------
    Figure
        One heatmap, rows = units in order then the population probes (below a separating
        line), columns = targets in table order; colour = R² on a fixed 0..1 scale; cell text
        ``"<R²>\\n<selectivity with sign>"``.
    """
    return _probe_figure(
        probes,
        population_probes,
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
        ``probes`` table with ``layer``, ``unit``, ``state``, ``target``, ``partial_r2`` (and
        ``note``, which explains a partial R² that is undefined).
    state : {"h", "c"}, default "h"
    layer : int or None, default 0
        ``None`` shows every layer.

    Returns
    -------
    Figure
        Layout as :func:`plot_probe_heatmap` (units only); colour and cell text = partial R²
        (0..1 scale). When no shown cell has a value (e.g. collinear targets), the grid is
        left blank with a note saying why (from the ``note`` column) and no colour bar.
    """
    _draw.require(probes, (*_PROBE_COLUMNS, "partial_r2"), "probes")
    shown = probes[probes["state"] == state]
    if layer is not None:
        shown = shown[shown["layer"] == layer]
    notes = shown["note"].dropna().astype(str) if "note" in shown else pd.Series([], dtype=str)
    notes = notes[notes != ""]
    why = notes.mode().iloc[0] if len(notes) else "see the note column of probes.csv"
    if "explained by controls" in why:
        why = "each target is a linear combination of the others"
        why += "\n(see the identifiability figure)"
    return _probe_figure(
        probes,
        None,
        value="partial_r2",
        annotate=[("partial_r2", lambda v: f"{v:.2f}")],
        state=state,
        layer=layer,
        title="Partial R² per unit",
        cbar_label="held-out partial R²",
        note="cell: R² of the unit for the part of the target the other targets do not explain",
        undefined=f"partial R² undefined everywhere:\n{why}",
    )


# ---------------------------------------------------------------------------------------------
# identifiability
# ---------------------------------------------------------------------------------------------


def plot_identifiability(
    identifiability: pd.DataFrame,
    vif: pd.DataFrame | None = None,
    *,
    threshold: float | None = None,
) -> Figure:
    """Targets × targets matrix of r² between probe targets, non-separable pairs hatched.

    Parameters
    ----------
    identifiability : DataFrame
        ``identifiability`` table: ``target_a``, ``target_b``, ``r2``, ``separable`` (bool),
        one row per pair of targets.
    vif : DataFrame, optional
        ``vif`` table: ``target``, ``vif``; each target's variance inflation factor is shown
        in its row label.
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
    _draw.require(identifiability, ("target_a", "target_b", "r2", "separable"), "identifiability")
    pairs = identifiability
    if threshold is None and "threshold" in pairs.columns:
        given = pairs["threshold"].dropna().unique()
        threshold = float(given[0]) if len(given) == 1 else None
    factors: dict = {}
    if vif is not None:
        _draw.require(vif, ("target", "vif"), "vif")
        factors = dict(zip(vif["target"], vif["vif"].astype(float), strict=True))
    targets = _draw.unique([*pairs["target_a"], *pairs["target_b"], *factors])
    if len(targets) < 1:
        raise _draw.EmptySelectionError("identifiability table has no targets")
    index = {t: i for i, t in enumerate(targets)}
    n = len(targets)
    mat = np.full((n, n), np.nan)
    np.fill_diagonal(mat, 1.0)
    inseparable = np.zeros((n, n), dtype=bool)
    for a, b, r2, separable in zip(
        pairs["target_a"], pairs["target_b"], pairs["r2"], pairs["separable"], strict=True
    ):
        i, j = index[a], index[b]
        mat[i, j] = mat[j, i] = r2
        if i != j and not bool(separable):
            inseparable[i, j] = inseparable[j, i] = True
    row_labels = [
        f"{t}  (VIF {_draw.fmt_vif(factors[t])})" if t in factors else str(t) for t in targets
    ]
    label_w = 0.075 * max(len(s) for s in row_labels)
    cell = 0.62
    width = max(4.8, label_w + 1.2 + _draw.span(n, cell, _draw.MAX_COL_LABELS) + 1.2)
    height = max(3.0, 2.3 + _draw.span(n, 0.45, _draw.MAX_ROW_LABELS))
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        annot = _draw.annotations(mat, fmts=[lambda v: f"{v:.3f}"])
        _draw.heatmap(
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
                    (j, i), 1, 1, fill=False, hatch="///", edgecolor="0.1", linewidth=1.5, zorder=2
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
            _draw.wrap("Identifiability: how much each probe target predicts another", width, 9)
        )
    return fig
