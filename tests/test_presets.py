"""Presets where memory is necessary, their state sizes, and renamed relation fits."""

from __future__ import annotations

import numpy as np
import pytest

from unitprobe.tasks import PRESETS, generate, get_preset
from unitprobe.tasks.check import check_summary, relation_residuals, rename_relations, renamed_fits
from unitprobe.tasks.presets import SEED_ANSWER, SEED_RELATIONS, STATE_SIZE, state_size

NEW = ["seed-restart", "seed-integrate", "seed-stationary", "seed-swapped"]


def test_every_preset_documents_its_state_size():
    for name, spec in PRESETS.items():
        size = state_size(name)
        assert size is not None and size >= 1, name
        if name in NEW or name.startswith("delay-"):
            assert f"state size: {size}" in spec.description.lower(), name
    assert state_size("delay-9") == 9 and state_size("nonsense") is None
    assert STATE_SIZE["seed-integrate"] == 2


@pytest.mark.parametrize("name", NEW)
def test_new_presets_satisfy_their_relations(name):
    spec = get_preset(name)
    data = generate(spec, 32, seed=0)
    residuals = relation_residuals(spec, data)
    for row in check_summary(residuals, rtol=1e-9).itertuples():
        res = residuals[residuals["relation"] == row.relation]["residual"].to_numpy()
        if "normal(" in row.relation or "uniform(" in row.relation:
            continue  # random terms leave their draws as residuals
        assert np.abs(res).max() < 1e-6, row.relation


def test_seed_restart_flag_is_binary_and_values_stay_bounded():
    data = generate(get_preset("seed-restart"), 256, seed=0)
    assert set(np.unique(data.raw["R"])) == {0.0, 1.0}
    assert np.abs(data.raw["X"]).max() < 30  # restarts after |X| > 10 bound the growth
    restart = data.raw["R"][:, 1:] == 1
    x = data.raw["X"]
    # after a restart X is a fresh innovation, not X[t-1] + X[t-2]
    assert np.abs(x[:, 1:][restart]).std() < 2.0


def test_seed_integrate_observes_only_x():
    spec = get_preset("seed-integrate")
    assert spec.inputs == ["X"] and spec.predict == ["K", "X"]
    data = generate(spec, 8, seed=1)
    k, x = data.raw["K"], data.raw["X"]
    np.testing.assert_allclose(k[:, 1:], k[:, :-1] + 2 * x[:, 1:] + 1)


def test_swapped_preset_is_seed_with_names_exchanged():
    swapped = rename_relations(SEED_RELATIONS, {"K": "X", "X": "K"})
    assert get_preset("seed-swapped").relations == swapped


def test_renamed_fits_name_the_swapped_reading_of_the_answer():
    fits = renamed_fits(SEED_RELATIONS, SEED_ANSWER)
    best = fits.iloc[0]
    assert not best["identity"]
    assert best["relations"] == "K[t] = K[t-1] + K[t-2]; X[t] = X[t-1] + 2*K[t] + 1"
    assert best["n_failing"] == 1 and best["failures"] == "X[4]: relation 19, data 30"
    stated = fits[fits["identity"]].iloc[0]
    assert stated["n_failing"] == 7


def test_rename_relations_swaps_at_once():
    assert rename_relations(["K[t] = X[t-1] + K[t-2]"], {"K": "X", "X": "K"}) == [
        "X[t] = K[t-1] + X[t-2]"
    ]
