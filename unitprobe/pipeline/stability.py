"""Cross-seed role matching: are the roles of one network the roles of another seed's?

Units of two networks trained with different seeds are matched one-to-one by their probe
profiles (:func:`~unitprobe.pipeline.sweepstats.unit_profiles`, NaN read as 0), minimizing the
summed squared Euclidean distance with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`). Where the targets are collinear every probe
profile is flat, so a unit's receptive field (:func:`~unitprobe.pipeline.sweepstats.unit_fields`:
its absolute attribution to each input at each lag, scaled to a maximum of 1) can be used
instead (``profile="receptive_field"``) or appended to the probe profile (``profile="both"``).
For each role ``r``: ``frequency`` = the fraction of seeds in which at least one unit has role
``r``; ``stability`` = over every reference seed ``a`` (or only the one given), every other
seed ``b`` and every unit of ``a`` with role ``r``, the fraction whose matched unit in ``b``
has role ``r`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from unitprobe.errors import DataError
from unitprobe.pipeline.sweepstats import unit_fields, unit_profiles
from unitprobe.schemas import NO_ROLE as NONE

__all__ = ["match_units", "role_stability"]


def match_units(reference: ArrayLike, other: ArrayLike) -> np.ndarray:
    """Match each reference unit to a distinct unit of another network by profile.

    Minimizes the summed squared Euclidean distance between matched profiles (Hungarian
    algorithm, :func:`scipy.optimize.linear_sum_assignment`). NaN counts as 0.

    Parameters
    ----------
    reference : array-like of shape (n_units_a, n_targets)
    other : array-like of shape (n_units_b, n_targets)

    Returns
    -------
    ndarray of int64, shape (n_units_a,)
        ``match[i]`` = the unit of ``other`` matched to reference unit ``i``, or -1 when
        ``other`` has fewer units and ``i`` is left unmatched.

    Examples
    --------
    >>> match_units([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.9], [0.8, 0.1]]).tolist()
    [1, 0]
    """
    a = np.nan_to_num(np.asarray(reference, dtype=float))
    b = np.nan_to_num(np.asarray(other, dtype=float))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(
            f"profiles have shapes {a.shape} and {b.shape}; expected (n_units, n_targets) "
            "with the same targets"
        )
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)  # (n_a, n_b)
    rows, cols = linear_sum_assignment(cost)
    match = np.full(a.shape[0], -1, dtype=np.int64)
    match[rows] = cols
    return match


def _role_vector(roles: pd.DataFrame, units: pd.Index, layer: int) -> np.ndarray:
    df = roles
    if "layer" in df.columns:
        df = df[pd.to_numeric(df["layer"]) == layer]
    by_unit = dict(zip(pd.to_numeric(df["unit"]).astype(int), df["role"].astype(str), strict=True))
    return np.array([by_unit.get(int(u), NONE) for u in units], dtype=object)


def role_stability(
    probes: pd.DataFrame,
    roles: pd.DataFrame,
    *,
    receptive_fields: pd.DataFrame | None = None,
    profile: str = "probe",
    reference: int | None = None,
    value: str = "r2",
    state: str = "h",
    layer: int = 0,
    by: Sequence[str] = ("task", "units"),
    include_none: bool = False,
) -> pd.DataFrame:
    """How often each role appears across seeds, and how stably matched units keep it.

    Parameters
    ----------
    probes : DataFrame
        ``probes.csv`` rows of several runs with a ``seed`` column (and the ``by`` columns).
    roles : DataFrame
        ``roles.csv`` rows of the same runs with a ``seed`` column (and the ``by`` columns).
    receptive_fields : DataFrame, optional
        ``receptive_fields`` rows of the same runs with a ``seed`` column; needed for
        ``profile`` ``"receptive_field"`` or ``"both"``.
    profile : {"probe", "receptive_field", "both"}, default "probe"
        What units are matched by: probe profiles (:func:`unit_profiles`, negative values
        clipped to 0), receptive fields (:func:`unit_fields`), or both side by side.
    reference : int or None, default None
        The reference seed; None uses every seed in turn (all ordered pairs of seeds).
    value, state : see :func:`unit_profiles`
    layer : int, default 0
    by : sequence of str, default ("task", "units")
        Columns that separate groups of runs to compare (those absent are ignored).
    include_none : bool, default False
        Also report the role ``none``.

    Returns
    -------
    DataFrame
        ``by`` columns, ``role``, ``frequency`` (fraction of seeds with >= 1 unit holding the
        role), ``stability`` (fraction of (reference unit with the role, other seed) pairs
        whose matched unit holds it too; NaN with one seed or when no reference seed has the
        role), ``n_seeds``, ``n_pairs`` (pairs behind ``stability``), ``mean_units`` (mean
        number of units holding the role per seed).
    """
    if profile not in ("probe", "receptive_field", "both"):
        raise DataError(f"profile == {profile!r}, must be 'probe', 'receptive_field' or 'both'")
    tables = {"probes": probes, "roles": roles}
    if profile != "probe":
        if receptive_fields is None:
            raise DataError(f"profile == {profile!r} needs the receptive_fields table")
        tables["receptive_fields"] = receptive_fields
    for name, df in tables.items():
        if "seed" not in df.columns:
            raise DataError(f"{name} table needs a 'seed' column to compare runs")
    if "role" not in roles.columns or "unit" not in roles.columns:
        raise DataError("roles table needs columns 'unit' and 'role'")
    keys = [c for c in by if all(c in df.columns for df in tables.values())]
    groups = probes.groupby(keys, sort=False) if keys else [((), probes)]
    rows = []
    for key, group_probes in groups:
        key = key if isinstance(key, tuple) else (key,)
        parts = {"probes": group_probes}
        for name in tables:
            if name == "probes":
                continue
            df = tables[name]
            mask = np.ones(len(df), dtype=bool)
            for c, v in zip(keys, key, strict=True):
                mask &= (df[c] == v).to_numpy()
            parts[name] = df[mask]
        seeds = sorted(pd.unique(group_probes["seed"]))
        profiles = {
            s: _seed_profile(parts, s, profile, value, state, layer, group_probes) for s in seeds
        }
        role_of = {
            s: _role_vector(parts["roles"][parts["roles"]["seed"] == s], profiles[s].index, layer)
            for s in seeds
        }
        for row in _stability_rows(profiles, role_of, reference, include_none):
            rows.append({**dict(zip(keys, key, strict=True)), **row})
    columns = [*keys, "role", "frequency", "stability", "n_seeds", "n_pairs", "mean_units"]
    return pd.DataFrame(rows, columns=columns)


def _seed_profile(parts, seed, profile, value, state, layer, all_probes) -> pd.DataFrame:
    targets = list(dict.fromkeys(all_probes["target"]))
    probes = parts["probes"]
    prof = unit_profiles(
        probes[probes["seed"] == seed], value=value, state=state, layer=layer, targets=targets
    ).clip(lower=0.0)
    if profile == "probe":
        return prof
    fields = parts["receptive_fields"]
    fields = unit_fields(fields[fields["seed"] == seed], layer=layer)
    if profile == "receptive_field":
        return fields.reindex(prof.index if len(prof) else fields.index).fillna(0.0)
    fields = fields.reindex(prof.index).add_prefix("field ")
    return pd.concat([prof.add_prefix("probe "), fields], axis=1).fillna(0.0)


def _stability_rows(profiles, role_of, reference, include_none) -> list[dict]:
    seeds = sorted(profiles)
    if reference is not None and reference not in seeds:
        raise DataError(f"reference seed {reference} not among the seeds {seeds}")
    # cells present in some seed only (e.g. longer receptive fields) count as 0 elsewhere
    columns = list(dict.fromkeys(c for s in seeds for c in profiles[s].columns))
    vectors = {s: profiles[s].reindex(columns=columns).fillna(0.0).to_numpy() for s in seeds}
    all_roles = sorted({r for s in seeds for r in role_of[s]}, key=str)
    if not include_none:
        all_roles = [r for r in all_roles if r != NONE]
    refs = seeds if reference is None else [reference]
    hits: dict[str, list[int]] = {r: [0, 0] for r in all_roles}
    for a in refs:
        for b in seeds:
            if b == a:
                continue
            match = match_units(vectors[a], vectors[b])
            for i, r in enumerate(role_of[a]):
                if r not in hits:
                    continue
                hits[r][1] += 1
                hits[r][0] += int(match[i] >= 0 and role_of[b][match[i]] == r)
    out = []
    for r in all_roles:
        counts = [int((role_of[s] == r).sum()) for s in seeds]
        same, pairs = hits[r]
        out.append(
            {
                "role": r,
                "frequency": float(np.mean([c > 0 for c in counts])),
                "stability": same / pairs if pairs else np.nan,
                "n_seeds": len(seeds),
                "n_pairs": pairs,
                "mean_units": float(np.mean(counts)),
            }
        )
    return out
