"""Every result table's columns, their dtypes, and the vocabularies of the package, in one place.

A :class:`Schema` lists a table's columns in order with a pandas dtype each. Functions that
build a table return exactly these columns (:meth:`Schema.empty` and :meth:`Schema.coerce`
help); :class:`unitprobe.tables.Tables` uses the dtypes to restore a table read back from CSV.
Each table is one kind of row: population probes, VIF values, receptive fields and unit
attributions have tables of their own, so no row stands for something else (no ``unit ==
"all"``, no ``target_b == "VIF"``, no ``kind`` column). ``docs/architecture.md`` documents
every table.

Words used in column names: ``target`` is a probe target (an expression over series, such as
``K[t-1]``); ``output`` is one of the network's predicted series; ``state`` is a unit state
(``h`` or ``c``); ``feature`` is an input series.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "Schema",
    "SCHEMAS",
    "ABLATION_MODES",
    "USAGE_MODES",
    "ATTRIBUTION_METHODS",
    "UNIT_ATTRIBUTION_METHODS",
    "FIELD_METHODS",
    "BASELINES",
    "FIGURE_FORMATS",
    "STATES",
    "STATE_CHOICES",
    "ALL_OUTPUTS",
    "NO_ROLE",
    "formula_text",
]

# ----------------------------------------------------------------------------- vocabularies

#: Ablation modes: replace a unit's state by 0, by its mean, or by another sequence's value.
ABLATION_MODES = ("zero", "mean", "resample")
#: Ablation modes that decide whether the output uses a unit (zero ablation never does).
USAGE_MODES = ("mean", "resample")
#: Input x lag attribution methods (Captum).
ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient")
#: Unit attribution methods (Captum layer methods).
UNIT_ATTRIBUTION_METHODS = (
    "layer_integrated_gradients",
    "layer_conductance",
    "layer_gradient_x_activation",
)
#: Integrated-gradients baselines: the per-step mean input, or zeros.
BASELINES = ("mean", "zero")
#: Receptive-field methods: the data-averaged Jacobian, or integrated gradients.
FIELD_METHODS = ("gradient", "integrated_gradients")
#: Figure file formats.
FIGURE_FORMATS = ("png", "pdf", "svg")
#: Unit states that are probed and ablated.
STATES = ("h", "c")
#: A choice of states on the command line and in configs.
STATE_CHOICES = ("h", "c", "both")
#: ``ablation.output`` of the rows pooled over every output.
ALL_OUTPUTS = "all"
#: ``roles.role`` of a unit that holds no term.
NO_ROLE = "none"


def formula_text(parts: Sequence[tuple[str, float]]) -> str:
    """How a formula role is written: ``"0.7·K[t] - 0.3·X[t]"`` from ``[(term, weight)]``
    in the order given (largest first, by convention), weights scaled to absolute sum 1."""
    total = sum(abs(w) for _, w in parts)
    out = []
    for i, (term, w) in enumerate(parts):
        text = f"{abs(w) / total:.2g}·{term}"
        out.append(("-" if w < 0 else "") + text if i == 0 else ("- " if w < 0 else "+ ") + text)
    return " ".join(out)


@dataclass(frozen=True)
class Schema:
    """A result table's name, its columns in order with their pandas dtypes, and what a row is.

    Dtypes: ``int64``, ``float64``, ``bool``, ``string`` (text, may be missing) and ``Int64``
    (an integer that may be missing).
    """

    name: str
    dtypes: tuple[tuple[str, str], ...]
    row: str

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names, in order."""
        return tuple(c for c, _ in self.dtypes)

    def empty(self) -> pd.DataFrame:
        """A table with these columns and dtypes and no rows."""
        return self.coerce(pd.DataFrame({c: [] for c in self.columns}))

    def coerce(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with exactly these columns (in order) cast to these dtypes; a new frame."""
        out = df.loc[:, list(self.columns)].copy()
        for column, dtype in self.dtypes:
            out[column] = _cast(out[column], dtype)
        return out.reset_index(drop=True)


def _cast(values: pd.Series, dtype: str) -> pd.Series:
    if dtype == "string":  # text, missing values as None
        text = [None if pd.isna(v) else str(v) for v in values.astype(object)]
        return pd.Series(text, index=values.index, dtype=object)
    if dtype == "bool":
        if not pd.api.types.is_bool_dtype(values):
            values = values.map(_as_bool)
        return values.astype(bool)
    if dtype == "Int64":
        return pd.to_numeric(values, errors="raise").astype("Int64")
    return pd.to_numeric(values, errors="raise").astype(dtype)


def _as_bool(value: Any) -> bool:
    """A bool from a bool, a number, or the text CSV files use (``True``/``False``, 1/0)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false", "1", "0", "1.0", "0.0"):
            raise ValueError(f"cannot read {value!r} as true or false")
        return text in ("true", "1", "1.0")
    if pd.isna(value):
        raise ValueError("a true/false column has a missing value")
    return bool(value)


def _schema(name: str, row: str, **dtypes: str) -> Schema:
    return Schema(name, tuple(dtypes.items()), row)


_F, _I, _S, _B = "float64", "int64", "string", "bool"

SCHEMAS: dict[str, Schema] = {
    s.name: s
    for s in (
        _schema(
            "probes", "layer x unit x state x target: a probe from one unit",
            layer=_I, unit=_I, state=_S, target=_S, r2=_F, r2_std=_F, r2_control=_F,
            selectivity=_F, p_value=_F, partial_r2=_F, coef=_F, n_samples=_I, intercept=_F,
            p_value_raw=_F, note=_S,
        ),
        _schema(
            "population_probes", "layer x state x target: a probe from all units of a layer",
            layer=_I, state=_S, target=_S, r2=_F, r2_std=_F, r2_control=_F, selectivity=_F,
            n_samples=_I,
        ),
        _schema(
            "identifiability", "pair of probe targets: can a probe tell them apart?",
            target_a=_S, target_b=_S, r2=_F, separable=_B,
        ),
        _schema(
            "vif", "probe target: its variance inflation among all targets",
            target=_S, vif=_F, r2=_F, separable=_B,
        ),
        _schema(
            "ablation", "layer x unit group x mode x output (or 'all' pooled)",
            layer=_I, units=_S, mode=_S, output=_S, mse=_F, mse_base=_F, delta_mse=_F,
            rel_delta=_F, exact=_B,
        ),
        _schema(
            "input_lag", "method x output x input feature x lag",
            method=_S, output=_S, feature=_S, lag=_I, attribution=_F, attribution_signed=_F,
        ),
        _schema(
            "unit_attribution", "method x output x layer x unit",
            method=_S, output=_S, layer=_I, unit=_I, attribution=_F, attribution_signed=_F,
        ),
        _schema(
            "receptive_fields", "method x state x layer x unit x input feature x lag",
            method=_S, state=_S, layer=_I, unit=_I, feature=_S, lag=_I, attribution=_F,
            attribution_signed=_F,
        ),
        _schema(
            "roles", "layer x unit: the term the unit holds and the evidence that decided",
            layer=_I, unit=_I, role=_S, r2=_F, selectivity=_F, delta_mse=_F, confidence=_F,
            decided_by=_S, evidence=_S, used=_B, usage=_F, usage_mode=_S,
            attribution_share=_F, p_value=_F, partial_r2=_F, field_cosine=_F, sign=_F,
            runner_up=_S, confusable_with=_S, shared_with=_S, formula=_S, kind=_S,
            transfer=_F, margin=_F, null_percentile=_F,
        ),
        _schema(
            "traces", "role unit x sequence x step: its activation beside its z-scored target",
            layer=_I, unit=_I, role=_S, sequence=_I, step=_I, activation=_F, target_value=_F,
        ),
        _schema(
            "baselines", "predictor (four baselines, then the network)",
            baseline=_S, order="Int64", mse=_F, step_nmse=_F, mse_ratio=_F, step_ratio=_F,
        ),
        _schema(
            "interchange", "layer x unit set x term: the share of the term's output change that "
            "patching carries",
            layer=_I, units=_S, term=_S, feature=_S, lag=_I, reference=_S, transfer=_F,
            transfer_lo=_F, transfer_hi=_F, effect=_F, n_pairs=_I, exact=_B, note=_S,
        ),
        _schema(
            "directions", "layer x term: a learned k-dimensional direction and how much of the "
            "term it transfers",
            layer=_I, term=_S, k=_I, transfer_train=_F, transfer_test=_F, best_unit_transfer=_F,
            layer_transfer=_F, leak=_F, leak_term=_S, score=_F, specificity=_F, specificity_lo=_F,
            restart_overlap=_F, restart_agreement=_F, n_pairs=_I, note=_S,
        ),
        _schema(
            "direction_loadings", "layer x term x component x unit x state: the learned basis",
            layer=_I, term=_S, component=_I, unit=_I, state=_S, loading=_F,
        ),
        _schema(
            "terms", "layer x term: where the term lives (a unit, several, a direction, nowhere)",
            layer=_I, term=_S, verdict=_S, units=_S, in_formula=_S, best_unit=_I,
            best_unit_transfer=_F, effect=_F, direction_transfer=_F, layer_transfer=_F,
            direction_leak=_F, direction_specificity=_F, direction_score=_F, direction_null=_F,
            direction_p=_F,
            n_null_directions="Int64", evidence=_S,
        ),
        _schema(
            "nulls", "null network x layer x unit x statistic (x term): evidence in a network "
            "that learned nothing",
            network=_I, layer=_I, unit="Int64", statistic=_S, term=_S, value=_F,
        ),
        _schema(
            "target_fields", "probe target x input feature x lag: the target as a linear map",
            target=_S, feature=_S, lag=_I, weight=_F,
        ),
    )
}  # fmt: skip


def schema(name: str) -> Schema:
    """The schema of table ``name``; a clear error for an unknown name."""
    try:
        return SCHEMAS[name]
    except KeyError:
        raise KeyError(f"no table named {name!r}; tables: {', '.join(SCHEMAS)}") from None


def columns(name: str) -> list[str]:
    """Column names of table ``name``, in order (a new list)."""
    return list(schema(name).columns)


def frame(name: str, rows: Any) -> pd.DataFrame:
    """Table ``name`` built from records (dicts or tuples in column order), with its dtypes."""
    df = pd.DataFrame.from_records(list(rows), columns=columns(name))
    return schema(name).coerce(df)
