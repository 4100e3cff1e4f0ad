"""Real exported series: matplotlib's Stocks.csv and goog.npz, read, trained on and analyzed.

The pipeline is ``analyses/real_series.py`` at a small size; the data ship with matplotlib
(no download).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe.cli import main
from unitprobe.errors import DataError
from unitprobe.tasks import load_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "analyses"))
try:
    import real_series as R
finally:
    sys.path.remove(str(ROOT / "analyses"))

INDICES = ["^GSPC", "^IXIC"]


def invoke(args: str):
    return CliRunner().invoke(main, shlex.split(args))


def reference_prices(path: Path) -> pd.DataFrame:
    """What the file holds, read independently with pandas: priced rows in date order."""
    table = pd.read_csv(path, comment="#").dropna(subset=INDICES)
    return table.assign(Date=pd.to_datetime(table["Date"])).sort_values("Date")


def test_the_stocks_export_is_read_as_documented(tmp_path):
    path = R.stocks_csv()
    data = load_csv(path, series=INDICES, time_col="Date", fill="drop")
    ref = reference_prices(path)
    assert data.n_sequences == 1 and data.length + data.horizon == len(ref) == 391
    for column in INDICES:
        np.testing.assert_array_equal(data.raw_full(column)[0], ref[column].to_numpy())
    # missing values are refused with their line: line 1 is the source note, 2 the header
    with pytest.raises(DataError, match=r"missing value in column '\^GSPC' at line 5 .*fill="):
        load_csv(path, series=INDICES, time_col="Date")
    # interpolation keeps the 133 rows without prices as steps between their neighbours
    filled = load_csv(path, series=INDICES, time_col="Date", fill="interpolate")
    assert filled.length + filled.horizon == 524
    raw = filled.raw_full("^GSPC")[0]
    assert raw[2] == pytest.approx((raw[1] + raw[3]) / 2)  # 1990-02-05 lies between 02-01 and 03-01


def test_rows_are_ordered_by_date_not_by_position(tmp_path):
    lines = R.stocks_csv().read_text().splitlines()
    note, header, rows = lines[0], lines[1], lines[2:]
    order = np.random.default_rng(0).permutation(len(rows))
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([note, header, *(rows[i] for i in order)]) + "\n")
    kwargs = {"series": INDICES, "time_col": "Date", "fill": "drop"}
    a, b = load_csv(R.stocks_csv(), **kwargs), load_csv(shuffled, **kwargs)
    np.testing.assert_array_equal(a.raw_full("^GSPC"), b.raw_full("^GSPC"))
    prices = R.load_prices()
    assert prices["Date"].is_monotonic_increasing and prices["Date"].is_unique
    assert str(prices["Date"].iloc[0].date()) == "1990-01-01"
    assert str(prices["Date"].iloc[-1].date()) == "2022-06-28"


def test_a_thousand_daily_closes_cut_into_windows(tmp_path):
    from matplotlib import cbook

    days = cbook.get_sample_data("goog.npz")["price_data"]  # 1047 trading days, 2004-2008
    frame = pd.DataFrame({"day": days["date"].astype(str), "close": days["close"]})
    path = tmp_path / "goog.csv"
    frame.iloc[::-1].to_csv(path, index=False)  # newest first, as many exports are
    start = time.perf_counter()
    data = load_csv(path, time_col="day", window=50, stride=10)
    assert time.perf_counter() - start < 2.0
    assert data.n_sequences == (1047 - 50) // 10 + 1 == 100
    full = data.raw_full("close")  # (100, 50)
    np.testing.assert_array_equal(full[0], days["close"][:50])
    np.testing.assert_array_equal(full[7], days["close"][70:120])
    assert data.inputs.shape == (100, 49, 1)


@pytest.fixture(scope="module")
def returns_csv(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    returns = R.monthly_returns(R.load_prices())
    path = tmp_path_factory.mktemp("returns") / "returns.csv"
    returns.to_csv(path, index=False, float_format="%.10g")
    return pd.read_csv(path), path  # the values as written (10 significant digits)


def test_returns_are_windowed(returns_csv):
    returns, path = returns_csv
    assert len(returns) == 390 and returns.iloc[-1][["SPX", "NDX"]].tolist() == [0.0, 0.0]
    data = R.windows(path, 24, 3)
    assert data.n_sequences == (390 - 24) // 3 + 1
    np.testing.assert_allclose(data.raw_full("NDX")[2], returns["NDX"][6:30], rtol=1e-9)


def test_the_validation_block_lies_between_training_and_held_out_months(returns_csv, tmp_path):
    """The script's split, on a copy of the returns whose SPX column is the row number."""
    returns, _ = returns_csv
    path = tmp_path / "numbered.csv"
    returns.assign(SPX=np.arange(len(returns), dtype=float)).to_csv(path, index=False)
    s = R.FULL
    parts = R.split_by_time(path, s.window, s.stride)
    train, val, held = (np.rint(p.raw_full("SPX")).astype(int) for p in parts)  # row numbers
    dates = pd.to_datetime(returns["Date"]).to_numpy()
    split = np.datetime64(pd.Timestamp(R.SPLIT))
    assert train.max() < val.min() and val.max() < held.min()
    assert dates[val.max()] < split <= dates[held.min()]
    assert not (set(train.flat) & set(val.flat) or set(val.flat) & set(held.flat))
    # 299 months before 2015: the first 239 train, the last 60 (2010-2014) validate
    assert (dates < split).sum() == 299 and train.max() < 239
    np.testing.assert_array_equal(val.ravel(), np.arange(239, 299))  # 5 windows, no overlap
    np.testing.assert_array_equal(held.ravel(), np.arange(299, 299 + 7 * 12))
    assert train.shape == (76, 12) and (np.diff(train[:, 0]) == s.stride).all()
    assert str(returns["Date"][239]) == R.validation_start(returns["Date"]) == "2010-01-01"
    assert parts[1].norm == parts[2].norm == parts[0].norm  # the training months' norm


