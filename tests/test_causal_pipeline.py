"""The whole analysis on hand-wired networks: roles come from interventions and null networks.

Every planted role must be named, in any unit order, with dead units, whatever the number of
permutations or sequences (p-values never decide); mixtures are formulas, redundant units are
shared, a lag chain is named, untrained networks get no role, and several runs compare.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from unitprobe.config import AnalyzeConfig, RoleConfig
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import UnitLSTM
from unitprobe.model.planted import planted_lstm
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.pipeline.multiseed import analyze_runs
from unitprobe.pipeline.nulls import fit_readout
from unitprobe.tables import Tables
from unitprobe.tasks import generate, get_preset

NAMES = {(0, 0): "K[t]", (0, 1): "K[t-1]", (1, 0): "X[t]", (1, 1): "X[t-1]", (1, 2): "X[t-2]"}
FAST = AnalyzeConfig.from_options(
    n_sequences=64, n_permutations=19, n_controls=1, n_null_interventions=1, formats=("png",)
)


def _checkpoint(taps, name="wired.pt", spec=None):
    spec = spec or get_preset("seed")
    data = generate(spec, n_sequences=64, seed=5)
    model = fit_readout(planted_lstm(2, taps, n_outputs=2), data)
    return Checkpoint(model=model, task=spec, path=Path(name), source="state_dict")


def _roles(taps, config=FAST):
    return compute_analysis(_checkpoint(taps), config).tables["roles"]


@pytest.mark.slow
@pytest.mark.parametrize("order_seed", [0, 1])
@pytest.mark.parametrize("n_dead", [0, 3])
def test_every_planted_role_is_named_and_decided_by_interchange(order_seed, n_dead):
    taps = [(0, 0), (0, 1), (1, 0), (1, 1)] + [None] * n_dead
    taps = [taps[i] for i in np.random.default_rng(order_seed).permutation(len(taps))]
    result = compute_analysis(_checkpoint(taps), FAST)
    roles = result.tables["roles"]
    assert roles["role"].tolist() == [NAMES[t] if t else "none" for t in taps]
    live = roles[roles["role"] != "none"]
    assert set(live["decided_by"]) <= {"interchange", "receptive_field"}
    assert (live.loc[live["decided_by"] == "interchange", "transfer"] > 0.9).all()
    terms = result.tables["terms"].set_index("term")
    for tap in filter(None, taps):
        assert terms.loc[NAMES[tap], "verdict"] == "unit"
    assert max(result.summary["nulls"]["thresholds"]["0"]["tests"].values()) < 1.0
    assert {"interchange", "nulls", "terms", "directions"} <= set(result.tables)


@pytest.mark.slow
def test_roles_do_not_depend_on_permutations_or_sequences():
    taps = [(1, 1), None, (0, 0), (1, 0), (0, 1)]
    expected = [NAMES[t] if t else "none" for t in taps]
    for options in ({"n_permutations": 999}, {"n_sequences": 512}, {"n_sequences": 48}):
        assert _roles(taps, FAST.replace(**options))["role"].tolist() == expected, options


@pytest.mark.slow
def test_mixture_is_a_formula_redundancy_is_shared_and_a_chain_is_named():
    taps = [{(0, 0): 0.7, (1, 0): 0.3}, (1, 1), (1, 0), (1, 1), (1, 2), None]
    roles = _roles(taps)
    assert roles.loc[0, "kind"] == "formula"
    assert roles.loc[0, "role"] == "0.7·K[t] + 0.3·X[t]"
    assert roles["role"].tolist()[1:] == ["X[t-1]", "X[t]", "X[t-1]", "X[t-2]", "none"]
    assert roles.loc[1, "shared_with"] == "3" and roles.loc[3, "shared_with"] == "1"


@pytest.mark.slow
def test_the_same_unit_gets_the_same_verdict_in_a_layer_of_6_8_16_or_64_units():
    """Planted units among untrained filler (leaky gates, a fitted readout that reads the
    filler too): the thresholds do not depend on the width, nor does any planted verdict."""
    planted = [(0, 0), (0, 1), (1, 0), (1, 1), {(0, 0): 0.9, (1, 0): 0.1}]
    spec = get_preset("seed-innov")
    data = generate(spec, n_sequences=64, seed=5)
    config = FAST.replace(directions=False)
    seen = {}
    for width in (6, 8, 16, 64):
        taps = planted + ["random"] * (width - len(planted))
        model = fit_readout(planted_lstm(2, taps, n_outputs=2, saturation=6.0, seed=width), data)
        ckpt = Checkpoint(model=model, task=spec, path=Path(f"w{width}.pt"), source="state_dict")
        result = compute_analysis(ckpt, config)
        roles = result.tables["roles"].iloc[: len(planted)]
        seen[width] = (roles["role"].tolist(), result.summary["nulls"]["thresholds"])
    assert seen[6][0] == ["K[t]", "K[t-1]", "X[t]", "X[t-1]", seen[6][0][4]]
    assert seen[6][0][4] in ("K[t]", "0.9·K[t] + 0.1·X[t]")  # a tenth of X: either reading
    for width in (8, 16, 64):
        assert seen[width] == seen[6], width


@pytest.mark.slow
def test_untrained_networks_get_no_role():
    spec = get_preset("seed")
    data = generate(spec, n_sequences=64, seed=5)
    for k in range(3):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5000 + k)
            net = fit_readout(UnitLSTM(planted_lstm(2, [None] * 6, n_outputs=2).config), data)
        ckpt = Checkpoint(model=net, task=spec, path=Path("untrained.pt"), source="state_dict")
        roles = compute_analysis(ckpt, FAST).tables["roles"]
        assert (roles["role"] == "none").all(), roles[["unit", "role", "evidence"]]


@pytest.mark.slow
def test_several_runs_match_units_and_count_roles(tmp_path):
    runs = [
        _checkpoint([(0, 0), (1, 1), None, (1, 0)], "a.pt"),
        _checkpoint([(1, 1), (1, 0), (0, 0), None], "b.pt"),
    ]
    config = FAST.replace(directions=False)
    result = analyze_runs(runs, tmp_path / "seeds", config, figures=False)
    stability = result.stability.set_index("role")
    for role in ("K[t]", "X[t]", "X[t-1]"):
        assert stability.loc[role, "frequency"] == 1.0
        assert stability.loc[role, "stability"] == 1.0  # matched units keep their roles
    assert sorted(result.summary["stable_roles"]) == ["K[t]", "X[t-1]", "X[t]"]
    assert (tmp_path / "seeds" / "role_stability.csv").is_file()
    back = Tables.read(tmp_path / "seeds" / "runs" / "1-b", ("roles",))
    assert back["roles"]["role"].tolist() == ["X[t-1]", "X[t]", "K[t]", "none"]


@pytest.mark.parametrize(("null_sequences", "expected"), [(None, 64), (500, 128)])
def test_null_fields_use_their_own_sequence_budget(monkeypatch, null_sequences, expected):
    import unitprobe.pipeline.verdicts as pipeline

    seen = []

    def record(*args, max_sequences, **kwargs):
        seen.append(max_sequences)
        raise RuntimeError("stop after the null settings")

    monkeypatch.setattr(pipeline, "null_statistics", record)
    config = FAST.replace(n_sequences=200, n_permutations=1, n_controls=0)
    if null_sequences is not None:
        roles = dict(config.roles.__dict__, null_field_sequences=null_sequences)
        config = dataclasses.replace(config, roles=RoleConfig(**roles))
    with pytest.raises(RuntimeError, match="stop after"):
        compute_analysis(_checkpoint([(0, 0), (1, 0)]), config)
    # the network's own fields use config.attribution.max_sequences (128) of the 200
    assert seen == [expected]


def test_the_summary_says_how_each_direction_search_ended(tmp_path):
    spec = get_preset("seed")
    data = generate(spec, n_sequences=64, seed=5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5000)
        net = fit_readout(UnitLSTM(planted_lstm(2, [None] * 6, n_outputs=2).config), data)
    ckpt = Checkpoint(model=net, task=spec, path=Path("untrained.pt"), source="state_dict")
    result = compute_analysis(ckpt, FAST)
    directions = result.tables["directions"]
    fits = result.summary["directions"]["fits"]
    assert len(fits) == len(directions) > 0
    assert [f["term"] for f in fits] == directions["term"].astype(str).tolist()
    for fit in fits:
        assert fit["stopped"] in {"converged", "stalled", "budget", "stationary", "not finite", ""}
        assert 0 <= fit["evaluations"] <= FAST.roles.direction_epochs
        assert fit["loss"] is None or fit["loss"] >= 0
