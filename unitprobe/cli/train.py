"""``unitprobe train``: train a multi-unit LSTM and save a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from unitprobe._utils import check_output_file
from unitprobe.cli._model import warn
from unitprobe.cli._options import (
    data_options,
    default_of,
    device_option,
    input_files,
    progress,
    quiet_option,
    say,
    seed_option,
    task_options,
)
from unitprobe.devices import resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.model.checkpoint import MAX_PARAMETERS, n_parameters, save_trained
from unitprobe.model.lstm import ModelConfig
from unitprobe.model.train import TrainConfig, TrainResult, held_out_metrics, train_task
from unitprobe.model.train import train as fit
from unitprobe.tasks import (
    DataSource,
    TaskSpec,
    require_sequences,
    split_in_time_validated,
    training_dataset,
)

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
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=TrainConfig.batch_size,
    help="Sequences per gradient step.",
)
@click.option(
    "--split-at",
    metavar="FRACTION|TIME",
    help="With --data: train on the steps before this point and report the error on the "
    "later steps (a fraction such as 0.8 of each sequence, or a --time-col value such as "
    "2015-01-01). The last 20% of the earlier steps validate (early stopping); validation "
    "and later windows never overlap training ones.",
)
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
@device_option
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
    split_at: str | None,
    out: Path,
    overwrite: bool,
    device: str,
    quiet: bool,
) -> None:
    """Train a multi-unit LSTM on a task and save a checkpoint.

    With --data CSV the network learns the file's series: those of --task/--task-file (a task
    file with `relations = []` names observed series), or, with neither, every series column,
    each predicted one step ahead. Validation holds out whole sequences (windows).
    With --device cuda the network trains on a GPU; the checkpoint is written as from the CPU.
    """
    if task is None and data_source is None:
        raise click.UsageError("give --task NAME, --task-file FILE or --data CSV")
    check_output_file(out, overwrite, protect=input_files())
    if split_at is not None and data_source is None:
        raise click.UsageError("--split-at splits a CSV in time; give --data CSV")
    _check_size(task, units, layers)
    where = resolve_device(device)  # before any data are read or generated
    config = TrainConfig(
        n_units=units,
        n_layers=layers,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
    )
    later = validation = None
    if split_at is not None:
        dataset, validation, later = split_in_time_validated(
            data_source, task, split_at, config.val_fraction
        )
    else:
        dataset = training_dataset(task, data_source, n_sequences, seed)
        require_sequences(dataset, 2, "training and validation", from_csv=data_source is not None)
    result = fit(dataset, config, progress=progress(quiet), validation=validation, device=where)
    if later is not None:
        result.metrics.update(held_out_metrics(result.model, later))
    save_trained(out, result, dataset.spec, config, norm=dataset.norm, overwrite=overwrite)
    say(quiet, _summary(dataset.spec, result, out, config.val_fraction, where))
    if dataset.overlapping and later is None:
        warn(
            "the windows overlap in time (--stride < --window) and validation windows are "
            "drawn among them, so the validation ratio is optimistic; pass --split-at to "
            "validate on later, separate steps"
        )
    ratio = result.metrics.get("holdout_ratio", result.metrics.get("mse_ratio"))
    if isinstance(ratio, float) and ratio >= 1:
        warn(
            f"the model does not beat repeating the last value (MSE ratio {ratio:.3g}); "
            "train longer, with more units, or check the data"
        )


def _check_size(task: TaskSpec | None, units: int, layers: int) -> None:
    """Refuse a model too large to build, before any data are read or generated."""
    n_in = len(task.inputs) if task is not None else 1
    n_out = len(task.predict) if task is not None else 1
    count = n_parameters(ModelConfig(n_in, units, n_out, layers))
    if count > MAX_PARAMETERS:
        raise UnitprobeError(
            f"--units {units} --layers {layers} give {count:.3g} parameters, more than "
            f"{MAX_PARAMETERS:.3g}; use fewer units"
        )


def _summary(
    task: TaskSpec, result: TrainResult, out: Path, val_fraction: float, device: torch.device
) -> str:
    m, units = result.metrics, result.model.config.n_units
    on = "" if device.type == "cpu" else f" on {device}"
    return (
        f"trained {units}-unit LSTM on '{task.name}' in {m['train_seconds']:.1f} s{on} "
        f"({m['epochs_run']} epochs, best {m['best_epoch']})\n"
        f"validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.3g}% of the repeat-last-value "
        f"baseline ({m['baseline_mse']:.3g}), normalized units"
        + (
            f"; validated on the last {100 * val_fraction:.3g}% of the steps before the split "
            f"({m['n_val_sequences']} window{'s' * (m['n_val_sequences'] != 1)})\n"
            if "holdout_mse" in m
            else "\n"
        )
        + (
            f"held-out later steps ({m['holdout_sequences']} windows): MSE "
            f"{m['holdout_mse']:.3g} = {100 * m['holdout_ratio']:.3g}% of the repeat-last-value "
            f"baseline ({m['holdout_baseline_mse']:.3g})\n"
            if "holdout_mse" in m
            else ""
        )
        + f"checkpoint: {out}"
    )
