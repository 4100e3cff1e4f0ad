"""``unitprobe probe``: linear probes from every unit to the task's terms."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from unitprobe.cli._model import model_options
from unitprobe.cli._options import (
    out_file_options,
    probe_options,
    progress,
    quiet_option,
    write_table,
)
from unitprobe.config import ProbeConfig
from unitprobe.devices import on_device
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.pipeline.probing import probe_model
from unitprobe.seeds import stream_seed
from unitprobe.tasks import Dataset, require_sequences

__all__ = ["population_path", "probe"]


def population_path(out: Path) -> Path:
    """Where the population table goes: ``probes.csv`` -> ``probes_population.csv``."""
    return out.with_name(f"{out.stem}_population{out.suffix or '.csv'}")


@click.command()
@model_options(out="file", also=lambda out: [population_path(out)])
@probe_options
@out_file_options
@quiet_option
def probe(
    ckpt: Checkpoint,
    dataset: Dataset,
    seed: int,
    from_csv: bool,
    jobs: int,
    device: torch.device,
    target_exprs: tuple[str, ...],
    state: str,
    n_splits: int,
    alpha: float,
    n_permutations: int,
    n_controls: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Linear probes from every unit (and each layer's population) to the task's terms.

    Writes the per-unit probes (one row per layer x unit x state x target) to --out, and the
    population probes (one row per layer x state x target, all units of a layer together)
    beside it, as OUT_population.csv (probes.csv -> probes_population.csv). With --device
    cuda the network and its controls run on a GPU; the probes fit on the CPU.
    """
    require_sequences(dataset, n_splits, "probes (cross-validated over sequences)", from_csv)
    config = ProbeConfig(
        targets=target_exprs or None,
        state=state,
        n_splits=n_splits,
        alpha=alpha,
        n_controls=n_controls,
        n_permutations=n_permutations,
    )
    probes, population = probe_model(
        on_device(ckpt.model, device),
        dataset,
        config=config,
        control_seed=stream_seed(seed, "controls"),
        permutation_seed=stream_seed(seed, "permutations"),
        progress=progress(quiet),
    )
    write_table(population, population_path(out), overwrite, quiet)
    write_table(probes, out, overwrite, quiet)
