"""``unitprobe sweep``: train and analyze every task x units x seed."""

from __future__ import annotations

from pathlib import Path

import click

from unitprobe._utils import check_parent_writable
from unitprobe.cli._options import (
    default_of,
    int_list,
    progress,
    quiet_option,
    resolve_task,
    split_list,
    sweep_device_option,
)
from unitprobe.errors import UnitprobeError
from unitprobe.model.train import TrainConfig
from unitprobe.pipeline.sweep import quick_options, run_sweep
from unitprobe.tasks import TaskSpec, is_data_task

__all__ = ["sweep"]

_SEQUENCES = default_of(run_sweep, "n_sequences")
_QUICK_SEQUENCES = quick_options()["n_sequences"]
_QUICK_TRAIN = {**TrainConfig().to_dict(), **quick_options()["train_overrides"]}


@click.command()
@click.option(
    "--task",
    "task_names",
    metavar="NAMES",
    help="Comma-separated preset tasks, e.g. seed,fibonacci,delay-3.",
)
@click.option(
    "--task-file",
    "task_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also sweep this task file (repeatable).",
)
@click.option(
    "--units",
    required=True,
    callback=int_list(1),
    metavar="LIST",
    help="Comma-separated layer sizes, e.g. 1,2,3,4,6,8,16.",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=3, help="Seeds per configuration (0..N-1)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Sweep directory (an earlier sweep there is resumed).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU cores to use (worker processes, one torch thread each).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="dask.distributed scheduler, e.g. tcp://host:8786 (pip install -e '.[dist]').",
)
@click.option(
    "--n-sequences",
    type=click.IntRange(min=2),
    help=f"Training sequences per run [default: {_SEQUENCES}; {_QUICK_SEQUENCES} with --quick].",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help=f"Maximum epochs [default: {TrainConfig.epochs}; {_QUICK_TRAIN['epochs']} with --quick].",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    help=f"Early-stopping patience in epochs [default: {TrainConfig.patience}; "
    f"{_QUICK_TRAIN['patience']} with --quick].",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Adam learning rate [default: {TrainConfig.lr}; {_QUICK_TRAIN['lr']} with --quick].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help=f"Sequences per minibatch [default: {TrainConfig.batch_size}; "
    f"{_QUICK_TRAIN['batch_size']} with --quick].",
)
@click.option(
    "--quick", is_flag=True, help="Few sequences and epochs, a light analysis (a smoke test)."
)
@click.option("--figures", "draw_figures", is_flag=True, help="Also draw each run's figures.")
@click.option("--retry-failed", is_flag=True, help="Run configurations that failed before again.")
@sweep_device_option
@quiet_option
def sweep(
    task_names: str | None,
    task_files: tuple[Path, ...],
    units: tuple[int, ...],
    seeds: int,
    out: Path,
    jobs: int,
    scheduler: str | None,
    n_sequences: int | None,
    epochs: int | None,
    patience: int | None,
    lr: float | None,
    batch_size: int | None,
    quick: bool,
    draw_figures: bool,
    retry_failed: bool,
    device: str,
    quiet: bool,
) -> None:
    """Train and analyze every task x units x seed; write OUT/sweep.csv (resumable).

    \b
    Example:
      unitprobe sweep --task seed,fibonacci,delay-3 --units 1,2,3,4,6,8,16 \\
          --seeds 5 --out SWEEP/ --jobs 2

    --device trains and analyzes every configuration there; it is not part of a
    configuration's key, so a sweep resumes on another device.
    """
    if task_names is None and not task_files:
        raise click.UsageError("give --task NAMES and/or --task-file FILE")
    specs: list[str | TaskSpec] = split_list(task_names) if task_names is not None else []
    for path in task_files:
        spec = resolve_task(None, path)
        if is_data_task(spec):
            raise UnitprobeError(
                f"task file '{path}' is a data task; a sweep generates its sequences"
            )
        specs.append(spec)
    if out.exists() and not out.is_dir():
        raise UnitprobeError(f"sweep output {out} exists and is not a directory")
    if not out.exists():
        check_parent_writable(out)
    options = quick_options() if quick else {}
    given = {"epochs": epochs, "patience": patience, "lr": lr, "batch_size": batch_size}
    options["train_overrides"] = {
        **options.get("train_overrides", {}),
        **{k: v for k, v in given.items() if v is not None},
    }
    if n_sequences is not None:
        options["n_sequences"] = n_sequences
    table = run_sweep(
        specs,
        list(units),
        seeds,
        out,
        jobs=jobs,
        scheduler=scheduler,
        figures=draw_figures,
        retry_failed=retry_failed,
        progress=progress(quiet),
        echo=None if quiet else click.echo,
        device=device,
        **options,
    )
    failed = table[table["status"] != "ok"]
    if len(failed):
        click.echo(f"{len(failed)} of {len(table)} configurations failed; see {out / 'sweep.csv'}")
