"""Helpers shared by the figure modules: table checks, labels, number formats, heatmaps, grids.

Tables reach the figures with their schema dtypes (:mod:`unitprobe.schemas`), so nothing here
converts values read back from CSV text.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from unitprobe.errors import DataError
from unitprobe.schemas import NO_ROLE
from unitprobe.validation import check_columns
from unitprobe.views import style as _style

ANNOT_FONT = _style.MIN_FONT_PT
MAX_ANNOTATED_ROWS = 40
MAX_ANNOTATED_COLS = 16


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
            annot_kws={"fontsize": ANNOT_FONT},
            linewidths=0.5,
            linecolor="white",
            cbar=cbar,
            cbar_kws={"label": wrap(cbar_label, ax.figure.get_figheight() - 1.0, 9)}
            if cbar
            else None,
            xticklabels=True,
            yticklabels=True,
        )
    ax.tick_params(axis="y", labelrotation=0, length=0)
    ax.tick_params(axis="x", length=0)
    rotate_xticks(ax, cols)


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
