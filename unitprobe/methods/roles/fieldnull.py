"""The receptive-field null: which terms a unit reads beyond what untrained units read.

A unit's signed receptive field ``r`` (a vector over (feature, lag) cells) matches a term
``T`` with cosine ``|r_T| / ||r||`` and a pair of terms with ``sqrt(r_T1² + r_T2²) / ||r||``:
one *test* per term and per pair (:func:`field_tests`, named by :func:`field_test_names`).
Untrained units read some terms purely by chance, the current inputs far more often than
old lags, so each test has its own null: the same cosine over the units of untrained
networks. :class:`FieldNull` calibrates every test together at one per-unit level ``α``
(``RoleConfig.unit_level``): each null unit's most extreme test (the largest share of null
values below its cosine, over all tests) summarizes it, and a test is passed where the
share of null values below the cosine exceeds the conformal ``1 - α`` quantile of those
summaries (:func:`upper_quantile`). Null networks of several widths are calibrated apart and
each test takes the largest threshold: narrow untrained layers read the current inputs more
purely, wide ones the old lags. A unit of an untrained network of any of those widths thus
passes any test with probability at most ``α``, whatever the number of terms or of units
beside it, and a lag that untrained units rarely read alone needs less purity than the
current input they often read.

Example
-------
>>> names = field_test_names(["K[t]", "K[t-1]", "X[t]"])  # 3 terms, 3 pairs
>>> null = FieldNull(field_tests(null_signed, ["K", "X"], cells), names, level=0.01)
>>> null.threshold("K[t-1]"), null.passes(0.95, "K[t-1]")
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe.errors import DataError
from unitprobe.validation import check_columns, check_float

__all__ = [
    "Cell",
    "FieldNull",
    "field_matches",
    "field_nulls",
    "field_tests",
    "pair_name",
    "term_cell",
    "term_name",
    "field_test_names",
    "upper_quantile",
]

Cell = tuple[str, int]  # (input feature, lag)
_TERM = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\[\s*t\s*(?:-\s*(\d+)\s*)?\]\s*$")


def term_cell(term: str) -> Cell:
    """The (feature, lag) cell of a term written ``NAME[t]`` or ``NAME[t-lag]``.

    Raises
    ------
    DataError
        Anything else (an expression is not a single term).
    """
    match = _TERM.match(str(term))
    if match is None:
        raise DataError(f"term {term!r} is not a series at a lag (NAME[t] or NAME[t-k])")
    return match.group(1), int(match.group(2) or 0)


def term_name(cell: Cell) -> str:
    """``NAME[t]`` or ``NAME[t-lag]``."""
    feature, lag = cell
    return f"{feature}[t]" if lag == 0 else f"{feature}[t-{lag}]"


def pair_name(a: str, b: str) -> str:
    """The name of the test of a pair of terms, ``"A + B"``, the same in either order (by
    series, then lag)."""
    first, second = sorted((a, b), key=term_cell)
    return f"{first} + {second}"


def field_test_names(terms: Sequence[str]) -> list[str]:
    """The tests of ``terms``: every term, then every pair (in the terms' order; each named
    by :func:`pair_name`)."""
    terms = [str(t) for t in terms]
    return [*terms, *(pair_name(a, b) for a, b in combinations(terms, 2))]


def field_matches(
    field: Mapping[Cell, float], cells: Sequence[Cell], max_terms: int = 3
) -> tuple[list[tuple[Cell, float]], list[float]]:
    """How well a receptive field matches single terms and formulas over the best terms.

    Parameters
    ----------
    field : mapping (feature, lag) -> signed value
    cells : sequence of (feature, lag)
        The candidate terms.
    max_terms : int, default 3

    Returns
    -------
    ranked : list of ((feature, lag), coefficient)
        Candidate cells by decreasing ``|coefficient|``, coefficient = value / ||field||.
    cos_k : list of float
        ``cos_k[k-1]`` = match to the best ``k`` terms together, ``k = 1 .. max_terms``
        (NaN for a zero field).
    """
    values = np.array([v for v in field.values() if math.isfinite(v)], dtype=float)
    norm = float(np.sqrt((values**2).sum())) if values.size else 0.0
    if norm == 0.0:
        return [], [math.nan] * max_terms
    coef = [(c, float(field.get(c, 0.0)) / norm) for c in cells]
    ranked = sorted(coef, key=lambda item: (-abs(item[1]), item[0][0], item[0][1]))
    squares = np.cumsum([v * v for _, v in ranked])
    cos_k = [float(np.sqrt(squares[min(k, len(ranked)) - 1])) for k in range(1, max_terms + 1)]
    return ranked, cos_k


def field_tests(
    signed: np.ndarray, feature_names: Sequence[str], cells: Sequence[Cell]
) -> np.ndarray:
    """Every test of every unit of a layer: its cosine with each term and each pair.

    Parameters
    ----------
    signed : ndarray of shape (n_lags, n_inputs, n_units)
        Each unit's signed receptive field (``FieldArrays.signed`` of
        :func:`~unitprobe.methods.attribution.fields.receptive_field_arrays`; lag ``0 ..
        n_lags - 1``); NaN counts as 0.
    feature_names : sequence of str, length n_inputs
    cells : non-empty sequence of (feature, lag)
        The candidate terms; a cell outside the field has coefficient 0.

    Returns
    -------
    ndarray of float64, shape (n_units, n_tests)
        Columns in the order of :func:`field_test_names` of the cells; a unit's single-term
        columns are :func:`field_matches`' ``|coefficient|`` values and a pair's is the
        ``cos_2`` of that pair (NaN rows for a zero field).
    """
    if not cells:
        raise DataError("field_tests needs at least one candidate cell")
    n_lags, n_in, n_units = signed.shape
    values = np.ascontiguousarray(np.where(np.isnan(signed), 0.0, signed).transpose(2, 1, 0))
    flat = values.reshape(n_units, n_in * n_lags)
    norm = np.sqrt((np.where(np.isfinite(flat), flat, 0.0) ** 2).sum(axis=1))  # (n_units,)
    index = {str(name): k for k, name in enumerate(feature_names)}
    picked = np.zeros((n_units, len(cells)))
    for j, (feature, lag) in enumerate(cells):
        if feature in index and 0 <= lag < n_lags:
            picked[:, j] = values[:, index[feature], lag]
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = np.where(norm[:, None] > 0, np.abs(picked) / norm[:, None], np.nan)
    pairs = [np.sqrt(coef[:, a] ** 2 + coef[:, b] ** 2)
             for a, b in combinations(range(len(cells)), 2)]  # fmt: skip
    return np.column_stack([coef, *pairs]) if pairs else coef


def upper_quantile(values: ArrayLike, level: float) -> float:
    """The threshold that a fresh null value exceeds with probability at most ``level``.

    The ``k``-th smallest of the ``n`` finite ``values`` with ``k = ceil((1 - level)(n + 1))``
    (the conformal quantile): for a value exchangeable with the null ones,
    ``P(value > threshold) <= level`` whatever their distribution. ``inf`` when ``n`` is too
    small for the level (``k > n``: nothing can beat the null at that level).

    Parameters
    ----------
    values : array-like of float
        Null values (NaN and infinities ignored).
    level : float
        In (0, 1).
    """
    check_float(level, "level", minimum=0, maximum=1, strict_minimum=True, strict_maximum=True)
    v = np.sort(np.asarray(values, dtype=float).ravel())
    v = v[np.isfinite(v)]
    k = math.ceil((1.0 - level) * (v.size + 1) - 1e-9)
    return float(v[k - 1]) if 1 <= k <= v.size else math.inf


class FieldNull:
    """The receptive-field null of one layer, every test calibrated at one per-unit level.

    Parameters
    ----------
    values : array-like of shape (n_null_units, n_tests)
        Each null unit's cosine in every test (rows of NaN, from dead null units, dropped).
    names : sequence of str, length n_tests
        The tests (:func:`field_test_names`).
    level : float
        Per-unit false-positive level ``α`` in (0, 1).
    groups : array-like of length n_null_units, optional
        A group per null unit (the width of its network): each group is calibrated on its
        own and a test's threshold is the largest over the groups, so a unit drawn like any
        one group passes some test with probability at most ``α``. Default: one group.

    Attributes
    ----------
    shares : dict of group to float
        Per group, the share of a test's null values a cosine must exceed (strictly below
        it) to pass: the conformal ``1 - α`` quantile of each of the group's null units'
        largest share over the tests.
    thresholds : dict of str to float
        Per test, the cosine to exceed (``inf`` where no null value is that high).
    """

    def __init__(
        self,
        values: ArrayLike,
        names: Sequence[str],
        level: float,
        groups: ArrayLike | None = None,
    ) -> None:
        check_float(level, "level", minimum=0, maximum=1, strict_minimum=True, strict_maximum=True)
        table = np.asarray(values, dtype=float)
        self.names = [str(n) for n in names]
        if table.ndim != 2 or table.shape[1] != len(self.names):
            raise DataError(
                f"null values have shape {table.shape}, expected (n_units, {len(self.names)})"
            )
        groups = np.zeros(len(table), dtype=int) if groups is None else np.asarray(groups)
        live = np.isfinite(table).all(axis=1)
        table, groups = table[live], groups[live]
        if table.shape[0] == 0:
            raise DataError("the null networks gave no receptive-field values (every unit dead)")
        self.level = float(level)
        self.n_units = int(table.shape[0])
        self._sorted = {n: np.sort(table[:, j]) for j, n in enumerate(self.names)}
        self.shares: dict = {}
        per_group = []
        for group in np.unique(groups):
            share, values_at = _calibrate(table[groups == group], self.level)
            self.shares[group.item()] = share
            per_group.append(values_at)
        self.thresholds = {n: max(v[j] for v in per_group) for j, n in enumerate(self.names)}

    def threshold(self, name: str) -> float:
        """The cosine a unit must exceed to pass test ``name``."""
        if name not in self.thresholds:
            raise DataError(f"the null has no test {name!r}; tests: {', '.join(self.names)}")
        return self.thresholds[name]

    def passes(self, value: float, name: str) -> bool:
        """Whether a cosine passes test ``name``."""
        return bool(math.isfinite(value) and value > self.threshold(name))

    def percentile(self, value: float, name: str) -> float:
        """Share of all null units whose cosine in test ``name`` is below ``value`` (NaN for
        NaN)."""
        if not math.isfinite(value):
            return math.nan
        self.threshold(name)  # a clear error for an unknown test
        return float(np.searchsorted(self._sorted[name], value, side="left") / self.n_units)


def _calibrate(table: np.ndarray, level: float) -> tuple[float, list[float]]:
    """One group's share and, per test, the cosine to exceed (module doc)."""
    n = table.shape[0]
    columns = [np.sort(table[:, j]) for j in range(table.shape[1])]
    below = (
        np.column_stack(
            [np.searchsorted(c, table[:, j], side="left") for j, c in enumerate(columns)]
        )
        / n
    )  # (n_units, n_tests): share of the group's null values strictly below
    share = upper_quantile(below.max(axis=1), level)
    if not math.isfinite(share):  # too few null units for the level: nothing beats them
        return share, [math.inf] * len(columns)
    # passes iff share(x) > share iff #(null < x) > share * n iff x > the value at index
    # floor(share * n) of the sorted null values
    k = math.floor(share * n + 1e-9)
    return share, [float(c[k]) if k < n else math.inf for c in columns]


