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
3. Split by time three ways (:func:`unitprobe.tasks.timesplit.load_csv_split_validation`,
   what ``unitprobe train --split-at`` uses): the months from ``SPLIT`` (2015-01) on are
   held out; of the 299 months before it, the last 20 % (2010-01 to 2014-12) are a
   validation block and the first 239 train. Training windows are 12 months every 3
   months (76 windows); the validation block (5 windows) and the held-out returns (7
   windows, 2015-01 to 2021-12: 84 of the 91) are cut into non-overlapping 12-month
   windows, so no window of one part shares a month with another, and all three use the
   training months' normalization. 12 months rather than 24, chosen before measuring: in
   non-overlapping 24-month windows the validation block would keep 2 windows and the
   held-out months 3, too few for a stable error ratio.
4. A small LSTM is trained on the training windows and early-stopped on the validation
   block, then compared on the held-out months with the four baselines of
   :mod:`unitprobe.methods.baselines`, fitted on the training windows only: repeat the last
   return, the training mean, a memoryless linear map from this month's returns, and a
   linear autoregression on the last p months (p chosen on part of the training windows).
5. Does the reported validation ratio (``metrics["mse_ratio"]``: validation MSE over the
   repeat-last MSE on the validation windows) predict the held-out ratio (the same on the
   held-out windows, as ``unitprobe train --split-at`` reports it)? For seeds 0-4, with
   the validation block and, for contrast, with the old scheme (``train`` without
   ``validation=``: 20 % of the overlapping training windows drawn at random validate).
6. :func:`unitprobe.pipeline.analyze.compute_analysis` probes, ablates and attributes the
   seed-0 network on non-overlapping windows of every month, with lagged targets
   ``SPX[t]``, ``SPX[t-1]``, ..., ``abs(SPX[t])`` (a volatility proxy), and prints the role
   table.

What it finds
-------------
The validation block predicts the held-out ratio within 10 % on all 5 seeds: validation
ratio 0.441-0.457 (mean 0.450) against held-out 0.470-0.479 (mean 0.475), relative
difference 3.2-7.0 % (mean 5.3 %, worst seed 0). It is lower than the held-out ratio on
every seed, and the gap is the data's: predicting the training mean, with no network at
all, gives 0.444 on the validation block and 0.472 held out (6.0 %). The old scheme misses
by 1.0-17.7 % (mean 12.8 %; within 10 % on 1 seed of 5): validation ratio 0.479-0.560
against held-out 0.475-0.484. Here it errs on the pessimistic side, not the optimistic one:
the training mean scores 0.480-0.568 on those same random 1990-2009 windows, so the miss
comes from which months validate, and the network hardly fits its training windows, so
their overlap with the validation windows does not show. ``unitprobe train --data
returns.csv --time-col Date --window 12 --stride 3 --split-at 2015-01-01 --units 6 --epochs
300 --patience 40`` prints the same two numbers as this script computes for the same
configuration (44.4 % and 47.7 %, 6.9 % apart; the CLI has no weight decay, so that is the
seed-0 network trained without it).

Early stopping on the validation block stops the network after a few epochs (best epoch 3,
4, 78, 24, 3 for seeds 0-4): it does not predict next month's returns better than the
training mean or the linear baselines (seed 0: held-out MSE 0.685 against training mean
0.681, memoryless linear 0.691, linear AR(8) 0.701; repeating the last return gives 1.442),
as one expects of index returns; the report prints a warning saying so. Its units stay
close to their initialization: their receptive fields are weighted sums of the last few
months' returns of both indices, the weights roughly halving per month; no unit gets a
role; the population probes read the current returns (R² 0.88 SPX, 0.94 NDX) about as
well as those of the untrained control network (0.83, 0.91). Setting a unit to zero changes
the output MSE by at most 1.6 % (unit 5), to its mean by under 0.1 %.

Writes ``figures/real_series_data.{png,pdf}`` (the series, the validation block, the
held-out months and the held-out errors), ``figures/real_series_probes.{png,pdf}`` (probe
R² per unit and target), ``figures/real_series_validation.{png,pdf}`` (validation against
held-out ratio per seed and scheme) and ``figures/real_series_validation.csv`` (that table:
one row per seed and scheme, columns of :func:`ratio_row`).

Run: ``python analyses/real_series.py`` (12 s on 2 idle cores: 10 networks and one
analysis); ``--quick`` for a smaller run (2 seeds, 4 units, 5 s).
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
from unitprobe.model.train import TrainConfig, TrainResult, held_out_metrics, train
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.tasks import Dataset, baseline_mse, load_csv
from unitprobe.tasks.csvdata import data_task
from unitprobe.tasks.timesplit import load_csv_split_validation
from unitprobe.views.figures import plot_probe_heatmap, save_figure
from unitprobe.views.style import categorical, new_figure, style

