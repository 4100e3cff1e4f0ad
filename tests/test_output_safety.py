"""Nothing of the user's is ever lost: output directories and files, checked and replaced safely."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from unitprobe import schemas
from unitprobe._utils import (
    MARKER,
    atomic_write,
    check_output_dir,
    staged_output_dir,
    write_csv_atomic,
)
from unitprobe.cli import main
from unitprobe.errors import UnitprobeError
from unitprobe.model.checkpoint import save
from unitprobe.model.planted import planted_lstm
from unitprobe.tasks import get_preset

FAST = ("--n-sequences", "8", "--n-permutations", "2", "--n-controls", "0", "-q")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def result_dir(path: Path, files: dict[str, str]) -> Path:
    """A previous unitprobe result: the files and a marker listing them."""
    path.mkdir()
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    marker = {"format": "unitprobe-result", "files": sorted(files)}
    (path / MARKER).write_text(json.dumps(marker))
    return path


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A hand-wired 2-unit LSTM of the seed task (inputs K, X), saved as a unitprobe file."""
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save(path, planted_lstm(2, [(0, 0), (1, 0)], n_outputs=2), get_preset("seed"))
    return path


# ----------------------------------------------------------------------------- refusals


def test_demo_refuses_a_directory_with_a_users_file_before_training(tmp_path):
    out = tmp_path / "mystuff"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    result = invoke("demo", "--out", out, "-q")
    assert result.exit_code == 1 and "exists and is not empty; pass --overwrite" in result.output
    result = invoke("demo", "--out", out, "--overwrite", "-q")
    assert result.exit_code == 1 and "not a previous unitprobe result" in result.output
    assert listing(out) == ["precious.txt"] and (out / "precious.txt").read_text() == "mine"
    assert listing(tmp_path) == ["mystuff"]


def test_the_current_directory_and_its_parents_are_never_an_output(tmp_path, monkeypatch):
    here = tmp_path / "work"
    here.mkdir()
    monkeypatch.chdir(here)
    for out in (".", "..", str(here)):
        result = invoke("demo", "--out", out, "--overwrite", "-q")
        assert result.exit_code == 1, out
        assert "is the current directory or one of its parents" in result.output
    assert listing(tmp_path) == ["work"] and listing(here) == []


