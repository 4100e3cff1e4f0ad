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
the one ``config.seed`` (:mod:`unitprobe.seeds`). The torch stages run on ``device`` (a
keyword, never part of the config or the summary); the probes fit on the CPU.

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
from unitprobe._utils import staged_output_dir, to_plain, write_json
from unitprobe.config import AnalyzeConfig
from unitprobe.devices import full_float32, on_device, resolve_device
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation import ablation_table
from unitprobe.methods.attribution import attribution_tables
from unitprobe.methods.baselines import baseline_table
from unitprobe.methods.interventions import default_terms
from unitprobe.methods.probes import identifiability, vif_table
from unitprobe.methods.roles import assign_causal_roles, field_candidates, term_table
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.model.lstm import run
from unitprobe.model.threads import torch_threads
from unitprobe.pipeline.fields import target_field_table, trace_table
from unitprobe.pipeline.probing import probe_model
from unitprobe.pipeline.verdicts import (
    analysis_nulls,
    null_summary,
    null_transfers,
    term_directions,
    unit_interchange,
)
from unitprobe.schemas import SCHEMAS
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
    device: str | torch.device | None = None,
    figures: bool = True,
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
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device, optional
        Where the torch stages run (:func:`unitprobe.devices.resolve_device`; resolved before
        anything is written); default: where the checkpoint's model is (the CPU for a loaded
        checkpoint). A copy of the model runs there; the checkpoint's never moves. The probes
        fit on the CPU. Like training's, the device is in neither the config nor the summary:
        the CPU gives the same tables bit for bit, a GPU the same up to float rounding.
    figures : bool, default True
        Draw the figures and ``report.html``; False writes only the tables and
        ``summary.json`` (``unitprobe figures`` draws them later).
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
    where = None if device is None else resolve_device(device)  # before anything is written
    protect = [checkpoint.path] if getattr(checkpoint, "path", None) else []
    with staged_output_dir(out, overwrite=overwrite, protect=protect) as stage:
        result = compute_analysis(
            checkpoint, config, dataset=dataset, device=where, progress=progress, echo=echo
        )
        write_results(result, stage, config, figures=figures, progress=progress, echo=echo)
    return Analysis(result.tables, result.summary, out, result.timings)


@full_float32()
def compute_analysis(
    checkpoint: Any,
    config: AnalyzeConfig | None = None,
    *,
    dataset: Any = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
) -> Analysis:
    """Run every analysis stage and return the tables; writes nothing.

    See :func:`analyze` for the parameters. On a GPU it computes in full float32 (no
    TensorFloat-32; :func:`unitprobe.devices.full_float32`).
    """
    config = config or AnalyzeConfig()
    model, spec = checkpoint.model.eval(), checkpoint.task
    if device is not None:
        model = on_device(model, device)  # the checkpoint's own model stays where it is
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
                norm = getattr(checkpoint, "norm", None)
                data = generate(spec, config.n_sequences, seeds["data"], norm=norm)
            _check_dataset(data, model)
            exprs = list(config.probes.targets or default_targets(spec))
            targets = make_targets(data, exprs)
            trace = run(model, data.inputs, record=("h", "c"))
            outputs = trace.outputs.cpu().numpy()
            base = _base_metrics(outputs, data)
            baselines = _baselines(outputs, data, seeds["data"])
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
                engine=config.ablation.engine,
                exact=config.ablation.exact,
                threshold=0.0,  # the causal roles report used = usage > 0
                screen_margin=config.ablation.screen_margin,
                screen_top_k=config.ablation.screen_top_k,
                memory_budget_mb=config.ablation.memory_budget_mb,
                progress=bool(progress),
            )
            screen = _screen_summary(ablation.attrs)
        with timer("attribution"):
            attribution = attribution_tables(
                model,
                np.asarray(data.inputs)[: config.attribution.max_sequences],
                data.input_names,
                data.output_names,
                config=config.attribution,
                batch_size=config.attribution.batch_size,
                memory_budget_mb=config.attribution.memory_budget_mb,
                seed=seeds["attribution"],
                progress=bool(progress),
            )
    terms = default_terms(spec, data.input_names)
    names = [str(t) for t in terms]
    with torch_threads(config.jobs):
        with timer("nulls"):
            nulls = analysis_nulls(model, data, terms, targets, attribution, config, seeds)
        with timer("interventions"):
            candidates = field_candidates(
                attribution["receptive_fields"], nulls, names, state=config.states[0],
                level=config.roles.unit_level,
            )  # fmt: skip
            interchange = unit_interchange(
                model, data, terms, config, seeds["interventions"], candidates
            )
        with timer("nulls"):
            nulls = null_transfers(model, data, terms, config, seeds, nulls)
    with timer("roles"):
        roles = assign_causal_roles(
            attribution["receptive_fields"],
            interchange,
            nulls=nulls,
            terms=names,
            probes=probes,
            ablation=ablation,
            identifiability=pairs,
            state=config.states[0],
            level=config.roles.unit_level,
            material=config.roles.material_effect,
            formula_share=config.roles.formula_share,
        )
    with torch_threads(config.jobs), timer("directions"):
        directions, loadings, tests, nulls = term_directions(
            model, data, terms, roles, interchange, config, seeds, nulls, progress
        )
    with timer("terms"):
        term_verdicts = term_table(
            roles, interchange, directions, tests=tests, level=config.roles.direction_level,
            material=config.roles.material_effect,
            specificity=config.roles.direction_specificity,
        )  # fmt: skip
        target_fields = target_field_table(data, list(targets.values.columns))
        traces = trace_table(roles, trace, targets)
    tables = Tables(
        {
            "probes": probes,
            "population_probes": population,
            "identifiability": pairs,
            "vif": vif,
            "baselines": baselines,
            "ablation": ablation,
            **attribution,
            "interchange": interchange,
            "directions": directions,
            "direction_loadings": loadings,
            "nulls": nulls,
            "roles": roles,
            "terms": term_verdicts,
            "traces": traces,
            "target_fields": target_fields,
        }
    )
    summary = _summary(checkpoint, config, data, base, tables, timer.seconds, seeds)
    summary["ablation"] = screen
    summary["interchange"] = interchange.attrs.get("screen", {"exact_interchange": "all"})
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
            rendered = render_all(
                analysis.tables, directory / "figures", formats=config.formats, jobs=config.jobs
            )
        with timer("report"):
            report = write_report(directory, analysis.tables, summary, rendered)
        written += [*rendered, report]
    summary["wall_seconds"] = {**analysis.timings, **timer.seconds}
    written.append(write_json(summary, directory / "summary.json"))
    return written


