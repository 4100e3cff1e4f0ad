"""Controls of the probes: permutation p-values, multiple testing, selectivity.

- :func:`permutation_pvalues` -- whole-sequence target permutations of every unit x target
  probe, corrected over all tests (Benjamini–Hochberg by default);
- :func:`adjust_pvalues` -- Benjamini–Hochberg, Holm or no correction;
- :func:`selectivity` -- R² above that of a control (an untrained network).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from unitprobe import _linalg as la
from unitprobe.config import CORRECTIONS, ProbeConfig
from unitprobe.errors import DataError
from unitprobe.methods.probes._common import (
    check_alpha,
    constant_units,
    data_sums,
    fold_unit_r2,
    long_table,
    prepare,
    unit_target_notes,
)
from unitprobe.validation import check_choice, check_int

__all__ = ["adjust_pvalues", "permutation_pvalues", "selectivity"]


def adjust_pvalues(p_values: ArrayLike, method: str = ProbeConfig.correction) -> np.ndarray:
    """Adjust p-values for multiple testing; NaNs are kept and not counted.

    Parameters
    ----------
    p_values : array-like of any shape
    method : {"bh", "holm", "none"}, default="bh"
        Benjamini–Hochberg (false discovery rate), Holm's step-down (family-wise error), or
        none.

    Returns
    -------
    ndarray of the shape of ``p_values``
    """
    p = np.asarray(p_values, dtype=np.float64)
    check_choice(method, "correction", CORRECTIONS, error=DataError)
    adjust = {"holm": la.adjust_holm, "bh": la.adjust_bh, "none": lambda q: q.copy()}
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise DataError("p_values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    out[ok] = adjust[method](p[ok])
    return out


def _sequence_blocks(groups: np.ndarray) -> tuple[list[np.ndarray], int]:
    """Row blocks (m, L) of the sequences of each length L shared by >= 2 sequences.

    Rows of a sequence keep their order of appearance. Also returns how many sequences
    have a length no other sequence has (those are never permuted).
    """
    _, codes = np.unique(groups, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    lengths = np.bincount(codes)
    seqs = np.split(order, np.cumsum(lengths)[:-1])
    blocks, alone = [], 0
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        if len(members) < 2:
            alone += 1
            continue
        blocks.append(np.stack([seqs[i] for i in members]))  # (m, L)
    return blocks, alone


@la.with_blas_threads
def permutation_pvalues(
    states: ArrayLike,
    targets: ArrayLike | pd.DataFrame,
    groups: ArrayLike,
    *,
    n_permutations: int = ProbeConfig.n_permutations,
    seed: int = 0,
    n_splits: int = ProbeConfig.n_splits,
    alpha: float = ProbeConfig.alpha,
    correction: str = ProbeConfig.correction,
) -> pd.DataFrame:
    """Shuffled-target permutation p-values of every unit x target probe.

    The statistic is the held-out R² of :func:`unit_probes` minus that of the intercept-only
    model (the training mean) on the same folds, ``r2_gain`` = mean over folds of
    ``(SSE_mean - SSE_unit) / SST``: what the unit adds. (Raw held-out R² also carries a term
    set by how far each test fold's target mean lies from the training mean; that term is
    the same for every unit and, under the null, larger than the unit's own part, so it
    would tie the p-values of all units of a target together.) Each permutation moves the
    target rows of whole sequences: sequence ``g`` gets the targets of sequence ``pi(g)``,
    step by step, so the within-sequence (autocorrelated) structure of targets and states
    is kept and only their pairing is broken. Sequences are permuted among sequences of the
    same length; a sequence whose length no other sequence has keeps its targets (a
    warning says how many). Folds stay those of the original ``groups``. Each permutation
    only changes the per-fold cross-products, computed for many permutations in one pass.

    ``p_value_raw = (1 + #{perm r2_gain >= observed}) / (1 + n_permutations)`` (ties within
    1e-12 count), then corrected over all units x targets (``correction``).

    Parameters
    ----------
    states : array-like of shape (n_samples, n_units)
    targets : array-like of shape (n_samples, n_targets) or DataFrame
    groups : array-like of shape (n_samples,)
    n_permutations : int, default=99
        Number of permutations, >= 1.
    seed : int, default=0
        Seeds the permutations.
    n_splits : int, default=5
    alpha : float, default=1e-3
    correction : {"bh", "holm", "none"}, default="bh"
        Correction over all units x targets: Benjamini–Hochberg (false discovery rate; with
        few permutations Holm's family-wise bound cannot reach 0.05 for tens of tests, its
        smallest value being n_tests / (n_permutations + 1)), Holm, or none.

    Returns
    -------
    DataFrame
        One row per unit x target: ``unit``, ``target``, ``r2`` (observed held-out R², as
        :func:`unit_probes`), ``r2_gain`` (the statistic), ``p_value`` (corrected),
        ``p_value_raw``, ``n_permutations``, ``note``. NaN where ``r2`` is NaN.
    """
    d = prepare(states, targets, groups, n_splits)
    alpha = check_alpha(alpha)
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1, error=DataError)
    seed = check_int(seed, "seed", minimum=0, error=DataError)
    check_choice(correction, "correction", CORRECTIONS, error=DataError)
    blocks, alone = _sequence_blocks(d.groups)
    if not blocks:
        raise DataError("no two sequences have the same length, so none can be permuted")
    if alone:
        warnings.warn(
            f"{alone} sequence(s) have a length no other sequence has and keep their targets "
            "in every permutation",
            stacklevel=2,
        )

    Yd = d.Yd
    const_test = d.const_test()
    sums = data_sums(d, Yd)
    const_unit = constant_units(d, sums)
    r2 = fold_unit_r2(sums, alpha, const_test).mean(axis=0)  # (U, K)
    obs = fold_unit_r2(sums, alpha, const_test, gain=True).mean(axis=0)
    for a in (r2, obs):
        a[const_unit, :] = np.nan
        a[:, d.const_target] = np.nan

    n, n_targets = Yd.shape
    rng = np.random.default_rng(seed)
    batch = int(max(1, min(n_permutations, 2**26 // (8 * n * n_targets))))
    exceed = np.zeros(obs.shape)
    for start in range(0, n_permutations, batch):
        size = min(batch, n_permutations - start)
        srcs = []
        for _ in range(size):
            src = np.arange(n)
            for blk in blocks:
                src[blk] = blk[rng.permutation(len(blk))]
            srcs.append(src)
        Yp = np.stack([Yd[s] for s in srcs], axis=1).reshape(n, size * n_targets)
        ct = np.stack([np.ptp(Yp[r], axis=0) == 0 for r in d.rows])
        r2p = fold_unit_r2(data_sums(d, Yp), alpha, ct, gain=True).mean(axis=0)
        r2p = r2p.reshape(-1, size, n_targets)
        exceed += (r2p >= obs[:, None, :] - 1e-12).sum(axis=1)
    p_raw = (1.0 + exceed) / (1.0 + n_permutations)
    p_raw[np.isnan(obs)] = np.nan
    return long_table(
        d.X.shape[1],
        d.names,
        r2=r2,
        r2_gain=obs,
        p_value=adjust_pvalues(p_raw, correction),
        p_value_raw=p_raw,
        n_permutations=int(n_permutations),
        note=unit_target_notes(const_unit, d.const_target, const_test.sum(axis=0)),
    )


def selectivity(r2: ArrayLike, r2_control: ArrayLike) -> np.ndarray | pd.Series:
    """Selectivity ``r2 - r2_control`` of probes against a control (e.g. untrained network).

    Parameters
    ----------
    r2, r2_control : array-like of the same shape
        Held-out R² of the same probes (same units, targets and folds) on the trained and
        the control network, e.g. the ``r2`` columns of two :func:`unit_probes` tables.

    Returns
    -------
    ndarray, or Series with ``r2``'s index when ``r2`` is a Series
    """
    a, b = np.asarray(r2, dtype=np.float64), np.asarray(r2_control, dtype=np.float64)
    if a.shape != b.shape:
        raise DataError(f"r2 has shape {a.shape} but r2_control has shape {b.shape}")
    out = a - b
    return pd.Series(out, index=r2.index, name="selectivity") if isinstance(r2, pd.Series) else out
