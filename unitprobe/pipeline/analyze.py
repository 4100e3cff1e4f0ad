"""The pipeline behind ``unitprobe analyze``: probes, ablations, attributions and roles.

:func:`compute_analysis` runs every stage on a loaded checkpoint and returns an
:class:`Analysis`: the result tables as one in-memory :class:`~unitprobe.tables.Tables`
(schemas in :mod:`unitprobe.schemas`) and a summary. :func:`write_results` writes the tables,
the figures (drawn from the in-memory tables) and the report into a directory;
:func:`analyze` does both, staging the output in a temporary directory that replaces ``out``
only when everything succeeded, so an interrupted run leaves no half-written results.
``docs/architecture.md`` draws the data flow.

Stages (timed in ``summary.json``): ``data`` (generate or load sequences, run the model),
``probes`` (per-unit and population probes, partial R², permutation p-values, untrained
controls, target identifiability), ``ablation``, ``attribution`` (input x lag, unit, and unit
receptive fields), ``roles``, ``figures`` and ``report``. Every random stream is derived from
the one ``config.seed`` (:mod:`unitprobe.seeds`).

Example
-------
>>> from unitprobe.model.checkpoint import load
>>> result = analyze(load("model.pt"), "results", AnalyzeConfig(n_sequences=256))
>>> result.tables["roles"][["unit", "role", "decided_by"]]
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import captum
import numpy as np
import pandas as pd
import sklearn
import torch

from unitprobe import __version__
from unitprobe._utils import staged_output_dir, torch_threads, write_json
from unitprobe.config import AnalyzeConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation import ablation_table
from unitprobe.methods.attribution import attribution_tables
from unitprobe.methods.probes import identifiability, vif_table
from unitprobe.methods.roles import assign_roles
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.model.lstm import run
from unitprobe.pipeline.fields import target_field_table, trace_table
from unitprobe.pipeline.probing import probe_model
from unitprobe.seeds import stream_seeds
from unitprobe.tables import Tables
from unitprobe.tasks import baseline_mse, generate, is_data_task
from unitprobe.views.render import render_all
from unitprobe.views.report import write_report

__all__ = [
    "AnalyzeConfig",
    "Analysis",
    "analyze",
    "compute_analysis",
    "write_results",
    "rerender",
]

#: Tables every results directory must hold for figures and the report to be re-rendered.
REQUIRED_TABLES = ("probes", "roles")


@dataclass(frozen=True)
class Analysis:
    """What one analysis computed.

    Attributes
    ----------
    tables : Tables
        Every result table, by name (:data:`unitprobe.schemas.SCHEMAS`).
    summary : dict
        Versions, task, model, config, metrics and the per-stage wall times of the
        computation, as written to ``summary.json``.
    out_dir : Path, optional
        Where :func:`analyze` wrote it.
    """

    tables: Tables
    summary: dict[str, Any]
    out_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def analyze(
    checkpoint: Any,
    out: str | Path,
    config: AnalyzeConfig | None = None,
    *,
    dataset: Any = None,
    overwrite: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> Analysis:
    """Analyze a loaded checkpoint and write every result into ``out``.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`unitprobe.model.checkpoint.load`.
    out : path
        Output directory; an existing non-empty one is replaced only with ``overwrite``.
    config : AnalyzeConfig, optional
    dataset : Dataset, optional
        Analyze these sequences (e.g. from :func:`unitprobe.tasks.load_csv`) instead of
        generating ``config.n_sequences`` from the checkpoint's task.
    progress : bool, optional
        Progress bars; default only on a terminal.
    echo : callable, optional
        Receives one line per finished stage.

    Returns
    -------
    Analysis
        With ``out_dir`` set to ``out``.
    """
    config = config or AnalyzeConfig()
    out = Path(out)
    with staged_output_dir(out, overwrite=overwrite) as stage:
        result = compute_analysis(checkpoint, config, dataset=dataset, progress=progress, echo=echo)
        write_results(result, stage, config, progress=progress, echo=echo)
    return Analysis(result.tables, result.summary, out, result.timings)


def compute_analysis(
    checkpoint: Any,
    config: AnalyzeConfig | None = None,
    *,
    dataset: Any = None,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> Analysis:
    """Run every analysis stage and return the tables; writes nothing.

    See :func:`analyze` for the parameters.
    """
    config = config or AnalyzeConfig()
    model, spec = checkpoint.model.eval(), checkpoint.task
    if dataset is None and is_data_task(spec):
        raise UnitprobeError(
            f"task '{spec.name}' is a data task (its series are observed): pass its sequences "
            "as dataset=load_csv(...); generated ones would be white-noise placeholders"
        )
    seeds = stream_seeds(config.seed)
    timer = _Timer(echo)
    with torch_threads(config.jobs), torch.no_grad():
        with timer("data"):
            data = dataset
            if data is None:
                data = generate(spec, config.n_sequences, seeds["data"])
            _check_dataset(data, model)
            exprs = list(config.probes.targets or default_targets(spec))
            targets = make_targets(data, exprs)
            trace = run(model, data.inputs, record=("h", "c"))
            base = _base_metrics(trace.outputs.numpy(), data)
        with timer("probes"):
            probes, population = probe_model(
                model,
                data,
                targets=targets,
                config=config.probes,
                control_seed=seeds["controls"],
                permutation_seed=seeds["permutations"],
                trace=trace,
                progress=progress,
            )
            pairs, vif = identifiability(targets.values), vif_table(targets.values)
    with torch_threads(config.jobs):
        with timer("ablation"):
            n_ablated = min(config.ablation.max_sequences, data.n_sequences)
            ablation = ablation_table(
                model,
                data.subset(np.arange(n_ablated)),
                modes=config.ablation.modes,
                seed=seeds["ablation"],
                memory_budget_mb=config.ablation.memory_budget_mb,
                progress=bool(progress),
            )
        with timer("attribution"):
            attribution = attribution_tables(
                model,
                np.asarray(data.inputs)[: config.attribution.max_sequences],
                data.input_names,
                data.output_names,
                config=config.attribution,
                seed=seeds["attribution"],
                progress=bool(progress),
            )
    with timer("roles"):
        target_fields = target_field_table(data, list(targets.values.columns))
        roles = assign_roles(
            probes,
            ablation=ablation,
            receptive_fields=attribution["receptive_fields"],
            unit_attribution=attribution["unit_attribution"],
            identifiability=pairs,
            target_fields=target_fields,
            state=config.states[0],
            config=config.roles,
        )
        traces = trace_table(roles, trace, targets)
    tables = Tables(
        {
            "probes": probes,
            "population_probes": population,
            "identifiability": pairs,
            "vif": vif,
            "ablation": ablation,
            **attribution,
            "roles": roles,
            "traces": traces,
            "target_fields": target_fields,
        }
    )
    summary = _summary(checkpoint, config, data, base, tables["roles"], timer.seconds, seeds)
    return Analysis(tables=tables, summary=summary, timings=dict(timer.seconds))


def write_results(
    analysis: Analysis,
    directory: str | Path,
    config: AnalyzeConfig | None = None,
    *,
    figures: bool = True,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the tables (CSV), figures, ``summary.json`` and ``report.html`` into ``directory``.

    Figures and the report are drawn from the in-memory tables. With ``figures=False`` only the
    tables and ``summary.json`` are written. ``analysis`` is not modified: the written summary
    adds the figure and report times to its ``wall_seconds``. Returns the written paths. CSVs
    are byte-identical for identical tables.
    """
    config = config or AnalyzeConfig()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = analysis.tables.write(directory)
    timer = _Timer(echo)
    summary = dict(analysis.summary)
    if figures:
        with timer("figures"):
            rendered = render_all(analysis.tables, directory / "figures", formats=config.formats)
        with timer("report"):
            report = write_report(directory, analysis.tables, summary, rendered)
        written += [*rendered, report]
    summary["wall_seconds"] = {**analysis.timings, **timer.seconds}
    written.append(write_json(summary, directory / "summary.json"))
    return written


