"""The fused ablation engine against the stepwise reference, and the linearized screen."""

import types
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from unitprobe.errors import UnitprobeError
from unitprobe.methods.ablation import (
    MODES,
    ablation_table,
    clean_states,
    fused_layer,
    layer_params,
    screen_agreement,
    screen_delta_sse,
)
from unitprobe.methods.ablation.screen import screen_parts
from unitprobe.methods.ablation.table import _sign_uncertain
from unitprobe.methods.ablation.values import VALUE_MAKERS
from unitprobe.model.lstm import Intervention, ModelConfig, UnitLSTM, run

# These tests check exact ablation; the screen (the analysis default) is tested on its own.
ablation_table = partial(ablation_table, exact="all")

KEY = ["layer", "units", "mode", "output"]


def _model(n_layers=2, n_units=6, n_inputs=3, n_outputs=2, seed=0, scale=1.0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_inputs=n_inputs, n_units=n_units, n_outputs=n_outputs, n_layers=n_layers)
    model = UnitLSTM(cfg).eval()
    with torch.no_grad():
        for p in model.lstm.parameters():
            p.mul_(scale)
    return model


def _dataset(n_seq=24, n_steps=10, n_inputs=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_seq, n_steps, n_inputs)).astype(np.float32)
    y = np.zeros((n_seq, n_steps, 2), np.float32)
    y[:, 1:] = x[:, :-1, :2]
    return types.SimpleNamespace(inputs=x, targets=y, output_names=["a", "b"])


def _assert_tables_close(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-6):
    a, b = a.set_index(KEY), b.set_index(KEY)
    assert a.index.equals(b.index)
    for col in ("mse", "mse_base"):
        np.testing.assert_allclose(a[col], b[col], rtol=rtol, atol=0)
    # delta_mse is a difference of MSEs: compare it on the scale of the MSE
    np.testing.assert_allclose(a.delta_mse, b.delta_mse, rtol=0, atol=rtol * a.mse.max())


def test_fused_layer_is_the_nn_lstm_forward_and_splits_at_start():
    model, ds = _model(n_layers=2), _dataset()
    x = torch.as_tensor(ds.inputs)
    with torch.no_grad():
        hidden, _ = model.lstm(x)
        clean = clean_states(model, x, start=4)
        out, h_n, c_n = fused_layer(x, layer_params(model, 0))
    assert torch.equal(clean.h[1], hidden)
    assert torch.equal(clean.h[0], out)
    assert torch.equal(h_n, out[:, -1])
    assert torch.equal(clean.h0[0], clean.h[0][:, 3])


@pytest.mark.parametrize(
    ("site", "start", "n_layers"),
    [("h", 0, 1), ("h", 3, 2), ("c", 0, 2), ("c", 4, 1), ("both", 2, 2), ("both", 0, 3)],
)
def test_fused_engine_equals_stepwise_on_random_networks(site, start, n_layers):
    model, ds = _model(n_layers=n_layers, seed=n_layers + start), _dataset()
    kw = dict(groups=[[1, 4], [0, 2, 5]], site=site, start=start, seed=5)
    fused = ablation_table(model, ds, engine="fused", **kw)
    stepwise = ablation_table(model, ds, engine="stepwise", **kw)
    _assert_tables_close(fused, stepwise)
    assert fused.attrs["ablation_engine"] == "fused"
    assert fused.attrs["n_exact"] == n_layers * 8


def test_fused_engine_equals_stepwise_on_a_planted_network(planted_kx):
    model, ds = planted_kx(n_seq=60)
    for site, start in (("h", 0), ("c", 2), ("both", 5)):
        kw = dict(groups=[[0, 3]], site=site, start=start, seed=1)
        fused = ablation_table(model, ds, engine="fused", **kw)
        stepwise = ablation_table(model, ds, engine="stepwise", **kw)
        _assert_tables_close(fused, stepwise)
        # the planted readout: output a reads only unit 3, b only unit 0
        rows = fused.set_index(KEY)
        assert rows.loc[(0, "1", "zero", "all"), "delta_mse"] == pytest.approx(0, abs=1e-9)
        assert rows.loc[(0, "3", "zero", "a"), "delta_mse"] > 0.1


