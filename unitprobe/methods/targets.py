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

    cols = {str(e): e.evaluate(lookup, None, (n, t_len - m)) for e in parsed}
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
    when the relation has random terms (random terms dropped; series whose relation is purely random
    contribute none), without duplicates. The right-hand side of a relation without random
    terms equals its left-hand side exactly, so it would only repeat ``NAME[t]``; pass it
    explicitly to probe it under its own name.

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
    for name in spec.series:
        expr = spec.relation(name).expr
        rhs = expr.without_random() if expr.has_random else None
        if rhs is not None:
            out.append(str(rhs))
    return list(dict.fromkeys(out))
