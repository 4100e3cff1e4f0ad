"""Capacity sweeps: train and analyze every (task, units, seed), locally or on a dask cluster.

:func:`run_sweep` expands tasks × layer sizes × seeds into :class:`RunConfig` objects, trains
and analyzes each one (:func:`run_config`), and writes one tidy table ``SWEEP/sweep.csv`` with
a row per configuration (columns :data:`SWEEP_COLUMNS`):

``task``, ``units``, ``seed``
    The configuration.
``val_mse``, ``baseline_mse``, ``mse_ratio``
    Validation MSE of the trained network (normalized units², held-out sequences of the
    training data), the repeat-last-value baseline on the same sequences, and their ratio.
``step_nmse``
    The per-step normalized error on the same sequences (1 = per-step mean, 0 = exact;
    :func:`unitprobe.tasks.baselines.per_step_nmse`): the metric of the curve and the knee.
``step_ratio_<b>``, ``mse_ratio_<b>``
    Per-step and pooled error over those of each baseline ``b`` of
    :mod:`unitprobe.tasks.baselines`, fitted on the run's training sequences and scored on
    its validation sequences; below 1 beats the baseline.
``step_nmse_memoryless_linear``, ``step_nmse_linear_ar``, ``ar_order``
    The two linear baselines' own per-step errors; the order the autoregression chose.
``n_roles``, ``specialization``, ``redundancy``
    Units whose role is not ``none``, and the indices of :mod:`unitprobe.pipeline.sweepstats`.
``wall_seconds``, ``status``, ``error``, ``key``
    Time the configuration took, ``ok`` or ``failed``, the error in one line (empty when
    ok), and the configuration's hash.

Layout of ``SWEEP/``::

    sweep.csv                                  # rebuilt from the result.json files at the end
    runs/<task>-u<units>-s<seed>-<key>/
        model.pt                               # the trained checkpoint
        probes.csv population_probes.csv identifiability.csv vif.csv ablation.csv
        input_lag.csv unit_attribution.csv receptive_fields.csv roles.csv traces.csv
        target_fields.csv summary.json
        result.json                            # written atomically, LAST

Each run writes the analysis tables and ``summary.json`` only; ``figures=True`` also draws
the per-run figures and ``report.html`` (:func:`unitprobe.pipeline.analyze.write_results`).

Resuming
--------
Every configuration is keyed by the first 12 hex digits of the SHA-256 of its full
configuration as canonical JSON (:func:`config_key`): the task spec, units, seed, the whole
training config, the number of sequences, the whole analysis config and the unitprobe
version. A configuration whose run directory holds a ``result.json`` with that key is
finished and is never run again (a failed one neither, unless ``retry_failed``); any other
run directory of a planned configuration is a leftover of an interrupted run and is deleted
and redone. A sweep killed at any moment therefore loses at most the configurations that
were running; rerun the same command to finish it. Changing any setting changes the keys, so
results of different settings never mix; ``sweep.csv`` lists the configurations of the
command that wrote it.

A configuration that raises is recorded (``status = "failed"``, ``error`` = the exception in
one line) and the others go on.

Parallel and distributed execution
----------------------------------
``jobs = N`` runs configurations in N local worker processes; every run uses one torch
thread, so numbers do not depend on where or beside what it ran. ``scheduler = ADDRESS``
sends them to a `dask.distributed <https://distributed.dask.org>`_ cluster instead (install
with ``pip install -e '.[dist]'``). On a real cluster:

1. put the sweep directory on a file system every machine mounts at the same path (NFS,
   Lustre, ...), and install the same unitprobe and torch on every machine;
2. start a scheduler on one machine: ``dask-scheduler`` (listens on ``tcp://HOST:8786``);
3. start workers on each machine, one single-threaded process per core:
   ``dask-worker tcp://HOST:8786 --nworkers <cores> --nthreads 1``;
4. run ``unitprobe sweep --task seed,delay-3 --units 1,2,4,8 --seeds 5 --out /shared/SWEEP
   --scheduler tcp://HOST:8786`` from any machine that reaches the scheduler.

Workers write their run directories straight into the shared ``SWEEP/runs/``; the client
only reads ``result.json`` files and writes ``sweep.csv``. Interrupting the client cancels the
queued configurations; rerunning resumes as above.

``device = "cuda"`` (or ``"auto"``) trains each configuration on a GPU; the analysis runs on
the CPU. The device is how a run executes, not what it is: it is in neither the key nor
``result.json``, so a sweep started on a GPU resumes on a CPU (and the other way round).
Locally the device is resolved before anything is written (``cuda`` without a GPU is an
error); with a scheduler each worker resolves it, and a worker without the GPU records its
runs as failed.

Example
-------
>>> table = run_sweep(["delay-2"], [1, 2, 4], seeds=3, out="SWEEP", jobs=2,
...                   train_overrides={"epochs": 50})
>>> table[["task", "units", "seed", "mse_ratio", "status"]]
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from unitprobe._utils import (
    atomic_write,
    stderr_is_tty,
    write_csv_atomic,
    write_json,
)
from unitprobe.config import AnalyzeConfig
from unitprobe.devices import DEFAULT_DEVICE, check_device, resolve_device
from unitprobe.errors import UnitprobeError
from unitprobe.model.checkpoint import Checkpoint, save_trained
from unitprobe.model.threads import torch_threads
from unitprobe.model.train import train_task
from unitprobe.pipeline.analyze import compute_analysis, write_results
from unitprobe.pipeline.executors import dask_client, one_line, run_dask, run_local
from unitprobe.pipeline.sweepplan import (
    RunConfig,
    config_key,
    plan_sweep,
    quick_options,
    sweep_analysis_config,
)
from unitprobe.pipeline.sweepstats import run_indices
from unitprobe.tasks import TaskSpec
from unitprobe.tasks.baselines import BASELINES
from unitprobe.validation import check_int

__all__ = [
    "SWEEP_COLUMNS",
    "RunConfig",
    "collect_results",
    "config_key",
    "plan_sweep",
    "quick_options",
    "read_result",
    "run_config",
    "run_sweep",
    "sweep_analysis_config",
]

#: Columns of ``sweep.csv``, in order.
SWEEP_COLUMNS = (
    "task",
    "units",
    "seed",
    "val_mse",
    "baseline_mse",
    "mse_ratio",
    "step_nmse",
    *(f"step_ratio_{b}" for b in BASELINES),
    *(f"mse_ratio_{b}" for b in BASELINES[1:]),
    "step_nmse_memoryless_linear",
    "step_nmse_linear_ar",
    "ar_order",
    "n_roles",
    "specialization",
    "redundancy",
    "wall_seconds",
    "status",
    "error",
    "key",
)
RESULT_FILE = "result.json"
RUNS_DIR = "runs"
SWEEP_FILE = "sweep.csv"


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
def read_result(run_dir: str | os.PathLike, key: str | None = None) -> dict[str, Any] | None:
    """The finished result of a run directory, or None if it has none (or another key).

    Parameters
    ----------
    run_dir : path
    key : str, optional
        Accept the result only if its ``key`` equals this.
    """
    path = Path(run_dir) / RESULT_FILE
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict) or (key is not None and result.get("key") != key):
        return None
    return result


def _write_json_atomic(data: Any, path: Path) -> Path:
    return atomic_write(path, lambda tmp: write_json(data, tmp))


def _empty_row(config: RunConfig) -> dict[str, Any]:
    row: dict[str, Any] = {c: np.nan for c in SWEEP_COLUMNS}
    row.update(
        task=config.task_name, units=config.units, seed=config.seed, key=config.key, error=""
    )
    return row


@dataclass(frozen=True)
class _Execution:
    """How a run executes, never what it computes: neither hashed nor stored in result.json."""

    figures: bool = False
    device: str = DEFAULT_DEVICE


def _train_and_analyze(config: RunConfig, run_dir: Path, how: _Execution, row: dict) -> dict:
    """Train and analyze (on ``how.device``), save, and write the tables (and the
    figures if ``how.figures``); fills ``row`` as it goes."""
    spec = TaskSpec.from_dict(config.task)
    train_config = config.train_config()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    _, result = train_task(
        spec, train_config, n_sequences=config.n_sequences, progress=False, device=how.device
    )
    timings["train"] = round(time.perf_counter() - start, 3)
    m = result.metrics
    row.update(val_mse=m["val_mse"], baseline_mse=m.get("baseline_mse", np.nan))
    row.update(_baseline_columns(m))
    save_trained(run_dir / "model.pt", result, spec, train_config)
    checkpoint = Checkpoint.from_training(result, spec, run_dir / "model.pt", train_config)
    start = time.perf_counter()
    analyze_config = config.analyze_config()
    analysis = compute_analysis(checkpoint, analyze_config, device=how.device, progress=False)
    timings["analyze"] = round(time.perf_counter() - start, 3)
    write_results(analysis, run_dir, analyze_config, figures=how.figures)
    row.update(run_indices(analysis.tables["probes"], analysis.tables["roles"]))
    return {"timings": timings, "training_metrics": m}


def _baseline_columns(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The baseline columns of a row, from a training result's metrics."""
    row = {c: metrics.get(c, np.nan) for c in SWEEP_COLUMNS if c.startswith(("step_r", "mse_r"))}
    row["step_nmse"] = metrics.get("val_step_nmse", np.nan)
    base = metrics.get("baselines", {})
    for b in ("memoryless_linear", "linear_ar"):
        row[f"step_nmse_{b}"] = base.get(b, {}).get("step_nmse", np.nan)
    row["ar_order"] = metrics.get("ar_order", np.nan)
    return row


