"""``unitprobe tasks list|show|check|info``: task specifications."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from unitprobe.cli._options import data_options, resolve_task, task_options
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.pipeline.taskinfo import format_report, task_report
from unitprobe.tasks import (
    PRESETS,
    DataSource,
    TaskSpec,
    check_summary,
    parse_series_arg,
    relation_residuals,
)
from unitprobe.tasks.check import renamed_fits
from unitprobe.validation import check_float

__all__ = ["tasks"]


@click.group()
def tasks() -> None:
    """List, show and check task specifications."""


@tasks.command("list")
def tasks_list() -> None:
    """List the preset tasks."""
    width = max(map(len, PRESETS))
    for name, spec in PRESETS.items():
        click.echo(
            f"{name:<{width}}  {spec.description.splitlines()[0] if spec.description else ''}"
        )
    click.echo(f"{'delay-K':<{width}}  (any K >= 1) remember the input from K steps back")


@tasks.command("show")
@click.argument("name", required=False)
@click.option("--task-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--toml", "as_toml", is_flag=True, help="Print the spec as a TOML task file.")
def tasks_show(name: str | None, task_file: Path | None, as_toml: bool) -> None:
    """Show a preset (NAME) or a task file: relations, inputs, outputs, initial values."""
    spec = _named_or_file(name, task_file)
    click.echo(spec.to_toml() if as_toml else spec.describe())


def _named_or_file(name: str | None, task_file: Path | None) -> TaskSpec:
    """The preset NAME or the spec in ``task_file``; a file given as NAME points to --task-file."""
    if (name is None) == (task_file is None):
        raise click.UsageError("give a preset NAME or --task-file, not both or neither")
    if name is not None and name not in PRESETS and _looks_like_a_file(name):
        raise UnitprobeError(
            f"'{name}' looks like a file, not a preset task name; give a task file as "
            f"--task-file {name}"
        )
    return resolve_task(name, task_file)


def _looks_like_a_file(name: str) -> bool:
    """Whether a task NAME is a path: a .toml name, a path separator or an existing file."""
    if name.lower().endswith(".toml") or "/" in name or "\\" in name:
        return True
    try:
        return Path(name).is_file()
    except (OSError, ValueError):
        return False


@tasks.command("check")
@task_options
@data_options
@click.option(
    "--series",
    "series_args",
    multiple=True,
    metavar="NAME=v0,v1,...",
    help="Values of one series, e.g. --series K=0,1,1,2,3,5 (repeatable).",
)
@click.option(
    "--tolerance",
    type=float,
    default=1e-9,
    show_default=True,
    help="Relative tolerance (a finite number >= 0).",
)
def tasks_check(
    task: TaskSpec | None,
    data_source: DataSource | None,
    series_args: tuple[str, ...],
    tolerance: float,
) -> None:
    """Evaluate a task's relations on data and report each relation's residuals.

    Example: unitprobe tasks check --task seed --series K=0,1,1,2,3,5 --series X=1,4,7,12,30
    """
    if task is None:
        raise click.UsageError("give --task or --task-file")
    if (data_source is None) == (not series_args):
        raise click.UsageError("give --data CSV or --series NAME=values, not both or neither")
    check_float(tolerance, "tolerance", minimum=0)
    if data_source is not None:
        data = data_source.load()
    else:
        data = dict(map(parse_series_arg, series_args))
        for series, values in data.items():
            _check_finite_series(series, values)
    residuals = relation_residuals(task, data)
    summary = check_summary(residuals, rtol=tolerance)
    unchecked = [r.relation for r in summary.itertuples() if r.n_steps == 0] + [
        r for r in task.relations if r not in set(summary["relation"])
    ]
    if unchecked:
        raise DataError(
            f"could not be checked at any step: {'; '.join(unchecked)} (too few values for "
            "the lags the relation reads, or values missing)"
        )
    click.echo(summary.to_string(index=False))
    for row in summary[~summary["ok"]].itertuples():
        first = residuals[
            (residuals["relation"] == row.relation) & (residuals["step"] == row.first_failing_step)
        ].iloc[0]
        click.echo(
            f"FAIL {row.relation}: at step {int(first.step)} "
            f"the relation gives {first.expected:g}, "
            f"the data has {first.observed:g} (residual {first.residual:g})"
        )
    if not summary["ok"].all():
        _say_renamed(task, data, tolerance)
        sys.exit(1)


def _check_finite_series(name: str, values) -> None:
    """Refuse NaN or infinite values typed with --series (a check would skip those steps)."""
    for i, value in enumerate(values):
        if not math.isfinite(value):
            raise DataError(
                f"value {i + 1} of series '{name}' is {float(value)!r}; "
                "--series takes finite numbers"
            )


def _say_renamed(task: TaskSpec, data, tolerance: float) -> None:
    """Name the renamings of the series under which the data fit better than as stated."""
    fits = renamed_fits(task, data, rtol=tolerance)
    stated = int(fits.loc[fits["identity"], "n_failing"].iloc[0])
    better = fits[~fits["identity"] & (fits["n_failing"] < stated)]
    for row in better.head(3).itertuples():
        click.echo(
            f"RENAMED {row.renaming}: the data fit {row.relations} at "
            f"{row.n_steps - row.n_failing} of {row.n_steps} steps"
            + (f"; failing only {row.failures}" if row.n_failing else " (every step)")
        )


@tasks.command("info")
@click.argument("name", required=False)
@click.option("--task-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--n-sequences", type=click.IntRange(min=4), default=512, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
def tasks_info(name: str | None, task_file: Path | None, n_sequences: int, seed: int) -> None:
    """What a task demands: state size, baselines, separable terms (on generated data)."""
    spec = _named_or_file(name, task_file)
    click.echo(format_report(task_report(spec, n_sequences=n_sequences, seed=seed)))
