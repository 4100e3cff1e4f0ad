"""Validation, preparation and the per-fold building blocks shared by the probe modules.

Every probe reads ``states`` of shape (n_samples, n_units), ``targets`` of shape (n_samples,
n_targets) and ``groups`` of shape (n_samples,) through :func:`prepare`, which checks them once
and computes the ``GroupKFold`` test rows of every fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import _linalg as la
from unitprobe.errors import DataError
from unitprobe.validation import check_float, check_int

__all__: list[str] = []


def as_states(states: ArrayLike) -> np.ndarray:
    """``states`` as a float64 array of shape (n_samples, n_units), n_samples >= 2."""
    try:
        X = np.asarray(states, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"states must be numeric: {err}") from None
    if X.ndim != 2:
        raise DataError(
            f"states must be 2-D of shape (n_samples, n_units), got shape {X.shape}; "
            "use states.reshape(-1, 1) for a single unit"
        )
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise DataError(f"states has shape {X.shape}, need >= 2 rows and >= 1 unit")
    return X


def as_matrix(values, n: int, what: str) -> tuple[np.ndarray, list[str]]:
    """(n, k) float64 array and column labels of a target-like argument."""
    if isinstance(values, pd.DataFrame):
        names = [str(c) for c in values.columns]
        raw = values.to_numpy()
    elif isinstance(values, pd.Series):
        names = [str(values.name) if values.name is not None else "0"]
        raw = values.to_numpy()
    else:
        raw, names = values, None
    try:
        Y = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{what} must be numeric: {err}") from None
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise DataError(f"{what} must be 2-D of shape (n_samples, n_{what}), got shape {Y.shape}")
    if Y.shape[0] != n:
        raise DataError(f"states has {n} rows but {what} has {Y.shape[0]}")
    if Y.shape[1] < 1:
        raise DataError(f"{what} has no columns")
    names = names if names is not None else [str(k) for k in range(Y.shape[1])]
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise DataError(f"{what} has duplicate column names {dup}")
    check_finite(Y, what)
    return Y, names


def check_finite(A: np.ndarray, what: str) -> None:
    """Raise :class:`DataError` naming the first NaN or infinite cell of ``A``."""
    bad = ~np.isfinite(A)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"{what} contains {int(bad.sum())} NaN or infinite values (first at row {i}, "
            f"column {j}); probes need finite values"
        )


def check_alpha(alpha: float, name: str = "alpha", strict: bool = False) -> float:
    """``alpha`` as a float, ``>= 0`` (``> 0`` when ``strict``), else :class:`DataError`."""
    return check_float(alpha, name, minimum=0, strict_minimum=strict, error=DataError)


def check_n_splits(n_splits: int, groups: np.ndarray) -> int:
    """``n_splits`` as an int in ``[2, number of groups]``, else :class:`DataError`."""
    n_splits = check_int(n_splits, "n_splits", minimum=2, error=DataError)
    n_groups = len(pd.unique(groups))
    if n_splits > n_groups:
        raise DataError(
            f"n_splits == {n_splits}, must be <= the number of groups (sequences), {n_groups}"
        )
    return n_splits


@dataclass(frozen=True)
class ProbeData:
    """Validated inputs and the quantities every probe needs."""

    X: np.ndarray  # (n, U) float64
    Y: np.ndarray  # (n, K) float64
    names: list[str]
    groups: np.ndarray  # (n,)
    rows: list[np.ndarray]  # test rows of each fold
    x_ref: np.ndarray  # (U,) reference point near the mean (for rounding only)
    y_ref: np.ndarray  # (K,)
    const_target: np.ndarray  # (K,) bool

    @property
    def Yd(self) -> np.ndarray:
        """Targets about their mean, (n, K)."""
        return self.Y - self.y_ref

    def const_test(self, Y: np.ndarray | None = None) -> np.ndarray:
        """(F, K) bool: target constant over the test rows of a fold."""
        Y = self.Y if Y is None else Y
        return np.stack([np.ptp(Y[r], axis=0) == 0 for r in self.rows])


def prepare(states, targets, groups, n_splits: int | None) -> ProbeData:
    """Check ``states`` (n, U), ``targets`` (n, K) and ``groups`` (n,); folds if ``n_splits``."""
    X = as_states(states)
    n = X.shape[0]
    Y, names = as_matrix(targets, n, "targets")
    g = np.asarray(groups)
    if g.ndim != 1:
        raise DataError(f"groups must be 1-D of shape (n_samples,), got shape {g.shape}")
    if len(g) != n:
        raise DataError(f"states has {n} rows but groups has {len(g)}")
    rows = [] if n_splits is None else la.fold_rows(g, check_n_splits(n_splits, g))
    return ProbeData(
        X=X,
        Y=Y,
        names=names,
        groups=g,
        rows=rows,
        x_ref=X[:: max(1, n // 2048)].mean(axis=0),  # any point near the mean will do
        y_ref=Y.mean(axis=0),
        const_target=np.ptp(Y, axis=0) == 0,
    )


def data_sums(d: ProbeData, Yd: np.ndarray, **kw) -> la.FoldSums:
    """Per-fold sums of the states against ``Yd``; checks the states are finite on the way."""
    s = la.fold_sums(d.X, Yd, d.rows, d.x_ref, **kw)
    if not (np.isfinite(s.xx).all() and np.isfinite(s.xy).all()):
        check_finite(d.X, "states")
        raise DataError("states has values too large to square in float64")
    return s


def constant_units(d: ProbeData, s: la.FoldSums) -> np.ndarray:
    """(U,) bool: units whose values are all equal (checked exactly on near-zero variance)."""
    xx = s.xx.sum(axis=0)
    xx = np.diagonal(xx) if xx.ndim == 2 else xx
    centred = xx - s.x.sum(axis=0) ** 2 / s.n.sum()
    eps = np.finfo(np.float64).eps
    tiny = s.n.sum() * (16 * eps * np.abs(d.x_ref)) ** 2
    const = np.zeros(d.X.shape[1], dtype=bool)
    cand = np.flatnonzero(centred <= tiny)
    if cand.size:
        cols = d.X[:, cand]
        const[cand] = cols.min(axis=0) == cols.max(axis=0)
    return const


def unit_target_notes(const_unit: np.ndarray, const_target: np.ndarray, n_const_test: np.ndarray):
    """Per (unit, target) note strings, unit-major, as a flat list."""
    unit_note = np.where(const_unit, "constant unit", "")
    tgt_note = [
        "constant target"
        if c
        else (f"constant target in {m} test fold(s): r2 = 0 there, as sklearn" if m else "")
        for c, m in zip(const_target, n_const_test, strict=True)
    ]
    return ["; ".join(s for s in (u, t) if s) for u in unit_note for t in tgt_note]


def long_table(n_units: int, names: list[str], **columns) -> pd.DataFrame:
    """Tidy table, one row per unit x target (unit-major)."""
    k = len(names)
    out = {"unit": np.repeat(np.arange(n_units), k), "target": np.tile(np.array(names), n_units)}
    for key, val in columns.items():
        out[key] = np.ravel(val) if isinstance(val, np.ndarray) and val.ndim == 2 else val
    return pd.DataFrame(out)


def degenerate_xx(sp: la.Split) -> np.ndarray:
    """Below this a unit's training sum of squares counts as zero (for alpha == 0)."""
    xx = sp.train_xx if sp.train_xx.ndim == 2 else np.diagonal(sp.train_xx, 0, 1, 2)  # (F, U)
    return 1e-12 * xx.max(axis=0)


