"""``model_options``: the checkpoint and the sequences a method command works on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from unitprobe._utils import check_output_dir, check_output_file
from unitprobe.cli._options import (
    data_options,
    input_files,
    jobs_option,
    run_device_option,
    seed_option,
    task_options,
)
from unitprobe.config import AnalyzeConfig
from unitprobe.devices import full_float32, resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.model.checkpoint import Checkpoint, load
from unitprobe.model.threads import torch_threads
from unitprobe.seeds import stream_seed
from unitprobe.tasks import Dataset, DataSource, TaskSpec, dataset_for, scaling_norm

__all__ = ["model_options", "scale_warnings", "warn"]


def warn(message: str) -> None:
    """Print ``Warning: message`` on standard error (also with --quiet: it is not chatter)."""
    click.echo(f"Warning: {message}", err=True)


def scale_warnings(ckpt: Checkpoint, scaling: str | None, dataset: Dataset) -> list[str]:
    """What the user must know about the scale and the independence of the data."""
    notes = []
    if scaling is None and ckpt.norm is None:
        if ckpt.source == "unitprobe":
            notes.append(
                f"{ckpt.path} stores no normalization (an older checkpoint): the data are "
                "standardized with their own mean and standard deviation"
            )
        else:
            notes.append(
                f"{ckpt.path} does not say how its inputs were scaled: the data are "
                "standardized (mean 0, sd 1 per series); if the model was trained on raw "
                "values pass --scaling none, or --scaling FILE with its shifts and scales"
            )
    if getattr(dataset, "overlapping", False):
        notes.append(
            "the windows overlap in time (--stride < --window), so they are not independent: "
            "cross-validation folds and permutation p-values over windows are optimistic; "
            "use --stride equal to --window for honest numbers"
        )
    return notes


def _same_kind(other: Checkpoint, first: Checkpoint, norm: Any) -> Checkpoint:
    """``other`` on the data of ``first``: the same task and model shape, the same scale."""
    if other.model.config != first.model.config:
        raise UnitprobeError(
            f"{other.path} has {other.model.config}, {first.path} {first.model.config}: "
            "compare runs of one model shape"
        )
    if other.task is not None and first.task is not None and other.task.name != first.task.name:
        raise UnitprobeError(
            f"{other.path} was trained on task {other.task.name!r}, {first.path} on "
            f"{first.task.name!r}: compare runs of one task"
        )
    other.task = first.task
    other.norm = dict(first.norm) if first.norm is not None else norm
    return other


def model_options(
    out: str, also: Callable[[Path], list[Path]] | None = None, *, many: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """MODEL argument, task override, --unsafe-load, --lstm, --readout, --scaling, --data ...,
    --n-sequences, --seed, --jobs, --device.

    The command gets ``ckpt`` (the loaded checkpoint, its ``norm`` set to the scale the data
    were put on, its model on the CPU), ``dataset`` (the task's sequences, from ``--data`` or
    generated, on the model's scale), ``seed``, ``from_csv``, ``jobs`` and ``device`` (the
    resolved ``torch.device`` to run the model on: ``cuda`` without a GPU is an error before
    the checkpoint is read); it runs with ``jobs`` torch threads. ``out`` is ``"file"`` or
    ``"dir"``: what the command's ``--out`` names; ``also(out)`` lists further files the
    command writes. They are checked before the checkpoint is loaded, so a bad output path
    costs nothing; a directory holding the checkpoint is never replaced. With ``many``,
    ``MODEL.pt ...`` takes several checkpoints (each loaded like the first, on the same data)
    and the command also gets ``others``: the checkpoints after the first.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.argument(
            "model_path",
            metavar="MODEL.pt..." if many else "MODEL.pt",
            nargs=-1 if many else 1,
            required=True,
            type=click.Path(path_type=Path),
        )
        @task_options
        @click.option(
            "--unsafe-load",
            is_flag=True,
            help="Allow a pickled nn.Module checkpoint (unpickling runs code: trusted files only).",
        )
        @click.option(
            "--lstm",
            "lstm_prefix",
            metavar="KEY_PREFIX",
            help="A foreign checkpoint's LSTM, where several fit: the prefix of its keys "
            "(e.g. 'model.rnn.').",
        )
        @click.option(
            "--readout",
            "readout_prefix",
            metavar="KEY_PREFIX",
            help="A foreign checkpoint's linear readout, where several fit: the prefix of its "
            "keys (e.g. 'head.').",
        )
        @click.option(
            "--scaling",
            metavar="none|standardize|FILE",
            help="How the model's inputs were scaled in training. unitprobe checkpoints store "
            "it; for a foreign state_dict: none (raw values), standardize (mean 0, sd 1 on "
            "these data; the default) or a JSON file {series: {shift, scale}}.",
        )
        @data_options
        @click.option(
            "--n-sequences",
            type=click.IntRange(min=2),
            default=AnalyzeConfig.n_sequences,
            help="Generated sequences (ignored with --data).",
        )
        @seed_option(
            AnalyzeConfig.seed,
            help="Seed: the data, controls, permutations, ablation and attribution seeds "
            "derive from it (unitprobe.seeds).",
        )
        @jobs_option
        @run_device_option
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            model_path: Path | tuple[Path, ...],
            task: TaskSpec | None,
            unsafe_load: bool,
            lstm_prefix: str | None,
            readout_prefix: str | None,
            scaling: str | None,
            data_source: DataSource | None,
            n_sequences: int,
            seed: int,
            jobs: int,
            device: str,
            **kwargs: Any,
        ) -> Any:
            paths = list(model_path) if many else [model_path]
            model_path = paths[0]
            if out == "dir":
                check_output_dir(kwargs["out"], kwargs["overwrite"], protect=paths)
            else:
                inputs = [*paths, *input_files()]
                for path in [kwargs["out"], *(also(kwargs["out"]) if also else [])]:
                    check_output_file(path, kwargs["overwrite"], protect=inputs)
            where = resolve_device(device)
            parts = {"lstm": lstm_prefix, "readout": readout_prefix}
            with torch_threads(jobs), full_float32():
                ckpt = load(model_path, task=task, unsafe=unsafe_load, **parts)
                norm = scaling_norm(scaling, ckpt.task.series) if scaling else ckpt.norm
                data_seed = stream_seed(seed, "data")  # as unitprobe.analyze generates its data
                dataset = dataset_for(ckpt.task, data_source, n_sequences, data_seed, norm=norm)
                notes = scale_warnings(ckpt, scaling, dataset)
                ckpt.norm = dict(dataset.norm)
                if many:
                    kwargs["others"] = [_same_kind(load(p, task=task, unsafe=unsafe_load, **parts),
                                                   ckpt, norm) for p in paths[1:]]  # fmt: skip
                result = func(
                    *args,
                    ckpt=ckpt,
                    dataset=dataset,
                    seed=seed,
                    from_csv=data_source is not None,
                    jobs=jobs,
                    device=where,
                    **kwargs,
                )
            for note in notes:  # after the results, beside the numbers they qualify
                warn(note)
            return result

        return wrapper

    return decorate
