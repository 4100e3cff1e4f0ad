"""Hand-wired networks: plain taps, lag chains, redundant units and mixture taps."""

import numpy as np
import pytest
import torch

from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import run
from unitprobe.model.planted import planted_lstm


def squash(v):  # saturated gates: c = tanh(pre_g), h = tanh(c)
    return torch.tanh(torch.tanh(v))


def _h(model, x):
    with torch.no_grad():
        return run(model, x).h[0]


X = torch.randn(40, 9, 2, generator=torch.Generator().manual_seed(0))


def test_lag_chain_holds_each_lag_exactly():
    model = planted_lstm(2, [(1, 0), (1, 1), (1, 2), (1, 3)], gain=0.1)
    h = _h(model, X)
    torch.testing.assert_close(h[:, :, 0], squash(0.1 * X[:, :, 1]), atol=1e-6, rtol=0)
    for lag in (1, 2, 3):
        torch.testing.assert_close(h[:, 1:, lag], squash(h[:, :-1, lag - 1]), atol=1e-6, rtol=0)
        assert torch.equal(h[:, :lag, lag], torch.zeros(40, lag))  # nothing held yet
        held, source = h[:, lag:, lag].flatten(), X[:, :-lag, 1].flatten()
        assert torch.corrcoef(torch.stack([held, source]))[0, 1] > 0.99  # ~ gain * X[t-lag]


def test_redundant_units_hold_the_same_values():
    model = planted_lstm(2, [(1, 0), (1, 1), (1, 1), (0, 0)])
    h = _h(model, X)
    assert torch.equal(h[:, :, 1], h[:, :, 2])
    torch.testing.assert_close(h[:, 1:, 1], squash(h[:, :-1, 0]), atol=1e-6, rtol=0)


def test_mixture_tap_holds_its_weighted_sum():
    model = planted_lstm(2, [(0, 0), (1, 0), {(0, 0): 0.7, (1, 0): 0.3}], gain=0.1)
    h = _h(model, X)
    mix = 0.1 * (0.7 * X[:, :, 0] + 0.3 * X[:, :, 1])
    torch.testing.assert_close(h[:, :, 2], squash(mix), atol=1e-6, rtol=0)


def test_mixture_of_lagged_terms_reads_the_plain_taps():
    r = 1 / np.sqrt(2)
    taps = [(0, 0), (1, 0), {(1, 1): r, (0, 1): r}, {(1, 1): r, (0, 1): -r}]
    model = planted_lstm(2, taps)
    h = _h(model, X)
    torch.testing.assert_close(
        h[:, 1:, 2], squash(r * h[:, :-1, 1] + r * h[:, :-1, 0]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        h[:, 1:, 3], squash(r * h[:, :-1, 1] - r * h[:, :-1, 0]), atol=1e-6, rtol=0
    )


def test_tuple_taps_keep_their_weights():
    model = planted_lstm(2, [(0, 0), [1, 0], (0, 1), None], gain=0.2)
    g = model.lstm.weight_ih_l0.detach()[8:12]
    assert float(g[0, 0]) == pytest.approx(0.2) and float(g[1, 1]) == pytest.approx(0.2)
    assert model.lstm.weight_hh_l0.detach()[8:12][2, 0] == 1.0
    assert torch.equal(_h(model, X)[:, :, 3], torch.zeros(40, 9))


@pytest.mark.parametrize(
    ("taps", "match"),
    [
        ([(0, 1)], r"needs a unit holding \(0, 0\)"),
        ([(2, 0)], "invalid for 2 inputs"),
        ([{}], "empty"),
        ([{(0, 0): float("nan")}], "weight"),
        ([{(0, 2): 1.0}, (0, 0)], r"needs a unit holding \(0, 1\)"),
        (["K"], "give \\(feature, lag\\)"),
    ],
)
def test_bad_taps_are_clear_errors(taps, match):
    with pytest.raises(UnitprobeError, match=match):
        planted_lstm(2, taps)
