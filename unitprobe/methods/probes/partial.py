"""What a unit holds beyond the other targets, and in which order units enter a sparse fit.

- :func:`partial_r2` -- held-out R² of each unit for a target once the other targets (or given
  controls) are regressed out; separates units that hold collinear terms such as ``K[t]`` and
  ``K[t-1]``;
- :func:`l1_path_ranking` -- the order in which units enter the lasso / elastic-net path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.linear_model import enet_path

from unitprobe import _linalg as la
from unitprobe.config import ProbeConfig
from unitprobe.errors import DataError
from unitprobe.methods.probes._common import (
    as_matrix,
    as_states,
    check_alpha,
    check_finite,
    constant_units,
    data_sums,
    degenerate_xx,
    long_table,
    prepare,
)
from unitprobe.validation import check_float, check_int

__all__ = ["EXPLAINED_TOL", "l1_path_ranking", "partial_r2"]

#: a target whose residual on its controls keeps less than this share of its variance is
#: "explained by controls" and has no partial R².
EXPLAINED_TOL = 1e-10


@la.with_blas_threads
def partial_r2(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_splits: int = ProbeConfig.n_splits,
    alpha: float = ProbeConfig.alpha,
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
    d = prepare(states, targets, groups, n_splits)
    alpha = check_alpha(alpha)
    n, n_targets = d.Y.shape
    if controls is None:
        T, t_names = d.Y, d.names
        ctrl_sets = [[j for j in range(n_targets) if j != k] for k in range(n_targets)]
    else:
        C, c_names = as_matrix(controls, n, "controls")
        T, t_names = np.hstack([d.Y, C]), d.names + c_names
        ctrl_sets = [list(range(n_targets, T.shape[1]))] * n_targets
    Td = T - T.mean(axis=0)
    sums = data_sums(d, Td, y_gram=True)
    const_unit = constant_units(d, sums)
    sp = la.split_moments(sums)
    degenerate = degenerate_xx(sp)

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
    return long_table(
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
    X = as_states(states)
    Y, names = as_matrix(targets, X.shape[0], "targets")
    check_finite(X, "states")
    n_alphas = check_int(n_alphas, "n_alphas", minimum=2, error=DataError)
    check_float(l1_ratio, "l1_ratio", minimum=0, maximum=1, strict_minimum=True, error=DataError)
    eps = check_float(eps, "eps", minimum=0, strict_minimum=True, error=DataError)
    if eps >= 1:
        raise DataError(f"eps == {eps!r}, must be a finite number > 0 and < 1")
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
