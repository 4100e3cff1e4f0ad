"""Bad input on the command line: one line ``Error: ...``, a non-zero exit, nothing changed.

Every case runs one command in a scratch directory holding a good checkpoint and a zoo of
broken files, and checks that

- the exit status is 1 (an error the user can act on) or 2 (a usage error, from click),
- the last line of output starts with ``Error:`` and names what was wrong,
- no traceback is printed,
- every file in the directory is byte-for-byte what it was, and no file was added (no
  checkpoint, no half-written results, no temporary or staging files).
"""

from __future__ import annotations

import os
import pickle
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.model.checkpoint import save
from unitprobe.model.planted import planted_lstm
from unitprobe.model.train import TrainConfig, train_task
from unitprobe.tasks import get_preset

FAST = "--n-sequences 8 --n-permutations 2 --n-controls 0 -q"


def invoke(args: list[str]):
    return CliRunner().invoke(main, args)


def snapshot(directory):
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


class _RunsCode:
    """Unpickling this creates a file: it stands for arbitrary code in a hostile checkpoint."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trained_state():
    """A small trained checkpoint of the seed task, as bytes (written into each workspace)."""
    _, result = train_task(
        get_preset("seed"), TrainConfig(n_units=3, epochs=2, seed=0), n_sequences=16
    )
    return result


def _task_file(body: str) -> str:
    return body.strip() + "\n"


TASK_FILES = {
    "syntax.toml": 'name = "x"\nrelations = ["A[t] = A[t-1]"\n',
    "hostile.toml": _task_file(
        """
name = "x"
relations = ["A[t] = __import__('os').system('touch pwned')"]
inputs = ["A"]
predict = ["A"]
length = 5
"""
    ),
    "dunder.toml": _task_file(
        """
name = "x"
relations = ["A[t] = A.__class__"]
inputs = ["A"]
predict = ["A"]
length = 5
"""
    ),
    "unknown.toml": _task_file(
        """
name = "x"
relations = ["A[t] = A[t-1] + B[t-1]"]
inputs = ["A"]
predict = ["A"]
length = 5
[init]
A = 0
"""
    ),
    "lookahead.toml": _task_file(
        """
name = "x"
relations = ["A[t] = A[t+1]"]
inputs = ["A"]
predict = ["A"]
length = 5
"""
    ),
    "overflow.toml": _task_file(
        """
name = "boom"
relations = ["A[t] = 10*A[t-1]*A[t-1]"]
inputs = ["A"]
predict = ["A"]
length = 40
[init]
A = 2
"""
    ),
    "zero.toml": _task_file(
        """
name = "x"
relations = ["A[t] = A[t-1]"]
inputs = ["A"]
predict = ["A"]
length = 0
[init]
A = 1
"""
    ),
    "empty.toml": "",
    "huge_int.toml": _task_file(
        f"""
name = "x"
relations = ["A[t] = A[t-1] + normal(1)"]
inputs = ["A"]
predict = ["A"]
length = 5
[init]
A = {10**400}
"""
    ),
    "huge_length.toml": _task_file(
        """
name = "long"
relations = ["A[t] = A[t-1] + normal(1)"]
inputs = ["A"]
predict = ["A"]
length = 10_000_000
[init]
A = 0
"""
    ),
    "data_init.toml": _task_file(
        """
name = "obs"
relations = []
inputs = ["A"]
[init]
A = 0
"""
    ),
    "data.toml": _task_file(
        """
