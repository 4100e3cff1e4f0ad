"""Tests of unitprobe.methods.probes: every bulk probe against an explicit sklearn loop or refit."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from unitprobe.config import ProbeConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.probes import (
    UnitProbe,
    adjust_pvalues,
    correlation_matrix,
    identifiability,
    l1_path_ranking,
    partial_r2,
    permutation_pvalues,
    population_probe,
    selectivity,
    unique_contribution,
    unit_probes,
    vif_table,
)
from unitprobe.methods.targets import make_targets
from unitprobe.model.lstm import ModelConfig, UnitLSTM, run
from unitprobe.pipeline.probing import probe_model
from unitprobe.schemas import SCHEMAS
from unitprobe.tasks import generate, get_preset

TOL = 1e-8


def _cv_r2(estimator, X, y, groups, n_splits=5):
    return cross_val_score(estimator, X, y, groups=groups, cv=GroupKFold(n_splits), scoring="r2")


def _row(table, unit, target):
    return table[(table["unit"] == unit) & (table["target"] == target)].iloc[0]


@pytest.fixture(scope="module")
def uneven():
    """States with offsets and scales, uneven sequence lengths, planted signal."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 30, size=37)
    groups = np.repeat(np.arange(37) * 7 + 3, lengths)  # non-contiguous labels
    n = len(groups)
    X = rng.normal(size=(n, 7)) * rng.uniform(0.01, 5, 7) + rng.uniform(-50, 50, 7)
    Y = np.column_stack(
        [
            3 * X[:, 0] + rng.normal(size=n),
            X[:, 1] - 0.01 * X[:, 2] + rng.normal(size=n),
            rng.normal(size=n) + 1e3,
            (X[:, 3] > X[:, 3].mean()).astype(float),
        ]
    )
    return X, Y, groups


# --------------------------------------------------------------------------------------------
# unit_probes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 25.0])
def test_unit_probes_equals_sklearn_loop(uneven, alpha):
    X, Y, groups = uneven
    table = unit_probes(X, Y, groups, alpha=alpha)
    assert len(table) == X.shape[1] * Y.shape[1]
    assert list(table.columns) == [
        "unit", "target", "r2", "r2_std", "coef", "intercept", "n_samples", "note"
    ]  # fmt: skip
    for u in range(X.shape[1]):
        for k in range(Y.shape[1]):
            ref = _cv_r2(Ridge(alpha=alpha), X[:, [u]], Y[:, k], groups)
            full = Ridge(alpha=alpha).fit(X[:, [u]], Y[:, k])
            row = _row(table, u, str(k))
            assert abs(row.r2 - ref.mean()) < TOL
            assert abs(row.r2_std - ref.std()) < TOL
            assert abs(row.coef - full.coef_[0]) < TOL * max(1, abs(full.coef_[0]))
            assert abs(row.intercept - full.intercept_) < TOL * max(1, abs(full.intercept_))
            assert row.n_samples == len(X) and row.note == ""


def test_unit_probes_degenerate_columns(uneven):
    X, Y, groups = uneven
    rows = list(GroupKFold(5).split(X, groups=groups))
    X = X.copy()
    X[:, 4] = 0.0
    X[rows[2][1], 4] = np.linspace(1, 2, len(rows[2][1]))  # constant in one training fold only
    X[:, 5] = 7.25  # constant unit
    Y = np.column_stack([Y[:, 0], np.full(len(Y), 2.5), Y[:, 1]])
    Y[rows[1][1], 2] = 3.0  # target constant in one test fold
    table = unit_probes(X, pd.DataFrame(Y, columns=["a", "const", "b"]), groups)

    for u in (0, 4):
        for k, name in [(0, "a"), (2, "b")]:
            ref = _cv_r2(Ridge(alpha=1e-3), X[:, [u]], Y[:, k], groups)
            assert abs(_row(table, u, name).r2 - ref.mean()) < TOL
    # a test fold with a constant target scores 0.0, as sklearn's r2_score does
    ref = _cv_r2(Ridge(alpha=1e-3), X[:, [0]], Y[:, 2], groups)
    assert ref[1] == 0.0
    assert "1 test fold" in _row(table, 0, "b").note

    # constant unit: NaN with a reason instead of sklearn's misleading small negative R²
    assert _cv_r2(Ridge(alpha=1e-3), X[:, [5]], Y[:, 0], groups).mean() < 0
    assert table[table.unit == 5].r2.isna().all()
    assert (table[table.unit == 5].note.str.contains("constant unit")).all()

    # constant target: sklearn's value is an artefact of rounding in the mean (1.0 here)
    assert _cv_r2(Ridge(alpha=1e-3), X[:, [0]], Y[:, 1], groups).mean() == 1.0
    assert table[table.target == "const"].r2.isna().all()
    assert (table[table.target == "const"].note.str.contains("constant target")).all()


