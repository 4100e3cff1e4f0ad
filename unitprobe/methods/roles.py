"""Combine probe, receptive-field and ablation evidence into one role per unit.

A unit's *role* is the probe target it holds (``K[t-1]``, ``X[t]``, ...) or ``none``.
:func:`assign_roles` reads the result tables of ``DESIGN.md`` (``probes.csv``, ``ablation.csv``,
``attribution.csv``, ``identifiability.csv``) plus a ``target_fields`` table defined here, and
returns ``roles.csv``: one row per unit, saying which evidence decided (``decided_by``) and why
(``evidence``, one short line).

Decision procedure
------------------
Per layer and unit (probe rows of state ``state``; the population row ``unit == "all"`` is
ignored). A unit whose probe ``r2`` is NaN for every target is *dead* (constant activation).

1. **Significant targets**: ``p_value <= alpha``, ``selectivity >= min_selectivity`` and
   ``r2 >= min_r2`` (a NaN in any of them fails). The *best* probe target is the significant
   target with the largest ``partial_r2`` (largest ``r2`` where no partial R² is finite; ties
   in natural target order: K[t] before K[t-1] before X[t]).
2. **Can the probe tell?** The probe decision is *ambiguous* when the best target is
   confusable with another significant target (a row of ``identifiability`` with
   ``separable == False`` links them, directly or through other targets), or its
   ``partial_r2`` is missing, or below ``min_partial_r2`` (a target with high R² but no R² of
   its own once the others are regressed out is collinear with them, even where no
   identifiability table was given).
3. **Probe decision** (not ambiguous): role = best target, ``decided_by = "probe"``.
4. **Receptive-field decision** (ambiguous, and the unit has a receptive field): the unit's
   signed receptive field (``kind == "unit_input_lag"`` rows of ``attribution``: mean
   ``d h_u[t] / d x_f[t - lag]`` over (feature, lag)) is compared with each candidate
   target's field (``target_fields``) by the cosine of the two vectors (cells missing from one
   side count as 0). Candidates: the best target's confusable group plus all significant
   targets, those with a field. The largest ``|cosine|`` wins if it is
   ``>= min_field_similarity``: ``decided_by = "receptive_field"`` (a unit may hold
   ``-K[t]``, hence the absolute value; the sign is in column ``sign``). The receptive field
   reads the network's mechanism (which input, how many steps back), so it separates targets
   that the data makes collinear.
   Where no receptive field matches, the role is ``none`` (``decided_by = "probe"``): a probe
   alone must not claim one of several targets it cannot tell apart. The best probe target
   is kept in ``runner_up`` and the evidence names the group; the confidence is divided by the
   size of the confusable group.
5. **No significant target**: if the unit is *used* (ablation ``usage >= min_usage``) and its
   receptive field matches some target of ``target_fields`` with ``|cosine| >=
   min_field_similarity``, that target is the role (``decided_by = "receptive_field"``).
   Otherwise the role is ``none``: ``decided_by = "ablation"`` when the unit is used ("used by
   the output (+x% MSE) but holds no tested target"), ``"probe"`` when it is not.
6. Dead units get role ``none`` ("constant activation"); ``decided_by = "ablation"`` if
   ablating them still changes the output (a constant acts as a bias), else ``"probe"``.
7. Units with the same role in the same layer are all reported; ``shared_with`` lists the
   others (redundancy is an answer too).

Usage
-----
From single-unit ablation rows (``units`` one integer) with ``target == "all"``: ``usage`` =
the largest ``rel_delta`` over ablation modes, ``usage_mode`` = that mode, and ``delta_mse``
= that row's ``delta_mse``. A unit without an ``"all"`` row takes the largest ``rel_delta``
over its per-output rows (used by any output counts as used). ``used = usage >= min_usage``.

Confidence (always in [0, 1])
-----------------------------
- probe: ``clip(selectivity, 0, 1) * (1 - p_value) * margin``, ``margin = clip((best partial
  R² - runner-up partial R²) / best partial R², 0, 1)`` with the runner-up over all other
  targets probed on the unit (1 without one); ``margin = 1 / n`` for an ambiguous probe
  decision among ``n`` confusable targets.
- receptive_field: ``|cosine| * concentration``, ``concentration`` = share of the receptive
  field's absolute mass (sum of ``|attribution_signed|``) in the (feature, lag) cells that the
  role's field uses.
- ``none``: ``1 - max over targets of clip(selectivity, 0, 1) * (1 - p_value)`` (how little any
  target is held; 1 for dead units).

The ``target_fields`` table
---------------------------
Columns ``target``, ``feature``, ``lag``, ``weight``: each probe target written as a linear
combination of the network's **inputs**, ``target = sum(weight * x_feature[t - lag])``, with
``weight`` in normalized input units (the unit a receptive field is measured in). ``K[t-1]``
is one row ``(K, 1, 1.0)``; ``K[t-1] + 2*X[t]`` is two rows, ``(K, 1, s_K)`` and
``(X, 0, 2 * s_X)`` when inputs are normalized by their standard deviations ``s`` (a factor
common to all rows does not change a cosine). Constants are dropped. Targets that are not
linear in the inputs have no rows. Repeated (target, feature, lag) rows are summed.
:func:`target_fields_from_terms` builds it from coefficients in raw units.

Example
-------
>>> roles = assign_roles(probes, ablation, attribution, identifiability, fields)
>>> print(summarize_roles(roles))
>>> role_counts(roles)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from unitprobe import schemas
from unitprobe.errors import DataError

__all__ = [
    "ROLE_COLUMNS",
    "assign_roles",
    "role_counts",
    "summarize_roles",
    "target_fields_from_terms",
]

#: The ``roles.csv`` columns of ``DESIGN.md``, in order; extra columns follow them.
ROLE_COLUMNS = schemas.ROLES
#: Extra columns of :func:`assign_roles`, after :data:`ROLE_COLUMNS`.
EXTRA_COLUMNS = (
    "used",
    "usage",
    "usage_mode",
    "attribution_share",
    "p_value",
    "partial_r2",
    "field_cosine",
    "sign",
    "runner_up",
    "confusable_with",
    "shared_with",
    "formula",
)

PROBE_COLUMNS = ("layer", "unit", "state", "target", "r2", "selectivity", "p_value")
ABLATION_COLUMNS = ("layer", "units", "mode", "target", "delta_mse", "rel_delta")
ATTRIBUTION_COLUMNS = schemas.ATTRIBUTION
IDENTIFIABILITY_COLUMNS = ("target_a", "target_b", "separable")
FIELD_COLUMNS = schemas.FIELDS

NONE = "none"
Cell = tuple[str, int]  # (input feature, lag)


@dataclass(frozen=True)
class _Thresholds:
    alpha: float
    min_selectivity: float
    min_r2: float
    min_partial_r2: float
    min_field_similarity: float
    min_usage: float


# ---------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------
def assign_roles(
    probes: pd.DataFrame,
    ablation: pd.DataFrame | None = None,
    attribution: pd.DataFrame | None = None,
    identifiability: pd.DataFrame | None = None,
    target_fields: pd.DataFrame | None = None,
    *,
    state: str = "h",
    alpha: float = 0.05,
    min_selectivity: float = 0.1,
    min_r2: float = 0.5,
    min_partial_r2: float = 0.05,
    min_field_similarity: float = 0.8,
    min_usage: float = 0.05,
    field_method: str | None = None,
    share_method: str | None = None,
) -> pd.DataFrame:
    """Assign each unit the target it holds, or ``none``, from the evidence tables.

    The decision procedure and the confidence formulas are in the module docstring.

    Parameters
    ----------
    probes : DataFrame
        ``probes.csv``; needs ``layer``, ``unit``, ``state``, ``target``, ``r2``,
        ``selectivity``, ``p_value``; uses ``partial_r2`` and ``coef`` when present.
    ablation : DataFrame, optional
        ``ablation.csv``; needs ``layer``, ``units``, ``mode``, ``target``, ``delta_mse``,
        ``rel_delta``. Only single-unit rows are read.
    attribution : DataFrame, optional
        ``attribution.csv``; rows of kind ``unit_input_lag`` (receptive fields) and ``unit``
        (for ``attribution_share``) are read.
    identifiability : DataFrame, optional
        ``identifiability.csv``; needs ``target_a``, ``target_b``, ``separable``. ``VIF`` rows
        are ignored.
    target_fields : DataFrame, optional
        ``target``, ``feature``, ``lag``, ``weight`` (see the module docstring).
    state : str, default "h"
        Probe state to read (``h`` or ``c``).
    alpha : float, default 0.05
        Largest permutation p-value of a significant target, in (0, 1].
    min_selectivity : float, default 0.1
        Smallest ``r2 - r2_control`` of a significant target.
    min_r2 : float, default 0.5
        Smallest held-out R² of a significant target.
    min_partial_r2 : float, default 0.05
        A best target with a smaller partial R² is taken as collinear with the others.
    min_field_similarity : float, default 0.8
        Smallest ``|cosine|`` between receptive field and target field that decides a role.
    min_usage : float, default 0.05
        Smallest relative MSE increase under ablation (0.05 = +5%) that makes a unit *used*.
    field_method : str, optional
        Method of the receptive fields to read (``kind == "unit_input_lag"``). Default: the
        only one present, else ``"gradient"`` (the mean Jacobian); several others need a choice.
    share_method : str, optional
        Method of the unit attributions (``kind == "unit"``) behind ``attribution_share``.
        Default: the only one present, else the first by name.

    Returns
    -------
    DataFrame
        One row per unit (sorted by ``layer``, ``unit``) with :data:`ROLE_COLUMNS`
        (``r2``, ``selectivity`` are the role's probe values, NaN for ``none``; ``delta_mse``
        from the ablation mode of largest ``rel_delta``), then ``used`` (bool), ``usage``
        (relative MSE increase), ``usage_mode``, ``attribution_share`` (unit's share of its
        layer's output attribution), ``p_value``, ``partial_r2``, ``field_cosine`` (signed
        cosine of receptive field and role field), ``sign`` (+1/-1: holds the role or its
        negative), ``runner_up``, ``confusable_with`` and ``shared_with`` (comma-separated).

    Raises
    ------
    DataError
        A table lacks columns, holds malformed unit ids, or a threshold is out of range.

    Examples
    --------
    >>> roles = assign_roles(probes, ablation, attribution, identifiability, fields)
    >>> roles.loc[roles["decided_by"] == "receptive_field", ["unit", "role", "evidence"]]
    """
    th = _check_thresholds(
        alpha, min_selectivity, min_r2, min_partial_r2, min_field_similarity, min_usage
    )
    probe_rows = _probe_rows(probes, state)
    usage = _usage(ablation) if ablation is not None else pd.DataFrame()
    fields_rf, share = _attribution_parts(attribution, field_method, share_method, state)
    groups = _confusable_groups(identifiability) if identifiability is not None else {}
    fields = _field_vectors(target_fields) if target_fields is not None else {}

    keys = set(map(tuple, probe_rows[["layer", "unit"]].to_numpy().tolist()))
    keys |= set(usage.index) | set(fields_rf) | set(share)
    rows = []
    by_unit = dict(tuple(probe_rows.groupby(["layer", "unit"], sort=True)))
    for key in sorted(keys):
        u = usage.loc[key] if key in usage.index else None
        unit_probes = by_unit.get(key, probe_rows.iloc[:0])
        evidence = _Evidence(
            probes=unit_probes,
            rf=fields_rf.get(key),
            usage=float(u["usage"]) if u is not None else math.nan,
            has_ablation=u is not None,
        )
        row = {"layer": key[0], "unit": key[1], **_decide(evidence, fields, groups, th)}
        row["delta_mse"] = float(u["delta_mse"]) if u is not None else math.nan
        row["usage"] = evidence.usage
        row["usage_mode"] = u["usage_mode"] if u is not None else ""
        row["used"] = bool(evidence.usage >= th.min_usage)
        row["attribution_share"] = share.get(key, math.nan)
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*ROLE_COLUMNS, *EXTRA_COLUMNS])
    out["shared_with"] = _shared_with(out)
    out["formula"] = [_formula(attribution, layer, unit, fields_rf) for layer, unit in keys_of(out)]
    explain = (out["role"] == NONE) & out["used"] & (out["formula"] != "")
    out.loc[explain, "evidence"] += "; h ≈ " + out.loc[explain, "formula"]
    out = out.astype({"layer": "int64", "unit": "int64", "used": "bool"})
    return out.reset_index(drop=True)


def target_fields_from_terms(
    terms: Mapping[str, Mapping[tuple[str, int], float] | None],
    input_scales: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Build a ``target_fields`` table from each target's linear coefficients.

    Parameters
    ----------
    terms : mapping of target -> {(series, lag): coefficient} or None
        Coefficients in raw units, e.g. from ``parse_expression(t).linear_terms()[0]``;
        None for a target that is not linear.
    input_scales : mapping of input feature -> scale, optional
        Standard deviation of each input (``z = (x - shift) / scale``). A target that reads a
        series not in it is not linear in the inputs and gets no rows. Default: every series
        is an input with scale 1.

    Returns
    -------
    DataFrame
        ``target``, ``feature``, ``lag``, ``weight`` with ``weight = coefficient * scale``
        (normalized input units); zero weights dropped.

    Examples
    --------
    >>> target_fields_from_terms({"K[t-1] + 2*X[t]": {("K", 1): 1.0, ("X", 0): 2.0}})
    """
    rows = []
    for target, coefficients in terms.items():
        if coefficients is None:
            continue
        if input_scales is not None and any(f not in input_scales for f, _ in coefficients):
            continue
        for (feature, lag), coefficient in coefficients.items():
            if int(lag) != lag or lag < 0:
                raise DataError(f"target {target!r} has lag == {lag!r}, must be an integer >= 0")
            scale = 1.0 if input_scales is None else float(input_scales[feature])
            weight = float(coefficient) * scale
            if weight != 0.0:
                rows.append((str(target), str(feature), int(lag), weight))
    table = pd.DataFrame(rows, columns=list(FIELD_COLUMNS))
    return table.astype({"lag": "int64", "weight": "float64"})


