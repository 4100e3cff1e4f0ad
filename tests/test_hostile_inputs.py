"""Hostile inputs: no hang, no unbounded read, no traceback; one clean ``Error:`` line."""

from __future__ import annotations

import importlib
import os
import zipfile

import pytest
import torch
from click.testing import CliRunner

import unitprobe.cli.train as T
import unitprobe.model.checkpoint as C
from unitprobe.cli import COMMANDS, main, one_line
from unitprobe.errors import CheckpointError, TaskSpecError
from unitprobe.model.checkpoint import load, save
from unitprobe.model.planted import planted_lstm
from unitprobe.tasks import TaskSpec, generate, get_preset, parse_relation, read_task_file


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result, message, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and message in last, last


@pytest.fixture
def payload(tmp_path):
    model = planted_lstm(2, [(0, 0), (1, 0)], n_outputs=2)
    save(tmp_path / "m.pt", model, get_preset("seed"))
    return torch.load(tmp_path / "m.pt", weights_only=True)


# ----------------------------------------------------------------------------- files


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load(fifo)
    with pytest.raises(TaskSpecError, match="not a regular file"):
        read_task_file(fifo)
    with pytest.raises(CheckpointError, match="not a regular file"):
        load("/dev/zero")


def test_a_symlink_loop_is_not_reported_missing(tmp_path):
    (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "a.pt")
    assert "does not exist" not in str(err.value) and "symbolic links" in str(err.value)


def test_an_archive_that_unpacks_too_large_is_refused_before_loading(tmp_path, monkeypatch):
    model = planted_lstm(2, [(0, 0), (1, 0)], n_outputs=2)
    save(tmp_path / "m.pt", model, get_preset("seed"))
    size = sum(i.file_size for i in zipfile.ZipFile(tmp_path / "m.pt").infolist())
    monkeypatch.setattr(C, "MAX_TENSOR_BYTES", size - 1)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(CheckpointError, match="unpacks to .* bytes, more than"):
        load(tmp_path / "m.pt")


def test_stride_zero_weights_claiming_a_huge_model_are_refused(tmp_path):
    h = 200_000
    state = {
        "lstm.weight_ih_l0": torch.zeros(1).expand(4 * h, 2),
        "lstm.weight_hh_l0": torch.zeros(1).expand(4 * h, h),
        "lstm.bias_ih_l0": torch.zeros(1).expand(4 * h),
        "lstm.bias_hh_l0": torch.zeros(1).expand(4 * h),
        "readout.weight": torch.zeros(1).expand(2, h),
        "readout.bias": torch.zeros(2),
    }
    torch.save(state, tmp_path / "f.pt")
    assert (tmp_path / "f.pt").stat().st_size < 10_000
    with pytest.raises(CheckpointError, match="parameters, more than"):
        load(tmp_path / "f.pt", task=get_preset("seed"))


def test_float8_weights_are_one_error(tmp_path, payload):
    state = dict(payload["state_dict"])
    state["readout.bias"] = state["readout.bias"].to(torch.float8_e4m3fn)
    torch.save({**payload, "state_dict": state}, tmp_path / "f8.pt")
    with pytest.raises(CheckpointError, match="float8_e4m3fn, a float type unitprobe does not"):
        load(tmp_path / "f8.pt")


@pytest.mark.parametrize("key", ["history", "task", "norm"])
def test_deeply_nested_entries_are_refused(tmp_path, payload, key):
    deep: list = []
    for _ in range(100):
        deep = [deep]
    entry = {"relations": deep} if key == "task" else {"x": deep}
    torch.save({**payload, key: entry}, tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match=f"'{key}' nests lists or dicts more than"):
        load(tmp_path / "deep.pt")


def test_a_stored_norm_is_checked(tmp_path, payload):
    torch.save({**payload, "norm": {"K": [0.0, 0.0]}}, tmp_path / "n.pt")
    with pytest.raises(CheckpointError, match="scale > 0"):
        load(tmp_path / "n.pt")


