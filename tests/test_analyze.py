import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.model.lstm import run
from unitprobe.model.planted import planted_lstm
from unitprobe.pipeline.analyze import _Timer
from unitprobe.schemas import SCHEMAS
from unitprobe.tables import Tables
from unitprobe.tasks import generate, get_preset
from unitprobe.views.figures import FIGURES

FAST = (
    "--n-sequences",
    48,
    "--n-permutations",
    19,
    "--n-controls",
    1,
    "--format",
    "png",
    "--quiet",
)
TAPS = [(0, 0), (0, 1), (1, 0), (1, 1), None, None]  # K[t], K[t-1], X[t], X[t-1], dead, dead
ROLES = ["K[t]", "K[t-1]", "X[t]", "X[t-1]", "none", "none"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _fit_readout(model, spec):
    """Least-squares readout of the seed task's next K and X from the planted units."""
    data = generate(spec, n_sequences=64, seed=5)
    with torch.no_grad():
        h = run(model, data.inputs).h[0].reshape(-1, model.config.n_units).numpy()
    y = data.targets.reshape(-1, 2)
    w, *_ = np.linalg.lstsq(h[:, :4], y, rcond=None)
    readout = np.zeros((2, model.config.n_units))
    readout[:, :4] = w.T
    return readout


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory):
    """A hand-wired LSTM saved as a plain state_dict: the roles are set by its weights."""
    spec = get_preset("seed")
    model = planted_lstm(2, TAPS, n_outputs=2)
    model = planted_lstm(2, TAPS, n_outputs=2, readout=_fit_readout(model, spec))
    path = tmp_path_factory.mktemp("ckpt") / "wired.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def analyzed(foreign_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "results"
    result = invoke("analyze", foreign_checkpoint, "--task", "seed", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_hand_wired_roles_are_found_through_the_cli(analyzed):
    out, printed = analyzed
    roles = pd.read_csv(out / "roles.csv")
    assert roles["role"].tolist() == ROLES
    live = roles.iloc[:4]
    # interchange decides: patching each unit moves the output most for its own term, and its
    # receptive field matches the term above every null network's unit
    assert (live["decided_by"] == "interchange").all()
    assert (live["confidence"] > 0.99).all() and (live["null_percentile"] == 1.0).all()
    assert roles.loc[4:, "evidence"].str.startswith("dead").all()
    pairs = pd.read_csv(out / "identifiability.csv")
    pair = pairs[(pairs["target_a"] == "K[t]") & (pairs["target_b"] == "K[t-1]")]
    assert len(pair) == 1 and not pair["separable"].iloc[0] and pair["r2"].iloc[0] > 0.99
    for role in ROLES[:4]:
        assert role in printed
    assert "report:" in printed


@pytest.mark.slow
def test_outputs_follow_the_schemas(analyzed):
    out, _ = analyzed
    for name, schema in SCHEMAS.items():
        table = pd.read_csv(out / f"{name}.csv")
        assert table.columns.tolist() == list(schema.columns), name
        # a unit holds every term the output uses: no direction to learn
        assert len(table) > 0 or name in ("directions", "direction_loadings"), name
    terms = pd.read_csv(out / "terms.csv")
    assert set(terms["verdict"]) == {"unit", "unused"}
    assert pd.read_csv(out / "directions.csv").empty
    tables = Tables.read(out)
    assert sorted(tables) == sorted(SCHEMAS)
    assert set(tables["probes"]["unit"]) == set(range(6))  # no population rows
    assert set(tables["population_probes"]["target"]) == set(tables["probes"]["target"])
    assert set(tables["vif"]["target"]) == set(tables["probes"]["target"])
    assert set(tables["receptive_fields"]["unit"]) == set(range(6))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 0 and summary["task"]["name"] == "seed"
    assert summary["model"] == {"n_inputs": 2, "n_units": 6, "n_outputs": 2, "n_layers": 1}
    assert set(summary["wall_seconds"]) >= {
        "data",
        "probes",
        "ablation",
        "attribution",
        "roles",
        "figures",
    }
    assert [r["role"] for r in summary["roles"]] == ROLES
    assert summary["metrics"]["baseline_mse"] > summary["metrics"]["mse"]


@pytest.mark.slow
def test_report_embeds_every_figure_with_a_caption(analyzed):
    out, _ = analyzed
    pngs = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert {
        "probe_r2",
        "receptive_fields",
        "roles",
        "ablation",
        "identifiability",
        "input_lag",
    } <= set(pngs)
    html = (out / "report.html").read_text()
    assert html.count("<img ") == len(pngs)
    assert html.count("data:image/png;base64,") == len(pngs)
    captions = {spec.name: spec.caption for spec in FIGURES}
    for name in pngs:
        assert captions[name] in html.replace("&#x27;", "'")
    assert "K[t] = K[t-1] + 2*X[t] + 1" in html and "repeat the last value" in html


@pytest.mark.slow
def test_every_unit_exactly_gives_the_screened_roles_and_no_figures(
    foreign_checkpoint, analyzed, tmp_path
):
    out, _ = analyzed
    exact = tmp_path / "exact"
    result = invoke(
        "analyze", foreign_checkpoint, "--task", "seed", "--out", exact, "--no-figures",
        "--exact-ablation", "all", "--exact-interchange", "all", *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"results: {exact}\n" in result.output and "report:" not in result.output
    assert not (exact / "figures").exists() and not (exact / "report.html").exists()
    assert (exact / "roles.csv").read_bytes() == (out / "roles.csv").read_bytes()
    assert (exact / "terms.csv").read_bytes() == (out / "terms.csv").read_bytes()
    config = json.loads((exact / "summary.json").read_text())["analysis"]
    assert config["ablation"]["exact"] == "all" and config["roles"]["exact_interchange"] == "all"
    screened = pd.read_csv(out / "interchange.csv")
    assert screened["exact"].all()  # 6 units: each among the top 16 of every term
    assert pd.read_csv(exact / "interchange.csv")["exact"].all()


@pytest.mark.slow
def test_same_checkpoint_and_seed_give_byte_identical_csvs(foreign_checkpoint, analyzed, tmp_path):
    out, _ = analyzed
    again = tmp_path / "again"
    assert (
        invoke("analyze", foreign_checkpoint, "--task", "seed", "--out", again, *FAST).exit_code
        == 0
    )
    names = sorted(p.name for p in out.glob("*.csv"))
    assert names == sorted(p.name for p in again.glob("*.csv"))
    for name in names:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.slow
def test_figures_command_rerenders_from_the_tables(analyzed, tmp_path):
    import shutil

    out, _ = analyzed
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "figures")
    result = invoke("figures", copy, "--format", "png")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (out / "figures").iterdir()
    )
    (copy / "roles.csv").unlink()
    before = sorted(p.name for p in (copy / "figures").iterdir())
    result = invoke("figures", copy)
    assert (
        result.exit_code == 1
        and result.output.startswith("Error: ")
        and "roles.csv" in result.output
    )
    assert sorted(p.name for p in (copy / "figures").iterdir()) == before


