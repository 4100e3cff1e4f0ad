"""The four baselines and the per-step normalized error (unitprobe.tasks.baselines)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from unitprobe.errors import DataError
from unitprobe.methods.baselines import BASELINES_SCHEMA, baseline_table, model_scores
from unitprobe.tasks import baseline_mse, generate, get_preset
from unitprobe.tasks import baselines as B


def _split(name: str, n: int = 256, seed: int = 0):
    data = generate(get_preset(name), n, seed=seed)
    cut = 3 * n // 4
    return data.subset(range(cut)), data.subset(range(cut, n))


@pytest.mark.parametrize("p", [1, 3])
def test_least_squares_baselines_equal_sklearn(p):
    train, evaluate = _split("seed-stationary")
    fitted = B._fit_linear(train, p)
    x = B.lagged_inputs(train.inputs, p).reshape(-1, p * train.inputs.shape[2])
    ref = LinearRegression().fit(x, train.targets.reshape(-1, 2).astype(np.float64))
    x_eval = B.lagged_inputs(evaluate.inputs, p).reshape(-1, p * train.inputs.shape[2])
    np.testing.assert_allclose(
        fitted.predict(evaluate).reshape(-1, 2), ref.predict(x_eval), atol=1e-8
    )
    np.testing.assert_allclose(fitted.params["coef"], ref.coef_.T, atol=1e-8)


def test_lagged_inputs_shift_with_zero_before_the_start():
    x = np.arange(6, dtype=float).reshape(1, 3, 2)  # steps (0,1), (2,3), (4,5)
    lagged = B.lagged_inputs(x, 2)[0]
    np.testing.assert_array_equal(lagged, [[0, 1, 0, 0], [2, 3, 0, 1], [4, 5, 2, 3]])


def test_per_step_nmse_normalizes_each_step_by_its_own_variance():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 3, 1)) * np.array([1.0, 10.0, 1000.0])[None, :, None]
    pred = y + 0.1 * y.std(axis=0, keepdims=True)  # the same relative error at every step
    value, per_step = B.per_step_nmse(pred, y)
    np.testing.assert_allclose(per_step, 0.01)
    assert value == pytest.approx(0.01)
    mean_pred = np.broadcast_to(y.mean(axis=0), y.shape)
    assert B.per_step_nmse(mean_pred, y)[0] == pytest.approx(1.0)


def test_per_step_nmse_leaves_out_constant_steps():
    y = np.array([[[0.0], [1.0]], [[0.0], [3.0]]])  # step 0 constant
    value, per_step = B.per_step_nmse(y + 1.0, y)
    assert np.isnan(per_step[0]) and per_step[1] == pytest.approx(1.0) and value == 1.0
    assert np.isnan(B.per_step_nmse(y[:1], y[:1])[0])  # one sequence: no scale at all
    with pytest.raises(DataError, match="must match"):
        B.per_step_nmse(y, y[:, :1])


@pytest.mark.parametrize("k", [2, 3])
def test_delay_memoryless_cannot_beat_the_mean_while_ar_is_exact(k):
    train, evaluate = _split(f"delay-{k}")
    scores = B.baseline_scores(train, evaluate)
    assert scores["memoryless_linear"]["step_nmse"] > 0.95
    assert scores["training_mean"]["step_nmse"] > 0.95
    assert scores["linear_ar"]["order"] >= k + 1  # x[t] .. x[t-k]
    assert scores["linear_ar"]["step_nmse"] < 1e-6


def test_seed_memoryless_linear_map_is_near_exact():
    train, evaluate = _split("seed")
    scores = B.baseline_scores(train, evaluate)
    ratio = scores["memoryless_linear"]["mse"] / scores["repeat_last"]["mse"]
    assert ratio < 1e-4  # geometric growth: X[t-1] ~ X[t] / phi


def test_repeat_last_equals_baseline_mse():
    train, evaluate = _split("seed-restart")
    scores = B.baseline_scores(train, evaluate)
    assert scores["repeat_last"]["mse"] == pytest.approx(baseline_mse(evaluate), rel=1e-12)


def test_baseline_table_and_network_ratios():
    train, evaluate = _split("delay-2")
    pred = evaluate.targets * 0.9  # 10 % shrinkage: MSE = 0.01 * E[y^2]
    table = model_scores(pred, train, evaluate)
    assert list(table.columns) == list(BASELINES_SCHEMA.columns)
    assert table["baseline"].tolist() == [*B.BASELINES, "network"]
    net = table.iloc[-1]
    assert net["mse"] == pytest.approx(0.01 * float((evaluate.targets.astype(float) ** 2).mean()))
    rl = table.iloc[0]
    assert rl["mse_ratio"] == pytest.approx(net["mse"] / rl["mse"])
    assert net["mse_ratio"] == 1.0
    assert table.attrs["per_step"].shape == (evaluate.length,)
    plain = baseline_table(train, evaluate)
    assert plain["mse_ratio"].isna().all() and len(plain) == 4


def test_ratios_to_baselines_keys():
    train, evaluate = _split("seed-stationary")
    scores = B.baseline_scores(train, evaluate)
    out = B.ratios_to_baselines(evaluate.targets, evaluate.targets, scores)
    assert out["step_nmse"] == 0.0
    assert {f"step_ratio_{b}" for b in B.BASELINES} <= set(out)
    assert out["mse_ratio_linear_ar"] == 0.0
