"""Linear probes of recurrent units: what does each unit (or the whole layer) hold?

Every function here works on plain arrays: ``states`` of shape (n_samples, n_units) (one row
per sequence x time step), ``targets`` of shape (n_samples, n_targets) (an ndarray, or a
DataFrame whose column names become the ``target`` labels; ndarray columns are labelled
``"0"``, ``"1"``, ...), and ``groups`` of shape (n_samples,), the sequence each row comes
from. Cross-validation is always ``GroupKFold(n_splits)`` over ``groups`` -- exactly sklearn's
folds -- so no sequence is split between training and test rows.

The bulk probes are computed at once from per-fold sufficient statistics (counts, sums and
cross-products of the rows of each fold, read in chunks), never by one fit per unit x target
pair:

- :func:`unit_probes` -- held-out R² of a one-unit ridge probe for every unit x target; equals
  the ``cross_val_score(Ridge(alpha), states[:, [u]], targets[:, k], groups=groups,
  cv=GroupKFold(n_splits))`` loop to 1e-8.
- :func:`population_probe` -- all units together, ridge alpha chosen inside each training fold
  by exact leave-one-out (sklearn ``RidgeCV``'s default) from one eigendecomposition per fold.
- :func:`unique_contribution` -- the drop in the population R² when one unit is left out, for
  every unit from one Cholesky factorization per fold (block-inverse downdate).
- :func:`partial_r2` -- what a unit explains of a target once the other targets are regressed
  out (separates units that hold collinear terms such as ``K[t]`` and ``K[t-1]``).
- :func:`l1_path_ranking` -- the order in which units enter the lasso / elastic-net path.
- :func:`identifiability`, :func:`correlation_matrix` -- how separable the targets are at all.
- :func:`permutation_pvalues`, :func:`adjust_pvalues`, :func:`selectivity` -- controls.
- :class:`UnitProbe` -- a scikit-learn ridge probe estimator for hand-made probes.

Conventions for degenerate data (each flagged in a ``note`` column):

- a constant unit (all values equal) has ``r2`` NaN, ``note`` "constant unit": its probe is
  undefined, and sklearn's number for it (a small negative R²) would read as "tested, holds
  nothing";
- a constant target column has ``r2`` NaN, ``note`` "constant target" (sklearn's loop gives
  an artefact of rounding there: 1.0 when the mean is exact, other values such as 0.889 or
  0.75 when it is not);
- a target that is constant within one test fold only scores 0.0 on that fold, as sklearn's
  ``r2_score`` does (``force_finite=True``), and the ``note`` says in how many folds.

Precision: sums are taken about a point near the mean of each column and every model is
centred at its own training mean, in float64. Speed: BLAS runs on one thread inside these
functions (``unitprobe._linalg.BLAS_THREADS``; set it to None to leave BLAS alone), since the
work is many mid-sized products where threads cost more than they save.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import enet_path
from sklearn.utils.validation import check_is_fitted, validate_data

from unitprobe import _linalg as la
from unitprobe import schemas
from unitprobe.errors import DataError

__all__ = [
    "UnitProbe",
    "adjust_pvalues",
    "correlation_matrix",
    "identifiability",
    "l1_path_ranking",
    "partial_r2",
    "permutation_pvalues",
    "population_probe",
    "probe_model",
    "selectivity",
    "unique_contribution",
    "unit_probes",
]

DEFAULT_ALPHAS = np.logspace(-4, 3, 15)
#: a target whose residual on its controls keeps less than this share of its variance is
#: "explained by controls" and has no partial R².
EXPLAINED_TOL = 1e-10
#: a VIF above 1 / VIF_TOL is reported as inf (the target is a linear combination of others).
VIF_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# Validation and preparation
# --------------------------------------------------------------------------------------------


def _as_states(states: ArrayLike) -> np.ndarray:
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


def _as_matrix(values, n: int, what: str) -> tuple[np.ndarray, list[str]]:
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
    _check_finite(Y, what)
    return Y, names


def _check_finite(A: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(A)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(
            f"{what} contains {int(bad.sum())} NaN or infinite values (first at row {i}, "
            f"column {j}); probes need finite values"
        )


def _check_alpha(alpha: float, name: str = "alpha", strict: bool = False) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise DataError(f"{name} == {alpha!r}, must be a number") from None
    if not np.isfinite(a) or a < 0 or (strict and a == 0):
        raise DataError(f"{name} == {alpha!r}, must be {'> 0' if strict else '>= 0'}")
    return a


def _check_n_splits(n_splits: int, groups: np.ndarray) -> int:
    if isinstance(n_splits, bool) or not isinstance(n_splits, int | np.integer):
        raise DataError(f"n_splits == {n_splits!r}, must be an integer >= 2")
    if n_splits < 2:
        raise DataError(f"n_splits == {n_splits}, must be >= 2")
    n_groups = len(pd.unique(groups))
    if n_splits > n_groups:
        raise DataError(
            f"n_splits == {n_splits}, must be <= the number of groups (sequences), {n_groups}"
        )
    return int(n_splits)


@dataclass(frozen=True)
class _Data:
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
        return self.Y - self.y_ref

    def const_test(self, Y: np.ndarray | None = None) -> np.ndarray:
        """(F, K) bool: target constant over the test rows of a fold."""
        Y = self.Y if Y is None else Y
        return np.stack([np.ptp(Y[r], axis=0) == 0 for r in self.rows])


def _prepare(states, targets, groups, n_splits: int | None) -> _Data:
    X = _as_states(states)
    n = X.shape[0]
    Y, names = _as_matrix(targets, n, "targets")
    g = np.asarray(groups)
    if g.ndim != 1:
        raise DataError(f"groups must be 1-D of shape (n_samples,), got shape {g.shape}")
    if len(g) != n:
        raise DataError(f"states has {n} rows but groups has {len(g)}")
    rows = [] if n_splits is None else la.fold_rows(g, _check_n_splits(n_splits, g))
    return _Data(
        X=X,
        Y=Y,
        names=names,
        groups=g,
        rows=rows,
        x_ref=X[:: max(1, n // 2048)].mean(axis=0),  # any point near the mean will do
        y_ref=Y.mean(axis=0),
        const_target=np.ptp(Y, axis=0) == 0,
    )


def _sums(d: _Data, Yd: np.ndarray, **kw) -> la.FoldSums:
    """Per-fold sums of the states against ``Yd``; checks the states are finite on the way."""
    s = la.fold_sums(d.X, Yd, d.rows, d.x_ref, **kw)
    if not (np.isfinite(s.xx).all() and np.isfinite(s.xy).all()):
        _check_finite(d.X, "states")
        raise DataError("states has values too large to square in float64")
    return s


def _constant_units(d: _Data, s: la.FoldSums) -> np.ndarray:
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


def _notes(const_unit: np.ndarray, const_target: np.ndarray, n_const_test: np.ndarray):
    """Per (unit, target) note strings, unit-major, as a flat list."""
    unit_note = np.where(const_unit, "constant unit", "")
    tgt_note = [
        "constant target"
        if c
        else (f"constant target in {m} test fold(s): r2 = 0 there, as sklearn" if m else "")
        for c, m in zip(const_target, n_const_test, strict=True)
    ]
    return ["; ".join(s for s in (u, t) if s) for u in unit_note for t in tgt_note]


def _long(n_units: int, names: list[str], **columns) -> pd.DataFrame:
    """Tidy table, one row per unit x target (unit-major)."""
    k = len(names)
    out = {"unit": np.repeat(np.arange(n_units), k), "target": np.tile(np.array(names), n_units)}
    for key, val in columns.items():
        out[key] = np.ravel(val) if isinstance(val, np.ndarray) and val.ndim == 2 else val
    return pd.DataFrame(out)


def _degenerate_xx(sp: la.Split) -> np.ndarray:
    """Below this a unit's training sum of squares counts as zero (for alpha == 0)."""
    xx = sp.train_xx if sp.train_xx.ndim == 2 else np.diagonal(sp.train_xx, 0, 1, 2)  # (F, U)
    return 1e-12 * xx.max(axis=0)