name = "obs"
relations = []
inputs = ["K", "X"]
"""
    ),
}

ROWS = "".join(f"{k},{2 * k + 1}\n" for k in range(40))
CSV_FILES = {
    "k_only.csv": "K\n" + "".join(f"{k}\n" for k in range(40)),
    "text.csv": "K,X\n1,2\n3,4\n5,abc\n" + ROWS,
    "gap.csv": "K,X\n1,2\n3,\n" + ROWS,
    "one_row.csv": "K,X\n1,2\n",
    "dup_header.csv": "K,X,K\n1,2,3\n4,5,6\n",
    "semicolon.csv": "K;X\n" + ROWS.replace(",", ";"),
    "ragged.csv": "K,X\n1,2\n3,4,5\n",
    "inf.csv": "K,X\n1,2\n3,inf\n" + ROWS,
    "dated.csv": "Date,K,X\n" + "".join(f"2020-01-{d + 1:02d},{d},{2 * d}\n" for d in range(28)),
    "long.csv": "K,X\n" + ROWS,
    "empty.csv": "",
}


@pytest.fixture
def workspace(tmp_path, monkeypatch, trained_state):
    """A scratch directory with a good checkpoint, broken checkpoints, task files and CSVs."""
    monkeypatch.chdir(tmp_path)
    model = trained_state.model
    save(tmp_path / "m.pt", model, get_preset("seed"), metrics=trained_state.metrics)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "foreign.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    good = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "notes.pt").write_text("these are not weights\n")
    broken = {
        "missing_key.pt": {k: v for k, v in state.items() if k != "lstm.bias_hh_l0"},
        "extra_key.pt": {**state, "lstm.weight_hr_l0": torch.zeros(3)},
        "wrong_shape.pt": {**state, "lstm.weight_hh_l0": torch.zeros(12, 5)},
        "nan_weight.pt": {
            **state,
            "readout.weight": torch.full_like(state["readout.weight"], np.nan),
        },
        "inf_weight.pt": {
            **state,
            "lstm.bias_ih_l0": torch.full_like(state["lstm.bias_ih_l0"], np.inf),
        },
        "int_weight.pt": {**state, "readout.bias": torch.zeros(2, dtype=torch.int64)},
        "not_lstm.pt": {"conv.weight": torch.zeros(2, 2)},
        "sparse_weight.pt": {**state, "readout.weight": state["readout.weight"].to_sparse()},
        "meta_weight.pt": {**state, "lstm.weight_ih_l0": torch.empty(4 * 10**9, 2, device="meta")},
    }
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    broken["config_mismatch.pt"] = {**payload, "config": {**payload["config"], "n_units": 10**9}}
    broken["bad_history.pt"] = {**payload, "history": ["not", "a", "dict"]}
    for name, obj in broken.items():
        torch.save(obj, tmp_path / name)
    torch.save({"lstm.weight_ih_l0": _RunsCode(tmp_path / "pwned")}, tmp_path / "hostile.pt")
    with open(tmp_path / "hostile_pickle.pt", "wb") as fh:
        pickle.dump({"lstm.weight_ih_l0": _RunsCode(tmp_path / "pwned")}, fh, protocol=2)
    for name, text in {**TASK_FILES, **CSV_FILES}.items():
        (tmp_path / name).write_text(text)
    results = tmp_path / "results"
    results.mkdir()
    (results / "mine.txt").write_text("keep me\n")
    previous = tmp_path / "previous"  # a previous unitprobe result: its marker lists its files
    previous.mkdir()
    (previous / "roles.csv").write_text("layer,unit,role\n")
    (previous / ".unitprobe-result").write_text(
        '{"format": "unitprobe-result", "files": ["roles.csv"]}'
    )
    (tmp_path / "only_probes").mkdir()
    (tmp_path / "only_probes" / "probes.csv").write_text("layer,unit,state,target,r2\n")
    (tmp_path / "existing.csv").write_text("keep me too\n")
    return tmp_path


@dataclass(frozen=True)
class Case:
    args: str
    message: str
    exit_code: int = 1


CASES = {
    # checkpoints
    "checkpoint missing": Case("probe nope.pt --out p.csv", "nope.pt does not exist"),
    "checkpoint empty": Case("probe empty.pt --out p.csv", "is empty (0 bytes)"),
    "checkpoint truncated": Case("analyze truncated.pt --out r", "truncated or corrupt"),
    "checkpoint not torch": Case("ablate notes.pt --out a.csv", "is not a torch file"),
    "checkpoint is a directory": Case("probe results --out p.csv", "is a directory"),
    "state_dict without task": Case(
        "probe foreign.pt --out p.csv", "plain state_dict with no task"
    ),
    "state_dict missing key": Case(
        "probe missing_key.pt --task seed --out p.csv", "missing keys: lstm.bias_hh_l0"
    ),
    "state_dict extra key": Case(
        "attribute extra_key.pt --task seed --out a.csv",
        "'lstm.weight_hr_l0' shows an LSTM with proj_size",
    ),
    "state_dict wrong shape": Case(
        "probe wrong_shape.pt --task seed --out p.csv",
        "lstm.weight_hh_l0 has shape (12, 5), expected (12, 3)",
    ),
    "state_dict NaN weights": Case(
        "probe nan_weight.pt --task seed --out p.csv", "readout.weight has 6 NaN or infinite"
    ),
    "state_dict inf weights": Case(
        "analyze inf_weight.pt --task seed --out r2", "lstm.bias_ih_l0 has 12 NaN or infinite"
    ),
    "state_dict int weights": Case(
        "probe int_weight.pt --task seed --out p.csv", "dtype torch.int64, expected a float"
    ),
    "state_dict not an LSTM": Case(
        "probe not_lstm.pt --task seed --out p.csv", "neither a unitprobe checkpoint nor"
    ),
    "state_dict sparse weights": Case(
        "probe sparse_weight.pt --task seed --out p.csv", "is a torch.sparse_coo tensor"
    ),
    "state_dict meta tensor": Case(
        "probe meta_weight.pt --task seed --out p.csv", "is a meta tensor: it has a shape but no"
    ),
    "config does not match weights": Case(
        "analyze config_mismatch.pt --out r2", "does not match the weights"
    ),
    "history not a dict": Case("probe bad_history.pt --out p.csv", "'history' is a list"),
    "task does not fit model": Case(
        "probe foreign.pt --task fibonacci --out p.csv", "has 1 input(s) (K), but the model"
    ),
    "hostile pickle (zip)": Case(
        "probe hostile.pt --task seed --out p.csv", "contains pickled Python objects"
    ),
    "hostile pickle (legacy)": Case(
        "probe hostile_pickle.pt --task seed --out p.csv", "contains pickled Python objects"
    ),
    # task files
    "task file TOML syntax": Case("tasks show --task-file syntax.toml", "is not valid TOML"),
    "task file hostile call": Case(
        "tasks show --task-file hostile.toml", "call of '__import__('os').system'"
    ),
    "task file attribute access": Case(
        "train --task-file dunder.toml --out new.pt", "attribute access 'A.__class__'"
    ),
    "task file unknown series": Case(
        "train --task-file unknown.toml --out new.pt", "unknown series 'B'"
    ),
    "task file look-ahead": Case("tasks show --task-file lookahead.toml", "look-ahead 'A[t+1]'"),
    "task file overflows float32": Case(
        "train --task-file overflow.toml --out new.pt", "series 'A' overflows float32 at step"
    ),
    "task file zero length": Case(
        "train --task-file zero.toml --out new.pt",
        "length == 0, must be an integer in [1, 10,000,000]",
    ),
    "task file empty": Case("tasks show --task-file empty.toml", "missing required keys"),
    "task file 400-digit integer": Case(
        "tasks show --task-file huge_int.toml", "init.A is an integer of 401 digits"
    ),
    "task too large to generate": Case(
        "train --task-file huge_length.toml --out new.pt", "= 5.12e+09 values, more than"
    ),
    "data task with init": Case(
        "tasks show --task-file data_init.toml", "a data task (relations = []) takes no ['init']"
    ),
    "data task without data": Case(
        "train --task-file data.toml --out new.pt", "is a data task: its series (K, X)"
    ),
    "unknown preset": Case("tasks show nope", "unknown task 'nope'"),
    "task check of data task": Case(
        "tasks check --task-file data.toml --data long.csv", "has no relations to check"
    ),
    # CSV files
    "CSV lacks a column": Case(
        "probe m.pt --data k_only.csv --window 10 --out p.csv -q",
        "lacks the columns ['X'] that task 'seed' needs",
    ),
    "CSV text in a number column": Case(
        "tasks check --task seed --data text.csv", "non-numeric value 'abc' in column 'X' at line 4"
    ),
    "CSV gap without --fill": Case(
        "tasks check --task seed --data gap.csv",
        "missing value in column 'X' at line 3 (sequence 0); pass fill='interpolate'",
    ),
    "CSV single row": Case("tasks check --task seed --data one_row.csv", "has 1 step"),
    "CSV duplicate header": Case(
        "tasks check --task seed --data dup_header.csv", "duplicate column names ['K']"
    ),
    "CSV other delimiter": Case(
        "tasks check --task seed --data semicolon.csv", "looks ';'-delimited: pass sep=';'"
    ),
    "CSV ragged row": Case(
        "tasks check --task seed --data ragged.csv", "line 3 has 3 fields, the header has 2"
    ),
    "CSV infinite value": Case(
        "tasks check --task seed --data inf.csv", "value 'inf' in column 'X' at line 3"
    ),
    "CSV date column not declared": Case(
        "train --data dated.csv --out new.pt", "pass time_col='Date' (--time-col)"
    ),
    "CSV empty": Case("train --data empty.csv --out new.pt", "is empty"),
    "CSV one series, no windows": Case(
        f"probe m.pt --data long.csv --out p.csv {FAST.replace('--n-sequences 8', '')}",
        "the data have 1 sequence; probes (cross-validated over sequences) need at least 5: "
        "cut the CSV's series into windows with --window",
    ),
    "CSV window longer than series": Case(
        "train --data long.csv --window 100 --out new.pt", "shorter than window == 100"
    ),
    "CSV options without --data": Case(
        "train --task seed --window 10 --out new.pt", "--window given without --data", 2
    ),
    "CSV unknown fill": Case(
        "train --data gap.csv --fill zero --out new.pt", "'zero' is not one of", 2
    ),
    # option values
    "zero units": Case("train --task seed --units 0 --out new.pt", "0 is not in the range", 2),
    "negative seed": Case("train --task seed --seed -1 --out new.pt", "-1 is not in the range", 2),
    "zero learning rate": Case("train --task seed --lr 0 --out new.pt", "--lr", 2),
    "unknown ablation mode": Case(
        "analyze m.pt --ablation foo --out r", "'foo' is not one of zero, mean, resample", 2
    ),
    "unknown attribution method": Case(
        "analyze m.pt --attribution shap --out r", "'shap' is not one of integrated_gradients", 2
    ),
    "unknown figure format": Case("analyze m.pt --format gif --out r", "'gif' is not one of", 2),
    "unknown state": Case("probe m.pt --state x --out p.csv", "'x' is not one of", 2),
    "unknown ablate mode": Case("ablate m.pt --modes zero,foo --out a.csv", "'foo'", 2),
    "empty mode list": Case("ablate m.pt --modes , --out a.csv", "names nothing", 2),
    "repeated unit in group": Case(
        "ablate m.pt --group 1+1 --out a.csv", "names a unit more than once", 2
    ),
    "unit out of range": Case(
        f"ablate m.pt --group 0+7 --out a.csv {FAST.split(' --n-perm')[0]}", "unit 7 out of range"
    ),
    "unknown attribute method": Case("attribute m.pt --methods shap --out a.csv", "'shap'", 2),
    "too few sequences to probe": Case(
        "probe m.pt --n-sequences 3 --out p.csv", "the data have 3 sequences"
    ),
    "look-ahead target": Case(f"probe m.pt --targets K[t+1] --out p.csv {FAST}", "K[t+1]"),
    "both --task and --task-file": Case(
        "train --task seed --task-file data.toml --out new.pt", "not both", 2
    ),
    # outputs
    "output dir not empty": Case("analyze m.pt --out results", "exists and is not empty"),
    "output dir is a file": Case("analyze m.pt --out existing.csv", "is not a directory"),
    "output under a file": Case("analyze m.pt --out m.pt/r", "is not a directory"),
    "output dir not writable": Case(
        "analyze m.pt --out /proc/unitprobe-results", "/proc is not writable"
    ),
    "output file exists": Case(
        "probe m.pt --out existing.csv", "existing.csv already exists; pass --overwrite"
    ),
    "output file is a directory": Case("ablate m.pt --out results", "is a directory"),
    "checkpoint not writable": Case(
        "train --task seed --out /proc/unitprobe.pt", "/proc is not writable"
    ),
    "failed analysis keeps old results": Case(
        f"analyze m.pt --out previous --overwrite --targets K[t-99] {FAST}",
        "targets reach back 99 steps",
    ),
    "overwrite never deletes a user's files": Case(
        f"analyze m.pt --out results --overwrite {FAST}", "is not a previous unitprobe result"
    ),
    "sweep: unknown task": Case(
        "sweep --task seed,nope --units 1,2 --seeds 1 --out SW", "unknown task 'nope'"
    ),
    "sweep: zero units": Case("sweep --task seed --units 0,1 --out SW", "0 is not >= 1", 2),
    "sweep: units not numbers": Case("sweep --task seed --units 1,x --out SW", "'x'", 2),
    "sweep: zero seeds": Case("sweep --task seed --units 1 --seeds 0 --out SW", "0 is not", 2),
    "sweep: no task": Case("sweep --units 1 --out SW", "give --task NAMES", 2),
    "sweep: data task": Case(
        "sweep --task-file data.toml --units 1 --out SW", "is a data task; a sweep generates"
    ),
    "sweep: output is a file": Case(
        "sweep --task seed --units 1 --out existing.csv", "exists and is not a directory"
    ),
    "sweep: output under a file": Case(
        "sweep --task seed --units 1 --out m.pt/SW", "m.pt is not a directory"
    ),
    "figures: results lack a table": Case("figures only_probes", "has no roles.csv"),
    "figures: unknown format": Case("figures only_probes --format gif", "'gif'", 2),
    "figures: no such directory": Case("figures nowhere", "does not exist", 2),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_error_line_and_changes_nothing(workspace, name):
    case = CASES[name]
    before = snapshot(workspace)
    result = invoke(shlex.split(case.args))
    lines = result.output.strip().splitlines()
    assert result.exit_code == case.exit_code, result.output
    assert "Traceback" not in result.output
    assert lines and lines[-1].startswith("Error:"), result.output
    assert case.message in lines[-1], lines[-1]
    assert snapshot(workspace) == before, "files were changed, added or left behind"
    assert not (workspace / "pwned").exists()


def test_the_matrix_is_large_and_covers_every_command():
    assert len(CASES) >= 40
    commands = {shlex.split(c.args)[0] for c in CASES.values()}
    assert commands >= {
        "train",
        "analyze",
        "probe",
        "ablate",
        "attribute",
        "tasks",
        "figures",
        "sweep",
    }


def test_unsafe_load_really_runs_the_pickled_code(workspace):
    """The danger --unsafe-load accepts: unpickling ran code (here, it only created a file)."""
    result = invoke(["probe", "hostile.pt", "--task", "seed", "--unsafe-load", "--out", "p.csv"])
    assert (workspace / "pwned").exists()  # the file's code ran: trusted files only
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert not (workspace / "p.csv").exists()


def test_cli_choices_match_the_library():
    from unitprobe.cli import ablate, analyze, attribute
    from unitprobe.config import AblationConfig, AttributionConfig
    from unitprobe.schemas import ABLATION_MODES, ATTRIBUTION_METHODS

    # the CLI takes its vocabularies from unitprobe.schemas (the one source), not a copy
    assert ablate.ABLATION_MODES is analyze.ABLATION_MODES is ABLATION_MODES
    assert attribute.ATTRIBUTION_METHODS is analyze.ATTRIBUTION_METHODS is ATTRIBUTION_METHODS
    # ... and the library accepts every one of them
    assert AblationConfig(modes=ABLATION_MODES).modes == ABLATION_MODES
    assert AttributionConfig(methods=ATTRIBUTION_METHODS).methods == ATTRIBUTION_METHODS


def test_divergent_training_stops_with_the_epoch_and_writes_no_checkpoint(workspace):
    before = snapshot(workspace)
    result = invoke(
        shlex.split("train --task seed --units 2 --epochs 3 --n-sequences 16 --lr 1e20 --out d.pt")
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: training diverged at epoch 1")
    assert "try a smaller learning rate than 1e+20 (--lr)" in last
    assert snapshot(workspace) == before


def test_a_dead_unit_has_undefined_r2_with_its_reason(tmp_path):
    """A foreign state_dict whose unit 2 is dead (h = 0): r2 NaN, note 'constant unit'."""
    model = planted_lstm(2, [(0, 0), (1, 0), None], n_outputs=2)
    torch.save(model.state_dict(), tmp_path / "dead.pt")
    out = tmp_path / "probes.csv"
    result = invoke(
        ["probe", str(tmp_path / "dead.pt"), "--task", "seed", "--out", str(out), *FAST.split()]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    dead = table[table["unit"].astype(str) == "2"]
    alive = table[table["unit"].astype(str).isin(["0", "1"])]
    assert len(dead) > 0 and dead["r2"].isna().all()
    assert dead["note"].str.startswith("constant unit").all()
    assert alive["r2"].notna().all()
    k_now = alive[(alive["unit"].astype(str) == "0") & (alive["target"] == "K[t]")]
    assert k_now["r2"].iloc[0] > 0.95  # the live tap holds K[t]: h ≈ tanh(tanh(0.1 * K[t]))


@pytest.mark.skipif(os.name != "posix", reason="/proc exists on Linux only")
def test_proc_is_not_writable_even_for_root():
    from unitprobe._utils import check_output_file
    from unitprobe.errors import UnitprobeError

    with pytest.raises(UnitprobeError, match="is not writable"):
        check_output_file(Path("/proc/unitprobe.csv"), overwrite=False)


@pytest.mark.slow
def test_sweep_command_runs_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = "sweep --task delay-1 --units 1,2 --seeds 1 --quick --n-sequences 16 --epochs 2 --out SW"
    first = invoke(shlex.split(args))
    assert first.exit_code == 0, first.output
    table = pd.read_csv(tmp_path / "SW" / "sweep.csv")
    assert table[["task", "units", "seed", "status"]].values.tolist() == [
        ["delay-1", 1, 0, "ok"],
        ["delay-1", 2, 0, "ok"],
    ]
    again = invoke(shlex.split(args))
    assert again.exit_code == 0 and "2 finished earlier, 0 to run" in again.output
    rerun = pd.read_csv(tmp_path / "SW" / "sweep.csv")
    pd.testing.assert_frame_equal(rerun, table)