def test_unit_probes_target_forms():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X[:, 2] + 0.1 * rng.normal(size=200)
    groups = np.arange(200) // 10
    from_1d = unit_probes(X, y, groups)
    from_series = unit_probes(X, pd.Series(y, name="K[t]"), groups)
    assert list(from_1d.target.unique()) == ["0"]
    assert list(from_series.target.unique()) == ["K[t]"]
    np.testing.assert_array_equal(from_1d.r2, from_series.r2)
    assert from_1d.r2.idxmax() == 2


def test_unit_probes_no_dense_unit_by_target_array():
    rng = np.random.default_rng(2)
    n, n_units, n_targets = 20_000, 64, 32
    X, Y = rng.normal(size=(n, n_units)), rng.normal(size=(n, n_targets))
    groups = np.arange(n) // 25
    tracemalloc.start()
    unit_probes(X, Y, groups)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.1 * n * n_units * n_targets * 8  # a dense (n, U, K) array would be 10x this


# --------------------------------------------------------------------------------------------
# population probe, unique contributions
# --------------------------------------------------------------------------------------------


def test_population_probe_equals_ridgecv_in_groupkfold(uneven):
    X, Y, groups = uneven
    alphas = np.logspace(-4, 3, 15)
    table = population_probe(X, Y, groups, alphas=alphas, select="loo")
    assert list(table.columns) == [
        "target", "r2", "r2_std", "alpha", "alpha_folds", "n_samples", "note"
    ]  # fmt: skip
    assert list(table.target) == [str(k) for k in range(Y.shape[1])]
    for k in range(Y.shape[1]):
        scores, chosen = [], []
        for train, test in GroupKFold(5).split(X, groups=groups):
            model = RidgeCV(alphas=alphas).fit(X[train], Y[train, k])
            scores.append(model.score(X[test], Y[test, k]))
            chosen.append(model.alpha_)
        row = table.iloc[k]
        assert abs(row.r2 - np.mean(scores)) < TOL
        assert abs(row.r2_std - np.std(scores)) < TOL
        assert row.alpha_folds == ";".join(f"{a:.6g}" for a in chosen)
        assert row.alpha == np.median(chosen)


def test_unique_contribution_equals_refits(uneven):
    X, Y, groups = uneven
    alpha = 0.5
    table = unique_contribution(X, Y, groups, alpha=alpha)
    for k in range(Y.shape[1]):
        full = _cv_r2(Ridge(alpha=alpha), X, Y[:, k], groups).mean()
        for j in range(X.shape[1]):
            without = _cv_r2(Ridge(alpha=alpha), np.delete(X, j, axis=1), Y[:, k], groups).mean()
            row = _row(table, j, str(k))
            assert abs(row.r2_full - full) < TOL
            assert abs(row.r2_without - without) < TOL
            assert abs(row.unique_r2 - (full - without)) < TOL
    # the planted unit of target 0 carries the largest unique share
    assert table[table.target == "0"].set_index("unit").unique_r2.idxmax() == 0


# --------------------------------------------------------------------------------------------
# partial R²
# --------------------------------------------------------------------------------------------


