"""Tests of unitprobe.pipeline.decodability on a hand-wired network with known unit contents."""

import numpy as np
import pandas as pd
import pytest

from unitprobe.errors import DataError, UnitprobeError
from unitprobe.pipeline.decodability import DECODABILITY_COLUMNS, decodability_drop


def test_ablating_k_t_destroys_k_t_minus_1_downstream_but_an_x_unit_does_not(planted_kx):
    model, ds = planted_kx(n_seq=80, n_steps=20)
    x = ds.inputs
    lagged = np.zeros((80, 20, 2), np.float32)
    lagged[:, 1:, 0] = x[:, :-1, 0]  # K[t-1]
    lagged[:, 1:, 1] = x[:, :-1, 1]  # X[t-1]
    table = decodability_drop(
        model, ds, lagged, ["K[t-1]", "X[t-1]"], units=[0, 2], modes=("zero", "resample")
    )
    assert list(table.columns) == list(DECODABILITY_COLUMNS)
    drop = table.set_index(["units", "mode", "target"]).r2_drop
    base = table.set_index(["units", "mode", "target"]).r2_base
    assert (base > 0.99).all()  # K[t-1] and X[t-1] sit in units 1 and 3
    for mode in ("zero", "resample"):
        assert drop["0", mode, "K[t-1]"] > 0.7  # unit 1 copies unit 0 one step later
        assert abs(drop["0", mode, "X[t-1]"]) < 0.01
        assert abs(drop["2", mode, "K[t-1]"]) < 0.01  # an X unit: K[t-1] stays readable
        assert drop["2", mode, "X[t-1]"] > 0.7


def test_decodability_drop_accepts_arrays_and_a_custom_probe(planted_kx):
    model, ds = planted_kx(n_seq=30, n_steps=10)
    lagged = np.zeros((30, 10, 1))
    lagged[:, 1:, 0] = ds.inputs[:, :-1, 0]

    def probe(states, targets, groups):
        return pd.DataFrame({"target": targets.columns, "r2": states.shape[1]})

    table = decodability_drop(model, ds.inputs, lagged, ["K[t-1]"], [[0, 1]], step=5, probe=probe)
    assert table.r2_base.tolist() == [2.0] and table.r2_drop.tolist() == [0.0]
    with pytest.raises(DataError, match="probe_targets of shape"):
        decodability_drop(model, ds, lagged[:, :5], ["K[t-1]"], [0])
    with pytest.raises(UnitprobeError, match="must be a non-empty list"):
        decodability_drop(model, ds, lagged, ["K[t-1]"], [])