HERE = Path(__file__).resolve().parent
FIGURES = HERE.parent / "figures"
#: Columns of Stocks.csv and the series names they get.
COLUMNS = {"^GSPC": "SPX", "^IXIC": "NDX"}
#: First month of the held-out test period.
SPLIT = "2015-01-01"
#: Share of the months before :data:`SPLIT` that validate (the last ones; as ``--split-at``).
VALIDATION = 0.2
#: The two validation schemes compared: a block of months after every training month (what
#: the network is early-stopped on), and windows drawn at random among the overlapping
#: training windows (the scheme used before, kept for contrast).
SCHEMES = ("time_block", "random_windows")
#: A validation ratio "matches" the held-out ratio when their relative difference is below this.
TOLERANCE = 0.10
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
    """Sizes of one run; :data:`FULL` and :data:`QUICK` are the two used.

    ``seed`` is the network that is analyzed; the validation table trains ``n_seeds`` networks
    with seeds ``seed, seed + 1, ...`` under each scheme.
    """

    units: int = 6
    window: int = 12
    stride: int = 3
    epochs: int = 300
    patience: int = 40
    weight_decay: float = 1e-2
    seed: int = 0
    n_seeds: int = 5
    n_permutations: int = 199
    n_controls: int = 3

    @property
    def seeds(self) -> list[int]:
        """Training seeds of the validation table."""
        return list(range(self.seed, self.seed + self.n_seeds))


FULL = Settings()
QUICK = Settings(units=4, epochs=60, patience=15, n_seeds=2, n_permutations=19, n_controls=1)


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


def windows(path: Path, window: int, stride: int, norm: dict | None = None) -> Dataset:
    """Windows of the returns CSV, ordered by date (``sequence_ids`` = window index).

    ``norm``: apply this normalization (the training part's) instead of fitting one.
    """
    task = stocks_task()
    return load_csv(path, task, time_col="Date", window=window, stride=stride, norm=norm)


def split_by_time(
    path: Path, window: int, stride: int, split: str = SPLIT, validation: float = VALIDATION
) -> tuple[Dataset, Dataset, Dataset]:
    """The returns CSV cut in time three ways: (training, validation, held-out) windows.

    The months before ``split`` are cut once more: their last ``validation`` share is the
    validation block. Training windows (``window`` months every ``stride``) lie in the
    months before it; the validation block and the held-out months (from ``split`` on) are
    cut into non-overlapping windows, so no window of one part shares a month with another
    part (:func:`unitprobe.tasks.timesplit.load_csv_split_validation`). All three use the
    training part's normalization.
    """
    return load_csv_split_validation(
        path,
        stocks_task(),
        at=split,
        validation=validation,
        time_col="Date",
        window=window,
        stride=stride,
    )


def validation_start(dates: pd.Series, split: str = SPLIT, validation: float = VALIDATION) -> str:
    """First month of the validation block: the last ``validation`` share before ``split``."""
    early = int((pd.to_datetime(dates) < pd.Timestamp(split)).sum())
    return str(dates.iloc[int(np.floor((1 - validation) * early))])


def train_config(settings: Settings, seed: int) -> TrainConfig:
    """The network's training configuration for one seed."""
    return TrainConfig(
        n_units=settings.units,
        epochs=settings.epochs,
        patience=settings.patience,
        weight_decay=settings.weight_decay,
        seed=seed,
    )


def held_out_ratio(model: Any, later: Dataset) -> dict[str, float]:
    """The network's error on the held-out windows and its ratio to repeat-last, as
    ``unitprobe train --split-at`` computes them (``holdout_*`` in its checkpoint:
    :func:`unitprobe.model.train.held_out_metrics`)."""
    return held_out_metrics(model, later)


def ratio_row(seed: int, scheme: str, result: TrainResult, later: Dataset) -> dict[str, Any]:
    """One row of the validation table: the reported validation ratio beside the held-out one."""
    m = result.metrics
    held = held_out_ratio(result.model, later)
    return {
        "seed": seed,
        "scheme": scheme,
        "val_ratio": m["mse_ratio"],
        "holdout_ratio": held["holdout_ratio"],
        "rel_diff": abs(m["mse_ratio"] - held["holdout_ratio"]) / held["holdout_ratio"],
        "val_mse": m["val_mse"],
        "val_baseline_mse": m["baseline_mse"],
        "holdout_mse": held["holdout_mse"],
        "holdout_baseline_mse": held["holdout_baseline_mse"],
        "n_train_windows": m["n_train_sequences"],
        "n_val_windows": m["n_val_sequences"],
        "n_holdout_windows": later.n_sequences,
        "best_epoch": m["best_epoch"],
        "epochs_run": m["epochs_run"],
    }


