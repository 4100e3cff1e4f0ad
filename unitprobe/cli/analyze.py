"""``unitprobe analyze``, ``figures`` and ``demo``: the whole analysis of a checkpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from unitprobe._utils import check_output_dir, claim_files, result_files
from unitprobe.cli._model import model_options, warn
from unitprobe.cli._options import (
    choice_list_option,
    formats_option,
    probe_options,
    progress,
    quiet_option,
    say,
)
from unitprobe.config import AblationConfig, AnalyzeConfig, AttributionConfig, RoleConfig
from unitprobe.errors import UnitprobeError
from unitprobe.methods.roles import summarize_roles, summarize_terms
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.pipeline.analyze import REQUIRED_TABLES, rerender
from unitprobe.pipeline.analyze import analyze as run_analysis
from unitprobe.pipeline.demo import run_demo
from unitprobe.pipeline.multiseed import analyze_runs, summarize_stability
from unitprobe.schemas import ABLATION_MODES, ATTRIBUTION_METHODS
from unitprobe.tables import Tables
from unitprobe.tasks import Dataset, require_sequences

__all__ = ["analyze", "demo", "figures", "score_lines"]


def score_lines(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The model-to-baseline line and the warnings of an analysis summary.

    Returns
    -------
    (lines, warnings) : two lists of str
        ``lines``: ``"model MSE 0.012 = 3.4% of the repeat-last-value baseline (0.35)"``;
        ``warnings``: the summary's ``warnings`` plus one when the model does not beat the
        repeat-last baseline (its roles then mean nothing), each one line.
    """
    metrics = summary.get("metrics") or {}
    ratio, mse, base = (metrics.get(k) for k in ("mse_ratio", "mse", "baseline_mse"))
    lines, notes = [], [str(w) for w in summary.get("warnings") or []]
    if isinstance(ratio, (int, float)) and math.isfinite(ratio):
        lines.append(
            f"model MSE {mse:.3g} = {100 * ratio:.3g}% of the repeat-last-value baseline "
            f"({base:.3g}), normalized units"
        )
        if ratio >= 1 and not any("baseline" in n for n in notes):
            notes.append(
                f"the model does not beat repeating the last value (MSE ratio {ratio:.3g}): "
                "its roles describe a network that has not learned the task; check --task, "
                "--scaling and the training"
            )
    return lines, notes


def _exactness(name: str, default: str, screened: str) -> Callable[[Callable], Callable]:
    """``--exact-X screen|all``: which units a screened stage runs exactly."""
    return click.option(
        name,
        type=click.Choice(("screen", "all")),
        default=default,
        show_default=True,
        help=f"screen: {screened}; all: every unit exactly.",
    )


@click.command()
@model_options(out="dir", many=True)
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
@click.option(
    "--no-figures",
    is_flag=True,
    help="Write the tables and summary.json only (`unitprobe figures OUT` draws them later).",
)
@_exactness(
    "--exact-ablation",
    AblationConfig.exact,
    "ablate exactly only the units a first-order screen cannot rule out",
)
@_exactness(
    "--exact-interchange",
    RoleConfig.exact_interchange,
    "patch exactly the units a role may read and the largest screened transfers",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
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
    no_figures: bool,
    exact_ablation: str,
    exact_interchange: str,
    overwrite: bool,
    jobs: int,
    device: torch.device,
    quiet: bool,
    others: list[Checkpoint],
) -> None:
    """Which unit holds which term? Probes, ablations, attributions, roles, figures, report.

    Several checkpoints (MODEL.pt ..., e.g. one configuration trained with several seeds) are
    each analyzed into OUT/runs/ and compared: units are matched across runs by their
    receptive fields, and OUT/role_stability.csv says how often each role appears and how
    stably matched units keep it.

    With --device cuda the model's runs, ablations, attributions, patches and direction
    searches run on a GPU; the probes fit on the CPU. The tables match the CPU's up to float
    rounding.
    """
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
        exact_ablation=exact_ablation,
        exact_interchange=exact_interchange,
        jobs=jobs,
    )
    kw = {
        "dataset": dataset,
        "figures": not no_figures,
        "overwrite": overwrite,
        "progress": progress(quiet),
        "echo": None if quiet else click.echo,
    }
    if others:
        runs = analyze_runs([ckpt, *others], out, config, device=device, **kw)
        click.echo(summarize_stability(runs.stability))
        for k, run in enumerate(runs.runs):
            for note in score_lines(run.summary)[1]:
                warn(f"run {runs.summary['runs'][k]}: {note}")
        click.echo(f"results: {out}")
        return
    result = run_analysis(ckpt, out, config, device=device, **kw)
    click.echo(summarize_roles(result.tables["roles"]))
    click.echo("\nwhere each term lives:\n" + summarize_terms(result.tables["terms"]))
    lines, notes = score_lines(result.summary)
    for line in lines:
        click.echo(line)
    for note in notes:
        warn(note)
    click.echo(f"report: {out / 'report.html'}" if not no_figures else f"results: {out}")


@click.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@formats_option(AnalyzeConfig.formats)
@click.option("--overwrite", is_flag=True, help="Replace the existing figures/ and report.html.")
@quiet_option
def figures(results: Path, formats: tuple[str, ...], overwrite: bool, quiet: bool) -> None:
    """Re-render every figure (and the report) of a results directory from its tables."""
    Tables.read(results, REQUIRED_TABLES)  # unreadable tables: an error before anything changes
    drawn = results / "figures"
    if drawn.exists() and not overwrite and (not drawn.is_dir() or any(drawn.iterdir())):
        raise UnitprobeError(f"{drawn} exists; pass --overwrite to re-render it")
    report = results / "report.html"
    own = result_files(results) or set()
    if (report.exists() or report.is_symlink()) and not overwrite and "report.html" not in own:
        raise UnitprobeError(
            f"{report} exists and no unitprobe result lists it; pass --overwrite to replace it"
        )
    check_output_dir(drawn, overwrite=True)
    paths = rerender(results, formats=formats)
    claim_files(results, [p for p in paths if p.parent == results])
    say(quiet, f"wrote {len(paths)} files to {results / 'figures'}")


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("unitprobe-demo"),
    help="Output directory.",
)
@click.option("--overwrite", is_flag=True, help="Replace a previous demo's results in --out.")
@quiet_option
def demo(out: Path, overwrite: bool, quiet: bool) -> None:
    """Train the `seed` task (the classic K/X answer) and analyze it, end to end.

    Takes about 15 s on two idle CPU cores. Like every command, it refuses a non-empty --out
    unless --overwrite is given, and then replaces only a previous unitprobe result.
    """
    check_output_dir(out, overwrite)  # before training: a bad --out costs nothing
    report = run_demo(
        out, overwrite=overwrite, progress=progress(quiet), echo=lambda s: say(quiet, s)
    )
    say(quiet, report)
