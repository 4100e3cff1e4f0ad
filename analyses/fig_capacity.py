"""Capacity curve: per-step error against the number of units, per task, with the knee.

The y axis is ``step_nmse``, the per-step normalized validation error (each step's MSE over
the variance of its targets across sequences, averaged over steps and outputs: 1 = the
per-step mean, 0 = exact; :func:`unitprobe.tasks.baselines.per_step_nmse`), mean over seeds
with a 95 % percentile-bootstrap interval (2000 resamples). Dashed: the memoryless linear map
from the current inputs; dotted: the best linear autoregression (order chosen on validation),
each fitted on the same training sequences (mean over seeds). The star marks the knee: the
smallest layer that keeps ``1 - KNEE_TOL`` (95 %) of the best layer's skill ``1 - best``
(:func:`unitprobe.pipeline.sweepstats.find_knee`, ``rule="skill"``). It is expected at the
task's smallest layer, ``max(state size, outputs)`` (:func:`unitprobe.tasks.info.min_units`).

Writes ``capacity_curve.{png,pdf}``, ``tables/sweep_summary.csv``, ``tables/knees.csv`` (knee
with its bootstrap interval over seeds) and ``tables/knee_sensitivity.csv`` (the knee under
other tolerances and under error-ratio rules).
"""

from __future__ import annotations

from pathlib import Path

from _common import KNEE_RULE, KNEE_TOL, METRIC, cli, load_sweep, save, write_table

from unitprobe.pipeline.sweepstats import knee_intervals, knee_sensitivity, sweep_summary
from unitprobe.tasks import get_preset
from unitprobe.tasks.info import min_units
from unitprobe.tasks.presets import state_size
from unitprobe.views.figures import plot_capacity_curve

BASELINE_LEVELS = {"memoryless_linear": "step_nmse_memoryless_linear",
                   "linear_ar": "step_nmse_linear_ar"}  # fmt: skip


def make(sweep_dir: Path, out: Path) -> list[Path]:
    sweep = load_sweep(sweep_dir)
    summary = sweep_summary(sweep, metric=METRIC, tol=KNEE_TOL, rule=KNEE_RULE)
    levels = sweep.groupby("task")[list(BASELINE_LEVELS.values())].mean()
    for name, column in BASELINE_LEVELS.items():
        summary[name] = summary["task"].map(levels[column])
    # a perfect run (error exactly 0) cannot sit on a log axis
    floor = 1e-6
    plotted = summary.assign(**{c: summary[c].clip(lower=floor) for c in ("mean", "lo", "hi")})
    fig = plot_capacity_curve(plotted)
    ax = fig.axes[0]
    ax.set_ylabel("per-step normalized error\n(1 = per-step mean)")
    ax.set_title("Capacity: error vs number of units (knee: 95 % of the best skill)")
    written = save(fig, out, "capacity_curve")
    knees = knee_intervals(sweep, metric=METRIC, tol=KNEE_TOL, rule=KNEE_RULE)
    knees["state_size"] = knees["task"].map(state_size).astype("Int64")
    knees["min_units"] = knees["task"].map(lambda t: min_units(get_preset(t))).astype("Int64")
    sensitivity = knee_sensitivity(sweep, metric=METRIC)
    sensitivity["state_size"] = sensitivity["task"].map(state_size).astype("Int64")
    written.append(write_table(summary, out, "sweep_summary"))
    written.append(write_table(knees, out, "knees"))
    written.append(write_table(sensitivity, out, "knee_sensitivity"))
    return written


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
