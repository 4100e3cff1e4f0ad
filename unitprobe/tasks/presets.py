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
``seed-restart``          The seed relations with innovations ``normal(1)`` at every step
                          and restarts (observed flag R: at random with probability 0.2, and
                          after |X| > 10): a restart drops the past. State size 1.
``seed-integrate``        Only X is observed (a damped seed X with innovations); K follows
                          the seed's ``K[t] = K[t-1] + 2*X[t] + 1`` from K = 0 and must be
                          integrated by the network. State size 2.
``seed-stationary``       A stationary seed structure with innovations in which the older
                          term dominates (``X[t] = 0.3*X[t-1] + 0.6*X[t-2] + ...``), so a
                          memoryless map falls far short. State size 1.
``seed-swapped``          The answer's numbers read with the names swapped: K Fibonacci,
                          ``X[t] = X[t-1] + 2*K[t] + 1``. State size 1, but like ``seed`` it
                          grows geometrically, so a memoryless linear map nearly solves it.
========================  ===================================================================

State size
----------
:data:`STATE_SIZE` holds, per preset, the smallest number of real numbers a recurrent network
must carry from one step to the next to predict the targets as well as the relations allow
(``delay-k``: k). ``unitprobe tasks info`` prints it; the capacity sweep checks it (the knee
should land there). Tasks whose state can be read off the current inputs on the generated
data (``seed``, ``fibonacci``, ``seed-swapped``: geometric growth makes ``X[t-1]`` about
``X[t] / 1.618``) have a state size but need no memory in practice; ``tasks info`` says so.

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

__all__ = [
    "PRESETS",
    "SEED_ANSWER",
    "SEED_ANSWER_NOTE",
    "SEED_RELATIONS",
    "SWAPPED_RELATIONS",
    "STATE_SIZE",
    "delay",
    "get_preset",
    "state_size",
]

#: The relations of the seed answer.
SEED_RELATIONS = ["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"]

#: The answer's numbers fit these relations (names swapped) up to X = 12; only X = 30 fails.
SWAPPED_RELATIONS = ["K[t] = K[t-1] + K[t-2]", "X[t] = X[t-1] + 2*K[t] + 1"]

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
K itself is Fibonacci (K[t] = K[t-1] + K[t-2] holds). Read with the names swapped
(K[t] = K[t-1] + K[t-2], X[t] = X[t-1] + 2*K[t] + 1, same alignment) the numbers fit up to
X = 12: X[1] = 1 + 2*1 + 1 = 4, X[2] = 4 + 2*1 + 1 = 7, X[3] = 7 + 2*2 + 1 = 12; only the last
fails: X[4] = 12 + 2*3 + 1 = 19, not 30 (`unitprobe tasks check` finds this reading).
unitprobe's 'seed' task uses the stated relations, not the
numbers, with random initial values uniform(0, 1); 'seed-swapped' is the swapped reading."""

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
    presets.update(_memory_presets())
    for k in range(1, 5):
        presets[f"delay-{k}"] = delay(k)
    presets["seed-stationary"] = dataclasses.replace(
        presets["seed-innov"],
        name="seed-stationary",
        relations=[
            "X[t] = 0.3*X[t-1] + 0.6*X[t-2] + normal(1)",
            "K[t] = 0.5*K[t-1] + 0.5*X[t] + normal(1)",
        ],
        description=(
            "A stationary seed structure with innovations in which X[t-2] dominates; "
            "predict K and X one step ahead. Minimal state size: 1 (X[t-1])."
        ),
    )
    return presets


#: The restart flag of ``seed-restart``: 1 at random (probability 0.2 per step) and whenever
#: |X| passed 10 at the step before, else 0 (clipped steep ramps: exactly 0 or 1 except with
#: probability ~1e-9), so the geometric growth of the seed relations stays bounded.
_RESTART = "R[t] = min(1, max(0, 1e9*(uniform(0, 1) - 0.8)) + max(0, 1e9*(abs(X[t-1]) - 10)))"


def _memory_presets() -> dict[str, TaskSpec]:
    """Presets where memory is necessary and the candidate terms are separable."""
    return {
        "seed-restart": TaskSpec(
            name="seed-restart",
            relations=[
                _RESTART,
                "X[t] = (1 - R[t])*(X[t-1] + (1 - R[t-1])*X[t-2]) + normal(1)",
                "K[t] = (1 - R[t])*(K[t-1] + 2*X[t] + 1) + normal(1)",
            ],
            init={"R": [0.0], "X": [0.0, 0.0], "K": [0.0]},
            inputs=["R", "K", "X"],
            predict=["K", "X"],
            length=30,
            burn_in=10,
            description=(
                "The seed relations with innovations normal(1) and restarts (observed flag R: "
                "at random with probability 0.2, and after |X| > 10); predict K and X one step "
                "ahead. "
                "Minimal state size: 1 (X[t-1])."
            ),
        ),
        "seed-integrate": TaskSpec(
            name="seed-integrate",
            relations=[
                "X[t] = 0.3*X[t-1] + 0.6*X[t-2] + normal(1)",
                "K[t] = K[t-1] + 2*X[t] + 1",
            ],
            init={"X": [0.0, 0.0], "K": [0.0]},
            inputs=["X"],
            predict=["K", "X"],
            length=20,
            description=(
                "Only X is observed (a damped seed X with innovations); K = K[t-1] + 2*X[t] + 1 "
                "from K = 0 must be integrated; predict K and X one step ahead. "
                "Minimal state size: 2 (K[t-1], X[t-1])."
            ),
        ),
        "seed-swapped": TaskSpec(
            name="seed-swapped",
            relations=list(SWAPPED_RELATIONS),
            init={"K": _UNIFORM2, "X": ["uniform(0, 1)"]},
            inputs=["K", "X"],
            predict=["K", "X"],
            length=20,
            description=(
                "The answer's numbers read with the names swapped: K Fibonacci, "
                "X[t] = X[t-1] + 2*K[t] + 1; predict K and X one step ahead. Minimal state "
                "size: 1 (K[t-1]); geometric growth lets a memoryless map nearly solve it."
            ),
        ),
    }


#: Smallest number of reals a network must carry between steps, per preset (``delay-k``: k).
STATE_SIZE: dict[str, int] = {
    "fibonacci": 1,
    "seed": 1,
    "seed-noisy": 1,
    "seed-innov": 1,
    "ar2": 1,
    "seed-restart": 1,
    "seed-integrate": 2,
    "seed-stationary": 1,
    "seed-swapped": 1,
}


#: Registry of named tasks.
PRESETS: dict[str, TaskSpec] = _build()

_DELAY = re.compile(r"delay-(\d+)")


def state_size(name: str) -> int | None:
    """The minimal state size of preset ``name`` (see :data:`STATE_SIZE`), None if unknown.

    Examples
    --------
    >>> state_size("delay-3"), state_size("seed-integrate")
    (3, 2)
    """
    if name in STATE_SIZE:
        return STATE_SIZE[name]
    m = _DELAY.fullmatch(str(name).strip())
    return int(m.group(1)) if m and int(m.group(1)) >= 1 else None


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
