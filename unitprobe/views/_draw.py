"""Helpers shared by the figure modules: table checks, labels, number formats, heatmaps, grids.

Tables reach the figures with their schema dtypes (:mod:`unitprobe.schemas`), so nothing here
converts values read back from CSV text.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.colors import Colormap, ListedColormap

from unitprobe.errors import DataError
from unitprobe.schemas import NO_ROLE
from unitprobe.validation import check_columns
from unitprobe.views import style as _style

ANNOT_FONT = _style.MIN_FONT_PT
MAX_ANNOTATED_ROWS = 40
MAX_ANNOTATED_COLS = 16
#: Most labelled rows and columns of a heatmap (and most cells :func:`span` gives full size).
MAX_ROW_LABELS = 64
MAX_COL_LABELS = 32


class EmptySelectionError(DataError):
    """The table is well formed but holds no rows for this figure (render_all skips it)."""


def require(table: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    """Raise DataError unless ``table`` is a DataFrame with every one of ``columns``."""
    check_columns(table, columns, name)


def is_missing(value: Any) -> bool:
    """Whether ``value`` is None, NA or a float NaN."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def unique(values: Iterable[Hashable]) -> list:
    """Distinct values in order of first appearance (missing values dropped)."""
    seen: dict = {}
    for v in values:
        if not is_missing(v):
            seen.setdefault(v, None)
    return list(seen)


def has_role(role: Any) -> bool:
    """Whether a ``roles.role`` value names a term (not missing, empty or ``none``)."""
    return not (is_missing(role) or str(role).strip() in ("", NO_ROLE))


def unit_label(layer: int, unit: int, multi_layer: bool) -> str:
    """``"3"`` for one layer, ``"L1 u3"`` when several layers are shown."""
    return f"L{layer} u{unit}" if multi_layer else str(unit)


def unit_keys(df: pd.DataFrame) -> list[tuple[int, int]]:
    """Distinct ``(layer, unit)`` pairs of ``df``, sorted."""
    return sorted(set(zip(df["layer"].tolist(), df["unit"].tolist(), strict=True)))


def fmt_value(value: float, digits: int = 2) -> str:
    """Compact number for a cell: fixed point where it reads well, else 2 significant digits."""
    if not np.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "")
    if value == 0 or 0.01 <= abs(value) < 100:
        return f"{value:.{digits}f}"
    return f"{value:.2g}"


def fmt_vif(value: float) -> str:
    """A variance inflation factor: ``"1.7"``, ``"2.1e2"``, ``"∞"`` or ``"n/a"``."""
    if is_missing(value):
        return "n/a"
    if not np.isfinite(value):
        return "∞"
    if value >= 100:
        return f"{value:.2g}".replace("e+0", "e").replace("e+", "e")
    return f"{value:.1f}"


