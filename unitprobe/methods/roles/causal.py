"""Roles decided by mechanism and interchange interventions, calibrated against null networks.

The question "which unit holds which term?" is causal (``docs/architecture.md``). For every
unit this module asks two things and names a role only when both answer:

1. **Mechanism**: which inputs, how many steps back, the unit reads. Its signed receptive field
   ``r`` (the ``receptive_fields`` table: mean ``d h_u[t] / d x_f[t - lag]``) is a vector over
   (feature, lag) cells; a term ``F[t-lag]`` is the single cell ``(F, lag)``. The unit's match
   to its best term is ``cos = |r_cell| / ||r||``, and to the formula over its two best terms
   ``sqrt(r_a² + r_b²) / ||r||`` (``FORMULA_TERMS``). A match counts only when it beats the
   **null** of that very term or pair (units of untrained networks on the same data,
   :class:`~unitprobe.methods.roles.fieldnull.FieldNull`), every term and pair calibrated
   together at a per-unit false-positive level stated in advance (``RoleConfig.unit_level``).
   It is a level per unit, not a maximum over units, so a unit's verdict does not depend on
   how many units share its layer; the pipeline draws the null networks at fixed widths
   (``RoleConfig.null_widths``, ``RoleConfig.null_units`` units at each) for the same
   reason. A term untrained units rarely read alone (an old lag) needs less purity than one
   they often read (the current input). No fixed constant decides.
2. **Interchange**: patching the unit's state from a run where only the term differs into the
   base run (the ``interchange`` table, model reference) gives each term's transfer with a
   95 % bootstrap interval over pairs (:class:`Patch`). Only **material** terms are compared:
   those whose output effect is at least ``RoleConfig.material_effect`` of the layer's
   largest term effect (:func:`unitprobe.config.material_terms`); a term whose effect is
   float rounding (the leak of a shut forget gate) has a transfer that is a ratio of rounding
   errors. By
   ``|transfer|`` (a readout may use a unit with a negative share):

   * a material rival whose interval lies wholly above every role term's: the output uses
     the unit for something else, the role is ``none`` (``decided_by = "interchange"``);
   * every role term's interval excludes 0 and lies above every rival's:
     ``decided_by = "interchange"``, confidence the null percentile;
   * otherwise the mechanism decides alone (``decided_by = "receptive_field"``, half the
     confidence), and the evidence says why: no material effect of the role's terms to
     patch, a transfer indistinguishable from 0, or a rival whose interval overlaps (the
     interchange cannot single the role out, as for a unit that is the layer's whole state).

   Where a unit reads one term above the null and its runner-up term weighs at least
   ``RoleConfig.formula_share`` of it in the field (more than shut gates' leaks add up to),
   the formula over both is the role if it beats its own null, and the interchange is read
   for the formula. Intervals are widened by :data:`ROUNDING`, so float rounding never
   decides between transfers.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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
    field_state,
    int_ids,
    numbers,
    probe_rows,
    receptive_field_vectors,
)
from unitprobe.methods.roles.fieldnull import (
    FieldNull,
    field_matches,
    field_nulls,
    pair_name,
    term_cell,
    term_name,
)
from unitprobe.methods.roles.formula import unit_formula
from unitprobe.validation import check_columns, check_float, check_int

__all__ = [
    "FORMULA_TERMS",
    "Patch",
    "assign_causal_roles",
    "field_candidates",
    "field_matches",
    "term_cell",
    "term_name",
    "usage_from_ablation",
]

NONE = schemas.NO_ROLE
#: Ablation modes that decide whether the output uses a unit (zero ablation never does).
USAGE_MODES = schemas.USAGE_MODES
#: Most terms in a formula role (a unit holding a fixed mixture of two terms).
FORMULA_TERMS = 2
INTERCHANGE_COLUMNS = ("layer", "units", "term", "transfer")
#: Transfers closer than this are equal: a transfer whose pairs all give the same ratio has a
#: zero-width interval, and the float32 rounding of the patched runs moves such a ratio by
#: about 1e-6 (a unit that is the layer's whole state transfers every term as 1 +- 1e-6).
ROUNDING = 1e-4


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


@dataclass(frozen=True)
class Patch:
    """One unit's interchange transfer of one term: the share and its interval over pairs."""

    transfer: float
    lo: float
    hi: float

    def magnitude(self) -> tuple[float, float]:
        """The interval of ``|transfer|`` (the point itself where no interval was measured),
        widened by :data:`ROUNDING`."""
        lo, hi = (self.lo, self.hi) if math.isfinite(self.lo + self.hi) else (self.transfer,) * 2
        lo, hi = lo - ROUNDING, hi + ROUNDING
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


