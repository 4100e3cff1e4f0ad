"""Rough edges a new user hits: task names as files, checks that check nothing, TOML round
trips, task-file rules, sweep help."""

from __future__ import annotations

import numpy as np
import pytest
import tomllib
from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.errors import DataError, TaskSpecError
from unitprobe.methods.targets import make_targets
from unitprobe.model.train import TrainConfig
from unitprobe.tasks import TaskSpec, dataset_from_raw, generate, get_preset


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, message):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0], lines[0]


def spec(**overrides):
    fields = {
        "name": "fib",
        "relations": ["K[t] = K[t-1] + K[t-2]"],
        "init": {"K": [0.0, 1.0]},
        "inputs": ["K"],
        "predict": ["K"],
        "length": 10,
    }
    return TaskSpec(**{**fields, **overrides})


# --- 1. a task file given as a task name ---------------------------------------------------
@pytest.mark.parametrize("command", ["show", "info"])
def test_tasks_show_with_a_path_says_task_file(tmp_path, command):
    path = tmp_path / "mytask.toml"
    path.write_text(spec().to_toml())
    one_error_line(invoke("tasks", command, path), f"--task-file {path}")
    one_error_line(invoke("tasks", command, "mytask.toml"), "--task-file mytask.toml")
    # a plain unknown name still lists the presets
    one_error_line(invoke("tasks", command, "nosuch"), "unknown task 'nosuch'")


# --- 2. tasks check must check something ---------------------------------------------------
@pytest.mark.parametrize(
    ("series", "message"),
    [
        (["K=0,1,nan,2,3"], "value 3 of series 'K' is nan"),
        (["K=0,1,1,inf,3"], "value 4 of series 'K' is inf"),
        (["K=0,1,1,2,-inf"], "value 5 of series 'K' is -inf"),
    ],
)
def test_tasks_check_refuses_non_finite_series(series, message):
    args = [a for s in series for a in ("--series", s)]
    one_error_line(invoke("tasks", "check", "--task", "fibonacci", *args), message)


def test_tasks_check_refuses_a_relation_it_could_not_check():
    # two values: the Fibonacci relation (reaching back 2 steps) has no step to check
    one_error_line(
        invoke("tasks", "check", "--task", "fibonacci", "--series", "K=0,1"),
        "could not be checked at any step: K[t] = K[t-1] + K[t-2]",
    )
    # seed: X has too few values for its relation, K is fine
    result = invoke("tasks", "check", "--task", "seed", "--series", "X=1,1", "--series", "K=0,3")
    one_error_line(result, "could not be checked at any step: X[t] = X[t-1] + X[t-2]")


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-inf", "-1"])
def test_tasks_check_refuses_a_tolerance_that_is_not_a_finite_number(tolerance):
    result = invoke(
        "tasks", "check", "--task", "fibonacci", "--series", "K=0,1,1,2,3,9", "--tolerance",
        tolerance,
    )  # fmt: skip
    one_error_line(result, f"tolerance == {float(tolerance)!r}, must be a finite number >= 0")


def test_tasks_check_still_passes_and_fails_on_good_input():
    ok = invoke("tasks", "check", "--task", "fibonacci", "--series", "K=0,1,1,2,3,5")
    assert ok.exit_code == 0 and "True" in ok.output
    bad = invoke("tasks", "check", "--task", "fibonacci", "--series", "K=0,1,1,2,3,6")
    assert bad.exit_code == 1 and "at step 5 the relation gives 5, the data has 6" in bad.output


# --- 3. TOML that reads back; task names ---------------------------------------------------
def test_to_toml_escapes_control_characters_and_reads_back(tmp_path):
    nasty = 'a"b\\c\x01\x1b[31m\x7f\u0085é'
    original = spec(name="ok-name", description=nasty + "\nsecond line\ttab")
    text = original.to_toml()
    assert "\x7f" not in text and "\x1b" not in text and "\x01" not in text
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    back = TaskSpec.from_toml(path)
    assert back == original and back.description == original.description
    assert tomllib.loads(text)["description"] == nasty + "\nsecond line\ttab"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 300, r"at most 64 characters \(it has 300\)"),
        ("bad\x1bname", "must not contain control characters"),
        ("bad\x7fname", "must not contain control characters"),
        ("two\nlines", "must not contain control characters"),
        ("\ud800", "not valid Unicode"),
    ],
)
def test_task_names_are_limited(name, message):
    with pytest.raises(TaskSpecError, match=message):
        spec(name=name)


