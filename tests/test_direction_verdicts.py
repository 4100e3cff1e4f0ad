"""Directions as evidence: batched searches, the stacked recurrence, specificity, the
sequential test against null networks and the term verdicts built on them."""

from __future__ import annotations

import math
import types

import numpy as np
import pandas as pd
import pytest
import torch

from unitprobe.config import AnalyzeConfig, material_terms
from unitprobe.methods.interventions import direction_search, learn_direction
from unitprobe.methods.roles.terms import DirectionTest, term_table, unheld_terms
from unitprobe.model.lstm import ModelConfig, UnitLSTM, run, states_at_steps, suffix_outputs
from unitprobe.model.stacked import block_diagonal, stacked_suffix_outputs, stacked_weights
from unitprobe.pipeline import verdicts
from unitprobe.pipeline.nulls import untrained_network


def _data(n_seq=80, n_steps=6, seed=0):
    x = np.random.default_rng(seed).standard_normal((n_seq, n_steps, 2)).astype(np.float32)
    return types.SimpleNamespace(inputs=x, input_names=("K", "X"), output_names=("a", "b"),
                                 spec=None)  # fmt: skip


def test_the_stacked_recurrence_equals_each_networks_suffix_run():
    nets = [UnitLSTM(ModelConfig(2, 5, 2)).requires_grad_(False) for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 9, 2, generator=gen)
    steps = torch.randint(0, 9, (40,), generator=gen)
    states, prefix = [], []
    with torch.no_grad():
        for net in nets:
            y, h, c = states_at_steps(net, x, steps)
            states.append((h + 0.3 * torch.randn(h.shape, generator=gen), c))
            prefix.append(y)
    h = torch.stack([s[0] for s in states]).requires_grad_()
    c = torch.stack([s[1] for s in states])
    stacked = stacked_suffix_outputs(stacked_weights(nets), x, steps, h, c, torch.stack(prefix))
    (grad,) = torch.autograd.grad(stacked.pow(2).sum(), [h])
    for i, net in enumerate(nets):
        hi = states[i][0].clone().requires_grad_()
        alone = suffix_outputs(net, x, steps, hi, states[i][1], prefix[i])
        torch.testing.assert_close(stacked[i], alone, atol=1e-6, rtol=0)
        (grad_i,) = torch.autograd.grad(alone.pow(2).sum(), [hi])
        torch.testing.assert_close(grad[i], grad_i, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_joined_networks_run_each_unit_as_its_own(n_layers):
    nets = [UnitLSTM(ModelConfig(2, w, 1, n_layers)) for w in (3, 4, 2)]
    joined = block_diagonal(nets)
    x = torch.randn(5, 7, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        alone = torch.cat([run(n, x).h for n in nets], dim=-1)  # (L, N, T, 9)
        torch.testing.assert_close(run(joined, x).h, alone, atol=1e-6, rtol=0)
    with pytest.raises(Exception, match="the same inputs and layers"):
        block_diagonal([nets[0], UnitLSTM(ModelConfig(3, 2, 1, n_layers))])


def test_stacking_refuses_networks_of_different_shapes():
    with pytest.raises(Exception, match="one-layer networks of one shape"):
        stacked_weights([UnitLSTM(ModelConfig(2, 4, 1)), UnitLSTM(ModelConfig(2, 5, 1))])


def test_a_batch_of_networks_searches_each_as_it_would_alone(rotated_kx):
    ds = _data()
    other = untrained_network(rotated_kx, 3)
    kw = dict(n_pairs=64, epochs=60, reference="model", seed=2, restarts=1)
    together = direction_search([rotated_kx, other], ds, ["X[t-1]", "K[t-1]"], **kw)
    for net, found in zip((rotated_kx, other), together, strict=True):
        (alone,) = direction_search([net], ds, ["X[t-1]"], **kw)
        assert found[0].term == alone[0].term
        assert abs(float(found[0].basis[:, 0] @ alone[0].basis[:, 0])) > 0.999
        assert found[0].transfer_test == pytest.approx(alone[0].transfer_test, abs=1e-3)


def test_a_rotated_direction_is_specific_and_bounded_by_the_layer(rotated_kx):
    d = learn_direction(rotated_kx, _data(), "X[t-1]", n_pairs=128, reference="model",
                        scored_terms=["K[t-1]", "X[t]", "K[t]"])  # fmt: skip
    assert d.layer_transfer == pytest.approx(1.0, abs=1e-5)  # one layer: the source run
    assert d.transfer_test == pytest.approx(1.0, abs=0.01)
    assert set(d.material) == {"X[t-1]", "K[t-1]", "X[t]", "K[t]"}
    # the other rotated term moves along the other axis; the current inputs reach the rotated
    # units a step later, after the patched step
    assert max(abs(d.cross[t]) for t in ("K[t-1]", "X[t]", "K[t]")) < 0.02
    bounded = min(d.transfer_test, d.layer_transfer)
    assert d.leak[0] == "K[t-1]" and d.score == pytest.approx(bounded - d.leak[1])
    assert d.specificity == pytest.approx(1 - d.leak[1] / bounded)
    assert 0.9 < d.specificity_lo <= d.specificity <= 1
    # both starts act alike; the c of these units (forget gates shut) is free in the fit
    assert d.agreement == pytest.approx(1.0, abs=1e-4) and d.overlap <= 1.0


def test_an_untrained_networks_direction_carries_the_terms_lags_too():
    # a scalar input change moves any LSTM's state along about one direction: a direction
    # transfers most of the term, and much of its lags, which move the state along nearly
    # the same one; its score is far below a rotated network's
    net = untrained_network(UnitLSTM(ModelConfig(2, 8, 2)), 11)
    with torch.no_grad():
        net.readout.weight.normal_(generator=torch.Generator().manual_seed(1))
    d = learn_direction(net, _data(n_steps=10), "X[t]", n_pairs=128, reference="model",
                        scored_terms=["X[t-1]", "X[t-2]"])  # fmt: skip
    assert d.transfer_test > 0.9 and d.leak[0] == "X[t-1]" and d.leak[1] > 0.8
    assert d.score < 0.2 and d.specificity_lo < 0.5


def test_material_terms_are_a_share_of_the_largest_effect():
    effects = {"K[t]": 0.1, "K[t-1]": 0.002, "K[t-2]": 2e-6, "X[t]": math.nan, "X[t-1]": 0.0}
    assert material_terms(effects, 0.01) == {"K[t]", "K[t-1]"}  # 2 % of the largest
    assert material_terms(effects, 0.05) == {"K[t]"}
    assert material_terms(effects, 0.0) == {"K[t]", "K[t-1]", "K[t-2]"}
    assert material_terms({}, 0.01) == set()


def test_the_sequential_test_stops_at_the_first_null_that_scores_as_well(monkeypatch):
    """Null network k scores ``scores[term][k]``: the p-value is 1/m at the m-th network to
    score as well, else 1/(n + 1); later networks of a batch are not counted."""
    scores = {"A": [0.1, 0.2, 0.9, 0.95, 0.1, 0.1, 0.1], "B": [0.1] * 7}
    calls = []

    def fake_search(nets, data, terms, **kw):
        first = len([n for call in calls for n in call[0]])
        calls.append((nets, list(terms)))
        return [
            [types.SimpleNamespace(term=t, score=scores[t][first + i]) for t in terms]
            for i in range(len(nets))
        ]

    monkeypatch.setattr(verdicts, "direction_search", fake_search)
    monkeypatch.setattr(verdicts, "fit_readout", lambda net, data: net)
    model = UnitLSTM(ModelConfig(2, 4, 2))
    config = AnalyzeConfig().replace(n_null_interventions=0)
    config = config.replace()  # the defaults
    roles = {**config.to_dict()["roles"], "n_null_directions": 7, "direction_level": 0.125}
    config = AnalyzeConfig.from_dict({**config.to_dict(), "roles": roles})
    tests, table = verdicts.direction_tests(
        model, None, 0, {"A": 0.5, "B": 0.5}, config, {"controls": 0}, {}, False
    )
    assert tests["A"] == DirectionTest(1 / 3, 3, 0.9)  # the 3rd network scored 0.9 >= 0.5
    assert tests["B"] == DirectionTest(1 / 8, 7, 0.1)  # none of 7: the smallest p-value
    assert [len(nets) for nets, _ in calls] == [1, 2, 4]  # batches 1, 2, 4 networks
    assert calls[-1][1] == ["B"]  # A closed in the second batch
    counted = table[table["term"] == "A"]
    assert counted["network"].tolist() == [0, 1, 2]  # the 4th (0.95) was not counted
    assert verdicts.null_batches(39, 8) == [(0, 1), (1, 2), (3, 4), (7, 8), (15, 16), (31, 8)]
    assert verdicts.null_batches(5, 256) == [(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)]


def _tables(directions_row=None):
    roles = pd.DataFrame({
        "layer": [0, 0, 0], "unit": [0, 1, 2],
        "role": ["K[t]", "0.5·X[t-1] + 0.5·K[t-1]", "0.5·X[t-1] - 0.5·K[t-1]"],
        "kind": ["term", "formula", "formula"],
    })  # fmt: skip
    rows = []
    for term, effect in (("K[t]", 0.1), ("X[t-1]", 0.1), ("K[t-1]", 0.1), ("X[t]", 1e-7)):
        for unit in range(3):
            rows.append({"layer": 0, "units": str(unit), "term": term, "transfer": 0.4,
                         "effect": effect, "reference": "model"})  # fmt: skip
    interchange = pd.DataFrame(rows)
    directions = None
    if directions_row is not None:
        directions = pd.DataFrame([{
            "layer": 0, "term": "X[t-1]", "transfer_test": 0.98, "best_unit_transfer": 0.5,
            "layer_transfer": 1.0, "leak": 0.02, "leak_term": "K[t-1]", "score": 0.96,
            "specificity": 0.98, "specificity_lo": 0.9, "note": "", **directions_row,
        }])  # fmt: skip
    return roles, interchange, directions


def test_term_verdicts_in_their_order_of_precedence():
    roles, interchange, directions = _tables({})
    assert unheld_terms(roles, interchange, 0) == ["X[t-1]", "K[t-1]"]
    passing = {(0, "X[t-1]"): DirectionTest(1 / 40, 39, 0.4)}
    terms = term_table(roles, interchange, directions, tests=passing, level=0.025)
    verdict = dict(zip(terms["term"], terms["verdict"], strict=True))
    assert verdict == {"K[t]": "unit", "X[t-1]": "distributed", "K[t-1]": "formula",
                       "X[t]": "unused"}  # fmt: skip
    evidence = terms.set_index("term")["evidence"]
    assert "p = 0.025 against 39 null networks, none of which scores as well" in evidence["X[t-1]"]
    assert evidence["K[t-1]"].startswith("held within the formula role of unit(s) 1, 2")
    # a direction the nulls match, or one that is not specific, leaves the formula
    failing = {(0, "X[t-1]"): DirectionTest(1 / 3, 3, 0.97)}
    for tests, table in ((failing, directions), (passing, _tables({"specificity_lo": 0.4})[2])):
        terms = term_table(roles, interchange, table, tests=tests, level=0.025)
        assert terms.set_index("term").loc["X[t-1]", "verdict"] == "formula"


def test_a_direction_with_no_unit_and_no_formula_is_generic_or_unresolved():
    roles, interchange, _ = _tables({})
    roles = roles.assign(role=["K[t]", "none", "none"], kind=["term", "none", "none"])
    cases = [
        ({}, {(0, "X[t-1]"): DirectionTest(1 / 3, 3, 0.97)}, "generic", "score as well"),
        ({"specificity_lo": 0.3}, {}, "generic", "its 95 % lower bound 0.300 is below 0.5"),
        ({"transfer_test": 0.4}, {}, "unresolved", "no better than one unit"),
    ]
    for row, tests, expected, text in cases:
        terms = term_table(roles, interchange, _tables(row)[2], tests=tests, level=0.025)
        got = terms.set_index("term").loc["X[t-1]"]
        assert got["verdict"] == expected and text in got["evidence"]