def _by_hand(returns: pd.DataFrame, rows: range, window: int, norm: dict, model) -> float:
    """Network MSE over repeat-last MSE on non-overlapping windows of ``rows``, from the table."""
    z = np.stack([(returns[k].to_numpy()[rows] - norm[k][0]) / norm[k][1] for k in ("SPX", "NDX")])
    z = z.T[: len(rows) // window * window].reshape(-1, window, 2)  # (N, window, 2)
    x, y = z[:, :-1], z[:, 1:]
    with torch.no_grad():
        predicted = model(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    return float(((predicted - y) ** 2).mean() / ((x - y) ** 2).mean())


def test_the_reported_validation_ratio_is_that_of_the_validation_months(returns_csv):
    returns, path = returns_csv
    s = dataclasses.replace(R.QUICK, n_seeds=1)
    parts = R.split_by_time(path, s.window, s.stride)
    table, networks = R.validation_runs(parts, s)
    # the training norm, by hand: mean and std over the 76 overlapping training windows
    months = pd.to_datetime(returns["Date"])
    n_train = int((months < pd.Timestamp("2010-01-01")).sum())
    starts = range(0, n_train - s.window + 1, s.stride)
    norm = {}
    for k in ("SPX", "NDX"):
        values = np.concatenate([returns[k].to_numpy()[i : i + s.window] for i in starts])
        norm[k] = (values.mean(), values.std())
        np.testing.assert_allclose(parts[0].norm[k], norm[k], rtol=1e-12)
    model = networks[0].model.eval()
    val_rows = range(n_train, int((months < pd.Timestamp(R.SPLIT)).sum()))
    held_rows = range(val_rows.stop, len(returns))
    val_ratio = _by_hand(returns, val_rows, s.window, norm, model)
    held_ratio = _by_hand(returns, held_rows, s.window, norm, model)
    row = table.set_index("scheme").loc["time_block"]
    assert networks[0].metrics["mse_ratio"] == row["val_ratio"]
    assert row["val_ratio"] == pytest.approx(val_ratio, rel=1e-5)
    assert row["holdout_ratio"] == pytest.approx(held_ratio, rel=1e-5)
    assert row["rel_diff"] == pytest.approx(abs(val_ratio - held_ratio) / held_ratio, rel=1e-4)
    assert (row["n_val_windows"], row["n_holdout_windows"]) == (5, 7)
    old = table.set_index("scheme").loc["random_windows"]  # 15 of the 76 training windows
    assert (old["n_train_windows"], old["n_val_windows"]) == (61, 15)
    text = R.validation_text(table, R.mean_ratios(parts))
    assert "time_block: worst |diff|" in text and "predict the training mean" in text


def test_the_cli_prints_the_ratios_the_script_computes(returns_csv, tmp_path, monkeypatch):
    returns, path = returns_csv
    monkeypatch.chdir(tmp_path)
    result = invoke(
        f"train --data {path} --time-col Date --window 12 --stride 3 --split-at {R.SPLIT} "
        "--units 3 --epochs 5 --seed 1 --out m.pt"
    )
    assert result.exit_code == 0, result.output
    m = torch.load("m.pt", weights_only=True)["metrics"]
    assert f"= {100 * m['mse_ratio']:.3g}% of the repeat-last" in result.output
    assert f"= {100 * m['holdout_ratio']:.3g}% of the repeat-last" in result.output
    train_part, val, held = R.split_by_time(path, 12, 3)
    ours = R.train(train_part, R.TrainConfig(n_units=3, epochs=5, seed=1), validation=val)
    assert ours.metrics["mse_ratio"] == m["mse_ratio"]
    assert R.held_out_ratio(ours.model, held)["holdout_ratio"] == m["holdout_ratio"]


@pytest.mark.slow
def test_the_real_series_pipeline_at_small_size():
    torch.manual_seed(0)
    out = R.run(R.QUICK, echo=lambda line: None)
    e = out["errors"]
    # index returns barely persist: repeating the last one is worse than any sane predictor
    assert e["model"] < 0.6 * e["repeat_last"]
    # ... and the network does not beat the training mean by much, nor fall far behind it
    assert abs(e["model"] - e["train_mean"]) < 0.05 * e["train_mean"]
    pop = R.population_r2(out["tables"]["population_probes"])
    assert pop["NDX[t]"] > 0.8  # the population holds the current input
    assert pop["NDX[t]"] > pop["NDX[t-1]"] > pop["NDX[t-2]"]  # and less of each older month
    roles = out["tables"]["roles"]
    assert roles["unit"].tolist() == list(range(R.QUICK.units))
    assert set(roles["role"]) <= {"none", *R.TARGETS}
    table = out["validation_table"]
    assert len(table) == 2 * R.QUICK.n_seeds and set(table["scheme"]) == set(R.SCHEMES)
    assert "held-out MSE" in R.report(out) and "validation ratio" in R.report(out)


@pytest.mark.slow
def test_cli_trains_on_the_returns_and_analyzes_them_reproducibly(tmp_path, monkeypatch):
    """A data task trained through the CLI; two analyses with one seed give identical CSVs."""
    monkeypatch.chdir(tmp_path)
    R.monthly_returns(R.load_prices()).to_csv("returns.csv", index=False, float_format="%.10g")
    Path("stocks.toml").write_text(
        'name = "stocks"\nrelations = []\ninputs = ["SPX", "NDX"]\npredict = ["SPX", "NDX"]\n'
    )
    data = "--data returns.csv --time-col Date --window 24"
    trained = invoke(
        f"train --task-file stocks.toml {data} --stride 3 --units 3 --epochs 5 --out m.pt -q"
    )
    assert trained.exit_code == 0, trained.output
    stored = torch.load("m.pt", weights_only=True)
    assert stored["task"]["inputs"] == ["SPX", "NDX"] and stored["task"]["length"] == 23
    assert stored["metrics"]["n_train_sequences"] + stored["metrics"]["n_val_sequences"] == 123
    fast = "--n-permutations 9 --n-controls 1 --format png -q --targets SPX[t] --targets NDX[t-1]"
    for name in ("r1", "r2"):
        result = invoke(f"analyze m.pt {data} --out {name} {fast}")
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in Path("r1").glob("*.csv"))
    assert "probes.csv" in names and names == sorted(p.name for p in Path("r2").glob("*.csv"))
    for name in names:
        assert (Path("r1") / name).read_bytes() == (Path("r2") / name).read_bytes(), name
    probes = pd.read_csv("r1/probes.csv")
    assert set(probes["target"]) == {"SPX[t]", "NDX[t-1]"}
    assert probes["n_samples"].iloc[0] == 16 * 22  # 16 windows of 24 months; t-1 needs a step
    # a data task cannot be analyzed on generated data: its series are observations
    refused = invoke("analyze m.pt --out r3")
    assert refused.exit_code == 1 and "is a data task" in refused.output
    assert not Path("r3").exists()


def test_train_on_a_csv_without_a_task_learns_every_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    R.monthly_returns(R.load_prices()).to_csv("returns.csv", index=False, float_format="%.10g")
    result = invoke(
        "train --data returns.csv --time-col Date --window 24 --stride 6 --units 2 --epochs 2 "
        "--out m.pt -q"
    )
    assert result.exit_code == 0, result.output
    task = torch.load("m.pt", weights_only=True)["task"]
    assert task["name"] == "returns" and task["inputs"] == task["predict"] == ["SPX", "NDX"]
    assert task["relations"] == [
        "SPX[t] = normal(0, 1)  # observed in data",
        "NDX[t] = normal(0, 1)  # observed in data",
    ]
    shown = invoke("tasks show --task-file stocks.toml")  # no such file: usage error
    assert shown.exit_code == 2
    Path("stocks.toml").write_text('name = "s"\nrelations = []\ninputs = ["SPX"]\n')
    shown = invoke("tasks show --task-file stocks.toml")
    assert shown.exit_code == 0 and "SPX[t] = normal(0, 1)  # observed in data" in shown.output