def test_fused_chunking_does_not_change_the_table():
    model, ds = _model(), _dataset()
    one = ablation_table(model, ds, modes=("mean", "resample"), memory_budget_mb=512)
    many = ablation_table(model, ds, modes=("mean", "resample"), memory_budget_mb=0.01)
    pd.testing.assert_frame_equal(one, many, atol=1e-7, rtol=0)


def test_screen_is_exact_where_the_ablation_is_linear_in_the_outputs():
    # one layer; units 0..3 feed nothing but the readout, so their ablation moves the outputs
    # exactly linearly and the screen (linear outputs, squared loss kept) is exact for them
    model, ds = _model(n_layers=1, n_units=6), _dataset()
    with torch.no_grad():
        model.lstm.weight_hh_l0[:, :4] = 0.0
    x = torch.as_tensor(ds.inputs)
    y = torch.as_tensor(ds.targets, dtype=torch.float64)
    dsse = screen_delta_sse(model, x, y, MODES, site="h", start=2, seed=3, layers=[0])
    exact = ablation_table(model, ds, start=2, seed=3, exact="all").set_index(KEY)
    n_values = 24 * 8
    for u in range(4):
        for k, mode in enumerate(MODES):
            for o, name in enumerate("ab"):
                want = exact.loc[(0, str(u), mode, name), "delta_mse"]
                got = float(dsse[0, u, k, o]) / n_values
                assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_screened_table_runs_exactly_what_it_cannot_rule_out():
    model, ds = _model(n_layers=2, n_units=8, scale=0.5), _dataset(n_seq=40)
    exact = ablation_table(model, ds, groups=[[1, 2]], exact="all")
    screened = ablation_table(
        model, ds, groups=[[1, 2]], exact="screen", threshold=1e-3, screen_margin=2, screen_top_k=2
    )
    out = set(screened.attrs["screened_out"])
    assert out and screened.attrs["n_exact"] + len(out) == 2 * 9
    assert "0:1+2" not in out and "1:1+2" not in out  # groups always run exactly
    a, b = screened.set_index(KEY), exact.set_index(KEY)
    label = a.index.get_level_values(0).astype(str) + ":" + a.index.get_level_values(1)
    ran = ~label.isin(out)
    assert (a["exact"].to_numpy() == ran).all() and b["exact"].all()  # the table says which
    # units run exactly: identical to the exact table
    pd.testing.assert_frame_equal(a[ran], b[ran])
    # units screened out: the screen's estimate, outside the band, on the same side of the
    # threshold as the exact value
    exact_usage = b[~ran].query("output == 'all'").groupby(["layer", "units"]).rel_delta.max()
    est = a[~ran].query("output == 'all'").groupby(["layer", "units"]).rel_delta.max()
    assert screened.attrs["screen_band"] == [5e-4, 2e-3]
    assert ((est < 5e-4) | (est > 2e-3)).all()
    assert ((est > 1e-3) == (exact_usage > 1e-3)).all()
    assert screened.attrs["screen_n_compared"] >= 3
    for key in ("screen_spearman", "screen_median_rel_error", "screen_topk_recall"):
        assert np.isfinite(screened.attrs[key])
    assert screened.attrs["screen_spearman"] > 0.5


def test_exact_used_runs_every_unit_above_the_band():
    model, ds = _model(n_layers=1, n_units=8, scale=0.5), _dataset(n_seq=40)
    kw = dict(exact="screen", threshold=2e-4, screen_margin=2, screen_top_k=0)
    band = ablation_table(model, ds, **kw)
    used = ablation_table(model, ds, exact_used=True, **kw)
    exact = ablation_table(model, ds, exact="all")
    usage = exact.query("output == 'all'").groupby("units").rel_delta.max()
    above = {f"0:{u}" for u in usage[usage > 6e-4].index}
    assert above and above <= set(band.attrs["screened_out"])
    assert not above & set(used.attrs["screened_out"])