def _fold_unit_r2(
    sums: la.FoldSums, alpha: float, const_test: np.ndarray, *, gain: bool = False
) -> np.ndarray:
    """Held-out R² of every one-unit ridge on every fold, ndarray (F, U, K).

    ``gain``: minus the held-out R² of the intercept-only model (the training mean) on the
    same fold, i.e. ``(SSE_mean - SSE_unit) / SST``: what the unit adds.
    """
    sp = la.split_moments(sums)
    r2 = la.ridge1d_fold_r2(sp, alpha, _degenerate_xx(sp))
    if gain:
        r2 = r2 - la.r2_from_sse(sp.test_yy, sp.test_sst)[:, None, :]
    return np.where(const_test[:, None, :], 0.0, r2)


def _full_ridge1d(sums: la.FoldSums, x_ref, y_ref, alpha: float, const_unit: np.ndarray):
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


# --------------------------------------------------------------------------------------------
# Per-unit probes
# --------------------------------------------------------------------------------------------


@la.with_blas_threads
def unit_probes(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = 5,
    alpha: float = 1e-3,
) -> pd.DataFrame:
    """Held-out R² of a one-unit ridge probe for every unit x target, all at once.

    For each unit ``u`` and target ``k`` this equals (to 1e-8) ::

        cross_val_score(Ridge(alpha=alpha), states[:, [u]], targets[:, k], groups=groups,
                        cv=GroupKFold(n_splits), scoring="r2").mean()

    but is computed from per-fold sums and cross-products (one chunked pass over
    ``states``), with the 1-D ridge slope ``Sxy / (Sxx + alpha)`` about the training means.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
        Unit activations, one row per sequence x time step.
    targets : array-like of shape (n_samples, n_targets) or DataFrame
        Quantities to decode; DataFrame column names become the ``target`` labels,
        otherwise ``"0"``, ``"1"``, ... A 1-D array is one target.
    groups : array-like of shape (n_samples,)
        Sequence id of each row; folds never split a sequence.
    n_splits : int, default=5
        Number of ``GroupKFold`` folds, 2 <= n_splits <= number of sequences.
    alpha : float, default=1e-3
        Ridge penalty (>= 0), added to the unit's centred sum of squares (so in squared
        activation units, summed over samples).

    Returns
    -------
    DataFrame
        One row per unit x target (unit-major): ``unit`` (int), ``target`` (str), ``r2``
        (held-out R², mean over folds), ``r2_std`` (std over folds, ddof=0), ``coef`` and
        ``intercept`` (ridge fitted on all samples, target units per unit activation),
        ``n_samples``, ``note`` ("" or the reason ``r2`` is NaN / special, see module docs).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(600, 3)); y = 2 * h[:, 1] + 0.1 * rng.normal(size=600)
    >>> table = unit_probes(h, y, groups=np.arange(600) // 20)
    >>> int(table.loc[table.r2.idxmax(), "unit"])
    1
    """
    d = _prepare(states, targets, groups, n_splits)
    alpha = _check_alpha(alpha)
    const_test = d.const_test()  # (F, K)
    sums = _sums(d, d.Yd)
    const_unit = _constant_units(d, sums)
    r2f = _fold_unit_r2(sums, alpha, const_test)  # (F, U, K)
    r2f[:, const_unit, :] = np.nan
    r2f[:, :, d.const_target] = np.nan

    coef, intercept = _full_ridge1d(sums, d.x_ref, d.y_ref, alpha, const_unit)
    return _long(
        d.X.shape[1],
        d.names,
        r2=r2f.mean(axis=0),
        r2_std=r2f.std(axis=0),
        coef=coef,
        intercept=intercept,
        n_samples=len(d.X),
        note=_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )


# --------------------------------------------------------------------------------------------
# Population probe and unique contributions
# --------------------------------------------------------------------------------------------


def _check_alphas(alphas: ArrayLike) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
        raise DataError(f"alphas == {alphas!r}, must be a non-empty 1-D array of numbers > 0")
    return a


