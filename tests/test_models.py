import pytest
import torch
from torch import nn

from unitprobe.errors import DataError, UnitprobeError
from unitprobe.model.lstm import (
    SITES,
    Intervention,
    ModelConfig,
    UnitLSTM,
    fused_trace,
    interventions,
    lstm_cell,
    run,
    states_at_steps,
)
from unitprobe.model.planted import planted_lstm


def _zero(value, step):
    return torch.zeros_like(value)


def _model(n_layers=1, seed=0, n_units=5):
    torch.manual_seed(seed)
    return UnitLSTM(ModelConfig(n_inputs=3, n_units=n_units, n_outputs=2, n_layers=n_layers)).eval()


@pytest.mark.parametrize("n_layers", [1, 2])
def test_fused_trace_is_the_stepwise_run(n_layers):
    model = _model(n_layers, n_units=9)
    x = torch.randn(6, 12, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, got = run(model, x), fused_trace(model, x)
        only_h = fused_trace(model, x, record=("h",))
    assert set(got.sites) == set(SITES) and set(only_h.sites) == {"h"}
    torch.testing.assert_close(got.outputs, want.outputs, rtol=0, atol=1e-6)
    for site in SITES:
        assert got.sites[site].shape == (n_layers, 6, 12, 9)
        torch.testing.assert_close(got.sites[site], want.sites[site], rtol=0, atol=1e-6)
    assert torch.equal(only_h.h, got.h)
    with pytest.raises(UnitprobeError, match="cannot record"):
        fused_trace(model, x, record=("q",))
    with interventions(model, [Intervention("h", layer=0, units=[1], setter=_zero)]):
        with pytest.raises(UnitprobeError, match="without attached interventions; use run"):
            fused_trace(model, x)


def test_states_at_steps_are_the_stepwise_run_at_each_row_step():
    model = _model(1, n_units=9)
    x = torch.randn(7, 12, 3, generator=torch.Generator().manual_seed(3))
    steps = torch.tensor([0, 11, 4, 4, 7, 11, 0])
    with torch.no_grad():
        want = run(model, x, record=("h", "c"))
        outputs, h, c = states_at_steps(model, x, steps)
    rows = torch.arange(7)
    torch.testing.assert_close(outputs, want.outputs, rtol=0, atol=1e-6)
    torch.testing.assert_close(h, want.h[0, rows, steps], rtol=0, atol=1e-6)
    torch.testing.assert_close(c, want.c[0, rows, steps], rtol=0, atol=1e-6)
    with pytest.raises(UnitprobeError, match="needs a one-layer model without interventions"):
        states_at_steps(_model(2), x, steps)
    with pytest.raises(UnitprobeError, match=r"steps must be 7 step indices in 0\.\.11"):
        states_at_steps(model, x, steps + 1)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stepwise_run_equals_fused_lstm(n_layers, dtype):
    model = _model(n_layers).to(dtype)
    x = torch.randn(7, 15, 3, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():
        trace = run(model, x)
        hidden, (h_n, c_n) = model.lstm(x)
        fused = model(x)
    assert (trace.outputs - fused).abs().max() < 1e-6
    assert (trace.h[-1] - hidden).abs().max() < 1e-6
    assert (trace.h[:, :, -1] - h_n).abs().max() < 1e-6
    assert (trace.c[:, :, -1] - c_n).abs().max() < 1e-6
    for site in SITES:
        assert trace.sites[site].shape == (n_layers, 7, 15, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lstm_cell_equals_torch_lstm_cell(dtype):
    torch.manual_seed(2)
    cell = nn.LSTMCell(3, 5).to(dtype)
    gen = torch.Generator().manual_seed(3)
    x, h, c = (torch.randn(8, n, generator=gen, dtype=dtype) for n in (3, 5, 5))
    with torch.no_grad():
        h_ref, c_ref = cell(x, (h, c))
        out = lstm_cell(x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh)
    assert (out.h - h_ref).abs().max() < 1e-6
    assert (out.c - c_ref).abs().max() < 1e-6
    assert out._fields == SITES[:4] + ("c", "h") and all(v.shape == (8, 5) for v in out)
    gates = torch.cat([out.i, out.f, out.g, out.o], dim=1)
    pre = x @ cell.weight_ih.T + h @ cell.weight_hh.T + cell.bias_ih + cell.bias_hh
    expected = torch.cat([pre[:, :10].sigmoid(), pre[:, 10:15].tanh(), pre[:, 15:].sigmoid()], 1)
    assert (gates - expected).abs().max() < 1e-6


def test_lstm_cell_edits_feed_the_later_sites():
    torch.manual_seed(4)
    cell = nn.LSTMCell(2, 4)
    x, h, c = torch.randn(3, 2), torch.randn(3, 4), torch.randn(3, 4)
    seen = []

    def edit(site, value):
        seen.append(site)
        return torch.zeros_like(value) if site == "i" else value

    with torch.no_grad():
        out = lstm_cell(
            x, h, c, cell.weight_ih, cell.weight_hh, cell.bias_ih + cell.bias_hh, edit=edit
        )
    assert seen == ["i", "f", "g", "o", "c", "h"]
    assert torch.equal(out.i, torch.zeros(3, 4))
    assert torch.equal(out.c, out.f * c)  # the zeroed input gate lets nothing in
    assert torch.equal(out.h, out.o * torch.tanh(out.c))


def test_gates_are_consistent_with_states():
    model = _model()
    x = torch.randn(4, 9, 3)
    with torch.no_grad():
        t = run(model, x)
    c_prev = torch.cat([torch.zeros_like(t.c[:, :, :1]), t.c[:, :, :-1]], dim=2)
    assert torch.allclose(t.c, t.f * c_prev + t.i * t.g, atol=1e-6)
    assert torch.allclose(t.h, t.o * torch.tanh(t.c), atol=1e-6)


@pytest.mark.parametrize("site", SITES)
def test_writing_a_units_own_value_back_changes_nothing(site):
    model = _model(n_layers=2)
    x = torch.randn(5, 10, 3)
    identity = Intervention(site, layer=1, units=[2], setter=lambda v, t: v.clone())
    with torch.no_grad():
        clean = run(model, x)
        edited = run(model, x, [identity, Intervention(site, layer=0, units=[0, 3])])
    assert torch.equal(clean.outputs, edited.outputs)
    for s in SITES:
        assert torch.equal(clean.sites[s], edited.sites[s])


@pytest.mark.parametrize("site", ["h", "c"])
def test_zeroing_a_unit_at_step_s_changes_only_later_outputs(site):
    model = _model(n_layers=2)
    x = torch.randn(6, 12, 3)
    s = 5
    with torch.no_grad():
        clean = run(model, x)
        edited = run(model, x, [Intervention(site, layer=0, units=[1], setter=_zero, start=s)])
    assert torch.equal(clean.outputs[:, :s], edited.outputs[:, :s])
    later = (clean.outputs[:, s:] - edited.outputs[:, s:]).abs().amax(dim=(0, 2))
    assert (later > 1e-6).all(), later  # every later step changes
    assert torch.equal(edited.sites[site][0, :, s:, 1], torch.zeros(6, 12 - s))


def test_mask_selects_units_per_row_and_stop_bounds_the_edit():
    model = _model()
    x = torch.randn(2, 8, 3).repeat(2, 1, 1)  # rows 0-1 and 2-3 are the same sequences
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[2:, 4] = True  # only the second block is edited
    with torch.no_grad():
        t = run(model, x, [Intervention("h", mask=mask, setter=_zero, start=2, stop=4)])
    assert torch.equal(t.h[0, 2:, 2:4, 4], torch.zeros(2, 2))
    assert (t.h[0, :2, 2:4, 4] != 0).all()
    assert (t.h[0, 2:, 4:, 4] != 0).all()  # edit stopped at step 4


def test_intervention_propagates_to_units_that_read_the_edited_one():
    # unit 1 holds the lag-1 copy of unit 0: zeroing unit 0 at step 3 zeroes unit 1 at step 4
    model = planted_lstm(1, [(0, 0), (0, 1), (0, 2)])
    x = torch.randn(3, 8, 1)
    with torch.no_grad():
        t = run(model, x, [Intervention("h", units=[0], setter=_zero, start=3, stop=4)])
        clean = run(model, x)
    assert torch.allclose(t.h[0, :, 4, 1], torch.zeros(3), atol=1e-7)
    assert torch.allclose(t.h[0, :, 5, 2], torch.zeros(3), atol=1e-7)
    assert torch.equal(t.h[0, :, 6:], clean.h[0, :, 6:])  # the edit has flushed out of the line


def test_planted_taps_hold_their_lagged_inputs():
    model = planted_lstm(2, [(0, 0), (0, 1), (1, 0), (1, 1), None], gain=0.1)
    x = torch.randn(50, 10, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = run(model, x).h[0]

    def squash(v):  # saturated gates: c = tanh(pre_g), h = tanh(c)
        return torch.tanh(torch.tanh(v))

    torch.testing.assert_close(h[:, :, 0], squash(0.1 * x[:, :, 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(h[:, 1:, 1], squash(h[:, :-1, 0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(h[:, 1:, 3], squash(squash(0.1 * x[:, :-1, 1])), atol=1e-6, rtol=0)
    assert torch.equal(h[:, 0, 1], torch.zeros(50))  # nothing to remember at step 0
    torch.testing.assert_close(h[:, 1:, 1], 0.1 * x[:, :-1, 0], atol=0.05, rtol=0)  # ~linear
    assert torch.equal(h[:, :, 4], torch.zeros(50, 10))


def test_attached_interventions_are_removed_after_an_exception():
    model = _model()
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        clean = run(model, x)
        with pytest.raises(RuntimeError, match="boom"):
            with interventions(model, [Intervention("h", units=[0], setter=_zero)]):
                assert len(model._interventions) == 1
                edited = run(model, x)
                assert not torch.equal(edited.outputs, clean.outputs)
                raise RuntimeError("boom")
        assert model._interventions == []
        assert torch.equal(run(model, x).outputs, clean.outputs)


def test_bad_inputs_are_clear_errors():
    model = _model()
    with pytest.raises(DataError, match="inputs have 2 features per step, model expects 3"):
        run(model, torch.zeros(2, 4, 2))
    with pytest.raises(DataError, match=r"shape \(n_sequences, n_steps, n_inputs\), got \(4, 3\)"):
        run(model, torch.zeros(4, 3))
    with pytest.raises(UnitprobeError, match="unit 9 out of range, model has 5 units"):
        run(model, torch.zeros(1, 2, 3), [Intervention("h", units=[9])])
    with pytest.raises(UnitprobeError, match="site == 'x', must be one of i, f, g, o, c, h"):
        Intervention("x")
    with pytest.raises(UnitprobeError, match="n_units == 0, must be an integer >= 1"):
        ModelConfig(n_inputs=1, n_units=0, n_outputs=1)
