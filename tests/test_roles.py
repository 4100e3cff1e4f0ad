"""Tests of unitprobe.methods.roles on small hand-built evidence tables."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from unitprobe.config import RoleConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.roles import (
    ROLE_COLUMNS,
    assign_roles,
    role_counts,
    summarize_roles,
    target_fields_from_terms,
    unit_formula,
)
from unitprobe.schemas import SCHEMAS

LAGGED = ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]
CELLS = [("K", 0), ("K", 1), ("K", 2), ("X", 0), ("X", 1), ("X", 2)]


# ---------------------------------------------------------------------------------------------
# table builders
# ---------------------------------------------------------------------------------------------
def probe_row(unit, target, r2, selectivity, p, partial, coef=1.0, layer=0, state="h"):
    return {
        "layer": layer,
        "unit": unit,
        "state": state,
        "target": target,
        "r2": r2,
        "r2_std": 0.01,
        "r2_control": r2 - selectivity,
        "selectivity": selectivity,
        "p_value": p,
        "partial_r2": partial,
        "coef": coef,
        "n_samples": 1000,
    }


def ablation_rows(unit, rel_deltas, layer=0, output="all", mse_base=0.1):
    return [
        {
            "layer": layer,
            "units": str(unit),
            "mode": mode,
            "output": output,
            "mse": mse_base * (1 + rel),
            "mse_base": mse_base,
            "delta_mse": mse_base * rel,
            "rel_delta": rel,
        }
        for mode, rel in rel_deltas.items()
    ]


def rf_rows(unit, values, layer=0, method="gradient", state="h"):
    """Receptive field rows: values maps (feature, lag) -> signed attribution; others 0."""
    return [
        {
            "method": method,
            "state": state,
            "layer": layer,
            "unit": unit,
            "feature": f,
            "lag": lag,
            "attribution": abs(values.get((f, lag), 0.0)),
            "attribution_signed": values.get((f, lag), 0.0),
        }
        for f, lag in CELLS
    ]


def unit_attr_rows(values, layer=0, method="layer_integrated_gradients"):
    return [
        {
            "method": method,
            "output": "all",
            "layer": layer,
            "unit": u,
            "attribution": a,
            "attribution_signed": -a,
        }
        for u, a in values.items()
    ]


def lagged_fields():
    return pd.DataFrame(
        [
            ("K[t]", "K", 0, 1.0),
            ("K[t-1]", "K", 1, 1.0),
            ("X[t]", "X", 0, 1.0),
            ("X[t-1]", "X", 1, 1.0),
            ("K[t-1] + 2*X[t]", "K", 1, 1.0),
            ("K[t-1] + 2*X[t]", "X", 0, 2.0),
        ],
        columns=["target", "feature", "lag", "weight"],
    )


def collinear_identifiability(targets=LAGGED):
    rows = [
        {"target_a": a, "target_b": b, "r2": 0.995, "separable": False}
        for i, a in enumerate(targets)
        for b in targets[i + 1 :]
    ]
    return pd.DataFrame(rows)


def separable_probes():
    """Unit 0 holds X[t], unit 1 holds K[t], unit 2 is noise."""
    rows = [
        probe_row(0, "X[t]", 0.85, 0.80, 0.001, 0.80),
        probe_row(0, "K[t]", 0.10, 0.05, 0.30, 0.02),
        probe_row(1, "K[t]", 0.90, 0.85, 0.001, 0.70, coef=-2.0),
        probe_row(1, "X[t]", 0.05, 0.01, 0.50, 0.01),
        probe_row(2, "X[t]", 0.02, 0.00, 0.60, 0.01),
        probe_row(2, "K[t]", 0.03, 0.01, 0.70, 0.01),
    ]
    return pd.DataFrame(rows)


def peaked_rf(cell, sign=1.0, spread=0.05):
    values = {c: spread for c in CELLS}
    values[cell] = sign * 1.0
    return values


def collinear_tables():
    """Units 0..3 hold K[t], K[t-1], X[t], X[t-1]; the probe cannot separate them."""
    probes = pd.DataFrame(
        [probe_row(u, t, 0.99, 0.9, 0.001, 0.004) for u in range(4) for t in LAGGED]
    )
    peaks = [("K", 0), ("K", 1), ("X", 0), ("X", 1)]
    fields = pd.DataFrame([r for u, c in enumerate(peaks) for r in rf_rows(u, peaked_rf(c))])
    ablation = pd.DataFrame(
        [r for u in range(4) for r in ablation_rows(u, {"zero": 0.12, "mean": 0.08})]
    )
    return {
        "probes": probes,
        "ablation": ablation,
        "receptive_fields": fields,
        "identifiability": collinear_identifiability(),
        "target_fields": lagged_fields(),
    }


# ---------------------------------------------------------------------------------------------
# (a) separable targets: probe decides
# ---------------------------------------------------------------------------------------------
def test_separable_targets_decided_by_probe():
    roles = assign_roles(separable_probes())
    assert list(roles.columns) == list(ROLE_COLUMNS) == list(SCHEMAS["roles"].columns)
    assert roles.dtypes.to_dict() == SCHEMAS["roles"].empty().dtypes.to_dict()
    assert roles["unit"].tolist() == [0, 1, 2]
    assert roles["role"].tolist() == ["X[t]", "K[t]", "none"]
    assert roles["decided_by"].tolist() == ["probe", "probe", "probe"]
    assert roles["r2"].iloc[0] == pytest.approx(0.85)
    assert roles["selectivity"].iloc[1] == pytest.approx(0.85)
    assert math.isnan(roles["r2"].iloc[2])
    # confidence = clip(sel) * (1 - p) * (best partial - next) / best partial
    assert roles["confidence"].iloc[0] == pytest.approx(0.80 * 0.999 * (0.80 - 0.02) / 0.80)
    assert roles["confidence"].iloc[1] == pytest.approx(0.85 * 0.999 * (0.70 - 0.01) / 0.70)
    # none: 1 - max clip(sel) * (1 - p) over targets
    assert roles["confidence"].iloc[2] == pytest.approx(1 - 0.01 * 0.3)
    assert roles["evidence"].iloc[0] == "partial R² 0.80 vs 0.02 next; p=0.001"
    assert roles["evidence"].iloc[2] == "no target passes (best R² 0.03 for K[t], p=0.7)"
    assert roles["runner_up"].tolist() == ["K[t]", "X[t]", ""]
    assert roles["sign"].iloc[1] == -1.0
    assert not roles["used"].any()


def test_probe_evidence_mentions_ablation_and_usage_columns():
    ablation = pd.DataFrame(
        ablation_rows(0, {"zero": 0.35, "mean": 0.20, "resample": 0.25})
        + ablation_rows(1, {"zero": 0.01, "mean": 0.02})
        + ablation_rows(2, {"zero": 0.0})
        + ablation_rows(0, {"zero": 9.0}, output="y")  # per-output rows are ignored here
        + [{**ablation_rows(0, {"zero": 5.0})[0], "units": "0+1"}]  # group row ignored
    )
    roles = assign_roles(separable_probes(), ablation=ablation)
    assert roles["evidence"].iloc[0] == "partial R² 0.80 vs 0.02 next; p=0.001; ablation +35% MSE"
    assert roles["usage"].tolist() == pytest.approx([0.35, 0.02, 0.0])
    assert roles["usage_mode"].tolist() == ["zero", "mean", "zero"]
    assert roles["delta_mse"].tolist() == pytest.approx([0.035, 0.002, 0.0])
    assert roles["used"].tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------
# (b) collinear targets: receptive field decides
# ---------------------------------------------------------------------------------------------
def test_collinear_targets_decided_by_receptive_field():
    roles = assign_roles(**collinear_tables())
    assert roles["role"].tolist() == LAGGED
    assert roles["decided_by"].tolist() == ["receptive_field"] * 4
    cos = 1 / math.sqrt(1 + 5 * 0.05**2)
    assert roles["field_cosine"].tolist() == pytest.approx([cos] * 4)
    # confidence = |cos| * share of |RF| mass on the field's cells
    assert roles["confidence"].tolist() == pytest.approx([cos * 1 / 1.25] * 4)
    assert roles["evidence"].iloc[1] == (
        f"receptive field {cos:.2f} cosine with K[t-1] "
        "(probe cannot separate K[t], K[t-1], X[t], X[t-1]); ablation +12% MSE"
    )
    assert roles["confusable_with"].iloc[0] == "K[t-1], X[t], X[t-1]"
    assert roles["r2"].tolist() == pytest.approx([0.99] * 4)


def test_collinear_without_identifiability_uses_low_partial_r2():
    tables = collinear_tables()
    del tables["identifiability"]
    roles = assign_roles(**tables)
    assert roles["role"].tolist() == LAGGED
    assert roles["decided_by"].tolist() == ["receptive_field"] * 4


def test_negative_receptive_field_and_sign():
    tables = collinear_tables()
    fields = tables["receptive_fields"]
    fields = fields[fields["unit"] != 1]
    fields = pd.concat([fields, pd.DataFrame(rf_rows(1, peaked_rf(("K", 1), -1.0)))])
    roles = assign_roles(**{**tables, "receptive_fields": fields})
    assert roles["role"].iloc[1] == "K[t-1]"
    assert roles["sign"].iloc[1] == -1.0
    assert roles["field_cosine"].iloc[1] < -0.99


def test_collinear_without_receptive_field_claims_no_role():
    roles = assign_roles(**{**collinear_tables(), "receptive_fields": None})
    # a probe alone must not pick one of targets it cannot tell apart
    assert roles["role"].tolist() == ["none"] * 4
    assert roles["decided_by"].tolist() == ["probe"] * 4
    # the best probe target (partial R² all equal, then r2, then name) is kept as runner-up
    assert roles["runner_up"].tolist() == ["K[t]"] * 4
    assert roles["confidence"].tolist() == pytest.approx([0.9 * 0.999 / 4] * 4)
    assert roles["evidence"].iloc[0] == (
        "R² 0.99 for K[t], but probe cannot separate K[t], K[t-1], X[t], X[t-1]; "
        "no receptive field; ablation +12% MSE"
    )


def test_spread_receptive_field_below_threshold_does_not_decide():
    tables = collinear_tables()
    spread = {("K", 0): 1.0, ("K", 1): 1.0, ("X", 0): 1.0}  # cos 1/sqrt(3) with each
    fields = tables["receptive_fields"]
    tables["receptive_fields"] = pd.concat(
        [fields[fields["unit"] != 2], pd.DataFrame(rf_rows(2, spread))]
    )
    roles = assign_roles(**tables)
    assert roles["decided_by"].iloc[2] == "probe"
    assert "receptive field at most 0.58 cosine" in roles["evidence"].iloc[2]
    loose = assign_roles(**tables, config=RoleConfig(min_field_similarity=0.5))
    assert loose["decided_by"].iloc[2] == "receptive_field"
    assert loose["role"].iloc[2] == "K[t]"  # tie broken by name
    assert loose["confidence"].iloc[2] == pytest.approx(1 / math.sqrt(3) * 1 / 3)


def test_combination_target_chosen_by_receptive_field():
    targets = [*LAGGED, "K[t-1] + 2*X[t]"]
    probes = pd.DataFrame([probe_row(0, t, 0.99, 0.9, 0.001, 0.0) for t in targets])
    fields = pd.DataFrame(rf_rows(0, {("K", 1): 0.5, ("X", 0): 1.0}))
    roles = assign_roles(probes, receptive_fields=fields,
                         identifiability=collinear_identifiability(targets),
                         target_fields=lagged_fields())  # fmt: skip
    assert roles["role"].iloc[0] == "K[t-1] + 2*X[t]"
    assert roles["field_cosine"].iloc[0] == pytest.approx(1.0)
    assert roles["confidence"].iloc[0] == pytest.approx(1.0)
    assert roles["runner_up"].iloc[0] == "X[t]"
    assert roles["evidence"].iloc[0] == (
        "receptive field 1.00 cosine with K[t-1] + 2*X[t] "
        "(probe cannot separate 5 targets (K[t], K[t-1], ...))"
    )


# ---------------------------------------------------------------------------------------------
# (c) dead unit, (d) shared roles, (e) ablation only
# ---------------------------------------------------------------------------------------------
def test_dead_unit_is_none():
    probes = pd.DataFrame(
        [probe_row(0, t, np.nan, np.nan, np.nan, np.nan, coef=np.nan) for t in LAGGED]
    )
    fields = pd.DataFrame(rf_rows(0, {}))
    ablation = pd.DataFrame(ablation_rows(0, {"zero": 0.0, "mean": 0.0}))
    roles = assign_roles(probes, ablation=ablation, receptive_fields=fields,
                         identifiability=collinear_identifiability(),
                         target_fields=lagged_fields())  # fmt: skip
    row = roles.iloc[0]
    assert (row["role"], row["decided_by"], row["evidence"]) == (
        "none",
        "probe",
        "constant activation",
    )
    assert row["confidence"] == 1.0
    assert row["delta_mse"] == 0.0
    assert not row["used"]


def test_same_role_units_are_all_reported():
    probes = pd.DataFrame(
        [
            probe_row(0, "X[t]", 0.85, 0.8, 0.001, 0.8),
            probe_row(0, "K[t]", 0.1, 0.05, 0.3, 0.02),
            probe_row(1, "K[t]", 0.9, 0.85, 0.001, 0.7),
            probe_row(1, "X[t]", 0.05, 0.01, 0.5, 0.01),
            probe_row(2, "X[t]", 0.80, 0.7, 0.002, 0.6),
            probe_row(2, "K[t]", 0.1, 0.05, 0.3, 0.03),
            probe_row(3, "X[t]", 0.83, 0.7, 0.002, 0.6),
            probe_row(3, "K[t]", 0.1, 0.05, 0.3, 0.03),
            probe_row(0, "X[t]", 0.9, 0.9, 0.001, 0.8, layer=1),  # other layer: not shared
        ]
    )
    roles = assign_roles(probes)
    assert roles[["layer", "unit"]].values.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    assert roles["role"].tolist() == ["X[t]", "K[t]", "X[t]", "X[t]", "X[t]"]
    assert roles["shared_with"].tolist() == ["2,3", "", "0,3", "0,2", ""]
    counts = role_counts(roles)
    assert counts.values.tolist() == [["X[t]", 4], ["K[t]", 1]]
    by_layer = role_counts(roles, by_layer=True)
    assert by_layer.values.tolist() == [[0, "X[t]", 3], [0, "K[t]", 1], [1, "X[t]", 1]]


def test_ablation_only_evidence():
    probes = separable_probes()
    ablation = pd.DataFrame(ablation_rows(2, {"zero": 0.35, "mean": 0.10}))
    roles = assign_roles(probes, ablation=ablation)
    row = roles.iloc[2]
    assert (row["role"], row["decided_by"]) == ("none", "ablation")
    assert row["evidence"] == "used by the output (+35% MSE) but holds no tested target"
    assert row["used"]
    assert row["delta_mse"] == pytest.approx(0.035)
    # a unit seen only in the ablation table is reported too
    extra = pd.DataFrame(ablation_rows(7, {"zero": 0.5}))
    roles = assign_roles(probes, ablation=pd.concat([ablation, extra]))
    assert roles["unit"].tolist() == [0, 1, 2, 7]
    assert roles["decided_by"].iloc[3] == "ablation"


def test_used_unit_without_probe_gets_role_from_receptive_field():
    probes = separable_probes()
    ablation = pd.DataFrame(ablation_rows(2, {"zero": 0.4}))
    fields = pd.DataFrame(rf_rows(2, peaked_rf(("K", 1))))
    roles = assign_roles(
        probes, ablation=ablation, receptive_fields=fields, target_fields=lagged_fields()
    )
    row = roles.iloc[2]
    assert (row["role"], row["decided_by"]) == ("K[t-1]", "receptive_field")
    assert row["evidence"].startswith("receptive field 0.99 cosine with K[t-1] (no significant")
    # not used -> the receptive field alone does not assign a role
    quiet = pd.DataFrame(ablation_rows(2, {"zero": 0.01}))
    roles = assign_roles(
        probes, ablation=quiet, receptive_fields=fields, target_fields=lagged_fields()
    )
    assert (roles["role"].iloc[2], roles["decided_by"].iloc[2]) == ("none", "probe")


# ---------------------------------------------------------------------------------------------
# (f) validation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("table", "drop", "message"),
    [
        ("probes", ["selectivity", "p_value"], "probes table is missing columns selectivity, "
         "p_value"),
        ("ablation", ["rel_delta"], "ablation table is missing columns rel_delta"),
        ("receptive_fields", ["state"], "receptive_fields table is missing columns state"),
        ("unit_attribution", ["output"], "unit_attribution table is missing columns output"),
        ("identifiability", ["separable"], "identifiability table is missing columns separable"),
        ("target_fields", ["lag", "weight"], "target_fields table is missing columns lag, weight"),
    ],
)  # fmt: skip
def test_missing_columns(table, drop, message):
    tables = collinear_tables()
    tables["unit_attribution"] = pd.DataFrame(unit_attr_rows({0: 1.0, 1: 2.0}))
    tables[table] = tables[table].drop(columns=drop)
    with pytest.raises(DataError, match=f"^{message}$".replace("[", r"\[")):
        assign_roles(**tables)


def test_other_validation_errors():
    probes = separable_probes()
    with pytest.raises(DataError, match=r"state == 'c' has no probe rows; states present: \['h'\]"):
        assign_roles(probes, state="c")
    with pytest.raises(UnitprobeError, match="alpha == 0, must be a finite number > 0"):
        assign_roles(probes, config=RoleConfig(alpha=0))
    with pytest.raises(UnitprobeError, match="min_field_similarity == 1.5"):
        assign_roles(probes, config=RoleConfig(min_field_similarity=1.5))
    with pytest.raises(UnitprobeError, match=r"min_field_similarity == -0.5, must be .* >= 0"):
        RoleConfig(min_field_similarity=-0.5)
    with pytest.raises(UnitprobeError, match=r"min_partial_r2 == -0.1, must be .* >= 0"):
        RoleConfig(min_partial_r2=-0.1)
    with pytest.raises(DataError, match="config must be a RoleConfig, got dict"):
        assign_roles(probes, config={"alpha": 0.1})
    with pytest.raises(DataError, match="state == 'both', must be one of h, c"):
        assign_roles(probes, state="both")
    bad = probes.astype({"unit": object})
    bad.loc[0, "unit"] = "u3"
    with pytest.raises(DataError, match="probes table has unit == 'u3', must be an integer"):
        assign_roles(bad)
    population = probes.astype({"unit": object})
    population.loc[0, "unit"] = "all"  # population probes have a table of their own
    with pytest.raises(DataError, match="probes table has unit == 'all', must be an integer"):
        assign_roles(population)
    fields = pd.DataFrame(
        rf_rows(0, {}, method="saliency") + rf_rows(0, {}, method="integrated_gradients")
    )
    with pytest.raises(
        DataError,
        match=r"^receptive_fields table has 2 methods \(integrated_gradients, saliency\); "
        "choose one with field_method$",
    ):
        assign_roles(probes, receptive_fields=fields)
    with pytest.raises(DataError, match="field_method == 'ig' has no receptive_fields rows"):
        assign_roles(probes, receptive_fields=fields, field_method="ig")
    with pytest.raises(DataError, match="share_method == 'ig' has no unit_attribution rows"):
        assign_roles(
            probes, unit_attribution=pd.DataFrame(unit_attr_rows({0: 1.0})), share_method="ig"
        )
    roles = assign_roles(probes, receptive_fields=fields, field_method="saliency")
    assert len(roles) == 3
    with pytest.raises(DataError, match="max_evidence == 2"):
        summarize_roles(roles, max_evidence=2)
    with pytest.raises(DataError, match="^roles table is missing columns evidence$"):
        summarize_roles(roles.drop(columns="evidence"))


# ---------------------------------------------------------------------------------------------
# tables from CSV, determinism, shares, text
# ---------------------------------------------------------------------------------------------
def test_csv_round_trip_and_row_order_do_not_change_roles():
    tables = collinear_tables()
    direct = assign_roles(**tables)
    from_csv = {}
    for name, t in tables.items():
        buffer = io.StringIO()
        t.to_csv(buffer, index=False)
        buffer.seek(0)
        from_csv[name] = pd.read_csv(buffer)
    pd.testing.assert_frame_equal(assign_roles(**from_csv), direct)
    rng = np.random.default_rng(0)
    shuffled = {name: t.iloc[rng.permutation(len(t))] for name, t in tables.items()}
    pd.testing.assert_frame_equal(assign_roles(**shuffled), direct)


def test_attribution_share_per_layer():
    shares = pd.DataFrame(
        unit_attr_rows({0: 3.0, 1: 1.0, 2: 0.0}) + unit_attr_rows({0: 2.0}, layer=1)
    )
    probes = pd.concat([separable_probes(), pd.DataFrame([probe_row(0, "X[t]", 0.9, 0.9, 0.001,
                                                                    0.8, layer=1)])])  # fmt: skip
    roles = assign_roles(probes, unit_attribution=shares)
    assert roles["attribution_share"].tolist() == pytest.approx([0.75, 0.25, 0.0, 1.0])
    # per-output rows are ignored where rows pooled over the outputs exist
    per_output = pd.DataFrame(unit_attr_rows({0: 0.0, 1: 9.0})).assign(output="y")
    roles = assign_roles(probes, unit_attribution=pd.concat([shares, per_output]))
    assert roles["attribution_share"].tolist() == pytest.approx([0.75, 0.25, 0.0, 1.0])
    # several unit methods: the first by name ("layer_conductance") unless one is chosen
    other = pd.DataFrame(unit_attr_rows({0: 1.0, 1: 1.0, 2: 2.0}, method="layer_conductance"))
    both = pd.concat([shares, other])
    roles = assign_roles(probes, unit_attribution=both)
    assert roles["attribution_share"].tolist()[:3] == pytest.approx([0.25, 0.25, 0.5])
    roles = assign_roles(probes, unit_attribution=both, share_method="layer_integrated_gradients")
    assert roles["attribution_share"].tolist()[:3] == pytest.approx([0.75, 0.25, 0.0])


def test_receptive_field_method_defaults_to_gradient():
    tables = collinear_tables()
    fields = tables.pop("receptive_fields")
    wrong = fields.assign(method="integrated_gradients")  # every unit peaked at its X[t]
    wrong["attribution_signed"] = np.where(
        (wrong["feature"] == "X") & (wrong["lag"] == 0), 1.0, 0.0
    )
    both = pd.concat([wrong, fields])
    assert assign_roles(**tables, receptive_fields=both)["role"].tolist() == LAGGED
    roles = assign_roles(**tables, receptive_fields=both, field_method="integrated_gradients")
    assert roles["role"].tolist() == ["X[t]"] * 4


def test_target_fields_from_terms():
    fields = target_fields_from_terms(
        {
            "K[t-1] + 2*X[t]": {("K", 1): 1.0, ("X", 0): 2.0},
            "X[t]**2": None,
            "H[t]": {("H", 0): 1.0},  # H is not an input
        },
        input_scales={"K": 4.0, "X": 0.5},
    )
    assert fields.values.tolist() == [["K[t-1] + 2*X[t]", "K", 1, 4.0],
                                      ["K[t-1] + 2*X[t]", "X", 0, 1.0]]  # fmt: skip
    with pytest.raises(DataError, match="lag == -1"):
        target_fields_from_terms({"K": {("K", -1): 1.0}})


def test_summarize_roles_is_fixed_width():
    roles = assign_roles(**collinear_tables())
    text = summarize_roles(roles, max_evidence=30)
    lines = text.splitlines()
    assert len(lines) == 2 + 4
    assert lines[0].split() == [
        "layer", "unit", "role", "decided_by", "confidence", "h", "≈", "(receptive", "field)",
        "evidence",
    ]  # fmt: skip
    assert lines[2].split()[:5] == ["0", "0", "K[t]", "receptive_field", "0.80"]
    assert roles["formula"].iloc[0] in lines[2]
    without = summarize_roles(roles.drop(columns="formula"), max_evidence=30)
    assert without.splitlines()[0].split()[-1] == "evidence"
    assert lines[3].endswith("receptive field 0.99 cosine...")
    starts = {line.index("receptive_field") for line in lines[2:]}
    assert len(starts) == 1  # aligned columns


def test_usage_falls_back_to_per_output_rows_and_dead_unit_used_as_bias():
    ablation = pd.DataFrame(
        ablation_rows(0, {"zero": 0.3}, output="y1") + ablation_rows(0, {"mean": 0.5}, output="y2")
    )
    roles = assign_roles(separable_probes(), ablation=ablation)
    assert (roles["usage"].iloc[0], roles["usage_mode"].iloc[0]) == (0.5, "mean")
    assert roles["delta_mse"].iloc[0] == pytest.approx(0.05)
    dead = pd.DataFrame([probe_row(0, t, np.nan, np.nan, np.nan, np.nan) for t in LAGGED])
    roles = assign_roles(dead, ablation=pd.DataFrame(ablation_rows(0, {"zero": 0.3, "mean": 0.0})))
    assert (roles["role"].iloc[0], roles["decided_by"].iloc[0]) == ("none", "ablation")
    assert (
        roles["evidence"].iloc[0]
        == "constant activation, but used by the output (+30% MSE) as a bias"
    )


def test_duplicate_probe_rows_are_refused():
    probes = pd.concat([separable_probes(), separable_probes().iloc[:1]])
    with pytest.raises(
        DataError, match="several rows for layer 0 unit 0 state 'h' target 'X\\[t\\]'"
    ):
        assign_roles(probes)


@pytest.mark.parametrize("seed", range(8))
def test_random_tables_give_valid_roles(seed):
    rng = np.random.default_rng(seed)
    n_units = 6
    probes = pd.DataFrame(
        [
            probe_row(u, t, rng.uniform(0, 1), rng.uniform(-0.2, 1), rng.uniform(0, 0.2),
                      rng.choice([np.nan, rng.uniform(0, 1)]), coef=rng.normal())
            for u in range(n_units)
            for t in LAGGED
        ]
    )  # fmt: skip
    fields = pd.DataFrame(
        [r for u in range(n_units) for r in rf_rows(u, {c: rng.normal() for c in CELLS})]
    )
    ablation = pd.DataFrame(
        [r for u in range(n_units) for r in ablation_rows(u, {"zero": rng.uniform(0, 0.5)})]
    )
    ident = collinear_identifiability(LAGGED[:2])
    roles = assign_roles(probes, ablation=ablation, receptive_fields=fields, identifiability=ident,
                         target_fields=lagged_fields(),
                         config=RoleConfig(min_field_similarity=0.5))  # fmt: skip
    assert roles["unit"].tolist() == list(range(n_units))
    assert roles["confidence"].between(0, 1).all()
    assert set(roles["decided_by"]) <= {"probe", "receptive_field", "ablation"}
    assert set(roles["role"]) <= {*LAGGED, "K[t-1] + 2*X[t]", "none"}
    assert (roles["evidence"].str.len() > 0).all()
    by_probe = roles[(roles["role"] != "none") & (roles["decided_by"] == "probe")]
    assert (by_probe["r2"] >= 0.5).all() and (by_probe["p_value"] <= 0.05).all()
    by_rf = roles[roles["decided_by"] == "receptive_field"]
    assert (by_rf["field_cosine"].abs() >= 0.5).all()


# ---------------------------------------------------------------------------------------------
# receptive fields: formula, state
# ---------------------------------------------------------------------------------------------
def test_unit_formula_format():
    fields = pd.DataFrame(
        {
            "method": "gradient",
            "state": "h",
            "layer": 0,
            "unit": 3,
            "feature": ["K", "K", "X", "X"],
            "lag": [0, 1, 0, 1],
            "attribution": [0.1, 0.0, 0.01, 0.004],
            "attribution_signed": [0.098, 1e-7, 0.0, -0.004],
        }
    )
    assert unit_formula(fields, 0, 3) == "0.098·K[t] - 0.004·X[t-1]"
    assert unit_formula(fields, 0, 3, top=1) == "0.098·K[t]"
    with pytest.raises(UnitprobeError, match="no receptive-field rows"):
        unit_formula(fields, 0, 5)
    assert unit_formula(fields.assign(attribution_signed=0.0), 0, 3) == "0"
    negative = fields.assign(attribution_signed=[-0.218, 0.0973, 0.0, 0.0705])
    assert unit_formula(negative, 0, 3) == "-0.218·K[t] + 0.0973·K[t-1] + 0.0705·X[t-1]"
    # several methods or states: the first present unless one is chosen
    other = fields.assign(state="c", attribution_signed=[0.0, 0.5, 0.0, 0.0])
    both = pd.concat([other, fields])
    assert unit_formula(both, 0, 3) == "0.5·K[t-1]"
    assert unit_formula(both, 0, 3, state="h") == "0.098·K[t] - 0.004·X[t-1]"
    with pytest.raises(UnitprobeError, match="no receptive-field rows with method == 'saliency'"):
        unit_formula(both, 0, 3, method="saliency")
    with pytest.raises(UnitprobeError, match="top == 0, must be an integer >= 1"):
        unit_formula(fields, 0, 3, top=0)


def test_roles_read_the_receptive_fields_table_and_its_formula():
    tables = collinear_tables()
    fields = tables["receptive_fields"]
    assert list(fields.columns) == list(SCHEMAS["receptive_fields"].columns)
    roles = assign_roles(**tables)
    for unit in range(4):
        assert roles["formula"].iloc[unit] == unit_formula(fields, 0, unit, top=3)
    assert roles["formula"].iloc[1] == "1·K[t-1] + 0.05·K[t] + 0.05·K[t-2]"
    # a used unit that holds no target: the formula explains what it does read
    no_probe = pd.DataFrame([probe_row(u, t, 0.1, 0.0, 0.5, 0.0) for u in range(4) for t in LAGGED])
    roles = assign_roles(**{**tables, "probes": no_probe, "target_fields": None})
    assert roles["role"].tolist() == ["none"] * 4
    assert roles["evidence"].iloc[1] == (
        "used by the output (+12% MSE) but holds no tested target; "
        "h ≈ 1·K[t-1] + 0.05·K[t] + 0.05·K[t-2]"
    )
    # without receptive fields there is no formula
    assert (assign_roles(**{**tables, "receptive_fields": None})["formula"] == "").all()


def test_roles_read_the_receptive_fields_of_the_probed_state():
    tables = collinear_tables()
    h_fields = tables["receptive_fields"]
    # the c fields name the targets in reverse order
    peaks = [("X", 1), ("X", 0), ("K", 1), ("K", 0)]
    c_fields = pd.DataFrame(
        [r for u, c in enumerate(peaks) for r in rf_rows(u, peaked_rf(c), state="c")]
    )
    c_probes = tables["probes"].assign(state="c")
    both_states = pd.concat([h_fields, c_fields])
    roles = assign_roles(**{**tables, "receptive_fields": both_states})
    assert roles["role"].tolist() == LAGGED
    roles = assign_roles(
        **{**tables, "probes": c_probes, "receptive_fields": both_states}, state="c"
    )
    assert roles["role"].tolist() == LAGGED[::-1]
    assert roles["decided_by"].tolist() == ["receptive_field"] * 4
    # one state only: read whatever state it is
    roles = assign_roles(**{**tables, "probes": c_probes, "receptive_fields": h_fields}, state="c")
    assert roles["role"].tolist() == LAGGED