@la.with_blas_threads
def population_probe(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = 5,
    alphas: ArrayLike = DEFAULT_ALPHAS,
) -> pd.DataFrame:
    """Held-out R² of a ridge probe on all units together, one row per target.

    In each outer ``GroupKFold`` fold, the ridge penalty of each target is chosen on the
    training rows by exact leave-one-out squared error (the closed form sklearn's ``RidgeCV``
    uses by default: ``gcv_mode`` "auto" -> eigendecomposition of ``X^T X``, intercept not
    penalized), the first best alpha in ``alphas`` order winning ties. The choice is per
    target, i.e. equal to fitting ``RidgeCV(alphas)`` to each target column on its own (or
    ``alpha_per_target=True``). One eigendecomposition of the training Gram matrix per fold
    serves every alpha and target.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
        Sequence id of each row.
    n_splits : int, default=5
    alphas : array-like of shape (n_alphas,), default=np.logspace(-4, 3, 15)
        Candidate penalties, all > 0.

    Returns
    -------
    DataFrame
        One row per target: ``unit`` ("all"), ``target``, ``r2`` (held-out, mean over
        folds), ``r2_std`` (ddof=0), ``alpha`` (median over folds of the chosen penalty),
        ``alpha_folds`` (the chosen penalty of each fold, ";"-joined), ``n_samples``,
        ``note``.

    Notes
    -----
    Cost per fold: one pass over the training rows of ``n_units * (n_units + n_alphas *
    (n_targets + 1))`` multiply-adds per row for the leave-one-out errors (what ``RidgeCV``
    itself does), then closed-form test scores from the fold's sums.
    """
    d = _prepare(states, targets, groups, n_splits)
    alphas = _check_alphas(alphas)
    Yd = d.Yd
    sp = la.split_moments(_sums(d, Yd, x_gram=True))
    sst = sp.test_sst
    n_folds, n_targets = len(d.rows), Yd.shape[1]
    r2f = np.empty((n_folds, n_targets))
    chosen = np.empty((n_folds, n_targets))
    for f in range(n_folds):
        eigvals, eigvecs = np.linalg.eigh(sp.train_xx[f])
        eigvals = np.clip(eigvals, 0.0, None)
        proj = eigvecs.T @ sp.train_xy[f]  # (U, K)
        train_rows = [r for g, r in enumerate(d.rows) if g != f]
        loo = la.ridge_loo_sq_errors(
            d.X,
            Yd,
            train_rows,
            d.x_ref + sp.x_mean[f],
            sp.y_mean[f],
            eigvals,
            eigvecs,
            proj,
            alphas,
        )  # (A, K)
        chosen[f] = alphas[np.argmin(loo, axis=0)]
        B = eigvecs @ (proj / (eigvals[:, None] + chosen[f][None, :]))  # (U, K)
        sse = la.quad_sse(sp.test_yy[f], sp.test_xy[f], sp.test_xx[f], B)
        r2f[f] = la.r2_from_sse(sse, sst[f])
    const_test = d.const_test()
    r2f = np.where(const_test, 0.0, r2f)
    r2f[:, d.const_target] = np.nan
    n_const = const_test.sum(axis=0)
    return pd.DataFrame(
        {
            "unit": "all",
            "target": d.names,
            "r2": r2f.mean(axis=0),
            "r2_std": r2f.std(axis=0),
            "alpha": np.median(chosen, axis=0),
            "alpha_folds": [";".join(f"{a:.6g}" for a in col) for col in chosen.T],
            "n_samples": len(d.X),
            "note": _notes(np.zeros(1, bool), d.const_target, n_const),
        }
    )


@la.with_blas_threads
def unique_contribution(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = 5,
    alpha: float = 1e-3,
) -> pd.DataFrame:
    """Drop in held-out population R² when one unit is left out, for every unit at once.

    With ``A = Xc^T Xc + alpha I`` (training rows, centred) and ``P = A^-1`` from one
    Cholesky factorization per fold, the ridge fit without unit ``j`` is the rank-one
    downdate ``b_(-j) = b - P[:, j] b_j / P_jj`` (block-inverse / Schur complement formula),
    so its test error follows from the fold's sums without refitting. Equal to explicit
    refits of ``Ridge(alpha)`` on ``states`` without column ``j`` to 1e-8.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
    n_splits : int, default=5
    alpha : float, default=1e-3
        Fixed ridge penalty (> 0) of the full model and of every leave-one-unit-out model.

    Returns
    -------
    DataFrame
        One row per unit x target: ``unit``, ``target``, ``r2_full`` (held-out R² of all
        units), ``r2_without`` (without this unit), ``unique_r2`` (= r2_full - r2_without,
        mean over folds), ``n_samples``, ``note``.
    """
    d = _prepare(states, targets, groups, n_splits)
    alpha = _check_alpha(alpha, strict=True)
    sums = _sums(d, d.Yd, x_gram=True)
    const_unit = _constant_units(d, sums)
    sp = la.split_moments(sums)
    sst = sp.test_sst
    n_folds, n_units, n_targets = len(d.rows), d.X.shape[1], d.Y.shape[1]
    full = np.empty((n_folds, n_targets))
    without = np.empty((n_folds, n_units, n_targets))
    for f in range(n_folds):
        P = la.inv_spd(sp.train_xx[f] + alpha * np.eye(n_units))
        B = P @ sp.train_xy[f]  # (U, K)
        a_xx, a_xy = sp.test_xx[f], sp.test_xy[f]
        sse = la.quad_sse(sp.test_yy[f], a_xy, a_xx, B)  # (K,)
        wr = P @ (a_xy - a_xx @ B)  # (U, K): test residuals against each downdate direction
        ww = np.einsum("ij,ji->i", P @ a_xx, P)  # (U,)
        step = B / np.diagonal(P)[:, None]  # (U, K)
        sse_without = sse[None, :] + 2.0 * step * wr + step**2 * ww[:, None]
        full[f] = la.r2_from_sse(sse, sst[f])
        without[f] = la.r2_from_sse(sse_without, sst[f][None, :])
    const_test = d.const_test()
    full = np.where(const_test, 0.0, full)
    without = np.where(const_test[:, None, :], 0.0, without)
    full[:, d.const_target] = np.nan
    without[:, :, d.const_target] = np.nan
    r2_full = np.broadcast_to(full.mean(axis=0), (n_units, n_targets))
    r2_without = without.mean(axis=0)
    return _long(
        n_units,
        d.names,
        r2_full=r2_full,
        r2_without=r2_without,
        unique_r2=r2_full - r2_without,
        n_samples=len(d.X),
        note=_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )


