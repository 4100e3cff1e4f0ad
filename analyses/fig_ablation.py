"""Ablation effects in the same ``seed``-task network as ``fig_seed_roles.py``.

Increase of each output's MSE (normalized units²) when each unit (and each group the
analysis tested) is set to zero or to its mean, propagated through the recurrence.

Writes ``seed_ablation.{png,pdf}``.
"""

from __future__ import annotations

from pathlib import Path

from _common import cli, load_sweep, pick_run, run_dir, run_label, save

from unitprobe.tables import Tables
from unitprobe.views.figures import plot_ablation


def make(sweep_dir: Path, out: Path, units: int | None = None) -> list[Path]:
    row = pick_run(load_sweep(sweep_dir), "seed", units)
    fig = plot_ablation(Tables.read(run_dir(sweep_dir, row), ("ablation",))["ablation"])
    fig.suptitle(f"Ablation effects ('seed' task, {run_label(row)})")
    return save(fig, out, "seed_ablation")


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
