"""Scoring the verdicts of networks with known contents: hits, error rates, a table.

:func:`score_units` and :func:`score_terms` put an analysis's ``roles`` and ``terms`` tables
beside what each network holds (:class:`~unitprobe.pipeline.groundtruth.GroundTruth`);
:func:`verdict_rates` turns many networks' scored rows into recall, precision and
false-positive rates with exact (Clopper–Pearson) intervals, and :func:`rates_markdown`
prints them. The rules of what a unit must be named are
:mod:`unitprobe.pipeline.groundtruth`'s.

Example
-------
>>> rates = verdict_rates(score_units(truth.units, roles), score_terms(truth.terms, terms))
>>> print(rates_markdown(rates))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pandas as pd
from scipy.stats import beta

from unitprobe.schemas import NO_ROLE

__all__ = [
    "HELD", "KNOWN", "LEARNED_NOTHING", "clopper_pearson", "rates_markdown", "role_terms",
    "score_terms", "score_units", "verdict_rates",
]  # fmt: skip

#: Families of networks that learned nothing: every role and held-term verdict is an error.
LEARNED_NOTHING = ("untrained", "one-epoch", "shuffled")
#: The families whose networks hold known contents.
KNOWN = ("hand-wired", "rotated", "masked")
#: Term verdicts that say a term is held (by units, a formula or a direction).
HELD = ("unit", "shared", "formula", "distributed")
_TERM = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\[t(?:-\d+)?\]")


def role_terms(role: str) -> frozenset[str]:
    """The terms a role names: ``"0.7·K[t] - 0.3·X[t-1]"`` -> ``{"K[t]", "X[t-1]"}``."""
    return frozenset(_TERM.findall(str(role)))


def score_units(expected: pd.DataFrame, roles: pd.DataFrame) -> pd.DataFrame:
    """The ``roles`` table of an analysis beside :attr:`GroundTruth.units`, with ``correct``
    (nullable bool, NA where not scored; the rules of the module docstring)."""
    cols = ["layer", "unit", "role", "kind", "decided_by", "shared_with", "evidence"]
    table = expected.merge(roles[cols], on=["layer", "unit"], how="left", validate="1:1")
    table["shared_with"] = table["shared_with"].fillna("").astype(str)
    table["correct"] = pd.array(
        [_unit_correct(r.expected_kind, r.expected, r.expected_terms, r.role, r.kind)
         for r in table.itertuples()], dtype="boolean",
    )  # fmt: skip
    return table


def _unit_correct(kind_expected: str, text: str, terms: str, role: Any, kind: Any) -> Any:
    held = frozenset(terms.split(",")) - {""}
    named = role_terms(role)
    if kind_expected == "term":
        return kind == "term" and role == text
    if kind_expected == "formula":
        return kind == "formula" and named == held
    if kind_expected == "subset":
        return role != NO_ROLE and bool(named) and named <= held
    if kind_expected in ("none", "nothing"):
        return role == NO_ROLE
    return pd.NA


def score_terms(expected: pd.DataFrame, terms: pd.DataFrame) -> pd.DataFrame:
    """The ``terms`` table of an analysis beside :attr:`GroundTruth.terms`, with ``correct``
    (nullable bool, NA where not known; ``nothing``: no verdict in :data:`HELD`)."""
    got = terms[["layer", "term", "verdict", "evidence"]].astype({"term": str})
    table = expected.merge(got, on=["layer", "term"], how="left", validate="1:1")
    table["correct"] = pd.array(
        [pd.NA if not e else (v not in HELD if e == "nothing" else v == e)
         for e, v in zip(table["expected_verdict"], table["verdict"], strict=True)],
        dtype="boolean",
    )  # fmt: skip
    return table


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a binomial rate ``k / n``; NaN for ``n = 0``."""
    if n == 0:
        return math.nan, math.nan
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def verdict_rates(units: pd.DataFrame, terms: pd.DataFrame) -> pd.DataFrame:
    """Recall, precision and false-positive rate of every verdict, with exact intervals.

    Parameters
    ----------
    units, terms : DataFrame
        :func:`score_units` and :func:`score_terms` rows of any number of networks.

    Returns
    -------
    DataFrame
        One row per rate: ``verdict``, ``statistic`` (``recall``, ``precision`` or
        ``false positives``), ``measured_on``, ``n``, ``k`` (hits or false positives),
        ``rate`` (``k / n``; NaN for ``n = 0``), ``lo``, ``hi`` (95 % Clopper–Pearson).
    """
    text = ["expected", "expected_terms", "redundant_with", "role", "shared_with"]
    u = (
        units.astype({"correct": object})
        .fillna(dict.fromkeys(text, ""))
        .astype(dict.fromkeys(text, str))
    )
    known = u[u["family"].isin(KNOWN)
              & ~u["expected_kind"].isin(["unbounded", "unknown"])]  # fmt: skip
    exp, fam = u["expected_kind"], u["family"]
    named_term, named_formula = known[known["kind"] == "term"], known[known["kind"] == "formula"]
    redundant = u[u["redundant_with"] != ""]
    nothing = u[exp == "nothing"]
    scored = terms[terms["verdict"].notna()]
    blank = scored[(scored["expected_verdict"] == "nothing") & (scored["verdict"] != "unused")]
    held = scored[scored["expected_verdict"].isin(["unit", "shared"])]
    rotated = scored[scored["expected_verdict"] == "distributed"]
    rows = [
        ("term", "recall", "planted single-term units (hand-wired, rotated)",
         u[(exp == "term") & fam.isin(["hand-wired", "rotated"])]["correct"]),
        ("term", "recall", "one-term units of masked-trained networks",
         u[(exp == "term") & (fam == "masked")]["correct"]),
        ("term", "precision", "units named a term, networks with known contents",
         _rowwise(named_term, _term_right)),
        ("formula", "recall", "2-term planted mixtures (hand-wired)",
         u[(exp == "formula") & (fam == "hand-wired")]["correct"]),
        ("formula", "recall", "45° rotated pairs (rotated)",
         u[(exp == "formula") & (fam == "rotated")]["correct"]),
        ("term or formula", "recall", "masked units reading several terms (role within them)",
         u[exp == "subset"]["correct"]),
        ("term or formula", "recall",
         "every single-term and formula unit (the five recall rows above)",
         u[exp.isin(["term", "formula", "subset"]) & fam.isin(KNOWN)]["correct"]),
        ("formula", "precision", "units named a formula, networks with known contents",
         named_formula["correct"].eq(True) & named_formula["expected_kind"].isin(
             ["formula", "subset"])),
        ("none", "recall", "dead units (hand-wired, rotated, masked)", u[exp == "none"]["correct"]),
        ("shared", "recall", "redundant units: the term, every twin in shared_with",
         _rowwise(redundant, _shared_right)),
        *[("any role", "false positives", f"units of {f} networks",
           ~nothing[nothing["family"] == f]["correct"].astype(bool)) for f in LEARNED_NOTHING],
        ("any role", "false positives", "units of networks that learned nothing (three rows up)",
         ~nothing[nothing["family"].isin(LEARNED_NOTHING)]["correct"].astype(bool)),
        ("any role", "false positives", "first-layer filler units (hand-wired, rotated)",
         ~nothing[~nothing["family"].isin(LEARNED_NOTHING)]["correct"].astype(bool)),
        ("any role", "false positives", "every learned-nothing unit (networks and filler)",
         ~nothing["correct"].astype(bool)),
        ("distributed", "false positives", "term verdicts (not unused), learned-nothing networks",
         blank["verdict"] == "distributed"),
        ("unit/shared/formula", "false positives",
         "term verdicts (not unused), learned-nothing networks",
         blank["verdict"].isin(["unit", "shared", "formula"])),
        ("distributed", "recall", "rotated terms of rotated networks", rotated["correct"]),
        ("unit/shared", "recall", "plain-held terms, one-layer hand-set readouts (hand-wired)",
         held["correct"]),
    ]  # fmt: skip
    out = []
    for verdict, statistic, on, hits in rows:
        hits = pd.Series(hits, dtype=object).dropna().astype(bool)
        n, k = int(len(hits)), int(hits.sum())
        lo, hi = clopper_pearson(k, n)
        out.append({"verdict": verdict, "statistic": statistic, "measured_on": on, "n": n,
                    "k": k, "rate": k / n if n else math.nan, "lo": lo, "hi": hi})  # fmt: skip
    return pd.DataFrame(out)


