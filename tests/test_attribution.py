"""Tests of unitprobe.methods.attribution against closed forms, autograd,
Captum and planted models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import IntegratedGradients, NeuronGradient, NeuronIntegratedGradients
from torch import nn

from unitprobe import schemas
from unitprobe.config import AttributionConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.attribution import (
    attribution_tables,
    input_lag_attribution,
    input_lag_per_sequence,
    receptive_fields,
    unit_attribution,
    unit_attribution_per_sequence,
)
from unitprobe.methods.attribution._common import CaptumNetwork, budget_batch_size, pairs
from unitprobe.methods.attribution.fields import receptive_field_arrays
from unitprobe.model.lstm import ModelConfig, UnitLSTM, run
from unitprobe.model.planted import planted_lstm

# units 0..3 hold K[t], K[t-1], X[t], X[t-1]; unit 4 is dead
TAPS = [(0, 0), (0, 1), (1, 0), (1, 1), None]
NAMES = ["K", "X"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one thread is fastest and immune to other jobs on the machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_model(seed: int, n_layers: int = 2, n_inputs: int = 3, n_outputs: int = 2) -> UnitLSTM:
    torch.manual_seed(seed)
    config = ModelConfig(n_inputs=n_inputs, n_units=6, n_outputs=n_outputs, n_layers=n_layers)
    return UnitLSTM(config).eval()


def normal_inputs(n: int, t: int, f: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, t, f)).astype(np.float32)


def outputs(model: UnitLSTM, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(x)).double().numpy()


def fibonacci_inputs(n: int, t: int, seed: int = 0) -> np.ndarray:
    """Two Fibonacci series with random starts, standardized per step: K[t] ~ K[t-1]."""
    rng = np.random.default_rng(seed)
    series = np.zeros((n, t, 2))
    series[:, :2] = rng.normal(size=(n, 2, 2))
    for k in range(2, t):
        series[:, k] = series[:, k - 1] + series[:, k - 2]
    series = (series - series.mean(axis=0)) / series.std(axis=0)
    return series.astype(np.float32)


class SiteProbe(nn.Module):
    """One site of one layer from the stepwise run, behind an Identity Captum can hook."""

    def __init__(self, model: UnitLSTM, site: str, layer: int) -> None:
        super().__init__()
        self.model, self.site, self.layer = model, site, layer
        self.tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tap(run(self.model, x, record=(self.site,)).sites[self.site][self.layer])


# --------------------------------------------------------------------------------------------
# outputs <- inputs x lag
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_integrated_gradients_complete_per_sequence(baseline):
    model = random_model(0)
    x = normal_inputs(16, 10, 3)
    step, o = 7, 1
    attr, delta = input_lag_per_sequence(model, x, step, o, baseline=baseline, n_steps_ig=64)
    assert attr.shape == (16, step + 1, 3)  # lags 0..7
    base = np.zeros_like(x) if baseline == "zero" else np.broadcast_to(x.mean(0), x.shape).copy()
    expected = outputs(model, x)[:, step, o] - outputs(model, base)[:, step, o]
    total = attr.sum(axis=(1, 2))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(total, expected, rtol=0, atol=1e-3 * scale)
    assert np.abs(delta).max() < 1e-4 * scale  # Captum's own completeness check agrees


def test_per_sequence_steps_index_lags_from_each_sequence_step():
    model = random_model(1)
    x = normal_inputs(4, 9, 3)
    steps = np.array([8, 3, 5, 8])
    attr, delta = input_lag_per_sequence(model, x, steps, 0, n_steps_ig=48)
    assert attr.shape == (4, 9, 3)
    assert np.isnan(attr[1, 4:]).all() and not np.isnan(attr[1, :4]).any()  # only lags 0..3
    for n, t in enumerate(steps):  # same as asking for that step alone
        alone, _ = input_lag_per_sequence(model, x[n : n + 1], int(t), 0, n_steps_ig=48)
        np.testing.assert_allclose(attr[n, : t + 1], alone[0], atol=1e-6)
    assert delta.shape == (4,)


def test_each_target_step_runs_only_up_to_that_step():
    # sequences run only as far as their own target step: the same attributions as Captum's
    # integrated gradients on the whole sequences (later inputs cannot matter)
    model = random_model(3)
    x = normal_inputs(6, 9, 3, seed=3)
    steps = np.array([2, 8, 5, 2, 8, 6])
    attr, delta = input_lag_per_sequence(model, x, steps, 1, n_steps_ig=24)
    net = CaptumNetwork(model)
    z = torch.as_tensor(x)
    full, full_delta = IntegratedGradients(net).attribute(
        z, baselines=torch.zeros_like(z), target=1, n_steps=24, return_convergence_delta=True,
        additional_forward_args=(torch.zeros_like(z), torch.as_tensor(steps)),
    )  # fmt: skip
    for n, t in enumerate(steps):
        by_lag = full[n, : t + 1].flip(0).double().numpy()
        np.testing.assert_allclose(attr[n, : t + 1], by_lag, rtol=0, atol=1e-6)
        assert np.isnan(attr[n, t + 1 :]).all()
    np.testing.assert_allclose(delta, full_delta.double().numpy(), rtol=0, atol=1e-5)


def test_saliency_and_input_x_gradient_equal_autograd():
    model = random_model(2)
    x = normal_inputs(5, 8, 3)
    step, o = 6, 0
    xt = torch.as_tensor(x).requires_grad_()
    (grad,) = torch.autograd.grad(model(xt)[:, step, o].sum(), xt)
    grad = grad.numpy()[:, : step + 1][:, ::-1]  # by source step -> by lag
    sal, none = input_lag_per_sequence(model, x, step, o, method="saliency")
    ixg, _ = input_lag_per_sequence(model, x, step, o, method="input_x_gradient")
    assert none is None
    np.testing.assert_allclose(sal, grad, atol=1e-6)
    np.testing.assert_allclose(ixg, grad * x[:, : step + 1][:, ::-1], atol=1e-6)


def test_input_lag_puts_mass_on_the_read_input_and_lag():
    # the output reads the unit holding K[t-1]: all attribution belongs to (K, lag 1)
    model = planted_lstm(2, TAPS, readout=np.array([[0.0, 1.0, 0.0, 0.0, 0.0]]))
    x = normal_inputs(64, 12, 2)
    df = input_lag_attribution(model, x, NAMES, ["y"], max_lag=4, max_examples=64)
    assert list(df.columns) == schemas.columns("input_lag")
    assert len(df) == 2 * 5 and set(df["output"]) == {"y"}
    top = df.loc[df["attribution"].idxmax()]
    assert (top["feature"], top["lag"]) == ("K", 1)
    assert top["attribution"] / df["attribution"].sum() > 0.9
    assert df.attrs["convergence_delta_max"] < 1e-5
    assert df.attrs["steps"] == list(range(4, 12)) and df.attrs["max_lag"] == 4


def test_input_lag_finds_a_lag_two_tap():
    taps = [(0, 0), (0, 1), (0, 2), (1, 0)]
    model = planted_lstm(2, taps, readout=np.array([[0.0, 0.0, 1.0, 0.0]]))
    x = normal_inputs(32, 8, 2, seed=3)
    for method in ("integrated_gradients", "saliency", "input_x_gradient"):
        df = input_lag_attribution(model, x, NAMES, ["y"], method=method, max_lag=3)
        top = df.loc[df["attribution"].idxmax()]
        assert (top["feature"], top["lag"], top["output"]) == ("K", 2, "y"), method
        assert top["attribution"] / df["attribution"].sum() > 0.99, method


def test_trained_model_attributes_to_the_delay_it_learned():
    # y[t] = b[t-2]: a briefly trained fused model must put its attribution on (b, lag 2)
    torch.manual_seed(0)
    x = torch.as_tensor(normal_inputs(256, 8, 2, seed=4))
    y = torch.zeros(256, 8, 1)
    y[:, 2:, 0] = x[:, :-2, 1]
    model = UnitLSTM(ModelConfig(n_inputs=2, n_units=6, n_outputs=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(200):
        optimizer.zero_grad()
        loss = ((model(x)[:, 2:] - y[:, 2:]) ** 2).mean()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    df = input_lag_attribution(model.eval(), x.numpy(), ["a", "b"], ["y"], max_lag=4)
    top = df.loc[df["attribution"].idxmax()]
    assert (top["feature"], top["lag"]) == ("b", 2)
    assert top["attribution"] / df["attribution"].sum() > 0.8


# --------------------------------------------------------------------------------------------
# units <- inputs x lag (receptive fields)
# --------------------------------------------------------------------------------------------


def test_receptive_fields_name_each_planted_unit():
    model = planted_lstm(2, TAPS)
    rf = receptive_fields(model, normal_inputs(128, 12, 2), NAMES, max_lag=3)
    assert list(rf.columns) == schemas.columns("receptive_fields") and len(rf) == 5 * 2 * 4
    assert set(rf["state"]) == {"h"} and set(rf["method"]) == {"gradient"}
    for unit, tap in enumerate(TAPS[:4]):
        field = rf[rf["unit"] == unit]
        top = field.loc[field["attribution"].idxmax()]
        assert (top["feature"], top["lag"]) == (NAMES[tap[0]], tap[1])
        assert top["attribution_signed"] == pytest.approx(0.1, rel=0.1)  # the planted gain
        others = field.drop(index=top.name)
        assert others["attribution"].max() < 1e-6
        assert others["attribution_signed"].abs().max() < 1e-6
    dead = rf[rf["unit"] == 4]
    assert (dead["attribution"] == 0).all() and (dead["attribution_signed"] == 0).all()


def test_receptive_fields_separate_collinear_terms():
    # Fibonacci inputs: K[t] and K[t-1] are nearly collinear, and so are the units holding them
    x = fibonacci_inputs(256, 16)
    late = slice(8, 16)
    r = np.corrcoef(x[:, late][:, 1:, 0].ravel(), x[:, late][:, :-1, 0].ravel())[0, 1]
    assert r**2 > 0.99
    model = planted_lstm(2, TAPS)
    with torch.no_grad():
        h = run(model, x).numpy("h")
    assert np.corrcoef(h[:, late, 0].ravel(), h[:, late, 1].ravel())[0, 1] > 0.99
    rf = receptive_fields(model, x, NAMES, max_lag=2, steps=list(range(8, 16)), max_sequences=256)
    for unit, lag in ((0, 0), (1, 1)):
        field = rf[(rf["unit"] == unit) & (rf["feature"] == "K")].set_index("lag")["attribution"]
        assert field.idxmax() == lag
        assert field.drop(index=lag).max() < 1e-3 * field[lag]


@pytest.mark.parametrize(("site", "layer"), [("h", 1), ("c", 0), ("f", 1), ("g", 0)])
def test_receptive_field_gradient_equals_captum_neuron_gradient(site, layer):
    model = random_model(5)
    x = normal_inputs(12, 7, 3, seed=5)
    t = 6
    rf = receptive_fields(model, x, layer=layer, site=site, max_lag=t, steps=[t])
    probe = SiteProbe(model, site, layer)
    xt = torch.as_tensor(x).requires_grad_()
    for u in (0, 4):
        grad = NeuronGradient(probe, probe.tap).attribute(xt, (t, u)).numpy()
        by_lag = grad[:, ::-1]  # source step t - lag
        field = rf[rf["unit"] == u].sort_values(["feature", "lag"])
        np.testing.assert_allclose(
            field["attribution_signed"].to_numpy().reshape(3, t + 1), by_lag.mean(0).T, atol=1e-6
        )
        np.testing.assert_allclose(
            field["attribution"].to_numpy().reshape(3, t + 1), np.abs(by_lag).mean(0).T, atol=1e-6
        )


def test_receptive_field_integrated_gradients_equal_captum():
    model = random_model(6)
    x = normal_inputs(8, 6, 3, seed=6)
    t, u = 5, 2
    rf = receptive_fields(
        model, x, layer=1, units=u, method="integrated_gradients", n_steps_ig=8, max_lag=t,
        steps=t, baseline="mean",
    )  # fmt: skip
    probe = SiteProbe(model, "h", 1)
    base = torch.as_tensor(x.mean(0, keepdims=True)).expand(len(x), -1, -1)
    ig = NeuronIntegratedGradients(probe, probe.tap).attribute(
        torch.as_tensor(x), (t, u), baselines=base, n_steps=8
    )
    by_lag = ig.numpy()[:, ::-1]
    field = rf.sort_values(["feature", "lag"])
    assert set(field["unit"]) == {u}
    np.testing.assert_allclose(
        field["attribution_signed"].to_numpy().reshape(3, t + 1), by_lag.mean(0).T, atol=1e-6
    )
    np.testing.assert_allclose(
        field["attribution"].to_numpy().reshape(3, t + 1), np.abs(by_lag).mean(0).T, atol=1e-6
    )


def test_receptive_fields_average_each_lag_over_the_steps_where_it_exists():
    model = random_model(7, n_layers=1)
    x = normal_inputs(6, 5, 3, seed=7)
    both = receptive_fields(model, x, max_lag=3, steps=[1, 4])
    late = receptive_fields(model, x, max_lag=3, steps=[4])
    lag3 = both["lag"] == 3
    np.testing.assert_allclose(both[lag3]["attribution"], late[lag3]["attribution"], atol=1e-7)
    assert not np.allclose(both[~lag3]["attribution"], late[~lag3]["attribution"])


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_receptive_field_arrays_hold_the_table_values(method):
    model = random_model(8, n_layers=2)
    x = normal_inputs(9, 7, 3, seed=8)
    table = receptive_fields(model, x, ["a", "b", "c"], layer=1, max_lag=4, method=method)
    fields = receptive_field_arrays(
        model, x, ["a", "b", "c"], layer=1, max_lag=4, method=method
    )  # fmt: skip
    assert fields.signed.shape == (5, 3, model.config.n_units)
    assert (fields.input_names, fields.max_lag) == (["a", "b", "c"], 4)
    assert (fields.n_sequences, fields.steps) == (table.attrs["n_sequences"], table.attrs["steps"])
    by_cell = table.set_index(["unit", "feature", "lag"])
    for (unit, feature, lag), row in by_cell.iterrows():
        f = "abc".index(feature)
        assert fields.signed[lag, f, unit] == row["attribution_signed"]
        assert fields.absolute[lag, f, unit] == row["attribution"]
    signed_only = receptive_field_arrays(
        model, x, ["a", "b", "c"], layer=1, max_lag=4, method=method, with_absolute=False
    )  # fmt: skip
    assert signed_only.absolute is None
    np.testing.assert_array_equal(signed_only.signed, fields.signed)


def test_receptive_fields_keep_the_requested_units_in_order():
    model = random_model(9, n_layers=1)
    x = normal_inputs(4, 6, 3, seed=9)
    table = receptive_fields(model, x, max_lag=2, units=[4, 1])
    assert table["unit"].tolist() == [4] * 9 + [1] * 9
    assert table["lag"].tolist()[:9] == [0, 1, 2] * 3
    full = receptive_fields(model, x, max_lag=2).set_index(["unit", "feature", "lag"])
    np.testing.assert_array_equal(
        table["attribution_signed"].to_numpy(),
        full.loc[[(u, f, k) for u, f, k in table[["unit", "feature", "lag"]].itertuples(
            index=False)], "attribution_signed"].to_numpy(),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# outputs <- units
# --------------------------------------------------------------------------------------------


def test_captum_network_computes_the_fused_forward():
    # the per-layer modules that Captum hooks share the model's weights and its function
    model = random_model(12, n_layers=3)
    x = torch.as_tensor(normal_inputs(5, 7, 3, seed=12))
    net = CaptumNetwork(model)
    with torch.no_grad():
        torch.testing.assert_close(net.sequence(x), model(x), atol=1e-6, rtol=0)
        torch.testing.assert_close(net.sequence(x), run(model, x).outputs, atol=1e-6, rtol=0)
        # each tap carries its layer's hidden states; forward reads one step per sequence
        seen = []
        handle = net.taps[1].register_forward_hook(lambda _m, _i, out: seen.append(out))
        step = torch.tensor([0, 6, 3, 2, 5])
        at_steps = net(x - 1.0, torch.ones_like(x), step)
        handle.remove()
        torch.testing.assert_close(seen[0], run(model, x).h[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(at_steps, model(x)[torch.arange(5), step], atol=1e-6, rtol=0)


def test_unit_attribution_only_credits_the_units_the_readout_reads():
    weights = np.array([[0.0, 2.0, -1.5, 0.0, 0.0]])
    model = planted_lstm(2, TAPS, readout=weights)
    x = normal_inputs(64, 10, 2, seed=8)
    df = unit_attribution(model, x, ["y"], max_examples=64)
    assert list(df.columns) == schemas.columns("unit_attribution") and len(df) == 5
    assert set(df["layer"]) == {0} and set(df["output"]) == {"y"}
    assert df.attrs["baseline"] == "mean"  # AttributionConfig's baseline
    by_unit = df.set_index("unit")["attribution"]
    assert by_unit[[0, 3, 4]].max() < 1e-7
    assert by_unit[[1, 2]].min() > 0.05
    # the last layer is exact: W[o, u] * (h_u(x) - h_u(baseline)) at the target step
    attr, delta = unit_attribution_per_sequence(model, x, 9, 0)
    with torch.no_grad():
        dh = run(model, x).numpy("h")[:, 9] - run(model, np.zeros_like(x)).numpy("h")[:, 9]
    np.testing.assert_allclose(attr, weights * dh, atol=1e-6)
    assert np.abs(delta).max() < 1e-6


@pytest.mark.parametrize("method", ["layer_integrated_gradients", "layer_conductance"])
@pytest.mark.parametrize("layer", [0, 1])
def test_unit_attribution_is_complete(method, layer):
    model = random_model(9)
    x = normal_inputs(8, 6, 3, seed=9)
    step, o = 5, 1
    attr, delta = unit_attribution_per_sequence(
        model, x, step, o, layer=layer, method=method, n_steps_ig=64
    )
    assert attr.shape == (8, 6)
    expected = outputs(model, x)[:, step, o] - outputs(model, np.zeros_like(x))[:, step, o]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(attr.sum(axis=1), expected, rtol=0, atol=5e-3 * scale)
    np.testing.assert_allclose(attr.sum(axis=1) - expected, delta, atol=1e-5 * scale)


def test_gradient_x_activation_is_h_times_readout_weight_on_the_last_layer():
    model = random_model(10, n_layers=1)
    x = normal_inputs(4, 5, 3, seed=10)
    attr, delta = unit_attribution_per_sequence(
        model, x, 4, 1, method="layer_gradient_x_activation"
    )
    with torch.no_grad():
        h = run(model, x).numpy("h")[:, 4]
    expected = h * model.readout.weight.detach().double().numpy()[1]
    np.testing.assert_allclose(attr, expected, atol=1e-6)
    assert delta is None


# --------------------------------------------------------------------------------------------
# the table, sampling, device hygiene, validation
# --------------------------------------------------------------------------------------------


def test_attribution_tables_schema_and_dataset_duck_typing():
    model = random_model(11, n_inputs=2, n_outputs=1)
    data = SimpleNamespace(inputs=normal_inputs(20, 6, 2), input_names=NAMES, output_names=["y"])
    config = AttributionConfig(max_examples=20, max_sequences=10, n_steps_ig=8)
    tables = attribution_tables(model, data, config=config)
    assert list(tables) == ["input_lag", "unit_attribution", "receptive_fields"]
    for name, df in tables.items():  # exactly the schema's columns, in order, with its dtypes
        schema = schemas.SCHEMAS[name]
        assert list(df.columns) == list(schema.columns), name
        assert [str(df[c].dtype) for c in df.columns] == [
            "object" if d == "string" else d for _, d in schema.dtypes
        ], name
        pd.testing.assert_frame_equal(df, schema.coerce(df))
    n_lags = 6  # max_lag defaults to min(10, n_steps - 1) == 5
    assert len(tables["input_lag"]) == 2 * n_lags
    assert len(tables["unit_attribution"]) == 2 * 6
    assert len(tables["receptive_fields"]) == 2 * 6 * 2 * n_lags
    for name in ("input_lag", "receptive_fields"):
        assert set(tables[name]["feature"]) == set(NAMES)
        assert set(tables[name]["lag"]) == set(range(n_lags))
    for name in ("unit_attribution", "receptive_fields"):
        assert set(tables[name]["layer"]) == {0, 1}
    assert set(tables["input_lag"]["output"]) == set(tables["unit_attribution"]["output"]) == {"y"}
    assert set(tables["receptive_fields"]["state"]) == {"h"}
    for name in ("input_lag", "unit_attribution"):
        assert tables[name].attrs["convergence_delta_max"] < 1e-4
        assert 0 <= tables[name].attrs["convergence_delta_mean"]
        assert (
            tables[name].attrs["convergence_delta_mean"]
            <= (tables[name].attrs["convergence_delta_max"])
        )
    again = attribution_tables(model, data, config=config)
    for name, df in tables.items():
        pd.testing.assert_frame_equal(df, again[name])
    # the same numbers as the functions called on their own with the config's settings
    alone = unit_attribution(
        model, data, layer=0, n_steps_ig=8, max_examples=20, baseline=config.baseline
    )
    units = tables["unit_attribution"]
    pd.testing.assert_frame_equal(units[units["layer"] == 0].reset_index(drop=True), alone)
    fields = receptive_fields(model, data, layer=1, max_sequences=10, baseline=config.baseline)
    rf = tables["receptive_fields"]
    pd.testing.assert_frame_equal(rf[rf["layer"] == 1].reset_index(drop=True), fields)
    pd.testing.assert_frame_equal(
        tables["input_lag"],
        input_lag_attribution(model, data, n_steps_ig=8, max_examples=20),
    )


def test_attribution_tables_follow_the_config_methods():
    model = random_model(13, n_layers=1, n_inputs=2, n_outputs=2)
    x = normal_inputs(12, 5, 2, seed=13)
    config = AttributionConfig(
        methods=("saliency", "input_x_gradient"),
        unit_methods=("layer_gradient_x_activation",),
        field_methods=(),
        n_steps_ig=4,
        max_examples=12,
    )
    tables = attribution_tables(model, x, config=config)
    assert tables["input_lag"]["method"].unique().tolist() == ["saliency", "input_x_gradient"]
    assert set(tables["unit_attribution"]["method"]) == {"layer_gradient_x_activation"}
    assert tables["input_lag"].attrs["convergence_delta_max"] is None  # no integrated method
    empty = tables["receptive_fields"]
    assert empty.empty and list(empty.columns) == schemas.columns("receptive_fields")
    pd.testing.assert_frame_equal(empty, schemas.SCHEMAS["receptive_fields"].empty())


def test_pairs_are_distinct_and_balanced_over_steps():
    steps = np.array([5, 6, 7, 8])
    seq, step = pairs(10, steps, 25, seed=0)
    assert len(set(zip(seq.tolist(), step.tolist(), strict=True))) == 25
    assert np.bincount(step - 5).tolist() == [7, 6, 6, 6]
    assert np.bincount(seq).max() - np.bincount(seq).min() <= 1  # sequences used evenly
    seq, step = pairs(10, steps, 8, seed=0)
    assert len(set(seq.tolist())) == 8  # under the sequence count: no sequence twice
    seq, step = pairs(3, steps, None, seed=0)
    assert len(set(zip(seq.tolist(), step.tolist(), strict=True))) == 12  # every pair


def test_cudnn_is_off_during_attribution_and_restored_after():
    model = planted_lstm(2, TAPS, readout=np.ones((1, 5)))
    x = normal_inputs(4, 5, 2)
    seen: list[bool] = []
    model.readout.register_forward_hook(lambda *_: seen.append(torch.backends.cudnn.enabled))
    layer_weights = model.layer_weights

    def recording_weights(layer):
        seen.append(torch.backends.cudnn.enabled)
        return layer_weights(layer)

    model.layer_weights = recording_weights
    before = torch.backends.cudnn.enabled
    input_lag_attribution(model, x, n_steps_ig=4)
    unit_attribution(model, x, method="layer_conductance", n_steps_ig=4)
    receptive_fields(model, x)
    assert seen and not any(seen)
    assert torch.backends.cudnn.enabled == before
    assert all(p.requires_grad for p in model.parameters())


def test_state_is_restored_after_an_error():
    model = planted_lstm(2, TAPS, readout=np.ones((1, 5)))

    def fail(*_):
        raise RuntimeError("boom")

    handle = model.readout.register_forward_hook(fail)
    before = torch.backends.cudnn.enabled
    with pytest.raises(RuntimeError, match="boom"):
        input_lag_attribution(model, normal_inputs(4, 5, 2), n_steps_ig=4)
    handle.remove()
    assert torch.backends.cudnn.enabled == before
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m, x: input_lag_attribution(m, x, method="lrp"), UnitprobeError, "method =="),
        (lambda m, x: input_lag_attribution(m, x, baseline="median"), UnitprobeError, "baseline"),
        (lambda m, x: input_lag_attribution(m, x, ["K"]), DataError, "1 input_names"),
        (lambda m, x: input_lag_attribution(m, x, NAMES, ["a", "b"]), DataError, "2 output_n"),
        (lambda m, x: input_lag_attribution(m, x, steps=[9]), UnitprobeError, "out of range"),
        (lambda m, x: input_lag_attribution(m, x, max_lag=6), UnitprobeError, "max_lag == 6"),
        (lambda m, x: input_lag_attribution(m, x[..., :1]), DataError, "1 features"),
        (lambda m, x: input_lag_attribution(m, x * np.nan), DataError, "NaN"),
        (lambda m, x: input_lag_per_sequence(m, x, 2, 3), UnitprobeError, "output == 3"),
        (lambda m, x: receptive_fields(m, x, units=[7]), UnitprobeError, r"units \[7\]"),
        (lambda m, x: receptive_fields(m, x, site="q"), UnitprobeError, "site == 'q'"),
        (lambda m, x: receptive_fields(m, x, layer=1), UnitprobeError, "layer == 1"),
        (lambda m, x: unit_attribution(m, x, method="ig"), UnitprobeError, "method == 'ig'"),
        (lambda m, x: input_lag_attribution(m, x, max_examples=0), UnitprobeError, ">= 1"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    model = planted_lstm(2, TAPS)
    with pytest.raises(error, match=match):
        call(model, normal_inputs(3, 6, 2))


# --------------------------------------------------------------------------------------------
# memory budget
# --------------------------------------------------------------------------------------------


def test_budget_batch_size_follows_the_documented_cost():
    model = random_model(0)  # 2 layers, 6 units, 3 inputs, 2 outputs
    per_sequence = 4 * 10 * (14 * 6 * 2 + 2 * 3 + 2) * 16  # bytes: 10 steps, 16 points
    assert budget_batch_size(model, 10, 16, 1000, 100 * per_sequence / 2**20) == 100
    assert budget_batch_size(model, 10, 16, 64, 100 * per_sequence / 2**20) == 64
    assert budget_batch_size(model, 10, 16, 64, 1e-9) == 1
    with pytest.raises(UnitprobeError, match="memory_budget_mb == 0"):
        budget_batch_size(model, 10, 16, 64, 0)


def test_batches_and_budget_change_only_float_rounding():
    model = random_model(3)
    x = normal_inputs(12, 6, 3)
    kw = dict(config=AttributionConfig(n_steps_ig=4, max_examples=20), seed=1)
    one = attribution_tables(model, x, batch_size=256, **kw)
    tiny = attribution_tables(model, x, batch_size=64, memory_budget_mb=0.05, **kw)
    for name in ("input_lag", "unit_attribution", "receptive_fields"):
        pd.testing.assert_frame_equal(one[name], tiny[name], atol=1e-6, rtol=1e-5)