def test_a_64_character_name_is_fine_and_round_trips(tmp_path):
    long = "n" * 64
    path = tmp_path / "t.toml"
    path.write_text(spec(name=long).to_toml())
    assert TaskSpec.from_toml(path).name == long


def test_description_with_a_lone_surrogate_is_refused():
    with pytest.raises(TaskSpecError, match="description .* not valid Unicode"):
        spec(description="x\udc80")


# --- 4. task-file rules in the messages ----------------------------------------------------
def test_missing_length_says_it_is_required():
    data = spec().to_dict()
    del data["length"]
    with pytest.raises(TaskSpecError, match=r"missing required keys \['length'\]"):
        TaskSpec.from_dict(data)


def test_one_initial_value_is_repeated_and_the_message_says_the_rule():
    assert spec(init={"K": [0.5]}).init == {"K": [0.5, 0.5]}
    assert spec(init={"K": 0.5}).init == {"K": [0.5, 0.5]}
    with pytest.raises(TaskSpecError) as info:
        spec(init={"K": [0, 1, 2]})
    assert str(info.value) == (
        "series 'K' needs 2 initial values (its relation reaches back to t-2), got 3; "
        "give 2 values (for steps 0 .. 1) or one value, which is used for every step"
    )
    with pytest.raises(TaskSpecError) as info:
        spec(relations=["K[t] = 0.5*K[t-1] + normal(1)"], init={"K": [0, 1]})
    assert str(info.value) == (
        "series 'K' needs 1 initial value (its relation reaches back to t-1), got 2; "
        "give exactly 1 value (for step 0)"
    )


def test_the_docstring_states_the_rules():
    doc = TaskSpec.__doc__
    assert "length" in doc and "required" in doc
    assert "one value" in doc and "repeated" in doc and "error" in doc


# --- 5. probe targets that cannot be evaluated ---------------------------------------------
@pytest.fixture(scope="module")
def seed_data():
    return generate(get_preset("seed"), n_sequences=3, seed=0)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("1/0", "target '1/0' is not finite at any step"),
        ("1e308*K[t]*10", r"target '1e\+308\*K\[t\]\*10' is not finite at 60 of 60 steps"),
        ("K[t]**400", r"target 'K\[t\]\*\*400' is not finite at \d+ of 60 steps"),
        ("exp(K[t]*1000)", r"is not finite at \d+ of 60 steps"),
    ],
)
def test_targets_that_divide_by_zero_or_overflow_are_one_data_error(seed_data, target, message):
    with pytest.raises(DataError, match=message) as info:
        make_targets(seed_data, ["K[t]", target])
    assert "division by zero or overflow" in str(info.value)


def test_a_target_that_divides_by_zero_at_one_step_names_the_count():
    raw = {"A": np.array([[1.0, 2.0, 0.0, 4.0, 5.0]])}
    ds = dataset_from_raw(raw, inputs=["A"], predict=["A"])
    with pytest.raises(DataError, match=r"target '1/A\[t\]' is not finite at 1 of 4 steps"):
        make_targets(ds, ["1/A[t]"])
    tg = make_targets(ds, ["A[t]", "2*A[t-1]"])  # finite targets are unaffected
    assert ds.length == 4  # the last step is the horizon target
    assert tg.steps.tolist() == [1, 2, 3]
    assert tg.values.to_numpy().tolist() == [[2, 2], [0, 4], [4, 0]]


# --- 6. sweep help ---------------------------------------------------------------------------
def test_sweep_help_shows_training_defaults():
    out = " ".join(invoke("sweep", "--help").output.split())
    assert f"[default: {TrainConfig.patience};" in out
    assert f"[default: {TrainConfig.lr};" in out
    assert f"[default: {TrainConfig.batch_size};" in out
    assert "CPU cores to use (worker processes, one torch thread each)" in out


def test_a_data_task_from_a_long_file_name_gets_a_valid_name(tmp_path):
    from unitprobe.tasks import DataSource, training_dataset

    path = tmp_path / ("series-" + "x" * 120 + ".csv")
    path.write_text("A,B\n" + "\n".join(f"{i},{2 * i % 7}" for i in range(40)) + "\n")
    dataset = training_dataset(None, DataSource(path, window=10, stride=10), 4, 0)
    assert dataset.spec.name == ("series-" + "x" * 120)[:64]
