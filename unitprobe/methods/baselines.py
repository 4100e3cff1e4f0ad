"""A network's error beside the four baselines, as a table.

The baselines themselves (``repeat_last``, ``training_mean``, ``memoryless_linear``,
``linear_ar``) and the per-step normalized error live in :mod:`unitprobe.tasks.baselines`,
below the model layer, so that training reports them too; this module turns them into the
``baselines`` table and scores a network's predictions against them.

Table ``baselines`` (:data:`BASELINES_SCHEMA`), one row per predictor (the four baselines,
then ``network`` when predictions are given): ``baseline``; ``order`` (input steps a linear
baseline reads: 1 for ``memoryless_linear``, the validated ``p`` for ``linear_ar``; missing
otherwise); ``mse`` (pooled, normalized units²); ``step_nmse`` (per-step normalized error, 1
= the per-step mean); ``mse_ratio`` and ``step_ratio`` (the network's error over the row's:
below 1 the network beats it; missing without predictions).

Example
-------
>>> from unitprobe.tasks import generate, get_preset
>>> data = generate(get_preset("delay-2"), 256, seed=0)
>>> table = baseline_table(data.subset(range(192)), data.subset(range(192, 256)))
>>> table["baseline"].tolist()
['repeat_last', 'training_mean', 'memoryless_linear', 'linear_ar']
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from unitprobe.schemas import SCHEMAS
from unitprobe.tasks.baselines import (
    BASELINES,
    P_MAX,
    baseline_scores,
    per_step_nmse,
    score_predictions,
)
from unitprobe.tasks.generate import Dataset

__all__ = ["BASELINES_SCHEMA", "baseline_table", "model_scores"]

BASELINES_SCHEMA = SCHEMAS["baselines"]


def baseline_table(
    train: Dataset,
    evaluate: Dataset,
    pred: Any = None,
    *,
    p_max: int = P_MAX,
    seed: int = 0,
) -> pd.DataFrame:
    """The four baselines fitted on ``train``, scored on ``evaluate``, beside a network.

    Parameters
    ----------
    train, evaluate : Dataset
        Training and evaluation splits of one task (shared normalization).
    pred : array of shape (n_sequences, n_steps, n_outputs), optional
        A network's predictions on ``evaluate``; adds the ``network`` row and the ratios.
    p_max, seed : see :func:`unitprobe.tasks.baselines.fit_baselines`

    Returns
    -------
    DataFrame
        The ``baselines`` table (module docstring).
    """
    scores = baseline_scores(train, evaluate, p_max=p_max, seed=seed)
    rows = [
        {"baseline": b, "order": scores[b]["order"], "mse": scores[b]["mse"],
         "step_nmse": scores[b]["step_nmse"]}
        for b in BASELINES
    ]  # fmt: skip
    table = pd.DataFrame(rows)
    if pred is not None:
        own = score_predictions(pred, evaluate.targets)
        table = pd.concat(
            [table, pd.DataFrame([{"baseline": "network", "order": None, **own}])],
            ignore_index=True,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            table["mse_ratio"] = own["mse"] / table["mse"].where(table["mse"] > 0)
            table["step_ratio"] = own["step_nmse"] / table["step_nmse"].where(
                table["step_nmse"] > 0
            )
    else:
        table["mse_ratio"] = np.nan
        table["step_ratio"] = np.nan
    return BASELINES_SCHEMA.coerce(table)


def model_scores(pred: Any, train: Dataset, evaluate: Dataset, **kw: Any) -> pd.DataFrame:
    """:func:`baseline_table` with a network's predictions, plus its per-step values.

    Returns
    -------
    DataFrame
        The ``baselines`` table with the ``network`` row last; ``attrs["per_step"]`` holds
        the network's per-step normalized error, ndarray of shape (n_steps,).
    """
    table = baseline_table(train, evaluate, pred, **kw)
    table.attrs["per_step"] = per_step_nmse(pred, evaluate.targets)[1]
    return table
