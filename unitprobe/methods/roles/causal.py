"""Roles decided by mechanism and interchange interventions, calibrated against null networks.

The question "which unit holds which term?" is causal (``docs/architecture.md``). For every
unit this module asks two things and names a role only when both answer:

1. **Mechanism**: which inputs, how many steps back, the unit reads. Its signed receptive field
   ``r`` (the ``receptive_fields`` table: mean ``d h_u[t] / d x_f[t - lag]``) is a vector over
   (feature, lag) cells; a term ``F[t-lag]`` is the single cell ``(F, lag)``. The unit's match
   to a term is ``cos = |r_cell| / ||r||``; its match to a formula over the ``k`` best terms is
   ``cos_k = sqrt(sum of their r_cell²) / ||r||`` (``k`` up to :data:`FORMULA_TERMS`). A match
   counts only when it beats the **null** (units of untrained networks on the same data,
   :class:`FieldNull`) at a per-unit false-positive level stated in advance
   (``RoleConfig.unit_level``): the threshold is the conformal ``1 - level`` quantile of the
   null units' cosines (:func:`upper_quantile`), for one term and for formulas separately. It
   is a level per unit, not a maximum over units, so a unit's verdict does not depend on how
   many units share its layer; the pipeline draws the null networks at a fixed width
   (``RoleConfig.null_units``) for the same reason. No fixed constant decides.
2. **Interchange**: patching the unit's state from a run where only the term differs into the
   base run (the ``interchange`` table, model reference) gives each term's transfer with a
   95 % bootstrap interval over pairs (:class:`Patch`). Only **material** terms are compared:
   those whose output effect is at least ``RoleConfig.material_effect`` of the layer's
   largest term effect (:func:`unitprobe.config.material_terms`); a term whose effect is
   float rounding (the leak of a shut forget gate) has a transfer that is a ratio of rounding
   errors. By
   ``|transfer|`` (a readout may use a unit with a negative share):

   * a material rival whose interval lies wholly above a role term's: the output uses the
     unit for something else, the role is ``none`` (``decided_by = "interchange"``);
   * every role term's interval excludes 0 and lies above every rival's:
     ``decided_by = "interchange"``, confidence the null percentile;
   * otherwise the mechanism decides alone (``decided_by = "receptive_field"``, half the
     confidence), and the evidence says why: no material effect of the role's terms to
     patch, a transfer indistinguishable from 0, or a rival whose interval overlaps (the
     interchange cannot single the role out, as for a unit that is the layer's whole state).

A role is then a single term (``kind = "term"``, e.g. ``X[t-1]``; the sign of the unit's
reading is in ``sign``), a formula over two terms (``kind = "formula"``, e.g.
``0.7·K[t] + 0.3·X[t]``, coefficients of the receptive field over those cells scaled to
absolute sum 1), or ``none``: a unit whose receptive field is zero (dead), which matches no
term or formula above the null, or whose interchange contradicts its mechanism. Units of a
layer with the same role are all named and list each other in ``shared_with`` (redundancy).
Probes never decide: their R², selectivity and p-value for the role target are reported, and
targets the probe cannot tell apart from it (``identifiability``) are in ``confusable_with``.

Each row reports its deciding statistic (``field_cosine``), its ``margin`` over the runner-up
(the next term's cosine, or the formula's gain over one term fewer), its ``null_percentile``
(share of null units below it), and the interchange ``transfer`` of the role's terms.
``usage`` comes from mean and resample ablation only: zero ablation is reported in the
ablation table but never decides that a unit is used.

Example
-------
>>> roles = assign_causal_roles(fields, interchange, nulls={"field_cosine": f, "formula_cosine": g},
...                             terms=["K[t]", "K[t-1]", "X[t]", "X[t-1]"], level=0.01)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import schemas
from unitprobe.config import RoleConfig, material_terms
from unitprobe.errors import DataError
from unitprobe.methods.roles.decide import shared_with
from unitprobe.methods.roles.evidence import (
    Cell,
    UnitKey,
    confusable_groups,
    int_ids,
    numbers,
    probe_rows,
    receptive_field_vectors,
)
from unitprobe.methods.roles.formula import unit_formula
from unitprobe.validation import check_columns, check_float, check_int

__all__ = [
    "FORMULA_TERMS",
    "FieldNull",
    "Patch",
    "assign_causal_roles",
    "field_candidates",
    "field_nulls",
    "upper_quantile",
    "term_cell",
    "term_name",
    "field_matches",
    "field_match_cosines",
    "usage_from_ablation",
]

NONE = schemas.NO_ROLE
#: Ablation modes that decide whether the output uses a unit (zero ablation never does).
USAGE_MODES = schemas.USAGE_MODES
#: Most terms in a formula role (a unit holding a fixed mixture of two terms).
FORMULA_TERMS = 2
INTERCHANGE_COLUMNS = ("layer", "units", "term", "transfer")
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


def field_match_cosines(
    signed: np.ndarray, feature_names: Sequence[str], cells: Sequence[Cell], max_terms: int = 3
) -> np.ndarray:
    """:func:`field_matches`' ``cos_k`` for every unit of a layer at once.

    Parameters
    ----------
    signed : ndarray of shape (n_lags, n_inputs, n_units)
        Each unit's signed receptive field (``FieldArrays.signed`` of
        :func:`~unitprobe.methods.attribution.fields.receptive_field_arrays`; lag ``0 ..
        n_lags - 1``); NaN counts as 0, as in :func:`receptive_field_vectors`.
    feature_names : sequence of str, length n_inputs
    cells : non-empty sequence of (feature, lag)
        The candidate terms; a cell outside the field has coefficient 0.
    max_terms : int, default 3

    Returns
    -------
    ndarray of float64, shape (n_units, max_terms)
        Row ``u`` equals ``field_matches(field of u, cells, max_terms)[1]`` exactly (NaN for
        a zero field).
    """
    if not cells:
        raise DataError("field_match_cosines needs at least one candidate cell")
    n_lags, n_in, n_units = signed.shape
    # (unit, feature, lag), contiguous per unit: the sums run in field_matches' order
    values = np.ascontiguousarray(np.where(np.isnan(signed), 0.0, signed).transpose(2, 1, 0))
    flat = values.reshape(n_units, n_in * n_lags)
    finite = np.where(np.isfinite(flat), flat, 0.0)
    norm = np.sqrt((finite**2).sum(axis=1))  # (n_units,)
    index = {str(name): k for k, name in enumerate(feature_names)}
    picked = np.zeros((n_units, len(cells)))
    for j, (feature, lag) in enumerate(cells):
        if feature in index and 0 <= lag < n_lags:
            picked[:, j] = values[:, index[feature], lag]
    out = np.full((n_units, max_terms), math.nan)
    ok = norm != 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        coef = picked[ok] / norm[ok, None]
    squares = np.cumsum(-np.sort(-(coef * coef), axis=1), axis=1)  # largest first
    for k in range(1, max_terms + 1):
        out[ok, k - 1] = np.sqrt(squares[:, min(k, len(cells)) - 1])
    return out


def usage_from_ablation(ablation: pd.DataFrame | None) -> dict[UnitKey, tuple[float, str, float]]:
    """Per unit: (usage, mode, delta_mse) from single-unit mean/resample rows, pooled output.

    ``usage`` is the largest ``rel_delta`` over the modes of :data:`USAGE_MODES`; units with
    only zero-ablation rows get NaN (zero ablation never decides usage).
    """
    if ablation is None or ablation.empty:
        return {}
    check_columns(
        ablation, ("layer", "units", "mode", "output", "delta_mse", "rel_delta"), "ablation"
    )
    single = ablation["units"].astype(str).str.fullmatch(r"\d+")
    df = ablation[single & ablation["mode"].isin(USAGE_MODES)]
    df = df[df["output"].astype(str) == schemas.ALL_OUTPUTS]
    out: dict[UnitKey, tuple[float, str, float]] = {}
    for row in df.sort_values("rel_delta", ascending=False, kind="stable").itertuples():
        key = (int(row.layer), int(row.units))
        if key not in out and math.isfinite(row.rel_delta):
            out[key] = (float(row.rel_delta), str(row.mode), float(row.delta_mse))
    return out


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


@dataclass(frozen=True)
class FieldNull:
    """The receptive-field null of one layer: what units of untrained networks match.

    Attributes
    ----------
    single, formula : ndarray of float64
        Each null unit's best single-term cosine and best formula cosine, sorted, finite.
    level : float
        Per-unit false-positive level: a null unit beats each threshold with probability at
        most ``level`` (:func:`upper_quantile`). It is a level per unit, so it does not grow
        or shrink with the number of units in the layer.
    """

    single: np.ndarray
    formula: np.ndarray
    level: float

    @classmethod
    def from_values(cls, single: ArrayLike, formula: ArrayLike, level: float) -> FieldNull:
        """From unsorted null values (NaN, e.g. of dead null units, dropped)."""
        arrays = []
        for name, values in (("field_cosine", single), ("formula_cosine", formula)):
            v = np.sort(np.asarray(values, dtype=float).ravel())
            v = v[np.isfinite(v)]
            if v.size == 0:
                raise DataError(
                    f"nulls[{name!r}] is empty: the null networks gave no {name} values"
                )
            arrays.append(v)
        check_float(level, "level", minimum=0, maximum=1, strict_minimum=True, strict_maximum=True)
        return cls(arrays[0], arrays[1], float(level))

    @property
    def single_threshold(self) -> float:
        """Best single-term cosine that a unit must exceed to read one term."""
        return upper_quantile(self.single, self.level)

    @property
    def formula_threshold(self) -> float:
        """Best formula cosine that a unit must exceed to read a formula."""
        return upper_quantile(self.formula, self.level)

    def percentile(self, value: float, statistic: str) -> float:
        """Share of null units whose ``statistic`` (``field_cosine`` or ``formula_cosine``) is
        below ``value``; NaN for a NaN value."""
        null = self.single if statistic == "field_cosine" else self.formula
        if not math.isfinite(value):
            return math.nan
        return float(np.searchsorted(null, value, side="left") / null.size)

    def matched_terms(self, cos_k: Sequence[float]) -> int:
        """How many terms a unit's mechanism names: 1 when its best term beats the
        single-term threshold, else the fewest terms (from 2) whose formula beats the formula
        threshold, else 0."""
        if cos_k[0] > self.single_threshold:
            return 1
        formula = self.formula_threshold
        return next((j + 1 for j in range(1, len(cos_k)) if cos_k[j] > formula), 0)


def field_nulls(
    nulls: Mapping[str, ArrayLike] | pd.DataFrame, level: float
) -> dict[int | None, FieldNull]:
    """The receptive-field null of each layer.

    Parameters
    ----------
    nulls : mapping or DataFrame
        A mapping ``{"field_cosine": values, "formula_cosine": values}`` (one null for every
        layer, key None), or a ``nulls`` table (rows of those statistics; one null per
        ``layer``).
    level : float
        The per-unit false-positive level.
    """
    if isinstance(nulls, pd.DataFrame):
        check_columns(nulls, ("layer", "statistic", "value"), "nulls")
        out: dict[int | None, FieldNull] = {}
        rows = nulls[nulls["statistic"].isin(("field_cosine", "formula_cosine"))]
        for layer, group in rows.groupby("layer", sort=True):
            by = {s: g["value"].to_numpy(dtype=float) for s, g in group.groupby("statistic")}
            out[int(layer)] = FieldNull.from_values(
                by.get("field_cosine", []), by.get("formula_cosine", []), level
            )
        if not out:
            raise DataError("the nulls table has no field_cosine or formula_cosine rows")
        return out
    return {
        None: FieldNull.from_values(
            nulls.get("field_cosine", []), nulls.get("formula_cosine", []), level
        )
    }


def _layer_null(nulls: Mapping[int | None, FieldNull], layer: int) -> FieldNull:
    if layer in nulls:
        return nulls[layer]
    if None in nulls:
        return nulls[None]
    raise DataError(f"the null networks have no receptive-field values for layer {layer}")


@dataclass(frozen=True)
class Patch:
    """One unit's interchange transfer of one term: the share and its interval over pairs."""

    transfer: float
    lo: float
    hi: float

    def magnitude(self) -> tuple[float, float]:
        """The interval of ``|transfer|`` (the point itself where no interval was measured)."""
        lo, hi = (self.lo, self.hi) if math.isfinite(self.lo + self.hi) else (self.transfer,) * 2
        if lo > 0:
            return lo, hi
        if hi < 0:
            return -hi, -lo
        return 0.0, max(-lo, hi)

    def carried(self) -> bool:
        """Whether the interval excludes 0: patching the unit measurably moves the output."""
        return self.magnitude()[0] > 0

    def text(self, term: str) -> str:
        if math.isfinite(self.lo + self.hi):
            return f"{self.transfer:.0%} of {term} [{self.lo:.0%}, {self.hi:.0%}]"
        return f"{self.transfer:.0%} of {term}"