def run_config(
    config: RunConfig,
    runs_dir: str | os.PathLike,
    *,
    figures: bool = False,
    device: str = DEFAULT_DEVICE,
) -> dict[str, Any]:
    """Train and analyze one configuration into ``runs_dir/<config.name>/``.

    A directory that already holds this configuration's ``result.json`` is returned as is;
    any other content of the directory is deleted first. ``result.json`` is written
    atomically as the last step, with ``status`` ``ok`` or ``failed``: an exception of the run
    is recorded, not raised (``KeyboardInterrupt`` and ``SystemExit`` still propagate). Runs
    with one torch thread.

    Parameters
    ----------
    config : RunConfig
    runs_dir : path
        Parent of the run directory (created if needed).
    figures : bool, default False
        Also draw the run's figures and ``report.html``.
    device : {"cpu", "cuda", "cuda:N", "auto"}, default "cpu"
        Where to train and analyze (:func:`unitprobe.devices.resolve_device`; an unavailable
        device fails the run). Not part of the key or of ``result.json``.

    Returns
    -------
    dict
        The content of ``result.json``: the :data:`SWEEP_COLUMNS` values plus ``run`` (the
        directory name), ``config``, ``timings`` and ``training_metrics``.
    """
    run_dir = Path(runs_dir) / config.name
    finished = read_result(run_dir, config.key)
    if finished is not None:
        return finished
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    row = _empty_row(config)
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    try:
        with torch_threads(1):
            extra = _train_and_analyze(config, run_dir, _Execution(figures, device), row)
        row["status"] = "ok"
    except Exception as err:  # recorded in result.json; the sweep goes on
        row.update(status="failed", error=one_line(err))
    row["wall_seconds"] = round(time.perf_counter() - start, 3)
    result = {**row, "run": config.name, "config": config.to_dict(), **extra}
    _write_json_atomic(result, run_dir / RESULT_FILE)
    return read_result(run_dir) or result


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
def _rows_to_frame(results: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in results:  # baseline columns from the training metrics when the row lacks them
        row = {**_baseline_columns(r.get("training_metrics") or {}), **r}
        rows.append({c: row.get(c, np.nan) for c in SWEEP_COLUMNS})
    table = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    floats = [c for c in SWEEP_COLUMNS if "mse" in c or "ratio" in c]
    for c in (*floats, "specialization", "redundancy"):
        table[c] = pd.to_numeric(table[c], errors="coerce").astype("float64")
    table["ar_order"] = pd.to_numeric(table["ar_order"], errors="coerce").astype("Int64")
    table["wall_seconds"] = pd.to_numeric(table["wall_seconds"], errors="coerce")
    table["n_roles"] = pd.to_numeric(table["n_roles"], errors="coerce").astype("Int64")
    table["units"] = table["units"].astype("int64")
    table["seed"] = table["seed"].astype("int64")
    table["error"] = table["error"].fillna("").astype(str)
    table = table.sort_values(["task", "units", "seed", "key"], kind="stable")
    return table.reset_index(drop=True)


def collect_results(
    out: str | os.PathLike, configs: Sequence[RunConfig] | None = None
) -> pd.DataFrame:
    """Read ``result.json`` files of a sweep directory into the ``sweep.csv`` table.

    Parameters
    ----------
    out : path
        The sweep directory (holding ``runs/``).
    configs : sequence of RunConfig, optional
        Read these configurations' results (those not finished are left out); default:
        every ``result.json`` under ``out/runs/``.

    Returns
    -------
    DataFrame
        Columns :data:`SWEEP_COLUMNS`, sorted by task, units, seed.
    """
    runs = Path(out) / RUNS_DIR
    if configs is None:
        found = (read_result(p.parent) for p in sorted(runs.glob(f"*/{RESULT_FILE}")))
    else:
        found = (read_result(runs / c.name, c.key) for c in configs)
    return _rows_to_frame(r for r in found if r is not None)


def run_sweep(
    tasks: Sequence[Any],
    units: Sequence[int],
    seeds: int | Sequence[int],
    out: str | os.PathLike,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    n_sequences: int = 512,
    train_overrides: Mapping[str, Any] | None = None,
    analysis: AnalyzeConfig | None = None,
    figures: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    device: str = DEFAULT_DEVICE,
) -> pd.DataFrame:
    """Train and analyze every (task, units, seed) and write ``out/sweep.csv``.

    Finished configurations (a ``result.json`` with the same key) are skipped, so rerunning
    an interrupted sweep finishes it. See the module docstring for the layout and keys.

    Parameters
    ----------
    tasks : sequence of str or TaskSpec
        Preset names or specs, e.g. ``["seed", "fibonacci", "delay-3"]``.
    units : sequence of int
        Layer sizes, e.g. ``[1, 2, 3, 4, 6, 8]``.
    seeds : int or sequence of int
        Number of seeds (``0 .. n-1``) or explicit seeds.
    out : path
        Sweep directory (created if needed; may hold an earlier sweep).
    jobs : int, default 1
        Local worker processes (1 runs in this process). Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a dask.distributed scheduler (``tcp://host:8786``); needs the ``dist``
        extra.
    n_sequences : int, default 512
        Training sequences per run.
    train_overrides : mapping, optional
        TrainConfig fields other than ``n_units`` and ``seed``, e.g. ``{"epochs": 100}``.
    analysis : AnalyzeConfig, optional
        Default :func:`sweep_analysis_config`.
    figures : bool, default False
        Draw per-run figures and reports too (slower).
    retry_failed : bool, default False
        Run configurations that failed earlier again.
    progress : bool, optional
        tqdm bar over configurations; default only when stderr is a terminal.
    echo : callable, optional
        Receives one line at the start, per failed configuration, per finished configuration
        when no progress bar is shown, and at the end.
    device : {"cpu", "cuda", "cuda:N", "auto"}, default "cpu"
        Where each configuration trains and is analyzed. Resolved here before
        anything is written, or, with ``scheduler``, by each worker. Not part of the keys:
        results are the same up to float rounding.

    Returns
    -------
    DataFrame
        The ``sweep.csv`` table (columns :data:`SWEEP_COLUMNS`, sorted by task, units, seed).

    Raises
    ------
    UnitprobeError
        Invalid tasks, sizes, seeds or options; ``scheduler`` without dask.distributed or
        unreachable; an unknown ``device``, or ``cuda`` without a GPU (without ``scheduler``).
    """
    check_int(jobs, "jobs", minimum=1)
    # the workers of a cluster may have the GPU this machine lacks: they resolve it there
    device = check_device(device) if scheduler is not None else str(resolve_device(device))
    _refuse_foreign_table(Path(out))
    configs = plan_sweep(
        tasks,
        units,
        seeds,
        n_sequences=n_sequences,
        train_overrides=train_overrides,
        analysis=analysis,
    )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnitprobeError(f"sweep output {out} exists and is not a directory")
    # connect first: an unreachable scheduler must not leave an empty sweep directory behind
    client = dask_client(scheduler) if scheduler is not None else None
    try:
        return _sweep(
            configs, out, client, scheduler, jobs, figures, retry_failed, progress, echo, device
        )
    finally:
        if client is not None and client is not scheduler:
            client.close()


def _sweep(configs, out, client, scheduler, jobs, figures, retry_failed, progress, echo, device):
    """The body of :func:`run_sweep` once the configurations and the client are ready."""
    runs_dir = out / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    say = echo or (lambda line: None)
    pending = []
    for config in configs:
        done = read_result(runs_dir / config.name, config.key)
        if done is None or (retry_failed and done.get("status") != "ok"):
            if done is not None:
                shutil.rmtree(runs_dir / config.name)
            pending.append(config)
    where = f"dask scheduler {scheduler}" if scheduler else f"{jobs} local process(es)"
    if device != DEFAULT_DEVICE:
        where += f", training on {device}"
    say(
        f"sweep: {len(configs)} configurations, {len(configs) - len(pending)} finished earlier, "
        f"{len(pending)} to run on {where}"
    )
    show = progress if progress is not None else stderr_is_tty()
    bar = tqdm(
        total=len(configs),
        initial=len(configs) - len(pending),
        desc="sweep",
        unit="run",
        disable=not show,
    )

    done = [len(configs) - len(pending)]

    def on_result(config: RunConfig, result: dict | None, error: BaseException | None) -> None:
        if error is not None:  # the worker itself died: record it like a failed run
            result = _record_failure(config, runs_dir, error)
        bar.update(1)
        done[0] += 1
        if result.get("status") != "ok":
            say(f"failed: {config.name}: {result.get('error')}")
        elif not show:  # no bar: one line per finished run instead
            say(
                f"[{done[0]}/{len(configs)}] {config.name}: mse_ratio "
                f"{_fmt(result.get('mse_ratio'))}, {result.get('n_roles')} role(s), "
                f"{_fmt(result.get('wall_seconds'))} s"
            )

    run_one = partial(run_config, device=device)  # module-level, so it pickles to workers
    try:
        if pending:
            if client is not None:
                run_dask(run_one, pending, runs_dir, client, figures, on_result)
            else:
                run_local(run_one, pending, runs_dir, jobs, figures, on_result)
    finally:
        bar.close()
        table = collect_results(out, configs)
        write_csv_atomic(table, out / SWEEP_FILE)
    n_ok = int((table["status"] == "ok").sum())
    say(f"wrote {out / SWEEP_FILE}: {n_ok} ok, {len(table) - n_ok} failed")
    return table


def _record_failure(config: RunConfig, runs_dir: Path, error: BaseException) -> dict:
    run_dir = runs_dir / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    row = _empty_row(config)
    row.update(status="failed", error=one_line(error))
    result = {**row, "run": config.name, "config": config.to_dict()}
    _write_json_atomic(result, run_dir / RESULT_FILE)
    return result


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def _refuse_foreign_table(out: Path) -> None:
    """Refuse to run where ``out/sweep.csv`` exists but ``out`` is not a sweep directory.

    A sweep directory holds ``runs/`` next to its table; a lone ``sweep.csv`` is a user's
    file (or another tool's), which the sweep would replace at the end.
    """
    table = out / SWEEP_FILE
    if table.exists() and not (out / RUNS_DIR).is_dir():
        raise UnitprobeError(
            f"{table} exists and was not written by a unitprobe sweep (no {RUNS_DIR}/ beside "
            "it); move it or choose a new --out"
        )
