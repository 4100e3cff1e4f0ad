"""Roles decided by mechanism and interchange interventions, calibrated against null networks.

The question "which unit holds which term?" is causal (``docs/architecture.md``). For every
unit this module asks two things and names a role only when both answer:

1. **Mechanism**: which inputs, how many steps back, the unit reads. Its signed receptive field
   ``r`` (the ``receptive_fields`` table: mean ``d h_u[t] / d x_f[t - lag]``) is a vector over
   (feature, lag) cells; a term ``F[t-lag]`` is the single cell ``(F, lag)``. The unit's match
   to a term is ``cos = |r_cell| / ||r||``; its match to a formula over the ``k`` best terms is
   ``cos_k = sqrt(sum of their r_cell²) / ||r||`` (``k`` up to :data:`FORMULA_TERMS`). A match
   counts only when it beats **every unit of the null networks** (untrained networks of the
   same shape with a least-squares readout, on the same data): the threshold is the largest
   null cosine, for one term and for formulas separately. No fixed constant decides.
2. **Interchange**: patching the unit's state from a run where only the term differs into the
   base run (the ``interchange`` table, model reference) must move the output more for the
   named terms than for any other term (by ``|transfer|``: a readout may use a unit with a
   negative share, compensating through another unit, and the unit still carries the term).
   Where no counterfactual could be measured for the named terms (the output ignores them:
   ``transfer`` NaN), or another term transfers as much (within :data:`TRANSFER_TIE`, as for
   a unit that is the layer's whole state), the mechanism decides alone
   (``decided_by = "receptive_field"``, half the confidence); otherwise
   ``decided_by = "interchange"``.

A role is then a single term (``kind = "term"``, e.g. ``X[t-1]``; the sign of the unit's
reading is in ``sign``), a formula over two terms (``kind = "formula"``, e.g.
``0.7·K[t] + 0.3·X[t]``, coefficients of the receptive field over those cells scaled to
absolute sum 1), or ``none``: a unit whose receptive field is zero (dead), which matches no
term or formula above the null, or whose interchange disagrees with its mechanism. Units of a
layer with the same role are all named and list each other in ``shared_with`` (redundancy).
Probes never decide: their R², selectivity and p-value for the role target are reported, and
targets the probe cannot tell apart from it (``identifiability``) are in ``confusable_with``.

Each row reports its deciding statistic (``field_cosine``), its ``margin`` over the runner-up
(the next term's cosine, or the formula's gain over one term fewer), its ``null_percentile``
(share of null statistics below it), and the interchange ``transfer`` of the role's terms.
``usage`` comes from mean and resample ablation only: zero ablation is reported in the
ablation table but never decides that a unit is used.

Example
-------
>>> roles = assign_causal_roles(fields, interchange, nulls={"field_cosine": f, "formula_cosine": g},
...                             terms=["K[t]", "K[t-1]", "X[t]", "X[t-1]"])
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import schemas
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
from unitprobe.validation import check_columns, check_int

__all__ = [
    "FORMULA_TERMS",
    "assign_causal_roles",
    "field_candidates",
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
#: Transfers within this share of each other are a tie that no order of float rounding
#: should break (a unit that is the whole state transfers every term alike).
TRANSFER_TIE = 1e-3
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


def _transfers(interchange: pd.DataFrame | None) -> dict[UnitKey, dict[str, float]]:
    if interchange is None or interchange.empty:
        return {}
    check_columns(interchange, INTERCHANGE_COLUMNS, "interchange")
    if "reference" in interchange.columns and (interchange["reference"] == "model").any():
        interchange = interchange[interchange["reference"] == "model"]  # where the model looks
    single = interchange["units"].astype(str).str.fullmatch(r"\d+")
    df = numbers(interchange[single], ("transfer",), "interchange")
    df["layer"] = int_ids(df["layer"], "interchange", "layer")
    out: dict[UnitKey, dict[str, float]] = {}
    for row in df.itertuples():
        out.setdefault((int(row.layer), int(row.units)), {})[str(row.term)] = float(row.transfer)
    return out


def _percentile(value: float, null: np.ndarray) -> float:
    if not math.isfinite(value) or null.size == 0:
        return math.nan
    return float((null < value).mean())


def _threshold(null: np.ndarray, name: str) -> float:
    if null.size == 0:
        raise DataError(f"nulls[{name!r}] is empty: the null networks gave no {name} values")
    return float(null.max())


def field_candidates(
    receptive_fields: pd.DataFrame,
    nulls: Mapping[str, ArrayLike],
    terms: Sequence[str],
    state: str = "h",
    field_method: str | None = None,
    max_terms: int = FORMULA_TERMS,
) -> dict[int, list[int]]:
    """Units whose receptive field matches a term or formula above the null, per layer.

    Exactly the units :func:`assign_causal_roles` (same arguments) may name a role, i.e.
    those whose decision reads the interchange table; every other unit is ``none`` by its
    mechanism whatever its transfers. An analysis patches these units exactly.
    """
    cells = [term_cell(t) for t in terms]
    _, single_thr, formula_thr = _null_thresholds(nulls)
    out: dict[int, list[int]] = {}
    for (layer, unit), field in sorted(
        receptive_field_vectors(receptive_fields, state, field_method).items()
    ):
        ranked, cos_k = field_matches(field, cells, max_terms)
        if ranked and _matched_terms(cos_k, single_thr, formula_thr):
            out.setdefault(layer, []).append(unit)
    return out


def _null_thresholds(nulls: Mapping[str, ArrayLike]) -> tuple[dict[str, np.ndarray], float, float]:
    """The finite null values per statistic, and the single-term and formula thresholds (the
    largest null cosine of each)."""
    null = {k: np.asarray(v, dtype=float) for k, v in nulls.items()}
    null = {k: v[np.isfinite(v)] for k, v in null.items()}
    single_thr = _threshold(null.get("field_cosine", np.array([])), "field_cosine")
    formula_thr = _threshold(null.get("formula_cosine", np.array([])), "formula_cosine")
    return null, single_thr, formula_thr


def _matched_terms(cos_k: Sequence[float], single_thr: float, formula_thr: float) -> int:
    """How many terms a unit's mechanism names: 1 when its best term beats the single-term
    null, else the fewest terms whose formula beats the formula null (from 2), else 0."""
    if cos_k[0] >= single_thr:
        return 1
    return next((j + 1 for j in range(1, len(cos_k)) if cos_k[j] >= formula_thr), 0)


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
    nulls: Mapping[str, ArrayLike],
    terms: Sequence[str],
    probes: pd.DataFrame | None = None,
    ablation: pd.DataFrame | None = None,
    identifiability: pd.DataFrame | None = None,
    state: str = "h",
    field_method: str | None = None,
    max_terms: int = FORMULA_TERMS,
) -> pd.DataFrame:
    """One role per unit, decided by mechanism and interchange against null networks.

    Parameters
    ----------
    receptive_fields : DataFrame
        The ``receptive_fields`` table of the analyzed network (one method, default
        ``gradient``; rows of ``state``).
    interchange : DataFrame, optional
        The ``interchange`` table; its single-unit rows of the model reference are read
        (``layer``, ``units``, ``term``, ``transfer``; all rows when it has no ``reference``
        column). Without it the mechanism decides alone.
    nulls : mapping
        ``"field_cosine"``: each null unit's best single-term cosine; ``"formula_cosine"``:
        each null unit's best ``max_terms``-term cosine (from :func:`field_matches` on the
        null networks' receptive fields, same terms). Optional ``"transfer"``: null interchange
        transfers, for the reported percentile.
    terms : sequence of str
        Candidate terms, ``NAME[t-lag]``.
    probes, ablation, identifiability : DataFrame, optional
        Reported beside the decision (never decide).
    state : str, default "h"
    field_method : str, optional
        Receptive-field method when the table holds several (default ``gradient``).
    max_terms : int, default 2
        Most terms in a formula (the ``formula_cosine`` null must use the same number).

    Returns
    -------
    DataFrame
        The ``roles`` table (:mod:`unitprobe.schemas`), one row per unit of the receptive
        fields, in (layer, unit) order.
    """
    check_int(max_terms, "max_terms", minimum=1)
    cells = [term_cell(t) for t in terms]
    if not cells:
        raise DataError("terms is empty: name at least one candidate term")
    null, single_thr, formula_thr = _null_thresholds(nulls)
    fields = receptive_field_vectors(receptive_fields, state, field_method)
    if not fields:
        raise DataError("receptive_fields table has no rows to decide roles from")
    transfers = _transfers(interchange)
    usage = usage_from_ablation(ablation)
    probe_table = probe_rows(probes, state) if probes is not None else None
    groups = confusable_groups(identifiability) if identifiability is not None else {}
    rows = []
    for key in sorted(fields):
        ranked, cos_k = field_matches(fields[key], cells, max_terms)
        decision = _decide(ranked, cos_k, transfers.get(key, {}), single_thr, formula_thr, null)
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


def _decide(
    ranked: list[tuple[Cell, float]],
    cos_k: list[float],
    tau: Mapping[str, float],
    single_thr: float,
    formula_thr: float,
    null: Mapping[str, np.ndarray],
) -> dict:
    """Role, kind, deciding statistics and evidence of one unit."""
    if not ranked:
        return _none("receptive_field", "dead: no input reaches it (receptive field 0)")
    (best, best_coef), runner = ranked[0], ranked[1] if len(ranked) > 1 else None
    runner_cos = abs(runner[1]) if runner is not None else 0.0
    k = _matched_terms(cos_k, single_thr, formula_thr)
    if k == 1:
        statistic, threshold, name = cos_k[0], single_thr, "field_cosine"
        margin = cos_k[0] - runner_cos
    else:
        if k == 0:
            return _none(
                "receptive_field",
                f"reads no single term or formula above the null: best {term_name(best)} "
                f"cosine {cos_k[0]:.2f} (null max {single_thr:.2f}), best {len(cos_k)}-term "
                f"formula {cos_k[-1]:.2f} (null max {formula_thr:.2f})",
                field_cosine=cos_k[0],
                runner_up=term_name(best),
                null_percentile=_percentile(cos_k[0], null.get("field_cosine", np.array([]))),
            )
        statistic, threshold, name = cos_k[k - 1], formula_thr, "formula_cosine"
        margin = cos_k[k - 1] - cos_k[k - 2]
    named = [term_name(c) for c, _ in ranked[:k]]
    others = {t: v for t, v in tau.items() if t not in named and math.isfinite(v)}
    measured = {t: tau[t] for t in named if math.isfinite(tau.get(t, math.nan))}
    role = named[0] if k == 1 else _formula_text(ranked, k)
    base = {
        "field_cosine": statistic,
        "margin": margin,
        "null_percentile": _percentile(statistic, null.get(name, np.array([]))),
        "sign": 1.0 if best_coef >= 0 else -1.0,
        "runner_up": term_name(runner[0]) if runner is not None and k == 1 else "",
        "transfer": sum(measured.values()) if measured else math.nan,
    }
    mech = (
        f"receptive field {statistic:.2f} cosine with {role} (null max {threshold:.2f})"
        if k == 1
        else f"receptive field is {role} (cosine {statistic:.2f}, null max {threshold:.2f})"
    )
    if not measured:
        return {
            **base, "role": role, "kind": "term" if k == 1 else "formula",
            "decided_by": "receptive_field", "confidence": base["null_percentile"] * 0.5,
            "evidence": f"{mech}; no counterfactual effect on the output to patch",
        }  # fmt: skip
    rival = max(others.items(), key=lambda kv: abs(kv[1]), default=(None, 0.0))
    ties = [_tie(v, rival[1]) for v in measured.values()]
    agree = all(abs(v) > 0 and (abs(v) >= abs(rival[1]) or tie)
                for v, tie in zip(measured.values(), ties, strict=True))  # fmt: skip
    patch = ", ".join(f"{v:.0%} of {t}" for t, v in measured.items())
    if agree and rival[0] is not None and any(ties):
        return {
            **base, "role": role, "kind": "term" if k == 1 else "formula",
            "decided_by": "receptive_field", "confidence": base["null_percentile"] * 0.5,
            "evidence": f"{mech}; patching it transfers {patch} and as much of {rival[0]} "
            f"({rival[1]:.0%}): the interchange cannot single out {role}",
        }  # fmt: skip
    if not agree:
        return {
            **_none("interchange", f"{mech}, but patching it transfers {patch} and {rival[1]:.0%} "
                    f"of {rival[0]}: the output does not use it for {role}"),
            **{k2: base[k2] for k2 in ("field_cosine", "null_percentile", "transfer")},
            "runner_up": role,
        }  # fmt: skip
    rival_text = f"; next {rival[1]:.0%} of {rival[0]}" if rival[0] is not None else ""
    return {
        **base, "role": role, "kind": "term" if k == 1 else "formula",
        "decided_by": "interchange", "confidence": base["null_percentile"],
        "evidence": f"patching it transfers {patch}{rival_text}; {mech}",
    }  # fmt: skip


def _tie(a: float, b: float) -> bool:
    """Whether two transfers are equal up to :data:`TRANSFER_TIE` of the larger one."""
    return abs(abs(a) - abs(b)) <= TRANSFER_TIE * max(abs(a), abs(b))


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
