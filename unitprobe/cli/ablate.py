"""``unitprobe ablate``: ablate units through the recurrence."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from unitprobe.cli._model import model_options
from unitprobe.cli._options import (
    choice_list_option,
    out_file_options,
    progress,
    quiet_option,
    state_option,
    write_table,
)
from unitprobe.config import AblationConfig
from unitprobe.devices import on_device
from unitprobe.methods.ablation import ablation_table
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.schemas import ABLATION_MODES
from unitprobe.seeds import stream_seed
from unitprobe.tasks import Dataset

__all__ = ["ablate"]


def _parse_groups(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[int, ...], ...]:
    """``--group 1+4`` -> ((1, 4),): non-negative unit numbers, each at most once per group."""
    groups = []
    for text in values:
        try:
            units = tuple(int(part) for part in text.split("+"))
        except ValueError:
            raise click.BadParameter(
                f"group {text!r} must be unit numbers joined by '+', e.g. 1+4"
            ) from None
        if any(u < 0 for u in units):
            raise click.BadParameter(f"group {text!r}: unit numbers start at 0")
        if len(set(units)) != len(units):
            raise click.BadParameter(f"group {text!r} names a unit more than once")
        groups.append(units)
    return tuple(groups)


@click.command()
@model_options(out="file")
@choice_list_option(
    "--modes", allowed=ABLATION_MODES, default=AblationConfig.modes, what="ablation modes"
)
@state_option
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="U+V",
    callback=_parse_groups,
    help="Also ablate this group of units together, e.g. 1+4.",
)
@out_file_options
@quiet_option
def ablate(
    ckpt: Checkpoint,
    dataset: Dataset,
    seed: int,
    from_csv: bool,
    jobs: int,
    device: torch.device,
    modes: tuple[str, ...],
    state: str,
    groups: tuple[tuple[int, ...], ...],
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Ablate every unit (and groups) through the recurrence; report the change of output MSE.

    Writes one row per layer x units x mode x output (column `output`; `all` pools every
    output) to --out.
    """
    table = ablation_table(
        on_device(ckpt.model, device),
        dataset,
        groups=[list(g) for g in groups] or None,
        modes=list(modes),
        site=state,
        seed=stream_seed(seed, "ablation"),
        progress=progress(quiet),
    )
    write_table(table, out, overwrite, quiet)
