"""The interchange screen and the fused suffix path: the same numbers as patching every unit
stepwise, for a fraction of the runs, and the same roles."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from unitprobe.config import AnalyzeConfig
from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions import interchange as interchange_module
from unitprobe.methods.interventions import interchange_table
from unitprobe.methods.interventions.interchange import SCREENED_NOTE
from unitprobe.methods.interventions.screen import screen_units
from unitprobe.methods.roles import field_candidates
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import Intervention, ModelConfig, UnitLSTM, run, suffix_outputs
from unitprobe.model.planted import planted_lstm
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.pipeline.nulls import fit_readout
from unitprobe.tasks import generate, get_preset

TERMS = ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]


def _checkpoint(taps):
    """A hand-wired network on the seed task (units hold the tapped (input, lag) terms)."""
    spec = get_preset("seed")
    model = fit_readout(planted_lstm(2, taps, n_outputs=2), generate(spec, 64, seed=5))
    return Checkpoint(model=model, task=spec, path=Path("wired.pt"), source="state_dict")


def _data(n_seq=64, n_steps=10, seed=0):
    x = np.random.default_rng(seed).standard_normal((n_seq, n_steps, 2)).astype(np.float32)
    return types.SimpleNamespace(inputs=x, input_names=("K", "X"), output_names=("a", "b"))


def _model(n_units=12, seed=0):
    torch.manual_seed(seed)
    return UnitLSTM(ModelConfig(2, n_units, 2)).eval()


@pytest.fixture
def stepwise(monkeypatch):
    """Force the stepwise reference path of ``patched_outputs``."""
    monkeypatch.setattr(interchange_module, "_suffix_ok", lambda model, patches_h: False)


# ----------------------------------------------------------------------------- suffix path


@pytest.mark.parametrize("patch_c", [True, False])
def test_suffix_outputs_is_run_with_states_replaced_at_each_rows_step(patch_c):
    model = _model(seed=1)
    x = torch.as_tensor(_data(n_seq=9).inputs)
    steps = torch.tensor([0, 3, 3, 9, 5, 1, 0, 7, 3])
    rng = np.random.default_rng(2)
    new_h = torch.as_tensor(rng.standard_normal((9, 12)), dtype=torch.float32)
    new_c = torch.as_tensor(rng.standard_normal((9, 12)), dtype=torch.float32)
    rows = torch.arange(9)
    with torch.no_grad():
        clean = run(model, x)
        edits = [
            Intervention("h", mask=torch.ones(9, 12, dtype=torch.bool),
                         setter=lambda v, t, s="h": torch.where((steps == t)[:, None], new_h, v))
        ]  # fmt: skip
        if patch_c:
            edits.append(
                Intervention("c", mask=torch.ones(9, 12, dtype=torch.bool),
                             setter=lambda v, t: torch.where((steps == t)[:, None], new_c, v))
            )  # fmt: skip
        expected = run(model, x, edits).outputs
        c_after = new_c if patch_c else clean.sites["c"][0, rows, steps]
        got = suffix_outputs(model, x, steps, new_h, c_after, clean.outputs)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_suffix_outputs_refuses_deep_models():
    model = UnitLSTM(ModelConfig(2, 3, 1, n_layers=2))
    x = torch.zeros(2, 4, 2)
    with pytest.raises(UnitprobeError, match="one-layer model without interventions"):
        suffix_outputs(model, x, torch.zeros(2, dtype=torch.long), *[torch.zeros(2, 3)] * 2,
                       torch.zeros(2, 4, 1))  # fmt: skip


def test_fused_and_stepwise_interchange_agree(monkeypatch):
    model, data = _model(), _data()
    fused = interchange_table(model, data, TERMS, reference="model", n_pairs=48, groups=[[]])
    monkeypatch.setattr(interchange_module, "_suffix_ok", lambda model, patches_h: False)
    slow = interchange_table(model, data, TERMS, reference="model", n_pairs=48, groups=[[]])
    np.testing.assert_allclose(fused["transfer"], slow["transfer"], atol=2e-5)
    assert (fused.loc[fused["units"] == "none", "transfer"] == 0.0).all()  # exactly


# ----------------------------------------------------------------------------- the screen


def test_screen_keeps_exact_values_and_estimates_the_rest(stepwise):
    model, data = _model(), _data()
    kw = {"reference": "model", "n_pairs": 48, "seed": 3}
    exact = interchange_table(model, data, TERMS, **kw)
    screened = interchange_table(model, data, TERMS, screen=3, exact_units={0: [7]}, **kw)
    assert list(screened.columns) == list(exact.columns)
    assert exact["exact"].all()
    for term, rows in screened.groupby("term"):
        truth = exact[exact["term"] == term]
        kept = rows["exact"].to_numpy()
        assert 3 <= kept.sum() <= 4 and kept[7]  # the top 3, and unit 7 always
        # exact rows are the exact table's, bit for bit (same pairs, same runs)
        np.testing.assert_array_equal(rows["transfer"][kept], truth["transfer"][kept])
        # the estimate ranks units as the exact transfers do, and is close in value
        rho = spearmanr(rows["transfer"], truth["transfer"]).statistic
        assert rho > 0.95, (term, rho)
        np.testing.assert_allclose(rows["transfer"], truth["transfer"], atol=0.02)
        assert (rows.loc[~rows["exact"], "note"].str.contains(SCREENED_NOTE, regex=False)).all()
        assert rows.loc[~rows["exact"], "transfer_lo"].isna().all()


def test_screen_finds_the_top_units_of_every_term(stepwise):
    model, data = _model(n_units=16, seed=4), _data()
    kw = {"reference": "model", "n_pairs": 64, "seed": 1}
    exact = interchange_table(model, data, TERMS, **kw)
    screened = interchange_table(model, data, TERMS, screen=4, **kw)
    for term, rows in exact.groupby("term"):
        best = int(rows["units"].iloc[int(rows["transfer"].abs().to_numpy().argmax())])
        flagged = screened[(screened["term"] == term) & screened["exact"]]["units"].astype(int)
        assert best in set(flagged), term


def test_screen_units_orders_by_largest_estimate_under_any_reference():
    est = np.array([[0.1, -0.9, np.nan, 0.3], [0.5, 0.0, np.nan, 0.2]])
    assert screen_units(est, 2) == [0, 1]
    assert screen_units(est, 1, always=[3]) == [1, 3]


def test_several_references_share_the_patched_runs():
    model, data = _model(), _data()
    both = interchange_table(model, data, TERMS, reference=("model", "model"), n_pairs=32)
    one = interchange_table(model, data, TERMS, reference="model", n_pairs=32)
    assert both.equals(one)  # a repeated reference is one reference
    with pytest.raises(UnitprobeError, match="reference is empty"):
        interchange_table(model, data, TERMS, reference=())


# ----------------------------------------------------------------------------- roles


def test_field_candidates_are_the_units_a_role_may_read():
    taps = [(0, 0), None, (1, 0), (1, 1)]
    checkpoint = _checkpoint(taps)
    config = AnalyzeConfig.from_options(
        n_sequences=64, n_permutations=19, n_controls=1, n_null_interventions=1,
        exact_interchange="all",
    )  # fmt: skip
    result = compute_analysis(checkpoint, config)
    roles = result.tables["roles"]
    nulls = result.tables["nulls"]
    terms = sorted(result.tables["interchange"]["term"].unique())  # any order
    candidates = field_candidates(result.tables["receptive_fields"], nulls, terms)
    named = set(roles.loc[roles["role"] != "none", "unit"].astype(int))
    assert named == {0, 2, 3} and named <= set(candidates[0])
    screened = compute_analysis(checkpoint, config.replace(exact_interchange="screen"))
    assert screened.tables["roles"].equals(roles)
    inter = screened.tables["interchange"]
    assert inter.loc[inter["units"].isin(["0", "2", "3"]), "exact"].all()
    agreement = screened.summary["interchange"]
    assert agreement["n_exact_rows"] == len(inter) and agreement["n_compared"] > 0
    assert agreement["max_abs_error"] < 0.05
    assert result.summary["interchange"] == {"exact_interchange": "all"}


def test_fit_readout_uses_the_fused_forward():
    model, data = _model(n_units=6), _data()
    data.targets = np.random.default_rng(0).standard_normal((64, 10, 2))
    fitted = fit_readout(model, data)
    with torch.no_grad():
        h = run(fitted, data.inputs).sites["h"][0].reshape(-1, 6).double().numpy()
    design = np.c_[h, np.ones(len(h))]
    weights, *_ = np.linalg.lstsq(design, data.targets.reshape(-1, 2), rcond=None)
    np.testing.assert_allclose(fitted.readout.weight.detach().numpy(), weights[:-1].T, atol=1e-4)


def test_deeper_networks_are_screened_per_layer_on_the_stepwise_path():
    torch.manual_seed(2)
    model = UnitLSTM(ModelConfig(2, 6, 2, n_layers=2)).eval()
    data = _data(n_seq=40, n_steps=8)
    kw = {"reference": "model", "n_pairs": 32, "seed": 0}
    exact = interchange_table(model, data, ["K[t]", "X[t-1]"], **kw)
    screened = interchange_table(model, data, ["K[t]", "X[t-1]"], screen=2, **kw)
    kept = screened["exact"].to_numpy()
    # two exact units per term and layer; their values are the exact table's
    assert screened.groupby(["term", "layer"])["exact"].sum().tolist() == [2, 2, 2, 2]
    np.testing.assert_array_equal(screened["transfer"][kept], exact["transfer"][kept])
    np.testing.assert_allclose(screened["transfer"], exact["transfer"], atol=0.01)


def test_screen_summary_of_constant_estimates_has_no_rank_correlation():
    import warnings

    from unitprobe.methods.interventions.interchange import screen_summary

    table = pd.DataFrame({"exact": [True, True, True, False]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy warns on constant input: no warning leaks
        out = screen_summary([(0.0, 0.1), (0.0, 0.2), (0.0, 0.4)], table, 2)
    assert np.isnan(out["spearman"]) and out["max_abs_error"] == pytest.approx(0.4)
    assert (out["n_exact_rows"], out["n_estimated_rows"], out["n_compared"]) == (3, 1, 3)
    ranked = screen_summary([(0.1, 0.1), (0.2, 0.3), (0.3, 0.2)], table, 2)
    assert ranked["spearman"] == pytest.approx(0.5)
