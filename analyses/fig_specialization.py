"""Specialization and redundancy of units against the number of units, per task.

Specialization: for each unit, its clipped probe R² profile over the task's targets,
``(K * max_k p_k / sum_k p_k - 1) / (K - 1)`` (0 = holds every target equally, 1 = holds one
target), averaged over units that hold anything. Redundancy: ``(n - d) / n`` with ``n`` units
that have a role and ``d`` distinct roles among them. Mean over seeds with 95 % bootstrap
intervals (:mod:`unitprobe.pipeline.sweepstats`). On tasks whose targets are collinear (``seed``,
``fibonacci``) every probe profile is flat, so specialization stays near 0 whatever the
units compute; redundancy, which uses the roles (decided by receptive fields there), is
the informative index on those tasks.

Writes ``specialization.{png,pdf}``.
"""

from __future__ import annotations

from pathlib import Path

from _common import KNEE_RULE, KNEE_TOL, METRIC, cli, load_sweep, save

from unitprobe.pipeline.sweepstats import sweep_summary
from unitprobe.views.figures import plot_specialization


def make(sweep_dir: Path, out: Path) -> list[Path]:
    summary = sweep_summary(load_sweep(sweep_dir), metric=METRIC, tol=KNEE_TOL, rule=KNEE_RULE)
    return save(plot_specialization(summary), out, "specialization")


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], make)
