"""Checks for values that cross a public boundary, in one place.

Modelled on scikit-learn's ``check_scalar``: each check takes the value, its name, the allowed
range or vocabulary, and the exception class to raise, and returns the value in its canonical
type. Messages follow one form, ``f"{name} == {value!r}, must be {what is allowed}"``, so a user
always sees what was wrong, the value, and what is allowed. Checks never ``assert`` (asserts
vanish under ``python -O``).

Example
-------
>>> check_int(8, "n_units", minimum=1)
8
>>> check_int(True, "n_units", minimum=1)
Traceback (most recent call last):
...
unitprobe.errors.UnitprobeError: n_units == True, must be an integer >= 1
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from unitprobe.errors import DataError, UnitprobeError

__all__ = [
    "is_int",
    "check_int",
    "check_float",
    "check_choice",
    "check_choices",
    "check_columns",
]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _range_text(kind: str, minimum: Any, maximum: Any) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    error: type[Exception] = UnitprobeError,
) -> int | None:
    """Return ``value`` as ``int`` if it is an integer in ``[minimum, maximum]``.

    Parameters
    ----------
    value : Any
    name : str
        How the user knows the value (``"n_units"``, ``"--seeds"``).
    minimum, maximum : int, optional
        Inclusive bounds.
    allow_none : bool, default False
        Let ``None`` through unchanged.
    error : exception class, default UnitprobeError

    Raises
    ------
    error
        ``"n_units == 0, must be an integer >= 1"``.
    """
    if value is None and allow_none:
        return None
    ok = is_int(value)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        allowed = _range_text("an integer", minimum, maximum)
        raise error(f"{name} == {value!r}, must be {allowed}" + (" or None" if allow_none else ""))
    return int(value)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
    allow_none: bool = False,
    error: type[Exception] = UnitprobeError,
) -> float | None:
    """Return ``value`` as a finite ``float`` in ``[minimum, maximum]``.

    ``strict_minimum=True`` excludes the minimum itself (``alpha > 0``), ``strict_maximum``
    the maximum. Bools, NaN and infinities are refused.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if ok:
        x = float(value)
        ok = math.isfinite(x)
        if ok and minimum is not None:
            ok = x > minimum if strict_minimum else x >= minimum
        if ok and maximum is not None:
            ok = x < maximum if strict_maximum else x <= maximum
    if not ok:
        low = "> " if strict_minimum else ">= "
        high = "< " if strict_maximum else "<= "
        if minimum is not None and maximum is not None:
            allowed = f"a finite number {low}{minimum} and {high}{maximum}"
        elif minimum is not None:
            allowed = f"a finite number {low}{minimum}"
        elif maximum is not None:
            allowed = f"a finite number {high}{maximum}"
        else:
            allowed = "a finite number"
        raise error(f"{name} == {value!r}, must be {allowed}")
    return float(value)


def check_choice(
    value: Any, name: str, allowed: Sequence[str], *, error: type[Exception] = UnitprobeError
) -> str:
    """Return ``value`` if it is one of ``allowed``; the message lists the allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise error(f"{name} == {value!r}, must be one of {', '.join(allowed)}")
    return value


def check_choices(
    values: Iterable[Any],
    name: str,
    allowed: Sequence[str],
    *,
    allow_empty: bool = False,
    error: type[Exception] = UnitprobeError,
) -> tuple[str, ...]:
    """Return ``values`` as a tuple if each is one of ``allowed`` (a string counts as one value)."""
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values and not allow_empty:
        raise error(f"{name} is empty, must name at least one of {', '.join(allowed)}")
    for value in values:
        check_choice(value, name, allowed, error=error)
    return values


def check_columns(table: Any, columns: Iterable[str], name: str) -> None:
    """Raise :class:`DataError` unless ``table`` is a DataFrame with every one of ``columns``.

    The message names the table and the missing columns: ``"probes table is missing columns
    r2, p_value"``.
    """
    have = getattr(table, "columns", None)
    if have is None:
        raise DataError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [c for c in columns if c not in have]
    if missing:
        raise DataError(f"{name} table is missing columns {', '.join(missing)}")
