"""Parse the relation language: text -> checked :mod:`ast` -> expression tree.

The text is parsed with :func:`ast.parse` and the syntax tree is checked node by node against
the whitelist of :mod:`unitprobe.tasks.relations`; nothing is ever passed to ``eval`` or
``exec``.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from unitprobe.errors import TaskSpecError
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

__all__ = [
    "MAX_DEPTH",
    "MAX_LAG",
    "MAX_TEXT_LENGTH",
    "Relation",
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


_RESERVED = frozenset(FUNCTIONS) | frozenset(RANDOM_FUNCTIONS) | {"t"}

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
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


def _short(text: str, limit: int = 80) -> str:
    """``text`` on one line, at most ``limit`` characters, control characters escaped (a
    terminal escape sequence in a name is shown, never sent to the terminal)."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _check_ascii(text: str, where: str) -> None:
    """Refuse non-ASCII characters outside a comment: Python folds look-alike letters
    (``Ｘ`` -> ``X``), so a homoglyph would silently name another series."""
    code = text.split("#", 1)[0]
    for ch in code:
        if ord(ch) > 127:
            raise TaskSpecError(
                f"{where} '{_short(text)}' contains the non-ASCII character {ascii(ch)} "
                f"(U+{ord(ch):04X}); series names and operators use ASCII only"
            )


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
        if not math.isfinite(high - low):
            raise self.fail(f"'{seg}': high - low overflows; use a narrower range")
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
    _check_ascii(stripped, where)
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
    if isinstance(text, str):
        _check_ascii(text, "relation")
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
