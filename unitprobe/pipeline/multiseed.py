"""Several networks in one call: which roles are stable across seeds?

A role table from one seed is an anecdote (``docs/architecture.md``). :func:`analyze_runs`
analyzes several checkpoints of the same task (typically the same configuration trained
with different seeds) with one config, writes each run's results into a subdirectory, and
compares the runs: units are matched one-to-one between runs by their receptive fields
(:func:`unitprobe.pipeline.stability.role_stability`, Hungarian algorithm), so unit indices
never have to agree.

Output directory::

    runs/<k>-<checkpoint name>/   every table, summary.json (and figures, report.html)
    role_stability.csv            role x (frequency over runs, stability of matched units, ...)
    term_verdicts.csv             run x layer x term: where each term lives in each run
    summary.json                  the runs, and each role's frequency and stability

Example
-------
>>> result = analyze_runs([load("s0.pt"), load("s1.pt"), load("s2.pt")], "seeds/")
>>> result.stability[["role", "frequency", "stability"]]
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from unitprobe._utils import staged_output_dir, write_csv, write_json
from unitprobe.config import AnalyzeConfig
from unitprobe.devices import resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.pipeline.analyze import Analysis, compute_analysis, write_results
from unitprobe.pipeline.stability import role_stability

__all__ = ["RunsAnalysis", "analyze_runs", "compare_runs", "summarize_stability"]


@dataclass(frozen=True)
class RunsAnalysis:
    """The analyses of several runs and how their roles compare.

    Attributes
    ----------
    runs : list of Analysis
        One per checkpoint, in order.
    stability : DataFrame
        ``role``, ``frequency`` (fraction of runs with >= 1 unit holding the role),
        ``stability`` (fraction of matched unit pairs that keep it), ``n_seeds``,
        ``n_pairs``, ``mean_units``.
    verdicts : DataFrame
        Every run's ``terms`` table with a ``run`` column.
    """

    runs: list[Analysis]
    stability: pd.DataFrame
    verdicts: pd.DataFrame
    summary: dict[str, Any]


def compare_runs(runs: Sequence[Analysis], names: Sequence[str]) -> RunsAnalysis:
    """Role frequencies and stability over runs, units matched by their receptive fields."""
    if len(runs) < 2:
        raise UnitprobeError(f"compare_runs needs >= 2 runs, got {len(runs)}")
    shapes = {tuple(sorted(r.summary["model"].items())) for r in runs}
    if len(shapes) > 1:
        raise UnitprobeError("the runs have different model shapes; compare runs of one shape")
    stacked = {
        name: pd.concat(
            [r.tables[name].assign(seed=k) for k, r in enumerate(runs)], ignore_index=True
        )
        for name in ("probes", "roles", "receptive_fields", "terms")
    }
    stability = role_stability(
        stacked["probes"],
        stacked["roles"],
        receptive_fields=stacked["receptive_fields"],
        profile="receptive_field",
        include_none=True,
    )
    verdicts = stacked["terms"].rename(columns={"seed": "run"})
    summary = {
        "runs": list(names),
        "roles": stability.astype(object).where(stability.notna(), None).to_dict("records"),
        "stable_roles": sorted(
            str(r.role)
            for r in stability.itertuples()
            if r.role != "none" and r.frequency == 1.0 and r.stability == 1.0
        ),
    }
    return RunsAnalysis(list(runs), stability, verdicts, summary)


def analyze_runs(
    checkpoints: Sequence[Any],
    out: str | Path,
    config: AnalyzeConfig | None = None,
    *,
    dataset: Any = None,
    device: Any = None,
    figures: bool = True,
    overwrite: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> RunsAnalysis:
    """Analyze several checkpoints with one config and compare their roles.

    Parameters
    ----------
    checkpoints : sequence of Checkpoint
        At least two, of one model shape (e.g. one configuration trained with several seeds).
    out : path
        Output directory (layout in the module docstring); staged, replaced only with
        ``overwrite``.
    config : AnalyzeConfig, optional
        The same for every run (so every run is analyzed on the same sequences).
    dataset, device, figures, progress, echo
        As in :func:`unitprobe.analyze`; ``figures`` draws each run's figures and report.

    Returns
    -------
    RunsAnalysis
    """
    config = config or AnalyzeConfig()
    if len(checkpoints) < 2:
        raise UnitprobeError(f"analyze several runs: got {len(checkpoints)} checkpoint(s)")
    names = [_run_name(k, c) for k, c in enumerate(checkpoints)]
    where = None if device is None else resolve_device(device)  # before anything is written
    protect = [Path(c.path) for c in checkpoints if getattr(c, "path", None)]
    with staged_output_dir(Path(out), overwrite=overwrite, protect=protect) as stage:
        runs = []
        for name, checkpoint in zip(names, checkpoints, strict=True):
            if echo is not None:
                echo(f"{name}:")
            run = compute_analysis(
                checkpoint, config, dataset=dataset, device=where, progress=progress, echo=echo
            )
            write_results(run, stage / "runs" / name, config, figures=figures)
            runs.append(run)
        result = compare_runs(runs, names)
        write_csv(result.stability, stage / "role_stability.csv")
        write_csv(result.verdicts, stage / "term_verdicts.csv")
        write_json(result.summary, stage / "summary.json")
    return result


def _run_name(k: int, checkpoint: Any) -> str:
    stem = Path(str(getattr(checkpoint, "path", f"run{k}"))).stem
    return f"{k}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stem)[:60]}"


def summarize_stability(stability: pd.DataFrame) -> str:
    """One line per role: how often it appears over the runs and how stably it is held."""
    lines = ["role  frequency over runs  stability of matched units  units per run"]
    for r in stability.itertuples():
        held = "" if pd.isna(r.stability) else f"{r.stability:.0%}"
        lines.append(f"{r.role}  {r.frequency:.0%}  {held}  {r.mean_units:.1f}")
    return "\n".join(lines)
