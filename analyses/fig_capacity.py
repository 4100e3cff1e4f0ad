"""Capacity curve: validation error against the number of units, per task, with the knee.

The y axis is ``mse_ratio`` = validation MSE / MSE of repeating the last value (unitless),
mean over seeds with a 95 % percentile-bootstrap interval (2000 resamples). The star marks the
knee: the smallest layer whose mean is within 0.05 of the task's best mean
(:func:`unitprobe.pipeline.sweepstats.find_knee`). For ``delay-k`` it is expected at ``k`` units.

Writes ``capacity_curve.{png,pdf}``, ``tables/sweep_summary.csv`` and ``tables/knees.csv``.
"""

from __future__ import annotations

from pathlib import Path

from _common import KNEE_TOL, METRIC, cli, load_sweep, save, write_table

from unitprobe.pipeline.sweepstats import knee_table, sweep_summary
from unitprobe.views.figures import plot_capacity_curve


def make(sweep_dir: Path, out: Path) -> list[Path]:
    summary = sweep_summary(load_sweep(sweep_dir), metric=METRIC, tol=KNEE_TOL)
    # a perfect run (ratio exactly 0) cannot sit on a log axis
    floor = 1e-6
    plotted = summary.assign(**{c: summary[c].clip(lower=floor) for c in ("mean", "lo", "hi")})
    fig = plot_capacity_curve(plotted)
    ax = fig.axes[0]
    ax.set_ylabel("validation MSE / repeat-last-value MSE")
    ax.set_title("Capacity: error vs number of units")
    written = save(fig, out, "capacity_curve")
    written.append(write_table(summary, out, "sweep_summary"))
    written.append(write_table(knee_table(summary), out, "knees"))
    return written


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
