"""``unitprobe attribute``: Captum attributions, written as three tables."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from unitprobe._utils import staged_output_dir
from unitprobe.cli._model import model_options
from unitprobe.cli._options import choice_list_option, progress, quiet_option, say
from unitprobe.config import AttributionConfig
from unitprobe.devices import on_device
from unitprobe.methods.attribution import attribution_tables
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.schemas import ATTRIBUTION_METHODS
from unitprobe.seeds import stream_seed
from unitprobe.tables import Tables
from unitprobe.tasks import Dataset

__all__ = ["attribute"]


@click.command()
@model_options(out="dir")
@choice_list_option(
    "--methods",
    allowed=ATTRIBUTION_METHODS,
    default=AttributionConfig.methods,
    what="input × lag methods",
)
@click.option(
    "--max-sequences",
    type=click.IntRange(min=2),
    default=AttributionConfig.max_sequences,
    help="Sequences to attribute.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@quiet_option
def attribute(
    ckpt: Checkpoint,
    dataset: Dataset,
    seed: int,
    from_csv: bool,
    jobs: int,
    device: torch.device,
    methods: tuple[str, ...],
    max_sequences: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Captum attributions: input × lag, unit → output, and each unit's receptive field.

    Writes three tables into the directory --out: input_lag.csv, unit_attribution.csv and
    receptive_fields.csv (a non-empty directory is replaced only with --overwrite).
    """
    tables = attribution_tables(
        on_device(ckpt.model, device),
        dataset.inputs[:max_sequences],
        dataset.input_names,
        dataset.output_names,
        config=AttributionConfig(methods=methods, max_sequences=max_sequences),
        seed=stream_seed(seed, "attribution"),
        progress=progress(quiet),
    )
    with staged_output_dir(out, overwrite=overwrite, protect=[ckpt.path]) as stage:
        paths = Tables(tables).write(stage)
    say(quiet, f"wrote {', '.join(p.name for p in paths)} to {out}")