def _partial_reference(X, Y, C, u, k, groups, alpha):
    scores = []
    for train, test in GroupKFold(5).split(X, groups=groups):
        ry = Y[:, k] - LinearRegression().fit(C[train], Y[train, k]).predict(C)
        rx = X[:, u] - LinearRegression().fit(C[train], X[train, u]).predict(C)
        probe = Ridge(alpha=alpha).fit(rx[train, None], ry[train])
        scores.append(r2_score(ry[test], probe.predict(rx[test, None])))
    return np.mean(scores)


def test_partial_r2_equals_explicit_residualization(uneven):
    X, Y, groups = uneven
    table = partial_r2(X, Y, groups, alpha=0.01)
    for k in range(Y.shape[1]):
        C = np.delete(Y, k, axis=1)
        for u in range(X.shape[1]):
            ref = _partial_reference(X, Y, C, u, k, groups, 0.01)
            assert abs(_row(table, u, str(k)).partial_r2 - ref) < TOL
    assert _row(table, 0, "0").controls == "1; 2; 3"

    rng = np.random.default_rng(3)
    controls = pd.DataFrame({"c": X[:, 0] + rng.normal(size=len(X))})
    table = partial_r2(X, Y[:, :2], groups, controls=controls)
    for u in (0, 1, 6):
        ref = _partial_reference(X, Y, controls.to_numpy(), u, 1, groups, 1e-3)
        assert abs(_row(table, u, "1").partial_r2 - ref) < TOL
    assert set(table.controls) == {"c"}

    # a single target has no other targets to control for: partial R² is the plain R²
    alone = partial_r2(X, Y[:, 0], groups)
    np.testing.assert_allclose(alone.partial_r2, unit_probes(X, Y[:, 0], groups).r2, atol=TOL)


def _fibonacci(n_seq=120, n_steps=12, first=4, noise=0.005, seed=0):
    """K[t] = K[t-1] + K[t-2] from random K[0], K[1]; unit 0 holds K[t], unit 1 K[t-1]."""
    rng = np.random.default_rng(seed)
    K = np.empty((n_seq, n_steps))
    K[:, :2] = rng.normal(size=(n_seq, 2))
    for t in range(2, n_steps):
        K[:, t] = K[:, t - 1] + K[:, t - 2]
    now, prev = K[:, first:].ravel(), K[:, first - 1 : -1].ravel()
    n = len(now)
    states = np.column_stack(
        [now + noise * rng.normal(size=n), prev + noise * rng.normal(size=n)]
        + [rng.normal(size=n) for _ in range(4)]
    )
    targets = pd.DataFrame({"K[t]": now, "K[t-1]": prev})
    groups = np.repeat(np.arange(n_seq), n_steps - first)
    return states, targets, groups


def test_partial_r2_separates_collinear_fibonacci_terms():
    states, targets, groups = _fibonacci()
    assert np.corrcoef(targets["K[t]"], targets["K[t-1]"])[0, 1] ** 2 > 0.99

    raw = unit_probes(states, targets, groups)
    r2_a, r2_b = _row(raw, 0, "K[t]").r2, _row(raw, 1, "K[t]").r2
    assert r2_a > 0.95 and r2_b > 0.95 and abs(r2_a - r2_b) < 0.02  # raw R² cannot tell

    part = partial_r2(states, targets, groups)
    best = part.loc[part.groupby("target").partial_r2.idxmax()].set_index("target").unit
    assert best["K[t]"] == 0 and best["K[t-1]"] == 1
    assert _row(part, 0, "K[t]").partial_r2 > 0.5
    assert _row(part, 1, "K[t]").partial_r2 < 0.1


def test_partial_r2_target_explained_by_controls():
    states, targets, groups = _fibonacci()
    targets = targets.assign(**{"K[t-2]": targets["K[t]"] - targets["K[t-1]"]})  # exact relation
    part = partial_r2(states, targets, groups)
    assert part.partial_r2.isna().all()
    assert (part.note == "target explained by controls").all()
    assert (part.control_r2 > 1 - 1e-9).all()


