"""The pipeline behind ``unitprobe analyze``: probes, ablations, attributions and roles.

:func:`compute_analysis` runs every stage on a loaded checkpoint and returns the result tables
(pandas DataFrames in the schemas of DESIGN.md) and a summary; :func:`write_results` writes
them, the figures and the report into a directory; :func:`analyze` does both, staging the
output in a temporary directory that replaces ``out`` only when everything succeeded, so an
interrupted run leaves no half-written results.

Stages (timed in ``summary.json``): ``data`` (generate or load sequences, run the model),
``probes`` (per-unit and population probes, partial R², permutation p-values, untrained
controls, target identifiability), ``ablation``, ``attribution`` (input × lag, unit, and unit
receptive fields), ``roles``, ``figures`` and ``report``.

Example
-------
>>> from unitprobe.model.checkpoint import load
>>> result = analyze(load("model.pt"), "results", AnalyzeConfig(n_sequences=256))
>>> result.tables["roles"][["unit", "role", "decided_by"]]
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from unitprobe import __version__, schemas
from unitprobe._utils import staged_output_dir, torch_threads, write_csv, write_json
from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import run

__all__ = ["AnalyzeConfig", "Analysis", "analyze", "compute_analysis", "write_results", "run_demo"]

ABLATION_MODES = ("zero", "mean", "resample")
ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient")
TABLES = (
    "probes",
    "identifiability",
    "ablation",
    "attribution",
    "roles",
    "traces",
    "target_fields",
)


@dataclass(frozen=True)
class AnalyzeConfig:
    """Options of :func:`analyze` (all shown by ``unitprobe analyze --help``).

    Parameters
    ----------
    n_sequences : int
        Sequences generated from the checkpoint's task (ignored when a dataset is given).
    seed : int
        Seeds the generated data, untrained controls, permutations and resampling.
    targets : tuple of str, optional
        Probe targets in the relation language; default: the task's default target set.
    state : {"h", "c", "both"}
        Which unit states to probe.
    n_splits : int
        GroupKFold folds over sequences for every probe.
    alpha : float
        Ridge penalty of the per-unit probes.
    n_controls : int
        Untrained networks of the same configuration averaged into ``r2_control``.
    n_permutations : int
        Whole-sequence target permutations for ``p_value`` (Holm-corrected).
    ablation_modes : tuple of str
        Any of ``zero``, ``mean``, ``resample``.
    attribution_methods : tuple of str
        Input × lag methods: ``integrated_gradients``, ``saliency``, ``input_x_gradient``.
    max_ablation_sequences : int
        Sequences used by the ablation stage (the first ones). Every unit and mode costs a
        forward pass through the recurrence, so this stage grows with units x units; a few
        hundred sequences already pin the MSE changes down.
    max_attribution_sequences : int
        Sequences used by the attribution stage (gradients cost more than forward passes).
    formats : tuple of str
        Figure formats (``png``, ``pdf``).
    jobs : int
        CPU threads torch may use during the analysis.
    """

    n_sequences: int = 256
    seed: int = 0
    targets: tuple[str, ...] | None = None
    state: str = "h"
    n_splits: int = 5
    alpha: float = 1e-3
    n_controls: int = 3
    n_permutations: int = 99
    ablation_modes: tuple[str, ...] = ABLATION_MODES
    attribution_methods: tuple[str, ...] = ("integrated_gradients",)
    max_ablation_sequences: int = 512
    max_attribution_sequences: int = 128
    formats: tuple[str, ...] = ("png", "pdf")
    jobs: int = 1

    def __post_init__(self) -> None:
        _require(self.n_sequences >= 2, "n_sequences", self.n_sequences, ">= 2")
        _require(self.seed >= 0, "seed", self.seed, ">= 0")
        _require(self.state in ("h", "c", "both"), "state", self.state, "h, c or both")
        _require(self.n_splits >= 2, "n_splits", self.n_splits, ">= 2")
        _require(self.n_controls >= 0, "n_controls", self.n_controls, ">= 0")
        _require(self.n_permutations >= 1, "n_permutations", self.n_permutations, ">= 1")
        _require(self.jobs >= 1, "jobs", self.jobs, ">= 1")
        for name in ("max_ablation_sequences", "max_attribution_sequences"):
            _require(getattr(self, name) >= 2, name, getattr(self, name), ">= 2")
        for mode in self.ablation_modes:
            _require(mode in ABLATION_MODES, "ablation mode", mode, ", ".join(ABLATION_MODES))
        for method in self.attribution_methods:
            _require(
                method in ATTRIBUTION_METHODS,
                "attribution method",
                method,
                ", ".join(ATTRIBUTION_METHODS),
            )
        for fmt in self.formats:
            _require(fmt in ("png", "pdf", "svg"), "format", fmt, "png, pdf or svg")

    @property
    def states(self) -> tuple[str, ...]:
        """The states to probe, as a tuple of site names."""
        return ("h", "c") if self.state == "both" else (self.state,)


@dataclass
class Analysis:
    """Result tables (by name, see ``TABLES``) and the summary written to ``summary.json``."""

    tables: dict[str, pd.DataFrame]
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
    """
    config = config or AnalyzeConfig()
    out = Path(out)
    with staged_output_dir(out, overwrite=overwrite) as stage:
        result = compute_analysis(checkpoint, config, dataset=dataset, progress=progress, echo=echo)
        write_results(result, stage, config, progress=progress, echo=echo)
    result.out_dir = out
    return result


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
    from unitprobe.methods.ablation import ablation_table
    from unitprobe.methods.attribution import attribution_table
    from unitprobe.methods.probes import identifiability, probe_model
    from unitprobe.methods.roles import assign_roles
    from unitprobe.methods.targets import default_targets, make_targets
    from unitprobe.tasks import generate
    from unitprobe.tasks.csvdata import is_data_task

    config = config or AnalyzeConfig()
    model, spec = checkpoint.model.eval(), checkpoint.task
    if dataset is None and is_data_task(spec):
        raise UnitprobeError(
            f"task '{spec.name}' is a data task (its series are observed): pass its sequences "
            "as dataset=load_csv(...); generated ones would be white-noise placeholders"
        )
    timer = _Timer(echo)
    with torch_threads(config.jobs), torch.no_grad():
        with timer("data"):
            data = (
                dataset if dataset is not None else generate(spec, config.n_sequences, config.seed)
            )
            _check_dataset(data, model)
            exprs = list(config.targets) if config.targets else default_targets(spec)
            targets = make_targets(data, exprs)
            trace = run(model, data.inputs, record=("h", "c"))
            base = _base_metrics(trace.outputs.numpy(), data)
        with timer("probes"):
            probes = probe_model(
                model,
                data,
                targets=targets,
                state=config.state,
                n_splits=config.n_splits,
                alpha=config.alpha,
                n_controls=config.n_controls,
                n_permutations=config.n_permutations,
                seed=config.seed,
                trace=trace,
                progress=progress,
            )
            ident = identifiability(targets.values)
    with torch_threads(config.jobs):
        with timer("ablation"):
            ablated = data.subset(np.arange(min(config.max_ablation_sequences, data.n_sequences)))
            ablation = ablation_table(
                model, ablated, modes=config.ablation_modes, seed=config.seed, progress=progress
            )
        with timer("attribution"):
            attribution = attribution_table(
                model,
                _first(data.inputs, config.max_attribution_sequences),
                data.input_names,
                data.output_names,
                methods=config.attribution_methods,
                seed=config.seed,
                progress=progress,
            )
    with timer("roles"):
        target_fields = target_field_table(data, list(targets.values.columns))
        roles = assign_roles(
            probes,
            ablation=ablation,
            attribution=attribution,
            identifiability=ident,
            target_fields=target_fields,
            state=config.states[0],
        )
        traces = trace_table(roles, trace, targets)
    tables = {
        "probes": probes,
        "identifiability": ident,
        "ablation": ablation,
        "attribution": attribution,
        "roles": roles,
        "traces": traces,
        "target_fields": target_fields,
    }
    summary = _summary(checkpoint, config, data, base, roles, timer.seconds)
    return Analysis(tables=tables, summary=summary, timings=timer.seconds)


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

    With ``figures=False`` only the tables and ``summary.json`` are written (no figures, no
    report). Returns the written paths. CSVs are byte-identical for identical tables.
    """
    from unitprobe.views.figures import render_all
    from unitprobe.views.report import write_report

    config = config or AnalyzeConfig()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        write_csv(table, directory / f"{name}.csv") for name, table in analysis.tables.items()
    ]
    timer = _Timer(echo)
    if figures:
        with timer("figures"):
            written += render_all(directory, formats=config.formats)
        with timer("report"):
            written.append(write_report(directory, analysis.summary))
    analysis.timings.update(timer.seconds)
    analysis.summary["wall_seconds"] = dict(analysis.timings)
    written.append(write_json(analysis.summary, directory / "summary.json"))
    return written


def target_field_table(data: Any, exprs: list[str]) -> pd.DataFrame:
    """Each target as a linear combination of the network's inputs, in normalized units.

    Parameters
    ----------
    data : Dataset
        Supplies the input names and the normalization maps (``data.norm[name] = (shift, scale)``).
    exprs : list of str
        Target expressions.

    Returns
    -------
    DataFrame with columns ``target``, ``feature``, ``lag``, ``weight``
        ``target = sum(weight * z_feature[t - lag]) + const`` where ``z`` is the normalized
        input. Targets that are not linear in the input series have no rows.
    """
    from unitprobe.tasks.relations import parse_expression

    series = list(data.norm)
    rows = []
    for expr in exprs:
        terms = parse_expression(expr, series).linear_terms()
        if (
            terms is None
            or not terms[0]
            or any(name not in data.input_names for name, _ in terms[0])
        ):
            continue
        for (name, lag), coef in sorted(terms[0].items()):
            rows.append(
                {"target": expr, "feature": name, "lag": lag, "weight": coef * data.norm[name][1]}
            )
    return pd.DataFrame(rows, columns=list(schemas.FIELDS))


def trace_table(
    roles: pd.DataFrame, trace: Any, targets: Any, *, n_sequences: int = 3
) -> pd.DataFrame:
    """Activation of every role unit over time beside its (z-scored) target.

    Returns
    -------
    DataFrame with columns ``layer``, ``unit``, ``role``, ``sequence``, ``step``,
    ``activation`` (the unit's h) and ``target_value`` (the role target, z-scored over the
    probing samples), for the first ``n_sequences`` sequences.
    """
    columns = list(schemas.TRACES)
    rows = []
    mask = targets.mask
    seq_of_row, step_of_row = np.nonzero(mask)
    keep = seq_of_row < n_sequences
    for role in roles[roles["role"] != "none"].itertuples():
        if role.role not in targets.values.columns:
            continue
        values = targets.values[role.role].to_numpy(float)
        z = (values - values.mean()) / (values.std() or 1.0)
        h = trace.sites["h"][int(role.layer)].numpy()[:, :, int(role.unit)]  # (N, T)
        for s, t, v in zip(seq_of_row[keep], step_of_row[keep], z[keep], strict=True):
            rows.append(
                (
                    int(role.layer),
                    int(role.unit),
                    role.role,
                    int(s),
                    int(t),
                    float(h[s, t]),
                    float(v),
                )
            )
    return pd.DataFrame(rows, columns=columns)


def rerender(results: str | Path, *, formats: tuple[str, ...] = ("png", "pdf")) -> list[Path]:
    """Re-render the figures and the report of a results directory from its tables alone.

    The new ``figures/`` is built beside the old one and swapped in only when complete.
    """
    import json

    from unitprobe.views.figures import render_all
    from unitprobe.views.report import write_report

    results = Path(results)
    summary_path = results / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with staged_output_dir(results / "figures", overwrite=True) as stage:
        render_all(results, out_dir=stage, formats=formats)
    write_report(results, summary)
    return sorted((results / "figures").iterdir()) + [results / "report.html"]


# ----------------------------------------------------------------------------- demo


def run_demo(
    out: str | Path = "unitprobe-demo",
    *,
    overwrite: bool = True,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    n_units: int = 8,
    n_sequences: int = 512,
) -> str:
    """Train the ``seed`` task and analyze it into ``out``; return the printed summary.

    Writes ``model.pt``, every result table, ``figures/`` and ``report.html`` into ``out``.
    """
    from unitprobe.methods.roles import summarize_roles
    from unitprobe.model.checkpoint import Checkpoint, save_trained
    from unitprobe.model.train import TrainConfig, train_task
    from unitprobe.tasks import get_preset

    echo = echo or (lambda s: None)
    out = Path(out)
    spec = get_preset("seed")
    start = time.perf_counter()
    with staged_output_dir(out, overwrite=overwrite) as stage:
        echo(f"training a {n_units}-unit LSTM on the 'seed' task: {'; '.join(spec.relations)}")
        config = TrainConfig(n_units=n_units, seed=0)
        _, result = train_task(spec, config, n_sequences=n_sequences, progress=progress)
        m = result.metrics
        echo(
            f"  validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.2g}% of the "
            f"repeat-last-value baseline, {m['train_seconds']:.0f} s"
        )
        save_trained(stage / "model.pt", result, spec, config)
        ckpt = Checkpoint(
            model=result.model,
            task=spec,
            path=out / "model.pt",
            source="unitprobe",
            history=result.history,
            metrics=m,
        )
        echo("analyzing: probes, ablations, attributions, roles")
        analysis = compute_analysis(ckpt, AnalyzeConfig(), progress=progress, echo=echo)
        write_results(analysis, stage, AnalyzeConfig(), progress=progress, echo=echo)
    return (
        f"{summarize_roles(analysis.tables['roles'])}\n\n"
        f"done in {time.perf_counter() - start:.0f} s; report: {out / 'report.html'}"
    )


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


def _first(inputs: np.ndarray, n: int) -> np.ndarray:
    return np.asarray(inputs)[:n]


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
    from unitprobe.tasks import baseline_mse

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
    seconds: dict,
) -> dict[str, Any]:
    import captum
    import sklearn

    spec = checkpoint.task
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
        "task": spec.to_dict(),
        "model": checkpoint.model.config.to_dict(),
        "analysis": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "training_metrics": checkpoint.metrics,
        "metrics": base,
        "wall_seconds": dict(seconds),
        "roles": roles.to_dict(orient="records"),
    }


def _require(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise UnitprobeError(f"{name} == {value!r}, must be {allowed}")