def summarize_roles(roles: pd.DataFrame, *, max_evidence: int = 100) -> str:
    """Fixed-width text table of a roles table, for the terminal.

    Parameters
    ----------
    roles : DataFrame
        Output of :func:`assign_roles` (needs ``layer``, ``unit``, ``role``, ``decided_by``,
        ``confidence``, ``evidence``; a ``formula`` column, when present, is shown as
        ``h ≈ ...``, the unit's receptive field as a formula over lagged inputs).
    max_evidence : int, default 100
        Evidence longer than this many characters is cut and ends in ``...``.

    Returns
    -------
    str
        Header, rule and one line per unit, no trailing newline.
    """
    _require(roles, ("layer", "unit", "role", "decided_by", "confidence", "evidence"), "roles")
    if max_evidence < 4:
        raise DataError(f"max_evidence == {max_evidence}, must be >= 4")
    with_formula = "formula" in roles.columns
    header = ("layer", "unit", "role", "decided_by", "confidence")
    header += ("h ≈ (receptive field)", "evidence") if with_formula else ("evidence",)
    lines = [header]
    for r in roles.to_dict(orient="records"):
        evidence = str(r["evidence"]) if isinstance(r["evidence"], str) else ""
        if with_formula:
            evidence = evidence.split("; h ≈ ")[0]  # the formula has its own column
        if len(evidence) > max_evidence:
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
    _require(roles, tuple(keys), "roles")
    counts = roles.groupby(keys, sort=False).size().rename("n_units").reset_index()
    ascending = [True] * (len(keys) - 1) + [False, True]
    rank = {r: i for i, r in enumerate(_sorted_targets(counts["role"].astype(str)))}
    counts = counts.sort_values(
        [*keys[:-1], "n_units", "role"],
        ascending=ascending,
        key=lambda col: col.astype(str).map(rank) if col.name == "role" else col,
    )
    return counts.astype({"n_units": "int64"}).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# input tables
