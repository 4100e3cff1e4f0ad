"""Terms (an input series at a lag) and the output fields the task's relations predict.

A *term* is ``(feature, lag)``, written ``NAME[t-lag]`` (``NAME[t]`` for lag 0); ``NAME`` must be
one of the model's input features. An *output field* writes one predicted output at step ``t``
(the series ``P`` at ``t + horizon``) as a linear function of the observed inputs at steps
``<= t``, in normalized units: it unrolls the relations, with their random terms at their
mean, until only inputs at steps ``<= t`` remain.

Example
-------
>>> parse_term("X[t-1]", ("K", "X"))
Term(feature='X', lag=1)
>>> fields = output_fields(generate(get_preset("seed"), 8, 0))
>>> fields["X"].weights  # X[t+1] = X[t] + X[t-1], normalized: zX[t+1] = zX[t] + zX[t-1] + c
{('X', 0): 1.0, ('X', 1): 1.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from unitprobe.errors import TaskSpecError, UnitprobeError
from unitprobe.tasks import is_data_task, parse_expression
from unitprobe.tasks.relations import Ref
from unitprobe.validation import check_int

__all__ = ["MAX_EXPANSIONS", "OutputField", "Term", "default_terms", "output_fields", "parse_term"]

#: Most relation expansions while unrolling one output field (a series defined by its own past
#: that is not an input unrolls forever: no finite field).
MAX_EXPANSIONS = 200


@dataclass(frozen=True)
class Term:
    """An input series at a lag: ``feature[t - lag]``."""

    feature: str
    lag: int

    def __str__(self) -> str:
        return str(Ref(self.feature, self.lag))


def parse_term(text: Any, inputs: Sequence[str]) -> Term:
    """The term written ``text`` (``"X[t-1]"``, or a :class:`Term`), checked against ``inputs``.

    Raises
    ------
    UnitprobeError
        ``text`` is not one series at a lag, or names a series that is not an input.
    """
    if isinstance(text, Term):
        text = str(text)
    if not isinstance(text, str):
        raise UnitprobeError(f"term == {text!r}, must be text such as 'X[t-1]'")
    try:
        expr = parse_expression(text, None, where="term")
    except TaskSpecError as err:  # the parser's message already quotes the term
        raise UnitprobeError(f"{err}; a term is NAME[t] or NAME[t-k]") from None
    if not isinstance(expr, Ref):
        raise UnitprobeError(
            f"term {text!r} must be one input series at a lag, NAME[t] or NAME[t-k] "
            "(interventions change one input value, not an expression)"
        )
    if expr.name not in inputs:
        raise UnitprobeError(
            f"term {text!r} names {expr.name}, not an input feature; inputs: {', '.join(inputs)}"
        )
    return Term(expr.name, int(expr.lag))


def default_terms(spec: Any, inputs: Sequence[str]) -> list[Term]:
    """Every input at lags ``0 .. max lag`` of the task's relations (at least 1).

    Parameters
    ----------
    spec : TaskSpec or None
        None (data without a task) gives lags 0 and 1.
    inputs : sequence of str
        The model's input features, in order.
    """
    order = 1
    if spec is not None:
        order = max([1, *spec.init_steps.values()])
    return [Term(name, lag) for name in inputs for lag in range(order + 1)]


@dataclass(frozen=True)
class OutputField:
    """One output as a linear function of the inputs, in normalized units.

    Attributes
    ----------
    weights : dict of (feature, lag) to float
        ``z_output[t] = sum(weight * z_feature[t - lag]) + const``.
    min_step : int
        First output step ``t`` at which every relation used is in force (not an initial value)
        and every input read exists.
    """

    weights: dict[tuple[str, int], float]
    min_step: int

    def weight(self, term: Term, lag: int) -> float:
        """Coefficient of ``term.feature`` at ``lag`` (0 where the field does not read it)."""
        return self.weights.get((term.feature, lag), 0.0)


def output_fields(dataset: Any) -> dict[str, OutputField | None]:
    """The output field of every output of ``dataset`` (None where there is none).

    Parameters
    ----------
    dataset : Dataset
        Needs ``spec`` (a :class:`~unitprobe.tasks.TaskSpec` or None), ``input_names``,
        ``output_names`` and ``norm`` (``{series: (shift, scale)}``).

    Returns
    -------
    dict of output name to OutputField or None
        None for every output when there is no spec, the spec is a data task (its relations are
        placeholders) or ``norm`` is missing; None for an output that is not linear in the
        inputs (a nonlinear relation, or a series that is not an input and reads its own past).
    """
    spec = getattr(dataset, "spec", None)
    norm = getattr(dataset, "norm", None)
    outputs = list(dataset.output_names)
    if spec is None or norm is None or is_data_task(spec):
        return dict.fromkeys(outputs)
    return {name: _field(spec, name, tuple(dataset.input_names), norm) for name in outputs}


def _field(spec: Any, output: str, inputs: tuple[str, ...], norm: dict) -> OutputField | None:
    """Unroll ``output[t + horizon]`` into observed inputs (raw coefficients), then normalize."""
    horizon = check_int(spec.horizon, "horizon", minimum=0)
    pending = {(output, horizon): 1.0}  # (series, offset from t) -> raw coefficient
    done: dict[tuple[str, int], float] = {}
    need = spec.init_steps
    min_step = 0
    for _ in range(MAX_EXPANSIONS):
        if not pending:
            break
        (name, offset), coef = pending.popitem()
        if name in inputs and offset <= 0:
            done[(name, -offset)] = done.get((name, -offset), 0.0) + coef
            min_step = max(min_step, -offset)
            continue
        expr = spec.relation(name).expr.without_random()
        terms = ({}, 0.0) if expr is None else expr.linear_terms()
        if terms is None:
            return None
        min_step = max(min_step, need[name] - offset)
        for (ref, lag), c in terms[0].items():
            key = (ref, offset - lag)
            pending[key] = pending.get(key, 0.0) + coef * c
    if pending:
        return None
    out_scale = norm[output][1]
    weights = {
        key: coef * norm[key[0]][1] / out_scale for key, coef in sorted(done.items()) if coef != 0
    }
    return OutputField(weights, int(min_step))