def _rowwise(table: pd.DataFrame, rule: Callable[[pd.Series], bool]) -> list[bool]:
    return [rule(row) for _, row in table.iterrows()]


def _term_right(row: pd.Series) -> bool:
    """A unit named a term is right when it holds that term alone, or reads it (masked)."""
    if row["expected_kind"] == "term":
        return row["role"] == row["expected"]
    return row["expected_kind"] == "subset" and row["role"] in row["expected_terms"].split(",")


def _shared_right(row: pd.Series) -> bool:
    twins = set(row["redundant_with"].split(","))
    return row["role"] == row["expected"] and twins <= set(row["shared_with"].split(","))


def rates_markdown(rates: pd.DataFrame, header: str | None = None) -> str:
    """A markdown table of :func:`verdict_rates`, one line per rate, under a one-line header
    saying how it was generated."""
    header = header or (
        "Generated by `python benchmarks/bench_verdicts.py` (`unitprobe.pipeline.groundtruth`);"
        " rates with 95 % Clopper–Pearson intervals."
    )
    lines = [header, "", "| verdict | measured on | n | rate | 95 % interval |",
             "|---|---|---:|---:|---|"]  # fmt: skip
    for r in rates.itertuples():
        rate = "–" if r.n == 0 else f"{r.rate:.3f} ({r.k}/{r.n})"
        interval = "–" if r.n == 0 else f"[{r.lo:.3f}, {r.hi:.3f}]"
        lines.append(f"| `{r.verdict}` {r.statistic} | {r.measured_on} | {r.n} | {rate} | "
                     f"{interval} |")  # fmt: skip
    return "\n".join(lines) + "\n"