# --------------------------------------------------------------------------------------------
# Partial R² and the L1 path
# --------------------------------------------------------------------------------------------


@la.with_blas_threads
def partial_r2(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = 5,
    alpha: float = 1e-3,
    controls: ArrayLike | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Held-out R² of each unit for each target once the control variables are regressed out.

    Within each ``GroupKFold`` training fold, the target and every unit are regressed (OLS
    with intercept) on the controls -- by default all *other* target columns -- and the
    fitted maps are applied to the test rows. A one-unit ridge is then fitted to the
    training residuals and scored by R² on the test residuals of the target. Computed for
    all units from the fold's sums (one small regression of the controls per target and
    fold), never by refitting.

    This separates units holding collinear terms: with ``K[t]`` and ``K[t-1]`` correlated at
    r² > 0.99, a unit holding ``K[t]`` and one holding ``K[t-1]`` have the same raw R² for
    either, but only the first explains ``K[t]`` beyond ``K[t-1]``.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
    n_splits : int, default=5
    alpha : float, default=1e-3
        Ridge penalty of the final one-unit probe on residuals.
    controls : array-like of shape (n_samples, n_controls) or DataFrame, optional
        Variables to regress out of every target and unit instead of the other targets.

    Returns
    -------
    DataFrame
        One row per unit x target: ``unit``, ``target``, ``partial_r2`` (held-out, mean
        over folds), ``partial_r2_std`` (ddof=0), ``control_r2`` (training R² of the target
        on its controls, mean over folds), ``controls`` (their names, "; "-joined),
        ``n_samples``, ``note``. ``partial_r2`` is NaN for a constant unit or target, and
        for a target the controls explain to within ``EXPLAINED_TOL`` of its variance
        (e.g. ``K[t]`` when ``K[t-1]`` and ``K[t-2]`` are controls of a noise-free
        Fibonacci relation): nothing is left for a unit to explain.
    """
    d = _prepare(states, targets, groups, n_splits)
    alpha = _check_alpha(alpha)
    n, n_targets = d.Y.shape
    if controls is None:
        T, t_names = d.Y, d.names
        ctrl_sets = [[j for j in range(n_targets) if j != k] for k in range(n_targets)]
    else:
        C, c_names = _as_matrix(controls, n, "controls")
        T, t_names = np.hstack([d.Y, C]), d.names + c_names
        ctrl_sets = [list(range(n_targets, T.shape[1]))] * n_targets
    Td = T - T.mean(axis=0)
    sums = _sums(d, Td, y_gram=True)
    const_unit = _constant_units(d, sums)
    sp = la.split_moments(sums)
    degenerate = _degenerate_xx(sp)

    n_folds, n_units = len(d.rows), d.X.shape[1]
    r2f = np.empty((n_folds, n_units, n_targets))
    ctrl_r2 = np.empty((n_folds, n_targets))
    explained = np.zeros(n_targets, dtype=bool)
    for f in range(n_folds):
        for k, S in enumerate(ctrl_sets):
            r2f[f, :, k], ctrl_r2[f, k], expl = _partial_fold(sp, f, k, S, alpha, degenerate)
            explained[k] |= expl
    r2f[:, const_unit, :] = np.nan
    r2f[:, :, d.const_target | explained] = np.nan

    tgt_note = np.where(
        d.const_target, "constant target", np.where(explained, "target explained by controls", "")
    )
    notes = [
        "; ".join(s for s in (u, t) if s)
        for u in np.where(const_unit, "constant unit", "")
        for t in tgt_note
    ]
    return _long(
        n_units,
        d.names,
        partial_r2=r2f.mean(axis=0),
        partial_r2_std=r2f.std(axis=0),
        control_r2=np.tile(ctrl_r2.mean(axis=0), n_units),
        controls=np.tile(np.array(["; ".join(t_names[j] for j in S) for S in ctrl_sets]), n_units),
        n_samples=n,
        note=notes,
    )


def _partial_fold(sp: la.Split, f: int, k: int, S: list[int], alpha: float, degenerate):
    """Partial R² of every unit for target ``k`` given controls ``S`` on fold ``f``.

    Returns (r2 of shape (U,), training R² of the target on the controls, explained flag).
    """
    # training moments (centred at the training mean)
    t_yy, t_xy, t_xx = sp.train_yy[f], sp.train_xy[f], sp.train_xx[f]
    g = la.solve_lstsq(t_yy[np.ix_(S, S)], np.column_stack([t_yy[S, k], t_xy[:, S].T]))
    g_k, g_x = g[:, 0], g[:, 1:]  # (s,), (s, U): controls -> target, controls -> units
    r_kk = t_yy[k, k] - t_yy[S, k] @ g_k
    r_xx = t_xx - np.einsum("su,su->u", t_xy[:, S].T, g_x)
    r_xk = t_xy[:, k] - g_x.T @ t_yy[S, k]
    explained = bool(r_kk <= EXPLAINED_TOL * t_yy[k, k])
    ok = (r_xx > degenerate) | (alpha > 0)
    b = np.where(ok, r_xk / np.where(ok, r_xx + alpha, 1.0), 0.0)  # (U,)

    # test rows, as deviations from the training means, residualized with training maps
    a_yy, a_xy, a_xx = sp.test_yy[f], sp.test_xy[f], sp.test_xx[f]
    a_ss, a_sk, a_sx = a_yy[np.ix_(S, S)], a_yy[S, k], a_xy[:, S].T
    ry2 = a_yy[k, k] - 2.0 * g_k @ a_sk + g_k @ a_ss @ g_k
    rx2 = a_xx - 2.0 * np.einsum("su,su->u", g_x, a_sx) + np.einsum("su,su->u", g_x, a_ss @ g_x)
    rxy = a_xy[:, k] - g_x.T @ a_sk - a_sx.T @ g_k + g_x.T @ (a_ss @ g_k)
    ry = sp.test_y[f][k] - g_k @ sp.test_y[f][S]
    sst = ry2 - ry**2 / sp.n_test[f]
    sse = ry2 - 2.0 * b * rxy + b**2 * rx2
    ctrl_r2 = 1.0 - r_kk / t_yy[k, k] if t_yy[k, k] > 0 else np.nan
    return la.r2_from_sse(sse, np.full_like(sse, sst)), ctrl_r2, explained


@la.with_blas_threads
def l1_path_ranking(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    *,
    n_alphas: int = 50,
    l1_ratio: float = 1.0,
    eps: float = 1e-3,
) -> pd.DataFrame:
    """Order in which units enter the lasso (or elastic-net) path of each target.

    States and targets are standardized (z-scored over all samples), so sklearn's penalty
    ``alpha`` is on the scale of a correlation: the path starts at ``alpha_max`` = the
    largest |Pearson r| of a unit with the target (divided by ``l1_ratio``), where every
    coefficient is zero. The path is ``sklearn.linear_model.enet_path`` on a geometric grid
    of ``n_alphas`` penalties from ``alpha_max`` down to ``eps * alpha_max``, with the Gram
    matrix computed once and shared by all targets. A unit's ``entry_alpha`` is the largest
    grid penalty at which its coefficient is non-zero (so the first unit's is the second grid
    point, ``alpha_max * eps ** (1 / (n_alphas - 1))``); units entering at the same grid
    step are ranked by the size of their coefficient there. Resolution is the grid: raise
    ``n_alphas`` to split near-ties.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    n_alphas : int, default=50
        Length of the penalty grid, >= 2.
    l1_ratio : float, default=1.0
        1.0 is the lasso; in (0, 1) the elastic net.
    eps : float, default=1e-3
        ``alpha_min / alpha_max``.

    Returns
    -------
    DataFrame
        One row per target x unit, sorted by target then ``entry_rank``: ``target``,
        ``unit``, ``entry_rank`` (1 = first in; <NA> for units that never enter, e.g.
        constant units), ``entry_alpha`` (NaN if never), ``note``.
    """
    X = _as_states(states)
    Y, names = _as_matrix(targets, X.shape[0], "targets")
    _check_finite(X, "states")
    if isinstance(n_alphas, bool) or not isinstance(n_alphas, int | np.integer) or n_alphas < 2:
        raise DataError(f"n_alphas == {n_alphas!r}, must be an integer >= 2")
    if not 0 < l1_ratio <= 1:
        raise DataError(f"l1_ratio == {l1_ratio!r}, must be in (0, 1]")
    if not 0 < eps < 1:
        raise DataError(f"eps == {eps!r}, must be in (0, 1)")
    n, n_units = X.shape
    sd = X.std(axis=0)
    live = sd > 0
    Xs = np.empty((n, int(live.sum())), order="F")
    Xl = X if live.all() else X[:, live]
    np.subtract(Xl, Xl.mean(axis=0), out=Xs)
    Xs /= sd[live]
    gram = Xs.T @ Xs
    frames = []
    for k, name in enumerate(names):
        y = Y[:, k] - Y[:, k].mean()
        ysd = y.std()
        rank = pd.array([pd.NA] * n_units, dtype="Int64")
        entry = np.full(n_units, np.nan)
        if ysd > 0 and Xs.shape[1]:
            y = y / ysd
            alphas, coefs, _ = enet_path(
                Xs,
                y,
                l1_ratio=l1_ratio,
                eps=eps,
                alphas=int(n_alphas),
                precompute=gram,
                Xy=Xs.T @ y,
                copy_X=False,
            )  # coefs (U_live, n_alphas)
            rank, entry = _entry_order(coefs, alphas, np.flatnonzero(live), n_units)
        note = np.where(live, "", "constant unit")
        if ysd == 0:
            note = np.full(n_units, "constant target")
        frames.append(
            pd.DataFrame(
                {
                    "target": name,
                    "unit": np.arange(n_units),
                    "entry_rank": rank,
                    "entry_alpha": entry,
                    "note": note,
                }
            )
        )
    out = pd.concat(frames, ignore_index=True)
    order = np.lexsort(
        (
            out["unit"],
            out["entry_rank"].fillna(n_units + 1),
            out["target"].map({t: i for i, t in enumerate(names)}),
        )
    )
    return out.iloc[order].reset_index(drop=True)


def _entry_order(coefs: np.ndarray, alphas: np.ndarray, live_units: np.ndarray, n_units: int):
    nonzero = coefs != 0
    entered = nonzero.any(axis=1)
    first = np.where(entered, nonzero.argmax(axis=1), len(alphas))
    size = np.abs(coefs[np.arange(len(first)), np.minimum(first, len(alphas) - 1)])
    order = np.lexsort((live_units, -size, first))
    rank = pd.array([pd.NA] * n_units, dtype="Int64")
    entry = np.full(n_units, np.nan)
    for r, i in enumerate(order[entered[order]], start=1):
        rank[live_units[i]] = r
        entry[live_units[i]] = alphas[first[i]]
    return rank, entry


# --------------------------------------------------------------------------------------------
# Identifiability of the targets themselves
# --------------------------------------------------------------------------------------------


def correlation_matrix(targets: ArrayLike | pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation between targets, DataFrame (n_targets, n_targets) named by target.

    Entries involving a constant target are NaN (its diagonal too).
    """
    Y, names = _as_matrix(targets, _n_rows(targets), "targets")
    Z, live = _standardize(Y)
    corr = (Z.T @ Z) / len(Y)
    np.fill_diagonal(corr, 1.0)
    corr[~live, :] = np.nan
    corr[:, ~live] = np.nan
    return pd.DataFrame(np.clip(corr, -1.0, 1.0), index=names, columns=names)


