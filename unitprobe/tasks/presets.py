"""Ready-made tasks.

========================  ===================================================================
name                      task
========================  ===================================================================
``fibonacci``             ``K[t] = K[t-1] + K[t-2]``; input K, predict K[t+1].
``seed``                  The relations of the answer this project starts from:
                          ``X[t] = X[t-1] + X[t-2]``, ``K[t] = K[t-1] + 2*X[t] + 1``;
                          inputs K, X; predict K, X one step ahead.
``seed-noisy``            ``seed`` with observation noise 0.05 (normalized units) on both
                          inputs.
``seed-innov``            The ``seed`` structure with damped coefficients and i.i.d. normal
                          innovations, so that K[t], K[t-1], X[t], X[t-1] are separable
                          (pairwise r² < 0.8, where ``seed`` has r² > 0.99).
``delay-k`` (k >= 1)      ``U[t] = normal(1)`` i.i.d., ``Y[t] = U[t-k]``; input U, predict Y
                          at horizon 0. The network must hold the last k inputs: the minimal
                          state size is k numbers. ``delay-1`` .. ``delay-4`` are listed;
                          :func:`get_preset` builds any k.
``ar2``                   ``X[t] = 0.6*X[t-1] - 0.3*X[t-2] + normal(1)`` (stationary), 20
                          burn-in steps; input X, predict X.
========================  ===================================================================

About the numbers in the seed answer
------------------------------------
See :data:`SEED_ANSWER_NOTE`: the example sequences printed in the answer do not satisfy the
relations it states; the presets use the relations, with random initial values.
"""

from __future__ import annotations

import dataclasses
import re

from unitprobe.errors import TaskSpecError
from unitprobe.tasks.spec import TaskSpec
from unitprobe.validation import check_int

__all__ = ["PRESETS", "SEED_ANSWER", "SEED_ANSWER_NOTE", "SEED_RELATIONS", "delay", "get_preset"]

#: The relations of the seed answer.
SEED_RELATIONS = ["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"]

#: The numbers printed in the seed answer (index 0 = first printed value, for both series).
SEED_ANSWER = {"K": [0.0, 1.0, 1.0, 2.0, 3.0, 5.0], "X": [1.0, 4.0, 7.0, 12.0, 30.0]}

#: What a residual check of the seed answer's numbers shows (``unitprobe tasks check``).
SEED_ANSWER_NOTE = """\
The answer prints K = 0 1 1 2 3 5 and X = 1 4 7 12 30 and states the relations
X[t] = X[t-1] + X[t-2] and K[t] = K[t-1] + 2*X[t] + 1. Its numbers do not satisfy them.
Alignment used: both lists start at t = 0 (K[0] = 0, X[0] = 1).
  X[t] = X[t-1] + X[t-2] fails at t = 2: X[1] + X[0] = 4 + 1 = 5, not 7
    (and at t = 3: 11, not 12; at t = 4: 19, not 30). This holds for any alignment with K.
  K[t] = K[t-1] + 2*X[t] + 1 fails at t = 1: K[0] + 2*X[1] + 1 = 0 + 8 + 1 = 9, not 1
    (and at every later step). Shifting X by one step (X[0] beside K[1]) fails too:
    K[1] = 0 + 2*1 + 1 = 3, not 1.
K itself is Fibonacci (K[t] = K[t-1] + K[t-2] holds). unitprobe's 'seed' task therefore uses
the relations, not the numbers, with random initial values uniform(0, 1)."""

_UNIFORM2 = ["uniform(0, 1)", "uniform(0, 1)"]


def delay(k: int, length: int | None = None) -> TaskSpec:
    """The delay task ``Y[t] = U[t-k]`` with i.i.d. standard normal ``U``.

    Parameters
    ----------
    k : int
        Delay in steps (>= 1); the minimal state that solves the task holds k numbers.
    length : int or None
        Steps per sequence; default ``max(30, 3*k)``. ``Y`` is 0 for the first k steps.
    """
    k = check_int(k, "delay k", minimum=1, error=TaskSpecError)
    return TaskSpec(
        name=f"delay-{k}",
        relations=["U[t] = normal(1)", f"Y[t] = U[t-{k}]"],
        init={"Y": 0.0},
        inputs=["U"],
        predict=["Y"],
        horizon=0,
        length=length if length is not None else max(30, 3 * k),
        description=(
            f"Recall the input from {k} steps ago: Y[t] = U[t-{k}], U i.i.d. normal(0, 1). "
            f"Minimal state size: {k}."
        ),
    )


def _build() -> dict[str, TaskSpec]:
    seed = TaskSpec(
        name="seed",
        relations=list(SEED_RELATIONS),
        init={"X": _UNIFORM2, "K": ["uniform(0, 1)"]},
        inputs=["K", "X"],
        predict=["K", "X"],
        length=20,
        description="The relations of the seed answer; predict K and X one step ahead.",
    )
    presets = {
        "fibonacci": TaskSpec(
            name="fibonacci",
            relations=["K[t] = K[t-1] + K[t-2]"],
            init={"K": _UNIFORM2},
            inputs=["K"],
            predict=["K"],
            length=20,
            description="Fibonacci recurrence with random initial values; predict the next K.",
        ),
        "seed": seed,
        "seed-noisy": dataclasses.replace(
            seed,
            name="seed-noisy",
            noise={"K": 0.05, "X": 0.05},
            description="'seed' with observation noise of 0.05 std on both inputs.",
        ),
        "seed-innov": TaskSpec(
            name="seed-innov",
            relations=[
                "X[t] = 0.5*X[t-1] + 0.3*X[t-2] + normal(1)",
                "K[t] = 0.5*K[t-1] + 0.5*X[t] + normal(1)",
            ],
            init={"X": 0.0, "K": 0.0},
            inputs=["K", "X"],
            predict=["K", "X"],
            length=30,
            burn_in=20,
            description=(
                "The seed structure (X autoregressive, K driven by K[t-1] and X[t]) with "
                "damped coefficients and innovations, so its terms are separable."
            ),
        ),
        "ar2": TaskSpec(
            name="ar2",
            relations=["X[t] = 0.6*X[t-1] - 0.3*X[t-2] + normal(1)"],
            init={"X": 0.0},
            inputs=["X"],
            predict=["X"],
            length=30,
            burn_in=20,
            description="Stationary AR(2) process; predict the next X.",
        ),
    }
    for k in range(1, 5):
        presets[f"delay-{k}"] = delay(k)
    return presets


#: Registry of named tasks.
PRESETS: dict[str, TaskSpec] = _build()

_DELAY = re.compile(r"delay-(\d+)")


def get_preset(name: str) -> TaskSpec:
    """A fresh copy of the preset ``name`` (``delay-k`` works for any integer k >= 1).

    Raises
    ------
    TaskSpecError
        Unknown name; the message lists the available names.
    """
    if isinstance(name, str):
        if name in PRESETS:
            return TaskSpec.from_dict(PRESETS[name].to_dict())
        m = _DELAY.fullmatch(name.strip())
        if m and int(m.group(1)) >= 1:
            return delay(int(m.group(1)))
    raise TaskSpecError(
        f"unknown task {name!r}; available: {', '.join(PRESETS)} (and delay-k for any k >= 1)"
    )
