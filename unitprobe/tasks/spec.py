"""Task specifications: which series exist, how they evolve, what the network sees and predicts.

A :class:`TaskSpec` is plain data (it is stored inside checkpoints through
:meth:`TaskSpec.to_dict`) and is validated completely when it is built.

Fields
------
name : str
    Short name of the task: at most 64 characters (:data:`MAX_NAME_LENGTH`), no control
    characters (it names sweep run directories and is printed on terminals).
relations : list of str
    One relation per series, in the relation language of :mod:`unitprobe.tasks.relations`,
    e.g. ``["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"]``.
init : dict
    Initial values of each series for the steps before its relation can be evaluated. A series
    whose relation reaches back to ``t-n`` needs ``n`` values (for steps ``0 .. n-1``). Give a
    list of exactly ``n`` items, or one item (a bare number or a one-item list), which is
    repeated for every one of the ``n`` steps. Any other count is an error: two values where
    the relation reaches back one step, three where it reaches back two, or any value for a
    series whose relation reads no past value. An item is a number or the text of a constant
    expression, which may contain random terms (``"uniform(0, 1)"``) drawn independently for
    each sequence and step (a repeated item is drawn anew at each step).
inputs : list of str
    Series fed to the network, in feature order.
predict : list of str
    Series whose value at step ``t + horizon`` is the network's target at step ``t``.
horizon : int, default 1
    Steps ahead to predict; 0 predicts the present value (delay tasks).
length : int
    Steps per sequence fed to the network. Required: it has no default, and a task file
    without ``length = ...`` is refused.
noise : dict, default {}
    Observation noise on INPUTS only: ``{"K": 0.05}`` adds i.i.d. normal noise with standard
    deviation 0.05 in normalized units (0.05 of the series' standard deviation over the
    dataset) to the K input feature. Targets, ``Dataset.series`` and ``Dataset.raw`` stay
    clean.
burn_in : int, default 0
    Steps generated and discarded before the ``length`` kept steps (lets stationary processes
    forget their initial values).
description : str, default ""
    Free text.

TOML format (:meth:`TaskSpec.from_toml`)::

    name = "my-task"
    relations = ["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"]
    inputs = ["K", "X"]
    predict = ["K", "X"]
    length = 20          # required
    horizon = 1          # optional
    burn_in = 0          # optional
    description = ""     # optional

    [init]               # one value per step the relation reaches back,
    X = ["uniform(0, 1)", "uniform(0, 1)"]   # or one value, repeated
    K = ["uniform(0, 1)"]

    [noise]              # optional
    K = 0.05
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from unitprobe.errors import TaskSpecError
from unitprobe.tasks.relations import Expression, Relation, parse_expression, parse_system
from unitprobe.validation import is_int

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["TaskSpec"]

InitItem = float | str
_REQUIRED = ("name", "relations", "inputs", "predict", "length")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


#: Most steps a sequence may have (length, burn_in and horizon each).
MAX_STEPS = 10_000_000

#: Most characters a task name may have (it names sweep run directories).
MAX_NAME_LENGTH = 64

#: TOML escapes of the characters a TOML basic string cannot hold as they are.
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n"}
_TOML_ESCAPES |= {"\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _is_unicode(text: str) -> bool:
    """Whether ``text`` holds only Unicode scalar values (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise TaskSpecError(f"name == {name!r}, must be a non-empty string")
    if not _is_unicode(name):
        raise TaskSpecError(f"name == {name!r} is not valid Unicode (it holds a lone surrogate)")
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in name):
        raise TaskSpecError(
            f"name == {name!r}, must not contain control characters (newlines, tabs, escapes)"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise TaskSpecError(
            f"name == {name[:20]!r}... must be at most {MAX_NAME_LENGTH} characters "
            f"(it has {len(name)})"
        )


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """A relation-defined sequence task (see the module docstring for every field).

    ``name``, ``relations``, ``inputs``, ``predict`` and ``length`` are required (a task file
    without ``length`` is refused). ``init`` gives each series one value per step its relation
    reaches back (``t-2``: two values), or one value, which is repeated for each of those
    steps; any other count is an error (two values where the relation reaches back one step
    is an error, not truncated).

    Examples
    --------
    >>> spec = TaskSpec(name="fib", relations=["K[t] = K[t-1] + K[t-2]"],
    ...                 init={"K": ["uniform(0, 1)", "uniform(0, 1)"]},
    ...                 inputs=["K"], predict=["K"], length=20)
    >>> spec.init_steps
    {'K': 2}
    """

    name: str
    relations: list[str]
    init: dict[str, list[InitItem]] = field(default_factory=dict)
    inputs: list[str]
    predict: list[str]
    horizon: int = 1
    length: int
    noise: dict[str, float] = field(default_factory=dict)
    burn_in: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name)
        relations = self.relations
        if isinstance(relations, str):
            relations = [relations]
        if not isinstance(relations, (list, tuple)) or not all(
            isinstance(r, str) for r in relations
        ):
            raise TaskSpecError(f"relations == {relations!r}, must be a list of strings")
        relations = [r.strip() for r in relations]
        object.__setattr__(self, "relations", relations)
        system = parse_system(relations)
        object.__setattr__(self, "_system", system)
        names = tuple(_defined_order(relations, system))
        object.__setattr__(self, "_series", names)

        for key in ("horizon", "length", "burn_in"):
            value = getattr(self, key)
            low = 1 if key == "length" else 0
            if not is_int(value) or not low <= value <= MAX_STEPS:
                raise TaskSpecError(
                    f"{key} == {value!r}, must be an integer in [{low}, {MAX_STEPS:,}]"
                )
            object.__setattr__(self, key, int(value))
        object.__setattr__(self, "inputs", self._names_list("inputs"))
        object.__setattr__(self, "predict", self._names_list("predict"))
        try:
            object.__setattr__(self, "noise", self._checked_noise())
            object.__setattr__(self, "init", self._checked_init())
        except OverflowError:
            raise TaskSpecError(
                "a number in init or noise is too large for a float (|x| > 1.8e308)"
            ) from None
        if not isinstance(self.description, str):
            raise TaskSpecError(f"description == {self.description!r}, must be a string")
        if not _is_unicode(self.description):
            raise TaskSpecError(
                "description is not valid Unicode (it holds a lone surrogate such as "
                f"{next(c for c in self.description if not _is_unicode(c))!r})"
            )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # --- validation helpers ------------------------------------------------------------
    def _names_list(self, key: str) -> list[str]:
        value = getattr(self, key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise TaskSpecError(f"{key} == {value!r}, must be a list of series names")
        if not value:
            raise TaskSpecError(f"{key} is empty; give at least one of: {', '.join(self.series)}")
        unknown = [v for v in value if v not in self.series]
        if unknown:
            raise TaskSpecError(
                f"{key} names unknown series {unknown}; known series: {', '.join(self.series)}"
            )
        dupes = sorted({v for v in value if list(value).count(v) > 1})
        if dupes:
            raise TaskSpecError(f"{key} lists {dupes} more than once")
        return list(value)

    def _checked_noise(self) -> dict[str, float]:
        noise = self.noise
        if noise is None:
            return {}
        if not isinstance(noise, dict):
            raise TaskSpecError(f"noise == {noise!r}, must be a dict series -> std")
        out = {}
        for key, value in noise.items():
            if key not in self.inputs:
                raise TaskSpecError(
                    f"noise on '{key}': observation noise applies to inputs only "
                    f"(inputs: {', '.join(self.inputs)})"
                )
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise TaskSpecError(
                    f"noise['{key}'] == {value!r}, must be a finite number >= 0 "
                    "(std in units of the series' std)"
                )
            out[key] = float(value)
        return out

    def _checked_init(self) -> dict[str, list[InitItem]]:
        init = self.init if self.init is not None else {}
        if not isinstance(init, dict):
            raise TaskSpecError(f"init == {init!r}, must be a dict series -> initial values")
        unknown = [k for k in init if k not in self.series]
        if unknown:
            raise TaskSpecError(
                f"init names unknown series {unknown}; known series: {', '.join(self.series)}"
            )
        out: dict[str, list[InitItem]] = {}
        for name in self.series:
            need = self.init_steps[name]
            value = init.get(name, [])
            items = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(items) == 1:
                items = items * need
            if len(items) != need:
                raise TaskSpecError(_init_count_message(name, need, len(items)))
            if need:
                out[name] = [self._checked_init_item(name, i, item) for i, item in enumerate(items)]
        return out

    @staticmethod
    def _checked_init_item(name: str, i: int, item: Any) -> InitItem:
        where = f"init['{name}'][{i}]"
        if _is_number(item):
            if not math.isfinite(item):
                raise TaskSpecError(f"{where} == {item!r}, must be finite")
            return float(item)
        if isinstance(item, str):
            expr = parse_expression(item, (), where=where)
            mean = expr.constant_value()
            if not math.isfinite(mean):
                raise TaskSpecError(f"{where} == {item!r} is not finite (mean {mean})")
            return item.strip()
        raise TaskSpecError(
            f"{where} == {item!r}, must be a number or a constant expression such as "
            "'uniform(0, 1)'"
        )

    # --- derived views -----------------------------------------------------------------
    @property
    def series(self) -> tuple[str, ...]:
        """Names of all series, in the order their relations are given."""
        return self._series

    @property
    def system(self) -> list[Relation]:
        """Parsed relations in evaluation order (same-step dependencies first)."""
        return list(self._system)

    def relation(self, name: str) -> Relation:
        """The parsed relation that defines series ``name``."""
        for rel in self._system:
            if rel.name == name:
                return rel
        raise TaskSpecError(f"no relation defines '{name}'; series: {', '.join(self.series)}")

    @property
    def init_steps(self) -> dict[str, int]:
        """Number of initial values each series needs (the largest lag its relation reads)."""
        return {name: self.relation(name).order for name in self.series}

    def init_expressions(self, name: str) -> list[Expression]:
        """The initial values of ``name`` as parsed constant expressions."""
        out = []
        for i, item in enumerate(self.init.get(name, [])):
            text = item if isinstance(item, str) else repr(float(item))
            out.append(parse_expression(text, (), where=f"init['{name}'][{i}]"))
        return out

    # --- plain data ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (str, int, float, list, dict only)."""
        return {
            "name": self.name,
            "relations": list(self.relations),
            "init": {k: list(v) for k, v in self.init.items()},
            "inputs": list(self.inputs),
            "predict": list(self.predict),
            "horizon": self.horizon,
            "length": self.length,
            "noise": dict(self.noise),
            "burn_in": self.burn_in,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Any) -> TaskSpec:
        """Build a spec from plain data (the inverse of :meth:`to_dict`).

        Raises
        ------
        TaskSpecError
            Missing or unknown keys, or any invalid field.
        """
        if not isinstance(data, dict):
            raise TaskSpecError(f"task spec must be a mapping, got {type(data).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise TaskSpecError(f"unknown task spec keys {unknown}; allowed: {', '.join(allowed)}")
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            hint = " (length: steps per sequence, e.g. length = 20)" if "length" in missing else ""
            raise TaskSpecError(f"task spec is missing required keys {missing}{hint}")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> TaskSpec:
        """Read a spec from a TOML file (format in the module docstring).

        Raises
        ------
        TaskSpecError
            Missing file, TOML syntax error (with its line and column) or invalid spec; the
            message names the file.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TaskSpecError(f"task file '{path}' not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise TaskSpecError(f"cannot read task file '{path}': {exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise TaskSpecError(f"task file '{path}' is not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except TaskSpecError as exc:
            raise TaskSpecError(f"task file '{path}': {exc}") from None

    def describe(self) -> str:
        """A short human-readable description: relations, initial values, inputs, outputs."""
        target = (
            "the current value" if self.horizon == 0 else f"the value {self.horizon} step(s) ahead"
        )
        lines = [f"task {self.name}" + (f": {self.description}" if self.description else "")]
        lines += ["relations:"] + [f"  {r}" for r in self.relations]
        if self.init:
            lines += ["initial values:"] + [f"  {k} = {v}" for k, v in self.init.items()]
        lines += [
            f"inputs:  {', '.join(self.inputs)}",
            f"predict: {', '.join(self.predict)} ({target})",
        ]
        lines += [
            f"length:  {self.length} steps"
            + (f" after {self.burn_in} burn-in" if self.burn_in else "")
        ]
        if self.noise:
            noise = ", ".join(f"{k} {v:g}" for k, v in self.noise.items())
            lines += [f"observation noise (std, normalized units): {noise}"]
        return "\n".join(lines)

    def to_toml(self) -> str:
        """The spec as TOML text that :meth:`from_toml` reads back to an equal spec."""

        def q(value: Any) -> str:
            if isinstance(value, str):
                return _toml_string(value)
            if isinstance(value, list):
                return "[" + ", ".join(q(v) for v in value) + "]"
            return repr(value)

        lines = [f"name = {q(self.name)}", f"relations = {q(self.relations)}"]
        lines += [f"inputs = {q(self.inputs)}", f"predict = {q(self.predict)}"]
        lines += [f"horizon = {self.horizon}", f"length = {self.length}"]
        lines += [f"burn_in = {self.burn_in}", f"description = {q(self.description)}"]

        def key(name: str) -> str:
            return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else q(name)

        if self.init:
            lines += ["", "[init]"] + [f"{key(k)} = {q(v)}" for k, v in self.init.items()]
        if self.noise:
            lines += ["", "[noise]"] + [f"{key(k)} = {q(v)}" for k, v in self.noise.items()]
        return "\n".join(lines) + "\n"


def _defined_order(relations: list[str], system: list[Relation]) -> list[str]:
    by_text = {r.text: r.name for r in system}
    return [by_text[r] for r in relations]


def _init_count_message(name: str, need: int, got: int) -> str:
    """Why ``got`` initial values do not fit a series that needs ``need``."""
    if not need:
        return (
            f"series '{name}' needs no initial values (its relation reads no past values), "
            f"got {got}; leave it out of [init]"
        )
    head = f"series '{name}' needs {_plural(need, 'initial value')} (its relation reaches back "
    head += f"to t-{need}), got {got}; "
    if need == 1:
        return head + "give exactly 1 value (for step 0)"
    return head + (
        f"give {need} values (for steps 0 .. {need - 1}) or one value, which is used for every step"
    )
