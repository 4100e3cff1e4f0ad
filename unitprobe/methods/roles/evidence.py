"""Reading the evidence tables of :func:`~unitprobe.methods.roles.assign_roles`.

Each reader checks a table's columns, converts its ids and numbers (tables read back from CSV
hold text), and returns what the decision needs: per-unit probe rows, per-unit usage from the
ablations, receptive fields as ``{(feature, lag): value}`` vectors, attribution shares, the
confusable groups of targets, and the targets' own fields. :func:`target_fields_from_terms`
builds the ``target_fields`` table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from unitprobe import schemas
from unitprobe.errors import DataError
from unitprobe.validation import check_columns

__all__ = ["target_fields_from_terms"]

Cell = tuple[str, int]  # (input feature, lag)
UnitKey = tuple[int, int]  # (layer, unit)

PROBE_COLUMNS = ("layer", "unit", "state", "target", "r2", "selectivity", "p_value")
ABLATION_COLUMNS = ("layer", "units", "mode", "output", "delta_mse", "rel_delta")
FIELD_ROW_COLUMNS = ("method", "state", "layer", "unit", "feature", "lag", "attribution_signed")
UNIT_ATTRIBUTION_COLUMNS = ("method", "output", "layer", "unit", "attribution")
IDENTIFIABILITY_COLUMNS = ("target_a", "target_b", "separable")
TARGET_FIELD_COLUMNS = tuple(schemas.columns("target_fields"))


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
    return schemas.frame("target_fields", rows)


def int_ids(values: pd.Series, name: str, column: str) -> pd.Series:
    """Non-negative integer ids (``3``, ``3.0``, ``"3"``) as int64, else DataError."""
    numbers = pd.to_numeric(values.astype(str).str.strip(), errors="coerce")
    bad = numbers.isna() | (numbers < 0) | (numbers != np.floor(numbers))
    if bad.any():
        value = values[bad].iloc[0]
        raise DataError(f"{name} table has {column} == {value!r}, must be an integer >= 0")
    return numbers.astype("int64")


def numbers(df: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    """A copy of ``df`` with ``columns`` as float64 (blank cells NaN), else DataError."""
    df = df.copy()
    for c in columns:
        converted = pd.to_numeric(df[c], errors="coerce")
        bad = converted.isna() & df[c].notna() & (df[c].astype(str).str.strip() != "")
        if bad.any():
            value = df.loc[bad, c].iloc[0]
            raise DataError(f"{name} table has {c} == {value!r}, must be a number")
        df[c] = converted.astype("float64")
    return df


def probe_rows(probes: pd.DataFrame, state: str) -> pd.DataFrame:
    """The probe rows of ``state``, typed, with the natural ``order`` of their targets."""
    check_columns(probes, PROBE_COLUMNS, "probes")
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
    df = numbers(df, ("r2", "selectivity", "p_value", "partial_r2", "coef"), "probes")
    df["layer"] = int_ids(df["layer"], "probes", "layer")
    df["unit"] = int_ids(df["unit"], "probes", "unit")
    df["target"] = df["target"].astype(str)
    dup = df.duplicated(["layer", "unit", "target"])
    if dup.any():
        r = df[dup].iloc[0]
        raise DataError(
            f"probes table has several rows for layer {r['layer']} unit {r['unit']} state "
            f"{state!r} target {r['target']!r}; keep one per unit and target"
        )
    rank = {t: i for i, t in enumerate(sorted(df["target"].unique(), key=target_key))}
    df["order"] = df["target"].map(rank).astype("int64")  # natural order of the targets
    cols = ["layer", "unit", "target", "order", "r2", "selectivity", "p_value", "partial_r2"]
    return df[[*cols, "coef"]].sort_values(["layer", "unit", "order"], kind="stable")


def target_key(target: str) -> tuple:
    """Natural sort key: ``K[t]`` < ``K[t-1]`` < ``K[t-2]`` < ``K[t-10]`` < ``X[t]``."""
    parts = re.split(r"(\d+)", target.replace("[t]", "[t-0]"))
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def sorted_targets(targets) -> list[str]:
    """The distinct targets in natural order."""
    return sorted(set(targets), key=target_key)


def usage_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, unit): usage (max rel_delta over modes), usage_mode, delta_mse.

    Reads single-unit rows only; the rows pooled over outputs (``output == "all"``) where a
    unit has them, else its per-output rows.
    """
    check_columns(ablation, ABLATION_COLUMNS, "ablation")
    single = ablation["units"].astype(str).str.strip().str.fullmatch(r"\d+(\.0)?")
    df = numbers(ablation[single], ("delta_mse", "rel_delta"), "ablation")
    df["layer"] = int_ids(df["layer"], "ablation", "layer")
    df["unit"] = int_ids(df["units"], "ablation", "units")
    df["output"] = df["output"].astype(str)
    df["mode"] = df["mode"].astype(str)
    pooled = df["output"] == schemas.ALL_OUTPUTS
    has_pooled = pooled.groupby([df["layer"], df["unit"]]).transform("any")
    df = df[pooled | ~has_pooled.astype(bool)]
    df = df[df["rel_delta"].notna()]
    df = df.sort_values(
        ["layer", "unit", "rel_delta", "mode", "output"],
        ascending=[True, True, False, True, True],
        kind="stable",
    )
    top = df.groupby(["layer", "unit"], sort=True).head(1)
    top = top.rename(columns={"rel_delta": "usage", "mode": "usage_mode"})
    return top.set_index(["layer", "unit"])[["usage", "usage_mode", "delta_mse"]]


