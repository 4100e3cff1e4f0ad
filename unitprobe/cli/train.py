"""``unitprobe train``: train a multi-unit LSTM and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from unitprobe._utils import check_output_file
from unitprobe.cli._options import (
    data_options,
    default_of,
    progress,
    quiet_option,
    say,
    seed_option,
    task_options,
)
from unitprobe.model.checkpoint import save_trained
from unitprobe.model.train import TrainConfig, TrainResult, train_task
from unitprobe.model.train import train as fit
from unitprobe.tasks import DataSource, TaskSpec, require_sequences, training_dataset

__all__ = ["train"]


@click.command()
@task_options
@data_options
@click.option(
    "--units",
    type=click.IntRange(min=1),
    default=TrainConfig.n_units,
    help="Hidden units per layer.",
)
@click.option(
    "--layers", type=click.IntRange(min=1), default=TrainConfig.n_layers, help="LSTM layers."
)
@seed_option(TrainConfig.seed)
@click.option(
    "--n-sequences",
    type=click.IntRange(min=2),
    default=default_of(train_task, "n_sequences"),
    help="Generated sequences (ignored with --data).",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=TrainConfig.epochs, help="Maximum epochs."
)
@click.option("--batch-size", type=click.IntRange(min=1), default=TrainConfig.batch_size)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=TrainConfig.lr,
    help="Adam learning rate.",
)
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=TrainConfig.patience,
    help="Early-stopping patience (epochs).",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Checkpoint to write (.pt)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@quiet_option
def train(
    task: TaskSpec | None,
    data_source: DataSource | None,
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
    """Train a multi-unit LSTM on a task and save a checkpoint.

    With --data CSV the network learns the file's series: those of --task/--task-file (a task
    file with `relations = []` names observed series), or, with neither, every series column,
    each predicted one step ahead. Validation holds out whole sequences (windows).
    """
    if task is None and data_source is None:
        raise click.UsageError("give --task NAME, --task-file FILE or --data CSV")
    check_output_file(out, overwrite)
    config = TrainConfig(
        n_units=units,
        n_layers=layers,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
    )
    dataset = training_dataset(task, data_source, n_sequences, seed)
    require_sequences(dataset, 2, "training and validation", from_csv=data_source is not None)
    result = fit(dataset, config, progress=progress(quiet))
    save_trained(out, result, dataset.spec, config)
    say(quiet, _summary(dataset.spec, result, out))


def _summary(task: TaskSpec, result: TrainResult, out: Path) -> str:
    m, units = result.metrics, result.model.config.n_units
    return (
        f"trained {units}-unit LSTM on '{task.name}' in {m['train_seconds']:.1f} s "
        f"({m['epochs_run']} epochs, best {m['best_epoch']})\n"
        f"validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.3g}% of the repeat-last-value "
        f"baseline ({m['baseline_mse']:.3g}), normalized units\n"
        f"checkpoint: {out}"
    )