# ---------------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{name} table must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{name} table is missing columns: {', '.join(missing)}")


def _check_thresholds(alpha, min_selectivity, min_r2, min_partial_r2, sim, min_usage):
    values = {
        "alpha": alpha,
        "min_selectivity": min_selectivity,
        "min_r2": min_r2,
        "min_partial_r2": min_partial_r2,
        "min_field_similarity": sim,
        "min_usage": min_usage,
    }
    for name, value in values.items():
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise DataError(f"{name} == {value!r}, must be a finite number")
    if not 0 < alpha <= 1:
        raise DataError(f"alpha == {alpha}, must be in (0, 1]")
    if not 0 <= sim <= 1:
        raise DataError(f"min_field_similarity == {sim}, must be in [0, 1]")
    if not 0 <= min_partial_r2 <= 1:
        raise DataError(f"min_partial_r2 == {min_partial_r2}, must be in [0, 1]")
    if min_r2 > 1:
        raise DataError(f"min_r2 == {min_r2}, must be <= 1")
    return _Thresholds(alpha, min_selectivity, min_r2, min_partial_r2, sim, min_usage)


def _int_ids(values: pd.Series, name: str, column: str) -> pd.Series:
    """Non-negative integer ids (``3``, ``3.0``, ``"3"``) as int64, else DataError."""
    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != np.floor(numbers))
    if bad.any():
        value = values[bad].iloc[0]
        raise DataError(f"{name} table has {column} == {value!r}, must be an integer >= 0")
    return numbers.astype("int64")


