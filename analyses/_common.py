"""Shared pieces of the figure scripts: the sweep settings, loading runs, saving figures.

Each ``fig_*.py`` script makes one figure of the paper from a finished sweep directory (as
written by :func:`unitprobe.pipeline.sweep.run_sweep`); ``make_figures.py`` runs the sweep
and all of them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from unitprobe.pipeline.sweep import RUNS_DIR, SWEEP_FILE, quick_options, sweep_analysis_config
from unitprobe.pipeline.sweepstats import KNEE_TOL
from unitprobe.tables import Tables
from unitprobe.views.figures import save_figure

HERE = Path(__file__).resolve().parent
FORMATS = ("png", "pdf")
DEFAULT_SWEEP = {True: HERE / ".sweep-quick", False: HERE / ".sweep-full"}
#: Capacity metric (per-step normalized error) and knee tolerance (see
#: unitprobe.pipeline.sweepstats.find_knee; KNEE_TOL is the library default).
METRIC, KNEE_RULE = "step_nmse", "skill"
#: Tasks whose minimal state size the capacity sweep checks (memory necessary, separable).
MEMORY_TASKS = ["delay-2", "delay-3", "seed-integrate", "seed-restart"]
__all__ = ["KNEE_RULE", "KNEE_TOL", "MEMORY_TASKS", "METRIC"]


def run_label(row: Any) -> str:
    """``4 units, seed 0`` (``1 unit`` for one) for figure titles."""
    units = int(row.units)
    return f"{units} unit{'' if units == 1 else 's'}, seed {row.seed}"


def sweep_groups(quick: bool) -> list[dict[str, Any]]:
    """Arguments of :func:`unitprobe.pipeline.sweep.run_sweep`, one dict per call.

    Full: the memory tasks (:data:`MEMORY_TASKS`) with 1, 2, 3, 4 units and 5 seeds, and
    ``seed`` (the run behind the seed figures) with 4 units and 1 seed; 384 sequences,
    at most 1000 epochs (early stopping after 40 without improvement; slow sizes still
    improve at 200), the sweep analysis with 128 sequences and 199 permutations.
    """
    if quick:
        return [{"tasks": ["delay-2", "seed"], "units": [1, 2, 4], "seeds": 2, **quick_options()}]
    common = {
        "n_sequences": 384,
        "train_overrides": {"epochs": 1000},
        "analysis": sweep_analysis_config(
            n_sequences=128, n_permutations=199, max_attribution_sequences=16, n_splits=3
        ),
    }
    return [
        {"tasks": MEMORY_TASKS, "units": [1, 2, 3, 4], "seeds": 5, **common},
        {"tasks": ["seed"], "units": [4], "seeds": 1, **common},
    ]


def sweep_settings(quick: bool) -> dict[str, Any]:
    """The first :func:`sweep_groups` entry (kept for scripts that read one task list)."""
    groups = sweep_groups(quick)
    return {**groups[0], "tasks": [t for g in groups for t in g["tasks"]]}


def load_sweep(sweep_dir: Path) -> pd.DataFrame:
    """``sweep.csv`` of a sweep directory (only rows with status ok)."""
    path = Path(sweep_dir) / SWEEP_FILE
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; run analyses/make_figures.py first")
    table = pd.read_csv(path)
    return table[table["status"] == "ok"].reset_index(drop=True)


def run_dir(sweep_dir: Path, row: Any) -> Path:
    """Run directory of one ``sweep.csv`` row."""
    return Path(sweep_dir) / RUNS_DIR / f"{row.task}-u{row.units}-s{row.seed}-{row.key}"


def pick_run(sweep: pd.DataFrame, task: str, units: int | None = None, seed: int | None = None):
    """The row of ``task`` with ``units`` (default: 4 if swept, else the largest) and ``seed``
    (default: the smallest)."""
    rows = sweep[sweep["task"] == task]
    if rows.empty:
        raise SystemExit(f"the sweep has no finished run of task {task!r}")
    if units is None:
        units = 4 if (rows["units"] == 4).any() else int(rows["units"].max())
    rows = rows[rows["units"] == units]
    if seed is not None:
        rows = rows[rows["seed"] == seed]
    if rows.empty:
        raise SystemExit(f"the sweep has no finished run of {task!r} with {units} units")
    return rows.sort_values("seed").iloc[0]


def run_tables(sweep_dir: Path, rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """``<name>.csv`` of every run in ``rows``, with ``task``, ``units``, ``seed`` columns."""
    parts = []
    for row in rows.itertuples():
        table = Tables.read(run_dir(sweep_dir, row), (name,))[name]
        parts.append(table.assign(task=row.task, units=row.units, seed=row.seed))
    return pd.concat(parts, ignore_index=True)


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write ``out/<name>.png`` and ``.pdf``."""
    return save_figure(fig, Path(out) / name, FORMATS)


def write_table(table: pd.DataFrame, out: Path, name: str) -> Path:
    """Write a table behind a figure to ``out/tables/<name>.csv``."""
    path = Path(out) / "tables" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
    return path


def cli(description: str, make, argv: Iterable[str] | None = None) -> None:
    """Command line of a single figure script: ``--sweep-dir`` and ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sweep-dir", type=Path, default=DEFAULT_SWEEP[False])
    parser.add_argument("--out", type=Path, default=HERE.parent / "figures")
    args = parser.parse_args(None if argv is None else list(argv))
    for path in make(args.sweep_dir, args.out):
        print(path)
