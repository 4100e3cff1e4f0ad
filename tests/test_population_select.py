"""Tests of population_probe's penalty selection: ``select="folds"`` against the explicit
scikit-learn nested loop, ``select="loo"`` (RidgeCV) kept apart, and their errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from unitprobe import _linalg as la
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.probes import population_probe
from unitprobe.methods.probes._common import data_sums, prepare

TOL = 1e-8
ALPHAS = np.logspace(-4, 3, 15)


def _nested_ridge(X, Y, groups, n_splits, alphas):
    """Outer R² (F, K), chosen alphas (F, K) and inner SSE (F, A, K) of the explicit nested
    grouped-CV loop.

    Folds as ``unitprobe._linalg.fold_rows``: the test rows of ``GroupKFold(n_splits)``. For
    outer fold f, each other fold g is scored by ``Ridge(alpha)`` fitted on the folds other
    than f and g; the alpha with the smallest SSE summed over g (first in ``alphas`` order on
    ties) is refitted on all folds but f and scored with R² on f.
    """
    folds = [np.sort(test) for _, test in GroupKFold(n_splits).split(X, groups=groups)]
    n_targets = Y.shape[1]
    r2, chosen = np.empty((n_splits, n_targets)), np.empty((n_splits, n_targets))
    inner = np.zeros((n_splits, len(alphas), n_targets))
    for f, test in enumerate(folds):
        others = [g for g in range(n_splits) if g != f]
        sse = inner[f]
        for g in others:
            train = np.concatenate([folds[h] for h in others if h != g])
            for a, alpha in enumerate(alphas):
                pred = Ridge(alpha=alpha).fit(X[train], Y[train]).predict(X[folds[g]])
                sse[a] += ((Y[folds[g]] - pred) ** 2).sum(axis=0)
        chosen[f] = alphas[np.argmin(sse, axis=0)]
        train = np.concatenate([folds[h] for h in others])
        for k in range(n_targets):
            model = Ridge(alpha=chosen[f, k]).fit(X[train], Y[train, k])
            r2[f, k] = model.score(X[test], Y[test, k])
    return r2, chosen, inner


def _planted(seed: int, n_units: int = 6, collinear: bool = False):
    """States with offsets and scales, uneven sequences, several targets with planted signal,
    one constant target and one target constant on the rows of one test fold."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 25, size=41)
    groups = np.repeat(np.arange(41) * 5 + 2, lengths)  # non-contiguous labels
    n = len(groups)
    X = rng.normal(size=(n, n_units))
    X = X * rng.uniform(0.05, 4, n_units) + rng.uniform(-30, 30, n_units)
    if collinear:  # one unit a combination of two others, one a copy
        X = np.column_stack([X, X[:, 0] - 2 * X[:, 1], X[:, 2]])
    piece = X[:, 3] + 2 * rng.normal(size=n)
    first_fold = np.sort(next(iter(GroupKFold(5).split(X, groups=groups)))[1])
    piece[first_fold] = 4.0
    Y = np.column_stack(
        [
            2 * X[:, 0] + rng.normal(size=n),
            X[:, 1] - 0.3 * X[:, 2] + 3 * rng.normal(size=n),
            rng.normal(size=n) + 1e3,  # no signal
            np.full(n, 3.0),  # constant
            piece,  # constant on the test rows of fold 0 (of 5)
        ]
    )
    return X, Y, groups


@pytest.mark.parametrize(
    ("seed", "n_splits", "collinear"), [(0, 5, False), (1, 3, False), (2, 5, True), (3, 4, True)]
)
def test_folds_equals_sklearn_nested_loop(seed, n_splits, collinear):
    X, Y, groups = _planted(seed, collinear=collinear)
    table = population_probe(X, Y, groups, n_splits=n_splits, alphas=ALPHAS)
    r2, chosen, inner = _nested_ridge(X, Y, groups, n_splits, ALPHAS)
    # the inner SSE from the fold sums, ~1e-13 from sklearn's; the test data keep the best and
    # second-best alpha > 1e-10 apart, so the choices must agree exactly
    d = prepare(X, Y, groups, n_splits)
    sse = la.inner_fold_sse(data_sums(d, d.Yd, x_gram=True), ALPHAS)
    keep = np.arange(Y.shape[1]) != 3  # the constant target's SSE is 0 (rounding) for all
    np.testing.assert_allclose(sse[..., keep], inner[..., keep], rtol=1e-11)
    r2[:, 3] = np.nan  # a constant target has no R²
    np.testing.assert_allclose(table.r2, r2.mean(axis=0), rtol=0, atol=TOL)
    np.testing.assert_allclose(table.r2_std, r2.std(axis=0), rtol=0, atol=TOL)
    assert table.alpha_folds.tolist() == [";".join(f"{a:.6g}" for a in col) for col in chosen.T]
    np.testing.assert_array_equal(table.alpha, np.median(chosen, axis=0))
    assert table.note[3] == "constant target"
    if n_splits == 5:
        assert table.note[4] == "constant target in 1 test fold(s): r2 = 0 there, as sklearn"
    # the planted signal is found, the choice differs between targets
    assert table.r2[0] > 0.8 and table.r2[1] > 0.05 and table.r2[2] < 0.05
    assert len(set(chosen.ravel())) > 1


