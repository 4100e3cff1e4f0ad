"""The expression tree of the relation language and its vectorized evaluation.

:func:`unitprobe.tasks.relations.parse_expression` builds these immutable dataclasses from
text; :meth:`Expression.evaluate` evaluates a tree with numpy over all sequences at once and
:meth:`Expression.linear_terms` reads the coefficients of a linear expression.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from unitprobe.errors import TaskSpecError

__all__ = [
    "BinOp",
    "Call",
    "Const",
    "Expression",
    "FUNCTIONS",
    "Lookup",
    "RANDOM_FUNCTIONS",
    "Random",
    "Ref",
    "Unary",
]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 0.5 * (1 + tanh(x / 2)) is the logistic function without overflow in exp(-x).
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))


#: Whitelisted deterministic functions: name -> (numpy implementation, number of arguments).
FUNCTIONS: dict[str, tuple[Callable[..., np.ndarray], int]] = {
    "abs": (np.abs, 1),
    "tanh": (np.tanh, 1),
    "sin": (np.sin, 1),
    "cos": (np.cos, 1),
    "exp": (np.exp, 1),
    "log": (np.log, 1),
    "sqrt": (np.sqrt, 1),
    "sigmoid": (_sigmoid, 1),
    "min": (np.minimum, 2),
    "max": (np.maximum, 2),
}
#: Whitelisted random terms: name -> accepted numbers of (constant) arguments.
RANDOM_FUNCTIONS: dict[str, tuple[int, ...]] = {"normal": (1, 2), "uniform": (2,)}

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "unary": 3, "**": 4, "atom": 5}

Lookup = Callable[[str, int], np.ndarray]


# --------------------------------------------------------------------------------------------
# expression tree
# --------------------------------------------------------------------------------------------


def _fmt_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class Expression:
    """Base class of the parsed expression tree (immutable, comparable, hashable).

    Subclasses: :class:`Const`, :class:`Ref`, :class:`Unary`, :class:`BinOp`, :class:`Call`,
    :class:`Random`. ``str(expr)`` is the canonical text, which parses back to an equal tree.
    """

    def children(self) -> tuple[Expression, ...]:
        """The direct sub-expressions."""
        return ()

    # --- structure ---------------------------------------------------------------------
    @property
    def references(self) -> set[tuple[str, int]]:
        """Set of ``(series name, lag)`` pairs the expression reads."""
        out: set[tuple[str, int]] = set()
        for child in self.children():
            out |= child.references
        return out

    @property
    def max_lag(self) -> int:
        """Largest lag ``k`` among the references (0 when there are none)."""
        return max((lag for _, lag in self.references), default=0)

    @property
    def has_random(self) -> bool:
        """Whether the expression contains a random term."""
        return any(child.has_random for child in self.children())

    @property
    def is_constant(self) -> bool:
        """Whether the expression reads no series and draws no random numbers."""
        return not self.references and not self.has_random

    # --- evaluation --------------------------------------------------------------------
    def evaluate(
        self,
        lookup: Lookup | None,
        rng: np.random.Generator | None = None,
        size: int | tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """Evaluate vectorized.

        Parameters
        ----------
        lookup : callable ``(name, lag) -> ndarray`` or None
            Values of series ``name`` at lag ``lag``; all returned arrays share one shape,
            e.g. ``(n_sequences,)`` at one step of stepwise generation, or
            ``(n_sequences, n_steps)`` shifted views of whole arrays. May be None for an
            expression without references.
        rng : numpy.random.Generator or None
            Source of the random terms, which draw ``size``-shaped samples. With None, every
            random term evaluates to its mean (used by residual checks).
        size : int or tuple of int or None
            Shape of the result (and of every random draw). None: the broadcast shape of the
            looked-up arrays.

        Returns
        -------
        ndarray of float64, of shape ``size``
            Non-finite values (overflow, ``log`` of a negative number) are returned as such,
            without warnings; callers decide what to do with them.
        """
        if lookup is None and self.references:
            raise TaskSpecError(f"expression '{self}' reads series but no lookup was given")
        with np.errstate(all="ignore"):
            out = np.asarray(self._eval(lookup, rng, size), dtype=np.float64)
            if size is not None:
                out = np.broadcast_to(out, size).copy()
        return out

    def _eval(self, lookup: Lookup | None, rng, size):  # pragma: no cover - abstract
        raise NotImplementedError

    def constant_value(self) -> float:
        """Value of an expression without references; random terms count as their mean."""
        if self.references:
            raise TaskSpecError(f"expression '{self}' is not constant: it reads series")
        return float(self.evaluate(None, None, None))

    # --- linearity ---------------------------------------------------------------------
    def linear_terms(self) -> tuple[dict[tuple[str, int], float], float] | None:
        """Coefficients of an affine expression, or None if it is not affine.

        Returns
        -------
        (coefficients, intercept) or None
            ``coefficients`` maps ``(name, lag)`` to its coefficient; random terms that are
            added (not multiplied by a series) enter the intercept as their mean.
        """
        return None

    def is_linear(self) -> bool:
        """Whether the expression is affine in the series (see :meth:`linear_terms`)."""
        return self.linear_terms() is not None

    # --- deterministic part ------------------------------------------------------------
    def without_random(self) -> Expression | None:
        """The expression with its added random terms removed.

        Random terms that are added or subtracted are dropped; random terms anywhere else
        (``X[t]*normal(1, 0.1)``) are replaced by their mean. Returns None when nothing
        deterministic is left (``normal(1)``).
        """
        return self

    def _mean_substituted(self) -> Expression:
        return self

    # --- text --------------------------------------------------------------------------
    @property
    def _prec(self) -> int:
        return _PREC["atom"]

    def __str__(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Const(Expression):
    """A number."""

    value: float

    def _eval(self, lookup, rng, size):
        return self.value

    def linear_terms(self):
        return {}, self.value

    @property
    def _prec(self) -> int:
        return _PREC["unary"] if self.value < 0 else _PREC["atom"]

    def __str__(self) -> str:
        return _fmt_number(self.value)


@dataclass(frozen=True)
class Ref(Expression):
    """The value of series ``name`` at step ``t - lag``."""

    name: str
    lag: int

    @property
    def references(self) -> set[tuple[str, int]]:
        return {(self.name, self.lag)}

    def _eval(self, lookup, rng, size):
        return lookup(self.name, self.lag)

    def linear_terms(self):
        return {(self.name, self.lag): 1.0}, 0.0

    def __str__(self) -> str:
        return f"{self.name}[t]" if self.lag == 0 else f"{self.name}[t-{self.lag}]"


@dataclass(frozen=True)
class Unary(Expression):
    """Negation ``-operand`` (the only unary operator kept in the tree)."""

    op: str
    operand: Expression

    def children(self):
        return (self.operand,)

    def _eval(self, lookup, rng, size):
        return -self.operand._eval(lookup, rng, size)

    def linear_terms(self):
        inner = self.operand.linear_terms()
        if inner is None:
            return None
        coefs, const = inner
        return {k: -v for k, v in coefs.items()}, -const

    def without_random(self):
        inner = self.operand.without_random()
        return None if inner is None else Unary(self.op, inner)

    def _mean_substituted(self):
        return Unary(self.op, self.operand._mean_substituted())

    @property
    def _prec(self) -> int:
        return _PREC["unary"]

    def __str__(self) -> str:
        inner = str(self.operand)
        if self.operand._prec < _PREC["unary"]:
            inner = f"({inner})"
        return f"-{inner}"


@dataclass(frozen=True)
class BinOp(Expression):
    """``left op right`` with ``op`` one of ``+ - * / **``."""

    op: str
    left: Expression
    right: Expression

    def children(self):
        return (self.left, self.right)

    def _eval(self, lookup, rng, size):
        a = self.left._eval(lookup, rng, size)
        b = self.right._eval(lookup, rng, size)
        if self.op == "+":
            return np.add(a, b)
        if self.op == "-":
            return np.subtract(a, b)
        if self.op == "*":
            return np.multiply(a, b)
        if self.op == "/":
            return np.divide(a, b)
        return np.power(np.asarray(a, dtype=float), b)

    def linear_terms(self):
        if self.op in "+-":
            lt, rt = self.left.linear_terms(), self.right.linear_terms()
            if lt is None or rt is None:
                return None
            sign = 1.0 if self.op == "+" else -1.0
            coefs = dict(lt[0])
            for k, v in rt[0].items():
                coefs[k] = coefs.get(k, 0.0) + sign * v
            return coefs, lt[1] + sign * rt[1]
        if self.op == "*":
            for const_side, other in ((self.left, self.right), (self.right, self.left)):
                if const_side.is_constant:
                    inner = other.linear_terms()
                    if inner is None:
                        return None
                    c = const_side.constant_value()
                    return {k: c * v for k, v in inner[0].items()}, c * inner[1]
            return None
        if self.op == "/" and self.right.is_constant:
            c = self.right.constant_value()
            inner = self.left.linear_terms()
            if inner is None or c == 0:
                return None
            return {k: v / c for k, v in inner[0].items()}, inner[1] / c
        if self.is_constant:
            return {}, self.constant_value()
        return None

    def without_random(self):
        if not self.has_random:
            return self
        if self.op in "+-":
            left, right = self.left.without_random(), self.right.without_random()
            if left is None and right is None:
                return None
            if right is None:
                return left
            if left is None:
                return right if self.op == "+" else Unary("-", right)
            return BinOp(self.op, left, right)
        return self._mean_substituted()

    def _mean_substituted(self):
        return BinOp(self.op, self.left._mean_substituted(), self.right._mean_substituted())

    @property
    def _prec(self) -> int:
        return _PREC[self.op]

    def __str__(self) -> str:
        p = _PREC[self.op]
        left, right = str(self.left), str(self.right)
        if self.op == "**":
            # right-associative: parenthesize a power on the left, not on the right
            if self.left._prec <= p:
                left = f"({left})"
            if self.right._prec < p:
                right = f"({right})"
            return f"{left}**{right}"
        if self.left._prec < p:
            left = f"({left})"
        if self.right._prec <= p:
            right = f"({right})"
        sep = " " if self.op in "+-" else ""
        return f"{left}{sep}{self.op}{sep}{right}"


@dataclass(frozen=True)
class Call(Expression):
    """A whitelisted deterministic function (see :data:`FUNCTIONS`)."""

    func: str
    args: tuple[Expression, ...]

    def children(self):
        return self.args

    def _eval(self, lookup, rng, size):
        fn, _ = FUNCTIONS[self.func]
        return fn(*(np.asarray(a._eval(lookup, rng, size), dtype=float) for a in self.args))

    def linear_terms(self):
        return ({}, self.constant_value()) if self.is_constant else None

    def without_random(self):
        return self._mean_substituted() if self.has_random else self

    def _mean_substituted(self):
        return Call(self.func, tuple(a._mean_substituted() for a in self.args))

    def __str__(self) -> str:
        return f"{self.func}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True)
class Random(Expression):
    """A random term: ``normal(sd)``, ``normal(mean, sd)`` or ``uniform(low, high)``.

    ``params`` holds the evaluated constant arguments: ``(mean, sd)`` for ``normal``,
    ``(low, high)`` for ``uniform``.
    """

    dist: str
    args: tuple[Expression, ...]
    params: tuple[float, float]

    def children(self):
        return self.args

    @property
    def has_random(self) -> bool:
        return True

    @property
    def mean(self) -> float:
        """Mean of the distribution."""
        a, b = self.params
        return a if self.dist == "normal" else 0.5 * (a + b)

    def _eval(self, lookup, rng, size):
        if rng is None:
            return self.mean
        a, b = self.params
        return rng.normal(a, b, size) if self.dist == "normal" else rng.uniform(a, b, size)

    def linear_terms(self):
        return {}, self.mean

    def without_random(self):
        return None

    def _mean_substituted(self):
        return Const(self.mean)

    def __str__(self) -> str:
        return f"{self.dist}({', '.join(str(a) for a in self.args)})"


# --------------------------------------------------------------------------------------------
# parsing
