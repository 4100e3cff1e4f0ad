"""Models analyzed on their own scale; data split in time; the baseline ratio shown."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.cli.analyze import score_lines
from unitprobe.errors import DataError
from unitprobe.model.checkpoint import Checkpoint, load, save
from unitprobe.model.planted import planted_lstm
from unitprobe.model.train import TrainConfig, train
from unitprobe.tasks import (
    DataSource,
    dataset_for,
    fit_normalization,
    generate,
    get_preset,
    load_csv,
    scaling_norm,
    split_in_time,
    split_in_time_validated,
)
from unitprobe.views.report import render_report


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def model():
    return planted_lstm(2, [(0, 0), (1, 0)], n_outputs=2)


# ----------------------------------------------------------------------------- norm


def test_checkpoints_store_the_training_normalization(tmp_path, model):
    spec = get_preset("seed")
    train = generate(spec, 16, seed=0)
    save(tmp_path / "m.pt", model, spec, norm=train.norm)
    ckpt = load(tmp_path / "m.pt")
    assert ckpt.norm == train.norm
    save(tmp_path / "old.pt", model, spec)  # written as before: no norm stored
    assert load(tmp_path / "old.pt").norm is None
    memory = Checkpoint.from_training(
        type("R", (), {"model": model, "history": {}, "metrics": {}})(),
        spec,
        "x.pt",
        norm=train.norm,
    )
    assert memory.norm == train.norm


def test_new_data_reuse_the_given_normalization(tmp_path):
    spec = get_preset("seed")
    train = generate(spec, 16, seed=0)
    new = generate(spec, 4, seed=1, norm=train.norm)
    assert new.norm == train.norm
    k_shift, k_scale = train.norm["K"]
    np.testing.assert_allclose(new.series["K"], (new.raw["K"] - k_shift) / k_scale)
    assert generate(spec, 4, seed=1).norm != train.norm  # without it: fitted on the new data
    assert dataset_for(spec, None, 4, 1, norm=train.norm).norm == train.norm
    csv = tmp_path / "d.csv"
    csv.write_text("K,X\n" + "\n".join(f"{i},{2 * i}" for i in range(10)))
    loaded = load_csv(csv, spec, norm={"K": (1.0, 2.0), "X": (0.0, 1.0)})
    np.testing.assert_allclose(loaded.inputs[0, :, 0], (np.arange(9) - 1.0) / 2.0)
    np.testing.assert_allclose(loaded.inputs[0, :, 1], 2 * np.arange(9))
    assert DataSource(csv).load(spec, norm=loaded.norm).norm == loaded.norm


def test_scaling_none_standardize_or_a_file(tmp_path):
    assert scaling_norm("none", ["K", "X"]) == {"K": (0.0, 1.0), "X": (0.0, 1.0)}
    assert scaling_norm("standardize", ["K"]) is None
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"K": {"shift": 1, "scale": 2}, "X": [0.5, 4]}))
    assert scaling_norm(path, ["K", "X"]) == {"K": (1.0, 2.0), "X": (0.5, 4.0)}
    path.write_text(json.dumps({"K": [0, 0]}))
    with pytest.raises(DataError, match="lacks the series \\['X'\\]"):
        scaling_norm(path, ["K", "X"])
    with pytest.raises(DataError, match="scale > 0"):
        scaling_norm(path, ["K"])
    with pytest.raises(DataError, match="neither none, standardize nor a readable JSON"):
        scaling_norm("raw", ["K"])


def test_a_foreign_state_dict_is_analyzed_on_the_scale_it_is_told(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "f.pt")
    args = ("probe", tmp_path / "f.pt", "--task", "seed", "--n-sequences", 6)
    args += ("--n-permutations", 1, "--n-controls", 0, "-q")
    told = invoke(*args, "--scaling", "none", "--out", tmp_path / "a.csv")
    assert told.exit_code == 0, told.output
    assert "Warning" not in told.output
    guessed = invoke(*args, "--out", tmp_path / "b.csv")
    assert guessed.exit_code == 0, guessed.output
    assert guessed.output.strip().splitlines()[-1].startswith("Warning: ")
    assert "pass --scaling none" in guessed.output


# ----------------------------------------------------------------------------- time split


def _series_csv(tmp_path, n=40, dates=False):
    path = tmp_path / "s.csv"
    times = [f"{1500 + i}-01-01" for i in range(n)] if dates else list(range(n))
    rows = [f"{t},{float(i)}" for i, t in enumerate(times)]
    path.write_text("time,A\n" + "\n".join(reversed(rows)))  # out of order on purpose
    return path


def test_split_in_time_by_fraction_keeps_later_windows_apart(tmp_path):
    source = DataSource(_series_csv(tmp_path), time_col="time", window=5, stride=1)
    train, later = split_in_time(source, None, 0.75)
    assert train.overlapping and not later.overlapping
    assert train.raw["A"].max() < 30 and later.raw["A"].min() >= 30  # steps 0..29 | 30..39
    assert later.n_sequences == 2  # two windows of 5, no overlap
    np.testing.assert_array_equal(later.raw["A"][:, 0], [30.0, 35.0])
    assert later.norm == train.norm
    assert train.norm["A"] == fit_normalization(train.raw_full("A"))  # earlier part only


def test_split_in_time_at_a_date_before_1677(tmp_path):
    source = DataSource(_series_csv(tmp_path, dates=True), time_col="time", window=4)
    train, later = split_in_time(source, None, "1520-01-01")
    assert train.raw_full("A").ravel().tolist() == list(range(20))
    assert later.raw_full("A").ravel().tolist() == list(range(20, 40))


def test_dates_outside_the_nanosecond_range_are_ordered(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("time,A\n2300-01-01,3\n1600-01-01,1\n2000-01-01,2\n1400-06-01,0\n")
    assert load_csv(path, time_col="time").raw["A"].ravel().tolist() == [0, 1, 2]


def test_train_split_at_reports_the_held_out_error(tmp_path):
    path = tmp_path / "s.csv"
    rng = np.random.default_rng(0)
    path.write_text("A\n" + "\n".join(f"{v:.6f}" for v in np.cumsum(rng.standard_normal(120))))
    out = tmp_path / "m.pt"
    result = invoke(
        "train", "--data", path, "--window", 10, "--stride", 5, "--split-at", 0.75,
        "--units", 2, "--epochs", 2, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ckpt = load(out)
    assert ckpt.metrics["holdout_sequences"] == 3  # 30 later steps, windows of 10
    assert "held-out later steps (3 windows)" in result.output
    assert "validated on the last 20% of the steps before the split (1 window)" in result.output
    assert ckpt.metrics["n_val_sequences"] == 1  # 18 of the 90 earlier steps, windows of 10
    assert ckpt.norm is not None and set(ckpt.norm) == {"A"}


def test_validated_split_puts_a_validation_block_between_training_and_later(tmp_path):
    source = DataSource(_series_csv(tmp_path), time_col="time", window=3, stride=1)
    train_set, val, later = split_in_time_validated(source, None, 0.75, validation=0.2)
    # 30 earlier steps: 24 train (0..23), 6 validate (24..29) in 2 windows; 30..39 later
    assert train_set.raw_full("A").max() == 23 and train_set.overlapping
    np.testing.assert_array_equal(val.raw_full("A"), [[24.0, 25.0, 26.0], [27.0, 28.0, 29.0]])
    assert not val.overlapping and later.raw["A"].min() == 30
    assert val.norm == later.norm == train_set.norm
    assert train_set.norm["A"] == fit_normalization(train_set.raw_full("A"))


def test_validated_split_refuses_a_bad_share_and_a_short_block(tmp_path):
    source = DataSource(_series_csv(tmp_path), time_col="time", window=3)
    with pytest.raises(DataError, match=r"^validation == 1\.5, must be a fraction in \(0, 1\)$"):
        split_in_time_validated(source, None, 0.75, validation=1.5)
    with pytest.raises(DataError, match="too few steps to validate"):
        split_in_time_validated(source, None, 0.75, validation=0.01)
    # a block shorter than one window says which part and what to change
    wide = DataSource(_series_csv(tmp_path), time_col="time", window=8)
    with pytest.raises(
        DataError,
        match=r"^split at 0\.75: sequence 0 has too few steps to validate \(6; needs at least "
        r"the window, 8\); move --split-at or use a smaller --window$",
    ):
        split_in_time_validated(wide, None, 0.75, validation=0.2)


def test_train_on_a_separate_validation_set_uses_every_training_sequence():
    spec = get_preset("delay-1")
    data, val = generate(spec, 12, seed=0), generate(spec, 5, seed=1)
    result = train(data, TrainConfig(n_units=2, epochs=3, seed=0), validation=val)
    m = result.metrics
    assert (m["n_train_sequences"], m["n_val_sequences"]) == (12, 5)
    with torch.no_grad():
        pred = result.model(torch.as_tensor(val.inputs))
    mse = float(((pred - torch.as_tensor(val.targets)) ** 2).mean())
    assert m["val_mse"] == pytest.approx(mse, rel=1e-6)
    assert min(result.history["val_loss"]) == pytest.approx(mse, rel=1e-6)  # best epoch kept


def test_train_refuses_a_validation_set_with_other_features():
    data = generate(get_preset("delay-1"), 6, seed=0)
    other = generate(get_preset("seed"), 3, seed=0)
    with pytest.raises(
        Exception, match="validation has 2 inputs and 2 outputs, the training data 1 and 1"
    ):
        train(data, TrainConfig(n_units=2, epochs=1), validation=other)


def test_overlapping_windows_are_flagged(tmp_path):
    path = _series_csv(tmp_path)
    assert load_csv(path, time_col="time", window=5, stride=2).overlapping
    assert not load_csv(path, time_col="time", window=5).overlapping


# ----------------------------------------------------------------------------- the ratio


def test_analyze_states_the_baseline_ratio_and_warns_when_it_is_not_beaten():
    lines, notes = score_lines({"metrics": {"mse": 0.5, "baseline_mse": 2.0, "mse_ratio": 0.25}})
    assert (
        lines == ["model MSE 0.5 = 25% of the repeat-last-value baseline (2), normalized units"]
        and notes == []
    )
    _, notes = score_lines({"metrics": {"mse": 1.07, "baseline_mse": 1.0, "mse_ratio": 1.07}})
    assert len(notes) == 1 and "does not beat repeating the last value" in notes[0]
    _, notes = score_lines({"metrics": {}, "warnings": ["the model does not beat the AR baseline"]})
    assert notes == ["the model does not beat the AR baseline"]


def test_the_report_shows_warnings_first():
    html = render_report({}, {"warnings": ["the model does not beat <AR>"]}, [])
    assert html.index("class='warning'") < html.index("<h2")
    assert "the model does not beat &lt;AR&gt;" in html
    assert "class='warning'" not in render_report({}, {}, [])
