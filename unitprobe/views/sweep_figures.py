"""Figures of a sweep over model sizes and seeds: capacity, specialization, role stability.

The tables come from :mod:`unitprobe.pipeline.sweepstats` (``sweep_summary``, role
stability); each function returns a :class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from unitprobe.errors import DataError
from unitprobe.views import _draw
from unitprobe.views import style as _style

__all__ = ["plot_capacity_curve", "plot_role_stability", "plot_specialization"]


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


def _floats(df: pd.DataFrame, columns: list[str], table: str) -> pd.DataFrame:
    """``df`` with ``columns`` as float; DataError if one holds something that is not a number."""
    try:
        return df.astype(dict.fromkeys(columns, float))
    except (TypeError, ValueError) as err:
        raise DataError(f"{table} table has a value that is not a number: {err}") from None


_BASELINE_STYLES = {"memoryless_linear": ("--", "memoryless linear"),
                    "linear_ar": (":", "best linear AR")}  # fmt: skip


def _baseline_lines(ax: Axes, summary: pd.DataFrame, tasks: list, colors: dict) -> list:
    """Horizontal baseline levels per task; legend handles for the ones drawn."""
    handles = []
    for column, (dash, label) in _BASELINE_STYLES.items():
        if column not in summary.columns:
            continue
        levels = _floats(summary, [column], "sweep_summary").groupby("task")[column].mean()
        for task in tasks:
            level = levels.get(task, np.nan)
            if np.isfinite(level) and level > 0:
                ax.axhline(level, color=colors[task], linestyle=dash, linewidth=1.0, alpha=0.8)
        handles.append(Line2D([], [], color="0.3", linestyle=dash, label=label))
    return handles


def plot_capacity_curve(sweep_summary: pd.DataFrame) -> Figure:
    """Validation MSE against the number of units, one line with a band per task (log y).

    Parameters
    ----------
    sweep_summary : DataFrame
        Columns ``task``, ``units``, ``mean`` (validation MSE over seeds, normalized units²),
        ``lo``, ``hi`` (its interval over seeds), optional ``knee`` (bool: the smallest
        sufficient number of units, marked with a star), optional baseline levels in the
        same metric, constant per task: ``memoryless_linear`` (dashed) and ``linear_ar``
        (the best linear autoregression, dotted), drawn as horizontal lines in the task's
        colour.

    Returns
    -------
    Figure
        One axis, log₂ units on x, log MSE on y, colour-blind palette per task.
    """
    _draw.require(sweep_summary, ("task", "units", "mean", "lo", "hi"), "sweep_summary")
    if sweep_summary.empty:
        raise _draw.EmptySelectionError("sweep_summary table has no rows")
    df = _floats(sweep_summary, ["units", "mean", "lo", "hi"], "sweep_summary")
    nonpositive = df[(df[["mean", "lo", "hi"]] <= 0).any(axis=1)]
    if not nonpositive.empty:
        raise DataError(
            "sweep_summary mean/lo/hi must be > 0 for a log axis; "
            f"row {nonpositive.index[0]} has {nonpositive[['mean', 'lo', 'hi']].iloc[0].tolist()}"
        )
    tasks = _draw.unique(df["task"])
    colors = dict(zip(tasks, _style.categorical(len(tasks)), strict=True))
    with _style.style():
        fig = _style.new_figure(6.4, 3.8)
        ax = fig.subplots()
        _task_lines(ax, df, "mean", "lo", "hi", tasks, colors)
        ax.set_yscale("log")
        _sweep_axis(ax, df["units"].to_numpy())
        handles, _ = ax.get_legend_handles_labels()
        handles.append(Patch(color="0.5", alpha=0.3, label="interval over seeds (lo–hi)"))
        handles += _baseline_lines(ax, sweep_summary, tasks, colors)
        if "knee" in df.columns:
            knee = df[df["knee"].eq(True)]
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
    _draw.require(sweep_summary, ("task", "units", *metrics), "sweep_summary")
    if sweep_summary.empty:
        raise _draw.EmptySelectionError("sweep_summary table has no rows")
    bands = [c for m in metrics for c in (f"{m}_lo", f"{m}_hi") if c in sweep_summary.columns]
    df = _floats(sweep_summary, ["units", *metrics, *bands], "sweep_summary")
    tasks = _draw.unique(df["task"])
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
    _draw.require(stability, ("role", "frequency", "stability"), "stability")
    if stability.empty:
        raise _draw.EmptySelectionError("stability table has no rows")
    df = _floats(stability, ["frequency", "stability"], "stability")
    df = df.assign(role=df["role"].astype(str))
    hue = "task" if "task" in df.columns else None
    hue_order = _draw.unique(df["task"]) if hue else None
    key = ["role", hue] if hue else ["role"]
    if df.duplicated(key).any():
        raise DataError(f"stability table has more than one row per {key}; aggregate it first")
    roles = _draw.unique(df["role"])
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
            ax.set_xlabel(_draw.wrap(labels[m], 2.6, 9))
            ax.set_title(m.capitalize())
            ax.tick_params(axis="y", length=0)
        axes[0].set_ylabel("role")
        axes[1].set_ylabel("")
        if hue:
            axes[1].legend(title="task", frameon=False, loc="upper left", bbox_to_anchor=(1, 1))
        fig.suptitle("Role stability across runs")
    return fig
