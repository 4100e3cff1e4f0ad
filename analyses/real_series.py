"""A real series: what do the units of an LSTM hold when it predicts stock-index returns?

The data ship with matplotlib (``mpl-data/sample_data/Stocks.csv``, Yahoo Finance monthly
closes, 1990-01 to 2022-06): the S&P 500 (``^GSPC``) and the NASDAQ Composite (``^IXIC``).
The file is read as exported, by :func:`unitprobe.tasks.load_csv`: the source note above the
header is skipped, rows are ordered by their ``Date``, and the 133 rows that hold no price at
all (dates other than month starts, with every column empty) are dropped (``fill="drop"``),
leaving 391 month-start closes.

Pipeline
--------
1. Monthly log-returns in percent, ``SPX`` and ``NDX`` (the return of month m is dated m),
   written to a CSV with a ``Date`` column.
2. A data task (``relations = []``): inputs SPX and NDX, predict both one month ahead.
3. Split by time: windows of ``window`` months every ``stride`` months that end before
   ``SPLIT`` train the network (its own validation split, over these overlapping windows,
   stops training early); windows that start at or after ``SPLIT`` are the held-out test.
4. A small LSTM is trained and compared on the held-out months with the four baselines of
   :mod:`unitprobe.methods.baselines`, fitted on the training windows only: repeat the last
   return, the training mean, a memoryless linear map from this month's returns, and a
   linear autoregression on the last p months (p chosen on part of the training windows).
5. :func:`unitprobe.pipeline.analyze.compute_analysis` probes, ablates and attributes it on
   non-overlapping windows of every month, with lagged targets ``SPX[t]``, ``SPX[t-1]``, ...,
   ``abs(SPX[t])`` (a volatility proxy), and prints the role table.

What it finds (seed 0): the network does not predict next month's returns better than the
training mean or the linear baselines (held-out MSE 0.855 against training mean 0.845,
memoryless linear 0.852, linear AR(8) 0.888; repeating the last return gives 1.80), as one
expects of index returns; the report prints a warning saying so. Its units still hold
something definite: their receptive fields are exponentially weighted averages of the last
few months' returns (weights roughly halving per month, mostly of the NASDAQ), whose nearest
probe targets are the three-month sums; the probes cannot tell those apart from the current
return (they correlate). Ablating any unit changes the output MSE by under 2%: the readout
has learned to ignore what the units hold.

Writes ``figures/real_series_data.{png,pdf}`` (the series, the split and the held-out errors)
and ``figures/real_series_probes.{png,pdf}`` (probe R² per unit and target).

Run: ``python analyses/real_series.py`` (20 s on 2 idle cores, 158 s on busy ones);
``--quick`` for a smaller run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from unitprobe.config import AnalyzeConfig
from unitprobe.methods.baselines import baseline_table
from unitprobe.methods.roles import summarize_roles
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.train import TrainConfig, train
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.tasks import Dataset, load_csv
from unitprobe.tasks.csvdata import data_task
from unitprobe.views.figures import plot_probe_heatmap, save_figure
from unitprobe.views.style import categorical, new_figure, style

HERE = Path(__file__).resolve().parent
FIGURES = HERE.parent / "figures"
#: Columns of Stocks.csv and the series names they get.
COLUMNS = {"^GSPC": "SPX", "^IXIC": "NDX"}
#: First month of the held-out test period.
SPLIT = "2015-01-01"
#: Probe targets: each return now and one and two months back, the three-month sums
#: (short-term momentum) and the size of this month's move (a volatility proxy).
TARGETS = (
    "SPX[t]",
    "SPX[t-1]",
    "SPX[t-2]",
    "NDX[t]",
    "NDX[t-1]",
    "NDX[t-2]",
    "SPX[t] + SPX[t-1] + SPX[t-2]",
    "NDX[t] + NDX[t-1] + NDX[t-2]",
    "abs(SPX[t])",
)


@dataclass(frozen=True)
class Settings:
    """Sizes of one run; :data:`FULL` and :data:`QUICK` are the two used."""

    units: int = 6
    window: int = 24
    stride: int = 3
    epochs: int = 300
    patience: int = 40
    weight_decay: float = 1e-2
    seed: int = 0
    n_permutations: int = 199
    n_controls: int = 3


FULL = Settings()
QUICK = Settings(units=4, epochs=60, patience=15, n_permutations=19, n_controls=1)


def stocks_csv() -> Path:
    """Path of matplotlib's sample ``Stocks.csv`` (installed with matplotlib)."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("Stocks.csv", asfileobj=False))


