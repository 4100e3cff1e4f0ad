"""Decodability after ablation: what ablated units contributed to what the others hold.

This combines two methods (ablation and population probes), so it lives in the pipeline.

Example
-------
>>> decodability_drop(model, dataset, lagged, ["K[t-1]"], units=[0, 2], step=10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from unitprobe.config import ProbeConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation.values import (
    ablate,
    check_layer,
    check_mode,
    check_start,
    check_units,
    units_label,
)
from unitprobe.methods.probes import population_probe, population_select
from unitprobe.model.lstm import Trace, UnitLSTM, as_tensor, run
from unitprobe.schemas import STATES
from unitprobe.validation import check_choice

__all__ = ["DECODABILITY_COLUMNS", "decodability_drop"]

DECODABILITY_COLUMNS = ("layer", "units", "mode", "target", "r2_base", "r2_ablated", "r2_drop")


def _population_r2(
    states: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    groups: np.ndarray,
    n_splits: int,
    probe: Callable[..., pd.DataFrame] | None,
) -> dict[str, float]:
    """Held-out R² per target of a probe on all columns of ``states`` (rows with finite targets)."""
    if probe is None:
        probe = partial(population_probe, n_splits=n_splits, select=population_select(n_splits))
    keep = np.isfinite(values).all(axis=1)
    table = probe(states[keep], pd.DataFrame(values[keep], columns=list(names)), groups[keep])
    return dict(zip(table["target"].astype(str), table["r2"].astype(float), strict=True))


def decodability_drop(
    model: UnitLSTM,
    data: Any,
    probe_targets: np.ndarray,
    target_names: Sequence[str],
    units: Sequence[int | Sequence[int]],
    *,
    modes: Sequence[str] = ("zero",),
    layer: int = 0,
    site: str = "h",
    step: int | None = None,
    probe_layer: int | None = None,
    state: str = "h",
    n_splits: int = ProbeConfig.n_splits,
    seed: int = 0,
    probe: Callable[..., pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """How much ablating units from step ``step`` on lowers the population probe R² later on.

    For each ablation, a linear probe on the *remaining* units' states reads each target at the
    steps >= ``step``, once from the clean run and once from the ablated run; the drop says what
    the ablated units contributed to what the rest of the network holds (e.g. ablating the unit
    holding ``K[t]`` destroys ``K[t-1]`` in the unit that copies it one step later).

    Parameters
    ----------
    model : UnitLSTM
    data : object with ``inputs``, or array-like of shape (n_sequences, n_steps, n_inputs)
    probe_targets : ndarray of shape (n_sequences, n_steps, n_targets)
        Target values aligned with the steps (NaN where undefined; those rows are skipped).
    target_names : sequence of str, length n_targets
    units : sequence of int or of sequences of int
        The ablations: an int is one unit, a list a group ablated together.
    modes : sequence of {"zero", "mean", "resample"}, default ("zero",)
    layer : int, default 0
        Layer of the ablated units.
    site : {"h", "c", "both"}, default "h"
    step : int, optional
        First ablated step, also the first probed step; default ``n_steps // 2``.
    probe_layer : int, optional
        Layer whose states are probed; default ``layer`` (then the ablated units are left out
        of the probe, in the clean run too).
    state : {"h", "c"}, default "h"
        Probed state.
    n_splits : int, default 5
        GroupKFold splits over sequences.
    seed : int, default 0
        Resample derangement seed.
    probe : callable ``(states, targets_df, groups) -> DataFrame``, optional
        Population probe returning one row per target with columns ``target`` and ``r2``;
        default :func:`unitprobe.methods.probes.population_probe` with ``n_splits`` (and
        ``select`` from :func:`~unitprobe.methods.probes.population_select`).

    Returns
    -------
    DataFrame
        One row per ablation x mode x target: ``layer``, ``units`` ("3" or "1+4"), ``mode``,
        ``target``, ``r2_base`` (clean), ``r2_ablated``, ``r2_drop`` (= r2_base - r2_ablated).

    Example
    -------
    >>> decodability_drop(model, dataset, lagged, ["K[t-1]"], units=[0, 2], step=10)
    """
    x = as_tensor(getattr(data, "inputs", data), model)
    n_seq, n_steps = x.shape[:2]
    y = np.asarray(probe_targets, dtype=np.float64)
    if y.ndim != 3 or y.shape[:2] != (n_seq, n_steps):
        raise DataError(
            f"probe_targets of shape {y.shape} do not match inputs of shape {tuple(x.shape)}: "
            f"need (n_sequences, n_steps, n_targets) = ({n_seq}, {n_steps}, n_targets)"
        )
    names = [str(n) for n in target_names]
    if len(names) != y.shape[2]:
        raise DataError(f"{len(names)} target_names {names} for {y.shape[2]} probe targets")
    modes = [check_mode(m) for m in modes]
    layer = check_layer(layer, model.config.n_layers)
    probe_layer = layer if probe_layer is None else check_layer(probe_layer, model.config.n_layers)
    check_choice(state, "state", STATES)
    step = check_start(n_steps // 2 if step is None else step, n_steps)
    if isinstance(units, int | np.integer) or len(units) == 0:
        raise UnitprobeError(f"units == {units!r}, must be a non-empty list of units or groups")
    ablations = [check_units(u, model.config.n_units) for u in units]
    if any(not a for a in ablations):
        raise UnitprobeError("an ablation in units is empty; each needs >= 1 unit")

    groups = np.repeat(np.arange(n_seq), n_steps - step)
    flat_targets = y[:, step:].reshape(-1, len(names))

    def states_of(trace: Trace, keep: list[int]) -> np.ndarray:
        return trace.numpy(state, probe_layer)[:, step:, keep].reshape(-1, len(keep))

    with torch.no_grad():
        clean = run(model, x, record=tuple(dict.fromkeys(("h", "c", state))))
    rows = []
    for ablated in ablations:
        keep = [
            u for u in range(model.config.n_units) if probe_layer != layer or u not in set(ablated)
        ]
        if not keep:
            raise UnitprobeError(f"ablating units {list(ablated)} leaves no unit to probe")
        r2_base = _population_r2(
            states_of(clean, keep), flat_targets, names, groups, n_splits, probe
        )
        for mode in modes:
            with torch.no_grad():
                trace = ablate(
                    model,
                    x,
                    ablated,
                    mode=mode,
                    site=site,
                    layer=layer,
                    start=step,
                    seed=seed,
                    reference=clean,
                    record=(state,),
                )
            r2_abl = _population_r2(
                states_of(trace, keep), flat_targets, names, groups, n_splits, probe
            )
            for name in names:
                base, abl = r2_base[name], r2_abl[name]
                rows.append((layer, units_label(ablated), mode, name, base, abl, base - abl))
    return pd.DataFrame.from_records(rows, columns=list(DECODABILITY_COLUMNS))
