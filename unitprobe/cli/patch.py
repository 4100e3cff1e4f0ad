"""``unitprobe patch``: counterfactual interchange interventions (and learned directions)."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from unitprobe._utils import staged_output_dir
from unitprobe.cli._model import model_options
from unitprobe.cli._options import progress, quiet_option, say, split_list
from unitprobe.devices import on_device
from unitprobe.methods.interventions import REFERENCES, direction_table, interchange_table
from unitprobe.methods.interventions.interchange import N_PAIRS
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.seeds import stream_seed
from unitprobe.tables import Tables
from unitprobe.tasks import Dataset

__all__ = ["patch"]


def _terms(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    return None if value is None else split_list(value)


@click.command()
@model_options(out="dir")
@click.option(
    "--terms",
    callback=_terms,
    metavar="TERMS",
    help="Comma-separated terms NAME[t-k] over the input features, e.g. 'K[t-1],X[t]' "
    "(default: every input at lags 0 .. the largest lag of the task's relations).",
)
@click.option(
    "--reference",
    type=click.Choice(REFERENCES),
    default="auto",
    help="Compare the patched output change with the model's own change on the source, or "
    "with the change the task's relations predict (auto: relations where available).",
)
@click.option(
    "--n-pairs",
    type=click.IntRange(min=2),
    default=N_PAIRS,
    help="Counterfactual pairs per term.",
)
@click.option(
    "--horizon",
    type=click.IntRange(min=0),
    default=None,
    help="Count output steps s .. s + HORIZON (default: through the end of the sequence).",
)
@click.option(
    "--directions/--no-directions",
    default=True,
    help="Also learn a direction per term (distributed alignment search).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@quiet_option
def patch(
    ckpt: Checkpoint,
    dataset: Dataset,
    seed: int,
    from_csv: bool,
    jobs: int,
    device: torch.device,
    terms: list[str] | None,
    reference: str,
    n_pairs: int,
    horizon: int | None,
    directions: bool,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Patch units' states from counterfactual runs: which units carry which term.

    For each term, pairs of sequences differ only in that input at one step; each unit's h and
    c are copied from the changed run into the unchanged one, and the share of the output
    change that follows is the unit's transfer. Writes interchange.csv into the directory
    --out, and with --directions also directions.csv and direction_loadings.csv (a non-empty
    directory is replaced only with --overwrite). With --device cuda the patched runs and the
    direction search go on a GPU.
    """
    kw = {
        "reference": reference,
        "n_pairs": n_pairs,
        "horizon": horizon,
        "seed": stream_seed(seed, "interventions"),
        "progress": progress(quiet),
    }
    model = on_device(ckpt.model, device)
    tables = {"interchange": interchange_table(model, dataset, terms, **kw)}
    if directions:
        tables["directions"], tables["direction_loadings"] = direction_table(
            model, dataset, terms, **kw
        )
    with staged_output_dir(out, overwrite=overwrite, protect=[ckpt.path]) as stage:
        Tables(tables).write(stage)
    say(quiet, f"wrote {', '.join(f'{n}.csv' for n in tables)} to {out}")