def _n_rows(values) -> int:
    return len(values) if hasattr(values, "__len__") else np.asarray(values).shape[0]


def _standardize(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-scored columns (constant columns left at 0) and the non-constant mask."""
    live = np.ptp(Y, axis=0) > 0
    Z = Y - Y.mean(axis=0)
    sd = Z.std(axis=0)
    Z[:, live] /= sd[live]
    Z[:, ~live] = 0.0
    return Z, live


def identifiability(targets: ArrayLike | pd.DataFrame, *, threshold: float = 0.95) -> pd.DataFrame:
    """How separable the targets are from one another, before any probe is trusted.

    Parameters
    ----------
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    threshold : float, default=0.95
        Pairs (and targets) with ``r2 >= threshold`` are not separable.

    Returns
    -------
    DataFrame
        The ``identifiability.csv`` schema: one row per pair of targets (``target_a``,
        ``target_b``, ``r2`` = squared Pearson correlation, ``separable`` = r2 <
        threshold, ``vif`` NaN), then one row per target with ``target_b`` = "VIF", ``r2``
        = R² of the target regressed on all other targets (= 1 - 1/VIF), ``vif`` the
        variance inflation factor (inf when the target is a linear combination of the others,
        i.e. 1 - r2 < ``VIF_TOL``). Constant targets give NaN ``r2``/``vif`` and
        ``separable`` False (they cannot be probed), and are left out of the other targets'
        regressions.
    """
    if not 0 < threshold <= 1:
        raise DataError(f"threshold == {threshold!r}, must be in (0, 1]")
    Y, names = _as_matrix(targets, _n_rows(targets), "targets")
    corr = correlation_matrix(pd.DataFrame(Y, columns=names)).to_numpy()
    ia, ib = np.triu_indices(len(names), k=1)
    pair_r2 = corr[ia, ib] ** 2
    pairs = pd.DataFrame(
        {
            "target_a": np.array(names, dtype=object)[ia],
            "target_b": np.array(names, dtype=object)[ib],
            "r2": pair_r2,
            "separable": pair_r2 < threshold,
            "vif": np.nan,
        }
    )
    vif_r2, vif = _vif(Y)
    vifs = pd.DataFrame(
        {
            "target_a": names,
            "target_b": "VIF",
            "r2": vif_r2,
            "separable": vif_r2 < threshold,
            "vif": vif,
        }
    )
    return pd.concat([pairs, vifs], ignore_index=True)


def _vif(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R² of each target on the other (non-constant) targets, and its VIF."""
    Z, live = _standardize(Y)
    k = Y.shape[1]
    r2 = np.full(k, np.nan)
    for j in np.flatnonzero(live):
        others = [i for i in np.flatnonzero(live) if i != j]
        if not others:
            r2[j] = 0.0
            continue
        coef = np.linalg.lstsq(Z[:, others], Z[:, j], rcond=None)[0]
        resid = Z[:, j] - Z[:, others] @ coef
        r2[j] = max(0.0, 1.0 - (resid @ resid) / len(Y))
    with np.errstate(divide="ignore"):
        one_minus = 1.0 - r2
        vif = np.where(one_minus < VIF_TOL, np.inf, 1.0 / np.where(one_minus > 0, one_minus, 1))
    r2 = np.where(one_minus < VIF_TOL, 1.0, r2)
    return r2, np.where(live, vif, np.nan)


# --------------------------------------------------------------------------------------------
# Controls: permutation test, multiple testing, selectivity
# --------------------------------------------------------------------------------------------


def adjust_pvalues(p_values: ArrayLike, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple testing; NaNs are kept and not counted.

    Parameters
    ----------
    p_values : array-like of any shape
    method : {"holm", "bh", "none"}, default="holm"
        Holm's step-down (family-wise error) or Benjamini–Hochberg (false discovery rate).

    Returns
    -------
    ndarray of the shape of ``p_values``
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjust = {"holm": la.adjust_holm, "bh": la.adjust_bh, "none": lambda q: q.copy()}
    if method not in adjust:
        raise DataError(f"correction == {method!r}, must be one of {sorted(adjust)}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise DataError("p_values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    out[ok] = adjust[method](p[ok])
    return out


def _sequence_blocks(groups: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Row blocks (m, L) of the sequences of each length L shared by >= 2 sequences.

    Rows of a sequence keep their order of appearance. Also returns how many sequences
    have a length no other sequence has (those are never permuted).
    """
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    lengths = np.bincount(codes)
    seqs = np.split(order, np.cumsum(lengths)[:-1])
    blocks, alone = [], 0
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        if len(members) < 2:
            alone += 1
            continue
        blocks.append(np.stack([seqs[i] for i in members]))  # (m, L)
    return blocks, alone


@la.with_blas_threads
def permutation_pvalues(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_permutations: int = 200,
    seed: int = 0,
    n_splits: int = 5,
    alpha: float = 1e-3,
    correction: str = "holm",
) -> pd.DataFrame:
    """Shuffled-target permutation p-values of every unit x target probe.

    The statistic is the held-out R² of :func:`unit_probes` minus that of the intercept-only
    model (the training mean) on the same folds, ``r2_gain`` = mean over folds of
    ``(SSE_mean - SSE_unit) / SST``: what the unit adds. (Raw held-out R² also carries a term
    set by how far each test fold's target mean lies from the training mean; that term is
    the same for every unit and, under the null, larger than the unit's own part, so it
    would tie the p-values of all units of a target together.) Each permutation moves the
    target rows of whole sequences: sequence ``g`` gets the targets of sequence ``pi(g)``,
    step by step, so the within-sequence (autocorrelated) structure of targets and states
    is kept and only their pairing is broken. Sequences are permuted among sequences of the
    same length; a sequence whose length no other sequence has keeps its targets (a
    warning says how many). Folds stay those of the original ``groups``. Each permutation
    only changes the per-fold cross-products, computed for many permutations in one pass.

    ``p_value_raw = (1 + #{perm r2_gain >= observed}) / (1 + n_permutations)`` (ties within
    1e-12 count), then corrected over all units x targets (``correction``).

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
    n_permutations : int, default=200
    seed : int, default=0
    n_splits : int, default=5
    alpha : float, default=1e-3
    correction : {"holm", "bh", "none"}, default="holm"

    Returns
    -------
    DataFrame
        One row per unit x target: ``unit``, ``target``, ``r2`` (observed held-out R², as
        :func:`unit_probes`), ``r2_gain`` (the statistic), ``p_value`` (corrected),
        ``p_value_raw``, ``n_permutations``, ``note``. NaN where ``r2`` is NaN.
    """
    d = _prepare(states, targets, groups, n_splits)
    alpha = _check_alpha(alpha)
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer):
        raise DataError(f"n_permutations == {n_permutations!r}, must be an integer >= 1")
    if n_permutations < 1:
        raise DataError(f"n_permutations == {n_permutations}, must be >= 1")
    adjust_pvalues([], correction)  # validates the name early
    blocks, alone = _sequence_blocks(d.groups)
    if not blocks:
        raise DataError("no two sequences have the same length, so none can be permuted")
    if alone:
        warnings.warn(
            f"{alone} sequence(s) have a length no other sequence has and keep their targets "
            "in every permutation",
            stacklevel=2,
        )

    Yd = d.Yd
    const_test = d.const_test()
    sums = _sums(d, Yd)
    const_unit = _constant_units(d, sums)
    r2 = _fold_unit_r2(sums, alpha, const_test).mean(axis=0)  # (U, K)
    obs = _fold_unit_r2(sums, alpha, const_test, gain=True).mean(axis=0)
    for a in (r2, obs):
        a[const_unit, :] = np.nan
        a[:, d.const_target] = np.nan

    n, n_targets = Yd.shape
    rng = np.random.default_rng(seed)
    batch = int(max(1, min(n_permutations, 2**26 // (8 * n * n_targets))))
    exceed = np.zeros(obs.shape)
    for start in range(0, n_permutations, batch):
        size = min(batch, n_permutations - start)
        srcs = []
        for _ in range(size):
            src = np.arange(n)
            for blk in blocks:
                src[blk] = blk[rng.permutation(len(blk))]
            srcs.append(src)
        Yp = np.stack([Yd[s] for s in srcs], axis=1).reshape(n, size * n_targets)
        ct = np.stack([np.ptp(Yp[r], axis=0) == 0 for r in d.rows])
        r2p = _fold_unit_r2(_sums(d, Yp), alpha, ct, gain=True).mean(axis=0)
        r2p = r2p.reshape(-1, size, n_targets)
        exceed += (r2p >= obs[:, None, :] - 1e-12).sum(axis=1)
    p_raw = (1.0 + exceed) / (1.0 + n_permutations)
    p_raw[np.isnan(obs)] = np.nan
    return _long(
        d.X.shape[1],
        d.names,
        r2=r2,
        r2_gain=obs,
        p_value=adjust_pvalues(p_raw, correction),
        p_value_raw=p_raw,
        n_permutations=int(n_permutations),
        note=_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )


def selectivity(r2: ArrayLike, r2_control: ArrayLike) -> np.ndarray | pd.Series:
    """Selectivity ``r2 - r2_control`` of probes against a control (e.g. untrained network).

    Parameters
    ----------
    r2, r2_control : array-like of the same shape
        Held-out R² of the same probes (same units, targets and folds) on the trained and
        the control network, e.g. the ``r2`` columns of two :func:`unit_probes` tables.

    Returns
    -------
    ndarray, or Series with ``r2``'s index when ``r2`` is a Series
    """
    a, b = np.asarray(r2, dtype=np.float64), np.asarray(r2_control, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"r2 has shape {a.shape} but r2_control has shape {b.shape}")
    out = a - b
    return pd.Series(out, index=r2.index, name="selectivity") if isinstance(r2, pd.Series) else out


# --------------------------------------------------------------------------------------------
# scikit-learn estimator
# --------------------------------------------------------------------------------------------


class UnitProbe(RegressorMixin, BaseEstimator):
    """Ridge probe of one or more units, as a scikit-learn regressor.

    Minimizes ``||y - X w - b||^2 + alpha ||w||^2`` in closed form (intercept not
    penalized), like ``sklearn.linear_model.Ridge``. Use it for hand-made probes inside
    ``cross_val_score``, ``Pipeline`` or ``GridSearchCV``; bulk probing of every unit is
    :func:`unit_probes`.

    Parameters
    ----------
    alpha : float, default=1e-3
        Ridge penalty, >= 0 (0 is least squares, minimum-norm if singular).
    fit_intercept : bool, default=True

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when fitted on a DataFrame with string columns

    Examples
    --------
    >>> from sklearn.model_selection import GroupKFold, cross_val_score
    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(200, 2)); y = h[:, 0] - h[:, 1]
    >>> float(UnitProbe().fit(h, y).score(h, y)) > 0.999
    True
    """

    def __init__(self, *, alpha: float = 1e-3, fit_intercept: bool = True):
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def fit(self, X: ArrayLike, y: ArrayLike) -> UnitProbe:
        """Fit the probe to ``X`` of shape (n_samples, n_features) and ``y``."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        alpha = _check_alpha(self.alpha)
        y2 = y.reshape(len(y), -1)
        x_mean = X.mean(axis=0) if self.fit_intercept else np.zeros(X.shape[1])
        y_mean = y2.mean(axis=0) if self.fit_intercept else np.zeros(y2.shape[1])
        Xc, yc = X - x_mean, y2 - y_mean
        if alpha > 0:
            A = Xc.T @ Xc + alpha * np.eye(X.shape[1])
            coef = la.sla.solve(A, Xc.T @ yc, assume_a="pos", check_finite=False)
        else:
            coef = la.sla.lstsq(Xc, yc, check_finite=False)[0]  # minimum norm if singular
        intercept = y_mean - x_mean @ coef  # (n_targets,)
        if y.ndim == 1:
            self.coef_, self.intercept_ = coef[:, 0], float(intercept[0])
        else:
            self.coef_, self.intercept_ = coef.T, intercept
        return self

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets, ndarray of shape (n_samples,) or (n_samples, n_targets)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_.T + self.intercept_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


#: Columns of ``probes.csv`` (DESIGN.md), in order; :func:`probe_model` adds a few after them.
PROBE_COLUMNS = list(schemas.PROBES)


def probe_model(
    model,
    dataset,
    targets=None,
    *,
    state: str = "h",
    n_splits: int = 5,
    alpha: float = 1e-3,
    n_controls: int = 3,
    n_permutations: int = 199,
    correction: str = "bh",
    seed: int = 0,
    trace=None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run a model on a dataset and probe every unit of every layer: the ``probes.csv`` table.

    Parameters
    ----------
    model : UnitLSTM
    dataset : Dataset
        Its ``inputs`` (n_sequences, n_steps, n_inputs) are run through the model; targets
        are evaluated on its raw series.
    targets : list of str or Targets, optional
        Target expressions (``"K[t-1]"``, ``"K[t-1] + 2*X[t]"``) or a ready
        :class:`~unitprobe.methods.targets.Targets`;
        default :func:`unitprobe.methods.targets.default_targets`.
    state : {"h", "c", "both"}
        Which unit states to probe.
    n_splits, alpha : int, float
        GroupKFold folds over sequences and the per-unit ridge penalty.
    n_controls : int
        Untrained networks of the same configuration (seeds ``seed``, ``seed + 1``, ...) whose
        per-unit R² is averaged into ``r2_control``; ``selectivity = r2 - r2_control``.
    n_permutations : int
        Whole-sequence target permutations for ``p_value``.
    correction : {"bh", "holm", "none"}
        Multiple-testing correction of ``p_value`` over all units x targets of one layer and
        state. Default Benjamini-Hochberg (false discovery rate): with few permutations Holm's
        family-wise bound cannot reach 0.05 for tens of tests (its smallest value is
        n_tests / (n_permutations + 1)).
    seed : int
        Seeds the controls and the permutations.
    trace : Trace, optional
        A run of ``model`` on ``dataset.inputs`` that recorded ``h`` and ``c`` (saves a run).

    Returns
    -------
    DataFrame
        One row per layer x unit (int, or ``"all"`` for the population probe) x state x target
        with the columns of :data:`PROBE_COLUMNS`, then ``intercept``, ``p_value_raw``,
        ``note``. Population rows have no ``p_value``, ``partial_r2`` or ``coef``.
    """
    import torch
    from tqdm.auto import tqdm

    from unitprobe.methods.targets import Targets, default_targets, make_targets
    from unitprobe.model.lstm import UnitLSTM, run

    if state not in ("h", "c", "both"):
        raise DataError(f"state == {state!r}, must be one of h, c, both")
    states = ("h", "c") if state == "both" else (state,)
    if not isinstance(targets, Targets):
        exprs = list(targets) if targets else _default_exprs(dataset, default_targets)
        targets = make_targets(dataset, exprs)
    with torch.no_grad():
        if trace is None:
            trace = run(model, dataset.inputs, record=states)
        controls = []
        for k in range(n_controls):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + k)
                untrained = UnitLSTM(model.config).eval()
            controls.append(run(untrained, dataset.inputs, record=states))
    values, groups, mask = targets.values, targets.groups, targets.mask
    jobs = [(layer, s) for layer in range(model.config.n_layers) for s in states]
    tables = []
    for layer, s in tqdm(jobs, desc="probes", disable=not _show(progress), leave=False):
        X = trace.numpy(s, layer)[mask]  # (n_samples, n_units)
        kw = {"n_splits": n_splits}
        units = unit_probes(X, values, groups, alpha=alpha, **kw)
        pop = population_probe(X, values, groups, **kw)
        ctrl_units, ctrl_pop = [], []
        for c in controls:
            Xc = c.numpy(s, layer)[mask]
            ctrl_units.append(unit_probes(Xc, values, groups, alpha=alpha, **kw)["r2"].to_numpy())
            ctrl_pop.append(population_probe(Xc, values, groups, **kw)["r2"].to_numpy())
        with warnings.catch_warnings():  # a constant unit has no R² in any control: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            units["r2_control"] = np.nanmean(ctrl_units, axis=0) if controls else np.nan
            pop["r2_control"] = np.nanmean(ctrl_pop, axis=0) if controls else np.nan
        perm = permutation_pvalues(
            X, values, groups, n_permutations=n_permutations, seed=seed, alpha=alpha,
            correction=correction, **kw,
        )  # fmt: skip
        part = partial_r2(X, values, groups, alpha=alpha, **kw)
        units["p_value"] = perm["p_value"].to_numpy()
        units["p_value_raw"] = perm["p_value_raw"].to_numpy()
        units["partial_r2"] = part["partial_r2"].to_numpy()
        part_note = part["note"].fillna("").astype(str).to_numpy()
        unit_note = units["note"].fillna("").astype(str).to_numpy()
        units["note"] = [
            "; ".join(n for n in (a, f"partial R²: {b}" if b else "") if n)
            for a, b in zip(unit_note, part_note, strict=True)
        ]
        table = pd.concat([units, pop], ignore_index=True)
        table.insert(0, "layer", layer)
        table.insert(2, "state", s)
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    out["unit"] = out["unit"].astype(object)
    with np.errstate(invalid="ignore"):
        out["selectivity"] = selectivity(out["r2"], out["r2_control"])
    extra = [c for c in ("intercept", "p_value_raw", "note") if c in out]
    return out[PROBE_COLUMNS + extra]


def _default_exprs(dataset, default_targets) -> list[str]:
    spec = getattr(dataset, "spec", None)
    if spec is not None:
        return default_targets(spec)
    return [f"{name}[t{lag}]" for name in dataset.raw for lag in ("", "-1")]


def _show(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    import sys

    return bool(getattr(sys.stderr, "isatty", lambda: False)())