# --------------------------------------------------------------------------------------------
# L1 path, identifiability
# --------------------------------------------------------------------------------------------


def test_l1_path_ranking_planted_order():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1500, 8)) * rng.uniform(0.1, 10, 8)
    X[:, 7] = 1.0  # constant
    Z = (X[:, :7] - X[:, :7].mean(0)) / X[:, :7].std(0)
    y = 3 * Z[:, 2] + 1.5 * Z[:, 5] + 0.5 * Z[:, 0] + 0.3 * rng.normal(size=1500)
    table = l1_path_ranking(X, pd.DataFrame({"y": y, "flat": np.zeros(1500)}))
    order = table[table.target == "y"].unit.tolist()
    assert order[:3] == [2, 5, 0]
    first = table.iloc[0]
    assert first.entry_rank == 1
    alpha_max = abs(np.corrcoef(X[:, 2], y)[0, 1])  # standardized: the largest |r|
    assert abs(first.entry_alpha - alpha_max * 1e-3 ** (1 / 49)) < 1e-10
    ranks = table[table.target == "y"].set_index("unit").entry_rank
    assert pd.isna(ranks[7]) and list(ranks.dropna()) == sorted(ranks.dropna())
    assert table[table.target == "flat"].entry_rank.isna().all()


def test_identifiability_flags_planted_collinear_set():
    rng = np.random.default_rng(5)
    n = 2000
    a = rng.normal(size=n)
    b = a + 0.05 * rng.normal(size=n)  # r² ~ 0.9975 with a
    d = rng.normal(size=n)
    targets = pd.DataFrame({"a": a, "b": b, "a+d": a + d, "d": d, "flat": np.ones(n)})
    table = identifiability(targets)
    assert list(table.columns) == list(SCHEMAS["identifiability"].columns)
    assert table.dtypes.to_dict() == SCHEMAS["identifiability"].empty().dtypes.to_dict()
    pairs = table.set_index(["target_a", "target_b"])
    assert len(pairs) == 10
    assert pairs.loc[("a", "b"), "r2"] > 0.99 and not pairs.loc[("a", "b"), "separable"]
    assert pairs.loc[("a", "d"), "separable"] and pairs.loc[("a", "d"), "r2"] < 0.01
    assert np.isnan(pairs.loc[("a", "flat"), "r2"]) and not pairs.loc[("a", "flat"), "separable"]
    vif = vif_table(targets)
    assert list(vif.columns) == list(SCHEMAS["vif"].columns)
    assert vif.dtypes.to_dict() == SCHEMAS["vif"].empty().dtypes.to_dict()
    assert list(vif.target) == list(targets.columns)
    vif = vif.set_index("target")
    assert np.isinf(vif.loc["a", "vif"]) and np.isinf(vif.loc["d", "vif"])  # a+d is exact
    assert vif.loc["a", "r2"] == 1.0 and not vif.loc["a", "separable"]
    assert np.isnan(vif.loc["flat", "vif"])
    assert np.isnan(vif.loc["flat", "r2"]) and not vif.loc["flat", "separable"]

    vif = vif_table(targets[["a", "b", "d"]]).set_index("target")
    expected = np.diag(np.linalg.inv(np.corrcoef(targets[["a", "b", "d"]].to_numpy().T)))
    np.testing.assert_allclose(vif.vif, expected, rtol=1e-8)
    np.testing.assert_allclose(vif.r2, 1 - 1 / expected, rtol=1e-10)
    assert vif.loc["a", "vif"] > 100 and vif.loc["d", "vif"] < 1.1

    corr = correlation_matrix(targets[["a", "b", "d"]])
    expected = np.corrcoef(targets[["a", "b", "d"]].to_numpy().T)
    np.testing.assert_allclose(corr.to_numpy(), expected, atol=1e-12)
    assert list(corr.columns) == list(corr.index) == ["a", "b", "d"]


