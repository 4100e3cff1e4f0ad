"""LSTMs trained inside a connectivity mask (unitprobe.model.masked): the mask holds exactly
through training, each unit's receptive field is where the mask puts it, and the known
contents follow the recurrent sources."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from unitprobe.errors import TrainingError, UnitprobeError
from unitprobe.model.lstm import ModelConfig, run
from unitprobe.model.masked import (
    FORGET_BIAS,
    Connectivity,
    _constraint,
    _fixed_gradients_zeroed,
    masked_lstm,
    train_masked,
)
from unitprobe.model.train import TrainConfig, init_model, train
from unitprobe.tasks import generate, get_preset

NAMES = ("K", "X")
#: The seed task's units: A = f(K[t]), B = A one step back, C = f(X[t]), D = C one step back,
#: a formula of K[t] and X[t], and two dead units.
SEED_SOURCES = [["K"], [("unit", 0)], ["X"], [("unit", 2)], ["K", "X"], [], []]
SEED_CONTENT = [{"K[t]"}, {"K[t-1]"}, {"X[t]"}, {"X[t-1]"}, {"K[t]", "X[t]"}, set(), set()]
CONFIG = TrainConfig(n_units=7, epochs=80, seed=0)
#: float32 sigmoid of this is exactly 0: memoryless units keep nothing of c[t-1].
SHUT = -100.0


@pytest.fixture(scope="module")
def seed_data():
    return generate(get_preset("seed"), n_sequences=64, seed=0)


@pytest.fixture(scope="module")
def seed_conn():
    return Connectivity.from_sources(NAMES, SEED_SOURCES)


@pytest.fixture(scope="module")
def trained(seed_data, seed_conn):
    """forget_bias -> the trained seed-task network."""
    return {
        bias: train_masked(seed_data, seed_conn, CONFIG, forget_bias=bias, progress=False)
        for bias in (FORGET_BIAS, SHUT)
    }


def _fixed_entries_hold(model, conn, forget_bias):
    """Whether every entry outside the mask has its fixed value, exactly."""
    with torch.no_grad():
        for name, (free, value) in _constraint(conn, forget_bias).items():
            param = getattr(model.lstm, name).detach()
            if not torch.equal(param[~free], value.expand_as(param)[~free]):
                return False
    return True


def _responses(model, x, max_lag):
    """(n_inputs, max_lag + 1, n_units): the largest change of h[t + lag] over the sequences
    when input f at step t moves by 1 (t in the middle of the sequence)."""
    step = x.shape[1] // 2
    out = torch.zeros(x.shape[2], max_lag + 1, model.config.n_units)
    with torch.no_grad():
        h = run(model, x, record=["h"]).h[0]  # (N, T, H)
        for f in range(x.shape[2]):
            moved = x.clone()
            moved[:, step, f] += 1.0
            change = (run(model, moved, record=["h"]).h[0] - h).abs()  # (N, T, H)
            out[f] = change[:, step : step + max_lag + 1].amax(dim=0)
    return out


def _expected(content, max_lag, n_units):
    """(n_inputs, max_lag + 1, n_units) bool: where the known contents say h can respond."""
    expected = torch.zeros(len(NAMES), max_lag + 1, n_units, dtype=torch.bool)
    for u, terms in enumerate(content):
        for f, name in enumerate(NAMES):
            for lag in range(max_lag + 1):
                expected[f, lag, u] = (f"{name}[t]" if lag == 0 else f"{name}[t-{lag}]") in terms
    return expected


# -- what each unit holds ---------------------------------------------------------------------


def test_seed_units_hold_their_known_terms(seed_conn):
    assert seed_conn.known_content(NAMES) == SEED_CONTENT
    assert seed_conn.dead.tolist() == [False] * 5 + [True] * 2
    assert (seed_conn.n_units, seed_conn.n_inputs) == (7, 2)


@pytest.mark.parametrize(
    ("sources", "memory", "expected"),
    [
        ([["K"], [("unit", 0)], [("unit", 1)]], False, [{"K[t]"}, {"K[t-1]"}, {"K[t-2]"}]),
        ([["K"], [("unit", 0), "X"]], False, [{"K[t]"}, {"K[t-1]", "X[t]"}]),
        (
            [["K"], ["X"], [("unit", 0), ("unit", 1)]],
            False,
            [{"K[t]"}, {"X[t]"}, {"K[t-1]", "X[t-1]"}],
        ),
        ([["K"], [("unit", 0)]], [True, False], [None, None]),  # a memory keeps every lag
        ([["K"], [("unit", 0)]], [False, True], [{"K[t]"}, None]),
        ([["K", ("unit", 0)], [("unit", 0)]], False, [None, None]),  # a self-loop
        ([[("unit", 1)], ["X", ("unit", 0)], ["K"]], False, [None, None, {"K[t]"}]),  # a cycle
        ([[("unit", 1)], [("unit", 0)], [("unit", 0)]], False, [set(), set(), set()]),  # no input
        ([[], [("unit", 0)]], True, [set(), set()]),  # a memory of nothing holds nothing
    ],
)
def test_known_content_follows_the_sources_back(sources, memory, expected):
    conn = Connectivity.from_sources(NAMES, sources, memory=memory)
    assert conn.known_content(NAMES) == expected


def test_from_sources_takes_names_indices_or_a_count():
    by_name = Connectivity.from_sources(NAMES, [["X"], [("unit", 0)]], memory=[True, False])
    by_index = Connectivity.from_sources(2, [[1], [("unit", 0)]], memory=[True, False])
    assert by_name == by_index
    assert by_name.inputs.tolist() == [[False, True], [False, False]]
    assert by_name.recurrent.tolist() == [[False, False], [True, False]]
    assert by_name.memory.tolist() == [True, False]
    assert by_name != Connectivity.from_sources(NAMES, [["X"], [("unit", 0)]])
    assert by_index.known_content(["a", "b"]) == [None, None]


def test_connectivity_is_frozen_and_keeps_its_own_copy():
    inputs = np.array([[True, False]])
    conn = Connectivity(inputs, np.zeros((1, 1), bool), np.zeros(1, bool))
    inputs[0, 1] = True
    assert conn.inputs.tolist() == [[True, False]]
    with pytest.raises(ValueError, match="read-only"):
        conn.inputs[0, 1] = True
    with pytest.raises(dataclasses.FrozenInstanceError):
        conn.memory = np.ones(1, bool)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            (np.zeros((2, 2), np.int64), np.zeros((2, 2), bool), np.zeros(2, bool)),
            "inputs has dtype int64, must be bool",
        ),
        (
            (np.zeros(3, bool), np.zeros((3, 3), bool), np.zeros(3, bool)),
            "inputs has shape (3,), must be (n_units, n_inputs), both >= 1",
        ),
        (
            (np.zeros((0, 2), bool), np.zeros((0, 0), bool), np.zeros(0, bool)),
            "inputs has shape (0, 2), must be (n_units, n_inputs), both >= 1",
        ),
        (
            (np.zeros((2, 2), bool), np.zeros((2, 3), bool), np.zeros(2, bool)),
            "recurrent has shape (2, 3), must be (n_units, n_units) == (2, 2)",
        ),
        (
            (np.zeros((2, 2), bool), np.zeros((2, 2), bool), np.zeros(3, bool)),
            "memory has shape (3,), must be (n_units,) == (2,)",
        ),
        (
            (np.zeros((2, 2), bool), np.zeros((2, 2), bool), np.zeros(2)),
            "memory has dtype float64, must be bool",
        ),
    ],
)
def test_bad_arrays_say_what_is_wrong(arrays, message):
    with pytest.raises(UnitprobeError) as info:
        Connectivity(*arrays)
    assert str(info.value) == message


def test_ragged_arrays_are_refused():
    with pytest.raises(UnitprobeError, match="^inputs is not a rectangular array: "):
        Connectivity([[True], [True, False]], np.zeros((2, 2), bool), np.zeros(2, bool))


@pytest.mark.parametrize(
    ("inputs", "sources", "message"),
    [
        (NAMES, [["Z"]], "source 'Z' of unit 0 is not an input; inputs are K, X"),
        (NAMES, [["K"], [2]], "source 2 of unit 1: input index must be in 0..1"),
        (NAMES, [["K"], [("unit", 2)]], "source ('unit', 2) of unit 1: unit must be in 0..1"),
        (NAMES, [[True]], "source True of unit 0: must be an input name or index or ('unit', v)"),
        (
            2,
            [["K"]],
            "source 'K' of unit 0: must be an input index (inputs has no names) or ('unit', v)",
        ),
        (NAMES, ["K"], "sources of unit 0 == 'K', must be a list of sources"),
        (NAMES, [], "sources == [], must be a list with one entry per unit"),
        (["K", "K"], [["K"]], "inputs == ['K', 'K'], must be distinct names, at least one"),
        (0, [[]], "inputs == 0, must be an integer >= 1"),
    ],
)
def test_bad_sources_say_what_is_wrong(inputs, sources, message):
    with pytest.raises(UnitprobeError) as info:
        Connectivity.from_sources(inputs, sources)
    assert str(info.value) == message


def test_known_content_needs_one_name_per_input(seed_conn):
    with pytest.raises(UnitprobeError) as info:
        seed_conn.known_content(["K"])
    assert str(info.value) == "input_names has 1 names, connectivity has 2 inputs"


# -- the masked network -----------------------------------------------------------------------


def test_masked_lstm_zeroes_the_mask_and_pins_the_gates(seed_conn):
    model = masked_lstm(2, seed_conn, 2, seed=5)
    usual = init_model(ModelConfig(2, 7, 2), seed=5)
    assert _fixed_entries_hold(model, seed_conn, FORGET_BIAS)
    n = 7
    lstm = model.lstm
    forget = slice(n, 2 * n)
    assert lstm.bias_ih_l0[forget][:5].tolist() == [FORGET_BIAS] * 5  # memoryless, live
    assert not lstm.bias_hh_l0[forget].any()
    dead = [5, 6, 12, 13, 19, 20, 26, 27]  # units 5 and 6 in every gate
    assert not lstm.bias_ih_l0[dead].any() and not lstm.bias_hh_l0[dead].any()
    assert not lstm.weight_ih_l0[dead].any() and not lstm.weight_hh_l0[dead].any()
    # what the mask leaves free is the usual initialization of the same seed
    for name, (free, _) in _constraint(seed_conn, FORGET_BIAS).items():
        assert torch.equal(getattr(lstm, name)[free], getattr(usual.lstm, name)[free])
    assert torch.equal(model.readout.weight, usual.readout.weight)


def test_dead_units_are_exactly_zero_and_memoryless_forget_gates_are_pinned(seed_conn):
    model = masked_lstm(2, seed_conn, 2, seed=1)
    x = torch.randn(4, 9, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trace = run(model, x)
    assert not trace.h[0, :, :, 5:].any() and not trace.c[0, :, :, 5:].any()
    assert torch.all(trace.f[0, :, :, :5] == torch.sigmoid(torch.tensor(FORGET_BIAS)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_inputs": 3}, "n_inputs == 3, connectivity has 2 inputs"),
        ({"forget_bias": 1.0}, "forget_bias == 1.0, must be a finite number < 0"),
        ({"seed": -1}, "seed == -1, must be an integer in [0, 9223372036854775807]"),
    ],
)
def test_masked_lstm_refuses_bad_arguments(seed_conn, kwargs, message):
    arguments = {"n_inputs": 2, "n_outputs": 2, "seed": 0, **kwargs}
    with pytest.raises(UnitprobeError) as info:
        masked_lstm(arguments.pop("n_inputs"), seed_conn, **arguments)
    assert str(info.value) == message


# -- training inside the mask -----------------------------------------------------------------


@pytest.mark.parametrize("bias", [FORGET_BIAS, SHUT])
def test_the_mask_holds_exactly_through_training(trained, seed_conn, bias):
    model = trained[bias].model
    assert _fixed_entries_hold(model, seed_conn, bias)
    start = masked_lstm(2, seed_conn, 2, seed=CONFIG.seed, forget_bias=bias)
    for name, (free, _) in _constraint(seed_conn, bias).items():  # the free entries trained
        assert not torch.equal(getattr(model.lstm, name)[free], getattr(start.lstm, name)[free])


def test_the_network_learns_the_task(trained):
    for result in trained.values():
        assert result.metrics["val_mse"] < 0.5 * result.metrics["baseline_mse"]


def test_each_unit_responds_exactly_where_its_known_content_says(trained, seed_data, seed_conn):
    model = trained[SHUT].model  # forget gates shut exactly: no leak at all
    x = torch.as_tensor(seed_data.inputs[:16])
    responses = _responses(model, x, max_lag=3)
    expected = _expected(seed_conn.known_content(NAMES), 3, 7)
    assert torch.all(responses[expected] > 1e-3)
    assert not responses[~expected].any()  # exactly 0: e.g. unit B ignores K[t] and K[t-2]
    # unit B (index 1) responds to K one step back, not to K now or to X at any lag
    assert responses[0, 1, 1] > 1e-3 and responses[0, 0, 1] == 0 and not responses[1, :, 1].any()


def test_at_the_default_forget_bias_the_leak_is_of_order_sigmoid_of_it(trained, seed_data):
    model = trained[FORGET_BIAS].model
    x = torch.as_tensor(seed_data.inputs[:16])
    responses = _responses(model, x, max_lag=3)
    expected = _expected(SEED_CONTENT, 3, 7)
    leak = 1 / (1 + math.exp(-FORGET_BIAS))  # sigmoid(-10), about 4.5e-5
    assert torch.all(responses[expected] > 1e-3)
    # a memoryless unit's |c| < 1 + leak, so c[t-1] passes on at most 2 * leak, and a leak
    # passed on through a source unit is of the same order
    assert responses[~expected].max() < 4 * leak
    assert not responses[1, :, :2].any()  # K's units never see X, not even through a leak


def test_same_seed_gives_a_bit_identical_state_dict(seed_data, seed_conn):
    config = dataclasses.replace(CONFIG, epochs=3)
    a = train_masked(seed_data, seed_conn, config, progress=False).model.state_dict()
    b = train_masked(seed_data, seed_conn, config, progress=False).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train_masked(seed_data, seed_conn, dataclasses.replace(config, seed=1), progress=False)
    assert not torch.equal(a["lstm.weight_ih_l0"], c.model.state_dict()["lstm.weight_ih_l0"])


def test_weight_decay_cannot_move_the_pinned_biases(seed_data, seed_conn):
    config = dataclasses.replace(CONFIG, epochs=3, weight_decay=0.1)
    model = train_masked(seed_data, seed_conn, config, progress=False).model
    assert _fixed_entries_hold(model, seed_conn, FORGET_BIAS)


def test_zeroed_gradients_alone_keep_adam_off_the_fixed_entries(seed_data, seed_conn):
    """Adam (no weight decay) moves no entry whose gradient is always exactly zero."""
    config = dataclasses.replace(CONFIG, epochs=3)
    model = masked_lstm(2, seed_conn, 2, seed=config.seed)
    constraint = _constraint(seed_conn, FORGET_BIAS)
    with _fixed_gradients_zeroed(model, constraint):
        train(seed_data, config, progress=False, model=model)  # no constrain: nothing re-set
    assert _fixed_entries_hold(model, seed_conn, FORGET_BIAS)


def test_the_trained_model_computes_full_gradients_again(trained, seed_data, seed_conn):
    model = trained[FORGET_BIAS].model
    model.zero_grad()
    model(torch.as_tensor(seed_data.inputs[:8])).pow(2).sum().backward()
    free, _ = _constraint(seed_conn, FORGET_BIAS)["weight_hh_l0"]
    assert model.lstm.weight_hh_l0.grad[~free].abs().max() > 0  # no hook left behind
    model.zero_grad()


def test_train_masked_refuses_a_config_or_data_that_does_not_fit(seed_data, seed_conn):
    with pytest.raises(UnitprobeError) as info:
        train_masked(seed_data, seed_conn, TrainConfig(n_units=8, n_layers=2))
    assert str(info.value) == "config has 2 layer(s) of 8 units, connectivity needs 1 layer of 7"
    three = Connectivity.from_sources(3, [[0], [1, 2]])
    with pytest.raises(UnitprobeError) as info:
        train_masked(seed_data, three)
    assert str(info.value) == "dataset has 2 input features, connectivity has 3"


# -- train() from a given network -------------------------------------------------------------


def test_train_from_the_usual_initialization_equals_train(seed_data):
    config = TrainConfig(n_units=3, epochs=3, seed=2)
    plain = train(seed_data, config, progress=False).model.state_dict()
    model = init_model(ModelConfig(2, 3, 2), seed=2)
    given = train(seed_data, config, progress=False, model=model)
    assert given.model is model
    assert all(torch.equal(plain[k], model.state_dict()[k]) for k in plain)


def test_train_refuses_a_model_of_another_shape(seed_data):
    model = init_model(ModelConfig(2, 3, 2), seed=0)
    with pytest.raises(TrainingError) as info:
        train(seed_data, TrainConfig(n_units=4, epochs=1), model=model)
    assert str(info.value) == (
        "model is ModelConfig(n_inputs=2, n_units=3, n_outputs=2, n_layers=1), the data and "
        "config need ModelConfig(n_inputs=2, n_units=4, n_outputs=2, n_layers=1)"
    )