def _interchange(
    interchange: pd.DataFrame | None,
) -> tuple[dict[UnitKey, dict[str, Patch]], dict[int, dict[str, float]]]:
    """Each unit's patches (model reference) and each layer's term effects."""
    if interchange is None or interchange.empty:
        return {}, {}
    check_columns(interchange, INTERCHANGE_COLUMNS, "interchange")
    if "reference" in interchange.columns and (interchange["reference"] == "model").any():
        interchange = interchange[interchange["reference"] == "model"]  # where the model looks
    single = interchange["units"].astype(str).str.fullmatch(r"\d+")
    df = interchange[single].copy()
    for column in ("transfer_lo", "transfer_hi", "effect"):
        if column not in df.columns:
            df[column] = math.nan
    df = numbers(df, ("transfer", "transfer_lo", "transfer_hi", "effect"), "interchange")
    df["layer"] = int_ids(df["layer"], "interchange", "layer")
    patches: dict[UnitKey, dict[str, Patch]] = {}
    effects: dict[int, dict[str, float]] = {}
    for row in df.itertuples():
        key, term = (int(row.layer), int(row.units)), str(row.term)
        patches.setdefault(key, {})[term] = Patch(row.transfer, row.transfer_lo, row.transfer_hi)
        if math.isfinite(row.effect):
            layer = effects.setdefault(key[0], {})
            layer[term] = max(layer.get(term, 0.0), float(row.effect))
    return patches, effects


