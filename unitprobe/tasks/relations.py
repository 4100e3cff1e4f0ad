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

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from unitprobe.errors import TaskSpecError

__all__ = [
    "BinOp",
    "Call",
    "Const",
    "Expression",
    "FUNCTIONS",
    "RANDOM_FUNCTIONS",
    "Random",
    "Ref",
    "Relation",
    "Unary",
    "parse_expression",
    "parse_relation",
    "parse_system",
]

#: Longest accepted expression text, in characters.
MAX_TEXT_LENGTH = 10_000
#: Deepest accepted nesting of the expression tree.
MAX_DEPTH = 200
#: Largest accepted lag ``k`` in ``NAME[t-k]``.
MAX_LAG = 100_000


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
_RESERVED = frozenset(FUNCTIONS) | frozenset(RANDOM_FUNCTIONS) | {"t"}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2, "unary": 3, "**": 4, "atom": 5}
_NODE_WORDS = {
    ast.Attribute: "attribute access",
    ast.Compare: "comparison",
    ast.BoolOp: "boolean operator",
    ast.Lambda: "lambda",
    ast.IfExp: "conditional expression",
    ast.NamedExpr: "assignment expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Dict: "dict",
    ast.Set: "set",
    ast.ListComp: "comprehension",
    ast.SetComp: "comprehension",
    ast.DictComp: "comprehension",
    ast.GeneratorExp: "generator expression",
    ast.JoinedStr: "f-string",
    ast.Starred: "starred expression",
    ast.Slice: "slice",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}

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
# --------------------------------------------------------------------------------------------


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(series: Iterable[str]) -> str:
    names = sorted(series)
    return ", ".join(names) if names else "(none)"