def load_prices(path: Path | None = None) -> pd.DataFrame:
    """Month-start closes of the two indices, in date order.

    Returns
    -------
    DataFrame with columns ``Date`` (datetime64), ``SPX``, ``NDX`` (index points), one row per
    month with a price (391 rows).
    """
    path = stocks_csv() if path is None else path
    prices = load_csv(path, series=list(COLUMNS), time_col="Date", fill="drop")
    table = pd.read_csv(path, comment="#", usecols=["Date", *COLUMNS])
    dates = pd.to_datetime(table.dropna()["Date"]).sort_values().to_numpy()
    frame = pd.DataFrame({"Date": dates})
    for column, name in COLUMNS.items():
        frame[name] = prices.raw_full(column)[0]  # (n_months,)
    return frame


def monthly_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Log-returns in percent, ``100 * log(p[m] / p[m-1])``, dated by month m.

    The export's last row (2022-06-28) repeats the June close, so its return is exactly 0; it
    is kept as exported.
    """
    values = prices[list(COLUMNS.values())].to_numpy(np.float64)
    returns = 100 * np.diff(np.log(values), axis=0)  # (n_months - 1, 2)
    frame = pd.DataFrame(returns, columns=list(COLUMNS.values()))
    frame.insert(0, "Date", prices["Date"].iloc[1:].dt.strftime("%Y-%m-%d").to_numpy())
    return frame


def stocks_task() -> Any:
    """The data task: inputs SPX and NDX returns, predict both one month ahead."""
    return data_task(
        "stocks",
        ["SPX", "NDX"],
        ["SPX", "NDX"],
        description="Monthly log-returns (%) of the S&P 500 and the NASDAQ Composite.",
    )


def windows(path: Path, window: int, stride: int) -> Dataset:
    """Windows of the returns CSV, ordered by date (``sequence_ids`` = window index)."""
    return load_csv(path, stocks_task(), time_col="Date", window=window, stride=stride)


def split_by_time(
    data: Dataset, dates: pd.Series, stride: int, split: str = SPLIT
) -> tuple[Dataset, Dataset]:
    """Windows that end before ``split`` (train) and windows that start at or after it (test)."""
    window = data.length + data.horizon
    start = data.sequence_ids * stride  # first row of each window
    first = np.asarray(pd.to_datetime(dates)[start])
    last = np.asarray(pd.to_datetime(dates)[start + window - 1])
    cut = np.datetime64(pd.Timestamp(split))
    return data.subset(last < cut), data.subset(first >= cut)


def test_errors(model: Any, train_data: Dataset, test_data: Dataset) -> dict[str, float]:
    """MSE on the held-out windows (normalized units², mean over both outputs and all steps).

    Keys: ``model``, ``repeat_last`` (predict this month's return for the next), ``train_mean``
    (predict the mean target of the training windows), ``memoryless_linear`` (least squares
    from this month's returns) and ``linear_ar`` (least squares from the last p months, p
    chosen on part of the training windows; ``ar_order``), both fitted on the training windows
    only (:mod:`unitprobe.methods.baselines`); ``step_nmse_<name>`` the per-step normalized
    errors.
    """
    with torch.no_grad():
        predicted = model(torch.as_tensor(test_data.inputs)).numpy()  # (N, T, 2)
    target = test_data.targets.astype(np.float64)
    mean = train_data.targets.mean(axis=(0, 1))
    table = baseline_table(train_data, test_data, predicted).set_index("baseline")
    out = {
        "model": float(((predicted - target) ** 2).mean()),
        "repeat_last": float(((test_data.inputs - target) ** 2).mean()),
        "train_mean": float(((mean - target) ** 2).mean()),
        "memoryless_linear": float(table.loc["memoryless_linear", "mse"]),
        "linear_ar": float(table.loc["linear_ar", "mse"]),
        "ar_order": int(table.loc["linear_ar", "order"]),
    }
    out.update({f"step_nmse_{b}": float(table.loc[b, "step_nmse"]) for b in table.index})
    return out


def run(settings: Settings = FULL, work: Path | None = None, echo=print) -> dict[str, Any]:
    """The whole pipeline; returns the data, the trained model, the errors and the tables."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) if work is None else work
        prices = load_prices()
        returns = monthly_returns(prices)
        path = work / "stock_returns.csv"
        returns.to_csv(path, index=False, float_format="%.10g")
        data = windows(path, settings.window, settings.stride)
        train_data, test_data = split_by_time(data, returns["Date"], settings.stride)
        whole = windows(path, settings.window, settings.window)  # non-overlapping, every month
    config = TrainConfig(
        n_units=settings.units,
        epochs=settings.epochs,
        patience=settings.patience,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
    )
    result = train(train_data, config)
    errors = test_errors(result.model, train_data, test_data)
    ckpt = Checkpoint.from_training(result, whole.spec, "stock_returns.pt", config)
    analysis = compute_analysis(
        ckpt,
        AnalyzeConfig.from_options(
            n_sequences=whole.n_sequences,
            seed=settings.seed,
            targets=TARGETS,
            n_permutations=settings.n_permutations,
            n_controls=settings.n_controls,
            ablation_modes=("zero", "mean"),
        ),
        dataset=whole,
    )
    echo(
        f"{len(prices)} months of prices -> {len(returns)} returns; "
        f"{train_data.n_sequences} training windows, {test_data.n_sequences} test windows of "
        f"{settings.window} months; {settings.units}-unit LSTM, {result.metrics['epochs_run']} "
        f"epochs, {time.perf_counter() - start:.0f} s"
    )
    return {
        "prices": prices,
        "returns": returns,
        "train": train_data,
        "test": test_data,
        "whole": whole,
        "result": result,
        "errors": errors,
        "tables": analysis.tables,
        "settings": settings,
    }


def population_r2(population: pd.DataFrame, column: str = "r2") -> pd.Series:
    """Population-probe R² (state h, layer 0) per target, in :data:`TARGETS` order."""
    rows = population[(population["layer"] == 0) & (population["state"] == "h")]
    return rows.set_index("target")[column].reindex(list(TARGETS))


def report(out: dict[str, Any]) -> str:
    """The numbers of a run as text: held-out errors, population probes, roles."""
    e = out["errors"]
    pop = population_r2(out["tables"]["population_probes"])
    control = population_r2(out["tables"]["population_probes"], "r2_control")
    lines = [
        f"held-out MSE (months from {SPLIT[:7]}, normalized units): model {e['model']:.3f}, "
        f"predict the training mean {e['train_mean']:.3f}, repeat the last return "
        f"{e['repeat_last']:.3f}, memoryless linear {e['memoryless_linear']:.3f}, "
        f"linear AR({e['ar_order']}) {e['linear_ar']:.3f}",
    ]
    best_linear = min(e["memoryless_linear"], e["linear_ar"])
    if e["model"] >= best_linear:
        lines.append(
            f"warning: the network does not beat the linear baselines "
            f"({e['model']:.3f} >= {best_linear:.3f}); what its units hold is not used well"
        )
    lines += ["population probe R² (trained / untrained control):"]
    lines += [f"  {t:<28} {pop[t]:6.3f} / {control[t]:6.3f}" for t in TARGETS]
    lines += ["", summarize_roles(out["tables"]["roles"])]
    return "\n".join(lines)


def data_figure(out: dict[str, Any]):
    """The two return series with the train/test split, and the held-out errors."""
    returns, errors = out["returns"], out["errors"]
    dates = pd.to_datetime(returns["Date"])
    colours = categorical(3)
    with style():
        fig = new_figure(7.0, 2.9)
        grid = fig.add_gridspec(1, 2, width_ratios=[2.6, 1.6])
        ax = fig.add_subplot(grid[0])
        for name, colour in zip(COLUMNS.values(), colours, strict=False):
            label = {"SPX": "S&P 500", "NDX": "NASDAQ Composite"}[name]
            ax.plot(dates, returns[name], color=colour, lw=0.8, label=label)
        ax.axvspan(pd.Timestamp(SPLIT), dates.iloc[-1], color="0.92", zorder=0)
        ax.text(pd.Timestamp(SPLIT), ax.get_ylim()[1], " held out", va="top", fontsize=8)
        ax.axhline(0, color="0.5", lw=0.5)
        ax.set_ylabel("monthly log-return (%)")
        ax.set_title("Monthly returns (Stocks.csv, Yahoo Finance)")
        ax.legend(loc="lower left", frameon=False, ncols=2)
        bars = fig.add_subplot(grid[1])
        names = ["model", "train_mean", "repeat_last", "memoryless_linear", "linear_ar"]
        labels = ["LSTM", "train\nmean", "repeat\nlast", "linear\nx[t]", "linear\nAR"]
        values = [errors[n] for n in names]
        bars.bar(labels, values, color=[colours[2], "0.6", "0.6", "0.6", "0.6"])
        for i, v in enumerate(values):
            bars.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        bars.set_ylabel("held-out MSE (normalized)")
        bars.set_title("Next-month prediction")
        bars.set_ylim(0, max(values) * 1.15)
    return fig


def probe_figure(out: dict[str, Any]):
    """Probe R² per unit and target (cells also give selectivity over the untrained network)."""
    s = out["settings"]
    tables = out["tables"]
    fig = plot_probe_heatmap(tables["probes"], tables["population_probes"], state="h", layer=0)
    fig.suptitle(
        f"What the units hold: {s.units}-unit LSTM predicting next-month S&P 500 and NASDAQ returns"
    )
    return fig


def save_figures(out: dict[str, Any], directory: Path = FIGURES) -> list[Path]:
    """Write ``real_series_data`` and ``real_series_probes`` as PNG and PDF."""
    written = save_figure(data_figure(out), directory / "real_series_data")
    return written + save_figure(probe_figure(out), directory / "real_series_probes")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Smaller, faster run.")
    parser.add_argument("--out", type=Path, default=FIGURES, help="Figure directory.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = run(QUICK if args.quick else FULL)
    print(report(out))
    for path in save_figures(out, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