def _snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--task", "fibonacci"), "task 'fibonacci' has 1 input(s) (K), but the model"),
        ((), "plain state_dict with no task"),
        (("--task", "seed", "--targets", "K[t+1]"), "K[t+1]"),
    ],
)
def test_bad_input_leaves_the_output_directory_as_it_was(
    foreign_checkpoint, tmp_path, extra, message
):
    out = tmp_path / "results"  # a previous result, which --overwrite may replace
    out.mkdir()
    (out / "roles.csv").write_text("keep me")
    marker = b'{"format": "unitprobe-result", "files": ["roles.csv"]}'
    (out / ".unitprobe-result").write_bytes(marker)
    result = invoke("analyze", foreign_checkpoint, "--out", out, "--overwrite", *extra, *FAST)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output
    assert _snapshot(out) == {Path("roles.csv"): b"keep me", Path(".unitprobe-result"): marker}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # no staging dir left


def test_existing_output_directory_is_refused(foreign_checkpoint, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = invoke("analyze", foreign_checkpoint, "--task", "seed", "--out", out, *FAST)
    assert result.exit_code == 1
    assert "exists and is not empty; pass --overwrite" in result.output
    assert (out / "mine.txt").read_text() == "keep me"


def test_csv_lacking_a_series_the_task_needs(foreign_checkpoint, tmp_path):
    (tmp_path / "data.csv").write_text("K\n" + "\n".join(str(v) for v in range(30)))
    result = invoke(
        "analyze",
        foreign_checkpoint,
        "--task",
        "seed",
        "--data",
        tmp_path / "data.csv",
        "--out",
        tmp_path / "r",
        *FAST,
    )
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "X" in result.output and not (tmp_path / "r").exists()


def test_a_stage_timed_twice_adds_up_and_says_so():
    lines = []
    timer = _Timer(lines.append)
    for _ in range(2):
        with timer("nulls"):
            pass
    assert timer.seconds["nulls"] >= 0 and len(lines) == 2
    assert not lines[0].endswith("(in all)") and lines[1].endswith(" s (in all)")


def test_the_cell_state_analysis_names_the_planted_roles(foreign_checkpoint, tmp_path):
    out = tmp_path / "c"
    result = invoke("analyze", foreign_checkpoint, "--task", "seed", "--state", "c",
                    "--out", out, "--no-figures", *FAST)  # fmt: skip
    assert result.exit_code == 0, result.output
    roles = pd.read_csv(out / "roles.csv")
    assert roles["role"].tolist() == ROLES  # the roles come from the mechanism, any state
    assert roles["formula"].iloc[0].endswith("K[t]")  # from the fields of h, their state
    probes = pd.read_csv(out / "probes.csv")
    assert set(probes["state"]) == {"c"}
