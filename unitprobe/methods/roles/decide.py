"""The role rules: one unit's evidence in, its role, confidence and a line of evidence out.

The procedure is described in :mod:`unitprobe.methods.roles`; :func:`decide` applies it to one
unit and :func:`shared_with` lists the units of a layer that hold the same role.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unitprobe.config import RoleConfig
from unitprobe.methods.roles.evidence import Cell, sorted_targets
from unitprobe.schemas import NO_ROLE

__all__: list[str] = []


@dataclass(frozen=True)
class Evidence:
    """What is known of one unit."""

    probes: pd.DataFrame  # this unit's probe rows
    rf: dict[Cell, float] | None  # receptive field
    usage: float  # max rel_delta, NaN without ablation
    has_ablation: bool


def _cosine(rf: dict[Cell, float], field: dict[Cell, float]) -> float:
    cells = sorted(set(rf) | set(field))
    a = np.array([rf.get(c, 0.0) for c in cells])
    b = np.array([field.get(c, 0.0) for c in cells])
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0 or not (math.isfinite(na) and math.isfinite(nb)):
        return math.nan
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def _concentration(rf: dict[Cell, float], field: dict[Cell, float]) -> float:
    total = sum(abs(v) for v in rf.values())
    return sum(abs(v) for c, v in rf.items() if c in field) / total if total > 0 else 0.0


def _rf_match(
    rf: dict[Cell, float] | None, candidates: Sequence[str], fields: Mapping[str, dict]
) -> list[tuple[str, float]]:
    """Candidates with a field, by decreasing |cosine| (ties in natural target order)."""
    if rf is None:
        return []
    scored = [(t, _cosine(rf, fields[t])) for t in sorted_targets(candidates) if t in fields]
    scored = [(t, c) for t, c in scored if math.isfinite(c)]
    return sorted(scored, key=lambda tc: -abs(tc[1]))  # stable: ties in natural order


def _pct(x: float) -> str:
    """Signed whole percent: 0.351 -> ``+35%``, never ``-0%``; from +1000% on a factor: ``×161``."""
    if float(x) >= 10:
        return f"×{1 + float(x):,.0f}"
    return f"{int(round(100 * float(x))):+d}%"


def _f2(x: float) -> str:
    """Two decimals, without the sign of a rounded-away negative (``-0.00``)."""
    return f"{round(float(x), 2) + 0.0:.2f}"


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _ablation_note(ev: Evidence) -> str:
    if not ev.has_ablation or not math.isfinite(ev.usage):
        return ""
    return f"ablation {_pct(ev.usage)} MSE"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _strength(probes: pd.DataFrame) -> pd.Series:
    """clip(selectivity, 0, 1) * (1 - p_value), NaN as 0."""
    s = probes["selectivity"].clip(0, 1) * (1 - probes["p_value"].clip(0, 1))
    return s.fillna(0.0)


def _none(ev: Evidence, th: RoleConfig, dead: bool) -> dict:
    used = ev.usage >= th.min_usage
    confidence = 1.0 if dead or ev.probes.empty else 1.0 - float(_strength(ev.probes).max())
    if dead:
        evidence = "constant activation"
        if used:
            evidence += f", but used by the output ({_pct(ev.usage)} MSE) as a bias"
    elif used:
        evidence = f"used by the output ({_pct(ev.usage)} MSE) but holds no tested target"
    elif ev.probes.empty:
        evidence = _join("not probed", _ablation_note(ev))
    else:
        top = ev.probes.sort_values(["r2", "order"], ascending=[False, True]).iloc[0]
        evidence = _join(
            f"no target passes (best R² {_f2(top['r2'])} for {top['target']}, "
            f"{_fmt_p(top['p_value'])})",
            _ablation_note(ev),
        )
    return {
        "role": NO_ROLE,
        "r2": math.nan,
        "selectivity": math.nan,
        "p_value": math.nan,
        "partial_r2": math.nan,
        "field_cosine": math.nan,
        "sign": math.nan,
        "runner_up": "",
        "confusable_with": "",
        "decided_by": "ablation" if used else "probe",
        "confidence": float(np.clip(confidence, 0.0, 1.0)),
        "evidence": evidence,
    }


def _probe_values(probes: pd.DataFrame, target: str) -> dict:
    rows = probes[probes["target"] == target]
    if rows.empty:
        return {"r2": math.nan, "selectivity": math.nan, "p_value": math.nan,
                "partial_r2": math.nan, "coef": math.nan}  # fmt: skip
    r = rows.iloc[0]
    return {k: float(r[k]) for k in ("r2", "selectivity", "p_value", "partial_r2", "coef")}


def _sign(x: float) -> float:
    return float(np.sign(x)) if math.isfinite(x) and x != 0 else math.nan


def decide(
    ev: Evidence,
    fields: Mapping[str, dict[Cell, float]],
    groups: Mapping[str, frozenset[str]],
    th: RoleConfig,
) -> dict:
    """Role, confidence, decided_by, evidence and the per-role extras of one unit."""
    row = _decide_role(ev, fields, groups, th)
    role = row["role"]
    if role != NO_ROLE and not math.isfinite(row["field_cosine"]) and ev.rf and role in fields:
        row["field_cosine"] = _cosine(ev.rf, fields[role])
    return row


def _decide_role(
    ev: Evidence,
    fields: Mapping[str, dict[Cell, float]],
    groups: Mapping[str, frozenset[str]],
    th: RoleConfig,
) -> dict:
    p = ev.probes
    if not p.empty and bool(p["r2"].isna().all()):
        return _none(ev, th, dead=True)
    sig = p[(p["p_value"] <= th.alpha) & (p["selectivity"] >= th.min_selectivity)]
    sig = sig[sig["r2"] >= th.min_r2]
    if sig.empty:  # step 5: receptive field of a used unit, else none
        match = _rf_match(ev.rf, list(fields), fields) if ev.usage >= th.min_usage else []
        if match and abs(match[0][1]) >= th.min_field_similarity:
            return _rf_decision(ev, match, fields, "no significant probe", [])
        return _none(ev, th, dead=False)

    # step 1: best probe target
    order = ["partial_r2", "r2", "order"] if sig["partial_r2"].notna().any() else ["r2", "order"]
    best = sig.sort_values(order, ascending=[False] * (len(order) - 1) + [True]).iloc[0]
    target, partial = str(best["target"]), float(best["partial_r2"])
    significant = sorted_targets(sig["target"])
    # step 2: can the probe tell?
    group = sorted_targets(set(significant) & groups.get(target, frozenset({target})))
    low_partial = not math.isfinite(partial) or partial < th.min_partial_r2
    if len(group) < 2 and not low_partial:
        return _probe_decision(ev, target)  # step 3
    if len(group) < 2:
        group = significant
    if len(group) > 4:
        reason = f"probe cannot separate {len(group)} targets ({', '.join(group[:2])}, ...)"
    elif len(group) > 1:
        reason = f"probe cannot separate {', '.join(group)}"
    elif math.isfinite(partial):
        reason = f"probe partial R² only {_f2(partial)}"
    else:
        reason = "no partial R²"
    # step 4: receptive field among the confusable and significant targets
    candidates = sorted_targets(set(significant) | groups.get(target, frozenset()))
    match = _rf_match(ev.rf, candidates, fields)
    if match and abs(match[0][1]) >= th.min_field_similarity:
        return _rf_decision(ev, match, fields, reason, group)
    return _ambiguous_probe_decision(ev, target, group, reason, match)


def _role_row(ev: Evidence, role: str, **values) -> dict:
    v = _probe_values(ev.probes, role)
    row = {
        "role": role,
        "r2": v["r2"],
        "selectivity": v["selectivity"],
        "p_value": v["p_value"],
        "partial_r2": v["partial_r2"],
        "field_cosine": math.nan,
        "sign": _sign(v["coef"]),
        "runner_up": "",
        "confusable_with": "",
    }
    row.update(values)
    row["confidence"] = float(np.clip(row["confidence"], 0.0, 1.0))
    return row


def _probe_confidence(v: dict, margin: float) -> float:
    sel = float(np.clip(v["selectivity"], 0, 1))
    return sel * (1 - float(np.clip(v["p_value"], 0, 1))) * margin


def _probe_decision(ev: Evidence, target: str) -> dict:
    p = ev.probes
    v = _probe_values(p, target)
    others = p[(p["target"] != target) & p["partial_r2"].notna()]
    others = others.sort_values(["partial_r2", "order"], ascending=[False, True])
    best = v["partial_r2"]
    margin, runner, next_text = 1.0, "", ""
    if not others.empty:
        runner_partial = float(others["partial_r2"].iloc[0])
        runner = str(others["target"].iloc[0])
        margin = float(np.clip((best - runner_partial) / best, 0, 1)) if best > 0 else 0.0
        next_text = f" vs {_f2(runner_partial)} next"
    return _role_row(
        ev,
        target,
        decided_by="probe",
        confidence=_probe_confidence(v, margin),
        evidence=_join(
            f"partial R² {_f2(best)}{next_text}", _fmt_p(v["p_value"]), _ablation_note(ev)
        ),
        runner_up=runner,
    )


def _rf_decision(
    ev: Evidence,
    match: list[tuple[str, float]],
    fields: Mapping[str, dict[Cell, float]],
    reason: str,
    group: Sequence[str],
) -> dict:
    role, cosine = match[0]
    return _role_row(
        ev,
        role,
        decided_by="receptive_field",
        confidence=abs(cosine) * _concentration(ev.rf, fields[role]),
        evidence=_join(
            f"receptive field {_f2(cosine)} cosine with {role} ({reason})", _ablation_note(ev)
        ),
        field_cosine=cosine,
        sign=_sign(cosine),
        runner_up=match[1][0] if len(match) > 1 else "",
        confusable_with=", ".join(t for t in group if t != role),
    )


def _ambiguous_probe_decision(
    ev: Evidence,
    target: str,
    group: Sequence[str],
    reason: str,
    match: list[tuple[str, float]],
) -> dict:
    v = _probe_values(ev.probes, target)
    if match:
        rf_note = f"receptive field at most {_f2(abs(match[0][1]))} cosine ({match[0][0]})"
    elif ev.rf is None:
        rf_note = "no receptive field"
    else:
        rf_note = "no target field to compare"
    others = [t for t in group if t != target]
    row = _role_row(
        ev,
        target,
        decided_by="probe",
        confidence=_probe_confidence(v, 1.0 / max(len(group), 1)),
        evidence=_join(
            f"R² {_f2(v['r2'])} for {target}, but {reason}", rf_note, _ablation_note(ev)
        ),
        runner_up=target,
        confusable_with=", ".join(others),
    )
    row.update(role=NO_ROLE, r2=math.nan, selectivity=math.nan)
    return row


def shared_with(roles: pd.DataFrame) -> pd.Series:
    """Comma-separated other units of the same layer with the same role ('' for none)."""
    shared = pd.Series("", index=roles.index, dtype=object)
    held = roles[roles["role"] != NO_ROLE]
    for _, g in held.groupby(["layer", "role"], sort=False):
        units = g["unit"].tolist()
        for i, u in zip(g.index, units, strict=True):
            shared[i] = ",".join(str(o) for o in units if o != u)
    return shared
