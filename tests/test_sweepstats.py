"""Tests of unitprobe.pipeline.sweepstats on hand-made tables with exact expected values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from unitprobe.errors import DataError, UnitprobeError
from unitprobe.pipeline import stability
from unitprobe.pipeline import sweepstats as S

# ---------------------------------------------------------------------------------------------
# bootstrap
# ---------------------------------------------------------------------------------------------


def test_bootstrap_matches_manual_percentile_resampling():
    values = np.array([0.3, 0.1, 0.7, 0.2, 0.5])
    est, lo, hi = S.bootstrap_ci(values, n_resamples=500, confidence=0.9, seed=3)
    rng = np.random.default_rng(3)
    means = values[rng.integers(0, 5, size=(500, 5))].mean(axis=1)
    assert est == pytest.approx(0.36)
    assert lo == pytest.approx(np.quantile(means, 0.05))
    assert hi == pytest.approx(np.quantile(means, 0.95))
    assert lo < est < hi


def test_bootstrap_is_seeded_and_handles_edge_cases():
    x = [1.0, 2.0, 4.0]
    assert S.bootstrap_ci(x, seed=1) == S.bootstrap_ci(x, seed=1)
    assert S.bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)
    assert S.bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert S.bootstrap_ci([1.0, np.nan, 3.0], n_resamples=10)[0] == 2.0
    assert all(math.isnan(v) for v in S.bootstrap_ci([np.nan]))
    # the interval lies within the range of the data
    _, lo, hi = S.bootstrap_ci(x)
    assert 1.0 <= lo <= hi <= 4.0


@pytest.mark.parametrize(
    "kwargs", [{"n_resamples": 0}, {"confidence": 1.0}, {"confidence": 0.0}, {"n_resamples": 2.5}]
)
def test_bootstrap_rejects_bad_options(kwargs):
    with pytest.raises(DataError):
        S.bootstrap_ci([1.0, 2.0], **kwargs)


def test_bootstrap_coverage_on_normal_samples():
    """A 90% interval of the mean of 20 normal draws covers 0 in about 90% of experiments."""
    rng = np.random.default_rng(0)
    covered = 0
    for i in range(200):
        _, lo, hi = S.bootstrap_ci(rng.normal(size=20), n_resamples=400, confidence=0.9, seed=i)
        covered += lo <= 0 <= hi
    assert 0.8 <= covered / 200 <= 0.97


# ---------------------------------------------------------------------------------------------
# knee
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("units", "means", "knee"),
    [
        ([1, 2, 3, 4, 6, 8], [0.5, 0.25, 0.0, 0.0, 0.0, 0.0], 3),  # exact knee at 3 (delay-3)
        ([1, 2, 3, 4, 6, 8], [0.5, 0.25, 0.12, 0.0, 0.0, 0.0], 4),  # 0.12 > 0 + 0.05
        ([1, 2, 4, 8], [0.2, 0.2, 0.2, 0.2], 1),  # flat curve: the smallest size suffices
        ([1, 2, 4, 8], [0.8, 0.4, 0.2, 0.1], 8),  # monotone, never within 0.05 before the end
        ([1, 2, 4, 8], [0.8, 0.4, 0.14, 0.1], 4),  # monotone: 0.14 <= 0.1 + 0.05
        ([8, 1, 4, 2], [0.0, 0.5, 0.01, 0.3], 4),  # unsorted input
        ([1, 2, 3], [0.5, np.nan, 0.02], 3),  # NaN points are ignored
    ],
)
def test_knee_on_synthetic_curves(units, means, knee):
    assert S.find_knee(units, means) == knee


def test_knee_on_noisy_curves_lands_at_the_true_knee():
    rng = np.random.default_rng(1)
    units = np.array([1, 2, 3, 4, 6, 8])
    truth = np.array([0.5, 0.25, 0.0, 0.0, 0.0, 0.0])
    for _ in range(50):
        noisy = truth + rng.uniform(0, 0.02, size=truth.size)
        assert S.find_knee(units, noisy) == 3


def test_knee_tolerance_options():
    units, means = [1, 2, 4], [1.0, 0.55, 0.5]
    assert S.find_knee(units, means, tol=0.0) == 4
    assert S.find_knee(units, means, tol=0.05) == 2  # 0.55 <= 0.5 + 0.05 exactly
    assert S.find_knee(units, means, tol=0.1, relative=True) == 2  # 0.55 <= 0.5 * 1.1
    assert S.find_knee(units, means, tol=0.05, relative=True) == 4
    assert S.find_knee(units, [np.nan] * 3) is None
    with pytest.raises(DataError, match="tol"):
        S.find_knee(units, means, tol=-1)
    with pytest.raises(DataError, match="repeated"):
        S.find_knee([1, 1, 2], means)


def _sweep() -> pd.DataFrame:
    rows = []
    curve = {1: [0.6, 0.5], 2: [0.3, 0.2], 3: [0.02, 0.0], 4: [0.0, 0.01]}
    for units, values in curve.items():
        for seed, v in enumerate(values):
            rows.append(
                {
                    "task": "delay-3",
                    "units": units,
                    "seed": seed,
                    "mse_ratio": v,
                    "specialization": 0.5 + 0.1 * seed,
                    "redundancy": 0.0,
                    "status": "ok",
                }
            )
    rows.append({"task": "delay-3", "units": 1, "seed": 2, "mse_ratio": 99.0, "status": "failed"})
    rows.append({"task": "a", "units": 2, "seed": 0, "mse_ratio": 0.1, "status": "ok"})
    return pd.DataFrame(rows)


def test_capacity_table_means_intervals_and_knee():
    cap = S.capacity_table(_sweep())
    assert list(cap.columns) == ["task", "units", "mean", "lo", "hi", "n_seeds", "knee", "metric"]
    d3 = cap[cap["task"] == "delay-3"]
    assert d3["units"].tolist() == [1, 2, 3, 4]
    assert d3["mean"].tolist() == pytest.approx([0.55, 0.25, 0.01, 0.005])  # failed row left out
    assert d3["n_seeds"].tolist() == [2, 2, 2, 2]
    assert (d3["lo"] <= d3["mean"]).all() and (d3["mean"] <= d3["hi"]).all()
    assert d3["lo"].iloc[0] >= 0.5 and d3["hi"].iloc[0] <= 0.6
    assert d3.loc[d3["knee"], "units"].tolist() == [3]
    a = cap[cap["task"] == "a"]
    assert a["knee"].tolist() == [True] and a["lo"].iloc[0] == a["hi"].iloc[0] == 0.1
    knees = S.knee_table(cap)
    assert knees.set_index("task")["knee"].to_dict() == {"delay-3": 3, "a": 2}
    assert knees.set_index("task").loc["delay-3", "units_tested"] == "1,2,3,4"


def test_sweep_summary_joins_indices_with_intervals():
    summary = S.sweep_summary(_sweep())
    row = summary[(summary["task"] == "delay-3") & (summary["units"] == 2)].iloc[0]
    assert row["specialization"] == pytest.approx(0.55)
    assert row["specialization_lo"] >= 0.5 and row["specialization_hi"] <= 0.6
    assert row["redundancy"] == 0.0 and row["redundancy_lo"] == row["redundancy_hi"] == 0.0
    assert {"mean", "lo", "hi", "knee", "redundancy_hi"} <= set(summary.columns)


def test_capacity_table_names_missing_columns():
    with pytest.raises(DataError, match="val_mse"):
        S.capacity_table(_sweep().drop(columns=["status"]), metric="val_mse")


# ---------------------------------------------------------------------------------------------
# specialization and redundancy
# ---------------------------------------------------------------------------------------------


def _probes(profile: dict[int, list[float]], targets: list[str], value: str = "r2"):
    rows = []
    for unit, values in profile.items():
        for target, v in zip(targets, values, strict=True):
            for state in ("h", "c"):
                rows.append(
                    {
                        "layer": 0,
                        "unit": unit,
                        "state": state,
                        "target": target,
                        value: v if state == "h" else 0.0,
                    }
                )
    return pd.DataFrame(rows)


def test_unit_specialization_exact_values():
    # K = 4 targets: one-hot -> 1, flat -> 0, max share 1/2 -> (4*0.5 - 1)/3 = 1/3
    p = [[0.9, 0, 0, 0], [0.3, 0.3, 0.3, 0.3], [0.4, 0.2, 0.2, 0.0], [0, 0, 0, 0]]
    got = S.unit_specialization(p)
    assert got[:3] == pytest.approx([1.0, 0.0, 1 / 3])
    assert math.isnan(got[3])
    # negative r2 counts as 0: [0.6, -0.2] is one-hot
    assert S.unit_specialization([[0.6, -0.2]]).tolist() == [1.0]
    ent = S.unit_specialization([[1.0, 1.0, 0.0, 0.0], [0.5, 0, 0, 0]], method="entropy")
    assert ent == pytest.approx([1 - math.log(2) / math.log(4), 1.0])
    assert S.unit_specialization([[0.7], [0.0]], method="max_share")[0] == 1.0
    with pytest.raises(DataError, match="method"):
        S.unit_specialization(p, method="gini")


def test_specialization_index_from_probe_table():
    targets = ["K[t]", "X[t]", "X[t-1]"]
    probes = _probes({0: [0.8, 0.0, -0.1], 1: [0.2, 0.2, 0.2], 2: [0.0, 0.0, 0.0]}, targets)
    # unit 0 -> 1, unit 1 -> 0, unit 2 holds nothing (left out): mean 0.5
    assert S.specialization_index(probes) == pytest.approx(0.5)
    assert S.specialization_index(probes, state="c") != S.specialization_index(probes)
    prof = S.unit_profiles(probes)
    assert prof.index.tolist() == [0, 1, 2] and prof.columns.tolist() == targets
    assert math.isnan(S.specialization_index(_probes({0: [0.0, 0.0]}, targets[:2])))


def test_redundancy_index_exact_values():
    def roles(*names):
        return pd.DataFrame({"layer": 0, "unit": range(len(names)), "role": list(names)})

    assert S.redundancy_index(roles("K[t]", "X[t]")) == 0.0
    assert S.redundancy_index(roles("K[t]", "K[t]", "X[t]", "none")) == pytest.approx(1 / 3)
    assert S.redundancy_index(roles("K[t]", "K[t]", "K[t]", "K[t]")) == pytest.approx(3 / 4)
    assert S.redundancy_index(roles("none", "none")) == 0.0
    two_layers = pd.DataFrame({"layer": [0, 1], "unit": [0, 0], "role": ["K[t]", "K[t]"]})
    assert S.redundancy_index(two_layers) == 0.0  # distinct roles are counted per layer
    r = roles("K[t]", "K[t]", "none")
    probes = _probes({0: [0.9, 0.0], 1: [0.9, 0.1], 2: [0.0, 0.0]}, ["K[t]", "X[t]"])
    got = S.run_indices(probes, r)
    assert got["n_roles"] == 2 and got["redundancy"] == 0.5
    assert got["specialization"] == pytest.approx((1.0 + (2 * 0.9 - 1.0)) / 2)


# ---------------------------------------------------------------------------------------------
# cross-seed matching
# ---------------------------------------------------------------------------------------------


def test_match_units_recovers_a_planted_permutation_exactly():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 1, size=(8, 6))
    perm = rng.permutation(8)
    other = reference[perm] + rng.normal(0, 0.01, size=(8, 6))  # other[j] = reference[perm[j]]
    match = stability.match_units(reference, other)
    assert (perm[match] == np.arange(8)).all()
    # fewer units on the other side: the worst-fitting reference unit is left out
    assert stability.match_units(reference, other[:7]).tolist().count(-1) == 1
    with pytest.raises(DataError, match="same targets"):
        stability.match_units(reference, other[:, :5])


def _seed_tables(perms: dict[int, list[int]], role_names: list[str], flip: dict | None = None):
    """Probe and role tables of several seeds whose units are permutations of one network."""
    targets = ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]
    base = np.array(
        [[0.9, 0.1, 0.0, 0.0], [0.0, 0.8, 0.1, 0.0], [0.0, 0.0, 0.95, 0.1], [0.1, 0.0, 0.0, 0.7]]
    )
    probes, roles = [], []
    for seed, perm in perms.items():
        for unit, source in enumerate(perm):
            role = role_names[source]
            if flip and (seed, unit) in flip:
                role = flip[(seed, unit)]
            roles.append({"task": "t", "units": 4, "seed": seed, "layer": 0, "unit": unit})
            roles[-1]["role"] = role
            for target, v in zip(targets, base[source], strict=True):
                probes.append(
                    {
                        "task": "t",
                        "units": 4,
                        "seed": seed,
                        "layer": 0,
                        "unit": unit,
                        "state": "h",
                        "target": target,
                        "r2": v,
                    }
                )
    return pd.DataFrame(probes), pd.DataFrame(roles)


def test_role_stability_on_permuted_seeds():
    names = ["K[t]", "K[t-1]", "X[t]", "none"]
    perms = {0: [0, 1, 2, 3], 1: [2, 0, 3, 1], 2: [3, 2, 1, 0]}
    probes, roles = _seed_tables(perms, names)
    table = stability.role_stability(probes, roles)
    assert table["role"].tolist() == ["K[t-1]", "K[t]", "X[t]"]
    assert (table["frequency"] == 1.0).all() and (table["stability"] == 1.0).all()
    assert (table["n_pairs"] == 6).all() and (table["n_seeds"] == 3).all()
    assert table[["task", "units"]].drop_duplicates().values.tolist() == [["t", 4]]
    with_none = stability.role_stability(probes, roles, include_none=True)
    assert "none" in with_none["role"].tolist()

    # seed 2 gives its X[t] unit (unit 1, source 2) the role "none" instead
    probes, roles = _seed_tables(perms, names, flip={(2, 1): "none"})
    table = stability.role_stability(probes, roles).set_index("role")
    assert table.loc["X[t]", "frequency"] == pytest.approx(2 / 3)
    # X[t] units in seeds 0, 1 (2 refs x 2 others = 4 pairs): the pairs to seed 2 fail
    assert table.loc["X[t]", "stability"] == pytest.approx(2 / 4)
    assert table.loc["K[t]", "stability"] == 1.0
    ref = stability.role_stability(probes, roles, reference=2).set_index("role")
    assert math.isnan(ref.loc["X[t]", "stability"]) and ref.loc["X[t]", "n_pairs"] == 0
    assert ref.loc["K[t]", "n_pairs"] == 2
    with pytest.raises(DataError, match="reference seed 7"):
        stability.role_stability(probes, roles, reference=7)
    with pytest.raises(DataError, match="seed"):
        stability.role_stability(probes.drop(columns="seed"), roles)


def _fields(perms: dict[int, list[int]]) -> pd.DataFrame:
    """Receptive fields: source unit j looks at input K at lag j (sign alternating)."""
    rows = []
    for seed, perm in perms.items():
        for unit, source in enumerate(perm):
            for lag in range(4):
                v = (1.0 if lag == source else 0.05) * (-1) ** source
                rows.append(
                    {
                        "task": "t",
                        "units": 4,
                        "seed": seed,
                        "method": "gradient",
                        "state": "h",
                        "feature": "K",
                        "lag": lag,
                        "layer": 0,
                        "unit": unit,
                        "attribution": abs(v),
                        "attribution_signed": v,
                    }
                )
    return pd.DataFrame(rows)


def test_unit_fields_are_sign_free_and_scaled():
    fields = S.unit_fields(_fields({0: [0, 1, 2, 3]}).query("seed == 0"))
    assert fields.columns.tolist() == ["K[t-0]", "K[t-1]", "K[t-2]", "K[t-3]"]
    expected = np.full((4, 4), 0.05) + np.eye(4) * 0.95
    assert fields.to_numpy() == pytest.approx(expected)


def test_role_stability_matches_by_receptive_fields_when_probes_are_flat():
    names = ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]
    perms = {0: [0, 1, 2, 3], 1: [1, 3, 0, 2]}
    probes, roles = _seed_tables(perms, names)
    probes["r2"] = 0.9  # collinear targets: every probe profile is the same
    fields = _fields(perms)
    for profile in ("receptive_field", "both"):
        table = stability.role_stability(probes, roles, receptive_fields=fields, profile=profile)
        assert (table["stability"] == 1.0).all(), profile
    with pytest.raises(DataError, match="receptive_fields"):
        stability.role_stability(probes, roles, profile="both")
    with pytest.raises(DataError, match="profile"):
        stability.role_stability(probes, roles, profile="gates")


def test_skill_knee_ignores_polishing_past_the_state_size():
    units = [1, 2, 3, 4, 6]
    # delay-2 like: 2 units solve it, more units keep dividing the error by ~3
    means = [0.67, 0.01, 0.003, 0.001, 0.0003]
    assert S.find_knee(units, means, rule="skill") == 2  # 0.01 - 0.0003 <= 0.05 * 0.9997
    assert S.find_knee(units, means, rule="skill", tol=0.005) == 3
    assert S.find_knee(units, means, rule="relative", tol=1.0) == 6  # within 2x: never before
    assert S.find_knee(units, means, rule="absolute", tol=0.05) == 2
    with pytest.raises(UnitprobeError, match="rule"):
        S.find_knee(units, means, rule="nonsense")


def _seed_curves() -> pd.DataFrame:
    rows = []
    per_seed = {0: [0.7, 0.02, 0.01], 1: [0.6, 0.03, 0.01], 2: [0.65, 0.5, 0.02]}
    for seed, values in per_seed.items():
        for units, v in zip([1, 2, 3], values, strict=True):
            rows.append({"task": "t", "units": units, "seed": seed, "step_nmse": v, "status": "ok"})
    return pd.DataFrame(rows)


def test_knee_intervals_resample_whole_seeds():
    out = S.knee_intervals(_seed_curves(), n_resamples=400, seed=0).iloc[0]
    # mean curve [0.65, 0.183, 0.0133]: 0.183 - 0.0133 > 0.05 * 0.987, so the knee is 3
    assert out["knee"] == 3
    assert out["seed_agreement"] == pytest.approx(1 / 3)  # seeds 0 and 1 alone knee at 2
    assert out["knee_lo"] == 2 and out["knee_hi"] == 3  # resamples without seed 2 knee at 2
    assert out["n_seeds"] == 3
    table = S.knee_sensitivity(
        _seed_curves(), settings=[("skill", 0.05), ("skill", 0.2), ("skill", 0.9)]
    )
    assert table["knee"].tolist() == [3, 2, 1]
