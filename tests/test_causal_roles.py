"""The causal role engine on hand-wired networks: every planted role, in any unit order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unitprobe.config import RoleConfig
from unitprobe.errors import DataError
from unitprobe.methods.attribution import receptive_fields
from unitprobe.methods.roles import assign_causal_roles
from unitprobe.methods.roles.causal import field_match_cosines, field_matches, term_cell
from unitprobe.model.lstm import UnitLSTM
from unitprobe.model.planted import planted_lstm
from unitprobe.pipeline.nulls import (
    fit_readout,
    null_networks,
    null_statistics,
    null_thresholds,
    null_values,
)
from unitprobe.tasks import generate, get_preset

TERMS = ["K[t]", "K[t-1]", "K[t-2]", "X[t]", "X[t-1]", "X[t-2]"]
LIVE = [(0, 0), (0, 1), (1, 0), (1, 1)]
NAMES = {(0, 0): "K[t]", (0, 1): "K[t-1]", (1, 0): "X[t]", (1, 1): "X[t-1]", (1, 2): "X[t-2]"}


@pytest.fixture(scope="module")
def seed_data():
    return generate(get_preset("seed"), n_sequences=128, seed=7)


@pytest.fixture(scope="module")
def nulls(seed_data):
    """Null statistics of 50 untrained 6-unit networks with least-squares readouts."""
    model = UnitLSTM(planted_lstm(2, LIVE + [None, None], n_outputs=2).config)
    nets = null_networks(model, seed_data, RoleConfig.n_null, seed=4242)
    table = null_statistics(
        nets, seed_data, terms=TERMS, max_lag=4, ablation_sequences=32, n_costly=1
    )
    return {name: null_values(table, name) for name in ("field_cosine", "formula_cosine")}


def _roles(model, data, nulls, interchange=None):
    fields = receptive_fields(model, data.inputs, data.input_names, max_lag=4)
    return assign_causal_roles(fields, interchange, nulls=nulls, terms=TERMS)


@pytest.mark.parametrize("order_seed", range(4))
@pytest.mark.parametrize("n_dead", [0, 3])
def test_every_planted_role_in_any_unit_order_with_dead_units(seed_data, nulls, order_seed, n_dead):
    taps = LIVE + [None] * n_dead
    order = np.random.default_rng(order_seed).permutation(len(taps))
    taps = [taps[i] for i in order]
    model = fit_readout(planted_lstm(2, taps, n_outputs=2), seed_data)
    roles = _roles(model, seed_data, nulls)
    expected = [NAMES[t] if t is not None else "none" for t in taps]
    assert roles["role"].tolist() == expected
    live = roles[roles["role"] != "none"]
    assert (live["kind"] == "term").all() and (live["field_cosine"] > 0.9999).all()
    assert (live["null_percentile"] == 1.0).all()
    dead = roles[roles["role"] == "none"]
    assert dead["evidence"].str.startswith("dead").all()


def test_redundant_units_are_both_named_and_list_each_other(seed_data, nulls):
    taps = [(1, 0), (1, 1), (1, 1), (0, 0)]
    model = fit_readout(planted_lstm(2, taps, n_outputs=2), seed_data)
    roles = _roles(model, seed_data, nulls)
    assert roles["role"].tolist() == ["X[t]", "X[t-1]", "X[t-1]", "K[t]"]
    assert roles["shared_with"].tolist() == ["", "2", "1", ""]
    assert roles.loc[1, "evidence"].endswith("shared with unit(s) 2")


def test_a_lag_two_unit_fed_by_a_chain_is_named(seed_data, nulls):
    taps = [(1, 2), (1, 0), (1, 1)]
    model = fit_readout(planted_lstm(2, taps, n_outputs=2), seed_data)
    assert _roles(model, seed_data, nulls)["role"].tolist() == ["X[t-2]", "X[t]", "X[t-1]"]


def test_untrained_networks_rarely_beat_every_null_unit(seed_data, nulls):
    """A role needs a match above all 300 null units: a unit of another untrained network does
    so with probability 1/301, so 20 networks of 6 units should give about 0.4 roles."""
    n_roles = 0
    for k in range(20):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(777 + k)
            net = UnitLSTM(planted_lstm(2, LIVE + [None, None], n_outputs=2).config)
        roles = _roles(fit_readout(net, seed_data), seed_data, nulls)
        n_roles += int((roles["role"] != "none").sum())
    assert n_roles <= 3


def _interchange(transfers: dict[tuple[int, str], float]) -> pd.DataFrame:
    rows = [
        {"layer": 0, "units": str(u), "term": t, "transfer": v} for (u, t), v in transfers.items()
    ]
    return pd.DataFrame(rows)


def test_interchange_confirms_or_vetoes_the_mechanism(seed_data, nulls):
    model = fit_readout(planted_lstm(2, LIVE, n_outputs=2), seed_data)
    confirm = {(1, "K[t-1]"): 0.97, (1, "K[t]"): 0.01, (2, "X[t]"): 0.99}
    veto = {(3, "X[t-1]"): 0.05, (3, "K[t]"): 0.6}
    roles = _roles(model, seed_data, nulls, _interchange({**confirm, **veto}))
    assert roles["role"].tolist() == ["K[t]", "K[t-1]", "X[t]", "none"]
    assert roles["decided_by"].tolist() == [
        "receptive_field",  # no counterfactual measured for unit 0
        "interchange",
        "interchange",
        "interchange",
    ]
    assert roles.loc[1, "transfer"] == pytest.approx(0.97)
    assert "patching it transfers 97% of K[t-1]; next 1% of K[t]" in roles.loc[1, "evidence"]
    assert "the output does not use it for X[t-1]" in roles.loc[3, "evidence"]
    assert roles.loc[3, "runner_up"] == "X[t-1]"


def test_a_tie_with_another_term_leaves_the_mechanism_to_decide(seed_data, nulls):
    # a unit that is the whole state transfers every term alike: float rounding must not
    # decide between them, and the interchange cannot single the role out
    model = fit_readout(planted_lstm(2, LIVE, n_outputs=2), seed_data)
    ties = {(1, "K[t-1]"): 1.0, (1, "X[t]"): 1.0 + 1e-7, (2, "X[t]"): 0.9995, (2, "K[t]"): 1.0}
    clear = {(3, "X[t-1]"): 0.998, (3, "K[t]"): 1.0}  # 0.2 % apart: the rival wins
    roles = _roles(model, seed_data, nulls, _interchange({**ties, **clear}))
    assert roles["role"].tolist() == ["K[t]", "K[t-1]", "X[t]", "none"]
    assert roles["decided_by"].tolist()[1:] == ["receptive_field"] * 2 + ["interchange"]
    assert roles.loc[1, "confidence"] == pytest.approx(0.5 * roles.loc[1, "null_percentile"])
    assert roles.loc[1, "evidence"].endswith(
        "; patching it transfers 100% of K[t-1] and as much of X[t] (100%): the interchange "
        "cannot single out K[t-1]"
    )
    assert "the output does not use it for X[t-1]" in roles.loc[3, "evidence"]


def test_field_matches_and_formula_text():
    field = {("K", 0): 0.07, ("X", 0): 0.03, ("X", 1): 0.0}
    ranked, cos = field_matches(field, [term_cell(t) for t in TERMS], max_terms=2)
    assert ranked[0] == (("K", 0), pytest.approx(0.07 / np.hypot(0.07, 0.03)))
    assert cos == [pytest.approx(0.07 / np.hypot(0.07, 0.03)), pytest.approx(1.0)]
    assert field_matches({}, [("K", 0)])[1][0] != field_matches({}, [("K", 0)])[1][0]  # NaN
    with pytest.raises(DataError, match="term 'K\\[t\\] \\+ X\\[t\\]' is not a series at a lag"):
        term_cell("K[t] + X[t]")


def test_field_match_cosines_equal_field_matches_unit_by_unit():
    rng = np.random.default_rng(4)
    names = ["K", "X"]
    signed = rng.normal(size=(4, 2, 7)) * np.array([1e-6, 1.0, 1e3, 1, 1, 1, 1])
    signed[:, :, 3] = 0.0  # a zero field: NaN
    signed[2, 1, 4] = np.nan  # NaN counts as 0
    cells = [term_cell(t) for t in TERMS] + [("X", 9), ("Q", 0)]  # outside the field: 0
    got = field_match_cosines(signed, names, cells, max_terms=2)
    for unit in range(7):
        field = {
            (name, lag): float(np.nan_to_num(signed[lag, f, unit]))
            for f, name in enumerate(names)
            for lag in range(4)
        }
        np.testing.assert_array_equal(got[unit], field_matches(field, cells, max_terms=2)[1])
    assert np.isnan(got[3]).all()
    with pytest.raises(DataError, match="needs at least one candidate cell"):
        field_match_cosines(signed, names, [])


def test_a_thin_null_is_refused(seed_data):
    model = planted_lstm(2, LIVE, n_outputs=2)
    fields = receptive_fields(model, seed_data.inputs, seed_data.input_names, max_lag=2)
    with pytest.raises(DataError, match="nulls\\['field_cosine'\\] is empty"):
        assign_causal_roles(fields, nulls={"formula_cosine": [0.5]}, terms=TERMS)


def test_null_thresholds_are_the_largest_null_values(seed_data):
    model = planted_lstm(2, LIVE, n_outputs=2)
    nets = null_networks(model, seed_data, 2, seed=1)
    table = null_statistics(nets, seed_data, terms=TERMS, max_lag=3, ablation_sequences=16)
    assert set(table["network"]) == {0, 1} and set(table["unit"]) == set(range(4))
    thresholds = null_thresholds(table)
    assert thresholds["field_cosine"] == table.query("statistic == 'field_cosine'")["value"].max()
    assert 0 < thresholds["field_cosine"] <= thresholds["formula_cosine"] <= 1
    again = null_statistics(nets, seed_data, terms=TERMS, max_lag=3, ablation_sequences=16)
    pd.testing.assert_frame_equal(table, again)
