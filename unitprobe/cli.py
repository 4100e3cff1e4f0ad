"""The ``unitprobe`` command line: a thin layer of option parsing over the library.

Every command turns its options into library calls and prints the result. Errors the user can
act on (:class:`~unitprobe.errors.UnitprobeError`) become one line ``Error: ...`` with exit
status 1; usage errors exit with 2. No traceback is shown for either.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from unitprobe import __version__
from unitprobe.errors import UnitprobeError

__all__ = ["main"]

SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class _Group(click.Group):
    """A click group that turns the package's errors into ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnitprobeError as err:
            raise click.ClickException(_one_line(err)) from None
        except OSError as err:  # disk full, permission denied while writing results
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@click.group(cls=_Group, context_settings=SETTINGS)
@click.version_option(__version__, "--version", prog_name="unitprobe")
def main() -> None:
    """What does each unit of a recurrent network hold?

    Train multi-unit LSTMs on sequence tasks defined by recurrence relations, then find out
    which unit holds which term with probes, ablations and attributions.
    """


# ----------------------------------------------------------------------------- shared options


def task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--task NAME`` / ``--task-file FILE`` (mutually exclusive)."""

    @click.option(
        "--task", "task_name", metavar="NAME", help="Preset task (see `unitprobe tasks list`)."
    )
    @click.option(
        "--task-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Task spec in TOML (see `unitprobe tasks show seed --toml`).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, task_name: str | None, task_file: Path | None, **kwargs: Any) -> Any:
        if task_name and task_file:
            raise click.UsageError("give --task or --task-file, not both")
        return func(*args, task=resolve_task(task_name, task_file), **kwargs)

    return wrapper


def resolve_task(name: str | None, path: Path | None) -> Any:
    """The TaskSpec named by ``--task`` or read from ``--task-file`` (None if neither)."""
    from unitprobe.tasks import TaskSpec, get_preset

    if path is not None:
        return TaskSpec.from_toml(path)
    if name is not None:
        return get_preset(name)
    return None


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")(func)


def seed_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seed", type=click.IntRange(min=0), default=0, help="Random seed (data, init, order)."
    )(func)


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        click.echo(message)


def _refuse_existing(path: Path, overwrite: bool, what: str = "file") -> None:
    if path.is_dir():
        raise UnitprobeError(f"{path} is a directory, expected a {what} path")
    if path.exists() and not overwrite:
        raise UnitprobeError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise UnitprobeError(f"directory {path.parent} does not exist")


# ----------------------------------------------------------------------------- tasks


@main.group(cls=_Group)
def tasks() -> None:
    """List, show and check task specifications."""


@tasks.command("list")
def tasks_list() -> None:
    """List the preset tasks."""
    from unitprobe.tasks import PRESETS

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
    if (name is None) == (task_file is None):
        raise click.UsageError("give a preset NAME or --task-file, not both or neither")
    spec = resolve_task(name, task_file)
    click.echo(spec.to_toml() if as_toml else spec.describe())


@tasks.command("check")
@task_options
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with one column per series.",
)
@click.option(
    "--series",
    "series_args",
    multiple=True,
    metavar="NAME=v0,v1,...",
    help="Values of one series, e.g. --series K=0,1,1,2,3,5 (repeatable).",
)
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-9, help="Relative tolerance.")
def tasks_check(
    task: Any, data: Path | None, series_args: tuple[str, ...], tolerance: float
) -> None:
    """Evaluate a task's relations on data and report each relation's residuals.

    Example: unitprobe tasks check --task seed --series K=0,1,1,2,3,5 --series X=1,4,7,12,30
    """
    from unitprobe.tasks import check_summary, parse_series_arg, read_series_csv, relation_residuals

    if task is None:
        raise click.UsageError("give --task or --task-file")
    if (data is None) == (not series_args):
        raise click.UsageError("give --data CSV or --series NAME=values, not both or neither")
    values = read_series_csv(data) if data is not None else dict(map(parse_series_arg, series_args))
    residuals = relation_residuals(task, values)
    summary = check_summary(residuals, tolerance=tolerance)
    click.echo(summary.to_string(index=False))
    failed = summary[~summary["ok"]]
    for row in failed.itertuples():
        step = residuals[
            (residuals["relation"] == row.relation) & (residuals["step"] == row.first_failing_step)
        ].iloc[0]
        click.echo(
            f"FAIL {row.relation}: at step {int(step.step)} expected {step.expected:g}, "
            f"observed {step.observed:g} (residual {step.residual:g})"
        )
    if len(failed):
        sys.exit(1)


# ----------------------------------------------------------------------------- train


@main.command()
@task_options
@click.option("--units", type=click.IntRange(min=1), default=8, help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, help="LSTM layers.")
@seed_option
@click.option("--n-sequences", type=click.IntRange(min=2), default=512, help="Generated sequences.")
@click.option("--epochs", type=click.IntRange(min=1), default=300, help="Maximum epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, help="Adam learning rate."
)
@click.option(
    "--patience", type=click.IntRange(min=1), default=40, help="Early-stopping patience (epochs)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Checkpoint to write (.pt)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@quiet_option
def train(
    task: Any,
    units: int,
    layers: int,
    seed: int,
    n_sequences: int,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a multi-unit LSTM on a task and save a checkpoint."""
    from unitprobe.checkpoint import save
    from unitprobe.train import TrainConfig, train_task

    if task is None:
        raise click.UsageError("give --task NAME or --task-file FILE")
    _refuse_existing(out, overwrite)
    config = TrainConfig(
        n_units=units,
        n_layers=layers,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
    )
    _, result = train_task(task, config, n_sequences=n_sequences, progress=_progress(quiet))
    save(
        out,
        result.model,
        task,
        history=result.history,
        metrics=result.metrics,
        train_config=config.to_dict(),
    )
    _say(quiet, _train_summary(task, result, out))


def _train_summary(task: Any, result: Any, out: Path) -> str:
    m, units = result.metrics, result.model.config.n_units
    return (
        f"trained {units}-unit LSTM on '{task.name}' in {m['train_seconds']:.1f} s "
        f"({m['epochs_run']} epochs, best {m['best_epoch']})\n"
        f"validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.3g}% of the repeat-last-value "
        f"baseline ({m['baseline_mse']:.3g}), normalized units\n"
        f"checkpoint: {out}"
    )


# ----------------------------------------------------------------------------- demo


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("unitprobe-demo"),
    help="Output directory.",
)
@click.option("--overwrite/--no-overwrite", default=True, help="Replace a previous demo in --out.")
@quiet_option
def demo(out: Path, overwrite: bool, quiet: bool) -> None:
    """Train the `seed` task (the classic K/X answer) and analyze it, end to end."""
    from unitprobe.analyze import run_demo

    report = run_demo(
        out, overwrite=overwrite, progress=_progress(quiet), echo=lambda s: _say(quiet, s)
    )
    _say(quiet, json.dumps(report, indent=2) if isinstance(report, dict) else str(report))


if __name__ == "__main__":  # pragma: no cover
    main()
