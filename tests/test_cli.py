import pytest
import torch
from click.testing import CliRunner

from unitprobe import __version__
from unitprobe.cli import main
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