def _numbers(df: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    df = df.copy()
    for c in columns:
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna() & (df[c].astype(str).str.strip() != "")
        if bad.any():
            value = df.loc[bad, c].iloc[0]
            raise DataError(f"{name} table has {c} == {value!r}, must be a number")
        df[c] = converted.astype("float64")
    return df


def _probe_rows(probes: pd.DataFrame, state: str) -> pd.DataFrame:
    _require(probes, PROBE_COLUMNS, "probes")
    df = probes.copy()
    for optional in ("partial_r2", "coef"):
        if optional not in df.columns:
            df[optional] = math.nan
    if len(df):
        states = df["state"].astype(str)
        if not (states == state).any():
            present = sorted(states.unique())
            raise DataError(f"state == {state!r} has no probe rows; states present: {present}")
        df = df[states == state]
    df = df[df["unit"].astype(str).str.strip().str.lower() != "all"]
    df = _numbers(df, ("r2", "selectivity", "p_value", "partial_r2", "coef"), "probes")
    df["layer"] = _int_ids(df["layer"], "probes", "layer")
    df["unit"] = _int_ids(df["unit"], "probes", "unit")
    df["target"] = df["target"].astype(str)
    dup = df.duplicated(["layer", "unit", "target"])
    if dup.any():
        r = df[dup].iloc[0]
        raise DataError(
            f"probes table has several rows for layer {r['layer']} unit {r['unit']} state "
            f"{state!r} target {r['target']!r}; keep one per unit and target"
        )
    rank = {t: i for i, t in enumerate(sorted(df["target"].unique(), key=_target_key))}
    df["order"] = df["target"].map(rank).astype("int64")  # natural order of the targets
    cols = ["layer", "unit", "target", "order", "r2", "selectivity", "p_value", "partial_r2"]
    return df[[*cols, "coef"]].sort_values(["layer", "unit", "order"], kind="stable")


def _target_key(target: str) -> tuple:
    """Natural sort key: ``K[t]`` < ``K[t-1]`` < ``K[t-2]`` < ``K[t-10]`` < ``X[t]``."""
    parts = re.split(r"(\d+)", target.replace("[t]", "[t-0]"))
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def _sorted_targets(targets) -> list[str]:
    return sorted(set(targets), key=_target_key)


def _usage(ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, unit): usage (max rel_delta over modes), usage_mode, delta_mse."""
    _require(ablation, ABLATION_COLUMNS, "ablation")
    single = ablation["units"].astype(str).str.strip().str.fullmatch(r"\d+(\.0)?")
    df = _numbers(ablation[single], ("delta_mse", "rel_delta"), "ablation")
    df["layer"] = _int_ids(df["layer"], "ablation", "layer")
    df["unit"] = _int_ids(df["units"], "ablation", "units")
    df["target"] = df["target"].astype(str)
    df["mode"] = df["mode"].astype(str)
    has_all = df.groupby(["layer", "unit"])["target"].transform(lambda t: (t == "all").any())
    df = df[(df["target"] == "all") | ~has_all.astype(bool)]
    df = df[df["rel_delta"].notna()]
    df = df.sort_values(
        ["layer", "unit", "rel_delta", "mode", "target"],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    top = df.groupby(["layer", "unit"], sort=True).head(1)
    top = top.rename(columns={"rel_delta": "usage", "mode": "usage_mode"})
    return top.set_index(["layer", "unit"])[["usage", "usage_mode", "delta_mse"]]


def _attribution_parts(
    attribution: pd.DataFrame | None,
    field_method: str | None,
    share_method: str | None,
    state: str,
) -> tuple[dict[tuple[int, int], dict[Cell, float]], dict[tuple[int, int], float]]:
    """Receptive fields {(layer, unit): {(feature, lag): signed}} and attribution shares."""
    if attribution is None:
        return {}, {}
    _require(attribution, ATTRIBUTION_COLUMNS, "attribution")
    df = attribution.copy()
    df["kind"] = df["kind"].astype(str)
    df["method"] = df["method"].astype(str)
    rf = _one_method(df[df["kind"] == "unit_input_lag"], "unit_input_lag", field_method, "gradient")
    share = _one_method(df[df["kind"] == "unit"], "unit", share_method, None)
    return _receptive_fields(rf, state), _shares(share)


def _one_method(df: pd.DataFrame, kind: str, method: str | None, preferred: str | None):
    """Rows of one attribution method: the chosen one, else preferred, else the only one."""
    methods = sorted(df["method"].unique())
    name = "field_method" if kind == "unit_input_lag" else "share_method"
    if method is not None:
        if method not in methods:
            raise DataError(
                f"{name} == {method!r} has no attribution rows of kind {kind!r}; "
                f"methods present: {methods}"
            )
    elif len(methods) <= 1:
        return df
    elif preferred in methods:
        method = preferred
    elif kind == "unit":  # shares are descriptive: take the first method by name
        method = methods[0]
    else:
        raise DataError(
            f"attribution table has {len(methods)} methods for kind {kind!r} ({methods}); "
            f"choose one with {name}"
        )
    return df[df["method"] == method]


def _receptive_fields(df: pd.DataFrame, state: str) -> dict[tuple[int, int], dict[Cell, float]]:
    if df.empty:
        return {}
    targets = df["target"].astype(str)
    if (targets == state).any():  # fields of several states: keep the probed one
        df = df[targets == state]
    df = _numbers(df, ("attribution_signed",), "attribution")
    df["layer"] = _int_ids(df["layer"], "attribution", "layer")
    df["unit"] = _int_ids(df["unit"], "attribution", "unit")
    df["lag"] = _int_ids(df["lag"], "attribution", "lag")
    df["feature"] = df["feature"].astype(str)
    dup = df.duplicated(["layer", "unit", "feature", "lag"])
    if dup.any():
        r = df[dup].iloc[0]
        raise DataError(
            f"attribution table has several receptive-field rows for layer {r['layer']} unit "
            f"{r['unit']} feature {r['feature']!r} lag {r['lag']} (targets "
            f"{sorted(df['target'].astype(str).unique())}); keep one target per unit"
        )
    fields: dict[tuple[int, int], dict[Cell, float]] = {}
    for (layer, unit), g in df.groupby(["layer", "unit"], sort=True):
        values = g["attribution_signed"].fillna(0.0).to_numpy()
        cells = zip(g["feature"], g["lag"].tolist(), strict=True)
        fields[(int(layer), int(unit))] = dict(zip(cells, values.tolist(), strict=True))
    return fields


def _shares(df: pd.DataFrame) -> dict[tuple[int, int], float]:
    """Per unit: |attribution| / sum over the layer's units (target 'all' if present)."""
    if df.empty:
        return {}
    df = _numbers(df, ("attribution",), "attribution")
    df["layer"] = _int_ids(df["layer"], "attribution", "layer")
    df["unit"] = _int_ids(df["unit"], "attribution", "unit")
    targets = df["target"].astype(str)
    if (targets == "all").any():
        df = df[targets == "all"]
    df = df.assign(size=df["attribution"].abs())
    per_unit = df.groupby(["layer", "unit"], sort=True)["size"].sum()
    total = per_unit.groupby(level="layer").transform("sum")
    share = (per_unit / total.where(total > 0)).astype("float64")
    return {(int(k[0]), int(k[1])): float(v) for k, v in share.items()}


def _as_bool(values: pd.Series) -> pd.Series:
    text = values.astype(str).str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if not known.all():
        value = values[~known].iloc[0]
        raise DataError(f"identifiability table has separable == {value!r}, must be a boolean")
    return text.isin(["true", "1", "1.0"])


def _confusable_groups(identifiability: pd.DataFrame) -> dict[str, frozenset[str]]:
    """Connected components of the 'not separable' graph: target -> its group."""
    _require(identifiability, IDENTIFIABILITY_COLUMNS, "identifiability")
    df = identifiability[identifiability["target_b"].astype(str) != "VIF"]
    separable = _as_bool(df["separable"])
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        parent.setdefault(t, t)
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    pairs = df.loc[~separable, ["target_a", "target_b"]].astype(str).to_numpy().tolist()
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[str, set[str]] = {}
    for t in list(parent):
        members.setdefault(find(t), set()).add(t)
    return {t: frozenset(members[find(t)]) for t in parent}


def _field_vectors(target_fields: pd.DataFrame) -> dict[str, dict[Cell, float]]:
    _require(target_fields, FIELD_COLUMNS, "target_fields")
    df = _numbers(target_fields, ("weight",), "target_fields")
    df["lag"] = _int_ids(df["lag"], "target_fields", "lag")
    df["feature"] = df["feature"].astype(str)
    df["target"] = df["target"].astype(str)
    summed = df.groupby(["target", "feature", "lag"], sort=True)["weight"].sum()
    fields: dict[str, dict[Cell, float]] = {}
    for (target, feature, lag), weight in summed.items():
        if weight != 0.0 and math.isfinite(weight):
            fields.setdefault(target, {})[(feature, int(lag))] = float(weight)
    return fields


# ---------------------------------------------------------------------------------------------
# the decision
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Evidence:
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
    scored = [(t, _cosine(rf, fields[t])) for t in _sorted_targets(candidates) if t in fields]
    scored = [(t, c) for t, c in scored if math.isfinite(c)]
    return sorted(scored, key=lambda tc: -abs(tc[1]))  # stable: ties in natural order


def _pct(x: float) -> str:
    """Signed whole percent: 0.351 -> ``+35%``, never ``-0%``; from +1000% on a factor: ``×161``."""
    if float(x) >= 10:
        return f"×{1 + float(x):,.0f}"
    return f"{int(round(100 * float(x))):+d}%"


def keys_of(table: pd.DataFrame) -> list[tuple[int, int]]:
    """``(layer, unit)`` of every row."""
    return list(zip(table["layer"].astype(int), table["unit"].astype(int), strict=True))


def _formula(attribution: pd.DataFrame | None, layer: int, unit: int, fields_rf: Mapping) -> str:
    """The unit's receptive field as a short formula over lagged inputs ("" without one)."""
    if attribution is None or (layer, unit) not in fields_rf:
        return ""
    from unitprobe.methods.attribution import unit_formula

    return unit_formula(attribution, layer, unit, top=3)


def _f2(x: float) -> str:
    """Two decimals, without the sign of a rounded-away negative (``-0.00``)."""
    return f"{round(float(x), 2) + 0.0:.2f}"


def _fmt_p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _ablation_note(ev: _Evidence) -> str:
    if not ev.has_ablation or not math.isfinite(ev.usage):
        return ""
    return f"ablation {_pct(ev.usage)} MSE"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _strength(probes: pd.DataFrame) -> pd.Series:
    """clip(selectivity, 0, 1) * (1 - p_value), NaN as 0."""
    s = probes["selectivity"].clip(0, 1) * (1 - probes["p_value"].clip(0, 1))
    return s.fillna(0.0)


def _none(ev: _Evidence, th: _Thresholds, dead: bool) -> dict:
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
        "role": NONE,
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


def _decide(
    ev: _Evidence,
    fields: Mapping[str, dict[Cell, float]],
    groups: Mapping[str, frozenset[str]],
    th: _Thresholds,
) -> dict:
    """Role, confidence, decided_by, evidence and the per-role extras of one unit."""
    row = _decide_role(ev, fields, groups, th)
    role = row["role"]
    if role != NONE and not math.isfinite(row["field_cosine"]) and ev.rf and role in fields:
        row["field_cosine"] = _cosine(ev.rf, fields[role])
    return row


def _decide_role(
    ev: _Evidence,
    fields: Mapping[str, dict[Cell, float]],
    groups: Mapping[str, frozenset[str]],
    th: _Thresholds,
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
    significant = _sorted_targets(sig["target"])
    # step 2: can the probe tell?
    group = _sorted_targets(set(significant) & groups.get(target, frozenset({target})))
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
    candidates = _sorted_targets(set(significant) | groups.get(target, frozenset()))
    match = _rf_match(ev.rf, candidates, fields)
    if match and abs(match[0][1]) >= th.min_field_similarity:
        return _rf_decision(ev, match, fields, reason, group)
    return _ambiguous_probe_decision(ev, target, group, reason, match)


def _role_row(ev: _Evidence, role: str, **values) -> dict:
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


def _probe_decision(ev: _Evidence, target: str) -> dict:
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
    ev: _Evidence,
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
    ev: _Evidence,
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
    row.update(role=NONE, r2=math.nan, selectivity=math.nan)
    return row


def _shared_with(roles: pd.DataFrame) -> pd.Series:
    """Comma-separated other units of the same layer with the same role ('' for none)."""
    shared = pd.Series("", index=roles.index, dtype=object)
    held = roles[roles["role"] != NONE]
    for _, g in held.groupby(["layer", "role"], sort=False):
        units = g["unit"].tolist()
        for i, u in zip(g.index, units, strict=True):
            shared[i] = ",".join(str(o) for o in units if o != u)
    return shared
