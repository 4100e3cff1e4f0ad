import dataclasses

import numpy as np
import pytest
import torch

from unitprobe.errors import TrainingError, UnitprobeError
from unitprobe.model.train import TrainConfig, split_sequences, train, train_task
from unitprobe.tasks import baseline_mse, generate, get_preset
from unitprobe.tasks.baselines import BASELINES, baseline_scores


@pytest.fixture(scope="module")
def seed_data():
    return generate(get_preset("seed"), n_sequences=128, seed=0)


def test_same_seed_gives_a_bit_identical_state_dict(seed_data):
    config = TrainConfig(n_units=4, epochs=5, seed=3)
    a = train(seed_data, config).model.state_dict()
    b = train(seed_data, config).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = train(seed_data, dataclasses.replace(config, seed=4)).model.state_dict()
    assert not torch.equal(a["lstm.weight_hh_l0"], c["lstm.weight_hh_l0"])


def test_training_leaves_the_global_rng_alone(seed_data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(seed_data, TrainConfig(n_units=2, epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_history_and_metrics_are_plain_data(seed_data):
    result = train(seed_data, TrainConfig(n_units=3, epochs=4, patience=100))
    assert list(result.history) == ["train_loss", "val_loss", "lr"]
    assert all(len(v) == 4 for v in result.history.values())
    m = result.metrics
    assert m["best_epoch"] == int(np.argmin(result.history["val_loss"])) + 1
    assert m["val_mse"] == pytest.approx(min(result.history["val_loss"]), rel=1e-5)
    _, val_idx = split_sequences(128, 0.2, 0)
    assert m["baseline_mse"] == pytest.approx(baseline_mse(seed_data.subset(val_idx)))
    assert m["n_val_sequences"] == len(val_idx) == 26
    assert set(m["val_mse_per_output"]) == {"K", "X"}


def test_metrics_show_the_network_against_the_four_baselines(seed_data):
    result = train(seed_data, TrainConfig(n_units=3, epochs=3, patience=100))
    m = result.metrics
    train_idx, val_idx = split_sequences(128, 0.2, 0)
    scores = baseline_scores(seed_data.subset(train_idx), seed_data.subset(val_idx), seed=0)
    for name in BASELINES:
        assert m["baselines"][name]["mse"] == pytest.approx(scores[name]["mse"], rel=1e-12)
        assert m[f"mse_ratio_{name}"] == pytest.approx(m["val_mse"] / scores[name]["mse"], rel=1e-5)
        assert m[f"step_ratio_{name}"] == pytest.approx(
            m["val_step_nmse"] / scores[name]["step_nmse"], rel=1e-9
        )
    assert m["mse_ratio_repeat_last"] == pytest.approx(m["mse_ratio"], rel=1e-6)
    assert m["ar_order"] == scores["linear_ar"]["order"]


def test_split_is_by_sequence_and_seeded():
    train_idx, val_idx = split_sequences(10, 0.3, seed=1)
    assert len(val_idx) == 3 and len(train_idx) == 7
    assert set(train_idx).isdisjoint(val_idx) and set(train_idx) | set(val_idx) == set(range(10))
    assert np.array_equal(split_sequences(10, 0.3, seed=1)[1], val_idx)
    with pytest.raises(TrainingError, match="need at least 2 sequences"):
        split_sequences(1, 0.2, 0)


def test_early_stopping_restores_the_best_epoch(seed_data):
    result = train(seed_data, TrainConfig(n_units=2, epochs=200, patience=3, lr=0.5))
    history = result.history["val_loss"]
    assert len(history) < 200
    assert result.metrics["best_epoch"] == len(history) - 3


def test_divergence_names_the_epoch_and_suggests_a_smaller_rate():
    data = generate(get_preset("seed"), n_sequences=16, seed=0)
    data.targets[:] = 1e25  # the squared error overflows float32
    with pytest.raises(
        TrainingError, match=r"training diverged at epoch 1 .*smaller learning rate than 0.01"
    ):
        train(data, TrainConfig(n_units=2, epochs=3))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_units", 0, "n_units == 0, must be an integer >= 1"),
        ("lr", -1.0, "lr == -1.0, must be a finite number > 0"),
        ("val_fraction", 1.0, "val_fraction == 1.0, must be a finite number > 0 and < 1"),
        ("seed", -2, r"seed == -2, must be an integer in \[0, 9223372036854775807\]"),
        ("seed", 2**64, r"seed == 18446744073709551616, must be an integer in \[0, "),
        ("epochs", 2.5, "epochs == 2.5, must be an integer >= 1"),
    ],
)
def test_config_validation(field, value, message):
    with pytest.raises(UnitprobeError, match=message):
        TrainConfig(**{field: value})


@pytest.mark.slow
def test_seed_preset_with_8_units_beats_the_baseline_by_100x():
    data, result = train_task(get_preset("seed"), TrainConfig(n_units=8, seed=0), n_sequences=512)
    m = result.metrics
    assert m["val_mse"] <= 0.01 * m["baseline_mse"], m
    assert m["train_seconds"] < 120