def one_method(
    df: pd.DataFrame, table: str, name: str, method: str | None, preferred: str | None
) -> pd.DataFrame:
    """Rows of one method of ``table``: the chosen one, else preferred, else the only one.

    With several methods and none chosen: ``preferred`` if present; without a preferred one
    (``preferred`` None) the first by name; else :class:`DataError` asking for ``name``.
    """
    methods = sorted(df["method"].astype(str).unique())
    if method is not None:
        if method not in methods:
            raise DataError(f"{name} == {method!r} has no {table} rows; methods present: {methods}")
    elif len(methods) <= 1:
        return df
    elif preferred in methods:
        method = preferred
    elif preferred is None:  # descriptive only: take the first method by name
        method = methods[0]
    else:
        raise DataError(
            f"{table} table has {len(methods)} methods ({', '.join(methods)}); "
            f"choose one with {name}"
        )
    return df[df["method"].astype(str) == method]


def field_state(receptive_fields: pd.DataFrame | None, state: str) -> str | None:
    """The state whose receptive fields decide roles: the probed ``state`` where the table
    holds it, else None (the state it holds, ``h`` as the pipeline computes them)."""
    if receptive_fields is None or "state" not in receptive_fields.columns:
        return None
    return state if (receptive_fields["state"].astype(str) == state).any() else None


def receptive_field_vectors(
    receptive_fields: pd.DataFrame | None, state: str, method: str | None
) -> dict[UnitKey, dict[Cell, float]]:
    """Each unit's signed receptive field ``{(feature, lag): attribution_signed}``.

    One method (``method``, else ``"gradient"``, else the only one present) and, where the
    table holds several states, the probed ``state``.
    """
    if receptive_fields is None:
        return {}
    check_columns(receptive_fields, FIELD_ROW_COLUMNS, "receptive_fields")
    df = one_method(receptive_fields, "receptive_fields", "field_method", method, "gradient")
    if df.empty:
        return {}
    chosen = field_state(df, state)
    if chosen is not None:  # fields of several states: keep the probed one
        df = df[df["state"].astype(str) == chosen]
    df = numbers(df, ("attribution_signed",), "receptive_fields")
    df["layer"] = int_ids(df["layer"], "receptive_fields", "layer")
    df["unit"] = int_ids(df["unit"], "receptive_fields", "unit")
    df["lag"] = int_ids(df["lag"], "receptive_fields", "lag")
    df["feature"] = df["feature"].astype(str)
    dup = df.duplicated(["layer", "unit", "feature", "lag"])
    if dup.any():
        r = df[dup].iloc[0]
        raise DataError(
            f"receptive_fields table has several rows for layer {r['layer']} unit "
            f"{r['unit']} feature {r['feature']!r} lag {r['lag']} (states "
            f"{sorted(df['state'].astype(str).unique())}); keep one state per unit"
        )
    layers, units = df["layer"].to_numpy(), df["unit"].to_numpy()
    rows = zip(
        layers.tolist(), units.tolist(), df["feature"].tolist(), df["lag"].tolist(),
        df["attribution_signed"].fillna(0.0).to_numpy().tolist(), strict=True,
    )  # fmt: skip
    table = list(rows)
    fields: dict[UnitKey, dict[Cell, float]] = {}
    for k in np.lexsort((units, layers)).tolist():  # stable: rows keep their order in a unit
        layer, unit, feature, lag, value = table[k]
        fields.setdefault((int(layer), int(unit)), {})[(feature, int(lag))] = float(value)
    return fields