def _layer_null(nulls: Mapping[int | None, FieldNull], layer: int) -> FieldNull:
    if layer in nulls:
        return nulls[layer]
    if None in nulls:
        return nulls[None]
    raise DataError(f"the null networks have no receptive-field values for layer {layer}")


class _Mechanism:
    """What a unit's receptive field names against the null (the module's rules).

    Attributes: ``ranked`` and ``cos_k`` (:func:`field_matches`); ``k``, the terms of the
    role (0, 1 or 2); ``tested``, the test that decided (1: the best term's, 2: the best
    pair's); ``why``, a clause for the evidence where the two differ.
    """

    def __init__(self, field: Mapping[Cell, float], cells: Sequence[Cell], null: FieldNull,
                 max_terms: int, formula_share: float) -> None:  # fmt: skip
        self.ranked, self.cos_k = field_matches(field, cells, max_terms)
        self.null = null
        self.k = self.tested = 0
        self.why = ""
        ranked = self.ranked
        if not ranked:
            return
        two = max_terms >= 2 and len(ranked) > 1
        pair = two and null.passes(self.cos_k[1], self.test(2))
        best = abs(ranked[0][1])
        ratio = abs(ranked[1][1]) / best if two and best > 0 else 0.0
        runner = term_name(ranked[1][0]) if two else ""
        # a runner-up weighing formula_share of the best term is a real part of the field;
        # a smaller one is the leak of shut gates
        if null.passes(self.cos_k[0], self.test(1)):
            self.k = self.tested = 1
            if pair and ratio >= formula_share:
                self.k = self.tested = 2
                self.why = f"; {runner} weighs {ratio:.2f} of it in the field: a formula"
        elif pair:
            self.tested = 2
            self.k = 2 if ratio >= formula_share else 1
            if self.k == 1:
                self.why = f"; the rest of its field is leakage ({runner} weighs {ratio:.2g} of it)"

    def names(self, k: int) -> list[str]:
        return [term_name(c) for c, _ in self.ranked[:k]]

    def test(self, k: int) -> str:
        """The null test of the best ``k`` terms (a term, or a pair)."""
        names = self.names(k)
        return names[0] if k == 1 else pair_name(*names)


