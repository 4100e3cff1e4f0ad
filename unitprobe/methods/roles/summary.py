"""Roles for people: a fixed-width text table and counts per role."""

from __future__ import annotations

import pandas as pd

from unitprobe.errors import DataError
from unitprobe.methods.roles.evidence import sorted_targets
from unitprobe.validation import check_columns, check_int

__all__ = ["role_counts", "summarize_roles", "summarize_terms"]


def summarize_roles(roles: pd.DataFrame, *, max_evidence: int | None = None) -> str:
    """Fixed-width text table of a roles table, for the terminal.

    Parameters
    ----------
    roles : DataFrame
        Output of :func:`assign_roles` (needs ``layer``, ``unit``, ``role``, ``decided_by``,
        ``confidence``, ``evidence``; a ``formula`` column, when present, is shown as
        ``h ≈ ...``, the unit's receptive field as a formula over lagged inputs).
    max_evidence : int, optional
        Evidence longer than this many characters is cut and ends in ``...``; default: the
        whole evidence (it is the reason for the role, so the terminal shows all of it).

    Returns
    -------
    str
        Header, rule and one line per unit, no trailing newline.
    """
    check_columns(roles, ("layer", "unit", "role", "decided_by", "confidence", "evidence"), "roles")
    check_int(max_evidence, "max_evidence", minimum=4, allow_none=True, error=DataError)
    with_formula = "formula" in roles.columns
    header = ("layer", "unit", "role", "decided_by", "confidence")
    header += ("h ≈ (receptive field)", "evidence") if with_formula else ("evidence",)
    lines = [header]
    for r in roles.to_dict(orient="records"):
        evidence = str(r["evidence"]) if isinstance(r["evidence"], str) else ""
        if with_formula:
            evidence = evidence.split("; h ≈ ")[0]  # the formula has its own column
        if max_evidence is not None and len(evidence) > max_evidence:
            evidence = evidence[: max_evidence - 3] + "..."
        conf = "" if pd.isna(r["confidence"]) else f"{float(r['confidence']):.2f}"
        line = (str(r["layer"]), str(r["unit"]), str(r["role"]), str(r["decided_by"]), conf)
        formula = r.get("formula")
        line += (formula if isinstance(formula, str) else "",) if with_formula else ()
        lines.append((*line, evidence))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    right = {0, 1, 4}  # numbers right-aligned

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line[:-1], widths, strict=True))
        ]
        return "  ".join([*cells, line[-1]]).rstrip()

    rule = "  ".join("-" * w for w in [*widths, len(header[-1])])
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])])


def summarize_terms(terms: pd.DataFrame) -> str:
    """One line per layer x term of a ``terms`` table: its verdict and the evidence.

    Example output::

        layer 0  X[t-1]  shared       held by units 1, 3
        layer 0  K[t]    generic      a learned direction transfers 95% ... (null 97%)
    """
    check_columns(terms, ("layer", "term", "verdict", "evidence"), "terms")
    if terms.empty:
        return ""
    width = max(len(str(t)) for t in terms["term"])
    return "\n".join(
        f"layer {r.layer}  {str(r.term).ljust(width)}  {str(r.verdict).ljust(11)}  {r.evidence}"
        for r in terms.itertuples()
    )


def role_counts(roles: pd.DataFrame, *, by_layer: bool = False) -> pd.DataFrame:
    """Number of units per role (``none`` included).

    Parameters
    ----------
    roles : DataFrame
        Output of :func:`assign_roles` (needs ``role``; ``layer`` when ``by_layer``).
    by_layer : bool, default False
        Count per layer (adds a leading ``layer`` column).

    Returns
    -------
    DataFrame
        ``role``, ``n_units`` (``layer`` first when ``by_layer``), sorted by layer, then
        ``n_units`` descending, then role (natural order: ``K[t]`` before ``K[t-1]``).
    """
    keys = ["layer", "role"] if by_layer else ["role"]
    check_columns(roles, keys, "roles")
    counts = roles.groupby(keys, sort=False).size().rename("n_units").reset_index()
    ascending = [True] * (len(keys) - 1) + [False, True]
    rank = {r: i for i, r in enumerate(sorted_targets(counts["role"].astype(str)))}
    counts = counts.sort_values(
        [*keys[:-1], "n_units", "role"],
        ascending=ascending,
        key=lambda col: col.astype(str).map(rank) if col.name == "role" else col,
    )
    return counts.astype({"n_units": "int64"}).reset_index(drop=True)
