"""The four baselines every score is shown beside, and the per-step normalized error.

A network's error means little alone: on the ``seed`` task a linear map from the current
inputs already predicts the next step almost exactly, because the series grow geometrically.
Every baseline here is fitted on a training split and scored on an evaluation split of the
same task (numpy only, least squares in closed form):

``repeat_last``
    The current observed value of each predicted series (its mean, 0 in normalized units,
    where the series is not an input). Nothing is fitted.
``training_mean``
    The mean of each target at each step over the training sequences.
``memoryless_linear``
    Least squares (with intercept) from the current inputs ``x[t]`` to the targets ``y[t]``,
    pooled over sequences and steps: what is solvable without any memory.
``linear_ar``
    Least squares from the last ``p`` steps of all inputs ``x[t], x[t-1], ..., x[t-p+1]``
    (missing steps before a sequence's start read as 0, the normalized mean, as a network
    starts from a zero state). ``p`` is chosen from ``1 .. p_max`` by the per-step error on a
    seeded validation part (a quarter) of the training sequences, then refitted on all of
    them. With one training sequence ``p = 1``.

Per-step normalized error (:func:`per_step_nmse`)
    For predictions and targets of shape (N, T, O)::

        nmse[t, o] = mean_n (pred - y)[n, t, o]² / var_n y[n, t, o]
        step_nmse  = mean over (t, o) of nmse[t, o]

    Each step is normalized by the variance of its own targets across the evaluated
    sequences, so the late steps of a growing series cannot dominate (on ``seed`` the target
    variance grows about 1e8 along a sequence and steps 15-19 hold 99 % of the pooled
    error). ``step_nmse`` is 1 for the per-step mean of the evaluated targets and about 1 for
    ``training_mean``; 0 is exact. Edge case: a step whose target variance is at most
    :data:`ZERO_VARIANCE` times the mean variance over all steps and outputs (a constant
    target, such as ``Y = 0`` in the first k steps of ``delay-k``, or a single evaluated
    sequence) has no scale; it is left out of the mean and its per-step value is NaN. When
    every step is such a step, ``step_nmse`` is NaN.

Example
-------
>>> from unitprobe.tasks import generate, get_preset
>>> data = generate(get_preset("delay-2"), 384, seed=0)
>>> scores = baseline_scores(data.subset(range(256)), data.subset(range(256, 384)))
>>> scores["linear_ar"]["order"], round(scores["linear_ar"]["step_nmse"], 6)
(3, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unitprobe.errors import DataError
from unitprobe.tasks.generate import Dataset
from unitprobe.validation import check_int

__all__ = [
    "BASELINES",
    "P_MAX",
    "ZERO_VARIANCE",
    "Baseline",
    "baseline_scores",
    "fit_baselines",
    "lagged_inputs",
    "least_squares",
    "per_step_nmse",
    "ratios_to_baselines",
    "repeat_last_prediction",
    "score_predictions",
]

#: The baselines, in the order tables list them.
BASELINES = ("repeat_last", "training_mean", "memoryless_linear", "linear_ar")
#: Largest autoregression order tried by ``linear_ar``.
P_MAX = 8
#: A step whose target variance is at most this times the mean variance has no scale.
ZERO_VARIANCE = 1e-12
_VAL_SHARE = 0.25


def _as_3d(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 3:
        raise DataError(f"{name} has shape {arr.shape}, must be (n_sequences, n_steps, n_outputs)")
    return arr


def per_step_nmse(pred: Any, targets: Any) -> tuple[float, np.ndarray]:
    """The per-step normalized MSE and its value at each step (module docstring).

    Parameters
    ----------
    pred, targets : array of shape (n_sequences, n_steps, n_outputs)

    Returns
    -------
    step_nmse : float
        Mean of ``nmse[t, o]`` over the steps and outputs that have a scale (NaN if none).
    per_step : ndarray of shape (n_steps,)
        ``nmse[t, o]`` averaged over outputs with a scale at step ``t`` (NaN where none).

    Examples
    --------
    >>> y = np.array([[[0.0], [1.0]], [[2.0], [3.0]]])
    >>> per_step_nmse(y + 1.0, y)[0]
    1.0
    """
    pred, targets = _as_3d("pred", pred), _as_3d("targets", targets)
    if pred.shape != targets.shape:
        raise DataError(f"pred has shape {pred.shape} and targets {targets.shape}; must match")
    mse = ((pred - targets) ** 2).mean(axis=0)  # (T, O)
    var = targets.var(axis=0)  # (T, O), across sequences
    scale = float(var.mean()) if var.size else 0.0
    ok = var > ZERO_VARIANCE * scale if scale > 0 else np.zeros_like(var, dtype=bool)
    ratio = np.where(ok, mse / np.where(ok, var, 1.0), np.nan)
    with np.errstate(invalid="ignore"):
        counts = ok.sum(axis=1)
        per_step = np.where(counts > 0, np.nansum(ratio, axis=1) / np.maximum(counts, 1), np.nan)
    value = float(np.nanmean(ratio)) if ok.any() else math.nan
    return value, per_step


def score_predictions(pred: Any, targets: Any) -> dict[str, float]:
    """``{"mse": pooled MSE, "step_nmse": per-step normalized MSE}`` of predictions."""
    pred, targets = _as_3d("pred", pred), _as_3d("targets", targets)
    step, _ = per_step_nmse(pred, targets)
    return {"mse": float(((pred - targets) ** 2).mean()), "step_nmse": step}


def lagged_inputs(inputs: Any, p: int) -> np.ndarray:
    """The last ``p`` steps of all inputs at every step, zero before a sequence's start.

    Parameters
    ----------
    inputs : array of shape (n_sequences, n_steps, n_inputs)
    p : int
        Number of steps (>= 1); ``p = 1`` is the current input alone.

    Returns
    -------
    ndarray of shape (n_sequences, n_steps, p * n_inputs)
        Columns ``[x[t], x[t-1], ..., x[t-p+1]]``, each block in input order.
    """
    x = _as_3d("inputs", inputs)
    p = check_int(p, "p", minimum=1)
    n, t_len, f = x.shape
    out = np.zeros((n, t_len, p * f))
    for lag in range(min(p, t_len)):
        out[:, lag:, lag * f : (lag + 1) * f] = x[:, : t_len - lag]
    return out


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary least squares with an intercept (as scikit-learn's ``LinearRegression``).

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples, n_outputs)

    Returns
    -------
    coef : ndarray of shape (n_features, n_outputs)
        The minimum-norm solution on centered data (rank-deficient designs included).
    intercept : ndarray of shape (n_outputs,)
    """
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    coef, *_ = np.linalg.lstsq(x - x_mean, y - y_mean, rcond=None)
    return coef, y_mean - x_mean @ coef