def field_candidates(
    receptive_fields: pd.DataFrame,
    nulls: Mapping[str, ArrayLike] | pd.DataFrame,
    terms: Sequence[str],
    state: str = "h",
    field_method: str | None = None,
    max_terms: int = FORMULA_TERMS,
    level: float = RoleConfig.unit_level,
    formula_share: float = RoleConfig.formula_share,
) -> dict[int, list[int]]:
    """Units whose receptive field matches a term or formula above the null, per layer.

    Exactly the units :func:`assign_causal_roles` (same arguments) may name a role, i.e.
    those whose decision reads the interchange table; every other unit is ``none`` by its
    mechanism whatever its transfers. An analysis patches these units exactly.
    """
    check_int(max_terms, "max_terms", minimum=1, maximum=FORMULA_TERMS)
    cells = [term_cell(t) for t in terms]
    by_layer = field_nulls(nulls, level)
    out: dict[int, list[int]] = {}
    for (layer, unit), field in sorted(
        receptive_field_vectors(receptive_fields, state, field_method).items()
    ):
        if _Mechanism(field, cells, _layer_null(by_layer, layer), max_terms, formula_share).k:
            out.setdefault(layer, []).append(unit)
    return out


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
    formula_share: float = RoleConfig.formula_share,
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
        The receptive-field null (:func:`~unitprobe.methods.roles.fieldnull.field_nulls`):
        ``{test name: values}`` for every layer (each null unit's cosine with each term and
        pair of :func:`~unitprobe.methods.roles.fieldnull.field_test_names` of ``terms``), or the
        ``nulls`` table (per layer).
    terms : sequence of str
        Candidate terms, ``NAME[t-lag]``.
    probes, ablation, identifiability : DataFrame, optional
        Reported beside the decision (never decide).
    state : str, default "h"
    field_method : str, optional
        Receptive-field method when the table holds several (default ``gradient``).
    max_terms : {1, 2}, default 2
        Most terms in a formula.
    level : float, default ``RoleConfig.unit_level``
        Per-unit false-positive level of the receptive-field match.
    material : float, default ``RoleConfig.material_effect``
        A term is a rival only where its output effect is at least this share of the
        layer's largest term effect (:func:`unitprobe.config.material_terms`).
    formula_share : float, default ``RoleConfig.formula_share``
        Smallest weight of a runner-up term in the receptive field, relative to the best
        term's, that makes the role a formula over both.

    Returns
    -------
    DataFrame
        The ``roles`` table (:mod:`unitprobe.schemas`), one row per unit of the receptive
        fields, in (layer, unit) order.
    """
    check_int(max_terms, "max_terms", minimum=1, maximum=FORMULA_TERMS)
    check_float(material, "material", minimum=0, maximum=1)
    check_float(formula_share, "formula_share", minimum=0, maximum=1)
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
        layer_null = _layer_null(by_layer, key[0])
        mechanism = _Mechanism(fields[key], cells, layer_null, max_terms, formula_share)
        mine = patches.get(key, {})
        # without effect sizes (a hand-made table), every measured term counts
        material_set = material_terms(effects[key[0]], material) if key[0] in effects else set(mine)
        decision = _decide(mechanism, mine, material_set)
        decision.update(_reported(key, decision["role"], usage, probe_table, groups))
        decision["formula"] = (
            unit_formula(
                receptive_fields,
                *key,
                method=field_method,
                state=field_state(receptive_fields, state),
            )  # fmt: skip
            if mechanism.ranked
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


def _outcome(named: list[str], patches: Mapping[str, Patch], material: set[str]) -> tuple:
    """What the interchange says of a role over ``named``: ``("unmeasured",)``,
    ``("veto", rival)``, ``("silent",)``, ``("tie", rival)`` or ``("agree", next rival or
    None)``, with the measured patches of the role's terms."""
    measured = {t: patches[t] for t in named if t in material and t in patches
                and math.isfinite(patches[t].transfer)}  # fmt: skip
    rivals = {t: p for t, p in patches.items() if t not in named and t in material
              and math.isfinite(p.transfer)}  # fmt: skip
    if not measured:
        return ("unmeasured",), measured
    strongest = max(p.magnitude()[1] for p in measured.values())
    above = [t for t, p in rivals.items() if p.magnitude()[0] > strongest]
    if above:  # the output uses the unit for a rival clearly more than for any role term
        return ("veto", max(above, key=lambda t: rivals[t].magnitude()[0])), measured
    if not all(p.carried() for p in measured.values()):
        return ("silent",), measured
    rival = max(rivals, key=lambda t: rivals[t].magnitude()[1], default=None)
    least = min(p.magnitude()[0] for p in measured.values())
    if rival is not None and rivals[rival].magnitude()[1] >= least:
        return ("tie", rival), measured
    return ("agree", rival), measured


