"""Roles in one network trained on the ``seed`` task: probe R² heatmap and role summary.

The network is the sweep's ``seed``-task run with 4 units (else the largest swept) and the
smallest seed. ``seed_probe_r2`` shows each unit's held-out probe R² for every target (the
targets of this task are collinear, so rows are nearly flat: see identifiability);
``seed_roles`` shows the role each unit was given and the evidence that decided it.

Writes ``seed_probe_r2.{png,pdf}`` and ``seed_roles.{png,pdf}``.
"""

from __future__ import annotations

from pathlib import Path

from _common import cli, load_sweep, pick_run, run_dir, run_label, save

from unitprobe.tables import Tables
from unitprobe.views.figures import plot_probe_heatmap, plot_roles


def make(sweep_dir: Path, out: Path, units: int | None = None) -> list[Path]:
    row = pick_run(load_sweep(sweep_dir), "seed", units)
    tables = Tables.read(run_dir(sweep_dir, row), ("probes", "roles"))
    label = f"'seed' task, {run_label(row)}"
    fig = plot_probe_heatmap(
        tables["probes"], tables.get("population_probes"), state="h", layer=None
    )
    fig.suptitle(f"Probe R² per unit and target ({label})")
    written = save(fig, out, "seed_probe_r2")
    fig = plot_roles(tables["roles"])
    fig.suptitle(f"Unit roles ({label})")
    return written + save(fig, out, "seed_roles")


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