def validation_runs(
    parts: tuple[Dataset, Dataset, Dataset], settings: Settings
) -> tuple[pd.DataFrame, dict[int, TrainResult]]:
    """Train every seed under both schemes; the table and the time-block networks by seed.

    ``time_block``: trained on the training windows, early-stopped on the validation block.
    ``random_windows``: trained on the same training windows without ``validation=``, so
    :func:`~unitprobe.model.train.train` holds out 20 % of them at random for validation.
    Both are then scored on the same held-out windows. Table: one row per seed and scheme
    (columns of :func:`ratio_row`).
    """
    train_part, val_part, later = parts
    rows, networks = [], {}
    for seed in settings.seeds:
        config = train_config(settings, seed)
        for scheme, validation in zip(SCHEMES, (val_part, None), strict=True):
            result = train(train_part, config, validation=validation)
            rows.append(ratio_row(seed, scheme, result, later))
            if scheme == "time_block":
                networks[seed] = result
    return pd.DataFrame(rows), networks


def mean_ratios(parts: tuple[Dataset, Dataset, Dataset]) -> dict[str, float]:
    """The two ratios of a predictor that learned nothing: the training windows' mean target.

    What the validation block and the held-out months give without any network: ``val_ratio``
    and ``holdout_ratio`` (its MSE over repeat-last's on each), ``rel_diff`` as in the table.
    """
    mean = parts[0].targets.astype(np.float64).mean(axis=(0, 1))  # (2,)
    val, held = (float(((p.targets - mean) ** 2).mean()) / baseline_mse(p) for p in parts[1:])
    return {"val_ratio": val, "holdout_ratio": held, "rel_diff": abs(val - held) / held}


def held_out_errors(model: Any, train_data: Dataset, test_data: Dataset) -> dict[str, float]:
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
        parts = split_by_time(path, settings.window, settings.stride)
        train_data, val_data, test_data = parts
        # non-overlapping windows of every month, with the training normalization
        whole = windows(path, settings.window, settings.window, norm=train_data.norm)
    validation, networks = validation_runs(parts, settings)
    reference = mean_ratios(parts)
    result = networks[settings.seed]
    errors = held_out_errors(result.model, train_data, test_data)
    config = train_config(settings, settings.seed)
    ckpt = Checkpoint.from_training(
        result, whole.spec, "stock_returns.pt", config, norm=train_data.norm
    )
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
        f"{train_data.n_sequences} training windows of {settings.window} months every "
        f"{settings.stride}, validation block from {validation_start(returns['Date'])[:7]} "
        f"({val_data.n_sequences} windows), {test_data.n_sequences} held-out windows from "
        f"{SPLIT[:7]}; {settings.units}-unit LSTM (seed {settings.seed}: "
        f"{result.metrics['epochs_run']} epochs), {len(validation)} networks trained, "
        f"{time.perf_counter() - start:.0f} s"
    )
    return {
        "prices": prices,
        "returns": returns,
        "train": train_data,
        "validation": val_data,
        "test": test_data,
        "whole": whole,
        "result": result,
        "errors": errors,
        "validation_table": validation,
        "mean_ratios": reference,
        "tables": analysis.tables,
        "settings": settings,
    }


def population_r2(population: pd.DataFrame, column: str = "r2") -> pd.Series:
    """Population-probe R² (state h, layer 0) per target, in :data:`TARGETS` order."""
    rows = population[(population["layer"] == 0) & (population["state"] == "h")]
    return rows.set_index("target")[column].reindex(list(TARGETS))