def unit_shares(unit_attribution: pd.DataFrame | None, method: str | None) -> dict[UnitKey, float]:
    """Per unit: |attribution| / sum over the layer's units (output "all" if present).

    One method: ``method``, else the only one present, else the first by name.
    """
    if unit_attribution is None:
        return {}
    check_columns(unit_attribution, UNIT_ATTRIBUTION_COLUMNS, "unit_attribution")
    df = one_method(unit_attribution, "unit_attribution", "share_method", method, None)
    if df.empty:
        return {}
    df = numbers(df, ("attribution",), "unit_attribution")
    df["layer"] = int_ids(df["layer"], "unit_attribution", "layer")
    df["unit"] = int_ids(df["unit"], "unit_attribution", "unit")
    outputs = df["output"].astype(str)
    if (outputs == schemas.ALL_OUTPUTS).any():
        df = df[outputs == schemas.ALL_OUTPUTS]
    df = df.assign(size=df["attribution"].abs())
    per_unit = df.groupby(["layer", "unit"], sort=True)["size"].sum()
    total = per_unit.groupby(level="layer").transform("sum")
    share = (per_unit / total.where(total > 0)).astype("float64")
    return {(int(k[0]), int(k[1])): float(v) for k, v in share.items()}


def as_bool(values: pd.Series) -> pd.Series:
    """``separable`` values (bools, or their text from a CSV) as bool, else DataError."""
    text = values.astype(str).str.strip().str.lower()
    known = text.isin(["true", "false", "1", "0", "1.0", "0.0"])
    if not known.all():
        value = values[~known].iloc[0]
        raise DataError(f"identifiability table has separable == {value!r}, must be a boolean")
    return text.isin(["true", "1", "1.0"])


def confusable_groups(identifiability: pd.DataFrame) -> dict[str, frozenset[str]]:
    """Connected components of the 'not separable' graph: target -> its group."""
    check_columns(identifiability, IDENTIFIABILITY_COLUMNS, "identifiability")
    df = identifiability
    separable = as_bool(df["separable"])
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


def field_vectors(target_fields: pd.DataFrame) -> dict[str, dict[Cell, float]]:
    """Each target's field ``{(feature, lag): weight}``, repeated cells summed, zeros dropped."""
    check_columns(target_fields, TARGET_FIELD_COLUMNS, "target_fields")
    df = numbers(target_fields, ("weight",), "target_fields")
    df["lag"] = int_ids(df["lag"], "target_fields", "lag")
    df["feature"] = df["feature"].astype(str)
    df["target"] = df["target"].astype(str)
    summed = df.groupby(["target", "feature", "lag"], sort=True)["weight"].sum()
    fields: dict[str, dict[Cell, float]] = {}
    for (target, feature, lag), weight in summed.items():
        if weight != 0.0 and math.isfinite(weight):
            fields.setdefault(target, {})[(feature, int(lag))] = float(weight)
    return fields