@dataclass(frozen=True)
class Baseline:
    """One fitted baseline.

    Attributes
    ----------
    name : str
        One of :data:`BASELINES`.
    order : int or None
        The number of input steps a linear baseline reads (1 for ``memoryless_linear``, the
        chosen ``p`` for ``linear_ar``); None for the others.
    params : dict
        ``coef`` and ``intercept`` (linear), ``mean`` (training_mean, shape (T, O)).
    """

    name: str
    order: int | None
    params: dict[str, np.ndarray]

    def predict(self, dataset: Dataset) -> np.ndarray:
        """Predictions of shape (n_sequences, n_steps, n_outputs) on ``dataset``."""
        if self.name == "repeat_last":
            return repeat_last_prediction(dataset)
        n, t_len, o = dataset.targets.shape
        if self.name == "training_mean":
            mean = self.params["mean"]
            if mean.shape[0] != t_len:  # other length: the mean over all steps
                mean = np.broadcast_to(mean.mean(axis=0), (t_len, o))
            return np.broadcast_to(mean, (n, t_len, o)).copy()
        x = lagged_inputs(dataset.inputs, self.order).reshape(n * t_len, -1)
        pred = x @ self.params["coef"] + self.params["intercept"]
        return pred.reshape(n, t_len, o)


def repeat_last_prediction(dataset: Dataset) -> np.ndarray:
    """The repeat-last-value prediction, shape (n_sequences, n_steps, n_outputs).

    The predicted series' current observed input value; 0 (the normalized mean) where the
    series is not an input. The same predictor as :func:`unitprobe.tasks.baseline_mse`.
    """
    pred = np.zeros(dataset.targets.shape)
    for o, name in enumerate(dataset.output_names):
        if name in dataset.input_names:
            pred[..., o] = dataset.inputs[..., dataset.input_names.index(name)]
    return pred