def fold_unit_r2(
    sums: la.FoldSums, alpha: float, const_test: np.ndarray, *, gain: bool = False
) -> np.ndarray:
    """Held-out R² of every one-unit ridge on every fold, ndarray (F, U, K).

    ``gain``: minus the held-out R² of the intercept-only model (the training mean) on the
    same fold, i.e. ``(SSE_mean - SSE_unit) / SST``: what the unit adds.
    """
    sp = la.split_moments(sums)
    r2 = la.ridge1d_fold_r2(sp, alpha, degenerate_xx(sp))
    if gain:
        r2 = r2 - la.r2_from_sse(sp.test_yy, sp.test_sst)[:, None, :]
    return np.where(const_test[:, None, :], 0.0, r2)


def full_ridge1d(sums: la.FoldSums, x_ref, y_ref, alpha: float, const_unit: np.ndarray):
    """Slope and intercept (U, K) of every one-unit ridge fitted on all samples."""
    n = sums.n.sum()
    sx, sy = sums.x.sum(axis=0), sums.y.sum(axis=0)
    sxx = sums.xx.sum(axis=0) - sx**2 / n  # centred, (U,)
    sxy = sums.xy.sum(axis=0) - np.outer(sx, sy) / n  # (U, K)
    den = (sxx + alpha)[:, None]
    coef = np.divide(sxy, den, out=np.zeros_like(sxy), where=den > 0)
    coef[const_unit] = 0.0  # as sklearn: a constant column gets a zero slope
    intercept = (y_ref + sy / n)[None, :] - coef * (x_ref + sx / n)[:, None]
    return coef, intercept