def field_candidates(
    receptive_fields: pd.DataFrame,
    nulls: Mapping[str, ArrayLike] | pd.DataFrame,
    terms: Sequence[str],
    state: str = "h",
    field_method: str | None = None,
    max_terms: int = FORMULA_TERMS,
    level: float = RoleConfig.unit_level,
) -> dict[int, list[int]]:
    """Units whose receptive field matches a term or formula above the null, per layer.

    Exactly the units :func:`assign_causal_roles` (same arguments) may name a role, i.e.
    those whose decision reads the interchange table; every other unit is ``none`` by its
    mechanism whatever its transfers. An analysis patches these units exactly.
    """
    cells = [term_cell(t) for t in terms]
    by_layer = field_nulls(nulls, level)
    out: dict[int, list[int]] = {}
    for (layer, unit), field in sorted(
        receptive_field_vectors(receptive_fields, state, field_method).items()
    ):
        ranked, cos_k = field_matches(field, cells, max_terms)
        if ranked and _layer_null(by_layer, layer).matched_terms(cos_k):
            out.setdefault(layer, []).append(unit)
    return out


def _formula_text(ranked: list[tuple[Cell, float]], k: int) -> str:
    top = ranked[:k]
    total = sum(abs(v) for _, v in top)
    parts = []
    for i, (cell, v) in enumerate(top):
        text = f"{abs(v) / total:.2g}·{term_name(cell)}"
        parts.append(("-" if v < 0 else "") + text if i == 0 else ("- " if v < 0 else "+ ") + text)
    return " ".join(parts)


