"""Input × lag attributions: which input, how many steps back, each output relies on.

One figure per task of the sweep among ``seed`` and ``delay-k``, from its run at the knee
(the smallest sufficient layer, see ``fig_capacity.py``; seed 0 or the smallest). For
``delay-k`` the attribution should sit on input U at lag k (``Y[t] = U[t-k]``); for ``seed``
the one-step-ahead outputs ``K[t+1] = K[t] + 2*X[t+1] + 1``, ``X[t+1] = X[t] + X[t-1]`` lean
on the current and previous inputs.

Writes ``input_lag_<task>.{png,pdf}``.
"""

from __future__ import annotations

from pathlib import Path

from _common import KNEE_RULE, KNEE_TOL, METRIC, cli, load_sweep, pick_run, run_dir, run_label, save

from unitprobe.pipeline.sweepstats import capacity_table
from unitprobe.tables import Tables
from unitprobe.views.figures import plot_input_lag


def tasks_of(tasks) -> list[str]:
    """The tasks this script draws, in sweep order."""
    return [t for t in dict.fromkeys(tasks) if t == "seed" or str(t).startswith("delay-")]


def make(sweep_dir: Path, out: Path) -> list[Path]:
    sweep = load_sweep(sweep_dir)
    capacity = capacity_table(sweep, metric=METRIC, tol=KNEE_TOL, rule=KNEE_RULE)
    knees = capacity[capacity["knee"]].set_index("task")["units"]
    written = []
    for task in tasks_of(sweep["task"]):
        row = pick_run(sweep, task, int(knees[task]) if task in knees else None)
        fig = plot_input_lag(Tables.read(run_dir(sweep_dir, row), ("input_lag",))["input_lag"])
        fig.suptitle(f"Input × lag attribution ('{task}', {run_label(row)})")
        written += save(fig, out, f"input_lag_{task}")
    return written


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