def test_sign_rule_marks_exactly_the_units_whose_sign_is_unsure():
    est = torch.tensor([[0.5, -1.0], [0.3, 0.2], [-0.5, -0.6], [0.0, 0.0], [-0.5, 0.1]])
    quad = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])
    # sure positive (0.5 > 0.4), unsure, sure negative, nothing changes (sure 0), unsure
    unsure = _sign_uncertain(est[:, :, None], quad[:, :, None], 0.4, exact_used=False)
    assert unsure.tolist() == [False, True, False, False, True]
    may_be_used = _sign_uncertain(est[:, :, None], quad[:, :, None], 0.4, exact_used=True)
    assert may_be_used.tolist() == [True, True, False, False, True]
    # no mode that decides usage (zero ablation only): nothing to guard
    none = _sign_uncertain(est[:, :0, None], quad[:, :0, None], 0.4, exact_used=False)
    assert none.tolist() == [False] * 5


def test_sign_screen_keeps_every_used_flag_of_the_exact_table():
    # a random readout: some ablations raise the error, others lower it
    model, ds = _model(n_layers=1, n_units=24, scale=0.8, seed=4), _dataset(n_seq=48)
    exact = ablation_table(model, ds, modes=("mean", "resample"), exact="all")
    # zero ablation is in the table but never decides usage, so it cannot make a sign sure
    kw = dict(modes=("zero", "mean", "resample"), exact="screen", threshold=0.0, screen_margin=3)
    screened = ablation_table(model, ds, screen_top_k=0, **kw)
    usage = {  # what the roles read: mean and resample only
        name: t.query("output == 'all' and mode != 'zero'")
        .groupby(t.units.astype(int))
        .rel_delta.max()
        for name, t in (("exact", exact), ("screened", screened))
    }
    assert (usage["exact"] > 0).any() and (usage["exact"] <= 0).any()
    out = {int(u.split(":")[1]) for u in screened.attrs["screened_out"]}
    assert out and screened.attrs["screen_band"] == [0.0, 0.0]
    # every unit screened out has the exact table's sign; the others ran exactly
    assert ((usage["screened"] > 0) == (usage["exact"] > 0)).all()
    x = torch.as_tensor(ds.inputs)
    y = torch.as_tensor(ds.targets, dtype=torch.float64)
    parts = screen_parts(model, x, y, ("mean", "resample"), site="h", start=0, seed=0, layers=[0])
    unsure = _sign_uncertain(
        (parts.linear + parts.quadratic)[0], parts.quadratic[0], 1 - 1 / 3, exact_used=False
    )
    assert out == set(np.flatnonzero(~unsure).tolist())
    # the top k run exactly on top of that
    top = ablation_table(model, ds, screen_top_k=3, **kw)
    assert len(top.attrs["screened_out"]) == len(out) - 3


def test_screen_ranks_units_like_the_exact_table_on_a_random_network():
    model, ds = _model(n_layers=1, n_units=16, scale=0.7, seed=2), _dataset(n_seq=64)
    x = torch.as_tensor(ds.inputs)
    y = torch.as_tensor(ds.targets, dtype=torch.float64)
    dsse = screen_delta_sse(model, x, y, ("mean",), site="h", start=0, seed=0, layers=[0])
    exact = ablation_table(model, ds, modes=("mean",), exact="all").query("output == 'all'")
    est = dsse[0, :, 0].mean(dim=1).numpy() / (64 * 10)
    agree = screen_agreement(est, exact.delta_mse.to_numpy(), k=4)
    assert agree["spearman"] > 0.9
    assert agree["median_rel_error"] < 0.2


