"""Probes and attributions on trained networks: the claims the reports rest on."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, cross_val_score

from unitprobe.config import ProbeConfig
from unitprobe.methods.attribution import input_lag_attribution
from unitprobe.methods.probes import identifiability, unit_probes, vif_table
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.model.lstm import run
from unitprobe.model.train import TrainConfig, train_task
from unitprobe.pipeline.probing import probe_model
from unitprobe.tasks import generate, get_preset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def delay3():
    _, result = train_task(get_preset("delay-3"), TrainConfig(n_units=8, seed=0), n_sequences=512)
    return result.model, generate(get_preset("delay-3"), n_sequences=200, seed=1)


def test_unit_probes_equal_the_sklearn_loop_on_real_model_states(delay3):
    model, data = delay3
    targets = make_targets(data, default_targets(data.spec))
    with torch.no_grad():
        states = run(model, data.inputs, record=("h",)).numpy("h")[targets.mask]
    table = unit_probes(states, targets.values, targets.groups, n_splits=5, alpha=1e-3)
    y = targets.values.to_numpy()
    for u in range(states.shape[1]):
        for k, name in enumerate(targets.values.columns):
            expected = cross_val_score(
                Ridge(alpha=1e-3), states[:, [u]], y[:, k], groups=targets.groups,
                cv=GroupKFold(5), scoring="r2",
            ).mean()  # fmt: skip
            got = table[(table["unit"] == u) & (table["target"] == name)]["r2"].item()
            assert got == pytest.approx(expected, abs=1e-8)


def test_delay3_population_holds_the_input_three_steps_back(delay3):
    model, data = delay3
    probes, population = probe_model(
        model, data, config=ProbeConfig(n_permutations=19, n_controls=2)
    )
    assert len(probes) == 8 * len(population)  # one row per unit of the 8
    pop = population.set_index("target")
    assert pop.loc["U[t-3]", "r2"] >= 0.95
    margin = pop.loc["U[t-3]", "selectivity"]
    assert margin == pytest.approx(pop.loc["U[t-3]", "r2"] - pop.loc["U[t-3]", "r2_control"])
    assert margin > 0.3  # an untrained network of the same size cannot read it out
    print(f"delay-3 population R² for U[t-3]: {pop.loc['U[t-3]', 'r2']:.4f}, margin {margin:.3f}")


def test_seed_identifiability_flags_the_collinear_targets():
    data = generate(get_preset("seed"), n_sequences=200, seed=0)
    targets = make_targets(data, ["K[t]", "K[t-1]", "X[t]", "X[t-1]"])
    pairs = identifiability(targets.values)
    assert len(pairs) == 6
    assert (~pairs["separable"]).all()
    assert (pairs["r2"] > 0.99).all()
    assert (~vif_table(targets.values)["separable"]).all()
    innov = generate(get_preset("seed-innov"), n_sequences=200, seed=0)
    pairs = identifiability(make_targets(innov, ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]).values)
    assert pairs["separable"].all()


def test_trained_fibonacci_attribution_concentrates_on_lags_0_and_1():
    data, result = train_task(
        get_preset("fibonacci"), TrainConfig(n_units=4, seed=0), n_sequences=256
    )
    table = input_lag_attribution(result.model, data.inputs[:64], ["K"], ["K"], max_lag=10)
    assert table.attrs["baseline"] == "mean"  # the per-step mean: see the attribution module
    mass = table.groupby("lag")["attribution"].sum()
    share = mass.loc[[0, 1]].sum() / mass.sum()
    print(f"fibonacci: share of input x lag attribution on lags 0 and 1 = {share:.3f}")
    assert share > 0.5
    assert isinstance(table, pd.DataFrame) and np.isfinite(table["attribution"]).all()
