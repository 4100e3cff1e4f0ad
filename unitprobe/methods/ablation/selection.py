"""Choosing units to ablate: the best probe units of a target, everything but one unit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.methods.ablation.values import check_units
from unitprobe.validation import check_columns, check_int

__all__ = ["top_k_units", "all_but"]


def top_k_units(
    probes: pd.DataFrame, target: str, k: int, layer: int = 0, *, state: str = "h"
) -> list[int]:
    """The ``k`` units of ``layer`` whose single-unit probe R² for ``target`` is highest.

    Parameters
    ----------
    probes : DataFrame
        A ``probes`` table, or any table with columns ``layer``, ``unit``, ``target``, ``r2``
        (if it has a ``state`` column, only rows of ``state`` are used).
    target : str
    k : int
        >= 1; fewer are returned if the layer has fewer units.
    layer : int, default 0
    state : str, default "h"

    Returns
    -------
    list of int
        Unit ids, best first (ties: lower id first; NaN R² last).

    Example
    -------
    >>> ablation_table(model, dataset, units=None, groups=[top_k_units(probes, "X[t-1]", 2)])
    """
    check_columns(probes, ("layer", "unit", "target", "r2"), "probes")
    check_int(k, "k", minimum=1)
    rows = probes[probes["layer"] == layer]
    if "state" in rows.columns:
        rows = rows[rows["state"] == state]
    if target not in set(rows["target"]):
        known = sorted(map(str, rows["target"].unique()))
        raise DataError(f"target {target!r} not in the probes table of layer {layer}: {known}")
    rows = rows[rows["target"] == target]
    r2 = rows.assign(unit=rows["unit"].astype(int)).groupby("unit")["r2"].max()
    ranked = sorted(r2.index, key=lambda u: (np.nan_to_num(-r2[u], nan=np.inf), u))
    return [int(u) for u in ranked[:k]]


def all_but(unit: int, n_units: int) -> list[int]:
    """Every unit id in ``range(n_units)`` except ``unit`` (a group for "only this unit left").

    Example
    -------
    >>> all_but(2, 5)
    [0, 1, 3, 4]
    """
    check_int(n_units, "n_units", minimum=1)
    check_units([unit], n_units)
    return [u for u in range(n_units) if u != unit]
