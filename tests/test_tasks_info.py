"""``tasks info``: state size, baselines and separability of a task."""

from __future__ import annotations

import dataclasses

from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.pipeline.taskinfo import format_report, task_report
from unitprobe.tasks import get_preset
from unitprobe.tasks.info import min_units, task_info


def test_seed_needs_no_memory_but_delay_does():
    seed = task_info(get_preset("seed"), n_sequences=256)
    assert seed["memoryless_solves"] and seed["memoryless_ratio"] < 1e-4
    delay = task_info(get_preset("delay-3"), n_sequences=256)
    assert not delay["memoryless_solves"] and delay["memoryless_ratio"] > 0.95
    assert delay["state_size"] == 3 and delay["linear_ar_step_nmse"] < 1e-6
    assert delay["min_units"] == 3
    assert delay["baselines"]["baseline"].tolist() == [
        "repeat_last",
        "training_mean",
        "memoryless_linear",
        "linear_ar",
    ]


def test_report_adds_separability():
    report = task_report(get_preset("seed-stationary"), n_sequences=128)
    pairs = report["identifiability"]
    assert pairs["separable"].all()  # innovations: every pair of terms is separable
    text = format_report(report)
    assert "state size: 1" in text and "memory is necessary" in text


def test_cli_info_and_check_name_the_swapped_reading():
    runner = CliRunner()
    out = runner.invoke(main, ["tasks", "info", "seed-integrate", "--n-sequences", "64"])
    assert out.exit_code == 0, out.output
    assert "state size: 2" in out.output
    out = runner.invoke(
        main,
        ["tasks", "check", "--task", "seed", "--series", "K=0,1,1,2,3,5",
         "--series", "X=1,4,7,12,30"],
    )  # fmt: skip
    assert out.exit_code == 1
    assert "RENAMED X->K, K->X" in out.output
    assert "failing only X[4]: relation 19, data 30" in out.output


def test_the_smallest_layer_needs_a_unit_per_output():
    sizes = {name: min_units(get_preset(name)) for name in ("delay-2", "seed-restart")}
    assert sizes == {"delay-2": 2, "seed-restart": 2}  # seed-restart: state 1, outputs K and X
    assert min_units(dataclasses.replace(get_preset("delay-2"), name="mine")) is None