def _decide(mechanism: _Mechanism, patches: Mapping[str, Patch], material: set[str]) -> dict:
    """Role, kind, deciding statistics and evidence of one unit (the module's rules)."""
    null, ranked, cos_k = mechanism.null, mechanism.ranked, mechanism.cos_k
    if not ranked:
        return _none("receptive_field", "dead: no input reaches it (receptive field 0)")
    if mechanism.k == 0:
        best = term_name(ranked[0][0])
        pair = mechanism.test(2) if len(ranked) > 1 and len(cos_k) > 1 else ""
        formula = (
            f", best 2-term formula {cos_k[1]:.3f} (threshold {null.threshold(pair):.3f})"
            if pair
            else ""
        )
        return _none(
            "receptive_field",
            f"reads no single term or formula above the null: best {best} cosine "
            f"{cos_k[0]:.3f} (threshold {null.threshold(best):.3f}){formula}; "
            f"{_level_text(null)}",
            field_cosine=cos_k[0],
            runner_up=best,
            null_percentile=null.percentile(cos_k[0], best),
        )
    outcome, measured = _outcome(mechanism.names(mechanism.k), patches, material)
    return _verdict(mechanism, outcome, measured, patches)


def _verdict(mechanism: _Mechanism, outcome: tuple, measured: dict, patches: Mapping) -> dict:
    """The row of a unit whose mechanism names a role, given the interchange's outcome."""
    null, ranked, cos_k, k = mechanism.null, mechanism.ranked, mechanism.cos_k, mechanism.k
    test, statistic = mechanism.test(mechanism.tested), cos_k[mechanism.tested - 1]
    refined = mechanism.why
    role = (
        mechanism.names(1)[0]
        if k == 1
        else schemas.formula_text([(term_name(c), v) for c, v in ranked[:k]])
    )
    runner_cos = abs(ranked[1][1]) if len(ranked) > 1 else 0.0
    percentile = null.percentile(statistic, test)
    base = {
        "role": role, "kind": "term" if k == 1 else "formula", "field_cosine": statistic,
        "margin": cos_k[0] - runner_cos if k == 1 else cos_k[1] - cos_k[0],
        "null_percentile": percentile, "sign": 1.0 if ranked[0][1] >= 0 else -1.0,
        "runner_up": term_name(ranked[1][0]) if len(ranked) > 1 and k == 1 else "",
        "transfer": sum(p.transfer for p in measured.values()) if measured else math.nan,
    }  # fmt: skip
    pair = role if k == 2 else schemas.formula_text([(term_name(c), v) for c, v in ranked[:2]])
    mech = (
        f"receptive field {statistic:.3f} cosine with {role}"
        if mechanism.tested == 1
        else f"receptive field is {pair} (cosine {statistic:.3f})"
    ) + f" (threshold {null.threshold(test):.3f}, {_level_text(null)}){refined}"
    alone = {**base, "decided_by": "receptive_field", "confidence": 0.5 * percentile}
    kind = outcome[0]
    if kind == "unmeasured":
        names = ", ".join(mechanism.names(k))
        return {**alone, "evidence": f"{mech}; the output's change from {names} is too small "
                "to patch (no material counterfactual effect)"}  # fmt: skip
    patch = ", ".join(p.text(t) for t, p in measured.items())
    if kind == "veto":
        rival = outcome[1]
        return {
            **_none("interchange", f"{mech}, but patching it transfers {patch}, clearly less "
                    f"than {patches[rival].text(rival)}: the output uses it for {rival}, not "
                    f"for {role}"),
            **{c: base[c] for c in ("field_cosine", "null_percentile", "transfer")},
            "runner_up": role,
        }  # fmt: skip
    if kind == "silent":
        return {**alone, "evidence": f"{mech}; patching it transfers {patch}: no measurable "
                "share of the output's change (the interval holds 0), so the mechanism decides "
                "alone"}  # fmt: skip
    if kind == "tie":
        rival = outcome[1]
        return {**alone, "evidence": f"{mech}; patching it transfers {patch} and about as much "
                f"of {rival} ({patches[rival].text(rival)}; the intervals overlap): the "
                f"interchange cannot single out {role}"}  # fmt: skip
    rival = outcome[1]
    rival_text = f"; next {patches[rival].text(rival)}" if rival is not None else ""
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
