"""A scikit-learn ridge probe estimator, for hand-made probes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from unitprobe import _linalg as la
from unitprobe.config import ProbeConfig
from unitprobe.methods.probes._common import check_alpha

__all__ = ["UnitProbe"]


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

    def __init__(self, *, alpha: float = ProbeConfig.alpha, fit_intercept: bool = True):
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def fit(self, X: ArrayLike, y: ArrayLike) -> UnitProbe:
        """Fit the probe to ``X`` of shape (n_samples, n_features) and ``y``."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        alpha = check_alpha(self.alpha)
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