class _Converter:
    """Checks an :mod:`ast` tree against the whitelist and builds the expression tree."""

    def __init__(self, text: str, series: frozenset[str] | None, where: str):
        self.text = text
        self.series = series
        self.where = where

    def seg(self, node: ast.AST) -> str:
        try:
            seg = ast.get_source_segment(self.text, node)
        except Exception:  # pragma: no cover - positions are always present for parsed text
            seg = None
        return _short(seg if seg is not None else ast.dump(node))

    def fail(self, message: str) -> TaskSpecError:
        return TaskSpecError(f"{message} (in {self.where} '{_short(self.text)}')")

    def convert(self, node: ast.AST, depth: int = 0, constant: bool = False) -> Expression:
        if depth > MAX_DEPTH:
            raise self.fail(f"expression is nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            raise self._bare_name(node)
        if isinstance(node, ast.Subscript):
            if constant:
                raise self.fail(
                    f"'{self.seg(node)}' reads a series, but only constants are allowed here"
                )
            return self._subscript(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth, constant)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return Unary("-", self.convert(node.operand, depth + 1, constant))
            if isinstance(node.op, ast.UAdd):
                return self.convert(node.operand, depth + 1, constant)
            raise self.fail(f"operator in '{self.seg(node)}' is not allowed; allowed: - +")
        if isinstance(node, ast.Call):
            return self._call(node, depth, constant)
        word = _NODE_WORDS.get(type(node), type(node).__name__)
        raise self.fail(f"{word} '{self.seg(node)}' is not allowed")

    def _constant(self, node: ast.Constant) -> Const:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"constant '{self.seg(node)}' is not allowed; only numbers are")
        try:
            number = float(value)
        except OverflowError:
            raise self.fail(f"number '{self.seg(node)}' is too large") from None
        if not math.isfinite(number):
            raise self.fail(f"number '{self.seg(node)}' is not finite")
        return Const(number)

    def _bare_name(self, node: ast.Name) -> TaskSpecError:
        name = node.id
        if (
            self.series is not None
            and name in self.series
            or self.series is None
            and (name not in _RESERVED)
        ):
            return self.fail(
                f"series '{name}' must be indexed by the step, e.g. '{name}[t]' or '{name}[t-1]'"
            )
        if name in FUNCTIONS or name in RANDOM_FUNCTIONS:
            return self.fail(f"function '{name}' must be called, e.g. '{name}(...)'")
        if name == "t":
            return self.fail("'t' may only appear inside an index such as 'K[t-1]'")
        return self.fail(f"unknown name '{name}'; known series: {_names(self.series or ())}")

    def _subscript(self, node: ast.Subscript) -> Ref:
        seg = self.seg(node)
        if not isinstance(node.value, ast.Name):
            raise self.fail(f"'{seg}': only series names can be indexed, as in 'K[t-1]'")
        name = node.value.id
        if name in _RESERVED:
            raise self.fail(f"'{seg}': '{name}' is not a series name")
        if self.series is not None and name not in self.series:
            raise self.fail(
                f"unknown series '{name}' in '{seg}'; known series: {_names(self.series)}"
            )
        return Ref(name, self._lag(node.slice, seg))

    def _lag(self, index: ast.AST, seg: str) -> int:
        if isinstance(index, ast.Name) and index.id == "t":
            return 0
        if (
            isinstance(index, ast.BinOp)
            and isinstance(index.left, ast.Name)
            and index.left.id == "t"
        ):
            right = index.right
            is_int = (
                isinstance(right, ast.Constant)
                and isinstance(right.value, int)
                and not isinstance(right.value, bool)
            )
            if isinstance(index.op, ast.Add):
                raise self.fail(
                    f"look-ahead '{seg}' is not allowed: a relation may only read the "
                    "present and the past (t, t-1, t-2, ...)"
                )
            if isinstance(index.op, ast.Sub) and is_int:
                if right.value > MAX_LAG:
                    raise self.fail(f"lag in '{seg}' is larger than {MAX_LAG}")
                return int(right.value)
        raise self.fail(
            f"index in '{seg}' must be 't' or 't-k' with k a non-negative integer literal"
        )

    def _binop(self, node: ast.BinOp, depth: int, constant: bool) -> BinOp:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.fail(f"operator in '{self.seg(node)}' is not allowed; allowed: + - * / **")
        left = self.convert(node.left, depth + 1, constant)
        right = self.convert(node.right, depth + 1, constant)
        out = BinOp(op, left, right)
        if op == "**" and out.is_constant:
            with np.errstate(all="ignore"):
                value = out.constant_value()
            if not math.isfinite(value):
                raise self.fail(f"constant power '{self.seg(node)}' overflows or is undefined")
        return out

    def _call(self, node: ast.Call, depth: int, constant: bool) -> Expression:
        seg = self.seg(node)
        if not isinstance(node.func, ast.Name):
            raise self.fail(
                f"call of '{self.seg(node.func)}' is not allowed; only these functions can be "
                f"called by name: {_names([*FUNCTIONS, *RANDOM_FUNCTIONS])}"
            )
        name = node.func.id
        if node.keywords:
            raise self.fail(f"keyword arguments in '{seg}' are not allowed")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"starred arguments in '{seg}' are not allowed")
        n = len(node.args)
        if name in FUNCTIONS:
            want = FUNCTIONS[name][1]
            if n != want:
                raise self.fail(f"'{seg}': {name}() takes {want} argument(s), got {n}")
            return Call(name, tuple(self.convert(a, depth + 1, constant) for a in node.args))
        if name in RANDOM_FUNCTIONS:
            return self._random(node, name, seg, depth)
        raise self.fail(
            f"call of '{name}' in '{seg}' is not allowed; allowed functions: "
            f"{_names([*FUNCTIONS, *RANDOM_FUNCTIONS])}"
        )

    def _random(self, node: ast.Call, name: str, seg: str, depth: int) -> Random:
        n = len(node.args)
        if n not in RANDOM_FUNCTIONS[name]:
            usage = "normal(sd) or normal(mean, sd)" if name == "normal" else "uniform(low, high)"
            raise self.fail(f"'{seg}' has {n} argument(s); write {usage}")
        args = tuple(self.convert(a, depth + 1, constant=True) for a in node.args)
        if any(a.has_random for a in args):
            raise self.fail(f"'{seg}': arguments of a random term cannot be random")
        with np.errstate(all="ignore"):
            values = [a.constant_value() for a in args]
        if not all(math.isfinite(v) for v in values):
            raise self.fail(f"'{seg}': arguments must be finite numbers, got {values}")
        if name == "normal":
            mean, sd = (0.0, values[0]) if n == 1 else (values[0], values[1])
            if sd < 0:
                raise self.fail(f"'{seg}': sd == {sd:g}, must be >= 0")
            return Random(name, args, (mean, sd))
        low, high = values
        if low > high:
            raise self.fail(f"'{seg}': low == {low:g} > high == {high:g}")
        return Random(name, args, (low, high))