def test_screen_agreement_on_hand_values():
    est = np.array([0.1, 0.5, 0.2, 0.9, np.nan])
    exact = np.array([0.1, 0.4, 0.3, 1.0, 0.2])
    agree = screen_agreement(est, exact, k=2)
    assert agree["n"] == 4
    assert agree["spearman"] == pytest.approx(1.0)
    assert agree["median_rel_error"] == pytest.approx(np.median([0, 0.25, 1 / 3, 0.1]))
    assert agree["topk_recall"] == 1.0
    assert screen_agreement(np.array([3.0, 2, 1]), np.array([1.0, 2, 3]), k=1)["topk_recall"] == 0


def test_zero_base_error_runs_everything_exactly(planted_kx):
    model, ds = planted_kx(n_seq=40)
    with torch.no_grad():  # targets = the model's own outputs: a zero base MSE
        ds.targets = model(torch.as_tensor(ds.inputs)).numpy()
    table = ablation_table(model, ds, exact="screen")
    assert table.attrs["screened_out"] == []
    assert table.rel_delta.isna().all()


def test_engine_and_screen_validation():
    model, ds = _model(), _dataset()
    with pytest.raises(UnitprobeError, match="engine == 'cudnn'"):
        ablation_table(model, ds, engine="cudnn")
    with pytest.raises(UnitprobeError, match="exact == 'some'"):
        ablation_table(model, ds, exact="some")
    with pytest.raises(UnitprobeError, match="screen_margin == 0.5"):
        ablation_table(model, ds, exact="screen", screen_margin=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_engine_on_cuda_equals_cpu():
    model, ds = _model(), _dataset()
    cpu = ablation_table(model, ds, site="both", start=2, groups=[[0, 1]])
    gpu = ablation_table(model.cuda(), ds, site="both", start=2, groups=[[0, 1]])
    _assert_tables_close(gpu, cpu, rtol=1e-5)
    screened = ablation_table(model, ds, exact="screen")
    assert np.isfinite(screened.attrs["screen_spearman"])


def _autograd_dsse(model, x, y, modes, site, start, seed, layer):
    """Reference screen: one autograd backward per (step, output) through the stepwise run."""
    grad_site = "c" if site == "c" else "h"
    with torch.no_grad():
        clean = run(model, x).sites[grad_site][layer]
    eps = torch.zeros_like(clean, requires_grad=True)
    edit = Intervention(grad_site, layer=layer, setter=partial(lambda e, v, t: v + e[:, t], eps))
    pred = run(model, x, [edit], record=()).outputs
    r = pred.detach().double() - y
    out = torch.zeros(clean.shape[2], len(modes), y.shape[2], dtype=torch.float64)
    for k, mode in enumerate(modes):
        delta = VALUE_MAKERS[mode](clean, len(clean), seed).transpose(0, 1) - clean
        delta[:, :start] = 0
        for s in range(start, x.shape[1]):
            for o in range(y.shape[2]):
                (g,) = torch.autograd.grad(pred[:, s, o].sum(), eps, retain_graph=True)
                dy = (g * delta).sum(dim=1).double()  # (N, H)
                out[:, k, o] += (2 * r[:, s, o, None] * dy + dy**2).sum(dim=0)
    return out


@pytest.mark.parametrize(("site", "layer"), [("h", 0), ("c", 0), ("both", 1)])
def test_hand_written_adjoint_equals_autograd(site, layer):
    model, ds = _model(n_layers=2, n_units=5), _dataset(n_seq=8, n_steps=7)
    x = torch.as_tensor(ds.inputs)
    y = torch.as_tensor(ds.targets, dtype=torch.float64)
    got = screen_delta_sse(model, x, y, MODES, site=site, start=2, seed=1, layers=[0, 1])
    want = _autograd_dsse(model, x, y, MODES, site, 2, 1, layer)
    torch.testing.assert_close(got[layer], want, rtol=1e-4, atol=1e-7)