def test_vif_table_independent_and_exactly_collinear_targets():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(2, 5000))
    independent = vif_table(pd.DataFrame({"a": a, "b": b})).set_index("target")
    np.testing.assert_allclose(independent.vif, 1.0, atol=2e-3)
    np.testing.assert_allclose(independent.r2, 1 - 1 / independent.vif, atol=1e-12)
    assert independent.separable.all()
    combined = vif_table(pd.DataFrame({"a": a, "b": b, "2a-b": 2 * a - b})).set_index("target")
    assert np.isinf(combined.vif).all()
    assert (combined.r2 == 1.0).all() and not combined.separable.any()
    alone = vif_table(pd.DataFrame({"a": a}))
    assert alone.vif.tolist() == [1.0] and alone.r2.tolist() == [0.0]


def test_permutation_defaults_come_from_probe_config():
    rng = np.random.default_rng(12)
    groups = np.repeat(np.arange(20), 5)
    X, Y = rng.normal(size=(100, 2)), rng.normal(size=(100, 1))
    table = permutation_pvalues(X, Y, groups)
    assert ProbeConfig.n_permutations == 99
    assert (table.n_permutations == 99).all()
    assert table.p_value_raw.mul(100).round(9).mod(1).eq(0).all()  # multiples of 1 / 100
    np.testing.assert_allclose(table.p_value, adjust_pvalues(table.p_value_raw, "bh"))


# --------------------------------------------------------------------------------------------
# controls
# --------------------------------------------------------------------------------------------


def test_permutation_pvalues_uniform_under_null_and_null_selectivity():
    rng = np.random.default_rng(6)
    n_seq, n_steps = 40, 10
    groups = np.repeat(np.arange(n_seq), n_steps)
    X = rng.normal(size=(n_seq * n_steps, 20))
    Y = rng.normal(size=(n_seq * n_steps, 10))
    table = permutation_pvalues(X, Y, groups, n_permutations=199, seed=0, correction="holm")
    assert len(table) == 200
    assert stats.kstest(table.p_value_raw, "uniform").pvalue > 0.01
    assert table.p_value.min() > 0.05  # nothing survives Holm under the null
    bh = permutation_pvalues(X, Y, groups, n_permutations=199, seed=0)  # default: BH
    np.testing.assert_array_equal(bh.p_value_raw, table.p_value_raw)
    assert bh.p_value.min() > 0.05  # nor Benjamini-Hochberg

    control = unit_probes(rng.normal(size=X.shape), Y, groups)
    sel = selectivity(unit_probes(X, Y, groups).r2, control.r2)
    assert abs(np.median(sel)) < 0.01


def test_permutation_pvalues_signal_and_whole_sequences():
    rng = np.random.default_rng(7)
    n_seq, n_steps = 30, 8
    groups = np.repeat(np.arange(n_seq), n_steps)
    n = n_seq * n_steps
    signal = rng.normal(size=n)
    step = np.tile(np.arange(n_steps), n_seq).astype(float)
    X = np.column_stack([signal + 0.3 * rng.normal(size=n), step + 0.1 * rng.normal(size=n)])
    Y = pd.DataFrame({"signal": signal, "step": step})
    table = permutation_pvalues(X, Y, groups, n_permutations=99, correction="bh")
    assert _row(table, 0, "signal").p_value_raw == 0.01
    # whole sequences move, so a target that depends only on the step within its sequence is
    # unchanged by every permutation: the probe of unit 1 is never beaten -> p = 1
    assert _row(table, 1, "step").p_value_raw == 1.0
    again = permutation_pvalues(X, Y, groups, n_permutations=99, correction="bh")
    pd.testing.assert_frame_equal(table, again)