def assign_causal_roles(
    receptive_fields: pd.DataFrame,
    interchange: pd.DataFrame | None = None,
    *,
    nulls: Mapping[str, ArrayLike] | pd.DataFrame,
    terms: Sequence[str],
    probes: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
    identifiability: pd.DataFrame | None = None,
    state: str = "h",
    field_method: str | None = None,
    max_terms: int = FORMULA_TERMS,
    level: float = RoleConfig.unit_level,
    material: float = RoleConfig.material_effect,
) -> pd.DataFrame:
    """One role per unit, decided by mechanism and interchange against null networks.

    Parameters
    ----------
    receptive_fields : DataFrame
        The ``receptive_fields`` table of the analyzed network (one method, default
        ``gradient``; rows of ``state``).
    interchange : DataFrame, optional
        The ``interchange`` table; its single-unit rows of the model reference are read
        (``layer``, ``units``, ``term``, ``transfer``, and where present ``transfer_lo``,
        ``transfer_hi`` and ``effect``; all rows when it has no ``reference`` column). Without
        it the mechanism decides alone; without intervals the transfers compare as points;
        without effects every measured term is material.
    nulls : mapping or DataFrame
        The receptive-field null (:func:`field_nulls`): ``{"field_cosine": values,
        "formula_cosine": values}`` for every layer (each null unit's best single-term and
        best ``max_terms``-term cosine, from :func:`field_matches` on the null networks'
        receptive fields, same terms), or the ``nulls`` table (per layer).
    terms : sequence of str
        Candidate terms, ``NAME[t-lag]``.
    probes, ablation, identifiability : DataFrame, optional
        Reported beside the decision (never decide).
    state : str, default "h"
    field_method : str, optional
        Receptive-field method when the table holds several (default ``gradient``).
    max_terms : int, default 2
        Most terms in a formula (the ``formula_cosine`` null must use the same number).
    level : float, default ``RoleConfig.unit_level``
        Per-unit false-positive level of the receptive-field match.
    material : float, default ``RoleConfig.material_effect``
        A term is a rival only where its output effect is at least this share of the
        layer's largest term effect (:func:`material_terms`).

    Returns
    -------
    DataFrame
        The ``roles`` table (:mod:`unitprobe.schemas`), one row per unit of the receptive
        fields, in (layer, unit) order.
    """
    check_int(max_terms, "max_terms", minimum=1)
    check_float(material, "material", minimum=0, maximum=1)
    cells = [term_cell(t) for t in terms]
    if not cells:
        raise DataError("terms is empty: name at least one candidate term")
    by_layer = field_nulls(nulls, level)
    fields = receptive_field_vectors(receptive_fields, state, field_method)
    if not fields:
        raise DataError("receptive_fields table has no rows to decide roles from")
    patches, effects = _interchange(interchange)
    usage = usage_from_ablation(ablation)
    probe_table = probe_rows(probes, state) if probes is not None else None
    groups = confusable_groups(identifiability) if identifiability is not None else {}
    rows = []
    for key in sorted(fields):
        ranked, cos_k = field_matches(fields[key], cells, max_terms)
        mine = patches.get(key, {})
        # without effect sizes (a hand-made table), every measured term counts
        material_set = material_terms(effects[key[0]], material) if key[0] in effects else set(mine)
        decision = _decide(ranked, cos_k, mine, material_set, _layer_null(by_layer, key[0]))
        decision.update(_reported(key, decision["role"], usage, probe_table, groups))
        decision["formula"] = (
            unit_formula(receptive_fields, *key, method=field_method, state=state)
            if ranked
            else "0"
        )
        rows.append({"layer": key[0], "unit": key[1], **decision})
    roles = pd.DataFrame(rows)
    roles["shared_with"] = shared_with(roles)
    roles["evidence"] = [
        ev + (f"; shared with unit(s) {s}" if s else "")
        for ev, s in zip(roles["evidence"], roles["shared_with"], strict=True)
    ]
    return schemas.SCHEMAS["roles"].coerce(roles.reindex(columns=schemas.columns("roles")))


