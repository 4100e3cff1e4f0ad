"""The relation language: parse and evaluate recurrence relations safely.

A *relation* defines one series at step ``t`` from the present and past of the series of a
task, for example ``K[t] = K[t-1] + 2*X[t] + 1``; its right-hand side is an *expression*.

Grammar (anything else is a :class:`~unitprobe.errors.TaskSpecError` that quotes the
offending text):

- numbers: ``2``, ``0.5``, ``1e-3`` (no booleans, strings or complex numbers);
- series references ``NAME[t]`` and ``NAME[t-k]`` with ``k`` a non-negative integer literal
  (no look-ahead ``t+1``, no ``t-n``, no fixed index ``K[2]``);
- ``+ - * / **``, unary ``-`` and ``+``, parentheses;
- functions called by bare name: ``abs tanh sin cos exp log sqrt sigmoid`` (one argument),
  ``min max`` (two arguments);
- random terms ``normal(sd)``, ``normal(mean, sd)`` and ``uniform(low, high)`` whose arguments
  are constants (numbers or arithmetic of numbers). They draw a fresh value at every step of
  every sequence.

The text is parsed with :func:`ast.parse` and the syntax tree is checked node by node against
this whitelist and then converted into a small immutable tree of dataclasses; nothing is ever
passed to ``eval`` or ``exec``. The tree evaluates vectorized with numpy
(:meth:`Expression.evaluate`).

Example
-------
>>> rel = parse_relation("K[t] = K[t-1] + 2*X[t] + 1", ["K", "X"])
>>> rel.name, str(rel.expr), sorted(rel.expr.references)
('K', 'K[t-1] + 2*X[t] + 1', [('K', 1), ('X', 0)])
"""

from unitprobe.tasks.relations.expression import (
    FUNCTIONS,
    RANDOM_FUNCTIONS,
    BinOp,
    Call,
    Const,
    Expression,
    Random,
    Ref,
    Unary,
)
from unitprobe.tasks.relations.parser import (
    MAX_DEPTH,
    MAX_LAG,
    MAX_TEXT_LENGTH,
    Relation,
    parse_expression,
    parse_relation,
    parse_system,
)

__all__ = [
    "BinOp",
    "Call",
    "Const",
    "Expression",
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_LAG",
    "MAX_TEXT_LENGTH",
    "RANDOM_FUNCTIONS",
    "Random",
    "Ref",
    "Relation",
    "Unary",
    "parse_expression",
    "parse_relation",
    "parse_system",
]
