"""``model_options``: the checkpoint and the sequences a method command works on."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from unitprobe._utils import check_output_dir, check_output_file
from unitprobe.cli._options import data_options, seed_option, task_options
from unitprobe.config import AnalyzeConfig
from unitprobe.model.checkpoint import load
from unitprobe.seeds import stream_seed
from unitprobe.tasks import DataSource, TaskSpec, dataset_for

__all__ = ["model_options"]


def model_options(
    out: str, also: Callable[[Path], list[Path]] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """MODEL argument, task override, --unsafe-load, --data ..., --n-sequences, --seed.

    The command gets ``ckpt`` (the loaded checkpoint), ``dataset`` (the task's sequences,
    from ``--data`` or generated), ``seed`` and ``from_csv``. ``out`` is ``"file"`` or
    ``"dir"``: what the command's ``--out`` names; ``also(out)`` lists further files the
    command writes. They are checked before the checkpoint is loaded, so a bad output path
    costs nothing.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.argument("model_path", metavar="MODEL.pt", type=click.Path(path_type=Path))
        @task_options
        @click.option(
            "--unsafe-load",
            is_flag=True,
            help="Allow a pickled nn.Module checkpoint (unpickling runs code: trusted files only).",
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
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            model_path: Path,
            task: TaskSpec | None,
            unsafe_load: bool,
            data_source: DataSource | None,
            n_sequences: int,
            seed: int,
            **kwargs: Any,
        ) -> Any:
            if out == "dir":
                check_output_dir(kwargs["out"], kwargs["overwrite"])
            else:
                for path in [kwargs["out"], *(also(kwargs["out"]) if also else [])]:
                    check_output_file(path, kwargs["overwrite"])
            ckpt = load(model_path, task=task, unsafe=unsafe_load)
            data_seed = stream_seed(seed, "data")  # as unitprobe.analyze generates its data
            dataset = dataset_for(ckpt.task, data_source, n_sequences, data_seed)
            return func(
                *args,
                ckpt=ckpt,
                dataset=dataset,
                seed=seed,
                from_csv=data_source is not None,
                **kwargs,
            )

        return wrapper

    return decorate
