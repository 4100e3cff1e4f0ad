"""Probe targets: expressions of the relation language evaluated on a dataset.

A target such as ``"X[t-1]"`` or ``"K[t-1] + 2*X[t]"`` is evaluated on the dataset's RAW
clean series and aligned with the network's input (and state) at step ``t``. Steps where any
requested expression would read before the start of its sequence are dropped (never
zero-filled); one mask is shared by all expressions, so every row has every target.

Example
-------
>>> from unitprobe.tasks import generate, get_preset
>>> ds = generate(get_preset("seed"), n_sequences=4, seed=0)
>>> tg = make_targets(ds, ["K[t]", "X[t-2]"])
>>> tg.values.shape  # 4 sequences x (20 - 2) steps
(72, 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unitprobe.errors import DataError, TaskSpecError
from unitprobe.tasks.generate import Dataset
from unitprobe.tasks.relations import Expression, Ref, parse_expression
from unitprobe.tasks.spec import TaskSpec

__all__ = ["Targets", "default_targets", "make_targets", "select_states"]


@dataclass
class Targets:
    """Target values for probing, one row per kept (sequence, step) cell.

    Attributes
    ----------
    values : DataFrame of shape (n_samples, n_targets)
        Raw-unit target values; columns are the canonical expression texts.
    mask : ndarray of bool, shape (n_sequences, length)
        The (sequence, step) cells kept, in row-major order matching ``values``.
    groups : ndarray of int64, shape (n_samples,)
        Sequence id of each row (for grouped cross-validation).
    steps : ndarray of int64, shape (n_samples,)
        Step ``t`` of each row.
    """

    values: pd.DataFrame
    mask: np.ndarray
    groups: np.ndarray
    steps: np.ndarray

    @property
    def names(self) -> list[str]:
        """The target names (canonical expression texts)."""
        return [str(c) for c in self.values.columns]

    @property
    def n_samples(self) -> int:
        """Number of rows."""
        return int(len(self.values))


def _parse_targets(exprs: Sequence[str], series: Sequence[str]) -> list[Expression]:
    if isinstance(exprs, str) or not isinstance(exprs, Sequence):
        raise TaskSpecError(f"exprs == {exprs!r}, must be a list of expression strings")
    if not exprs:
        raise TaskSpecError("no target expressions given")
    parsed = []
    for text in exprs:
        expr = parse_expression(text, series, where="target")
        if expr.has_random:
            raise TaskSpecError(
                f"target '{text}' contains a random term; targets must be deterministic"
            )
        parsed.append(expr)
    names = [str(e) for e in parsed]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TaskSpecError(f"targets {dupes} are requested more than once")
    return parsed


def make_targets(dataset: Dataset, exprs: Sequence[str]) -> Targets:
    """Evaluate target expressions on a dataset's raw series.

    Parameters
    ----------
    dataset : Dataset
    exprs : list of str
        Expressions in the relation language, e.g. ``["K[t]", "K[t-1]", "K[t-1] + 2*X[t]"]``;
        ``t`` is the input step the network's state has just processed.

    Returns
    -------
    Targets
        Rows for the steps ``t >= m`` of every sequence, where ``m`` is the largest lag over
        all expressions (and whose values are all finite).

    Raises
    ------
    TaskSpecError
        Malformed expression, a random term, a duplicate target, or lags that leave no step.
    DataError
        A target that is not finite (division by zero, overflow, ``log`` of a negative
        number) at a step where the series it reads are finite; the message names the target
        and the number of such steps.
    """
    if not isinstance(dataset, Dataset):
        raise DataError(f"dataset must be a Dataset, got {type(dataset).__name__}")
    parsed = _parse_targets(exprs, list(dataset.raw))
    n, t_len = dataset.n_sequences, dataset.length
    m = max(e.max_lag for e in parsed)
    if m >= t_len:
        raise TaskSpecError(
            f"targets reach back {m} steps but sequences have only {t_len} steps; no step is left"
        )

    def lookup(name: str, lag: int) -> np.ndarray:
        return dataset.raw[name][:, m - lag : t_len - lag]  # (N, T - m), step t at column t - m

    shape = (n, t_len - m)
    cols = {str(e): e.evaluate(lookup, None, shape) for e in parsed}
    for expr in parsed:
        _check_finite(expr, cols[str(expr)], _reads_finite(expr, lookup, shape))
    mask = np.zeros((n, t_len), dtype=bool)
    mask[:, m:] = np.logical_and.reduce([np.isfinite(v) for v in cols.values()])
    keep = mask[:, m:]
    seq, step = np.nonzero(mask)
    values = pd.DataFrame({name: v[keep] for name, v in cols.items()})
    return Targets(
        values=values,
        mask=mask,
        groups=dataset.sequence_ids[seq].astype(np.int64),
        steps=step.astype(np.int64),
    )


def _reads_finite(expr: Expression, lookup, shape: tuple[int, int]) -> np.ndarray:
    """Where every value ``expr`` reads is finite, shape ``shape``."""
    ok = np.ones(shape, dtype=bool)
    for name, lag in expr.references:
        ok &= np.isfinite(lookup(name, lag))
    return ok


def _check_finite(expr: Expression, values: np.ndarray, reads_finite: np.ndarray) -> None:
    """Refuse a target that arithmetic made non-finite where its inputs are finite."""
    bad = reads_finite & ~np.isfinite(values)
    n_bad, n_cells = int(bad.sum()), int(reads_finite.sum())
    if not n_bad:
        return
    where = "at any step" if not expr.references else f"at {n_bad} of {n_cells} steps"
    raise DataError(
        f"target '{expr}' is not finite {where} (division by zero or overflow: "
        f"{_first_value(values[bad])}); remove it or rewrite it so that it stays finite"
    )


def _first_value(values: np.ndarray) -> str:
    value = float(values.flat[0])
    return "it is NaN" if np.isnan(value) else f"it reaches {value}"


def select_states(states: np.ndarray, targets: Targets) -> np.ndarray:
    """The states at the cells the targets kept, row-aligned with ``targets.values``.

    Parameters
    ----------
    states : array of shape (n_sequences, length, n_units)
        E.g. hidden states ``h`` of one layer after each input step.
    targets : Targets

    Returns
    -------
    ndarray of shape (n_samples, n_units)
    """
    states = np.asarray(states)
    if states.ndim != 3 or states.shape[:2] != targets.mask.shape:
        raise DataError(
            f"states have shape {states.shape}, expected (n_sequences, length, n_units) with "
            f"(n_sequences, length) == {targets.mask.shape}"
        )
    return states[targets.mask]


def default_targets(spec: TaskSpec) -> list[str]:
    """The standard probe targets of a task.

    Every series at lags ``0 .. order`` (order = the largest lag at which any relation reads
    that series, at least 1), then the deterministic part of each relation's right-hand side
    when the relation has random terms (random terms dropped; series whose relation is purely
    random contribute none), without duplicates. The right-hand side of a relation without
    random terms equals its left-hand side exactly, so it would only repeat ``NAME[t]``; pass
    it explicitly to probe it under its own name.

    A linear probe cannot tell apart targets that differ only by scale and offset, so an
    affine deterministic part is identified by the ``(series, lag)`` keys of its linear terms
    with the coefficients taken up to a common factor (and the intercept dropped): one with a
    single key (``0.8*A[t-1] + 2``) is a copy of ``A[t-1]`` and is left out, and of several
    parts that are multiples of each other only the first is kept. Non-affine parts are kept
    (without duplicate texts).

    Examples
    --------
    >>> from unitprobe.tasks import get_preset
    >>> default_targets(get_preset("seed"))
    ['X[t]', 'X[t-1]', 'X[t-2]', 'K[t]', 'K[t-1]']
    >>> default_targets(get_preset("seed-innov"))[-2:]
    ['0.5*X[t-1] + 0.3*X[t-2]', '0.5*K[t-1] + 0.5*X[t]']
    """
    out: list[str] = []
    reach = {name: 1 for name in spec.series}
    for name in spec.series:
        for ref, lag in spec.relation(name).expr.references:
            reach[ref] = max(reach[ref], lag)
    for name in spec.series:
        out += [str(Ref(name, lag)) for lag in range(reach[name] + 1)]
    seen: set[tuple[tuple[str, int, float], ...]] = set()
    for name in spec.series:
        expr = spec.relation(name).expr
        rhs = expr.without_random() if expr.has_random else None
        if rhs is None:
            continue
        key = _direction(rhs)
        if key is not None and (len(key) <= 1 or key in seen):
            continue  # a scaled copy of one series at one lag, or of an earlier target
        if key is not None:
            seen.add(key)
        out.append(str(rhs))
    return list(dict.fromkeys(out))


def _direction(expr: Expression) -> tuple[tuple[str, int, float], ...] | None:
    """The linear terms of an affine ``expr`` as ``(series, lag, coefficient / first)``.

    None for an expression that is not affine. Terms with coefficient 0 are left out; the
    coefficients are divided by the first one (in sorted key order) and rounded to 12
    significant digits, so multiples of one expression share the key.
    """
    linear = expr.linear_terms()
    if linear is None:
        return None
    terms = sorted((k, v) for k, v in linear[0].items() if v != 0)
    if not terms:
        return ()
    first = terms[0][1]
    return tuple((name, lag, float(f"{v / first:.12g}")) for (name, lag), v in terms)