def test_a_deeply_nested_toml_array_is_one_error(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("name = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(TaskSpecError, match="nests arrays or tables"):
        read_task_file(path)


# ----------------------------------------------------------------------------- tasks


def test_uniform_over_the_whole_float_range_is_refused():
    with pytest.raises(TaskSpecError, match="high - low overflows"):
        parse_relation("A[t] = uniform(-1e308, 1e308)")


def test_homoglyph_series_names_are_refused():
    with pytest.raises(TaskSpecError, match=r"non-ASCII character '\\uff38' \(U\+FF38\)"):
        parse_relation("\uff38[t] = 1")
    with pytest.raises(TaskSpecError, match="non-ASCII"):
        parse_relation("X[t] = \uff38[t-1]", ["X"])
    assert parse_relation("X[t] = 1  # é in a comment is fine").name == "X"


def test_terminal_escapes_in_names_are_never_printed_raw():
    with pytest.raises(TaskSpecError) as err:
        parse_relation("X[t] = Y\x1b[31m[t]", ["X"])
    assert "\x1b" not in str(err.value) and "\\x1b" in str(err.value)
    line = one_line(ValueError("name \x1b]0;owned\x07 here"))
    assert "\x1b" not in line and "\x07" not in line and "\\x1b" in line


def test_a_huge_burn_in_is_refused_at_once():
    spec = TaskSpec(name="slow", relations=["A[t] = A[t-1] + 1"], init={"A": [0]},
                    inputs=["A"], predict=["A"], length=10, burn_in=10**7)  # fmt: skip
    with pytest.raises(TaskSpecError, match="steps per sequence .* more than 100000"):
        generate(spec, 2, 0)


# ----------------------------------------------------------------------------- command line


def test_a_huge_message_is_cut():
    line = one_line(ValueError("x" * 900_000))
    assert len(line) <= 500 and line.endswith("(900000 characters in all)")


def test_a_seed_beyond_64_bits_is_a_usage_error():
    result = invoke("train", "--task", "seed", "--seed", 2**64, "--out", "x.pt")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_too_many_units_is_one_error_before_training(tmp_path):
    result = invoke("train", "--task", "seed", "--units", 100_000, "--out", tmp_path / "m.pt")
    one_error_line(result, "parameters, more than")
    assert not list(tmp_path.iterdir())


def test_a_task_file_given_as_task_says_task_file(tmp_path):
    result = invoke("train", "--task", "mytask.toml", "--out", tmp_path / "m.pt")
    assert result.exit_code == 2 and "--task-file mytask.toml" in result.output


def test_out_of_memory_does_not_blame_the_sequences(monkeypatch, tmp_path):
    def boom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(T, "training_dataset", boom)
    result = invoke("train", "--task", "seed", "--out", tmp_path / "m.pt")
    one_error_line(result, "out of memory")
    assert "fewer or shorter sequences" not in result.output


def test_help_is_not_cut_and_documents_every_option():
    result = invoke("--help")
    listed = " ".join(result.output.split())
    assert "…" not in listed
    for _, text in COMMANDS.values():
        assert " ".join(text.split()) in listed
    train_help = invoke("train", "--help").output
    assert "Sequences per gradient step" in train_help and "--split-at" in train_help
    assert "a smaller stride makes them share" in " ".join(train_help.split())


def test_task_names_complete_in_the_shell():
    ctx = main.make_context("unitprobe", ["train"], resilient_parsing=True)
    train = main.get_command(ctx, "train")
    option = next(p for p in train.params if p.name == "task_name")
    names = [item.value for item in option.shell_complete(ctx, "fib")]
    assert names == ["fibonacci"]


@pytest.mark.parametrize("command", ["probe", "ablate", "attribute"])
def test_method_commands_pin_torch_threads(command, monkeypatch, tmp_path):
    model = planted_lstm(2, [(0, 0), (1, 0)], n_outputs=2)
    save(tmp_path / "m.pt", model, get_preset("seed"))
    seen = []
    module = importlib.import_module(f"unitprobe.cli.{command}")
    name = {"probe": "probe_model", "ablate": "ablation_table", "attribute": "attribution_tables"}

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise TaskSpecError("stop here")

    monkeypatch.setattr(module, name[command], record)
    before = torch.get_num_threads()
    out = tmp_path / ("o" if command == "attribute" else "o.csv")
    result = invoke(command, tmp_path / "m.pt", "--n-sequences", 6, "--jobs", 3, "--out", out)
    one_error_line(result, "stop here")
    assert seen == [3] and torch.get_num_threads() == before


def test_torch_threads_also_pins_numpy_blas():
    import threadpoolctl

    from unitprobe.model.threads import torch_threads

    def blas_threads():
        return [
            i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"
        ]

    before = blas_threads()
    with torch_threads(1):
        inside = blas_threads()
        assert torch.get_num_threads() == 1
    assert inside and set(inside) == {1}
    assert blas_threads() == before