def rerender(results: str | Path, *, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Re-render the figures and the report of a results directory from its tables alone.

    The tables are read once (:meth:`Tables.read`); the new ``figures/`` is built beside the
    old one and swapped in only when complete.
    """
    results = Path(results)
    tables = Tables.read(results, REQUIRED_TABLES)
    summary = _read_summary(results / "summary.json")
    with staged_output_dir(results / "figures", overwrite=True) as stage:
        rendered = render_all(tables, stage, formats=formats)
    final = [results / "figures" / p.name for p in rendered]
    report = write_report(results, tables, summary, final)
    return sorted(final) + [report]


# ----------------------------------------------------------------------------- internals


class _Timer:
    """Times named stages; reports each to ``echo``."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        if self.echo is not None:
            self.echo(f"  {stage:<12} {self.seconds[stage]:6.1f} s")


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    if not isinstance(summary, dict):
        raise DataError(f"cannot read {path}: expected a JSON object")
    return summary


def _check_dataset(data: Any, model: Any) -> None:
    n_in, n_out = len(data.input_names), len(data.output_names)
    if n_in != model.config.n_inputs:
        raise UnitprobeError(
            f"data has {n_in} input series ({', '.join(data.input_names)}), "
            f"model expects {model.config.n_inputs}"
        )
    if n_out != model.config.n_outputs:
        raise UnitprobeError(
            f"data predicts {n_out} series ({', '.join(data.output_names)}), "
            f"model has {model.config.n_outputs} outputs"
        )


def _base_metrics(outputs: np.ndarray, data: Any) -> dict[str, Any]:
    err = (outputs - np.asarray(data.targets, dtype=np.float64)) ** 2  # (N, T, O)
    mse = float(err.mean())
    baseline = float(baseline_mse(data))
    return {
        "mse": mse,
        "mse_per_output": dict(zip(data.output_names, err.mean(axis=(0, 1)).tolist(), strict=True)),
        "baseline": "repeat the last value",
        "baseline_mse": baseline,
        "mse_ratio": mse / baseline if baseline > 0 else None,
        "n_sequences": int(np.asarray(data.inputs).shape[0]),
        "n_steps": int(np.asarray(data.inputs).shape[1]),
    }


def _summary(
    checkpoint: Any,
    config: AnalyzeConfig,
    data: Any,
    base: dict[str, Any],
    roles: pd.DataFrame,
    seconds: dict[str, float],
    seeds: dict[str, int],
) -> dict[str, Any]:
    return {
        "versions": {
            "unitprobe": __version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__,
            "captum": captum.__version__,
        },
        "checkpoint": str(checkpoint.path),
        "seed": config.seed,
        "seed_streams": seeds,
        "task": checkpoint.task.to_dict(),
        "model": checkpoint.model.config.to_dict(),
        "analysis": config.to_dict(),
        "training_metrics": checkpoint.metrics,
        "metrics": base,
        "wall_seconds": dict(seconds),
        "roles": roles.astype(object).where(roles.notna(), None).to_dict(orient="records"),
    }
