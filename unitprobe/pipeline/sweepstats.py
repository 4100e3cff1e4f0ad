"""Statistics of capacity sweeps across seeds: pure functions on tidy tables.

Everything here reads the tables a sweep writes (``sweep.csv``, and each run's ``probes.csv``
and ``roles.csv``) and returns plain numbers or tidy DataFrames; nothing touches a model.

Bootstrap intervals (:func:`bootstrap_ci`)
    Percentile bootstrap of the mean over seeds: ``n_resamples`` (default 2000) resamples of
    the seeds with replacement, drawn from ``np.random.default_rng(seed)``; the interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means.
    With one seed the interval collapses to the value itself.

Knee (:func:`find_knee`)
    The smallest number of units whose mean error is within a tolerance of the best mean of
    the curve: ``mean(u) <= best + tol`` (``relative=False``, the default; ``tol`` is absolute,
    in the metric's units: for ``mse_ratio`` = validation MSE / repeat-last-value baseline MSE,
    ``tol = 0.05`` means "within 5 % of the baseline's error of the best layer size"), or
    ``mean(u) <= best * (1 + tol)`` (``relative=True``). For ``delay-k`` the knee is expected at
    ``k`` units, the task's minimal state size.

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

Cross-seed role matching (:func:`match_units`, :func:`role_stability`)
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

__all__ = [
    "INDEX_COLUMNS",
    "bootstrap_ci",
    "capacity_table",
    "find_knee",
    "index_table",
    "knee_table",
    "match_units",
    "redundancy_index",
    "role_stability",
    "run_indices",
    "specialization_index",
    "sweep_summary",
    "unit_fields",
    "unit_profiles",
    "unit_specialization",
]

NONE = "none"
#: Per-run indices stored in ``sweep.csv`` and summarized by :func:`index_table`.
INDEX_COLUMNS = ("specialization", "redundancy")


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
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise DataError(f"n_resamples == {n_resamples!r}, must be an integer >= 1")
    if n_resamples < 1:
        raise DataError(f"n_resamples == {n_resamples}, must be >= 1")
    if not 0 < confidence < 1:
        raise DataError(f"confidence == {confidence!r}, must be in (0, 1)")
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


def find_knee(
    units: ArrayLike, means: ArrayLike, *, tol: float = 0.05, relative: bool = False
) -> int | None:
    """The smallest number of units whose mean error is within ``tol`` of the best.

    Parameters
    ----------
    units : array-like of shape (n_points,)
        Layer sizes (any order, distinct).
    means : array-like of shape (n_points,)
        Mean error at each size (lower is better); NaN points are ignored.
    tol : float, default 0.05
        ``mean <= best + tol`` (absolute, in the metric's units), or ``mean <= best * (1 +
        tol)`` with ``relative=True``. Must be >= 0.
    relative : bool, default False

    Returns
    -------
    int or None
        The knee's number of units; None when no mean is finite.

    Examples
    --------
    >>> find_knee([1, 2, 3, 4], [0.9, 0.5, 0.01, 0.0])
    3
    """
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
    threshold = best * (1.0 + tol) if relative else best + tol
    # Compare with a hair of slack so a point equal to the threshold counts as within it.
    within = m <= threshold + 1e-12 * max(1.0, abs(threshold))
    return int(u[within].min())


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
    tol: float = 0.05,
    relative: bool = False,
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
    tol, relative : see :func:`find_knee`
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
        knee = find_knee(group["units"], group["mean"], tol=tol, relative=relative)
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
    tol: float = 0.05,
    relative: bool = False,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`capacity_table` and :func:`index_table` side by side, one row per (task, units).

    The table that :func:`unitprobe.views.figures.plot_capacity_curve` and
    :func:`unitprobe.views.figures.plot_specialization` read (``sweep_summary.csv``).
    """
    kw = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    capacity = capacity_table(sweep, metric=metric, tol=tol, relative=relative, **kw)
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
        ``probes.csv`` (``layer``, ``unit``, ``state``, ``target`` and the ``value`` column);
        the population rows (``unit == "all"``) are ignored.
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
    missing = [c for c in ("layer", "unit", "target", value) if c not in probes.columns]
    if missing:
        raise DataError(f"probes table lacks column(s) {', '.join(missing)}")
    df = probes[probes["unit"].astype(str) != "all"]
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
    attribution: pd.DataFrame, *, layer: int | None = 0, method: str | None = None
) -> pd.DataFrame:
    """Each unit's receptive field as a profile: one row per unit, one column per input × lag.

    Parameters
    ----------
    attribution : DataFrame
        ``attribution.csv``; rows of ``kind == "unit_input_lag"`` are read (``feature``,
        ``lag``, ``layer``, ``unit``, ``attribution_signed``).
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
    need = ("kind", "feature", "lag", "layer", "unit", "attribution_signed")
    missing = [c for c in need if c not in attribution.columns]
    if missing:
        raise DataError(f"attribution table lacks column(s) {', '.join(missing)}")
    df = attribution[attribution["kind"] == "unit_input_lag"]
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


# ---------------------------------------------------------------------------------------------
# cross-seed role matching
# ---------------------------------------------------------------------------------------------
def match_units(reference: ArrayLike, other: ArrayLike) -> np.ndarray:
    """Match each reference unit to a distinct unit of another network by profile.

    Minimizes the summed squared Euclidean distance between matched profiles (Hungarian
    algorithm, :func:`scipy.optimize.linear_sum_assignment`). NaN counts as 0.

    Parameters
    ----------
    reference : array-like of shape (n_units_a, n_targets)
    other : array-like of shape (n_units_b, n_targets)

    Returns
    -------
    ndarray of int64, shape (n_units_a,)
        ``match[i]`` = the unit of ``other`` matched to reference unit ``i``, or -1 when
        ``other`` has fewer units and ``i`` is left unmatched.

    Examples
    --------
    >>> match_units([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.9], [0.8, 0.1]]).tolist()
    [1, 0]
    """
    from scipy.optimize import linear_sum_assignment

    a = np.nan_to_num(np.asarray(reference, dtype=float))
    b = np.nan_to_num(np.asarray(other, dtype=float))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(
            f"profiles have shapes {a.shape} and {b.shape}; expected (n_units, n_targets) "
            "with the same targets"
        )
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)  # (n_a, n_b)
    rows, cols = linear_sum_assignment(cost)
    match = np.full(a.shape[0], -1, dtype=np.int64)
    match[rows] = cols
    return match


def _role_vector(roles: pd.DataFrame, units: pd.Index, layer: int) -> np.ndarray:
    df = roles
    if "layer" in df.columns:
        df = df[pd.to_numeric(df["layer"]) == layer]
    by_unit = dict(zip(pd.to_numeric(df["unit"]).astype(int), df["role"].astype(str), strict=True))
    return np.array([by_unit.get(int(u), NONE) for u in units], dtype=object)


def role_stability(
    probes: pd.DataFrame,
    roles: pd.DataFrame,
    *,
    attribution: pd.DataFrame | None = None,
    profile: str = "probe",
    reference: int | None = None,
    value: str = "r2",
    state: str = "h",
    layer: int = 0,
    by: Sequence[str] = ("task", "units"),
    include_none: bool = False,
) -> pd.DataFrame:
    """How often each role appears across seeds, and how stably matched units keep it.

    Parameters
    ----------
    probes : DataFrame
        ``probes.csv`` rows of several runs with a ``seed`` column (and the ``by`` columns).
    roles : DataFrame
        ``roles.csv`` rows of the same runs with a ``seed`` column (and the ``by`` columns).
    attribution : DataFrame, optional
        ``attribution.csv`` rows of the same runs with a ``seed`` column; needed for
        ``profile`` ``"receptive_field"`` or ``"both"``.
    profile : {"probe", "receptive_field", "both"}, default "probe"
        What units are matched by: probe profiles (:func:`unit_profiles`, negative values
        clipped to 0), receptive fields (:func:`unit_fields`), or both side by side.
    reference : int or None, default None
        The reference seed; None uses every seed in turn (all ordered pairs of seeds).
    value, state : see :func:`unit_profiles`
    layer : int, default 0
    by : sequence of str, default ("task", "units")
        Columns that separate groups of runs to compare (those absent are ignored).
    include_none : bool, default False
        Also report the role ``none``.

    Returns
    -------
    DataFrame
        ``by`` columns, ``role``, ``frequency`` (fraction of seeds with >= 1 unit holding the
        role), ``stability`` (fraction of (reference unit with the role, other seed) pairs
        whose matched unit holds it too; NaN with one seed or when no reference seed has the
        role), ``n_seeds``, ``n_pairs`` (pairs behind ``stability``), ``mean_units`` (mean
        number of units holding the role per seed).
    """
    if profile not in ("probe", "receptive_field", "both"):
        raise DataError(f"profile == {profile!r}, must be 'probe', 'receptive_field' or 'both'")
    tables = {"probes": probes, "roles": roles}
    if profile != "probe":
        if attribution is None:
            raise DataError(f"profile == {profile!r} needs the attribution table")
        tables["attribution"] = attribution
    for name, df in tables.items():
        if "seed" not in df.columns:
            raise DataError(f"{name} table needs a 'seed' column to compare runs")
    if "role" not in roles.columns or "unit" not in roles.columns:
        raise DataError("roles table needs columns 'unit' and 'role'")
    keys = [c for c in by if all(c in df.columns for df in tables.values())]
    groups = probes.groupby(keys, sort=False) if keys else [((), probes)]
    rows = []
    for key, group_probes in groups:
        key = key if isinstance(key, tuple) else (key,)
        parts = {"probes": group_probes}
        for name in tables:
            if name == "probes":
                continue
            df = tables[name]
            mask = np.ones(len(df), dtype=bool)
            for c, v in zip(keys, key, strict=True):
                mask &= (df[c] == v).to_numpy()
            parts[name] = df[mask]
        seeds = sorted(pd.unique(group_probes["seed"]))
        profiles = {
            s: _seed_profile(parts, s, profile, value, state, layer, group_probes) for s in seeds
        }
        role_of = {
            s: _role_vector(parts["roles"][parts["roles"]["seed"] == s], profiles[s].index, layer)
            for s in seeds
        }
        for row in _stability_rows(profiles, role_of, reference, include_none):
            rows.append({**dict(zip(keys, key, strict=True)), **row})
    columns = [*keys, "role", "frequency", "stability", "n_seeds", "n_pairs", "mean_units"]
    return pd.DataFrame(rows, columns=columns)


def _seed_profile(parts, seed, profile, value, state, layer, all_probes) -> pd.DataFrame:
    targets = list(dict.fromkeys(all_probes["target"]))
    probes = parts["probes"]
    prof = unit_profiles(
        probes[probes["seed"] == seed], value=value, state=state, layer=layer, targets=targets
    ).clip(lower=0.0)
    if profile == "probe":
        return prof
    attribution = parts["attribution"]
    fields = unit_fields(attribution[attribution["seed"] == seed], layer=layer)
    if profile == "receptive_field":
        return fields.reindex(prof.index if len(prof) else fields.index).fillna(0.0)
    fields = fields.reindex(prof.index).add_prefix("field ")
    return pd.concat([prof.add_prefix("probe "), fields], axis=1).fillna(0.0)


def _stability_rows(profiles, role_of, reference, include_none) -> list[dict]:
    seeds = sorted(profiles)
    if reference is not None and reference not in seeds:
        raise DataError(f"reference seed {reference} not among the seeds {seeds}")
    # cells present in some seed only (e.g. longer receptive fields) count as 0 elsewhere
    columns = list(dict.fromkeys(c for s in seeds for c in profiles[s].columns))
    vectors = {s: profiles[s].reindex(columns=columns).fillna(0.0).to_numpy() for s in seeds}
    all_roles = sorted({r for s in seeds for r in role_of[s]}, key=str)
    if not include_none:
        all_roles = [r for r in all_roles if r != NONE]
    refs = seeds if reference is None else [reference]
    hits: dict[str, list[int]] = {r: [0, 0] for r in all_roles}
    for a in refs:
        for b in seeds:
            if b == a:
                continue
            match = match_units(vectors[a], vectors[b])
            for i, r in enumerate(role_of[a]):
                if r not in hits:
                    continue
                hits[r][1] += 1
                hits[r][0] += int(match[i] >= 0 and role_of[b][match[i]] == r)
    out = []
    for r in all_roles:
        counts = [int((role_of[s] == r).sum()) for s in seeds]
        same, pairs = hits[r]
        out.append(
            {
                "role": r,
                "frequency": float(np.mean([c > 0 for c in counts])),
                "stability": same / pairs if pairs else np.nan,
                "n_seeds": len(seeds),
                "n_pairs": pairs,
                "mean_units": float(np.mean(counts)),
            }
        )
    return out