def test_permutation_pvalues_equal_brute_force():
    """The statistic is unit_probes' R² minus the intercept-only R², permuted by sequence."""
    rng = np.random.default_rng(10)
    groups = np.repeat(np.arange(16), [6] * 10 + [4] * 6)
    n = len(groups)
    X = rng.normal(size=(n, 3))
    Y = np.column_stack([X[:, 0] * 0.3 + rng.normal(size=n), rng.normal(size=n)])
    n_perm, seed = 19, 3
    table = permutation_pvalues(X, Y, groups, n_permutations=n_perm, seed=seed)

    def gain(y):
        base = _cv_r2(DummyRegressor(), X[:, :1], y, groups).mean()
        probes = [_cv_r2(Ridge(alpha=1e-3), X[:, [u]], y, groups).mean() for u in range(3)]
        return np.array(probes) - base

    # the same permutations, drawn as documented: sequences of equal length swap target blocks
    six = np.vstack([np.flatnonzero(groups == g) for g in range(10)])
    four = np.vstack([np.flatnonzero(groups == g) for g in range(10, 16)])
    perm_rng = np.random.default_rng(seed)
    obs = np.column_stack([gain(Y[:, k]) for k in range(2)])
    exceed = np.zeros((3, 2))
    for _ in range(n_perm):
        src = np.arange(n)
        for blk in (four, six):  # lengths in increasing order
            src[blk] = blk[perm_rng.permutation(len(blk))]
        exceed += np.column_stack([gain(Y[src, k]) for k in range(2)]) >= obs - 1e-12
    expected = (1 + exceed) / (1 + n_perm)
    for u in range(3):
        for k in range(2):
            row = _row(table, u, str(k))
            assert abs(row.r2_gain - obs[u, k]) < TOL
            assert row.p_value_raw == expected[u, k]
    # the default correction is Benjamini-Hochberg, as ProbeConfig's
    assert ProbeConfig.correction == "bh"
    np.testing.assert_allclose(table.p_value, adjust_pvalues(table.p_value_raw, "bh"))
    np.testing.assert_allclose(adjust_pvalues(table.p_value_raw), table.p_value)
    holm = permutation_pvalues(X, Y, groups, n_permutations=n_perm, seed=seed, correction="holm")
    np.testing.assert_allclose(holm.p_value, adjust_pvalues(table.p_value_raw, "holm"))


def test_permutation_pvalues_unequal_lengths_warns():
    rng = np.random.default_rng(8)
    groups = np.repeat(np.arange(12), [5] * 10 + [6, 7])
    X, Y = rng.normal(size=(len(groups), 2)), rng.normal(size=(len(groups), 1))
    with pytest.warns(UserWarning, match="2 sequence"):
        table = permutation_pvalues(X, Y, groups, n_permutations=9)
    assert table.p_value_raw.between(0.1, 1).all()
    with pytest.raises(DataError, match="no two sequences"):
        permutation_pvalues(X[:15], Y[:15], np.repeat([0, 1, 2], [4, 5, 6]), n_splits=2)