def _parse_ast(text: str, where: str) -> ast.expr:
    if not isinstance(text, str):
        raise TaskSpecError(f"{where} must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise TaskSpecError(f"{where} is empty")
    if len(stripped) > MAX_TEXT_LENGTH:
        raise TaskSpecError(
            f"{where} '{_short(stripped)}' is {len(stripped)} characters long, "
            f"at most {MAX_TEXT_LENGTH} are allowed"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning: invalid decimal literal
            return ast.parse(stripped, mode="eval").body
    except SyntaxError as exc:
        col = f" at column {exc.offset}" if exc.offset else ""
        raise TaskSpecError(f"cannot parse {where} '{_short(stripped)}': {exc.msg}{col}") from None
    except (RecursionError, MemoryError, ValueError, OverflowError) as exc:
        raise TaskSpecError(
            f"cannot parse {where} '{_short(stripped)}': {type(exc).__name__} "
            "(too deeply nested or too large)"
        ) from None


def _series_set(series: Iterable[str] | None) -> frozenset[str] | None:
    if series is None:
        return None
    if isinstance(series, str):
        series = [series]
    return frozenset(series)


def parse_expression(
    text: str, series: Iterable[str] | None = None, *, where: str = "expression"
) -> Expression:
    """Parse the text of an expression (the right-hand side of a relation).

    Parameters
    ----------
    text : str
        E.g. ``"K[t-1] + 2*X[t] + 1"``.
    series : iterable of str or None
        Names of the series the expression may read. None accepts any name that is not a
        function name.
    where : str
        How the text is named in error messages.

    Returns
    -------
    Expression

    Raises
    ------
    TaskSpecError
        If the text is not in the relation language; the message quotes the offending part.
    """
    node = _parse_ast(text, where)
    conv = _Converter(text.strip(), _series_set(series), where)
    try:
        return conv.convert(node)
    except (RecursionError, MemoryError):
        raise conv.fail("expression is too deeply nested") from None


@dataclass(frozen=True)
class Relation:
    """One parsed relation ``name[t] = expr``; ``text`` is the source it came from."""

    name: str
    expr: Expression
    text: str

    @property
    def order(self) -> int:
        """Number of initial values the series needs: the largest lag the relation reads."""
        return self.expr.max_lag

    def __str__(self) -> str:
        return f"{self.name}[t] = {self.expr}"


_ASSIGN = re.compile(r"(?<![=<>!])=(?!=)")


def _split_relation(text: str) -> tuple[str, str]:
    if not isinstance(text, str):
        raise TaskSpecError(f"relation must be a string, got {type(text).__name__}")
    if not text.strip():
        raise TaskSpecError("relation is empty; write it as 'NAME[t] = expression'")
    positions = [m.start() for m in _ASSIGN.finditer(text)]
    if not positions:
        hint = " ('==' is a comparison)" if "==" in text else ""
        raise TaskSpecError(
            f"relation '{_short(text)}' has no '='{hint}; write it as 'NAME[t] = expression'"
        )
    if len(positions) > 1:
        raise TaskSpecError(f"relation '{_short(text)}' has more than one '='")
    i = positions[0]
    return text[:i], text[i + 1 :]


def _lhs_name(lhs: str, text: str) -> str:
    node = _parse_ast(lhs, "left-hand side")
    ok = (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and isinstance(node.slice, ast.Name)
        and node.slice.id == "t"
        and node.value.id not in _RESERVED
    )
    if not ok:
        raise TaskSpecError(
            f"left-hand side '{_short(lhs.strip())}' of relation '{_short(text)}' must be 'NAME[t]'"
        )
    return node.value.id


def parse_relation(text: str, series: Iterable[str] | None = None) -> Relation:
    """Parse one relation ``NAME[t] = expression``.

    Parameters
    ----------
    text : str
        E.g. ``"K[t] = K[t-1] + 2*X[t] + 1"``.
    series : iterable of str or None
        Names of all series (the left-hand side must be one of them). None accepts any name.

    Returns
    -------
    Relation

    Raises
    ------
    TaskSpecError
        Malformed text, a left-hand side other than ``NAME[t]``, or a right-hand side outside
        the relation language. A relation that reads its own present value (``K[t] = K[t]``)
        is a cycle and is refused.
    """
    lhs, rhs = _split_relation(text)
    name = _lhs_name(lhs, text)
    names = _series_set(series)
    if names is not None and name not in names:
        raise TaskSpecError(
            f"unknown series '{name}' on the left of '{_short(text)}'; "
            f"known series: {_names(names)}"
        )
    expr = parse_expression(rhs, names, where=f"relation for {name}")
    if (name, 0) in expr.references:
        raise TaskSpecError(
            f"relation '{_short(text)}' defines {name}[t] from itself: "
            f"same-step cycle {name}[t] -> {name}[t]"
        )
    return Relation(name, expr, text.strip())


def parse_system(
    relations: list[str] | Mapping[str, str] | str, extra_series: Iterable[str] | None = ()
) -> list[Relation]:
    """Parse a system of relations and order it for stepwise evaluation.

    Parameters
    ----------
    relations : list of str, or dict, or str
        Relation texts (``"K[t] = ..."``), or a mapping ``name -> right-hand side`` (or
        ``name -> full relation``), or one relation.
    extra_series : iterable of str or None
        Names of series that are given (data) rather than defined by a relation; relations may
        read them. None accepts any name.

    Returns
    -------
    list of Relation
        In an order where every relation comes after the relations of the series it reads at
        the same step (lag 0); otherwise the given order is kept.

    Raises
    ------
    TaskSpecError
        A malformed relation, a series defined twice, a reference to an unknown series, or a
        same-step cycle (``A[t] = B[t]``, ``B[t] = A[t]``), whose path the message names.
    """
    if isinstance(relations, str):
        relations = [relations]
    if isinstance(relations, Mapping):
        texts = []
        for name, body in relations.items():
            if not isinstance(body, str):
                raise TaskSpecError(f"relation for '{name}' must be a string, got {body!r}")
            texts.append(body if _ASSIGN.search(body) else f"{name}[t] = {body}")
    elif isinstance(relations, (list, tuple)):
        texts = list(relations)
    else:
        raise TaskSpecError(
            f"relations must be a list of strings or a dict, got {type(relations).__name__}"
        )
    if not texts:
        raise TaskSpecError("no relations given; need at least one 'NAME[t] = expression'")
    names: list[str] = []
    for text in texts:
        lhs, _ = _split_relation(text)
        name = _lhs_name(lhs, text)
        if name in names:
            raise TaskSpecError(f"series '{name}' is defined by more than one relation")
        names.append(name)
    if isinstance(relations, Mapping):
        for key, name in zip(relations, names, strict=True):
            if key != name:
                raise TaskSpecError(f"relation under key '{key}' defines '{name}[t]'")
    known = None if extra_series is None else set(names) | set(extra_series)
    parsed = [parse_relation(text, known) for text in texts]
    return _topological(parsed)


def _topological(parsed: list[Relation]) -> list[Relation]:
    by_name = {r.name: r for r in parsed}
    deps = {
        r.name: [n for n, lag in sorted(r.expr.references) if lag == 0 and n in by_name]
        for r in parsed
    }
    order: list[Relation] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = path[path.index(name) :] + [name]
            raise TaskSpecError(
                "relations form a same-step cycle: "
                + " -> ".join(f"{n}[t]" for n in cycle)
                + "; one of them must read the past (t-1, ...) instead"
            )
        state[name] = 1
        for dep in deps[name]:
            visit(dep, path + [name])
        state[name] = 2
        order.append(by_name[name])

    for r in parsed:
        visit(r.name, [])
    return order
