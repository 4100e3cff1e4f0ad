"""The ground-truth benchmark: families with known contents, their scoring and the rates.

The scoring and rate functions give exact counts and intervals on hand-made tables; every
family's generator is deterministic and its truth is what the network holds; end to end, the
planted roles of a few hand-wired networks are named and untrained networks get none.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import beta

from unitprobe.config import AnalyzeConfig
from unitprobe.model.planted import planted_terms
from unitprobe.pipeline.groundtruth import (
    FAMILIES,
    NetworkSpec,
    benchmark_specs,
    build_network,
    family_specs,
    run_benchmark,
    task_spec,
)
from unitprobe.pipeline.verdict_rates import (
    LEARNED_NOTHING,
    clopper_pearson,
    rates_markdown,
    role_terms,
    score_terms,
    score_units,
    verdict_rates,
)

# roles are decided before the direction searches, which only fill the terms table
LIGHT = AnalyzeConfig.from_options(
    n_sequences=64, n_permutations=19, n_controls=1, n_null_interventions=1, directions=False
)


def _expected(family, network, rows):
    """Expected-unit rows: (unit, expected_kind, expected, expected_terms, redundant_with)."""
    cols = ["unit", "expected_kind", "expected", "expected_terms", "redundant_with"]
    table = pd.DataFrame(rows, columns=cols)
    return table.assign(family=family, network=network, layer=0)


def _roles(rows):
    """Roles rows: (unit, role, kind, shared_with)."""
    table = pd.DataFrame(rows, columns=["unit", "role", "kind", "shared_with"])
    return table.assign(layer=0, decided_by="interchange", evidence="")


def _scored_units():
    planted = score_units(
        _expected("hand-wired", "a", [
            (0, "term", "K[t]", "K[t]", ""),
            (1, "term", "K[t-1]", "K[t-1]", "3"),
            (2, "formula", "0.7·K[t] + 0.3·X[t]", "K[t],X[t]", ""),
            (3, "term", "K[t-1]", "K[t-1]", "1"),
            (4, "none", "none", "", ""),
            (5, "nothing", "", "", ""),
        ]),
        _roles([
            (0, "K[t]", "term", ""),
            (1, "K[t-1]", "term", "3"),
            (2, "0.6·X[t] + 0.4·K[t]", "formula", ""),
            (3, "X[t]", "term", ""),  # a redundant copy named wrong
            (4, "none", "none", ""),
            (5, "X[t-1]", "term", ""),  # filler named: a false positive
        ]),
    )  # fmt: skip
    masked = score_units(
        _expected("masked", "b", [
            (0, "subset", "", "K[t-1],X[t]", ""),
            (1, "subset", "", "K[t],X[t]", ""),
            (2, "unbounded", "", "", ""),
        ]),
        _roles([(0, "X[t]", "term", ""), (1, "none", "none", ""), (2, "K[t]", "term", "")]),
    )  # fmt: skip
    nothing = score_units(
        _expected("untrained", "c", [(u, "nothing", "", "", "") for u in range(4)]),
        _roles([(0, "none", "none", ""), (1, "none", "none", ""), (2, "K[t]", "term", ""),
                (3, "none", "none", "")]),
    )  # fmt: skip
    return pd.concat([planted, masked, nothing], ignore_index=True)


def _scored_terms():
    def table(family, network, rows):
        expected = pd.DataFrame(rows, columns=["term", "expected_verdict", "verdict"])
        got = expected[["term", "verdict"]].assign(layer=0, evidence="")
        return score_terms(
            expected.drop(columns="verdict").assign(family=family, network=network, layer=0), got
        )

    rotated = table("rotated", "r", [("K[t-1]", "distributed", "distributed"),
                                     ("X[t-1]", "distributed", "generic"),
                                     ("K[t]", "", "unit")])  # fmt: skip
    blank = table("untrained", "c", [("K[t]", "nothing", "unit"), ("K[t-1]", "nothing", "unused"),
                                     ("X[t]", "nothing", "distributed"),
                                     ("X[t-1]", "nothing", "generic")])  # fmt: skip
    return pd.concat([rotated, blank], ignore_index=True)


def _rate(rates, verdict, statistic, on):
    row = rates[(rates["verdict"] == verdict) & (rates["statistic"] == statistic)
                & rates["measured_on"].str.startswith(on)]  # fmt: skip
    assert len(row) == 1, (verdict, statistic, on)
    return row.iloc[0]


def test_scoring_follows_the_rules_for_each_expected_kind():
    units = _scored_units()
    # a formula is right when its terms are the planted ones, whatever the coefficients
    assert units["correct"].tolist()[:6] == [True, True, True, False, True, False]
    assert units["correct"].tolist()[6:8] == [True, False]  # a term among the unit's reads
    assert units["correct"].isna().tolist()[8]  # unbounded: not scored
    assert role_terms("0.6·X[t] - 0.4·K[t-12]") == {"X[t]", "K[t-12]"}
    terms = _scored_terms()
    assert terms["correct"].tolist()[:2] == [True, False] and pd.isna(terms["correct"][2])
    assert terms["correct"].tolist()[3:] == [False, True, False, True]


def test_rates_count_exactly_with_clopper_pearson_intervals():
    rates = verdict_rates(_scored_units(), _scored_terms())
    recall = _rate(rates, "term", "recall", "planted single-term")
    assert (recall["n"], recall["k"]) == (3, 2) and recall["rate"] == pytest.approx(2 / 3)
    assert recall["lo"] == pytest.approx(beta.ppf(0.025, 2, 2))
    assert recall["hi"] == pytest.approx(beta.ppf(0.975, 3, 1))
    precision = _rate(rates, "term", "precision", "units named a term")
    assert (precision["n"], precision["k"]) == (5, 3)  # wrong: the copy and the filler
    assert (_rate(rates, "formula", "recall", "2-term")[["n", "k"]] == [1, 1]).all()
    assert (_rate(rates, "term or formula", "recall", "masked")[["n", "k"]] == [2, 1]).all()
    assert (_rate(rates, "none", "recall", "dead")[["n", "k"]] == [1, 1]).all()
    assert (_rate(rates, "shared", "recall", "redundant")[["n", "k"]] == [2, 1]).all()
    untrained = _rate(rates, "any role", "false positives", "units of untrained")
    assert (untrained["n"], untrained["k"]) == (4, 1)
    assert (_rate(rates, "any role", "false positives", "every")[["n", "k"]] == [5, 2]).all()
    # the pooled rows are the sums of the rows they pool
    recall = rates[(rates["statistic"] == "recall") & rates["verdict"].isin(["term", "formula",
                   "term or formula"])]  # fmt: skip
    pooled = recall["measured_on"].str.startswith("every")
    assert (
        recall[pooled][["n", "k"]].to_numpy() == recall[~pooled][["n", "k"]].sum().to_numpy()
    ).all()
    nothing = rates[(rates["statistic"] == "false positives") & rates["measured_on"].isin(
        [f"units of {f} networks" for f in LEARNED_NOTHING])]  # fmt: skip
    learned = _rate(rates, "any role", "false positives", "units of networks that learned")
    assert (learned[["n", "k"]].to_numpy() == nothing[["n", "k"]].sum().to_numpy()).all()
    # term verdicts of learned-nothing networks: the unused one is left out of the 4
    assert (_rate(rates, "distributed", "false positives", "term")[["n", "k"]] == [3, 1]).all()
    assert (
        _rate(rates, "unit/shared/formula", "false positives", "term")[["n", "k"]] == [3, 1]
    ).all()
    assert (_rate(rates, "distributed", "recall", "rotated")[["n", "k"]] == [2, 1]).all()
    empty = _rate(rates, "formula", "recall", "45°")
    assert empty["n"] == 0 and math.isnan(empty["rate"]) and math.isnan(empty["lo"])


def test_clopper_pearson_is_exact_at_the_edges():
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(beta.ppf(0.975, 1, 10)))
    assert clopper_pearson(10, 10) == (pytest.approx(beta.ppf(0.025, 10, 1)), 1.0)
    assert all(math.isnan(v) for v in clopper_pearson(0, 0))


def test_markdown_has_a_header_and_one_line_per_rate():
    rates = verdict_rates(_scored_units(), _scored_terms())
    text = rates_markdown(rates, "Generated by a test.")
    lines = text.strip().splitlines()
    assert lines[0] == "Generated by a test." and lines[2].startswith("| verdict |")
    assert len(lines) == 4 + len(rates)
    assert "| 0.667 (2/3) | [0.094, 0.992] |" in text


def test_the_benchmark_has_its_families_and_sizes():
    specs = benchmark_specs()
    families = pd.Series([s.family for s in specs]).value_counts()
    assert families[["hand-wired", "rotated", "masked"]].sum() >= 200
    assert families[list(LEARNED_NOTHING)].sum() >= 100
    assert len({s.name for s in specs}) == len(specs)
    wired = [s for s in specs if s.family == "hand-wired"]
    widths = [s.shape[1] for s in wired]
    assert min(widths) <= 4 and max(widths) == 256 and widths.count(256) <= 2
    assert sum(6 <= w <= 16 for w in widths) > 0.7 * len(widths)
    assert any(s.shape[0] == 2 for s in wired) and any(s.saturation == 4 for s in wired)
    assert {s.readout is None for s in wired} == {True, False}
    quick = benchmark_specs(quick=True)
    assert 20 <= len(quick) <= 30 and {s.family for s in quick} == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_generators_are_deterministic_and_seeded(family):
    specs = family_specs(family, 3, seed=1)
    assert specs == family_specs(family, 3, seed=1)
    assert specs != family_specs(family, 3, seed=2)
    assert family_specs(family, 5, seed=1)[:3] == specs  # network i depends on i alone
    a, b = build_network(specs[0]), build_network(specs[0])
    for (name, x), y in zip(a.checkpoint.model.state_dict().items(),
                            b.checkpoint.model.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(x, y), name
    pd.testing.assert_frame_equal(a.units, b.units)
    pd.testing.assert_frame_equal(a.terms, b.terms)


def test_hand_wired_truth_is_what_was_planted():
    for spec in family_specs("hand-wired", 12, seed=0):
        truth = build_network(spec)
        names = list(task_spec(spec.task).inputs)
        planted = planted_terms([list(layer) for layer in spec.taps], names)
        for row in truth.units.itertuples():
            text = planted[row.layer][row.unit]
            if row.expected_kind in ("term", "formula"):
                assert row.expected == text
            else:
                assert text in (None, "random"), (spec.name, row)
        if spec.readout is not None:
            weights = truth.checkpoint.model.readout.weight.detach().cpu().numpy()
            np.testing.assert_allclose(weights, np.asarray(spec.readout), atol=1e-6)
        assert truth.checkpoint.model.config.n_layers == len(spec.taps)


def test_rotated_pair_is_read_back_through_the_inverse_rotation():
    for spec in family_specs("rotated", 4, seed=0):
        truth = build_network(spec)
        pair = [u for u, t in enumerate(spec.taps[0]) if isinstance(t, dict)]
        readout = np.asarray(spec.readout)[:, pair]  # (2 outputs, 2 units)
        lag = next(iter(spec.taps[0][pair[0]]))[1]
        mix = np.array([[spec.taps[0][u].get((f, lag), 0.0) for f in (1, 0)] for u in pair])
        reads = readout @ mix  # output o's weight on (X, K) at the lag
        assert abs(reads[0, 1]) < 1e-12 and abs(reads[1, 0]) < 1e-12  # X alone, K alone
        expected = truth.terms.set_index("term")["expected_verdict"]
        assert (expected[[f"X[t-{lag}]" if lag else "X[t]", f"K[t-{lag}]" if lag else "K[t]"]]
                == "distributed").all()  # fmt: skip
        assert (truth.units.loc[pair, "expected_kind"] == "formula").all()


def test_masked_networks_keep_their_mask_and_truth_is_known_content():
    for spec in family_specs("masked", 3, seed=0):
        truth = build_network(spec)
        lstm = truth.checkpoint.model.lstm
        inputs = np.zeros((len(spec.sources), len(task_spec(spec.task).inputs)), bool)
        recurrent = np.zeros((len(spec.sources),) * 2, bool)
        names = list(task_spec(spec.task).inputs)
        for u, sources in enumerate(spec.sources):
            for s in sources:
                if isinstance(s, tuple):
                    recurrent[u, s[1]] = True
                else:
                    inputs[u, names.index(s)] = True
        w_ih = lstm.weight_ih_l0.detach().cpu().numpy().reshape(4, *inputs.shape)
        w_hh = lstm.weight_hh_l0.detach().cpu().numpy().reshape(4, *recurrent.shape)
        assert (w_ih[:, ~inputs] == 0).all() and (w_hh[:, ~recurrent] == 0).all()
        assert np.abs(w_ih[2][inputs]).min() > 0  # the cell candidate reads what it may
        for row in truth.units.itertuples():
            if row.expected_kind == "term":
                assert row.expected_terms == row.expected
            reads = spec.sources[row.unit]
            assert (row.expected_kind == "none") == (len(reads) == 0)
            assert (row.expected_kind == "unbounded") == spec.memory[row.unit]


def test_learned_nothing_networks_expect_no_role_and_no_held_term():
    for family in LEARNED_NOTHING:
        spec = family_specs(family, 1, seed=0)[0]
        truth = build_network(spec)
        assert (truth.units["expected_kind"] == "nothing").all()
        assert (truth.terms["expected_verdict"] == "nothing").all()
        assert truth.checkpoint.model.config.n_units == spec.width


@pytest.mark.slow
def test_planted_roles_are_named_and_untrained_networks_get_none():
    wired = family_specs("hand-wired", 4, seed=0)
    assert any(s.saturation == 4 for s in wired)  # a leaky one
    specs = [*wired, *family_specs("untrained", 2, seed=0)]
    result = run_benchmark(specs, LIGHT, jobs=2, progress=False)
    assert (result.networks["error"] == "").all(), result.networks
    units = result.units
    planted = units[units["expected_kind"].isin(["term", "formula"])]
    missed = planted[~planted["correct"].astype(bool)]
    cols = ["network", "unit", "expected", "role", "evidence"]
    assert missed.empty, missed[cols].to_string()
    untrained = units[units["family"] == "untrained"]
    assert (untrained["role"] == "none").all(), untrained[cols].to_string()


def test_a_spec_is_plain_data():
    spec = NetworkSpec("x", "hand-wired", "seed-innov", 1, taps=(((0, 0), {(1, 0): 1.0}),))
    assert pickle.loads(pickle.dumps(spec)) == spec and spec.shape == (1, 2)
