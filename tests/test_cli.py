import subprocess
import sys

import click
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe import __version__, schemas
from unitprobe.cli import COMMANDS, main
from unitprobe.config import AblationConfig, AnalyzeConfig, ProbeConfig
from unitprobe.tasks import TaskSpec, get_preset


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, message):
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: "), result.output
    assert message in lines[-1], lines[-1]


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_tasks_list_and_show_round_trip_through_toml(tmp_path):
    listed = invoke("tasks", "list")
    assert listed.exit_code == 0
    for name in ("fibonacci", "seed", "seed-noisy", "seed-innov", "ar2", "delay-3"):
        assert name in listed.output
    shown = invoke("tasks", "show", "seed", "--toml")
    assert shown.exit_code == 0
    (tmp_path / "seed.toml").write_text(shown.output)
    assert TaskSpec.from_toml(tmp_path / "seed.toml") == get_preset("seed")
    described = invoke("tasks", "show", "--task-file", tmp_path / "seed.toml")
    assert "K[t] = K[t-1] + 2*X[t] + 1" in described.output


def test_tasks_check_shows_which_relation_of_the_answer_fails_and_where():
    result = invoke(
        "tasks", "check", "--task", "seed", "--series", "K=0,1,1,2,3,5", "--series", "X=1,4,7,12,30"
    )
    assert result.exit_code == 1
    assert (
        "FAIL X[t] = X[t-1] + X[t-2]: at step 2 the relation gives 5, the data has 7"
        in result.output
    )
    assert (
        "FAIL K[t] = K[t-1] + 2*X[t] + 1: at step 1 the relation gives 9, the data has 1"
        in result.output
    )
    ok = invoke("tasks", "check", "--task", "fibonacci", "--series", "K=0,1,1,2,3,5,8")
    assert ok.exit_code == 0 and "True" in ok.output


def test_tasks_check_on_a_csv(tmp_path):
    (tmp_path / "k.csv").write_text("K\n1\n1\n2\n3\n5\n9\n")
    result = invoke("tasks", "check", "--task", "fibonacci", "--data", tmp_path / "k.csv")
    assert result.exit_code == 1
    assert "at step 5 the relation gives 8, the data has 9" in result.output


def test_train_writes_a_checkpoint_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "m.pt"
    args = (
        "train",
        "--task",
        "delay-1",
        "--units",
        2,
        "--epochs",
        2,
        "--n-sequences",
        16,
        "--out",
        out,
    )
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "checkpoint:" in result.output
    payload = torch.load(out, weights_only=True)
    assert payload["config"]["n_units"] == 2 and payload["task"]["name"] == "delay-1"
    assert len(payload["history"]["val_loss"]) == 2
    before = out.read_bytes()
    assert_one_line_error(invoke(*args), "already exists; pass --overwrite")
    assert out.read_bytes() == before
    assert invoke(*args, "--overwrite", "--seed", 1).exit_code == 0
    assert out.read_bytes() != before


def test_train_from_a_task_file(tmp_path):
    (tmp_path / "t.toml").write_text(
        'name = "ramp"\nrelations = ["A[t] = 0.9*A[t-1] + normal(0.5)"]\ninputs = ["A"]\n'
        'predict = ["A"]\nlength = 10\n[init]\nA = 0\n'
    )
    result = invoke(
        "train",
        "--task-file",
        tmp_path / "t.toml",
        "--units",
        1,
        "--epochs",
        1,
        "--out",
        tmp_path / "m.pt",
    )
    assert result.exit_code == 0, result.output
    assert "'ramp'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("train", "--task", "nope", "--out", "m.pt"), "unknown task 'nope'"),
        (("train", "--task", "seed", "--out", "missing-dir/m.pt"), "does not exist"),
        (("tasks", "check", "--task", "seed", "--series", "K=1,a"), "K=1,a"),
        (("tasks", "show", "delay-0"), "delay"),
    ],
)
def test_bad_input_is_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke(*args), message)