def _fit_linear(dataset: Dataset, p: int) -> Baseline:
    n, t_len, o = dataset.targets.shape
    x = lagged_inputs(dataset.inputs, p).reshape(n * t_len, -1)
    coef, intercept = least_squares(x, np.asarray(dataset.targets, np.float64).reshape(-1, o))
    name = "memoryless_linear" if p == 1 else "linear_ar"
    return Baseline(name, p, {"coef": coef, "intercept": intercept})


def _choose_order(train: Dataset, p_max: int, seed: int) -> int:
    n = train.n_sequences
    if n < 2:
        return 1
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(_VAL_SHARE * n)), n - 1)
    fit, val = train.subset(np.sort(order[n_val:])), train.subset(np.sort(order[:n_val]))
    errors = []
    for p in range(1, min(p_max, train.length) + 1):
        step, _ = per_step_nmse(_fit_linear(fit, p).predict(val), val.targets)
        if not math.isfinite(step):  # no scale on the validation part: use the pooled MSE
            step = score_predictions(_fit_linear(fit, p).predict(val), val.targets)["mse"]
        errors.append(step)
    return int(np.argmin(errors)) + 1


def fit_baselines(train: Dataset, *, p_max: int = P_MAX, seed: int = 0) -> dict[str, Baseline]:
    """Fit the four baselines on the training split.

    Parameters
    ----------
    train : Dataset
        The training sequences (normalized inputs and targets).
    p_max : int, default :data:`P_MAX`
        Largest autoregression order tried (capped at the sequence length).
    seed : int, default 0
        Seeds the split of the training sequences that chooses ``p``.

    Returns
    -------
    dict of str to Baseline
        Keys :data:`BASELINES`, in that order.
    """
    p_max = check_int(p_max, "p_max", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if train.n_sequences < 1:
        raise DataError("cannot fit baselines on an empty training split")
    y = np.asarray(train.targets, np.float64)
    p = _choose_order(train, p_max, seed)
    ar = _fit_linear(train, p)
    return {
        "repeat_last": Baseline("repeat_last", None, {}),
        "training_mean": Baseline("training_mean", None, {"mean": y.mean(axis=0)}),
        "memoryless_linear": _fit_linear(train, 1),
        "linear_ar": Baseline("linear_ar", p, ar.params),
    }


def baseline_scores(
    train: Dataset, evaluate: Dataset, *, p_max: int = P_MAX, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Fit the baselines on ``train`` and score them on ``evaluate``.

    Returns
    -------
    dict of str to dict
        Per baseline (keys :data:`BASELINES`): ``order`` (int or None), ``mse`` (pooled, in
        normalized units²), ``step_nmse`` and ``per_step`` (ndarray of shape (n_steps,)).
    """
    out = {}
    for name, baseline in fit_baselines(train, p_max=p_max, seed=seed).items():
        pred = baseline.predict(evaluate)
        step, per_step = per_step_nmse(pred, evaluate.targets)
        out[name] = {
            "order": baseline.order,
            "mse": float(((pred - evaluate.targets) ** 2).mean()),
            "step_nmse": step,
            "per_step": per_step,
        }
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


def ratios_to_baselines(
    pred: Any, targets: Any, scores: dict[str, dict[str, Any]]
) -> dict[str, float]:
    """A model's errors and their ratios to each baseline, as flat plain numbers.

    Parameters
    ----------
    pred, targets : array of shape (n_sequences, n_steps, n_outputs)
        The model's predictions on the evaluated sequences and their targets.
    scores : dict
        :func:`baseline_scores` on the same evaluated sequences.

    Returns
    -------
    dict of str to float
        ``step_nmse`` (the model's), then for each baseline ``b``: ``mse_ratio_b`` (pooled
        MSE / the baseline's) and ``step_ratio_b`` (step_nmse / the baseline's), plus
        ``ar_order``. A ratio below 1 beats the baseline; NaN where the baseline is exact.
    """
    own = score_predictions(pred, targets)
    out: dict[str, float] = {"step_nmse": own["step_nmse"]}
    for name in BASELINES:
        out[f"mse_ratio_{name}"] = _ratio(own["mse"], scores[name]["mse"])
        out[f"step_ratio_{name}"] = _ratio(own["step_nmse"], scores[name]["step_nmse"])
    out["ar_order"] = scores["linear_ar"]["order"]
    return out
