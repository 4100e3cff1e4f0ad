"""Cross-seed role stability: is the same role found again when training with another seed?

For each task, the runs at its knee (the smallest sufficient layer, at least 2 units, among
layer sizes where some unit has a role) are compared: the units of every pair of seeds are
matched one-to-one by the Hungarian algorithm on their profiles (probe R² per target,
clipped at 0, followed by the receptive field ``|d h / d input[t-lag]|`` scaled to a maximum
of 1; see :func:`unitprobe.pipeline.sweepstats.role_stability`).
``frequency`` = fraction of seeds in
which some unit takes the role; ``stability`` = fraction of matched pairs whose units share
the role.

Writes ``role_stability.{png,pdf}`` and ``tables/role_stability.csv`` (every task and unit
count, not only those plotted).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from _common import KNEE_RULE, KNEE_TOL, METRIC, cli, load_sweep, run_tables, save, write_table

from unitprobe.pipeline.stability import role_stability
from unitprobe.pipeline.sweepstats import capacity_table
from unitprobe.views.figures import plot_role_stability


def stability_table(sweep_dir: Path) -> pd.DataFrame:
    """Role stability of every (task, units) of the sweep."""
    sweep = load_sweep(sweep_dir)
    probes = run_tables(sweep_dir, sweep, "probes")
    roles = run_tables(sweep_dir, sweep, "roles")
    fields = run_tables(sweep_dir, sweep, "receptive_fields")
    # "none" is kept: where no unit holds a term above the null, that is the stable answer
    return role_stability(probes, roles, receptive_fields=fields, profile="both", include_none=True)


def make(sweep_dir: Path, out: Path) -> list[Path]:
    table = stability_table(sweep_dir)
    capacity = capacity_table(load_sweep(sweep_dir), metric=METRIC, tol=KNEE_TOL, rule=KNEE_RULE)
    chosen = []
    for task, group in capacity.groupby("task", sort=False):
        knee = int(group.loc[group["knee"], "units"].iloc[0]) if group["knee"].any() else 2
        options = sorted(set(table.loc[table["task"] == task, "units"]))  # units with roles
        if not options:
            continue
        units = min((u for u in options if u >= max(2, knee)), default=max(options))
        chosen.append(table[(table["task"] == task) & (table["units"] == units)])
    if not chosen:
        raise SystemExit("no unit of any run has a role; nothing to compare across seeds")
    plotted = pd.concat(chosen, ignore_index=True)
    plotted = plotted.assign(task=plotted["task"] + " (" + plotted["units"].astype(str) + " u)")
    fig = plot_role_stability(plotted.drop(columns="units"))
    return save(fig, out, "role_stability") + [write_table(table, out, "role_stability")]


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