def rerender(results: str | Path, *, formats: tuple[str, ...] = ("png",)) -> list[Path]:
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


def _screen_summary(attrs: dict[str, Any]) -> dict[str, Any]:
    """The ablation engine, which units ran exactly, and the screen's agreement with them."""
    keys = (
        "ablation_engine", "exact_ablation", "n_exact", "screened_out", "screen_band",
        "screen_top_k", "screen_spearman", "screen_median_rel_error", "screen_topk_recall",
        "screen_n_compared",
    )  # fmt: skip
    return {k: attrs[k] for k in keys if k in attrs}


def _baselines(outputs: np.ndarray, data: Any, seed: int) -> pd.DataFrame:
    """The network beside the four baselines: fitted on the first half of the sequences,
    everything scored on the second half (:func:`unitprobe.methods.baselines.baseline_table`)."""
    n = data.n_sequences
    if n < 4:
        return SCHEMAS["baselines"].empty()
    half = n // 2
    fit, evaluate = data.subset(np.arange(half)), data.subset(np.arange(half, n))
    return baseline_table(fit, evaluate, outputs[half:], seed=seed)


class _Timer:
    """Times named stages (a stage entered twice adds up, and its second report says it is
    the total); reports each to ``echo``."""

    def __init__(self, echo: Callable[[str], None] | None) -> None:
        self.echo = echo
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        again = stage in self.seconds
        yield
        elapsed = time.perf_counter() - start + self.seconds.get(stage, 0.0)
        self.seconds[stage] = round(elapsed, 3)
        if self.echo is not None:
            total = " (in all)" if again else ""
            self.echo(f"  {stage:<13} {self.seconds[stage]:6.1f} s{total}")


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
    tables: Tables,
    seconds: dict[str, float],
    seeds: dict[str, int],
) -> dict[str, Any]:
    roles, nulls = tables["roles"], tables["nulls"]
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
        "nulls": null_summary(checkpoint.model, config, nulls),
        "warnings": _warnings(base, tables["baselines"])
        + (
            [
                "windows overlap in time (stride < window): cross-validation folds and "
                "permutations treat overlapping windows as independent, so probe p-values and "
                "held-out R² are optimistic; use --stride >= --window for valid statistics"
            ]
            if getattr(data, "overlapping", False)
            else []
        ),
        "wall_seconds": dict(seconds),
        "roles": _records(roles),
        "terms": _records(tables["terms"]),
        # how each direction search of the network ended (loss evaluations, stopping reason)
        "directions": {"fits": to_plain(tables["directions"].attrs.get("fits", []))},
    }


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def _warnings(base: dict[str, Any], baselines: pd.DataFrame) -> list[str]:
    """Loud, one-line warnings about the analysis as a whole."""
    out = []
    ratio = base.get("mse_ratio")
    trivial = {"repeat_last": "repeating the last value", "training_mean": "the training mean"}
    rows = baselines.set_index("baseline") if len(baselines) else None
    beaten_by = [
        name for name in trivial
        if rows is not None and name in rows.index and rows.loc[name, "mse_ratio"] >= 1.0
    ]  # fmt: skip
    if (ratio is not None and ratio >= 1.0) or beaten_by:
        worst = beaten_by[0] if beaten_by else "repeat_last"
        value = rows.loc[worst, "mse_ratio"] if beaten_by else ratio
        out.append(
            f"the model's error is {value:.2f}x that of {trivial[worst]}: it does not beat a "
            "trivial baseline, so its units' roles describe a network that has not learned "
            "the task (is the data on the model's scale? see --scaling)"
        )
    names = {
        **trivial,
        "memoryless_linear": "a memoryless linear map fitted on the same data",
        "linear_ar": "a linear AR model fitted on the same data",
    }
    for name, text in names.items():
        if rows is not None and name in rows.index and rows.loc[name, "step_ratio"] >= 1.0:
            out.append(
                f"per step (each step's error over its target variance), the model's error is "
                f"{rows.loc[name, 'step_ratio']:.2f}x that of {text}"
            )
    return out
