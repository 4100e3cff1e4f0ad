"""How separable the probe targets are from one another, before any probe is trusted.

Two targets that are (nearly) linear functions of each other -- ``K[t]`` and ``K[t-1]`` of a
slowly varying series, or ``K[t]`` and ``K[t-1] + 2*X[t]`` where that is the relation -- cannot
be told apart by a probe: a unit that holds one holds the other too. :func:`identifiability`
flags such pairs, :func:`vif_table` targets that are (nearly) a linear combination of all the
others, and :func:`correlation_matrix` gives the correlations behind both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import schemas
from unitprobe.errors import DataError
from unitprobe.methods.probes._common import as_matrix
from unitprobe.validation import check_float

__all__ = ["SEPARABLE_R2", "VIF_TOL", "correlation_matrix", "identifiability", "vif_table"]

#: Targets (pairs, or a target and all others) with an R² at least this are not separable.
SEPARABLE_R2 = 0.95
#: a VIF above 1 / VIF_TOL is reported as inf (the target is a linear combination of others).
VIF_TOL = 1e-12


def correlation_matrix(targets: ArrayLike | pd.DataFrame) -> pd.DataFrame:
    """Pearson correlation between targets, DataFrame (n_targets, n_targets) named by target.

    Entries involving a constant target are NaN (its diagonal too).
    """
    Y, names = as_matrix(targets, _n_rows(targets), "targets")
    Z, live = _standardize(Y)
    corr = (Z.T @ Z) / len(Y)
    np.fill_diagonal(corr, 1.0)
    corr[~live, :] = np.nan
    corr[:, ~live] = np.nan
    return pd.DataFrame(np.clip(corr, -1.0, 1.0), index=names, columns=names)


def identifiability(
    targets: ArrayLike | pd.DataFrame, *, threshold: float = SEPARABLE_R2
) -> pd.DataFrame:
    """Whether a probe can tell each pair of targets apart.

    Parameters
    ----------
    targets : array-like of shape (n_samples, n_targets) or DataFrame
        DataFrame column names become the target labels, else ``"0"``, ``"1"``, ...
    threshold : float, default=0.95
        Pairs with ``r2 >= threshold`` are not separable; in (0, 1].

    Returns
    -------
    DataFrame
        The ``identifiability`` table (:data:`unitprobe.schemas.SCHEMAS`): one row per pair of
        targets, ``n_targets * (n_targets - 1) / 2`` rows in column order: ``target_a``,
        ``target_b``, ``r2`` (squared Pearson correlation), ``separable`` (``r2 <
        threshold``). A pair with a constant target has NaN ``r2`` and ``separable`` False (a
        constant cannot be probed).

    See Also
    --------
    vif_table : each target against all the others together.
    """
    threshold = _check_threshold(threshold)
    Y, names = as_matrix(targets, _n_rows(targets), "targets")
    corr = correlation_matrix(pd.DataFrame(Y, columns=names)).to_numpy()
    ia, ib = np.triu_indices(len(names), k=1)
    pair_r2 = corr[ia, ib] ** 2
    table = pd.DataFrame(
        {
            "target_a": np.array(names, dtype=object)[ia],
            "target_b": np.array(names, dtype=object)[ib],
            "r2": pair_r2,
            "separable": pair_r2 < threshold,
        }
    )
    return schemas.SCHEMAS["identifiability"].coerce(table)


def vif_table(
    targets: ArrayLike | pd.DataFrame, *, threshold: float = SEPARABLE_R2
) -> pd.DataFrame:
    """Variance inflation of each target among all the targets.

    Parameters
    ----------
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    threshold : float, default=0.95
        A target whose ``r2`` on the others is at least this is not separable; in (0, 1].

    Returns
    -------
    DataFrame
        The ``vif`` table: one row per target, ``target``, ``vif`` (variance inflation factor,
        ``1 / (1 - r2)``; inf when the target is a linear combination of the others, i.e.
        ``1 - r2 < VIF_TOL``), ``r2`` (R² of the target regressed on all other non-constant
        targets, ``= 1 - 1/vif``; 0 for a target with no others), ``separable`` (``r2 <
        threshold``). Constant targets have NaN ``vif`` and ``r2`` and ``separable`` False,
        and are left out of the other targets' regressions.
    """
    threshold = _check_threshold(threshold)
    Y, names = as_matrix(targets, _n_rows(targets), "targets")
    r2, vif = _vif(Y)
    table = pd.DataFrame({"target": names, "vif": vif, "r2": r2, "separable": r2 < threshold})
    return schemas.SCHEMAS["vif"].coerce(table)


def _check_threshold(threshold: float) -> float:
    return check_float(
        threshold, "threshold", minimum=0, maximum=1, strict_minimum=True, error=DataError
    )


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


def _vif(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R² of each target on the other (non-constant) targets, and its VIF; (K,) each."""
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