def field_nulls(
    nulls: Mapping[str, ArrayLike] | pd.DataFrame, level: float
) -> dict[int | None, FieldNull]:
    """The receptive-field null of each layer.

    Parameters
    ----------
    nulls : mapping or DataFrame
        A mapping ``{test name: values}`` (one value per null unit, the same units in every
        test; one null for every layer, key None), or a ``nulls`` table: rows of statistic
        ``field_cosine`` (term: the term) and ``formula_cosine`` (term: the pair's test name)
        per null network x layer x unit; one null per layer, each network's units a group
        of its width.
    level : float
        The per-unit false-positive level.
    """
    if not isinstance(nulls, pd.DataFrame):
        names = list(nulls)
        if not names:
            raise DataError("the receptive-field null is empty: no test has values")
        return {None: FieldNull(np.column_stack([nulls[n] for n in names]), names, level)}
    check_columns(nulls, ("network", "layer", "unit", "statistic", "term", "value"), "nulls")
    rows = nulls[nulls["statistic"].isin(("field_cosine", "formula_cosine"))]
    if rows.empty:
        raise DataError("the nulls table has no field_cosine or formula_cosine rows")
    out: dict[int | None, FieldNull] = {}
    for layer, group in rows.groupby("layer", sort=True):
        values, names, widths = _unit_by_test(group)
        out[int(layer)] = FieldNull(values, names, level, widths)
    return out


def _unit_by_test(rows: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """One layer's null rows as (null unit x test values, test names, each unit's width)."""
    names = list(dict.fromkeys(rows["term"].astype(str)))
    column = pd.Categorical(rows["term"].astype(str), categories=names).codes
    network = rows["network"].to_numpy(dtype=np.int64)
    unit = rows["unit"].to_numpy(dtype=np.int64)
    keys, row = np.unique(np.c_[network, unit], axis=0, return_inverse=True)
    values = np.full((len(keys), len(names)), np.nan)
    values[row.ravel(), column] = rows["value"].to_numpy(dtype=float)
    nets, counts = np.unique(keys[:, 0], return_counts=True)
    widths = counts[np.searchsorted(nets, keys[:, 0])]  # units of each unit's network
    return values, names, widths
