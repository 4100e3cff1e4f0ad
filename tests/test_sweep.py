"""Tests of unitprobe.pipeline.sweep: keys, the sweep table, resuming,
failures, dask, the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unitprobe import sweep as SW
from unitprobe.errors import TaskSpecError, UnitprobeError
from unitprobe.pipeline.sweepstats import run_indices

ROOT = Path(__file__).resolve().parents[1]
TASKS, UNITS, SEEDS = ["delay-1"], [1, 2], 2
TINY_TRAIN = {"epochs": 3, "batch_size": 8}
TINY_ANALYSIS = {"n_sequences": 16, "n_permutations": 9, "max_attribution_sequences": 8}
TINY = {
    "n_sequences": 16,
    "train_overrides": TINY_TRAIN,
    "analysis": SW.sweep_analysis_config(**TINY_ANALYSIS),
}


def tiny_sweep(out: Path, **kwargs) -> pd.DataFrame:
    return SW.run_sweep(TASKS, UNITS, SEEDS, out, **{**TINY, **kwargs})


def without_wall(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns="wall_seconds").reset_index(drop=True)


def read_sweep(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "sweep.csv", dtype={"error": "string"})
    return table.assign(error=table["error"].fillna("").astype(object))


def snapshot(out: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    out = tmp_path_factory.mktemp("sweep") / "SWEEP"
    return out, tiny_sweep(out)


# ---------------------------------------------------------------------------------------------
# configurations and keys
# ---------------------------------------------------------------------------------------------


def test_plan_expands_tasks_units_seeds_with_distinct_stable_keys():
    plan = SW.plan_sweep(["delay-1", "seed"], [1, 3], [4, 7], **TINY)
    assert [(c.task_name, c.units, c.seed) for c in plan] == [
        (t, u, s) for t in ("delay-1", "seed") for u in (1, 3) for s in (4, 7)
    ]
    assert len({c.key for c in plan}) == 8
    assert all(len(c.key) == 12 and int(c.key, 16) >= 0 for c in plan)
    again = SW.plan_sweep(["delay-1", "seed"], [1, 3], [4, 7], **TINY)
    assert [c.key for c in again] == [c.key for c in plan]
    first = plan[0]
    assert first.name == f"delay-1-u1-s4-{first.key}"
    assert first.train["n_units"] == 1 and first.train["seed"] == 4
    assert first.analysis["jobs"] == 1
    assert first.analyze_config() == TINY["analysis"]
    assert SW.config_key(first.to_dict()) == first.key


@pytest.mark.parametrize(
    "change",
    [
        {"n_sequences": 17},
        {"train_overrides": {"epochs": 4, "batch_size": 8}},
        {"analysis": SW.sweep_analysis_config(n_sequences=16, n_permutations=19)},
    ],
)
def test_every_setting_changes_the_key(change):
    base = SW.plan_sweep(TASKS, [1], [0], **TINY)[0]
    changed = SW.plan_sweep(TASKS, [1], [0], **{**TINY, **change})[0]
    assert changed.key != base.key


def test_key_covers_task_spec_and_version(monkeypatch):
    base = SW.plan_sweep(["delay-1"], [1], [0], **TINY)[0]
    assert SW.plan_sweep(["delay-2"], [1], [0], **TINY)[0].key != base.key
    changed = SW.RunConfig(**{**base.__dict__, "version": "9.9"})
    assert changed.key != base.key
    assert SW.config_key({"a": (1, 2), "b": 0.5}) == SW.config_key({"b": 0.5, "a": [1, 2]})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"units": [0]}, "units value 0"),
        ({"units": [2, 2]}, "repeated"),
        ({"seeds": 0}, "seeds == 0"),
        ({"seeds": [-1]}, "seeds value -1"),
        ({"train_overrides": {"n_units": 3}}, "n_units cannot be overridden"),
        ({"train_overrides": {"epochs": 0}}, "epochs == 0"),
        ({"n_sequences": 1}, "n_sequences == 1"),
        ({"tasks": []}, "no tasks"),
        ({"tasks": ["seed", "seed"]}, "more than once"),
    ],
)
def test_plan_rejects_bad_input(kwargs, match):
    args = {"tasks": TASKS, "units": UNITS, "seeds": SEEDS, **kwargs}
    with pytest.raises(UnitprobeError, match=match):
        SW.plan_sweep(args.pop("tasks"), args.pop("units"), args.pop("seeds"), **args)


def test_unknown_task_and_options_are_errors(tmp_path):
    with pytest.raises(TaskSpecError, match="unknown task 'nope'"):
        SW.plan_sweep(["nope"], [1], 1)
    with pytest.raises(UnitprobeError, match="unknown analysis option"):
        SW.sweep_analysis_config(n_perms=3)
    with pytest.raises(UnitprobeError, match="jobs == 0"):
        tiny_sweep(tmp_path / "s", jobs=0)


def test_scheduler_without_dask_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UnitprobeError, match=r"pip install -e '\.\[dist\]'"):
        tiny_sweep(tmp_path / "s", scheduler="tcp://127.0.0.1:8786")


# ---------------------------------------------------------------------------------------------
# the sweep table
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains and analyzes every configuration
def test_sweep_table_has_every_configuration_and_column(finished):
    out, table = finished
    assert tuple(table.columns) == SW.SWEEP_COLUMNS
    assert list(zip(table["task"], table["units"], table["seed"], strict=True)) == [
        ("delay-1", 1, 0),
        ("delay-1", 1, 1),
        ("delay-1", 2, 0),
        ("delay-1", 2, 1),
    ]
    assert (table["status"] == "ok").all() and (table["error"] == "").all()
    assert table["mse_ratio"].to_numpy() == pytest.approx(
        table["val_mse"].to_numpy() / table["baseline_mse"].to_numpy()
    )
    # the network against the four baselines, per step and pooled
    assert table["step_ratio_repeat_last"].notna().all() and table["step_nmse"].notna().all()
    assert (table["ar_order"] >= 2).all()  # delay-1 needs x[t-1]: p >= 2
    assert (table["n_roles"] <= table["units"]).all() and (table["n_roles"] >= 0).all()
    assert (table["wall_seconds"] > 0).all()
    on_disk = read_sweep(out)
    pd.testing.assert_frame_equal(
        without_wall(on_disk),
        without_wall(table),
        check_dtype=False,
        check_exact=False,
        rtol=1e-9,
    )
    plan = SW.plan_sweep(TASKS, UNITS, SEEDS, **TINY)
    assert table["key"].tolist() == [c.key for c in plan]


@pytest.mark.slow  # trains and analyzes every configuration
def test_run_directories_hold_model_tables_and_result(finished):
    out, table = finished
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert len(runs) == 4
    for row in table.itertuples():
        run = out / "runs" / f"{row.task}-u{row.units}-s{row.seed}-{row.key}"
        names = {p.name for p in run.iterdir()}
        assert {
            "model.pt",
            "probes.csv",
            "roles.csv",
            "ablation.csv",
            "receptive_fields.csv",
        } <= names
        assert {"result.json", "summary.json"} <= names and "report.html" not in names
        result = json.loads((run / "result.json").read_text())
        assert result["key"] == row.key and result["config"]["units"] == row.units
        indices = run_indices(pd.read_csv(run / "probes.csv"), pd.read_csv(run / "roles.csv"))
        assert indices["n_roles"] == row.n_roles
        assert indices["redundancy"] == pytest.approx(row.redundancy)
        np.testing.assert_allclose(indices["specialization"], row.specialization, rtol=1e-9)


@pytest.mark.slow  # trains and analyzes every configuration
def test_rerun_does_no_training(finished, monkeypatch):
    out, table = finished
    before = snapshot(out)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished configuration was trained again")

    monkeypatch.setattr(SW, "_train_and_analyze", no_training)
    lines: list[str] = []
    again = tiny_sweep(out, echo=lines.append)
    pd.testing.assert_frame_equal(again, table)
    assert snapshot(out) == before
    assert "4 finished earlier, 0 to run" in lines[0]


@pytest.mark.slow  # trains and analyzes every configuration
def test_interrupted_sweep_resumes_to_the_same_table(finished, tmp_path, monkeypatch):
    _, reference = finished
    out = tmp_path / "SWEEP"
    real = SW._train_and_analyze
    calls: list[str] = []

    def interrupt_third(config, run_dir, figures, row):
        calls.append(config.name)
        if len(calls) == 3:
            (run_dir / "model.pt").write_bytes(b"half a file")  # a partial run directory
            raise KeyboardInterrupt
        return real(config, run_dir, figures, row)

    monkeypatch.setattr(SW, "_train_and_analyze", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        tiny_sweep(out)
    partial = read_sweep(out)
    assert len(partial) == 2  # the finished ones are already listed
    leftover = out / "runs" / calls[2]
    assert leftover.is_dir() and not (leftover / "result.json").exists()

    calls.clear()
    monkeypatch.setattr(SW, "_train_and_analyze", lambda *a: calls.append(a[0].name) or real(*a))
    resumed = tiny_sweep(out)
    assert len(calls) == 2  # only the interrupted and the never-started configuration
    pd.testing.assert_frame_equal(without_wall(resumed), without_wall(reference))
    assert (leftover / "result.json").exists() and (leftover / "model.pt").stat().st_size > 100


@pytest.mark.slow  # trains and analyzes every configuration
def test_failing_configuration_is_recorded_and_others_finish(tmp_path, monkeypatch):
    out = tmp_path / "SWEEP"
    real = SW._train_and_analyze

    def fail_one(config, run_dir, figures, row):
        if config.units == 2 and config.seed == 1:
            raise ValueError("boom\nsecond line")
        return real(config, run_dir, figures, row)

    monkeypatch.setattr(SW, "_train_and_analyze", fail_one)
    lines: list[str] = []
    table = tiny_sweep(out, echo=lines.append)
    failed = table[table["status"] == "failed"]
    assert len(table) == 4 and len(failed) == 1
    assert failed[["units", "seed"]].values.tolist() == [[2, 1]]
    assert failed["error"].iloc[0] == "ValueError: boom second line"
    assert np.isnan(failed["val_mse"].iloc[0])
    assert any(line.startswith("failed: delay-1-u2-s1-") for line in lines)
    assert read_sweep(out)["status"].tolist().count("failed") == 1

    monkeypatch.setattr(SW, "_train_and_analyze", real)
    before = snapshot(out)
    assert tiny_sweep(out)["status"].tolist().count("failed") == 1  # not retried by default
    assert snapshot(out) == before
    retried = tiny_sweep(out, retry_failed=True)
    assert (retried["status"] == "ok").all()


@pytest.mark.slow  # trains and analyzes every configuration
def test_collect_results_reads_every_result_file(finished):
    out, table = finished
    pd.testing.assert_frame_equal(SW.collect_results(out), table)


# ---------------------------------------------------------------------------------------------
# parallel, distributed, killed
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_process_pool_gives_the_same_table(finished, tmp_path):
    _, reference = finished
    table = tiny_sweep(tmp_path / "SWEEP", jobs=2)
    pd.testing.assert_frame_equal(without_wall(table), without_wall(reference))


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_table(finished, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, reference = finished
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        table = tiny_sweep(tmp_path / "SWEEP", scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(without_wall(table), without_wall(reference))
    pd.testing.assert_frame_equal(
        without_wall(read_sweep(tmp_path / "SWEEP")), without_wall(read_sweep(finished[0]))
    )


@pytest.mark.slow
def test_killed_sweep_process_resumes(finished, tmp_path):
    """SIGKILL a sweep process as soon as one configuration finished, then resume it."""
    _, reference = finished
    out = tmp_path / "SWEEP"
    code = (
        "from unitprobe import sweep as SW\n"
        f"SW.run_sweep({TASKS!r}, {UNITS!r}, {SEEDS!r}, {str(out)!r}, n_sequences=16, "
        f"train_overrides={TINY_TRAIN!r}, "
        f"analysis=SW.sweep_analysis_config(**{TINY_ANALYSIS!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ})
    try:
        deadline = 120.0
        start = time.monotonic()
        while not list((out / "runs").glob("*/result.json")):
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() - start < deadline
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    finished_before = len(list((out / "runs").glob("*/result.json")))
    assert 1 <= finished_before < 4
    resumed = tiny_sweep(out)
    pd.testing.assert_frame_equal(without_wall(resumed), without_wall(reference))


@pytest.mark.slow
def test_make_figures_quick_writes_every_figure(tmp_path):
    figures = tmp_path / "figures"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "analyses" / "make_figures.py"),
            "--quick",
            "--out",
            str(figures),
            "--sweep-dir",
            str(tmp_path / "sweep"),
            "--jobs",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        import make_figures
    finally:
        sys.path.remove(str(ROOT / "analyses"))
    expected = make_figures.expected_files(quick=True)
    missing = [name for name in expected if not (figures / name).is_file()]
    assert not missing
    assert all((figures / name).stat().st_size > 1000 for name in expected)