def test_analyze_never_replaces_the_directory_holding_its_checkpoint(tmp_path, checkpoint):
    out = result_dir(tmp_path / "res", {"model.pt": ""})
    (out / "model.pt").write_bytes(checkpoint.read_bytes())
    result = invoke("analyze", out / "model.pt", "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 1 and "which this command reads" in result.output
    assert (out / "model.pt").read_bytes() == checkpoint.read_bytes()


def test_overwrite_never_replaces_the_commands_own_input(tmp_path, checkpoint):
    model = tmp_path / "m.pt"
    model.write_bytes(checkpoint.read_bytes())
    (tmp_path / "link.pt").symlink_to(model)
    data = tmp_path / "data.csv"
    data.write_text("K,X\n" + "\n".join(f"{k},{k % 3}" for k in range(40)) + "\n")
    before = model.read_bytes(), data.read_bytes()
    for args in (
        ["probe", model, "--out", model, "--overwrite", *FAST],
        ["ablate", model, "--out", tmp_path / "link.pt", "--overwrite"],
        ["probe", model, "--data", data, "--window", "10", "--out", data, "--overwrite", *FAST],
        ["train", "--data", data, "--window", "10", "--epochs", "1", "--out", data,
         "--overwrite"],
    ):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and "is an input of this command" in (
            result.output
        )
        assert "Traceback" not in result.output
    assert (model.read_bytes(), data.read_bytes()) == before
    task = tmp_path / "seed.toml"
    task.write_text(invoke("tasks", "show", "seed", "--toml").output)
    scaling = tmp_path / "scale.json"
    scaling.write_text('{"K": {"shift": 0, "scale": 1}, "X": {"shift": 0, "scale": 1}}')
    kept = task.read_bytes(), scaling.read_bytes()
    for args in (
        ["probe", model, "--task-file", task, "--out", task, "--overwrite", *FAST],
        ["ablate", model, "--scaling", scaling, "--out", scaling, "--overwrite"],
        ["train", "--task-file", task, "--epochs", "1", "--out", task, "--overwrite"],
    ):
        result = invoke(*args)
        assert result.exit_code == 1 and "is an input of this command" in result.output
    assert (task.read_bytes(), scaling.read_bytes()) == kept


def test_figures_keeps_a_report_no_result_lists(tmp_path, checkpoint):
    out = tmp_path / "res"
    result = invoke("analyze", checkpoint, "--out", out, "--no-figures", *FAST)
    assert result.exit_code == 0, result.output
    (out / MARKER).unlink()  # the tables, copied into a folder of the user's
    (out / "report.html").write_text("my notes")
    result = invoke("figures", out, "-q")
    assert result.exit_code == 1 and "no unitprobe result lists it" in result.output
    assert (out / "report.html").read_text() == "my notes" and not (out / "figures").exists()
    assert invoke("figures", out, "-q", "--overwrite").exit_code == 0  # asked for: replaced
    assert (out / "report.html").read_text() != "my notes"


def test_rerendering_a_result_with_a_table_missing_keeps_its_marker_true(tmp_path, checkpoint):
    out = tmp_path / "res"
    assert invoke("analyze", checkpoint, "--out", out, *FAST).exit_code == 0
    assert (out / "figures" / "interchange.png").exists()
    (out / "interchange.csv").unlink()
    result = invoke("figures", out, "--overwrite", "-q")
    assert result.exit_code == 0, result.output  # it was refused, its figure already unlisted
    assert not (out / "figures" / "interchange.png").exists()
    result = invoke("analyze", checkpoint, "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 0, result.output


def test_a_failed_swap_of_a_results_part_leaves_its_marker_as_it_was(tmp_path):
    out = result_dir(tmp_path / "res", {"roles.csv": "x", "figures/a.png": "old"})
    with pytest.raises(UnitprobeError):
        with staged_output_dir(out / "figures", overwrite=True) as stage:
            (stage / "b.png").write_text("new")
            (out / "figures" / "mine.png").write_text("mine")  # appears before the swap
    assert json.loads((out / MARKER).read_text())["files"] == ["figures/a.png", "roles.csv"]
    assert (out / "figures" / "a.png").read_text() == "old"
    (out / "figures" / "mine.png").unlink()
    with staged_output_dir(out / "figures", overwrite=True) as stage:
        (stage / "b.png").write_text("new")
    assert json.loads((out / MARKER).read_text())["files"] == ["figures/b.png", "roles.csv"]


def test_overwrite_replaces_a_previous_result_but_not_a_users_file(tmp_path):
    out = result_dir(tmp_path / "res", {"roles.csv": "old", "figures/a.png": "old"})
    with staged_output_dir(out, overwrite=True) as stage:
        (stage / "roles.csv").write_text("new")
    assert (out / "roles.csv").read_text() == "new" and not (out / "figures").exists()
    assert json.loads((out / MARKER).read_text())["files"] == ["roles.csv"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UnitprobeError, match=r"holds files unitprobe did not write \(notes.txt\)"):
        check_output_dir(out, overwrite=True)
    (out / "notes.txt").unlink()
    (out / "figures").mkdir()
    (out / "figures" / "mine.png").write_text("mine")
    with pytest.raises(UnitprobeError, match="figures/mine.png"):
        check_output_dir(out, overwrite=True)
    assert listing(tmp_path) == ["res"]


def test_figures_needs_overwrite_to_replace_figures(tmp_path):
    out = result_dir(tmp_path / "res", {"figures/roles.png": "old"})
    for name in ("probes", "roles"):  # empty tables: a run that found nothing
        pd.DataFrame(columns=list(schemas.columns(name))).to_csv(out / f"{name}.csv", index=False)
    result = invoke("figures", out)
    assert result.exit_code == 1 and "pass --overwrite" in result.output
    assert (out / "figures" / "roles.png").read_text() == "old"
    result = invoke("figures", out, "--overwrite", "--format", "png")
    assert (
        "Traceback" not in result.output
        and result.exception is None
        or (isinstance(result.exception, SystemExit))
    ), result.output


# ----------------------------------------------------------------------------- commit


def test_a_directory_created_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(UnitprobeError, match="created or replaced by another process"):
        with staged_output_dir(out) as stage:
            (stage / "a.csv").write_text("second")
            result_dir(out, {"a.csv": "first"})  # the other writer finished first
    assert (out / "a.csv").read_text() == "first"
    assert listing(tmp_path) == ["res"]  # no staging folder left


def test_a_result_replaced_meanwhile_is_not_replaced_again(tmp_path):
    out = result_dir(tmp_path / "res", {"a.csv": "old"})
    with pytest.raises(UnitprobeError, match="another process"):
        with staged_output_dir(out, overwrite=True) as stage:
            (stage / "a.csv").write_text("second")
            os.rename(out, tmp_path / "moved")
            result_dir(out, {"a.csv": "first"})
    assert (out / "a.csv").read_text() == "first"


def test_a_file_written_meanwhile_is_not_replaced(tmp_path):
    path = tmp_path / "t.csv"

    def write(tmp):
        tmp.write_text("second")
        path.write_text("first")

    with pytest.raises(UnitprobeError, match="another process"):
        atomic_write(path, write, overwrite=False)
    assert path.read_text() == "first" and listing(tmp_path) == ["t.csv"]


def test_files_and_directories_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with staged_output_dir(tmp_path / "res") as stage:
            (stage / "x.csv").write_text("1")
        write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "t.csv")
        save(tmp_path / "m.pt", planted_lstm(2, [(0, 0)], n_outputs=2), get_preset("seed"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "res").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "t.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "m.pt").stat().st_mode) == 0o644


def test_a_symlinked_output_keeps_its_link(tmp_path):
    target = tmp_path / "target"
    link = tmp_path / "link"
    link.symlink_to(target)
    with staged_output_dir(link) as stage:
        (stage / "a.csv").write_text("1")
    assert link.is_symlink() and (target / "a.csv").read_text() == "1"


def test_the_staging_path_is_never_named_in_an_error(tmp_path):
    out = tmp_path / "res"
    with pytest.raises(OSError) as err:
        with staged_output_dir(out) as stage:
            open(stage / "missing" / "x.csv")  # noqa: SIM115
    assert err.value.filename == str(out / "missing" / "x.csv")


# ----------------------------------------------------------------------------- interruptions


def test_sigterm_leaves_no_staging_folder(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal
        from unitprobe._utils import staged_output_dir
        with staged_output_dir({str(tmp_path / "res")!r}) as stage:
            (stage / "a.csv").write_text("1")
            os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert listing(tmp_path) == []


def test_a_killed_runs_leftovers_are_cleaned_and_its_old_result_restored(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    stale = tmp_path / f".res.partial-{dead}-abc"
    stale.mkdir()
    (stale / "half.csv").write_text("1")
    aside = tmp_path / f".res.old-{dead}-xyz"
    result_dir(aside / "old", {"a.csv": "old"}) if aside.mkdir() is None else None
    with pytest.raises(UnitprobeError, match="exists and is not empty"):
        with staged_output_dir(tmp_path / "res"):
            pass
    assert listing(tmp_path) == ["res"]  # restored, and nothing hidden left
    assert (tmp_path / "res" / "a.csv").read_text() == "old"