def test_usage_errors_exit_2():
    result = invoke("train", "--task", "seed", "--task-file", "x.toml", "--out", "m.pt")
    assert result.exit_code == 2
    result = invoke("train", "--task", "seed", "--units", 0, "--out", "m.pt")
    assert result.exit_code == 2 and "0 is not in the range x>=1" in result.output


def test_help_lists_every_command_without_importing_torch():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from unitprobe.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output)\n"
        "print('torch' in sys.modules, 'pandas' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == "False False"
    for name in COMMANDS:
        assert f"  {name} " in done.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_loads_and_its_listed_help_is_its_own(name):
    group = click.Context(main)
    command = main.get_command(group, name)
    assert command is not None and command.name == name
    assert command.get_short_help_str(limit=200) == COMMANDS[name][1]
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output


def test_option_defaults_come_from_the_config_classes():
    from unitprobe.cli.analyze import analyze
    from unitprobe.cli.probe import probe

    def default(command, name):
        return next(p.default for p in command.params if p.name == name)

    for command in (probe, analyze):
        assert default(command, "n_permutations") == ProbeConfig.n_permutations
        assert default(command, "n_controls") == ProbeConfig.n_controls
        assert default(command, "n_splits") == ProbeConfig.n_splits
        assert default(command, "n_sequences") == AnalyzeConfig.n_sequences
    assert default(analyze, "ablation_modes") == ",".join(AblationConfig.modes)
    assert default(analyze, "formats") == ",".join(AnalyzeConfig.formats)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "m.pt"
    result = invoke(
        "train", "--task", "delay-1", "--units", 2, "--epochs", 2, "--n-sequences", 16, "--out", out
    )
    assert result.exit_code == 0, result.output
    return out


def test_probe_writes_the_unit_and_population_tables(tmp_path, small_checkpoint):
    out = tmp_path / "p.csv"
    fast = ("--n-sequences", 10, "--n-permutations", 2, "--n-controls", 0, "-q")
    result = invoke("probe", small_checkpoint, "--out", out, *fast)
    assert result.exit_code == 0, result.output
    units = pd.read_csv(out)
    population = pd.read_csv(tmp_path / "p_population.csv")
    assert list(units.columns) == list(schemas.columns("probes"))
    assert list(population.columns) == list(schemas.columns("population_probes"))
    assert set(units["unit"]) == {0, 1}
    before = out.read_bytes()
    again = invoke("probe", small_checkpoint, "--out", tmp_path / "q.csv", *fast)
    assert again.exit_code == 0 and (tmp_path / "q.csv").read_bytes() == before
    # the population file is refused like --out itself, before any work
    (tmp_path / "r_population.csv").write_text("keep\n")
    assert_one_line_error(
        invoke("probe", small_checkpoint, "--out", tmp_path / "r.csv", *fast), "already exists"
    )
    assert not (tmp_path / "r.csv").exists()


def test_attribute_writes_three_tables_into_a_directory(tmp_path, small_checkpoint):
    out = tmp_path / "attr"
    args = ("attribute", small_checkpoint, "--n-sequences", 8, "--max-sequences", 4, "-q")
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        ".unitprobe-result",  # the marker: a unitprobe result, which --overwrite may replace
        "input_lag.csv",
        "receptive_fields.csv",
        "unit_attribution.csv",
    ]
    assert list(pd.read_csv(out / "input_lag.csv").columns) == list(schemas.columns("input_lag"))
    assert_one_line_error(invoke(*args, "--out", out), "is not empty; pass --overwrite")
    assert invoke(*args, "--out", out, "--overwrite").exit_code == 0


def test_ablate_writes_an_output_column_and_takes_state(tmp_path, small_checkpoint):
    out = tmp_path / "a.csv"
    result = invoke(
        "ablate", small_checkpoint, "--n-sequences", 8, "--modes", "zero", "--state", "c", "-q",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == list(schemas.columns("ablation"))
    assert set(table["mode"]) == {"zero"}