def test_adjust_pvalues_hand_example():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjust_pvalues(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(adjust_pvalues(p, "none"), p)
    np.testing.assert_allclose(adjust_pvalues([0.5, 0.6], "holm"), [1.0, 1.0])
    with_nan = adjust_pvalues([[0.01, np.nan], [0.04, 0.03]], "holm")
    np.testing.assert_allclose(with_nan, [[0.03, np.nan], [0.06, 0.06]])
    with pytest.raises(DataError, match="correction == 'bonf'"):
        adjust_pvalues(p, "bonf")


def test_selectivity_shapes():
    r2 = pd.Series([0.5, 0.2], index=[3, 4])
    out = selectivity(r2, [0.1, 0.3])
    assert list(out.index) == [3, 4] and np.allclose(out, [0.4, -0.1])
    with pytest.raises(DataError, match="shape"):
        selectivity([0.1, 0.2], [0.1])


# --------------------------------------------------------------------------------------------
# estimator
# --------------------------------------------------------------------------------------------


@parametrize_with_checks([UnitProbe(), UnitProbe(alpha=0.0, fit_intercept=False)])
def test_unit_probe_sklearn_checks(estimator, check):
    check(estimator)


def test_unit_probe_equals_ridge_and_composes(uneven):
    X, Y, groups = uneven
    for fit_intercept in (True, False):
        mine = UnitProbe(alpha=2.0, fit_intercept=fit_intercept).fit(X, Y[:, :2])
        ref = Ridge(alpha=2.0, fit_intercept=fit_intercept).fit(X, Y[:, :2])
        np.testing.assert_allclose(mine.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(mine.intercept_, ref.intercept_, rtol=1e-8, atol=1e-8)
    scores = _cv_r2(UnitProbe(alpha=1e-3), X[:, [0]], Y[:, 0], groups)
    ref = unit_probes(X, Y, groups)
    assert abs(scores.mean() - _row(ref, 0, "0").r2) < TOL

    pipe = make_pipeline(StandardScaler(), UnitProbe())
    assert _cv_r2(pipe, X, Y[:, 0], groups).mean() > 0.9
    search = GridSearchCV(UnitProbe(), {"alpha": [1e-3, 1e5]}, cv=GroupKFold(3))
    search.fit(X, Y[:, 0], groups=groups)
    assert search.best_params_ == {"alpha": 1e-3}
    with pytest.raises(DataError, match="alpha == -1"):
        UnitProbe(alpha=-1).fit(X, Y[:, 0])


# --------------------------------------------------------------------------------------------
# probe_model: a network and its untrained controls
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_network():
    data = generate(get_preset("seed"), n_sequences=24, seed=0)
    config = ModelConfig(n_inputs=len(data.input_names), n_units=3,
                         n_outputs=len(data.output_names), n_layers=2)  # fmt: skip
    torch.manual_seed(7)
    return UnitLSTM(config).eval(), data


def test_probe_model_returns_the_two_tables_with_their_schemas(small_network):
    model, data = small_network
    config = ProbeConfig(state="both", n_controls=2, n_permutations=9, n_splits=3)
    targets = ["K[t]", "X[t-1]"]
    probes, population = probe_model(
        model, data, targets, config=config, control_seed=1, permutation_seed=2
    )
    for name, table in (("probes", probes), ("population_probes", population)):
        assert list(table.columns) == list(SCHEMAS[name].columns)
        assert table.dtypes.to_dict() == SCHEMAS[name].empty().dtypes.to_dict()
    assert len(probes) == 2 * 2 * 3 * 2 and len(population) == 2 * 2 * 2  # layers, states, ...
    assert probes["unit"].tolist() == [u for _ in range(4) for u in range(3) for _ in targets]
    assert population[["layer", "state"]].drop_duplicates().values.tolist() == [
        [0, "h"], [0, "c"], [1, "h"], [1, "c"]
    ]  # fmt: skip
    for table in (probes, population):
        np.testing.assert_allclose(table.selectivity, table.r2 - table.r2_control)
    assert (probes.p_value_raw * 10).round(9).mod(1).eq(0).all()  # 9 permutations
    assert (probes.n_samples == population.n_samples.iloc[0]).all()

    # the rows are the method tables of the network's states
    tg = make_targets(data, targets)
    states = run(model, data.inputs, record=("h", "c")).numpy("c", 1)[tg.mask]
    expected = population_probe(states, tg.values, tg.groups, n_splits=3)
    got = population[(population.layer == 1) & (population.state == "c")]
    np.testing.assert_array_equal(got.r2, expected.r2)
    units = unit_probes(states, tg.values, tg.groups, n_splits=3, alpha=config.alpha)
    got = probes[(probes.layer == 1) & (probes.state == "c")]
    np.testing.assert_array_equal(got.r2, units.r2)
    np.testing.assert_array_equal(got.coef, units.coef)
    perm = permutation_pvalues(states, tg.values, tg.groups, n_permutations=9, seed=2, n_splits=3)
    np.testing.assert_array_equal(got.p_value, perm.p_value)


def test_probe_model_seeds_and_defaults(small_network):
    model, data = small_network
    config = ProbeConfig(n_controls=1, n_permutations=9, n_splits=3, targets=("K[t]",))
    probes, population = probe_model(model, data, config=config)
    assert set(probes.target) == set(population.target) == {"K[t]"}  # config.targets
    assert set(probes.state) == {"h"}
    again = probe_model(model, data, config=config)
    pd.testing.assert_frame_equal(probes, again[0])
    pd.testing.assert_frame_equal(population, again[1])
    trace = run(model, data.inputs, record=("h",))
    pd.testing.assert_frame_equal(probe_model(model, data, config=config, trace=trace)[0], probes)
    other_controls, other_population = probe_model(model, data, config=config, control_seed=5)
    assert not np.allclose(other_controls.r2_control, probes.r2_control)
    np.testing.assert_array_equal(other_controls.p_value_raw, probes.p_value_raw)
    np.testing.assert_array_equal(other_population.r2, population.r2)
    other_perms = probe_model(model, data, config=config, permutation_seed=5)[0]
    np.testing.assert_array_equal(other_perms.r2_control, probes.r2_control)
    assert not np.array_equal(other_perms.p_value_raw, probes.p_value_raw)
    default, _ = probe_model(model, data, config=ProbeConfig(n_controls=0, n_permutations=9))
    assert set(default.target) == {"X[t]", "X[t-1]", "X[t-2]", "K[t]", "K[t-1]"}
    assert default.r2_control.isna().all() and default.selectivity.isna().all()
    with pytest.raises(UnitprobeError, match="config must be a ProbeConfig"):
        probe_model(model, data, config={"n_controls": 1})
    with pytest.raises(UnitprobeError, match="control_seed == -1"):
        probe_model(model, data, config=config, control_seed=-1)


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def test_input_validation_messages():
    rng = np.random.default_rng(9)
    X, Y, groups = rng.normal(size=(60, 3)), rng.normal(size=(60, 2)), np.arange(60) // 6
    with pytest.raises(DataError, match="states has 60 rows but targets has 59"):
        unit_probes(X, Y[:59], groups)
    with pytest.raises(DataError, match="states has 60 rows but groups has 50"):
        unit_probes(X, Y, groups[:50])
    with pytest.raises(DataError, match=r"n_splits == 11, must be <= the number of groups .* 10"):
        unit_probes(X, Y, groups, n_splits=11)
    with pytest.raises(DataError, match="n_splits == 1, must be an integer >= 2"):
        population_probe(X, Y, groups, n_splits=1)
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match=r"states contains 1 NaN .*row 7, column 2"):
        unit_probes(bad, Y, groups)
    with pytest.raises(DataError, match=r"states contains 1 NaN"):
        unique_contribution(bad, Y, groups)
    with pytest.raises(DataError, match=r"states must be 2-D .* got shape \(60,\)"):
        unit_probes(X[:, 0], Y, groups)
    with pytest.raises(DataError, match="targets contains 2 NaN or infinite"):
        unit_probes(X, np.where(np.arange(60)[:, None] == 3, np.inf, Y), groups)
    with pytest.raises(DataError, match="alpha == -0.1, must be a finite number >= 0"):
        unit_probes(X, Y, groups, alpha=-0.1)
    with pytest.raises(DataError, match="alpha == 0, must be a finite number > 0"):
        unique_contribution(X, Y, groups, alpha=0)
    with pytest.raises(DataError, match="alphas == "):
        population_probe(X, Y, groups, alphas=[1.0, 0.0])
    with pytest.raises(DataError, match="duplicate column names"):
        unit_probes(X, pd.DataFrame(Y, columns=["a", "a"]), groups)
    with pytest.raises(DataError, match="n_permutations == 0, must be an integer >= 1"):
        permutation_pvalues(X, Y, groups, n_permutations=0)
    with pytest.raises(DataError, match="correction == 'bonf', must be one of bh, holm, none"):
        permutation_pvalues(X, Y, groups, correction="bonf")
    with pytest.raises(DataError, match=r"threshold == 1.5, must be a finite number > 0"):
        identifiability(Y, threshold=1.5)
    with pytest.raises(DataError, match=r"threshold == 0, must be a finite number > 0"):
        vif_table(Y, threshold=0)
    with pytest.raises(DataError, match="n_alphas == 1"):
        l1_path_ranking(X, Y, n_alphas=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unit_probes(X, Y, groups)  # clean data: no warnings
