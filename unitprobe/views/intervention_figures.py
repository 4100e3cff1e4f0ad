"""Figures of the interventions: interchange transfer per unit and term, learned directions.

Each function takes tables in the shapes of :mod:`unitprobe.methods.interventions`
(``interchange``, ``directions``, ``direction_loadings``) and returns a
:class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from unitprobe.views import _draw
from unitprobe.views import style as _style

__all__ = ["plot_directions", "plot_interchange"]

_INTERCHANGE_COLUMNS = ("layer", "units", "term", "transfer")
_DIRECTION_COLUMNS = ("layer", "term", "k", "transfer_test", "best_unit_transfer")
_LOADING_COLUMNS = ("layer", "term", "component", "unit", "state", "loading")


def _units_key(units: str) -> tuple:
    """Sort key of a unit set (``"3"``, ``"1+4"``, ``"none"``): singles first, then by size."""
    members = [m for m in str(units).split("+") if m.isdigit()]
    return (len(members) != 1, len(members), [int(m) for m in members])


def plot_interchange(interchange: pd.DataFrame, *, reference: str | None = None) -> Figure:
    """Unit sets × terms heatmap of the interchange transfer.

    Parameters
    ----------
    interchange : DataFrame
        ``interchange`` table: ``layer``, ``units`` (``"3"``, ``"1+4"``), ``term``,
        ``transfer`` (NaN where the output ignores the term: blank cell).
    reference : str, optional
        Rows of this ``reference`` when the table holds several (default ``model``, the
        model's own output change, else the first present).

    Returns
    -------
    Figure
        Rows = single units (by layer and id), then unit groups below a line; columns = terms
        in table order; diverging colours centred at 0 (1: the units carry the whole effect of
        the term on the output); cells annotated with the transfer.
    """
    _draw.require(interchange, _INTERCHANGE_COLUMNS, "interchange")
    if "reference" in interchange.columns and interchange["reference"].nunique() > 1:
        present = _draw.unique(interchange["reference"])
        chosen = reference or ("model" if "model" in present else present[0])
        interchange = interchange[interchange["reference"] == chosen]
    if interchange.empty:
        raise _draw.EmptySelectionError("interchange table has no rows to plot")
    df = interchange.assign(_units=[str(u) for u in interchange["units"]])
    multi = len(_draw.unique(df["layer"])) > 1
    keys = _draw.unique(zip(df["layer"], df["_units"], strict=True))
    keys.sort(key=lambda k: (_units_key(k[1])[0], k[0], _units_key(k[1])))
    n_single = sum(1 for k in keys if not _units_key(k[1])[0])
    labels = [f"L{lay}: {u}" if multi else u for lay, u in keys]
    terms = _draw.unique(df["term"])
    df = df.assign(_row=list(zip(df["layer"], df["_units"], strict=True)))
    matrix = _draw.grid(df, "_row", "term", ["transfer"], keys, terms, "interchange")["transfer"]
    bound = max(1.0, _draw.symmetric_bound([matrix]))
    annotated = len(keys) <= _draw.MAX_ANNOTATED_ROWS and len(terms) <= _draw.MAX_ANNOTATED_COLS
    cells_w = _draw.span(len(terms), 0.62, _draw.MAX_COL_LABELS)
    width = max(4.2, 1.6 + 0.09 * max(len(s) for s in labels) + cells_w + 1.1)
    row_h = 0.32 if annotated else 0.2
    height = 1.9 + _draw.span(n_single, row_h, _draw.MAX_ROW_LABELS, len(keys) - n_single)
    with _style.style():
        fig = _style.new_figure(width, height)
        ax = fig.subplots()
        annot = (
            _draw.annotations(matrix, fmts=[lambda v: _draw.fmt_value(v, 2)]) if annotated else None
        )
        _draw.heatmap(
            ax,
            matrix,
            labels,
            [str(t) for t in terms],
            cmap=_style.DIVERGING,
            vmin=-bound,
            vmax=bound,
            center=0.0,
            annot=annot,
            cbar_label="transfer (share of the term's output change carried)",
            unit_rows=n_single,
        )
        if 0 < n_single < len(keys):
            ax.axhline(n_single, color="0.15", linewidth=1.2)
        ax.set_xlabel("term (counterfactual input)")
        ax.set_ylabel("patched unit(s)")
        fig.suptitle(_draw.wrap("Interchange: what patching each unit carries", width, 10))
    return fig


def plot_directions(directions: pd.DataFrame, direction_loadings: pd.DataFrame) -> Figure:
    """Learned directions: held-out transfer beside the best single unit and the direction's
    leak into another term, and their loadings.

    Parameters
    ----------
    directions : DataFrame
        ``directions`` table: ``layer``, ``term``, ``k``, ``transfer_test``,
        ``best_unit_transfer``.
    direction_loadings : DataFrame
        ``direction_loadings`` table: ``layer``, ``term``, ``component``, ``unit``, ``state``,
        ``loading``.

    Returns
    -------
    Figure
        Left: grouped bars per (layer, term) of the direction's held-out transfer, the best
        single unit's, and, where the table has ``leak``, the largest share of another
        term's effect the direction carries, with its ``score`` (transfer bounded by the
        layer, less the leak) as a marker (terms without a learned direction are left out).
        Right: heatmap of the loadings, one row per (layer, term, component), one column per
        state and unit, diverging around 0.
    """
    _draw.require(directions, _DIRECTION_COLUMNS, "directions")
    _draw.require(direction_loadings, _LOADING_COLUMNS, "direction_loadings")
    # terms with nothing to learn (no reference change) have no direction: leave them out
    learned = directions[pd.to_numeric(directions["transfer_test"], errors="coerce").notna()]
    keep = set(zip(learned["layer"], learned["term"], strict=True))
    direction_loadings = direction_loadings[
        [
            k in keep
            for k in zip(direction_loadings["layer"], direction_loadings["term"], strict=True)
        ]  # fmt: skip
    ]
    directions = learned
    if directions.empty:
        raise _draw.EmptySelectionError("directions table has no learned direction to plot")
    multi = len(_draw.unique(directions["layer"])) > 1
    names = [
        f"L{lay}: {t}" if multi else str(t)
        for lay, t in zip(directions["layer"], directions["term"], strict=True)
    ]
    loads = direction_loadings.assign(
        _row=[
            (f"L{lay}: {t}" if multi else str(t)) + f" #{c}"
            for lay, t, c in zip(
                direction_loadings["layer"],
                direction_loadings["term"],
                direction_loadings["component"],
                strict=True,
            )
        ],
        _col=[
            f"{s}{u}"
            for s, u in zip(direction_loadings["state"], direction_loadings["unit"], strict=True)
        ],  # fmt: skip
    )
    rows, cols = _draw.unique(loads["_row"]), _draw.unique(loads["_col"])
    map_w = _draw.span(len(cols), 0.42, _draw.MAX_COL_LABELS)
    width = max(6.0, 2.0 + 0.45 * len(names) + map_w + 2.0)
    height = max(2.8, 1.6 + _draw.span(len(rows), 0.3, _draw.MAX_ROW_LABELS))
    with _style.style():
        fig = _style.new_figure(width, height)
        ax_bar, ax_map = fig.subplots(
            1, 2, width_ratios=[max(1.0, 0.45 * len(names)), max(1.5, map_w)]
        )
        pos = np.arange(len(names))
        leaks = "leak" in directions.columns
        bars = [("transfer_test", "direction (held out)"), ("best_unit_transfer", "best unit")]
        if leaks:
            bars.append(("leak", "its leak into another term"))
        colors = _style.categorical(len(bars))
        bar_w = 0.8 / len(bars)
        for j, (column, label) in enumerate(bars):
            offset = (j - (len(bars) - 1) / 2) * bar_w
            ax_bar.bar(pos + offset, pd.to_numeric(directions[column], errors="coerce"), bar_w,
                       color=colors[j], label=label)  # fmt: skip
        if leaks and "score" in directions.columns:
            ax_bar.scatter(
                pos,
                pd.to_numeric(directions["score"], errors="coerce"),
                marker="D",
                color="0.1",
                zorder=3,
                s=18,
                label="score (bounded, less leak)",
            )
        ax_bar.axhline(1.0, color="0.4", linewidth=0.8, linestyle="--")
        ax_bar.set_xticks(pos, names)
        _draw.rotate_xticks(ax_bar, names)
        ax_bar.set_ylabel("transfer")
        ax_bar.set_title("transfer of the learned direction")
        shown = [c for c in ("transfer_test", "best_unit_transfer", "leak", "score")
                 if c in directions.columns]  # fmt: skip
        values = directions[shown].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        low = min(0.0, float(np.nanmin(values, initial=0.0)))
        top = max(1.0, float(np.nanmax(values, initial=1.0)))
        ax_bar.set_ylim(low - 0.05 * (top - low) if low < 0 else 0.0, None)  # markers whole
        ax_bar.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
        if rows and cols:
            loads = loads.groupby(["_row", "_col"], as_index=False, sort=False)["loading"].first()
            matrix = _draw.grid(loads, "_row", "_col", ["loading"], rows, cols,
                                "direction_loadings")["loading"]  # fmt: skip
            bound = _draw.symmetric_bound([matrix])
            annot = None
            if len(rows) <= _draw.MAX_ANNOTATED_ROWS and len(cols) <= _draw.MAX_ANNOTATED_COLS:
                annot = _draw.annotations(matrix, fmts=[lambda v: _draw.fmt_value(v, 2)])
            _draw.heatmap(ax_map, matrix, rows, cols, cmap=_style.DIVERGING, vmin=-bound,
                          vmax=bound, center=0.0, annot=annot, cbar_label="loading")  # fmt: skip
            ax_map.set_xlabel("state and unit")
            ax_map.set_title("loadings")
        else:
            ax_map.set_axis_off()
        fig.suptitle(_draw.wrap("Distributed directions (learned interchange subspaces)", width,
                                10))  # fmt: skip
        # the bar legend hangs below its axes by a fraction of their height, so the margins it
        # needs move with the layout: one more pass settles them (else it overruns the figure)
        fig.get_layout_engine().execute(fig)
    return fig