def validation_text(table: pd.DataFrame, reference: dict[str, float] | None = None) -> str:
    """The validation table as text: per seed, each scheme's two ratios and their difference.

    ``reference``: the ratios of the training mean (:func:`mean_ratios`), printed below.
    """
    wide = table.pivot(index="seed", columns="scheme")  # columns (quantity, scheme)
    rows = [(str(seed), wide.loc[seed]) for seed in wide.index] + [("mean", wide.mean())]

    def cells(v: pd.Series) -> str:
        return "".join(
            f"{v[('val_ratio', s)]:12.3f}{v[('holdout_ratio', s)]:11.3f}"
            f"{100 * v[('rel_diff', s)]:10.1f}%   "
            for s in SCHEMES
        ).rstrip()

    lines = [
        "validation ratio against held-out ratio (network MSE / repeat-last MSE; "
        "|diff| = |val - held| / held):",
        f"{'':5}{'validation block after training':>34}   {'random training windows (old)':>34}",
        f"{'seed':<5}" + f"{'val ratio':>12}{'held-out':>11}{'|diff|':>11}   " * 2,
        *(f"{name:<5}{cells(v)}" for name, v in rows),
    ]
    for scheme in SCHEMES:
        diff = wide[("rel_diff", scheme)]
        lines.append(
            f"{scheme}: worst |diff| {100 * diff.max():.1f}% (seed {diff.idxmax()}); "
            f"within {100 * TOLERANCE:.0f}% on {int((diff < TOLERANCE).sum())} of "
            f"{len(diff)} seeds"
        )
    if reference is not None:
        lines.append(
            f"no network, predict the training mean: val ratio {reference['val_ratio']:.3f}, "
            f"held-out {reference['holdout_ratio']:.3f}, |diff| "
            f"{100 * reference['rel_diff']:.1f}%"
        )
    return "\n".join(line.rstrip() for line in lines)


def report(out: dict[str, Any]) -> str:
    """The numbers of a run as text: validation table, held-out errors, probes, roles."""
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
    return "\n".join([validation_text(out["validation_table"], out["mean_ratios"]), "", *lines])


def data_figure(out: dict[str, Any]):
    """The two return series with the validation block and the held-out months, and the
    held-out errors of the analyzed network and the baselines."""
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
        first_val = pd.Timestamp(validation_start(returns["Date"]))
        ax.axvspan(first_val, pd.Timestamp(SPLIT), color="0.96", zorder=0)
        ax.axvspan(pd.Timestamp(SPLIT), dates.iloc[-1], color="0.88", zorder=0)
        top = ax.get_ylim()[1]
        ax.text(first_val, top, " val.", va="top", fontsize=8)
        ax.text(pd.Timestamp(SPLIT), top, " held out", va="top", fontsize=8)
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


def validation_figure(table: pd.DataFrame):
    """Validation ratio against held-out ratio, one point per seed and scheme.

    ``table``: the validation table (:func:`validation_runs`). The band is the held-out
    ratio ± :data:`TOLERANCE`.
    """
    colours = categorical(2)
    labels = {
        "time_block": "validation block after training (used)",
        "random_windows": "random training windows (old)",
    }
    with style():
        fig = new_figure(4.2, 3.4)
        ax = fig.add_subplot()
        values = table[["val_ratio", "holdout_ratio"]].to_numpy()
        low, top = 0.85 * float(values.min()), 1.1 * float(values.max())
        line = np.array([low, top])
        ax.fill_between(line, (1 - TOLERANCE) * line, (1 + TOLERANCE) * line, color="0.9", lw=0)
        ax.plot(line, line, color="0.5", lw=0.7)
        ax.text(top, (1 - TOLERANCE) * top, f"±{100 * TOLERANCE:.0f}% ", ha="right", va="top",
                fontsize=7, color="0.4")  # fmt: skip
        for scheme, colour in zip(SCHEMES, colours, strict=True):
            rows = table[table["scheme"] == scheme]
            ax.scatter(rows["holdout_ratio"], rows["val_ratio"], color=colour, s=18,
                       label=labels[scheme], zorder=3)  # fmt: skip
        ax.set_xlim(low, top)
        ax.set_ylim(low, top)
        ax.set_aspect("equal")
        ax.set_xlabel("held-out ratio (2015-2022)")
        ax.set_ylabel("reported validation ratio")
        ax.set_title(f"MSE / repeat-last MSE, seeds {table['seed'].min()}-{table['seed'].max()}")
        ax.legend(loc="upper left", frameon=False, fontsize=7)
    return fig


def save_figures(out: dict[str, Any], directory: Path = FIGURES) -> list[Path]:
    """Write ``real_series_data``, ``_probes`` and ``_validation`` (PNG and PDF), and the
    validation table as ``real_series_validation.csv``."""
    written = save_figure(data_figure(out), directory / "real_series_data")
    written += save_figure(probe_figure(out), directory / "real_series_probes")
    table = out["validation_table"]
    written += save_figure(validation_figure(table), directory / "real_series_validation")
    csv = directory / "real_series_validation.csv"
    table.to_csv(csv, index=False, float_format="%.6g")
    return [*written, csv]


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
