"""What a task demands of a network: state size, and what the linear baselines already reach.

:func:`task_info` generates sequences of a task, fits the four baselines of
:mod:`unitprobe.tasks.baselines` on the first half and scores them on the second, and says

- how many numbers a network must carry from one step to the next (:data:`STATE_SIZE` of the
  presets; None for a task without one), and the smallest layer that can solve it
  (:func:`min_units`);
- whether a memoryless linear map already solves the task: its pooled error is at most
  :data:`MEMORYLESS_SOLVES` (1 %) of the better of repeat-last and the training mean;
- the per-step view: the memoryless map's and the best linear autoregression's per-step
  normalized error (1 = the per-step mean).

Which candidate terms a probe can tell apart needs the probe layer; the report that adds it is
:func:`unitprobe.pipeline.taskinfo.task_report` (``unitprobe tasks info NAME``).

Example
-------
>>> from unitprobe.tasks import get_preset
>>> info = task_info(get_preset("seed"), n_sequences=256)
>>> info["state_size"], info["memoryless_solves"]
(1, True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from unitprobe.tasks.baselines import BASELINES, P_MAX, baseline_scores
from unitprobe.tasks.generate import generate
from unitprobe.tasks.presets import state_size
from unitprobe.tasks.spec import TaskSpec
from unitprobe.validation import check_int

__all__ = ["MEMORYLESS_SOLVES", "min_units", "task_info"]

#: A memoryless linear map "solves" a task when its pooled error is at most this share of the
#: better of repeat-last and the training mean.
MEMORYLESS_SOLVES = 0.01


def min_units(spec: TaskSpec) -> int | None:
    """The smallest layer that can solve a preset: ``max(state size, number of outputs)``.

    A network's outputs are a linear readout of its units' ``h``: with fewer units than
    outputs the outputs are linearly dependent, so outputs that are different functions of
    the inputs and the memory (``seed-restart``'s K and X) need a unit each even when fewer
    numbers must be carried between steps. None for a task without a documented state size.

    >>> from unitprobe.tasks import get_preset
    >>> min_units(get_preset("seed-restart")), min_units(get_preset("delay-3"))
    (2, 3)
    """
    size = state_size(spec.name)
    return None if size is None else max(size, len(spec.predict))


def task_info(
    spec: TaskSpec, *, n_sequences: int = 512, seed: int = 0, p_max: int = P_MAX
) -> dict[str, Any]:
    """State size and baselines of a task on generated data.

    Parameters
    ----------
    spec : TaskSpec
    n_sequences : int, default 512
        Sequences generated (>= 4): the first half fits the baselines, the second scores them.
    seed : int, default 0
        Seeds the generated data and the choice of the autoregression order.
    p_max : int, default :data:`unitprobe.tasks.baselines.P_MAX`

    Returns
    -------
    dict
        ``task``, ``state_size`` (int or None), ``min_units`` (the smallest layer that can
        solve it: ``max(state_size, outputs)``, since the outputs are a linear readout of the
        units' h; None without a state size), ``baselines`` (DataFrame: ``baseline``,
        ``order``, ``mse``, ``step_nmse``), ``memoryless_ratio`` (pooled memoryless MSE over
        the better of repeat-last and training mean), ``memoryless_solves`` (bool),
        ``memoryless_step_nmse``, ``linear_ar_step_nmse``.
    """
    n_sequences = check_int(n_sequences, "n_sequences", minimum=4)
    data = generate(spec, n_sequences=n_sequences, seed=seed)
    half = n_sequences // 2
    scores = baseline_scores(
        data.subset(np.arange(half)), data.subset(np.arange(half, n_sequences)),
        p_max=p_max, seed=seed,
    )  # fmt: skip
    table = pd.DataFrame(
        [
            {"baseline": b, "order": scores[b]["order"], "mse": scores[b]["mse"],
             "step_nmse": scores[b]["step_nmse"]}
            for b in BASELINES
        ]
    )  # fmt: skip
    table["order"] = table["order"].astype("Int64")
    reference = min(scores["repeat_last"]["mse"], scores["training_mean"]["mse"])
    ratio = scores["memoryless_linear"]["mse"] / reference if reference > 0 else math.nan
    return {
        "task": spec.name,
        "state_size": state_size(spec.name),
        "min_units": min_units(spec),
        "baselines": table,
        "memoryless_ratio": ratio,
        "memoryless_solves": bool(ratio <= MEMORYLESS_SOLVES),
        "memoryless_step_nmse": scores["memoryless_linear"]["step_nmse"],
        "linear_ar_step_nmse": scores["linear_ar"]["step_nmse"],
    }