def step_label(value: Any) -> str:
    """A lag or step as a whole number (``2.0`` -> ``"2"``); other values as ``str``."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def truncate(text: str, n: int) -> str:
    """``text`` on one line, cut to ``n`` characters with "…"."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """Wrap ``text`` to lines that fit ``width_in`` inches at ``fontsize`` points."""
    chars = max(int(width_in * 72 / (0.56 * fontsize)), 20)
    return "\n".join(textwrap.fill(part, chars) for part in text.split("\n"))


def grid(
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
    data = {v: df[v].to_numpy(dtype=float, na_value=np.nan) for v in values}
    out = {v: np.full((len(rows), len(cols)), np.nan) for v in values}
    for idx, (r, c) in enumerate(keys):
        if r in r_index and c in c_index:
            for v in values:
                out[v][r_index[r], c_index[c]] = data[v][idx]
    return out


def pick(value: Any, available: Sequence[Any], what: str, table: str) -> Any:
    """``value`` if available, or the first available one when ``value`` is None."""
    if not available:
        raise EmptySelectionError(f"{table} table has no rows to plot")
    if value is None:
        return available[0]
    if value not in available:
        raise DataError(f"{what} == {value!r} is not in the {table} table; available: {available}")
    return value


def rotate_xticks(ax: Axes, labels: Sequence[str], *, limit: int = 3) -> None:
    """Slant the x tick labels when any is longer than ``limit`` characters."""
    if any(len(str(s)) > limit for s in labels):
        ax.tick_params(axis="x", labelrotation=45)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
            t.set_rotation_mode("anchor")


def label_step(n: int, most: int) -> int:
    """Label every ``step``-th of ``n`` rows (a power of 2) so at most ``most`` labels remain."""
    step = 1
    while math.ceil(n / step) > most:
        step *= 2
    return step


def span(n: int, per_cell: float, most: int, extra: int = 0) -> float:
    """Inches for ``n`` heatmap cells of ``per_cell`` inches; beyond ``most`` cells they shrink.

    ``extra``: rows after the ``n`` units that :func:`heatmap` never thins (``unit_rows``),
    each given ``per_cell`` inches. With :func:`label_step` for the same ``most``, labels are
    never closer than about ``per_cell``.
    """
    return per_cell * (min(n, most) + extra)


def _recentred(cmap: str, vmin: float, vmax: float, center: float | None) -> Colormap:
    """``cmap`` cut so that ``center`` falls on its middle colour (as seaborn's heatmap does)."""
    base = mpl.colormaps[cmap]  # seaborn's "vlag" is registered by importing seaborn (style)
    if center is None:
        return base
    half = max(vmax - center, center - vmin)
    lo, hi = (vmin - center + half) / (2 * half), (vmax - center + half) / (2 * half)
    return ListedColormap(base(np.linspace(lo, hi, 256)))


def _label_cells(ax: Axes, mesh: QuadMesh, annot: np.ndarray, y: np.ndarray) -> None:
    """Write ``annot[i, j]`` at ``(j + 0.5, y[i])`` in each cell with a value, dark on light
    colours, white on dark."""
    mesh.update_scalarmappable()
    rgb = mesh.get_facecolors()[:, :3]
    linear = np.where(rgb <= 0.03928, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    valid = ~np.ma.getmaskarray(mesh.get_array()).ravel()
    n_cols = annot.shape[1]
    for k in np.flatnonzero(valid):
        i, j = divmod(int(k), n_cols)
        ax.text(
            j + 0.5,
            y[i],
            annot[i, j],
            color="0.15" if luminance[k] > 0.408 else "w",
            ha="center",
            va="center",
            fontsize=ANNOT_FONT,
        )


def heatmap(
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
    unit_rows: int | None = None,
) -> QuadMesh:
    """A heatmap of ``matrix`` (ndarray of shape (rows, cols)) in the look of seaborn's.

    NaN cells are left blank; ``annot`` (string matrix) is written into the cells with a value.
    Column ``j`` spans ``x = j .. j + 1`` and unit row ``i`` spans ``y = i .. i + 1``. Up to
    :data:`MAX_ROW_LABELS` rows and :data:`MAX_COL_LABELS` columns every one is labelled and
    cells are parted by thin white lines. A larger matrix labels every 2nd, 4th, ... row or
    column (:func:`label_step`), drops the lines (they would hide cells shrunk by :func:`span`)
    and is rasterized in PDF and SVG.

    ``unit_rows``: only the first ``unit_rows`` rows (the units) are thinned; each row after
    them (population probes, unit groups) keeps its label and, when the units are thinned, is
    drawn as tall as the gap between two unit labels (starting at ``y = unit_rows``).
    """
    n_rows, n_cols = matrix.shape
    n_units = n_rows if unit_rows is None else unit_rows
    row_step = label_step(n_units, MAX_ROW_LABELS)
    col_step = label_step(n_cols, MAX_COL_LABELS)
    large = row_step > 1 or col_step > 1
    y_edges = np.concatenate(
        [np.arange(n_units + 1), n_units + row_step * np.arange(1, n_rows - n_units + 1)]
    )
    mesh = ax.pcolormesh(
        np.arange(n_cols + 1),
        y_edges,
        np.ma.masked_where(np.isnan(matrix), matrix),
        cmap=_recentred(cmap, vmin, vmax, center),
        vmin=vmin,
        vmax=vmax,
        linewidths=0.0 if large else 0.5,
        edgecolor="white",
        rasterized=large,
    )
    ax.set(xlim=(0, n_cols), ylim=(y_edges[-1], 0))
    ax.spines[:].set_visible(False)
    if cbar:
        label = wrap(cbar_label, ax.figure.get_figheight() - 1.0, 9)
        bar = ax.figure.colorbar(mesh, ax=ax, label=label)
        bar.outline.set_linewidth(0)
        if large:  # as the mesh (a long colour bar is rasterized already)
            bar.solids.set_rasterized(True)
    y = (y_edges[:-1] + y_edges[1:]) / 2
    shown = [*range(0, n_units, row_step), *range(n_units, n_rows)]
    ax.set_yticks(y[shown], [str(rows[i]) for i in shown], va="center")
    ax.set_xticks(np.arange(0, n_cols, col_step) + 0.5, list(cols)[::col_step])
    ax.tick_params(axis="y", labelrotation=0, length=0)
    ax.tick_params(axis="x", length=0)
    rotate_xticks(ax, cols)
    if annot is not None:
        _label_cells(ax, mesh, annot, y)
    return mesh


def annotations(*matrices: np.ndarray, fmts: Sequence[Callable[[float], str]]) -> np.ndarray:
    """String matrix whose cells join the formatted values of ``matrices`` line by line."""
    shape = matrices[0].shape
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        parts = [f(m[idx]) for m, f in zip(matrices, fmts, strict=True) if not np.isnan(m[idx])]
        out[idx] = "\n".join(parts)
    return out


def layer_breaks(ax: Axes, layers: Sequence[Any]) -> None:
    """Thin horizontal lines between consecutive heatmap rows of different layers."""
    for i in range(1, len(layers)):
        if layers[i] != layers[i - 1]:
            ax.axhline(i, color="0.15", linewidth=0.8)


def panel_grid(n: int, max_cols: int) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``n`` panels at most ``max_cols`` wide."""
    ncols = max(1, min(n, max_cols))
    return math.ceil(n / ncols), ncols


def symmetric_bound(matrices: Iterable[np.ndarray]) -> float:
    """Largest finite absolute value over ``matrices``, or 1.0 when there is none (or it is 0)."""
    peak = max((np.nanmax(np.abs(a)) for a in matrices if np.isfinite(a).any()), default=0)
    return float(peak) if peak > 0 else 1.0
