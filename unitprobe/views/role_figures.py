"""Figures of the roles: one bar per unit with its evidence, and role units over time.

Each function takes one table in its :mod:`unitprobe.schemas` shape (``roles``, ``traces``) and
returns a :class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from unitprobe.errors import DataError
from unitprobe.schemas import NO_ROLE, SCHEMAS
from unitprobe.validation import check_choice, check_int
from unitprobe.views import _draw
from unitprobe.views import style as _style

__all__ = ["plot_role_traces", "plot_roles"]

# ---------------------------------------------------------------------------------------------
# traces
# ---------------------------------------------------------------------------------------------


def plot_role_traces(
    traces: pd.DataFrame, *, sequence: int | None = None, max_units: int = 8
) -> Figure:
    """Small multiples: each role unit's activation over time against its role's target.

    The ``traces`` table holds one row per unit × sequence × time step:

    ============  ========================================================================
    column        meaning
    ============  ========================================================================
    layer         0-based layer of the unit
    unit          0-based unit within its layer
    role          the unit's role from ``roles`` (a target such as ``X[t-1]``, or ``none``)
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
    sequence : int or None, default None
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
    max_units = check_int(max_units, "max_units", minimum=1, error=DataError)
    _draw.require(traces, SCHEMAS["traces"].columns, "traces")
    df = traces[[_draw.has_role(r) for r in traces["role"]]]
    if df.empty:
        raise _draw.EmptySelectionError(
            f"traces table has no unit with a role (every role is {NO_ROLE!r})"
        )
    sequences = sorted(_draw.unique(df["sequence"]))
    seq = _draw.pick(sequence, sequences, "sequence", "traces")
    df = df[df["sequence"] == seq]
    keys = _draw.unit_keys(df)
    multi = len({k[0] for k in keys}) > 1
    keys = keys[:max_units]
    nrows, ncols = _draw.panel_grid(len(keys), math.ceil(len(keys) / math.ceil(len(keys) / 4)))
    colors = _style.categorical(2)
    with _style.style():
        fig = _style.new_figure(max(4.6, 2.9 * ncols + 0.3), 0.9 + 2.2 * nrows)
        fig.get_layout_engine().set(wspace=0.06, hspace=0.06)
        axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True)
        flat = axes.ravel()
        for i, (lay, u) in enumerate(keys):
            ax = flat[i]
            rows = df[(df["layer"] == lay) & (df["unit"] == u)].sort_values("step")
            role = _draw.unique(rows["role"])[0]
            a = rows["activation"].to_numpy(dtype=float)
            t = rows["target_value"].to_numpy(dtype=float)
            ax.plot(rows["step"], a, color=colors[0], linewidth=1.4)
            twin = ax.twinx()
            twin.spines["right"].set_visible(True)
            twin.plot(rows["step"], t, color=colors[1], linewidth=1.4, linestyle="--")
            ok = np.isfinite(a) & np.isfinite(t)
            r = (
                np.corrcoef(a[ok], t[ok])[0, 1]
                if ok.sum() > 2 and a[ok].std() > 0 and t[ok].std() > 0
                else np.nan
            )
            name = _draw.unit_label(lay, u, True) if multi else f"unit {u}"
            title = f"{name} → {role}" + (f"\nr = {r:.2f}" if np.isfinite(r) else "")
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole time steps
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
# roles
# ---------------------------------------------------------------------------------------------

_ROLE_LENGTHS = {
    "confidence": ("confidence (0–1)", (0.0, 1.0)),
    "delta_mse": ("Δ MSE when the unit is ablated (normalized units²)", None),
}


#: Most units drawn by :func:`plot_roles`; larger layers show their role units first.
MAX_ROLE_UNITS = 48