def _level_text(null: FieldNull) -> str:
    return f"{null.level:.2g} per-unit null level"


def _decide(
    ranked: list[tuple[Cell, float]],
    cos_k: list[float],
    patches: Mapping[str, Patch],
    material: set[str],
    null: FieldNull,
) -> dict:
    """Role, kind, deciding statistics and evidence of one unit (the module's rules)."""
    if not ranked:
        return _none("receptive_field", "dead: no input reaches it (receptive field 0)")
    (best, best_coef), runner = ranked[0], ranked[1] if len(ranked) > 1 else None
    runner_cos = abs(runner[1]) if runner is not None else 0.0
    k = null.matched_terms(cos_k)
    single_thr, formula_thr = null.single_threshold, null.formula_threshold
    if k == 0:
        return _none(
            "receptive_field",
            f"reads no single term or formula above the null: best {term_name(best)} cosine "
            f"{cos_k[0]:.3f} (threshold {single_thr:.3f}), best {len(cos_k)}-term formula "
            f"{cos_k[-1]:.3f} (threshold {formula_thr:.3f}; {_level_text(null)})",
            field_cosine=cos_k[0],
            runner_up=term_name(best),
            null_percentile=null.percentile(cos_k[0], "field_cosine"),
        )
    if k == 1:
        statistic, threshold, name = cos_k[0], single_thr, "field_cosine"
        margin = cos_k[0] - runner_cos
    else:
        statistic, threshold, name = cos_k[k - 1], formula_thr, "formula_cosine"
        margin = cos_k[k - 1] - cos_k[k - 2]
    named = [term_name(c) for c, _ in ranked[:k]]
    role = named[0] if k == 1 else _formula_text(ranked, k)
    kind = "term" if k == 1 else "formula"
    measured = {t: patches[t] for t in named if t in material and t in patches
                and math.isfinite(patches[t].transfer)}  # fmt: skip
    rivals = {t: p for t, p in patches.items() if t not in named and t in material
              and math.isfinite(p.transfer)}  # fmt: skip
    percentile = null.percentile(statistic, name)
    base = {
        "role": role, "kind": kind, "field_cosine": statistic, "margin": margin,
        "null_percentile": percentile, "sign": 1.0 if best_coef >= 0 else -1.0,
        "runner_up": term_name(runner[0]) if runner is not None and k == 1 else "",
        "transfer": sum(p.transfer for p in measured.values()) if measured else math.nan,
    }  # fmt: skip
    mech = (
        f"receptive field {statistic:.3f} cosine with {role}"
        if k == 1
        else f"receptive field is {role} (cosine {statistic:.3f})"
    ) + f" (threshold {threshold:.3f}, {_level_text(null)})"
    alone = {**base, "decided_by": "receptive_field", "confidence": 0.5 * percentile}
    if not measured:
        return {**alone, "evidence": f"{mech}; the output's change from {', '.join(named)} is "
                "too small to patch (no material counterfactual effect)"}  # fmt: skip
    patch = ", ".join(p.text(t) for t, p in measured.items())
    weakest = min(measured.items(), key=lambda kv: kv[1].magnitude()[1])
    above = [(t, p) for t, p in rivals.items() if p.magnitude()[0] > weakest[1].magnitude()[1]]
    if above:
        t, p = max(above, key=lambda kv: kv[1].magnitude()[0])
        return {
            **_none("interchange", f"{mech}, but patching it transfers {patch}, clearly less "
                    f"than {p.text(t)}: the output uses it for {t}, not for {role}"),
            **{c: base[c] for c in ("field_cosine", "null_percentile", "transfer")},
            "runner_up": role,
        }  # fmt: skip
    if not all(p.carried() for p in measured.values()):
        return {**alone, "evidence": f"{mech}; patching it transfers {patch}: no measurable "
                "share of the output's change (the interval holds 0), so the mechanism decides "
                "alone"}  # fmt: skip
    strongest = max(rivals.items(), key=lambda kv: kv[1].magnitude()[1], default=None)
    if strongest is not None and strongest[1].magnitude()[1] >= weakest[1].magnitude()[0]:
        t, p = strongest
        return {**alone, "evidence": f"{mech}; patching it transfers {patch} and about as much "
                f"of {t} ({p.text(t)}; the intervals overlap): the interchange cannot single "
                f"out {role}"}  # fmt: skip
    rival_text = f"; next {strongest[1].text(strongest[0])}" if strongest is not None else ""
    return {
        **base, "decided_by": "interchange", "confidence": percentile,
        "evidence": f"patching it transfers {patch}, more than any other term{rival_text}; "
        f"{mech}",
    }  # fmt: skip


