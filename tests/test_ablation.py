import types
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from unitprobe import schemas
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation import (
    MODES,
    ablate,
    ablation_table,
    ablation_table_arrays,
    all_but,
    derangement,
    generic_ablation,
    mean_values,
    resample_values,
    top_k_units,
    zero_values,
)
from unitprobe.model.lstm import SITES, Intervention, ModelConfig, UnitLSTM, interventions, run

# These tests check exact ablation; the screen (the analysis default) is tested on its own.
ablation_table = partial(ablation_table, exact="all")
ablation_table_arrays = partial(ablation_table_arrays, exact="all")


def _model(n_layers=2, n_units=6, n_inputs=3, n_outputs=2, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(n_inputs=n_inputs, n_units=n_units, n_outputs=n_outputs, n_layers=n_layers)
    return UnitLSTM(cfg).eval()


def _dataset(n_seq=16, n_steps=10, n_inputs=3, seed=0):
    """i.i.d. inputs; targets are inputs 0 and 1 lagged by one step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_seq, n_steps, n_inputs)).astype(np.float32)
    y = np.zeros((n_seq, n_steps, 2), np.float32)
    y[:, 1:] = x[:, :-1, :2]
    return types.SimpleNamespace(inputs=x, targets=y, output_names=["a", "b"])


def _mse(outputs, targets, start=0):
    err = (outputs.double().numpy()[:, start:] - np.asarray(targets, float)[:, start:]) ** 2
    return np.append(err.mean(axis=(0, 1)), err.mean())


# --------------------------------------------------------------------------------------------
# ablate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("site", ["h", "c", "both"])
def test_ablating_nothing_equals_plain_run_exactly(mode, site):
    model, ds = _model(), _dataset()
    x = torch.as_tensor(ds.inputs)
    with torch.no_grad():
        clean = run(model, x)
        edited = ablate(model, x, [], mode=mode, site=site, layer=1, start=2)
        fused = model(x)
    assert torch.equal(edited.outputs, clean.outputs)
    for s in SITES:
        assert torch.equal(edited.sites[s], clean.sites[s])
    assert (edited.outputs - fused).abs().max() < 1e-6


@pytest.mark.parametrize("site", ["h", "c"])
def test_zeroing_at_step_s_changes_only_later_outputs(site):
    model, ds = _model(), _dataset()
    x, s = torch.as_tensor(ds.inputs), 4
    with torch.no_grad():
        clean = run(model, x, record=())
        edited = ablate(model, x, 2, mode="zero", site=site, layer=0, start=s, record=())
    assert torch.equal(edited.outputs[:, :s], clean.outputs[:, :s])
    per_step = (edited.outputs[:, s:] - clean.outputs[:, s:]).abs().amax(dim=(0, 2))
    assert (per_step > 1e-5).all()


def test_site_both_sets_c_and_h_to_their_own_replacements():
    model, ds = _model(n_layers=1), _dataset()
    x, s, u = torch.as_tensor(ds.inputs), 3, 4
    with torch.no_grad():
        clean = run(model, x)
        zero = ablate(model, x, [u], mode="zero", site="both", start=s)
        mean = ablate(model, x, [u], mode="mean", site="both", start=s)
    assert torch.equal(zero.c[0, :, s:, u], torch.zeros_like(zero.c[0, :, s:, u]))
    assert torch.equal(zero.h[0, :, s:, u], torch.zeros_like(zero.h[0, :, s:, u]))
    for site in ("c", "h"):
        per_step = clean.sites[site][0, :, s:, u].double().mean(dim=0).float()  # (T - s,)
        assert torch.equal(mean.sites[site][0, :, s:, u], per_step.expand(len(x), -1))
    # other units still follow the dynamics: h != o * tanh(c) only at the ablated unit
    assert torch.allclose(
        mean.h[0, :, :, :u], mean.o[0, :, :, :u] * torch.tanh(mean.c[0, :, :, :u])
    )


def test_resample_takes_other_sequences_values_at_the_same_step():
    model, ds = _model(n_layers=1), _dataset()
    x = torch.as_tensor(ds.inputs)
    with torch.no_grad():
        clean = run(model, x)
        edited = ablate(model, x, [1], mode="resample", seed=7)
    perm = derangement(len(x), 7)
    assert torch.equal(edited.h[0, :, :, 1], clean.h[0, perm, :, 1])
    assert not torch.equal(edited.h[0, :, :, 1], clean.h[0, :, :, 1])


def test_reference_trace_and_reference_inputs_give_the_same_values():
    model, ds = _model(), _dataset()
    x = torch.as_tensor(ds.inputs)
    ref_x = torch.randn(40, 12, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_trace = run(model, ref_x, record=("h",))
        a = ablate(model, x, [0, 3], mode="mean", layer=1, reference=ref_x)
        b = ablate(model, x, [0, 3], mode="mean", layer=1, reference=ref_trace)
    assert torch.equal(a.outputs, b.outputs)
    mean = ref_trace.h[1, :, :10, 0].double().mean(dim=0).float()
    assert torch.equal(a.h[1, :, :, 0], mean.expand(len(x), -1))


def test_value_makers():
    ref = torch.randn(5, 4, 3)
    assert torch.equal(zero_values(ref, 5), torch.zeros(4, 1, 3))
    assert torch.allclose(mean_values(ref, 5)[:, 0], ref.mean(dim=0), atol=1e-7)
    perm = derangement(5, 2)
    assert torch.equal(resample_values(ref, 5, 2), ref[perm].transpose(0, 1))
    other = resample_values(ref, 8, 2)  # more rows than reference sequences: a seeded draw
    assert other.shape == (4, 8, 3)
    assert torch.equal(other, resample_values(ref, 8, 2))


@pytest.mark.parametrize("n", [2, 3, 5, 10, 1000])
def test_derangement_is_seeded_and_has_no_fixed_points(n):
    perm = derangement(n, seed=11)
    assert sorted(perm) == list(range(n))
    assert not np.any(perm == np.arange(n))
    assert np.array_equal(perm, derangement(n, seed=11))
    if n >= 5:
        assert not np.array_equal(perm, derangement(n, seed=12))


def test_derangement_needs_two_sequences():
    with pytest.raises(DataError, match="needs >= 2 sequences, got 1"):
        derangement(1)


def _raise(value, step):
    raise RuntimeError("setter failed")


def test_no_intervention_stays_attached_after_an_exception():
    model, ds = _model(), _dataset()
    x = torch.as_tensor(ds.inputs)
    with torch.no_grad():
        clean = run(model, x)
        with pytest.raises(RuntimeError, match="setter failed"):
            with interventions(model, [Intervention("h", layer=1, units=[2], setter=_raise)]):
                assert len(model._interventions) == 1
                run(model, x)
        assert model._interventions == []

        def short_values(reference, n_sequences, seed):  # one step too few -> IndexError
            return zero_values(reference, n_sequences)[:-1]

        with pytest.raises(IndexError):
            generic_ablation(model, x, [1], values=short_values, layer=0)
        assert model._interventions == []
        after = run(model, x)
    assert torch.equal(after.outputs, clean.outputs)
    for s in SITES:
        assert torch.equal(after.sites[s], clean.sites[s])


# --------------------------------------------------------------------------------------------
# ablation_table
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("site", "start"), [("h", 0), ("c", 3), ("both", 0)])
def test_batched_table_equals_per_unit_loop(site, start):
    model, ds = _model(), _dataset()
    groups = [[1, 4], [5, 0, 2]]
    # a tiny budget forces chunks that split the row blocks of single ablations
    table = ablation_table(
        model, ds, groups=groups, site=site, start=start, seed=3, memory_budget_mb=0.05
    )
    assert list(table.columns) == schemas.columns("ablation")
    assert len(table) == 2 * (6 + len(groups)) * 3 * 3  # conditions x modes x (2 outputs + all)
    rows = table.set_index(["layer", "units", "mode", "output"])
    x = torch.as_tensor(ds.inputs)
    with torch.no_grad():
        clean = run(model, x, record=("h", "c"))
        base = _mse(clean.outputs, ds.targets, start)
        for layer in (0, 1):
            for units in [[u] for u in range(6)] + groups:
                label = "+".join(map(str, sorted(units)))
                for mode in MODES:
                    trace = ablate(
                        model, x, units, mode=mode, site=site, layer=layer, start=start, seed=3,
                        reference=clean, record=(),
                    )  # fmt: skip
                    mse = _mse(trace.outputs, ds.targets, start)
                    for name, value, b in zip(["a", "b", "all"], mse, base, strict=True):
                        row = rows.loc[(layer, label, mode, name)]
                        assert abs(row.mse - value) < 1e-6
                        assert abs(row.mse_base - b) < 1e-6
                        assert abs(row.delta_mse - (value - b)) < 1e-6
                        assert row.rel_delta == pytest.approx(row.delta_mse / row.mse_base)


def test_chunking_does_not_change_the_table():
    model, ds = _model(), _dataset()
    one = ablation_table(model, ds, modes=("mean", "resample"), memory_budget_mb=512)
    many = ablation_table(model, ds, modes=("mean", "resample"), memory_budget_mb=0.02)
    pd.testing.assert_frame_equal(one, many, atol=1e-7, rtol=0)  # float32 rounding


@pytest.mark.parametrize("engine", ["stepwise", "fused"])
@pytest.mark.parametrize("site", ["h", "c", "both"])
def test_unit_without_outgoing_weights_has_zero_delta(site, engine):
    model, ds = _model(), _dataset()
    with torch.no_grad():
        model.lstm.weight_hh_l0[:, 2] = 0.0  # layer 0, unit 2: into layer 0 and layer 1
        model.lstm.weight_ih_l1[:, 2] = 0.0
        model.lstm.weight_hh_l1[:, 4] = 0.0  # layer 1, unit 4: into layer 1 and the readout
        model.readout.weight[:, 4] = 0.0
    table = ablation_table(model, ds, site=site, start=2, engine=engine)
    dead = table[
        ((table.layer == 0) & (table.units == "2")) | ((table.layer == 1) & (table.units == "4"))
    ]
    assert len(dead) == 2 * 3 * 3
    # stepwise: the same float32 arithmetic as the clean run; fused: the modified layer's
    # extra input column changes the float32 summation order (about 1e-7 of the MSE)
    tol = 1e-12 if engine == "stepwise" else 1e-6 * dead.mse_base.max()
    assert dead.delta_mse.abs().max() < tol
    live = table[(table.output == "all") & ~table.index.isin(dead.index)]
    assert (live.delta_mse.abs() > 1e-6).all()


def test_per_step_mean_leaves_a_unit_that_is_constant_across_sequences_unchanged():
    model, ds = _model(n_layers=1), _dataset()
    u, n = 3, 6
    rows = [u, n + u, 2 * n + u, 3 * n + u]  # unit 3's rows in every gate: no input, no recurrence
    with torch.no_grad():
        model.lstm.weight_ih_l0[rows] = 0.0
        model.lstm.weight_hh_l0[rows] = 0.0
        h = run(model, torch.as_tensor(ds.inputs), record=("h",)).h[0, :, :, u]
    assert torch.equal(h, h[:1].expand_as(h))  # the same in every sequence ...
    assert h[0].std() > 1e-3  # ... but not over time: a global mean would change it
    for engine, tol in (("stepwise", 1e-12), ("fused", 1e-8)):  # fused: float32 order
        table = ablation_table(model, ds, engine=engine)
        unit = table[(table.units == str(u))].set_index(["mode", "output"]).delta_mse
        assert unit["mean"].abs().max() < tol
        assert unit["resample"].abs().max() < tol
        assert abs(unit["zero", "all"]) > 1e-6


def test_planted_model_ablations_hit_exactly_the_outputs_that_read_the_unit(planted_kx):
    model, ds = planted_kx()
    table = ablation_table(model, ds).set_index(["units", "mode", "output"])
    for mode in MODES:
        x_lag = table.loc[("3", mode, "a")]  # the X[t-1] unit, read by output a
        assert x_lag.mse_base < 0.01
        assert x_lag.delta_mse > 0.5
        assert x_lag.delta_mse > 50 * x_lag.mse_base
        assert abs(table.loc[("3", mode, "b")].delta_mse) < 1e-9
        # X[t] feeds X[t-1]: it matters for a only; K[t] is read by b only; K[t-1] by nobody
        assert table.loc[("2", mode, "a")].delta_mse > 0.5
        assert abs(table.loc[("2", mode, "b")].delta_mse) < 1e-9
        assert table.loc[("0", mode, "b")].delta_mse > 0.5
        assert abs(table.loc[("0", mode, "a")].delta_mse) < 1e-9
        assert table.xs(("1", mode), level=(0, 1)).delta_mse.abs().max() < 1e-9
    # replacing X[t-1] by 0 or by its per-step mean (~0) costs ~var(X); by another draw ~2 var(X)
    assert table.loc[("3", "zero", "a")].delta_mse == pytest.approx(1.0, abs=0.15)
    assert table.loc[("3", "resample", "a")].delta_mse == pytest.approx(2.0, abs=0.3)


def test_table_options_layer_units_and_groups():
    model, ds = _model(), _dataset()
    table = ablation_table(
        model, ds, units=[5, 1], groups=[all_but(0, 6)], modes=("zero",), layer=1
    )
    assert table.layer.unique().tolist() == [1]
    assert table.units.unique().tolist() == ["1", "5", "1+2+3+4+5"]
    assert table.output.tolist()[:3] == ["a", "b", "all"]
    same = ablation_table_arrays(
        model, ds.inputs, ds.targets, ds.output_names, [5, 1], [all_but(0, 6)], ("zero",),
        layer=1, progress=True,
    )  # fmt: skip
    pd.testing.assert_frame_equal(table, same)


def test_rel_delta_is_nan_where_the_base_mse_is_zero(planted_kx):
    model, ds = planted_kx(n_seq=20)
    with torch.no_grad():
        ds.targets = run(model, ds.inputs, record=()).outputs.numpy()  # mse_base == 0
    table = ablation_table(model, ds, modes=("zero",))
    assert (table.mse_base.abs() < 1e-12).all()
    assert table.rel_delta.isna().all()


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_validation_messages():
    model, ds = _model(), _dataset()
    x = ds.inputs
    with pytest.raises(
        UnitprobeError, match=r"^mode == 'foo', must be one of zero, mean, resample$"
    ):
        ablate(model, x, [0], mode="foo")
    with pytest.raises(UnitprobeError, match="mode == 'foo', must be one of"):
        ablation_table(model, ds, modes=("zero", "foo"))
    with pytest.raises(UnitprobeError, match="unit 6 out of range, model has 6 units"):
        ablate(model, x, [6])
    with pytest.raises(UnitprobeError, match="unit 7 out of range"):
        ablation_table(model, ds, groups=[[1, 7]])
    with pytest.raises(UnitprobeError, match="site == 'g', must be one of h, c, both"):
        ablate(model, x, [0], site="g")
    with pytest.raises(UnitprobeError, match="layer == 2, model has 2 layer"):
        ablation_table(model, ds, layer=2)
    with pytest.raises(UnitprobeError, match="start == 10, must be in"):
        ablate(model, x, [0], start=10)
    with pytest.raises(UnitprobeError, match="groups == \\[\\], must be None or a non-empty"):
        ablation_table(model, ds, groups=[])
    with pytest.raises(UnitprobeError, match="group 1 of groups is empty"):
        ablation_table(model, ds, groups=[[1], []])
    with pytest.raises(UnitprobeError, match="nothing to ablate"):
        ablation_table(model, ds, units=None)
    with pytest.raises(UnitprobeError, match="memory_budget_mb == 0"):
        ablation_table(model, ds, memory_budget_mb=0)
    bad = types.SimpleNamespace(inputs=x, targets=ds.targets[:, :-1], output_names=["a", "b"])
    with pytest.raises(
        DataError, match=r"targets of shape \(16, 9, 2\) do not match inputs of shape \(16, 10, 3\)"
    ):
        ablation_table(model, bad)
    with pytest.raises(DataError, match="1 output_names"):
        ablation_table_arrays(model, x, ds.targets, ["a"])
    with pytest.raises(DataError, match="features per step"):
        ablate(model, x[:, :, :2], [0])
    with pytest.raises(UnitprobeError, match="reference trace lacks site"):
        ablate(model, x, [0], mode="mean", site="c", reference=run(model, x, record=("h",)))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def test_top_k_units_and_all_but():
    probes = pd.DataFrame(
        {
            "layer": [0, 0, 0, 0, 1, 0],
            "unit": [0, 1, 2, 3, 0, 1],
            "target": ["X[t-1]"] * 5 + ["K[t]"],
            "r2": [0.2, 0.9, np.nan, 0.5, 1.0, 0.95],
        }
    )
    assert top_k_units(probes, "X[t-1]", 2) == [1, 3]
    assert top_k_units(probes, "X[t-1]", 10) == [1, 3, 0, 2]
    assert top_k_units(probes, "X[t-1]", 1, layer=1) == [0]
    with pytest.raises(DataError, match="target 'Y' not in the probes table"):
        top_k_units(probes, "Y", 1)
    with pytest.raises(UnitprobeError, match="k == 0, must be an integer >= 1"):
        top_k_units(probes, "X[t-1]", 0)
    assert all_but(2, 5) == [0, 1, 3, 4]
    with pytest.raises(UnitprobeError, match="unit 5 out of range"):
        all_but(5, 5)


def test_generic_ablation_partials_match_ablate():
    model, ds = _model(), _dataset()
    x = torch.as_tensor(ds.inputs)
    custom = partial(generic_ablation, values=mean_values)
    with torch.no_grad():
        a = custom(model, x, [2], layer=1, start=3)
        b = ablate(model, x, [2], mode="mean", layer=1, start=3)
    assert torch.equal(a.outputs, b.outputs)