def plot_roles(
    roles: pd.DataFrame,
    *,
    length: str = "confidence",
    max_evidence_chars: int = 72,
    max_units: int = MAX_ROLE_UNITS,
) -> Figure:
    """One-glance role summary: one bar per unit, coloured by role, with the evidence beside it.

    Parameters
    ----------
    roles : DataFrame
        ``roles`` table: ``layer``, ``unit``, ``role``, ``confidence``, ``decided_by``,
        ``evidence`` (and ``delta_mse`` when ``length="delta_mse"``).
    length : {"confidence", "delta_mse"}, default "confidence"
        What the bar length shows.
    max_evidence_chars : int, default 72
        Evidence text is wrapped at this many characters per line (never cut).
    max_units : int, default 48
        With more units, the figure shows every unit with a role and fills up to
        ``max_units`` with the unnamed units of the longest bars; the title says how many
        units are left out (the ``roles`` table lists them all).

    Returns
    -------
    Figure
        Horizontal bars, units top to bottom; colour = role (``none`` grey); to the right of
        each bar ``"<role> · <decided_by>: <evidence>"``; legend of roles.
    """
    check_choice(length, "length", tuple(_ROLE_LENGTHS), error=DataError)
    _draw.require(roles, ("layer", "unit", "role", length, "decided_by", "evidence"), "roles")
    if roles.empty:
        raise _draw.EmptySelectionError("roles table has no rows")
    df = roles.sort_values(["layer", "unit"], kind="stable").reset_index(drop=True)
    df, left_out = _top_units(df, length, max_units)
    multi = len(_draw.unique(df["layer"])) > 1
    labels = [_draw.unit_label(a, b, multi) for a, b in zip(df["layer"], df["unit"], strict=True)]
    role_names = [str(r) if _draw.has_role(r) else NO_ROLE for r in df["role"]]
    named = _draw.unique(r for r in role_names if r != NO_ROLE)
    palette = dict(zip(named, _style.categorical(len(named)), strict=True))
    palette[NO_ROLE] = _style.NEUTRAL
    values = df[length].to_numpy(dtype=float, na_value=np.nan)
    values = np.where(np.isnan(values), 0.0, values)
    texts = [  # wrapped, never cut: the deciding evidence is the point of the figure
        textwrap.fill(
            " ".join((f"{r} · {d}: {e}" if not _draw.is_missing(e) else f"{r} · {d}").split()),
            max_evidence_chars,
        )
        for r, d, e in zip(role_names, df["decided_by"], df["evidence"], strict=True)
    ]
    lines = max(t.count("\n") + 1 for t in texts)
    xlabel, xlim = _ROLE_LENGTHS[length]
    if xlim is None:
        top = float(np.nanmax(np.abs(values))) if len(values) else 1.0
        lo = min(0.0, float(np.nanmin(values)) * 1.05)
        xlim = (lo, top * 1.05 if top > 0 else 1.0)
    text_w = 0.058 * max(len(part) for t in texts for part in t.split("\n"))
    width = max(5.0, 1.0 + 0.08 * max(len(s) for s in labels) + 2.4 + text_w)
    height = 1.5 + 0.3 * len(df) * (1 + 0.55 * (lines - 1)) + 0.2 * math.ceil((len(named) + 1) / 4)
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
        shown = [*named, NO_ROLE] if NO_ROLE in role_names else named
        handles = [Patch(color=palette[r], label=r) for r in shown]
        fig.legend(
            handles=handles,
            title="role",
            loc="outside lower center",
            ncols=min(len(handles), 6),
            frameon=False,
        )
        what = xlabel.split(" (")[0]
        title = f"Unit roles (bar: {what}; text: role · deciding evidence)"
        if left_out:
            title += f"; {left_out} units without a role left out (roles.csv lists every unit)"
        fig.suptitle(_draw.wrap(title, width, 10))
    return fig


def _top_units(df: pd.DataFrame, length: str, max_units: int) -> tuple[pd.DataFrame, int]:
    """At most ``max_units`` rows (every role unit kept), in (layer, unit) order, and how many
    rows were left out."""
    if len(df) <= max_units:
        return df, 0
    named = np.array([_draw.has_role(r) for r in df["role"]])
    bar = np.abs(df[length].to_numpy(dtype=float, na_value=0.0))
    order = np.lexsort((np.arange(len(df)), -bar, ~named))  # role units, then longest bars
    keep = np.sort(order[: max(max_units, int(named.sum()))])
    return df.iloc[keep].reset_index(drop=True), len(df) - len(keep)
