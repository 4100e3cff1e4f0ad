"""The causal role engine on hand-wired networks: every planted role, in any unit order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unitprobe.config import AnalyzeConfig, RoleConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.attribution import receptive_fields
from unitprobe.methods.roles import assign_causal_roles
from unitprobe.methods.roles.causal import field_matches, term_cell
from unitprobe.methods.roles.fieldnull import (
    FieldNull,
    field_nulls,
    field_test_names,
    field_tests,
    upper_quantile,
)
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.model.planted import planted_lstm
from unitprobe.pipeline.nulls import (
    field_null_networks,
    fit_readout,
    null_networks,
    null_statistics,
    null_thresholds,
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
    """The receptive-field null the pipeline draws: every unit of untrained networks of the
    null widths."""
    model = UnitLSTM(planted_lstm(2, LIVE + [None, None], n_outputs=2).config)
    config = RoleConfig()
    nets = field_null_networks(model, config.null_widths, config.null_units, seed=4242)
    return null_statistics(nets, seed_data, terms=TERMS, max_lag=4, n_costly=0)


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


def test_untrained_networks_rarely_beat_the_null(seed_data, nulls):
    """A unit of an untrained network beats the per-unit threshold with probability at most
    the level (0.01) when it is drawn like the null units; 6-unit networks read their inputs
    less purely than the 4-unit null, so 120 of their units should give about one role from
    the mechanism alone, and no more than a few."""
    n_roles = 0
    for k in range(20):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(777 + k)
            net = UnitLSTM(planted_lstm(2, LIVE + [None, None], n_outputs=2).config)
        roles = _roles(fit_readout(net, seed_data), seed_data, nulls)
        n_roles += int((roles["role"] != "none").sum())
    assert n_roles <= 3


def _interchange(transfers: dict[tuple[int, str], float | tuple]) -> pd.DataFrame:
    """Single-unit rows; a value is a transfer, or (transfer, lo, hi, effect)."""
    rows = []
    for (u, t), v in transfers.items():
        row = {"layer": 0, "units": str(u), "term": t}
        if isinstance(v, tuple):
            row.update(zip(("transfer", "transfer_lo", "transfer_hi", "effect"), v, strict=True))
        else:
            row["transfer"] = v
        rows.append(row)
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
    assert (
        "patching it transfers 97% of K[t-1], more than any other term; next 1% of K[t]"
        in (roles.loc[1, "evidence"])
    )
    assert "the output uses it for K[t], not for X[t-1]" in roles.loc[3, "evidence"]
    assert roles.loc[3, "runner_up"] == "X[t-1]"


def test_transfers_compare_by_their_intervals_among_material_terms(seed_data, nulls):
    model = fit_readout(planted_lstm(2, LIVE, n_outputs=2), seed_data)
    table = _interchange({
        # a rival whose effect is float rounding (a leaking forget gate) is no rival
        (0, "K[t]"): (0.40, 0.35, 0.45, 0.05), (0, "K[t-2]"): (1.0, 0.99, 1.01, 2e-6),
        # overlapping intervals: the interchange cannot single out the role
        (1, "K[t-1]"): (0.30, 0.20, 0.40, 0.03), (1, "X[t]"): (0.35, 0.25, 0.45, 0.04),
        # a transfer indistinguishable from 0 decides nothing
        (2, "X[t]"): (0.01, -0.02, 0.04, 0.04),
        # a rival clearly above the role vetoes it
        (3, "X[t-1]"): (0.10, 0.05, 0.15, 0.02), (3, "K[t]"): (0.60, 0.50, 0.70, 0.05),
    })  # fmt: skip
    roles = _roles(model, seed_data, nulls, table)
    assert roles["role"].tolist() == ["K[t]", "K[t-1]", "X[t]", "none"]
    assert roles["decided_by"].tolist() == [
        "interchange", "receptive_field", "receptive_field", "interchange",
    ]  # fmt: skip
    assert "next" not in roles.loc[0, "evidence"]  # K[t-2] was not compared
    assert roles.loc[1, "confidence"] == pytest.approx(0.5 * roles.loc[1, "null_percentile"])
    assert roles.loc[1, "evidence"].endswith(
        "patching it transfers 30% of K[t-1] [20%, 40%] and about as much of X[t] (35% of X[t] "
        "[25%, 45%]; the intervals overlap): the interchange cannot single out K[t-1]"
    )
    assert "no measurable share of the output's change" in roles.loc[2, "evidence"]
    assert "clearly less than 60% of K[t] [50%, 70%]" in roles.loc[3, "evidence"]


def test_a_rival_vetoes_a_role_only_where_its_effect_is_material(seed_data, nulls):
    # the same rival at 2e-6 of effect vetoes nothing; raised to a material effect it does
    model = fit_readout(planted_lstm(2, LIVE, n_outputs=2), seed_data)
    base = {(1, "K[t-1]"): (0.5, 0.45, 0.55, 0.03)}
    for effect, expected in ((2e-6, "K[t-1]"), (0.03, "none")):
        rival = {(1, "K[t-2]"): (1.0, 0.99, 1.01, effect)}
        roles = _roles(model, seed_data, nulls, _interchange({**base, **rival}))
        assert roles.loc[1, "role"] == expected


def test_field_matches_and_formula_text():
    field = {("K", 0): 0.07, ("X", 0): 0.03, ("X", 1): 0.0}
    ranked, cos = field_matches(field, [term_cell(t) for t in TERMS], max_terms=2)
    assert ranked[0] == (("K", 0), pytest.approx(0.07 / np.hypot(0.07, 0.03)))
    assert cos == [pytest.approx(0.07 / np.hypot(0.07, 0.03)), pytest.approx(1.0)]
    assert field_matches({}, [("K", 0)])[1][0] != field_matches({}, [("K", 0)])[1][0]  # NaN
    with pytest.raises(DataError, match="term 'K\\[t\\] \\+ X\\[t\\]' is not a series at a lag"):
        term_cell("K[t] + X[t]")


def test_field_tests_equal_field_matches_unit_by_unit():
    rng = np.random.default_rng(4)
    names = ["K", "X"]
    signed = rng.normal(size=(4, 2, 7)) * np.array([1e-6, 1.0, 1e3, 1, 1, 1, 1])
    signed[:, :, 3] = 0.0  # a zero field: NaN
    signed[2, 1, 4] = np.nan  # NaN counts as 0
    terms = [*TERMS, "X[t-9]"]  # outside the field: 0
    cells = [term_cell(t) for t in terms]
    got = field_tests(signed, names, cells)
    tests = field_test_names(terms)
    assert got.shape == (7, len(tests)) and tests[len(terms)] == "K[t] + K[t-1]"
    for unit in range(7):
        if unit == 3:
            continue
        field = {
            (name, lag): float(np.nan_to_num(signed[lag, f, unit]))
            for f, name in enumerate(names)
            for lag in range(4)
        }
        ranked, cos_k = field_matches(field, cells, max_terms=2)
        coef = {c: abs(v) for c, v in ranked}
        np.testing.assert_allclose(got[unit, : len(terms)], [coef[c] for c in cells], rtol=1e-12)
        top = sorted(cells.index(c) for c, _ in ranked[:2])
        pair = tests.index(f"{terms[top[0]]} + {terms[top[1]]}")
        assert got[unit, pair] == pytest.approx(cos_k[1], rel=1e-12)
        assert got[unit].max() == pytest.approx(cos_k[1], rel=1e-12)  # the best pair
    assert np.isnan(got[3]).all()
    with pytest.raises(DataError, match="needs at least one candidate cell"):
        field_tests(signed, names, [])


def test_an_empty_null_is_refused(seed_data):
    model = planted_lstm(2, LIVE, n_outputs=2)
    fields = receptive_fields(model, seed_data.inputs, seed_data.input_names, max_lag=2)
    with pytest.raises(DataError, match="the receptive-field null is empty"):
        assign_causal_roles(fields, nulls={}, terms=TERMS)
    with pytest.raises(DataError, match="every unit dead"):
        assign_causal_roles(fields, nulls={"K[t]": [np.nan]}, terms=TERMS)


def test_null_thresholds_are_a_per_unit_level_of_every_test(seed_data):
    model = planted_lstm(2, LIVE, n_outputs=2)
    nets = null_networks(model, seed_data, 100, seed=1, width=4)
    table = null_statistics(nets, seed_data, terms=TERMS, max_lag=3, n_costly=0)
    assert set(table["network"]) == set(range(100)) and set(table["unit"]) == set(range(4))
    assert set(table["term"]) == set(field_test_names(TERMS))
    summary = null_thresholds(table, level=0.05)["0"]
    (null,) = field_nulls(table, 0.05).values()
    wide = table.pivot_table(index=["network", "unit"], columns="term", values="value")
    wide = wide[field_test_names(TERMS)].dropna().to_numpy()
    n = wide.shape[0]
    assert summary["n_units"] == n == null.n_units
    # each null unit's most extreme test, as a share of the null values below it
    below = np.column_stack([(wide[:, [j]] > wide[:, j]).sum(axis=1) for j in range(wide.shape[1])])
    share = summary["shares"]["4"]  # one width: one group
    assert share == upper_quantile(below.max(axis=1) / n, 0.05)
    exceed = (below / n > share).any(axis=1).mean()
    assert exceed <= 0.05  # the null's own units pass some test at most at the level
    for j, name in enumerate(field_test_names(TERMS)):
        t = summary["tests"][name]
        assert ((wide[:, j] > t) == (below[:, j] / n > share)).all(), name
    # the current input is read purely by chance far more often than an old lag
    assert summary["tests"]["K[t]"] > summary["tests"]["K[t-2]"]
    again = null_statistics(nets, seed_data, terms=TERMS, max_lag=3, n_costly=0)
    pd.testing.assert_frame_equal(table, again)


def test_the_conformal_threshold_bounds_the_false_positive_rate():
    rng = np.random.default_rng(0)
    assert upper_quantile([3.0, 1.0, 2.0, np.nan], 0.25) == 3.0  # k = ceil(0.75 * 4) = 3
    assert upper_quantile([3.0, 1.0, 2.0], 0.2) == np.inf  # k = 4 > n: nothing beats it
    exceed = []
    for _ in range(400):  # fresh draws from the null's own distribution
        null = rng.normal(size=199)
        exceed.append(rng.normal() > upper_quantile(null, 0.05))
    assert np.mean(exceed) <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 400)
    # a per-unit level: pooling more null units does not move the threshold upwards
    wide = [upper_quantile(rng.normal(size=n), 0.01) for n in (1000, 10000, 100000)]
    assert max(wide) - min(wide) < 0.3 and all(2.0 < t < 2.7 for t in wide)


def test_every_test_is_calibrated_per_width_and_takes_the_largest_threshold():
    values = [[0.5, 0.1, 0.6], [0.9, 0.2, 0.95], [0.7, 0.3, 0.99], [0.8, 0.05, 0.9]]
    null = FieldNull(values, ["A", "B", "A + B"], level=0.25)
    # each null unit's largest share of a test's null values below it: 1/4, 3/4, 3/4, 2/4;
    # their conformal 0.75 quantile is the ceil(0.75 * 5) = 4th smallest
    assert null.shares == {0: 0.75}
    assert null.threshold("A") == 0.9 and null.threshold("B") == 0.3  # index floor(0.75 * 4)
    assert null.passes(0.95, "A") and not null.passes(0.9, "A")
    assert null.passes(0.35, "B")  # B is read purely far less often: a lower bar
    assert null.percentile(0.8, "A") == pytest.approx(2 / 4)
    with pytest.raises(DataError, match="the null has no test 'C'"):
        null.threshold("C")
    # a second group (another width) that reads B purely more often raises B's bar only
    wider = [[0.6, 0.5, 0.8], [0.7, 0.6, 0.9], [0.65, 0.7, 0.95], [0.5, 0.8, 0.97]]
    both = FieldNull(values + wider, ["A", "B", "A + B"], 0.25, groups=[4] * 4 + [16] * 4)
    assert both.threshold("A") == 0.9 and both.threshold("B") == 0.8
    assert set(both.shares) == {4, 16}
    # a group too small for the level: nothing beats it, and the config refuses it up front
    few = FieldNull(values, ["A", "B", "A + B"], level=0.1)  # ceil(0.9 * 5) = 5 > 4 units
    assert few.threshold("A") == np.inf and not few.passes(1.0, "A")
    message = (
        "null_units == 64 is too few for unit_level 0.01: a unit can beat the null at that "
        "level only with at least 99 null units"
    )
    with pytest.raises(UnitprobeError, match=f"^{message}$"):
        RoleConfig(null_units=64)
    message = (
        "n_null_directions == 19 is too few for direction_level 0.025: a direction can beat "
        "the null at that level only with at least 39 null networks"
    )
    with pytest.raises(UnitprobeError, match=f"^{message}$"):
        RoleConfig(n_null_directions=19)
    assert RoleConfig(n_null_directions=19, direction_level=0.05).n_null_directions == 19
    assert RoleConfig(n_null_directions=0, directions=False).n_null_directions == 0


def test_the_null_widths_are_the_same_whatever_the_layer_width():
    from unitprobe.pipeline.verdicts import null_widths

    config = AnalyzeConfig()
    layers = {w: null_widths(UnitLSTM(ModelConfig(2, w, 2)), config) for w in (2, 6, 8, 16, 64)}
    assert layers[6] == layers[8] == layers[16] == layers[64] == [4, 16, 64]
    assert layers[2] == [4, 16, 64, 2]  # a narrower layer reads its inputs more purely
    # the fixed widths' null networks are the same whatever the analyzed width
    from unitprobe.pipeline.nulls import field_null_networks

    wide = field_null_networks(UnitLSTM(ModelConfig(2, 8, 2)), layers[8], 8, seed=3)
    narrow = field_null_networks(UnitLSTM(ModelConfig(2, 2, 2)), layers[2], 8, seed=3)
    assert [n.config.n_units for n in narrow] == [4, 4, 16, 64, 2, 2, 2, 2]
    for a, b in zip(wide, narrow[:4], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_a_field_outside_every_candidate_term_names_nothing():
    from unitprobe.methods.roles.causal import _Mechanism

    null = FieldNull(np.random.default_rng(0).uniform(size=(200, 3)),
                     ["K[t]", "K[t-1]", "K[t] + K[t-1]"], 0.05)  # fmt: skip
    mechanism = _Mechanism({("X", 0): 0.5, ("K", 0): 0.0, ("K", 1): 0.0},
                           [("K", 0), ("K", 1)], null, 2, 0.1)  # fmt: skip
    assert (mechanism.k, mechanism.tested, mechanism.cos_k) == (0, 0, [0.0, 0.0])
