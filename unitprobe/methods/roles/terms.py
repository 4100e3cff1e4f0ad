"""Where each term lives: one unit, several units, a distributed direction, or nowhere.

The ``roles`` table answers per unit; :func:`term_table` answers per term, from the same
evidence plus the learned directions (distributed alignment search):

=================  ==========================================================================
verdict            meaning
=================  ==========================================================================
``unit``           exactly one unit holds the term (its role)
``shared``         several units hold it (redundancy: each carries part of the effect)
``distributed``    no unit holds it, but a learned direction over the units does: its held-out
                   interchange transfer beats the best single unit's and every null network's
                   direction for the term
``generic``        a learned direction holds it better than any single unit, but the same
                   search on null networks does as well: the layer's state carries the term
                   linearly without training having to put it anywhere (the known illusion of
                   subspace interventions; the direction is reported, but it is no evidence of
                   learning)
``unused``         the output does not depend on the term (no counterfactual effect)
``unresolved``     the output uses the term, but neither a unit nor a direction holds it above
                   the null
=================  ==========================================================================

Units whose role is a formula containing the term are listed too (``in_formula``).

Example
-------
>>> term_table(roles, interchange, directions, direction_null={"X[t-1]": 0.41})
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from unitprobe import schemas
from unitprobe.validation import check_columns

__all__ = ["VERDICTS", "term_table"]

VERDICTS = ("unit", "shared", "distributed", "generic", "unused", "unresolved")
_EFFECT_COLUMNS = ("layer", "units", "term", "transfer", "effect")


def term_table(
    roles: pd.DataFrame,
    interchange: pd.DataFrame,
    directions: pd.DataFrame | None = None,
    *,
    direction_null: Mapping[str, float] | None = None,
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
        The ``directions`` table (``layer``, ``term``, ``transfer_test``).
    direction_null : mapping term -> float, optional
        The largest held-out transfer of the same search on null networks, per term.

    Returns
    -------
    DataFrame
        The ``terms`` table (:mod:`unitprobe.schemas`).
    """
    check_columns(interchange, _EFFECT_COLUMNS, "interchange")
    single = interchange[interchange["units"].astype(str).str.fullmatch(r"\d+")]
    if "reference" in single.columns and (single["reference"] == "model").any():
        single = single[single["reference"] == "model"]
    direction_null = direction_null or {}
    rows = []
    for (layer, term), g in single.groupby(["layer", "term"], sort=False):
        in_layer = roles[roles["layer"] == layer]
        holders = in_layer.loc[in_layer["role"] == term, "unit"].astype(int).tolist()
        formulas = (
            in_layer.loc[
                (in_layer["kind"] == "formula") & in_layer["role"].str.contains(term, regex=False),
                "unit",
            ]
            .astype(int)
            .tolist()
        )
        effect = float(pd.to_numeric(g["effect"], errors="coerce").max())
        transfer = pd.to_numeric(g["transfer"], errors="coerce")
        best = int(g["units"].iloc[int(transfer.fillna(-math.inf).to_numpy().argmax())])
        best_transfer = float(transfer.max())
        direction, unit_on_pairs, note = _direction(directions, layer, term)
        null = direction_null.get(term, math.nan)
        verdict, evidence = _verdict(
            holders, effect, best, best_transfer, direction, unit_on_pairs, null
        )
        if note and not math.isfinite(direction):
            evidence += f"; no direction learned: {note}"
        rows.append(
            {
                "layer": layer, "term": term, "verdict": verdict,
                "units": ",".join(map(str, holders)),
                "in_formula": ",".join(map(str, formulas)), "best_unit": best,
                "best_unit_transfer": best_transfer, "effect": effect,
                "direction_transfer": direction, "direction_null": null, "evidence": evidence,
            }
        )  # fmt: skip
    return schemas.frame("terms", [{c: r[c] for c in schemas.columns("terms")} for r in rows])


def _direction(directions: pd.DataFrame | None, layer: int, term: str) -> tuple[float, float, str]:
    """(held-out transfer of the direction, best single unit's on the same pairs, note)."""
    if directions is None or directions.empty:
        return math.nan, math.nan, ""
    rows = directions[(directions["layer"] == layer) & (directions["term"] == term)]
    if not len(rows):
        return math.nan, math.nan, ""
    note = rows["note"].iloc[0] if "note" in rows.columns else ""
    return (
        float(rows["transfer_test"].iloc[0]),
        float(rows["best_unit_transfer"].iloc[0]),
        note if isinstance(note, str) else "",
    )


def _verdict(
    holders: list[int], effect: float, best: int, best_transfer: float, direction: float,
    unit_on_pairs: float, null: float,
) -> tuple[str, str]:  # fmt: skip
    if holders:
        who = f"unit {holders[0]}" if len(holders) == 1 else f"units {', '.join(map(str, holders))}"
        return ("unit" if len(holders) == 1 else "shared"), f"held by {who}"
    if not (math.isfinite(effect) and effect > 0):
        return "unused", "the output does not change when only this term changes"
    best_text = f"best single unit {best} transfers {best_transfer:.0%}"
    if not math.isfinite(direction):
        return "unresolved", f"no unit holds it; {best_text}"
    unit = unit_on_pairs if math.isfinite(unit_on_pairs) else best_transfer
    found = (
        f"a learned direction transfers {direction:.0%} on held-out pairs (best unit {unit:.0%})"
    )
    if direction > unit and math.isfinite(null) and direction > null:
        return "distributed", f"{found}; null networks' directions at most {null:.0%}"
    if direction > unit and math.isfinite(null):
        return "generic", (
            f"{found}, but null networks' directions reach {null:.0%}: the state carries it "
            "without training"
        )
    return "unresolved", f"no unit holds it; {found}"
