"""Tests of the foundation modules: validation, the config tree, seed streams, schemas, Tables."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from unitprobe import schemas
from unitprobe.config import AblationConfig, AnalyzeConfig, AttributionConfig, ProbeConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.seeds import STREAMS, stream_seed, stream_seeds
from unitprobe.tables import Tables
from unitprobe.validation import (
    check_choice,
    check_choices,
    check_columns,
    check_float,
    check_int,
    is_int,
)

# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def test_check_int_returns_python_ints_and_names_value_and_range():
    assert check_int(np.int64(3), "n", minimum=1) == 3 and type(check_int(3, "n")) is int
    assert check_int(None, "n", allow_none=True) is None
    for bad, message in [
        (True, "n == True, must be an integer >= 1"),
        (2.0, "n == 2.0, must be an integer >= 1"),
        (0, "n == 0, must be an integer >= 1"),
        ("3", "n == '3', must be an integer >= 1"),
    ]:
        with pytest.raises(UnitprobeError, match=f"^{message}$"):
            check_int(bad, "n", minimum=1)
    with pytest.raises(DataError, match=r"k == 9, must be an integer in \[0, 5\]"):
        check_int(9, "k", minimum=0, maximum=5, error=DataError)
    assert is_int(np.int8(1)) and not is_int(np.bool_(True)) and not is_int(1.0)


def test_check_float_refuses_nan_inf_and_bools_and_honours_strict_bounds():
    assert check_float(1, "x") == 1.0
    for bad in (float("nan"), float("inf"), True, "1"):
        with pytest.raises(UnitprobeError, match="must be a finite number"):
            check_float(bad, "x")
    with pytest.raises(UnitprobeError, match="^a == 0.0, must be a finite number > 0$"):
        check_float(0.0, "a", minimum=0, strict_minimum=True)
    with pytest.raises(UnitprobeError, match=r"^f == 1, must be a finite number >= 0 and < 1$"):
        check_float(1, "f", minimum=0, maximum=1, strict_maximum=True)


def test_check_choice_lists_what_is_allowed():
    assert check_choice("mean", "mode", schemas.ABLATION_MODES) == "mean"
    with pytest.raises(
        UnitprobeError, match="^mode == 'max', must be one of zero, mean, resample$"
    ):
        check_choice("max", "mode", schemas.ABLATION_MODES)
    assert check_choices("h", "state", ("h", "c")) == ("h",)
    assert check_choices(["h", "c"], "state", ("h", "c")) == ("h", "c")
    with pytest.raises(UnitprobeError, match="state is empty"):
        check_choices([], "state", ("h", "c"))
    with pytest.raises(DataError, match="^probes table is missing columns r2, unit$"):
        check_columns(pd.DataFrame({"layer": [0]}), ("layer", "r2", "unit"), "probes")


# ---------------------------------------------------------------------------------------------
# config tree
# ---------------------------------------------------------------------------------------------


def test_flat_options_reach_their_stage_and_round_trip_through_plain_data():
    config = AnalyzeConfig.from_options(
        n_sequences=64, n_permutations=19, ablation_modes=["zero"], max_attribution_sequences=8
    )
    assert config.probes.n_permutations == 19 and config.ablation.modes == ("zero",)
    assert config.attribution.max_sequences == 8 and config.n_sequences == 64
    assert AnalyzeConfig.from_dict(config.to_dict()) == config
    assert config.replace(seed=3).seed == 3 and config.seed == 0  # frozen: a copy
    with pytest.raises(UnitprobeError, match="unknown analysis option.*n_perms"):
        AnalyzeConfig.from_options(n_perms=3)
    with pytest.raises(UnitprobeError, match="ablation mode == 'max'"):
        AnalyzeConfig.from_options(ablation_modes=("max",))
    with pytest.raises(UnitprobeError, match="n_permutations == 0"):
        ProbeConfig(n_permutations=0)


def _default(func, name):
    return inspect.signature(func).parameters[name].default


def test_each_parameter_has_one_default_whichever_way_it_is_reached():
    from unitprobe.methods.ablation import ablation_table
    from unitprobe.methods.attribution import input_lag_attribution, unit_attribution
    from unitprobe.methods.probes import permutation_pvalues, unit_probes

    assert _default(permutation_pvalues, "n_permutations") == ProbeConfig.n_permutations
    assert _default(unit_probes, "alpha") == ProbeConfig.alpha
    assert _default(unit_probes, "n_splits") == ProbeConfig.n_splits
    assert _default(ablation_table, "modes") == AblationConfig.modes
    assert _default(input_lag_attribution, "baseline") == AttributionConfig.baseline
    assert _default(unit_attribution, "baseline") == AttributionConfig.baseline


# ---------------------------------------------------------------------------------------------
# seed streams
# ---------------------------------------------------------------------------------------------


def test_seed_streams_are_distinct_stable_and_never_the_user_seed():
    seeds = stream_seeds(0)
    assert list(seeds) == list(STREAMS) and len(set(seeds.values())) == len(STREAMS)
    assert stream_seeds(0) == seeds and stream_seeds(1) != seeds
    assert all(0 <= s < 2**31 for s in seeds.values())
    assert 0 not in seeds.values()  # a control network is never seeded like training seed 0
    assert stream_seed(2**63 - 1, "data") != stream_seed(2**62, "data")
    with pytest.raises(UnitprobeError, match="stream == 'noise'"):
        stream_seed(0, "noise")


# ---------------------------------------------------------------------------------------------
# schemas and Tables
# ---------------------------------------------------------------------------------------------


def test_every_table_has_its_own_kind_of_row():
    for schema in schemas.SCHEMAS.values():
        assert len(set(schema.columns)) == len(schema.columns), schema.name
        empty = schema.empty()
        assert list(empty.columns) == list(schema.columns) and len(empty) == 0
    assert "kind" not in schemas.columns("receptive_fields")
    assert "target" not in schemas.columns("ablation")


def test_tables_round_trip_through_csv_with_their_dtypes(tmp_path):
    roles = pd.DataFrame(
        {c: [None, None] for c in schemas.columns("roles")}
        | {
            "layer": [0, 0],
            "unit": [0, 1],
            "role": ["K[t]", "none"],
            "used": [True, False],
            "confidence": [0.5, np.nan],
            "evidence": ['a, "quoted" text', None],
        }
    )
    given = roles.copy()
    tables = Tables({"roles": roles})
    assert roles.equals(given)  # the frame passed in is not modified
    tables.write(tmp_path)
    back = Tables.read(tmp_path, ("roles",))
    pd.testing.assert_frame_equal(back["roles"], tables["roles"])
    assert back["roles"]["unit"].dtype == np.int64 and back["roles"]["used"].dtype == bool
    assert back["roles"]["evidence"].tolist() == ['a, "quoted" text', None]


def test_tables_refuse_unknown_names_missing_columns_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no table named 'role'"):
        Tables({"role": pd.DataFrame()})
    with pytest.raises(DataError, match="vif table is missing columns"):
        Tables({"vif": pd.DataFrame({"target": ["a"]})})
    with pytest.raises(DataError, match="has no probes.csv, roles.csv"):
        Tables.read(tmp_path, ("probes", "roles"))
    (tmp_path / "vif.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="vif.csv"):
        Tables.read(tmp_path)
    with pytest.raises(KeyError, match="no 'probes' table"):
        Tables({})["probes"]


def test_coerce_reads_true_false_text_of_any_string_dtype():
    text = pd.Series(["True", "False", "0"], dtype="str")
    df = pd.DataFrame({"target_a": ["a"] * 3, "target_b": ["b"] * 3, "r2": 1, "separable": text})
    assert schemas.SCHEMAS["identifiability"].coerce(df)["separable"].tolist() == [
        True,
        False,
        False,
    ]
    with pytest.raises(ValueError, match="cannot read 'maybe' as true or false"):
        schemas.SCHEMAS["identifiability"].coerce(df.assign(separable="maybe"))
