"""Where each term lives: one unit, several units, a formula, a distributed direction, nowhere.

The ``roles`` table answers per unit; :func:`term_table` answers per term, from the same
evidence plus the learned directions (distributed alignment search) and their test against
null networks (:class:`DirectionTest`):

=================  ==========================================================================
verdict            meaning
=================  ==========================================================================
``unit``           exactly one unit holds the term (its role)
``shared``         several units hold it (redundancy: each carries part of the effect)
``distributed``    no unit holds it, but a learned direction over the units does: its held-out
                   share of the term's effect beats the best single unit's; it is specific
                   (``1 -`` the largest share of another material term's effect it carries
                   per share of its own, bounded by the whole layer's, is at least
                   ``RoleConfig.direction_specificity`` at the lower end of its 95 %
                   interval); and the same search on null networks scores as well (the
                   ``score``: the bounded share less that leak) too rarely (sequential
                   p-value at most the level)
``formula``        no unit holds it alone and no direction holds it, but it is a term of
                   units' formula roles
``generic``        a direction beats the best single unit, but it is not specific (it carries
                   another term about as much) or null networks' directions score as well: the
                   layer's state carries the term without training having to put it anywhere
                   (a scalar input change moves any LSTM's state along about one direction)
``unused``         the output's change from the term is not material
                   (:func:`unitprobe.config.material_terms`)
``unresolved``     the output uses the term, but neither a unit nor a direction holds it
=================  ==========================================================================

Example
-------
>>> term_table(roles, interchange, directions, tests={(0, "X[t-1]"): DirectionTest(0.025, 39, 0.4)})
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from unitprobe import schemas
from unitprobe.config import RoleConfig, material_terms
from unitprobe.validation import check_columns, check_float

__all__ = ["VERDICTS", "DirectionTest", "formula_holders", "term_table", "unheld_terms"]

VERDICTS = ("unit", "shared", "formula", "distributed", "generic", "unused", "unresolved")
_EFFECT_COLUMNS = ("layer", "units", "term", "transfer", "effect")


@dataclass(frozen=True)
class DirectionTest:
    """A direction's score against the same search on null networks.

    Attributes
    ----------
    p_value : float
        Sequential Monte Carlo p-value: ``1 / m`` when the ``m``-th null network drawn was the
        first to score at least as well, ``1 / (n_networks + 1)`` when none did.
    n_networks : int
        Null networks drawn for the term.
    null_max : float
        The largest score among them (NaN where none was finite).
    """

    p_value: float
    n_networks: int
    null_max: float


def _single(interchange: pd.DataFrame) -> pd.DataFrame:
    """Single-unit rows of the model reference (all references where it has none)."""
    check_columns(interchange, _EFFECT_COLUMNS, "interchange")
    single = interchange[interchange["units"].astype(str).str.fullmatch(r"\d+")]
    if "reference" in single.columns and (single["reference"] == "model").any():
        single = single[single["reference"] == "model"]
    return single


def _effects(single: pd.DataFrame, layer: int) -> dict[str, float]:
    rows = single[single["layer"] == layer]
    effect = pd.to_numeric(rows["effect"], errors="coerce")
    return {str(t): float(v) for t, v in effect.groupby(rows["term"].astype(str)).max().items()}


def formula_holders(roles: pd.DataFrame, layer: int, term: str) -> list[int]:
    """Units of ``layer`` whose formula role has ``term`` among its terms."""
    pattern = re.compile(r"(?<![A-Za-z0-9_])" + re.escape(term))
    rows = roles[(roles["layer"] == layer) & (roles["kind"] == "formula")]
    return [int(u) for u, role in zip(rows["unit"], rows["role"], strict=True)
            if pattern.search(str(role))]  # fmt: skip


def unheld_terms(
    roles: pd.DataFrame,
    interchange: pd.DataFrame,
    layer: int,
    material: float = RoleConfig.material_effect,
) -> list[str]:
    """The material terms of ``layer`` that no unit holds alone: those a direction may hold
    (a term inside formula roles too: a rotation of two units makes each a formula while each
    term lives along a direction). In the interchange table's term order."""
    single = _single(interchange)
    material_set = material_terms(_effects(single, layer), material)
    in_layer = roles[roles["layer"] == layer]
    held = set(in_layer.loc[in_layer["kind"] == "term", "role"].astype(str))
    terms = dict.fromkeys(single.loc[single["layer"] == layer, "term"].astype(str))
    return [t for t in terms if t in material_set and t not in held]


def term_table(
    roles: pd.DataFrame,
    interchange: pd.DataFrame,
    directions: pd.DataFrame | None = None,
    *,
    tests: Mapping[tuple[int, str], DirectionTest] | None = None,
    level: float = RoleConfig.direction_level,
    material: float = RoleConfig.material_effect,
    specificity: float = RoleConfig.direction_specificity,
) -> pd.DataFrame:
    """One verdict per layer x term (see the module table).

    Parameters
    ----------
    roles : DataFrame
        The ``roles`` table.
    interchange : DataFrame
        The ``interchange`` table (single-unit rows; ``effect`` is the size of the reference
        output change, NaN or 0 where the output ignores the term).
    directions : DataFrame, optional
        The ``directions`` table (``layer``, ``term``, ``transfer_test``,
        ``best_unit_transfer``, ``layer_transfer``, ``leak``, ``leak_term``, ``score``).
    tests : mapping (layer, term) -> DirectionTest, optional
        Each direction's test against null networks; a direction without one is never
        ``distributed``.
    level : float
        Largest p-value of a ``distributed`` verdict.
    material : float
        Share of the layer's largest term effect below which a term is ``unused``.
    specificity : float
        Smallest lower bound of a direction's specificity for a ``distributed`` verdict.

    Returns
    -------
    DataFrame
        The ``terms`` table (:mod:`unitprobe.schemas`).
    """
    check_float(level, "level", minimum=0, maximum=1)
    check_float(specificity, "specificity", minimum=0, maximum=1)
    single = _single(interchange)
    tests = tests or {}
    rows = []
    for (layer, term), g in single.groupby(["layer", "term"], sort=False):
        layer, term = int(layer), str(term)
        in_layer = roles[roles["layer"] == layer]
        holders = in_layer.loc[in_layer["role"] == term, "unit"].astype(int).tolist()
        formulas = formula_holders(roles, layer, term)
        effect = float(pd.to_numeric(g["effect"], errors="coerce").max())
        transfer = pd.to_numeric(g["transfer"], errors="coerce")
        best = int(g["units"].iloc[int(transfer.fillna(-math.inf).to_numpy().argmax())])
        direction = _direction(directions, layer, term)
        test = tests.get((layer, term), DirectionTest(math.nan, 0, math.nan))
        is_material = term in material_terms(_effects(single, layer), material)
        verdict, evidence = _verdict(
            holders, formulas, is_material, best, float(transfer.max()), direction, test,
            level, specificity, material,
        )  # fmt: skip
        if direction["note"] and not math.isfinite(direction["transfer_test"]):
            evidence += f"; no direction learned: {direction['note']}"
        rows.append(
            {
                "layer": layer, "term": term, "verdict": verdict,
                "units": ",".join(map(str, holders)), "in_formula": ",".join(map(str, formulas)),
                "best_unit": best, "best_unit_transfer": float(transfer.max()), "effect": effect,
                "direction_transfer": direction["transfer_test"],
                "layer_transfer": direction["layer_transfer"], "direction_leak": direction["leak"],
                "direction_score": direction["score"],
                "direction_specificity": direction["specificity_lo"],
                "direction_null": test.null_max,
                "direction_p": test.p_value,
                "n_null_directions": test.n_networks if test.n_networks else pd.NA,
                "evidence": evidence,
            }
        )  # fmt: skip
    return schemas.frame("terms", [{c: r[c] for c in schemas.columns("terms")} for r in rows])


_NO_DIRECTION = {
    "transfer_test": math.nan, "best_unit_transfer": math.nan, "layer_transfer": math.nan,
    "leak": math.nan, "leak_term": "", "score": math.nan, "specificity": math.nan,
    "specificity_lo": math.nan, "note": "",
}  # fmt: skip


def _direction(directions: pd.DataFrame | None, layer: int, term: str) -> dict:
    """The direction row of (layer, term) as plain values (NaN where none was learned)."""
    if directions is None or directions.empty:
        return dict(_NO_DIRECTION)
    rows = directions[(directions["layer"] == layer) & (directions["term"] == term)]
    if not len(rows):
        return dict(_NO_DIRECTION)
    row = rows.iloc[0]
    out = dict(_NO_DIRECTION)
    for key in out:
        if key in rows.columns:
            value = row[key]
            if key in ("leak_term", "note"):
                out[key] = value if isinstance(value, str) else ""
            else:
                out[key] = float(value) if pd.notna(value) else math.nan
    return out


def _verdict(
    holders: list[int],
    formulas: list[int],
    is_material: bool,
    best: int,
    best_transfer: float,
    d: dict,
    test: DirectionTest,
    level: float,
    specificity: float,
    material: float,
) -> tuple[str, str]:
    """The verdict and its evidence, in the module table's order of precedence."""
    if holders:
        who = f"unit {holders[0]}" if len(holders) == 1 else f"units {', '.join(map(str, holders))}"
        return ("unit" if len(holders) == 1 else "shared"), f"held by {who}"
    if not is_material:
        return "unused", (
            f"the output's change when only this term changes is below {material:.0%} of the "
            "largest term's: not material"
        )
    verdict, evidence = _direction_verdict(best, best_transfer, d, test, level, specificity)
    if formulas and verdict != "distributed":
        who = ", ".join(map(str, formulas))
        return "formula", f"held within the formula role of unit(s) {who}; {evidence}"
    return verdict, evidence


def _direction_verdict(
    best: int, best_transfer: float, d: dict, test: DirectionTest, level: float,
    specificity: float,
) -> tuple[str, str]:  # fmt: skip
    """``distributed``, ``generic`` or ``unresolved``, from the learned direction."""
    best_text = f"best single unit {best} transfers {best_transfer:.0%}"
    if not math.isfinite(d["transfer_test"]):
        return "unresolved", f"no unit holds it; {best_text}"
    unit = d["best_unit_transfer"] if math.isfinite(d["best_unit_transfer"]) else best_transfer
    found = f"a learned direction transfers {d['transfer_test']:.0%} on held-out pairs"
    if math.isfinite(d["layer_transfer"]):
        found += f" (the whole layer {d['layer_transfer']:.0%}, best unit {unit:.0%})"
    else:
        found += f" (best unit {unit:.0%})"
    if not d["transfer_test"] > unit:
        return "unresolved", f"no unit holds it; {found}: no better than one unit"
    leak = (
        f"carries {d['leak']:.0%} of {d['leak_term']}'s effect too"
        if d["leak_term"]
        else "carries no other material term's effect"
    )
    spec, low = d["specificity"], d["specificity_lo"]
    score = f"specificity {spec:.3f}"
    if not low >= specificity:
        why = (
            f"{score}, below the {specificity:.2g} a term's own direction needs"
            if not spec >= specificity
            else f"{score}, but its 95 % lower bound {low:.3f} is below {specificity:.2g}"
        )
        return "generic", f"{found}, but it {leak} ({why}): it does not single the term out"
    score += f", lower bound {low:.3f}"
    if not math.isfinite(test.p_value):
        return "generic", f"{found} and {leak} ({score}), but it was not tested against null " \
            "networks"  # fmt: skip
    null = f"p = {test.p_value:.3g} against {test.n_networks} null networks"
    if test.p_value <= level:
        return "distributed", f"{found} and {leak} ({score}); {null}, none of which scores as well"
    return "generic", (
        f"{found} and {leak} ({score}), but null networks' directions score as well "
        f"({test.null_max:.2f}; {null}): the state carries it without training"
    )
