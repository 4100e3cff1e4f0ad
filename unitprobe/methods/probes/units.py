"""Per-unit and population probes: held-out R² of ridge probes, from per-fold sums.

- :func:`unit_probes` -- a one-unit ridge probe for every unit x target;
- :func:`population_probe` -- all units together, ridge alpha chosen by cross-validation over
  the other folds (or by leave-one-out);
- :func:`unique_contribution` -- the drop in the population R² when one unit is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import _linalg as la
from unitprobe.config import ProbeConfig
from unitprobe.errors import DataError
from unitprobe.methods.probes._common import (
    check_alpha,
    constant_units,
    data_sums,
    fold_unit_r2,
    full_ridge1d,
    long_table,
    prepare,
    unit_target_notes,
)
from unitprobe.validation import check_choice

__all__ = [
    "DEFAULT_ALPHAS", "SELECT_MODES", "population_probe", "population_select",
    "unique_contribution", "unit_probes",
]  # fmt: skip

#: Candidate ridge penalties of :func:`population_probe`.
DEFAULT_ALPHAS = np.logspace(-4, 3, 15)

#: How :func:`population_probe` chooses each fold's penalty.
SELECT_MODES = ("folds", "loo")


@la.with_blas_threads
def unit_probes(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = ProbeConfig.n_splits,
    alpha: float = ProbeConfig.alpha,
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
    d = prepare(states, targets, groups, n_splits)
    alpha = check_alpha(alpha)
    const_test = d.const_test()  # (F, K)
    sums = data_sums(d, d.Yd)
    const_unit = constant_units(d, sums)
    r2f = fold_unit_r2(sums, alpha, const_test)  # (F, U, K)
    r2f[:, const_unit, :] = np.nan
    r2f[:, :, d.const_target] = np.nan

    coef, intercept = full_ridge1d(sums, d.x_ref, d.y_ref, alpha, const_unit)
    return long_table(
        d.X.shape[1],
        d.names,
        r2=r2f.mean(axis=0),
        r2_std=r2f.std(axis=0),
        coef=coef,
        intercept=intercept,
        n_samples=len(d.X),
        note=unit_target_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )


def _alphas_array(alphas: ArrayLike) -> np.ndarray:
    """``alphas`` as a non-empty 1-D float64 array of numbers > 0, else :class:`DataError`."""
    a = np.atleast_1d(np.asarray(alphas, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not np.isfinite(a).all() or (a <= 0).any():
        raise DataError(f"alphas == {alphas!r}, must be a non-empty 1-D array of numbers > 0")
    return a


def population_select(n_splits: int) -> str:
    """The penalty selection a pipeline uses with ``n_splits`` outer folds.

    ``"folds"`` (grouped inner cross-validation) needs at least 3 folds; with 2 there is no
    inner fold left, and the row-level ``"loo"`` choice is the only one possible.
    """
    return "folds" if n_splits >= 3 else "loo"


@la.with_blas_threads
def population_probe(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = ProbeConfig.n_splits,
    alphas: ArrayLike = DEFAULT_ALPHAS,
    select: str = "folds",
) -> pd.DataFrame:
    """Held-out R² of a ridge probe on all units together, one row per target.

    Each outer ``GroupKFold`` fold fits ``Ridge(alpha)`` (intercept not penalized) on its
    training rows and scores R² on its test rows; ``alpha`` is chosen per target, on the
    training folds only, from ``alphas`` (the first best in ``alphas`` order wins ties):

    - ``select="folds"`` (default): grouped cross-validation inside the training folds. For
      outer fold ``f`` and each other fold ``g``, ridge is fitted on the folds other than ``f``
      and ``g`` and its squared error on ``g`` summed over ``g``; the alpha with the smallest
      sum wins. Equal to that nested scikit-learn loop over ``Ridge(alpha)`` (to 1e-8).
      Whole sequences are held out, so the choice sees how the probe generalizes to new
      sequences; row-level leave-one-out keeps the neighbouring time steps of a left-out row
      in training and so favours too small a penalty. Needs ``n_splits >= 3``.
    - ``select="loo"``: exact leave-one-out over the training rows, the closed form sklearn's
      ``RidgeCV`` uses by default (``gcv_mode`` "auto" -> eigendecomposition of ``X^T X``),
      i.e. equal to fitting ``RidgeCV(alphas)`` to each target column on its own.

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
        Sequence id of each row.
    n_splits : int, default=5
        Outer ``GroupKFold`` folds; ``select="folds"`` uses the other ``n_splits - 1`` folds
        as the inner folds, so it needs ``n_splits >= 3``.
    alphas : array-like of shape (n_alphas,), default=np.logspace(-4, 3, 15)
        Candidate penalties, all > 0.
    select : {"folds", "loo"}, default="folds"
        How each fold chooses its penalty: inner grouped cross-validation over the other
        folds, or row-level leave-one-out (``RidgeCV``).

    Returns
    -------
    DataFrame
        One row per target: ``target``, ``r2`` (held-out, mean over folds), ``r2_std``
        (ddof=0), ``alpha`` (median over folds of the chosen penalty), ``alpha_folds`` (the
        chosen penalty of each fold, ";"-joined), ``n_samples``, ``note``.

    Notes
    -----
    One chunked pass over ``states`` builds the per-fold sums (``X^T X``, ``X^T y``, ``y^T y``,
    sums and counts); everything after works on them. ``select="folds"`` costs one
    eigendecomposition per (outer, inner) fold pair, serving every alpha and target:
    ``n_splits * (n_splits - 1) * (n_units^3 + 2 n_units^2 * n_alphas * n_targets)``, whatever
    ``n_samples``. ``select="loo"`` adds, per fold, a pass over the training rows of ``n_units
    * (n_units + n_alphas * (n_targets + 1))`` multiply-adds per row (what ``RidgeCV`` does).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(600, 3)); y = h @ [1.0, -2.0, 0.5] + rng.normal(size=600)
    >>> table = population_probe(h, y, groups=np.arange(600) // 20)
    >>> bool(table.r2.iloc[0] > 0.75)
    True
    """
    select = check_choice(select, "select", SELECT_MODES, error=DataError)
    d = prepare(states, targets, groups, n_splits)
    alphas = _alphas_array(alphas)
    n_folds, n_targets = len(d.rows), d.Y.shape[1]
    if select == "folds" and n_folds < 3:
        raise DataError(
            f"n_splits == {n_folds}, must be >= 3 with select='folds' (the penalty is chosen "
            "by cross-validation over the other folds); use n_splits >= 3 or select='loo'"
        )
    Yd = d.Yd
    sums = data_sums(d, Yd, x_gram=True)
    sp = la.split_moments(sums)
    sst = sp.test_sst
    inner = la.inner_fold_sse(sums, alphas) if select == "folds" else None  # (F, A, K)
    r2f = np.empty((n_folds, n_targets))
    chosen = np.empty((n_folds, n_targets))
    for f in range(n_folds):
        eigvals, eigvecs = np.linalg.eigh(sp.train_xx[f])
        eigvals = np.clip(eigvals, 0.0, None)
        proj = eigvecs.T @ sp.train_xy[f]  # (U, K)
        if inner is None:
            train_rows = [r for g, r in enumerate(d.rows) if g != f]
            cv_sse = la.ridge_loo_sq_errors(
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
        else:
            cv_sse = inner[f]
        chosen[f] = alphas[np.argmin(cv_sse, axis=0)]
        B = eigvecs @ (proj / (eigvals[:, None] + chosen[f][None, :]))  # (U, K)
        sse = la.quad_sse(sp.test_yy[f], sp.test_xy[f], sp.test_xx[f], B)
        r2f[f] = la.r2_from_sse(sse, sst[f])
    const_test = d.const_test()
    r2f = np.where(const_test, 0.0, r2f)
    r2f[:, d.const_target] = np.nan
    n_const = const_test.sum(axis=0)
    return pd.DataFrame(
        {
            "target": d.names,
            "r2": r2f.mean(axis=0),
            "r2_std": r2f.std(axis=0),
            "alpha": np.median(chosen, axis=0),
            "alpha_folds": [";".join(f"{a:.6g}" for a in col) for col in chosen.T],
            "n_samples": len(d.X),
            "note": unit_target_notes(np.zeros(1, bool), d.const_target, n_const),
        }
    )


@la.with_blas_threads
def unique_contribution(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = ProbeConfig.n_splits,
    alpha: float = ProbeConfig.alpha,
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
    d = prepare(states, targets, groups, n_splits)
    alpha = check_alpha(alpha, strict=True)
    sums = data_sums(d, d.Yd, x_gram=True)
    const_unit = constant_units(d, sums)
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
    return long_table(
        n_units,
        d.names,
        r2_full=r2_full,
        r2_without=r2_without,
        unique_r2=r2_full - r2_without,
        n_samples=len(d.X),
        note=unit_target_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )
