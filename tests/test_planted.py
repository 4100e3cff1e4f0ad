"""Hand-wired networks: plain taps, lag chains, redundant units and mixture taps."""

import numpy as np
import pytest
import torch

from unitprobe.errors import UnitprobeError
from unitprobe.methods.roles.fieldnull import field_matches, term_name
from unitprobe.model.lstm import Intervention, run
from unitprobe.model.planted import planted_lstm, planted_term_sets, planted_terms
from unitprobe.schemas import formula_text


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


# filler, several layers, leaky gates and the names of what units hold

FILLED = [(0, 0), "random", (0, 1), (1, 0), "random", {(0, 1): 0.7, (1, 0): -0.3}, None]
DEEP = [
    [(0, 0), (0, 1), (1, 0), "random", None, None],
    [(0, 1), (0, 2), (1, 0), (1, 1), {(0, 0): 0.6, (1, 1): -0.4}, "random"],
]


def _dead_filler(taps):
    return [None if tap == "random" else tap for tap in taps]


def _trace(model, x):
    with torch.no_grad():
        return run(model, x)


def test_filler_units_leave_planted_units_exactly_unchanged():
    planted = [u for u, tap in enumerate(FILLED) if tap not in ("random", None)]
    h = _h(planted_lstm(2, FILLED, seed=3), X)
    assert torch.equal(
        h[:, :, planted], _h(planted_lstm(2, _dead_filler(FILLED)), X)[:, :, planted]
    )
    assert h[:, :, [1, 4]].abs().min() > 0  # the filler computes something
    assert torch.equal(h[:, :, 6], torch.zeros(40, 9))  # dead stays dead beside filler
    h_deep = _trace(planted_lstm(2, DEEP, seed=3), X).h
    h_dead = _trace(planted_lstm(2, [_dead_filler(layer) for layer in DEEP]), X).h
    assert torch.equal(h_deep[0, :, :, :3], h_dead[0, :, :, :3])
    assert torch.equal(h_deep[1, :, :, :5], h_dead[1, :, :, :5])


def test_filler_and_planted_units_never_read_each_other():
    model = planted_lstm(2, DEEP, seed=3)
    w_ih0, w_hh0 = model.lstm.weight_ih_l0.detach(), model.lstm.weight_hh_l0.detach()
    w_ih1, w_hh1 = model.lstm.weight_ih_l1.detach(), model.lstm.weight_hh_l1.detach()
    rows = [u + 6 * gate for gate in range(4) for u in range(6)]  # every gate row, unit u
    planted0, planted1 = [r for r in rows if r % 6 < 3], [r for r in rows if r % 6 < 5]
    filler0, filler1 = [3, 9, 15, 21], [5, 11, 17, 23]
    assert torch.equal(w_hh0[planted0][:, 3], torch.zeros(12))  # nobody reads filler 3
    assert torch.equal(w_ih1[planted1][:, 3], torch.zeros(20))  # nor does the layer above
    assert torch.equal(w_hh0[filler0][:, :3], torch.zeros(4, 3))  # filler reads no planted
    assert (w_hh0[filler0][:, 3] != 0).all() and (w_ih0[filler0] != 0).all()  # but itself
    assert torch.equal(w_hh0[:, 4:], torch.zeros(24, 2))  # and no dead unit
    assert torch.equal(w_ih1[filler1][:, :3], torch.zeros(4, 3))  # nor the planted below
    assert (w_ih1[filler1][:, 3] != 0).all()  # layer 1's filler reads layer 0's filler
    assert torch.equal(w_hh1[filler1][:, :5], torch.zeros(4, 5))
    assert torch.equal(w_ih1[:, 4:], torch.zeros(24, 2))


def test_filler_is_seeded_has_the_default_init_scale_and_leaves_the_global_rng():
    state = torch.get_rng_state()
    same = [planted_lstm(2, DEEP, seed=s).state_dict() for s in (5, 5, 6)]
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(same[0][k], same[1][k]) for k in same[0])
    assert not torch.equal(same[0]["lstm.weight_hh_l0"], same[2]["lstm.weight_hh_l0"])
    filler = planted_lstm(3, [["random"] * 16] * 2, seed=5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference = torch.nn.LSTM(3, 16, 2)  # PyTorch's own init, from the global RNG
    for ours, theirs in zip(filler.lstm.parameters(), reference.parameters(), strict=True):
        assert torch.equal(ours.detach(), theirs.detach())
        assert 0.9 / 4 < float(ours.detach().abs().max()) <= 1 / 4  # uniform in ±1/sqrt(16)


def test_second_layer_copies_the_layer_below_and_chains_lags_within():
    model = planted_lstm(2, DEEP, gain=0.1)
    h0, h1 = _trace(model, X).h
    torch.testing.assert_close(h1[:, :, 0], squash(h0[:, :, 1]), atol=1e-6, rtol=0)  # copy
    torch.testing.assert_close(h1[:, :, 2], squash(h0[:, :, 2]), atol=1e-6, rtol=0)
    for unit, source in ((1, 0), (3, 2)):  # chains within layer 1
        torch.testing.assert_close(h1[:, 1:, unit], squash(h1[:, :-1, source]), atol=1e-6, rtol=0)
        assert torch.equal(h1[:, 0, unit], torch.zeros(40))
    mix = 0.6 * h0[:, 1:, 0] - 0.4 * h1[:, :-1, 2]
    torch.testing.assert_close(h1[:, 1:, 4], squash(mix), atol=1e-6, rtol=0)
    held, source = h1[:, 2:, 1].flatten(), X[:, :-2, 0].flatten()
    assert torch.corrcoef(torch.stack([held, source]))[0, 1] > 0.99  # ~ gain * K[t-2]
    g1 = model.lstm.weight_ih_l1.detach()[12:18]  # the gain is layer 0's alone
    assert g1[0, 1] == 1.0 and g1[2, 2] == 1.0 and g1[4, 0] == pytest.approx(0.6)


def test_one_layer_given_as_a_list_of_layers_is_the_same_network():
    flat, nested = planted_lstm(2, FILLED, seed=1), planted_lstm(2, [FILLED], seed=1)
    assert nested.config.n_layers == 1
    assert all(torch.equal(v, nested.state_dict()[k]) for k, v in flat.state_dict().items())


@pytest.mark.parametrize("saturation", [4.0, 30.0])
def test_small_saturation_leaks_the_cell_and_gain_one_is_allowed(saturation):
    model = planted_lstm(2, [(0, 0), (0, 1)], gain=1.0, saturation=saturation)
    assert model.lstm.weight_ih_l0.detach()[4, 0] == 1.0
    bump = Intervention("c", units=[0], setter=lambda v, t: v + 1.0, start=4, stop=5)
    with torch.no_grad():
        base, bumped = run(model, X).c[0], run(model, X, [bump]).c[0]
    leak = torch.sigmoid(torch.tensor(-saturation))
    torch.testing.assert_close(bumped[:, 5, 0] - base[:, 5, 0], leak.expand(40), rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    if saturation == 4.0:
        assert leak == pytest.approx(0.018, abs=1e-3)


def test_planted_terms_name_every_unit_as_the_roles_do():
    names = ["K", "X"]
    assert planted_terms(FILLED, names) == [
        ["K[t]", "random", "K[t-1]", "X[t]", "random", "0.7·K[t-1] - 0.3·X[t]", None]
    ]
    assert planted_terms(DEEP, names) == [
        ["K[t]", "K[t-1]", "X[t]", "random", None, None],
        ["K[t-1]", "K[t-2]", "X[t]", "X[t-1]", "0.6·K[t] - 0.4·X[t-1]", "random"],
    ]
    r = 1 / np.sqrt(2)
    taps = [(0, 0), (1, 0), {(1, 0): r, (0, 0): -r}, {(1, 0): 2.0, (0, 0): 0.0}]
    assert planted_terms(taps, names)[0][2:] == ["-0.5·K[t] + 0.5·X[t]", "X[t]"]
    assert planted_term_sets(taps, names)[0][2:] == [{"K[t]", "X[t]"}, {"X[t]"}]
    assert planted_term_sets(DEEP, names)[1][3:] == [{"X[t-1]"}, {"K[t]", "X[t-1]"}, set()]


@pytest.mark.parametrize(
    ("taps", "message"),
    [
        ([[(0, 0)], [(0, 1)]],
         "tap (0, 1) of unit 0 of layer 1 needs a unit holding (0, 1) in layer 0 or (0, 0) in "
         "layer 1"),
        ([[(0, 0)], [(1, 0)]], "tap (1, 0) of unit 0 of layer 1 needs a unit holding (1, 0) in "
         "layer 0"),
        ([[(0, 0)], [{(0, 0): 1.0, (1, 2): 0.5}]],
         "tap {(0, 0): 1.0, (1, 2): 0.5} of unit 0 of layer 1 needs a unit holding (1, 2) in "
         "layer 0 or (1, 1) in layer 1"),
        ([[(0, 1)], [(0, 1)]], "tap (0, 1) of unit 0 of layer 0 needs a unit holding (0, 0)"),
        ([[(0, 0)], [(2, 0)]], "tap (2, 0) of unit 0 of layer 1 is invalid for 2 inputs"),
        ([["rand"], ["random"]],
         "tap 'rand' of unit 0 of layer 0: give (feature, lag), a mapping, 'random' or None"),
        ([[(0, 0), (1, 0)], [(0, 0)]],
         "layer 1 has 1 taps, layer 0 has 2; every layer has the same number of units"),
        ([[(0, 0)], (0, 0)],
         "taps mixes single taps and lists of taps; give one tap per unit, or one list of "
         "taps per layer"),
    ],
)  # fmt: skip
def test_bad_layer_taps_are_one_line_errors(taps, message):
    for build in (planted_lstm, lambda n, t: planted_terms(t, ["K", "X"][:n])):
        with pytest.raises(UnitprobeError) as error:
            build(2, taps)
        assert str(error.value) == message


def test_bad_seed_is_a_clear_error():
    with pytest.raises(UnitprobeError) as error:
        planted_lstm(2, [(0, 0), "random"], seed=-1)
    assert str(error.value) == "seed == -1, must be an integer >= 0"


def test_planted_formulas_are_written_as_the_roles_write_them():
    names = ["K", "X"]
    cells = [(name, lag) for name in names for lag in range(3)]
    for mixture in (
        {(0, 0): 0.7, (1, 0): 0.3},
        {(1, 1): 0.5, (0, 0): -0.5},
        {(0, 2): -3, (1, 0): 1},
    ):
        field = {(names[f], lag): w for (f, lag), w in mixture.items()}
        ranked, _ = field_matches(field, cells, max_terms=2)
        taps = [(0, 0), (0, 1), (1, 0), (1, 1), mixture]
        expected = formula_text([(term_name(c), w) for c, w in ranked[:2]])
        assert planted_terms(taps, names)[0][4] == expected