def _none(decided_by: str, evidence: str, **values: object) -> dict:
    row = {
        "role": NONE, "kind": NONE, "decided_by": decided_by, "evidence": evidence,
        "confidence": math.nan, "field_cosine": math.nan, "margin": math.nan,
        "null_percentile": math.nan, "transfer": math.nan, "sign": math.nan, "runner_up": "",
    }  # fmt: skip
    row.update(values)
    percentile = row["null_percentile"]
    row["confidence"] = (
        1.0 - percentile if isinstance(percentile, float) and math.isfinite(percentile) else 1.0
    )
    return row


def _reported(
    key: UnitKey,
    role: str,
    usage: Mapping[UnitKey, tuple[float, str, float]],
    probes: pd.DataFrame | None,
    groups: Mapping[str, frozenset[str]],
) -> dict:
    """Evidence reported beside the decision: usage, probe values of the role target."""
    value, mode, delta = usage.get(key, (math.nan, "", math.nan))
    out = {
        "usage": value, "usage_mode": mode, "delta_mse": delta, "used": bool(value > 0),
        "r2": math.nan, "selectivity": math.nan, "p_value": math.nan,
        "partial_r2": math.nan, "attribution_share": math.nan,
        "confusable_with": ", ".join(sorted(groups.get(role, frozenset()) - {role})),
    }  # fmt: skip
    if probes is not None and role != NONE:
        rows = probes[(probes["layer"] == key[0]) & (probes["unit"] == key[1])]
        rows = rows[rows["target"].astype(str) == role]
        if len(rows):
            r = rows.iloc[0]
            for column in ("r2", "selectivity", "p_value", "partial_r2"):
                if column in rows.columns:
                    out[column] = float(r[column])
    return out