def test_folds_is_the_default_and_differs_from_loo():
    X, Y, groups = _planted(0)
    default = population_probe(X, Y, groups)
    pd.testing.assert_frame_equal(default, population_probe(X, Y, groups, select="folds"))
    assert not default.alpha_folds.equals(population_probe(X, Y, groups, select="loo").alpha_folds)


def test_folds_needs_no_pass_over_the_rows(monkeypatch):
    def no_loo(*args, **kwargs):
        raise AssertionError("select='folds' must not compute row-level leave-one-out errors")

    X, Y, groups = _planted(1)
    monkeypatch.setattr(la, "ridge_loo_sq_errors", no_loo)
    population_probe(X, Y, groups, select="folds")
    with pytest.raises(AssertionError, match="row-level"):
        population_probe(X, Y, groups, select="loo")


def test_folds_chooses_a_larger_penalty_than_loo_when_sequences_share_noise():
    """Row-level leave-one-out keeps the rest of a sequence in training: with states and
    noise shared within each sequence it rewards memorizing sequences (a small alpha), which
    held-out sequences punish; the grouped choice penalizes more and generalizes better."""
    rng = np.random.default_rng(0)
    n_seq, steps, n_units = 60, 20, 30
    groups = np.repeat(np.arange(n_seq), steps)
    X = rng.normal(size=(n_seq, n_units))[groups] + 0.3 * rng.normal(size=(n_seq * steps, n_units))
    y = X[:, 0] + 2 * rng.normal(size=n_seq)[groups] + 0.3 * rng.normal(size=n_seq * steps)
    folds = population_probe(X, y, groups, select="folds")
    loo = population_probe(X, y, groups, select="loo")
    by_fold = [np.array(t.alpha_folds[0].split(";"), dtype=float) for t in (folds, loo)]
    assert (by_fold[0] > by_fold[1]).all()
    assert folds.r2[0] > loo.r2[0] + 0.1


def test_select_is_deterministic_and_order_free_in_alphas():
    X, Y, groups = _planted(2, collinear=True)
    for select in ("folds", "loo"):
        a = population_probe(X, Y, groups, select=select)
        pd.testing.assert_frame_equal(a, population_probe(X, Y, groups, select=select))
    # ties go to the first best alpha in the given order: a repeated alpha changes nothing
    twice = population_probe(X, Y, groups, alphas=np.r_[ALPHAS, ALPHAS])
    pd.testing.assert_frame_equal(twice, population_probe(X, Y, groups, alphas=ALPHAS))


def test_select_errors():
    X, Y, groups = _planted(3)
    with pytest.raises(DataError) as err:
        population_probe(X, Y, groups, select="gcv")
    assert str(err.value) == "select == 'gcv', must be one of folds, loo"
    with pytest.raises(DataError) as err:
        population_probe(X, Y, groups, select=None)
    assert str(err.value) == "select == None, must be one of folds, loo"
    with pytest.raises(DataError) as err:
        population_probe(X, Y, groups, n_splits=2)
    assert str(err.value) == (
        "n_splits == 2, must be >= 3 with select='folds' (the penalty is chosen by "
        "cross-validation over the other folds); use n_splits >= 3 or select='loo'"
    )
    assert isinstance(err.value, (UnitprobeError, ValueError))
    two = population_probe(X, Y, groups, n_splits=2, select="loo")  # loo needs no inner folds
    assert len(two.alpha_folds[0].split(";")) == 2


def test_the_population_probe_fits_under_the_blas_thread_limit(monkeypatch):
    import contextlib

    from unitprobe.methods.probes import population_select

    entered = []

    @contextlib.contextmanager
    def counting():
        entered.append(True)
        yield

    monkeypatch.setattr(la, "blas_threads", counting)
    X, Y, groups = _planted(0)
    population_probe(X, Y, groups)
    assert len(entered) == 1
    assert population_select(5) == "folds" and len(entered) == 1  # a choice, no linear algebra
