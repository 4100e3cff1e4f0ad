"""Statistics of capacity sweeps across seeds: pure functions on tidy tables.

Everything here reads the tables a sweep writes (``sweep.csv``, and each run's ``probes.csv``
and ``roles.csv``) and returns plain numbers or tidy DataFrames; nothing touches a model.

Bootstrap intervals (:func:`bootstrap_ci`)
    Percentile bootstrap of the mean over seeds: ``n_resamples`` (default 2000) resamples of
    the seeds with replacement, drawn from ``np.random.default_rng(seed)``; the interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means.
    With one seed the interval collapses to the value itself.

Knee (:func:`find_knee`, :func:`knee_intervals`, :func:`knee_sensitivity`)
    The smallest number of units whose mean error is close enough to the best mean ``b`` of
    the curve. ``rule="skill"`` (the figures' rule, on ``step_nmse``, the per-step normalized
    error of :mod:`unitprobe.tasks.baselines`, for which 1 is the per-step mean): the layer
    keeps at least ``1 - tol`` of the best layer's skill ``1 - b``, i.e.
    ``mean(u) - b <= tol * (1 - b)``: its excess error over the best is at most ``tol`` (default
    :data:`KNEE_TOL` = 0.05) times the error the best layer removed. This is a ratio tolerance
    relative to the best error that does not move when extra units keep polishing a solved
    task (error falling 10-30x past the state size, as on ``delay-k``); a pure error ratio
    does. ``rule="relative"``: ``mean(u) <= b * (1 + tol)`` (e.g. ``tol = 1``: within 2x the
    best). ``rule="absolute"`` (the old default): ``mean(u) <= b + tol``. For a task with a
    minimal state size s (:data:`unitprobe.tasks.presets.STATE_SIZE`), the knee is expected at
    s units. Intervals over seeds: the seeds are resampled with replacement (whole curves,
    ``n_resamples`` times), the knee of each resampled mean curve is found, and its 2.5 and
    97.5 percentiles are reported beside the share of seeds whose own curve has the knee at
    the same size.

Specialization index (:func:`unit_specialization`, :func:`specialization_index`)
    Each unit's *profile* is its probe value (default the held-out ``r2`` of its hidden state)
    for each of the ``K`` targets, clipped at 0: ``p_k = max(r2_k, 0)``. Its share of the best
    target is ``m = max_k p_k / sum_k p_k`` (``method="max_share"``), rescaled so that a unit
    that holds all targets equally scores 0 and a unit that holds exactly one target scores 1::

        specialization(unit) = (K * m - 1) / (K - 1)

    ``method="entropy"`` gives ``1 - H(p / sum p) / log K`` instead (also 0 for a flat
    profile, 1 for a single target). Units whose profile is all zero (they hold no target) are
    left out; the index of a layer is the mean over the remaining units (NaN if none). With
    ``K == 1`` every unit that holds the target scores 1. Note that targets which are
    collinear in the data (e.g. ``K[t]`` and ``K[t-1]`` in the ``seed`` task, r² > 0.99) give
    every unit a flat r² profile whatever it computes; pass ``value="partial_r2"`` to use what
    each unit explains of a target beyond the others.

Redundancy index (:func:`redundancy_index`)
    From a ``roles`` table: with ``n`` units that have a role other than ``none`` and ``d``
    distinct roles among them (counted per layer), ``redundancy = (n - d) / n``: 0 when every
    unit with a role holds a different target, ``(n - 1) / n`` when all hold the same one, 0 by
    definition when no unit has a role.

Cross-seed role matching (:mod:`unitprobe.pipeline.stability`)
    Units of two networks trained with different seeds are matched one-to-one by their probe
    profiles (the same vectors as above, NaN read as 0), minimizing the summed squared
    Euclidean distance with the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`). Where the targets are collinear every
    probe profile is flat, so a unit's receptive field (:func:`unit_fields`: its absolute
    attribution to each input at each lag, scaled to a maximum of 1) can be used instead
    (``profile="receptive_field"``) or appended to the probe profile (``profile="both"``).
    For each role ``r``: ``frequency`` = the fraction of seeds in which at least one unit has
    role ``r``; ``stability`` = over every reference seed ``a`` (or only the one given), every
    other seed ``b`` and every unit of ``a`` with role ``r``, the fraction whose matched unit
    in ``b`` has role ``r`` too.

Example
-------
>>> sweep = pd.read_csv("SWEEP/sweep.csv")
>>> capacity_table(sweep, metric="mse_ratio")[["task", "units", "mean", "lo", "hi", "knee"]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe.errors import DataError
from unitprobe.schemas import NO_ROLE as NONE
from unitprobe.validation import check_choice, check_columns, check_float, check_int

__all__ = [
    "INDEX_COLUMNS",
    "KNEE_RULES",
    "KNEE_TOL",
    "SENSITIVITY",
    "bootstrap_ci",
    "capacity_table",
    "find_knee",
    "index_table",
    "knee_intervals",
    "knee_sensitivity",
    "knee_table",
    "redundancy_index",
    "run_indices",
    "specialization_index",
    "sweep_summary",
    "unit_fields",
    "unit_profiles",
    "unit_specialization",
]

#: Per-run indices stored in ``sweep.csv`` and summarized by :func:`index_table`.
INDEX_COLUMNS = ("specialization", "redundancy")
#: Default knee tolerance: the knee reaches (1 - KNEE_TOL) of the best layer's skill.
KNEE_TOL = 0.05


# ---------------------------------------------------------------------------------------------
# bootstrap and knee
# ---------------------------------------------------------------------------------------------
def bootstrap_ci(
    values: ArrayLike,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of a statistic (default the mean) over seeds.

    Parameters
    ----------
    values : array-like of shape (n_seeds,)
        One number per seed; NaN values are dropped.
    n_resamples : int, default 2000
        Bootstrap resamples (with replacement, same size as the finite values).
    confidence : float, default 0.95
        Coverage of the interval, in (0, 1).
    seed : int, default 0
        Seeds ``np.random.default_rng``; the same inputs give the same interval.
    statistic : callable, default np.mean
        Called as ``statistic(array, axis=-1)``.

    Returns
    -------
    (estimate, lo, hi) : tuple of float
        The statistic of the values and its interval; all NaN when no value is finite; ``lo ==
        hi == estimate`` for a single value.

    Examples
    --------
    >>> bootstrap_ci([1.0, 1.0, 1.0])
    (1.0, 1.0, 1.0)
    """
    check_int(n_resamples, "n_resamples", minimum=1, error=DataError)
    check_float(
        confidence, "confidence", minimum=0, maximum=1,
        strict_minimum=True, strict_maximum=True, error=DataError,
    )  # fmt: skip
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    estimate = float(statistic(x, axis=-1))
    if x.size == 1:
        return (estimate, estimate, estimate)
    rng = np.random.default_rng(seed)
    resampled = statistic(x[rng.integers(0, x.size, size=(n_resamples, x.size))], axis=-1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(resampled, [alpha, 1.0 - alpha])
    return (estimate, float(lo), float(hi))


KNEE_RULES = ("skill", "relative", "absolute")


def find_knee(
    units: ArrayLike,
    means: ArrayLike,
    *,
    tol: float = KNEE_TOL,
    relative: bool = False,
    rule: str | None = None,
) -> int | None:
    """The smallest number of units whose mean error is within ``tol`` of the best.

    Parameters
    ----------
    units : array-like of shape (n_points,)
        Layer sizes (any order, distinct).
    means : array-like of shape (n_points,)
        Mean error at each size (lower is better); NaN points are ignored.
    tol : float, default :data:`KNEE_TOL`
        Tolerance of the rule (module docstring). Must be >= 0.
    relative : bool, default False
        Shorthand for ``rule="relative"`` (when ``rule`` is None).
    rule : {"skill", "relative", "absolute"}, optional
        Default ``"relative"`` if ``relative`` else ``"absolute"``.

    Returns
    -------
    int or None
        The knee's number of units; None when no mean is finite.

    Examples
    --------
    >>> find_knee([1, 2, 3, 4], [0.9, 0.5, 0.01, 0.0])
    3
    >>> find_knee([1, 2, 3, 4], [0.6, 0.01, 0.001, 0.0001], rule="skill")
    2
    """
    rule = check_choice(rule or ("relative" if relative else "absolute"), "rule", KNEE_RULES)
    if not (np.isfinite(tol) and tol >= 0):
        raise DataError(f"tol == {tol!r}, must be a finite number >= 0")
    u = np.asarray(units, dtype=float).ravel()
    m = np.asarray(means, dtype=float).ravel()
    if u.shape != m.shape:
        raise DataError(f"units has {u.size} values and means {m.size}; they must match")
    if len(np.unique(u)) != u.size:
        raise DataError(f"units == {u.tolist()} has repeated values; give one mean per size")
    ok = np.isfinite(m) & np.isfinite(u)
    if not ok.any():
        return None
    u, m = u[ok], m[ok]
    best = m.min()
    if rule == "skill":
        threshold = best + tol * max(1.0 - best, 0.0)
    else:
        threshold = best * (1.0 + tol) if rule == "relative" else best + tol
    # Compare with a hair of slack so a point equal to the threshold counts as within it.
    within = m <= threshold + 1e-12 * max(1.0, abs(threshold))
    return int(u[within].min())


def _curves(sweep: pd.DataFrame, metric: str) -> dict[str, pd.DataFrame]:
    """Per task: a seeds x units table of the metric (ok rows)."""
    df = _ok_rows(sweep, [metric, "seed"])
    return {
        task: g.pivot_table(index="seed", columns="units", values=metric, aggfunc="mean")
        for task, g in df.groupby("task", sort=False)
    }


def knee_intervals(
    sweep: pd.DataFrame,
    *,
    metric: str = "step_nmse",
    tol: float = KNEE_TOL,
    rule: str = "skill",
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The knee of each task with its bootstrap interval over seeds.

    Parameters
    ----------
    sweep : DataFrame
        ``sweep.csv`` (``task``, ``units``, ``seed``, the metric; ok rows are used).
    metric, tol, rule : see :func:`find_knee` (module docstring)
    n_resamples, seed : bootstrap resamples of whole seeds, and their random seed

    Returns
    -------
    DataFrame
        One row per task: ``task``, ``rule``, ``tol``, ``knee`` (on the mean curve),
        ``knee_lo``, ``knee_hi`` (2.5 and 97.5 percentiles of the resampled knees),
        ``seed_agreement`` (share of seeds whose own curve has its knee at ``knee``),
        ``n_seeds``.
    """
    check_int(n_resamples, "n_resamples", minimum=1, error=DataError)
    rng = np.random.default_rng(seed)
    rows = []
    for task, table in _curves(sweep, metric).items():
        units, values = table.columns.to_numpy(), table.to_numpy(float)  # (seeds, units)
        knee = find_knee(units, np.nanmean(values, axis=0), tol=tol, rule=rule)
        picks = rng.integers(0, len(values), size=(n_resamples, len(values)))
        boot = [find_knee(units, np.nanmean(values[p], axis=0), tol=tol, rule=rule) for p in picks]
        boot = np.array([np.nan if k is None else k for k in boot], float)
        own = [find_knee(units, v, tol=tol, rule=rule) for v in values]
        rows.append(
            {
                "task": task, "rule": rule, "tol": float(tol),
                "knee": np.nan if knee is None else knee,
                "knee_lo": float(np.nanpercentile(boot, 2.5)),
                "knee_hi": float(np.nanpercentile(boot, 97.5)),
                "seed_agreement": float(np.mean([k == knee for k in own])),
                "n_seeds": len(values),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


#: (rule, tol) pairs of :func:`knee_sensitivity`: skill tolerances and error ratios 1.5x-10x.
SENSITIVITY = (
    *[("skill", t) for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)],
    *[("relative", t) for t in (0.5, 1.0, 4.0, 9.0)],
)


def knee_sensitivity(
    sweep: pd.DataFrame,
    *,
    metric: str = "step_nmse",
    settings: Sequence[tuple[str, float]] = SENSITIVITY,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`knee_intervals` for every (rule, tol) in ``settings``, stacked (one row each)."""
    parts = [
        knee_intervals(sweep, metric=metric, tol=t, rule=r, n_resamples=n_resamples, seed=seed)
        for r, t in settings
    ]
    return pd.concat(parts, ignore_index=True)


def _ok_rows(sweep: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in ("task", "units", *columns) if c not in sweep.columns]
    if missing:
        raise DataError(
            f"sweep table lacks column(s) {', '.join(missing)}; it has {', '.join(sweep.columns)}"
        )
    if "status" in sweep.columns:
        sweep = sweep[sweep["status"] == "ok"]
    out = sweep.copy()
    for c in columns:
        out[c] = pd.to_numeric(out[c], errors="coerce")
    out["units"] = pd.to_numeric(out["units"]).astype("int64")
    return out


def capacity_table(
    sweep: pd.DataFrame,
    *,
    metric: str = "mse_ratio",
    tol: float = KNEE_TOL,
    relative: bool = False,
    rule: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean error over seeds against units, with bootstrap intervals and the knee, per task.

    Parameters
    ----------
    sweep : DataFrame
        ``sweep.csv``: columns ``task``, ``units``, ``seed``, the ``metric`` column, and
        optionally ``status`` (only ``ok`` rows are used).
    metric : str, default "mse_ratio"
        ``mse_ratio`` (validation MSE / repeat-last-value baseline MSE, unitless) or
        ``val_mse`` (normalized units²), or any numeric column.
    tol, relative, rule : see :func:`find_knee`
    n_resamples, confidence, seed : see :func:`bootstrap_ci`

    Returns
    -------
    DataFrame
        One row per (task, units): ``task``, ``units``, ``mean``, ``lo``, ``hi``, ``n_seeds``
        (finite values), ``knee`` (bool, True on the knee row of each task), ``metric``.
        Tasks in order of first appearance, units ascending.
    """
    df = _ok_rows(sweep, [metric])
    rows = []
    for (task, units), group in df.groupby(["task", "units"], sort=False):
        values = group[metric].to_numpy(float)
        mean, lo, hi = bootstrap_ci(
            values, n_resamples=n_resamples, confidence=confidence, seed=seed
        )
        rows.append((task, int(units), mean, lo, hi, int(np.isfinite(values).sum())))
    out = pd.DataFrame(rows, columns=["task", "units", "mean", "lo", "hi", "n_seeds"])
    out = _sort(out)
    out["knee"] = False
    for _, group in out.groupby("task", sort=False):
        knee = find_knee(group["units"], group["mean"], tol=tol, relative=relative, rule=rule)
        if knee is not None:
            out.loc[group.index[group["units"] == knee], "knee"] = True
    out["metric"] = metric
    return out


def knee_table(capacity: pd.DataFrame) -> pd.DataFrame:
    """One row per task: its knee (units) and the mean error there and at the largest size.

    Parameters
    ----------
    capacity : DataFrame
        From :func:`capacity_table`.

    Returns
    -------
    DataFrame
        ``task``, ``knee`` (int, or NaN without one), ``mean_at_knee``, ``best_units``,
        ``best_mean``, ``units_tested`` (e.g. ``"1,2,4"``).
    """
    rows = []
    for task, group in capacity.groupby("task", sort=False):
        knee = group[group["knee"].astype(bool)]
        best = group.loc[group["mean"].idxmin()] if group["mean"].notna().any() else None
        rows.append(
            {
                "task": task,
                "knee": int(knee["units"].iloc[0]) if len(knee) else np.nan,
                "mean_at_knee": float(knee["mean"].iloc[0]) if len(knee) else np.nan,
                "best_units": int(best["units"]) if best is not None else np.nan,
                "best_mean": float(best["mean"]) if best is not None else np.nan,
                "units_tested": ",".join(str(int(u)) for u in sorted(group["units"])),
            }
        )
    return pd.DataFrame(rows)


def index_table(
    sweep: pd.DataFrame,
    *,
    columns: Sequence[str] = INDEX_COLUMNS,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and bootstrap interval over seeds of per-run indices, per (task, units).

    Parameters
    ----------
    sweep : DataFrame
        ``sweep.csv`` (``task``, ``units`` and the ``columns``; only ``ok`` rows are used).
    columns : sequence of str, default ("specialization", "redundancy")

    Returns
    -------
    DataFrame
        ``task``, ``units``, then for each column ``c``: ``c``, ``c_lo``, ``c_hi``,
        ``c_n_seeds``.
    """
    df = _ok_rows(sweep, list(columns))
    rows = []
    for (task, units), group in df.groupby(["task", "units"], sort=False):
        row: dict[str, Any] = {"task": task, "units": int(units)}
        for c in columns:
            values = group[c].to_numpy(float)
            est, lo, hi = bootstrap_ci(
                values, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
            row.update({c: est, f"{c}_lo": lo, f"{c}_hi": hi})
            row[f"{c}_n_seeds"] = int(np.isfinite(values).sum())
        rows.append(row)
    names = ["task", "units"]
    for c in columns:
        names += [c, f"{c}_lo", f"{c}_hi", f"{c}_n_seeds"]
    return _sort(pd.DataFrame(rows, columns=names))


def sweep_summary(
    sweep: pd.DataFrame,
    *,
    metric: str = "mse_ratio",
    tol: float = KNEE_TOL,
    relative: bool = False,
    rule: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`capacity_table` and :func:`index_table` side by side, one row per (task, units).

    The table that :func:`unitprobe.views.figures.plot_capacity_curve` and
    :func:`unitprobe.views.figures.plot_specialization` read (``sweep_summary.csv``).
    """
    kw = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    capacity = capacity_table(sweep, metric=metric, tol=tol, relative=relative, rule=rule, **kw)
    present = [c for c in INDEX_COLUMNS if c in sweep.columns]
    if not present:
        return capacity
    indices = index_table(sweep, columns=present, **kw)
    return capacity.merge(indices, on=["task", "units"], how="left")


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    order = {t: i for i, t in enumerate(dict.fromkeys(df["task"]))}
    df = df.assign(_t=df["task"].map(order)).sort_values(["_t", "units"], kind="stable")
    return df.drop(columns="_t").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# specialization and redundancy
# ---------------------------------------------------------------------------------------------
def unit_profiles(
    probes: pd.DataFrame,
    *,
    value: str = "r2",
    state: str = "h",
    layer: int | None = 0,
    targets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Each unit's probe profile: one row per unit, one column per target.

    Parameters
    ----------
    probes : DataFrame
        A ``probes`` table (``layer``, ``unit``, ``state``, ``target`` and the ``value``
        column).
    value : str, default "r2"
        Which probe column to read (``r2``, ``selectivity``, ``partial_r2``, ...).
    state : str, default "h"
        Rows of this state (ignored when ``probes`` has no ``state`` column).
    layer : int or None, default 0
        Rows of this layer; None keeps every layer (index ``(layer, unit)``).
    targets : sequence of str, optional
        Columns, in this order (missing ones are NaN); default: targets in order of appearance.

    Returns
    -------
    DataFrame of shape (n_units, n_targets)
        Index ``unit`` (int, sorted), or ``(layer, unit)`` when ``layer`` is None.
    """
    check_columns(probes, ("layer", "unit", "target", value), "probes")
    df = probes
    if "state" in df.columns:
        df = df[df["state"] == state]
    df = df.assign(
        unit=pd.to_numeric(df["unit"]).astype("int64"),
        layer=pd.to_numeric(df["layer"]).astype("int64"),
        _v=pd.to_numeric(df[value], errors="coerce"),
    )
    if layer is not None:
        df = df[df["layer"] == layer]
    index = "unit" if layer is not None else ["layer", "unit"]
    names = list(targets) if targets is not None else list(dict.fromkeys(df["target"]))
    table = df.pivot_table(index=index, columns="target", values="_v", aggfunc="mean", sort=True)
    table = table.reindex(columns=names)
    table.columns.name = None
    return table


def unit_fields(
    receptive_fields: pd.DataFrame, *, layer: int | None = 0, method: str | None = None
) -> pd.DataFrame:
    """Each unit's receptive field as a profile: one row per unit, one column per input × lag.

    Parameters
    ----------
    receptive_fields : DataFrame
        A ``receptive_fields`` table (``feature``, ``lag``, ``layer``, ``unit``,
        ``attribution_signed``; ``method`` if there are several).
    layer : int or None, default 0
        Rows of this layer; None keeps every layer (index ``(layer, unit)``).
    method : str, optional
        Attribution method to use when the table has several; default the first one.

    Returns
    -------
    DataFrame of shape (n_units, n_features * n_lags)
        ``|attribution_signed|`` of each cell divided by the unit's largest one (sign-free: a
        unit holding ``-K[t]`` has the field of ``K[t]``); columns ``"<feature>[t-<lag>]"``.
    """
    need = ("feature", "lag", "layer", "unit", "attribution_signed")
    check_columns(receptive_fields, need, "receptive_fields")
    df = receptive_fields
    if "method" in df.columns and len(df):
        chosen = method if method is not None else df["method"].iloc[0]
        df = df[df["method"] == chosen]
    df = df.assign(
        layer=pd.to_numeric(df["layer"]).astype("int64"),
        unit=pd.to_numeric(df["unit"]).astype("int64"),
        cell=df["feature"].astype(str)
        + "[t-"
        + pd.to_numeric(df["lag"]).astype(int).astype(str)
        + "]",
        _v=pd.to_numeric(df["attribution_signed"], errors="coerce").abs(),
    )
    if layer is not None:
        df = df[df["layer"] == layer]
    index = "unit" if layer is not None else ["layer", "unit"]
    table = df.pivot_table(index=index, columns="cell", values="_v", aggfunc="mean", sort=True)
    table = table.reindex(columns=list(dict.fromkeys(df["cell"])))
    scale = table.abs().max(axis=1).replace(0.0, np.nan)
    table.columns.name = None
    return table.div(scale, axis=0).fillna(0.0)


def unit_specialization(profiles: ArrayLike, *, method: str = "max_share") -> np.ndarray:
    """Specialization of each unit from its non-negative profile over targets.

    Parameters
    ----------
    profiles : array-like of shape (n_units, n_targets)
        Probe values per unit and target (negative values and NaN count as 0).
    method : {"max_share", "entropy"}, default "max_share"
        ``(K * max_k p_k / sum_k p_k - 1) / (K - 1)`` or ``1 - H(p / sum p) / log K``.

    Returns
    -------
    ndarray of shape (n_units,)
        In [0, 1]; NaN for a unit whose profile is all zero.

    Examples
    --------
    >>> unit_specialization([[0.9, 0.0], [0.5, 0.5]]).tolist()
    [1.0, 0.0]
    """
    if method not in ("max_share", "entropy"):
        raise DataError(f"method == {method!r}, must be 'max_share' or 'entropy'")
    p = np.asarray(profiles, dtype=float)
    if p.ndim != 2:
        raise DataError(f"profiles has shape {p.shape}, expected (n_units, n_targets)")
    p = np.clip(np.nan_to_num(p, nan=0.0), 0.0, None)
    n_targets = p.shape[1]
    total = p.sum(axis=1)
    out = np.full(p.shape[0], np.nan)
    held = total > 0
    if n_targets == 1 or not held.any():
        out[held] = 1.0
        return out
    share = p[held] / total[held, None]
    if method == "max_share":
        out[held] = (n_targets * share.max(axis=1) - 1.0) / (n_targets - 1.0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            h = -np.where(share > 0, share * np.log(share), 0.0).sum(axis=1)
        out[held] = 1.0 - h / np.log(n_targets)
    return np.clip(out, 0.0, 1.0)


def specialization_index(
    probes: pd.DataFrame,
    *,
    value: str = "r2",
    state: str = "h",
    layer: int | None = 0,
    method: str = "max_share",
) -> float:
    """Mean specialization over the units of a layer (see the module docstring).

    Parameters
    ----------
    probes : DataFrame
        One network's ``probes.csv``.
    value, state, layer : see :func:`unit_profiles`
    method : see :func:`unit_specialization`

    Returns
    -------
    float
        In [0, 1]; NaN when no unit holds any target.
    """
    profiles = unit_profiles(probes, value=value, state=state, layer=layer)
    if profiles.empty:
        return float("nan")
    scores = unit_specialization(profiles.to_numpy(), method=method)
    return float(np.nanmean(scores)) if np.isfinite(scores).any() else float("nan")


def redundancy_index(roles: pd.DataFrame) -> float:
    """Share of role-holding units that duplicate another unit's role: ``(n - d) / n``.

    Parameters
    ----------
    roles : DataFrame
        ``roles.csv`` (``role``; ``layer`` when present: distinct roles are counted per layer).

    Returns
    -------
    float
        In [0, 1); 0 when no unit has a role.

    Examples
    --------
    >>> redundancy_index(pd.DataFrame({"role": ["K[t]", "K[t]", "X[t]", "none"]}))
    0.3333333333333333
    """
    if "role" not in roles.columns:
        raise DataError(f"roles table lacks column 'role'; it has {', '.join(roles.columns)}")
    held = roles[roles["role"].astype(str) != NONE]
    n = len(held)
    if n == 0:
        return 0.0
    keys = ["layer", "role"] if "layer" in held.columns else ["role"]
    distinct = len(held[keys].astype(str).drop_duplicates())
    return (n - distinct) / n


def run_indices(
    probes: pd.DataFrame,
    roles: pd.DataFrame,
    *,
    value: str = "r2",
    state: str = "h",
    method: str = "max_share",
) -> dict[str, float | int]:
    """The per-run numbers a sweep stores: ``n_roles``, ``specialization``, ``redundancy``.

    ``n_roles`` counts units (all layers) whose role is not ``none``; ``specialization`` is
    :func:`specialization_index` over layer 0.
    """
    return {
        "n_roles": int((roles["role"].astype(str) != NONE).sum()),
        "specialization": specialization_index(probes, value=value, state=state, method=method),
        "redundancy": redundancy_index(roles),
    }
