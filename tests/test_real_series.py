"""Real exported series: matplotlib's Stocks.csv and goog.npz, read, trained on and analyzed.

The pipeline is ``analyses/real_series.py`` at a small size; the data ship with matplotlib
(no download).
"""

from __future__ import annotations

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


def test_returns_are_windowed_and_split_by_time(tmp_path):
    returns = R.monthly_returns(R.load_prices())
    assert len(returns) == 390 and returns.iloc[-1][["SPX", "NDX"]].tolist() == [0.0, 0.0]
    path = tmp_path / "returns.csv"
    returns.to_csv(path, index=False, float_format="%.10g")
    data = R.windows(path, 24, 3)
    assert data.n_sequences == (390 - 24) // 3 + 1
    train, test = R.split_by_time(data, returns["Date"], 3)
    dates = pd.to_datetime(returns["Date"]).to_numpy()
    last_train = dates[train.sequence_ids.max() * 3 + 23]
    first_test = dates[test.sequence_ids.min() * 3]
    assert last_train < np.datetime64("2015-01-01") <= first_test
    assert train.n_sequences == 92 and test.n_sequences == 23


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
    assert "held-out MSE" in R.report(out)


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
