"""``unitprobe analyze``, ``figures`` and ``demo``: the whole analysis of a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from unitprobe.cli._model import model_options
from unitprobe.cli._options import (
    choice_list_option,
    formats_option,
    probe_options,
    progress,
    quiet_option,
    say,
)
from unitprobe.config import AblationConfig, AnalyzeConfig, AttributionConfig
from unitprobe.methods.roles import summarize_roles
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.pipeline.analyze import analyze as run_analysis
from unitprobe.pipeline.analyze import rerender
from unitprobe.pipeline.demo import run_demo
from unitprobe.schemas import ABLATION_MODES, ATTRIBUTION_METHODS
from unitprobe.tasks import Dataset, require_sequences

__all__ = ["analyze", "demo", "figures"]


@click.command()
@model_options(out="dir")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Results directory to create."
)
@probe_options
@choice_list_option(
    "--ablation",
    "ablation_modes",
    allowed=ABLATION_MODES,
    default=AblationConfig.modes,
    what="ablation modes",
)
@choice_list_option(
    "--attribution",
    "attribution_methods",
    allowed=ATTRIBUTION_METHODS,
    default=AttributionConfig.methods,
    what="input × lag attribution methods",
)
@formats_option(AnalyzeConfig.formats)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=AnalyzeConfig.jobs, help="CPU threads.")
@quiet_option
def analyze(
    ckpt: Checkpoint,
    dataset: Dataset,
    seed: int,
    from_csv: bool,
    out: Path,
    target_exprs: tuple[str, ...],
    state: str,
    n_splits: int,
    alpha: float,
    n_permutations: int,
    n_controls: int,
    ablation_modes: tuple[str, ...],
    attribution_methods: tuple[str, ...],
    formats: tuple[str, ...],
    overwrite: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Which unit holds which term? Probes, ablations, attributions, roles, figures, report."""
    require_sequences(dataset, n_splits, "probes (cross-validated over sequences)", from_csv)
    config = AnalyzeConfig.from_options(
        n_sequences=dataset.n_sequences,
        seed=seed,
        targets=tuple(target_exprs) or None,
        state=state,
        n_splits=n_splits,
        alpha=alpha,
        n_controls=n_controls,
        n_permutations=n_permutations,
        ablation_modes=ablation_modes,
        attribution_methods=attribution_methods,
        formats=formats,
        jobs=jobs,
    )
    result = run_analysis(
        ckpt,
        out,
        config,
        dataset=dataset,
        overwrite=overwrite,
        progress=progress(quiet),
        echo=None if quiet else click.echo,
    )
    click.echo(summarize_roles(result.tables["roles"]))
    click.echo(f"report: {out / 'report.html'}")


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@formats_option(AnalyzeConfig.formats)
@quiet_option
def figures(results: Path, formats: tuple[str, ...], quiet: bool) -> None:
    """Re-render every figure (and the report) of a results directory from its tables."""
    paths = rerender(results, formats=formats)
    say(quiet, f"wrote {len(paths)} files to {results / 'figures'}")


@click.command()
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
    report = run_demo(
        out, overwrite=overwrite, progress=progress(quiet), echo=lambda s: say(quiet, s)
    )
    say(quiet, report)
