"""Tests of probe targets: alignment, dropped steps, defaults."""

from __future__ import annotations

import numpy as np
import pytest

from unitprobe.errors import DataError, TaskSpecError
from unitprobe.methods.targets import Targets, default_targets, make_targets, select_states
from unitprobe.tasks import TaskSpec, dataset_from_raw, generate, get_preset


@pytest.fixture(scope="module")
def seed_data():
    return generate(get_preset("seed"), n_sequences=5, seed=1)


def test_make_targets_drops_the_steps_without_history_and_matches_hand_lags(seed_data):
    ds = seed_data
    tg = make_targets(ds, ["K[t]", "K[t-1]", "X[t-2]", "K[t-1] + 2*X[t]"])
    assert isinstance(tg, Targets)
    assert tg.names == ["K[t]", "K[t-1]", "X[t-2]", "K[t-1] + 2*X[t]"]
    n, t_len = ds.n_sequences, ds.length
    assert tg.mask.shape == (n, t_len)
    assert not tg.mask[:, :2].any() and tg.mask[:, 2:].all()  # X[t-2] needs t >= 2
    assert tg.n_samples == n * (t_len - 2)
    assert tg.steps.tolist() == list(range(2, t_len)) * n
    assert tg.groups.tolist() == np.repeat(ds.sequence_ids, t_len - 2).tolist()
    K, X = ds.raw["K"], ds.raw["X"]
    for row in [0, 7, 17, 18, 40, tg.n_samples - 1]:
        i, t = tg.groups[row], tg.steps[row]
        got = tg.values.iloc[row]
        assert got["K[t]"] == K[i, t]
        assert got["K[t-1]"] == K[i, t - 1]
        assert got["X[t-2]"] == X[i, t - 2]
        assert got["K[t-1] + 2*X[t]"] == K[i, t - 1] + 2 * X[i, t]
    # K[t-1] + 2*X[t] + 1 is exactly K[t] in raw units (the seed relation)
    rhs = make_targets(ds, ["K[t]", "K[t-1] + 2*X[t] + 1"]).values.to_numpy()
    np.testing.assert_allclose(rhs[:, 0], rhs[:, 1], rtol=1e-12)


def test_common_mask_and_lag_zero_only(seed_data):
    only_now = make_targets(seed_data, ["K[t]", "X[t]"])
    assert only_now.mask.all() and only_now.n_samples == 5 * 20
    one = make_targets(seed_data, ["K[t]", "X[t-1]"])
    assert one.mask[:, 1:].all() and not one.mask[:, 0].any()


def test_select_states_rows_align_with_targets(seed_data):
    ds = seed_data
    tg = make_targets(ds, ["X[t-1]"])
    n, t_len = ds.n_sequences, ds.length
    seq, step = np.meshgrid(np.arange(n), np.arange(t_len), indexing="ij")
    states = np.stack([seq, step, seq * 100 + step], axis=-1).astype(float)  # (N, T, 3)
    picked = select_states(states, tg)
    assert picked.shape == (tg.n_samples, 3)
    assert picked[:, 0].tolist() == tg.groups.tolist()  # sequence_ids are 0..N-1 here
    assert picked[:, 1].tolist() == tg.steps.tolist()
    with pytest.raises(DataError, match="expected"):
        select_states(states[:, :-1], tg)


def test_groups_use_sequence_ids():
    raw = {"A": np.arange(12.0).reshape(3, 4)}
    ds = dataset_from_raw(raw, inputs=["A"], predict=["A"], sequence_ids=np.array([7, 3, 9]))
    tg = make_targets(ds, ["A[t-1]"])
    assert tg.groups.tolist() == [7, 7, 3, 3, 9, 9]
    assert tg.values["A[t-1]"].tolist() == [0, 1, 4, 5, 8, 9]


@pytest.mark.parametrize(
    ("exprs", "message"),
    [
        (["K[t] + normal(1)"], "random term"),
        (["Z[t]"], "unknown series 'Z'"),
        (["K[t-20]"], "reach back 20 steps but sequences have only 20 steps"),
        (["K[t-1]", "K[t - 1]"], r"\['K\[t-1\]'\] are requested more than once"),
        ([], "no target expressions"),
        ("K[t]", "must be a list"),
        (["K[t+1]"], "look-ahead"),
    ],
)
def test_make_targets_errors(seed_data, exprs, message):
    with pytest.raises(TaskSpecError, match=message):
        make_targets(seed_data, exprs)


def test_default_targets():
    assert default_targets(get_preset("seed")) == [
        "X[t]", "X[t-1]", "X[t-2]", "K[t]", "K[t-1]",
    ]  # fmt: skip
    assert default_targets(get_preset("ar2")) == [
        "X[t]", "X[t-1]", "X[t-2]", "0.6*X[t-1] - 0.3*X[t-2]",
    ]  # fmt: skip
    assert default_targets(get_preset("delay-2")) == [
        "U[t]", "U[t-1]", "U[t-2]", "Y[t]", "Y[t-1]",
    ]  # fmt: skip
    ds = generate(get_preset("seed-innov"), n_sequences=3, seed=0)
    tg = make_targets(ds, default_targets(ds.spec))
    assert tg.values.shape == (3 * 28, 7) and np.isfinite(tg.values.to_numpy()).all()


def test_default_targets_have_no_scaled_copies():
    def spec(relations, init):
        series = [r.split("[")[0] for r in relations]
        return TaskSpec(
            name="t", relations=relations, init=init, inputs=series, predict=series, length=10
        )

    # 0.8*A[t-1] (+ a constant) is A[t-1] up to scale and offset: a probe cannot tell them apart
    ar1 = spec(
        ["A[t] = 0.8*A[t-1] + normal(1)", "C[t] = 0.8*A[t-1] + 2 + normal(1)"], {"A": 0, "C": 0}
    )
    assert default_targets(ar1) == ["A[t]", "A[t-1]", "C[t]", "C[t-1]"]
    # 2*A[t-1] + 0.6*B[t-1] is 0.5*A[t-1] + 0.15*B[t-1] scaled by 4: kept once, the first;
    # a combination in another direction and a nonlinear part stay
    mixed = spec(
        [
            "A[t] = 0.5*A[t-1] + 0.15*B[t-1] + normal(1)",
            "B[t] = 2*A[t-1] + 0.6*B[t-1] - 1 + normal(1)",
            "D[t] = A[t-1] - B[t-1] + normal(1)",
            "E[t] = tanh(A[t-1]) + normal(1)",
        ],
        {"A": 0, "B": 0, "D": 0, "E": 0},
    )
    assert default_targets(mixed) == [
        "A[t]", "A[t-1]", "B[t]", "B[t-1]", "D[t]", "D[t-1]", "E[t]", "E[t-1]",
        "0.5*A[t-1] + 0.15*B[t-1]", "A[t-1] - B[t-1]", "tanh(A[t-1])",
    ]  # fmt: skip
