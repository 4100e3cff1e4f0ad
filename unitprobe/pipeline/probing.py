"""Probe every unit of a trained network against untrained controls: the probe tables.

:func:`probe_model` runs the network on a dataset, builds untrained networks of the same
configuration as controls, and calls the probe methods of :mod:`unitprobe.methods.probes` on
every layer and state. It joins three layers (model, targets, probes), so it lives in the
pipeline. It returns two tables (``docs/architecture.md``): ``probes``, one row per layer x
unit x state x target, and ``population_probes``, one row per layer x state x target for the
probe from all units of the layer.

Example
-------
>>> probes, population = probe_model(model, dataset, ["K[t]", "K[t-1]"])
>>> population.set_index("target")["selectivity"]
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from unitprobe import schemas
from unitprobe._utils import stderr_is_tty
from unitprobe.config import ProbeConfig
from unitprobe.errors import UnitprobeError
from unitprobe.methods.probes import (
    partial_r2,
    permutation_pvalues,
    population_probe,
    population_select,
    selectivity,
    unit_probes,
)
from unitprobe.methods.targets import Targets, default_targets, make_targets
from unitprobe.model.lstm import Trace, UnitLSTM, run
from unitprobe.pipeline.nulls import untrained_network
from unitprobe.validation import check_int

__all__ = ["probe_model", "NULL_QUANTILE"]

#: ``r2_control`` of a unit's probe: this quantile of the R² of every control network's units.
NULL_QUANTILE = 0.99


def probe_model(
    model: UnitLSTM,
    dataset,
    targets: Sequence[str] | Targets | None = None,
    *,
    config: ProbeConfig | None = None,
    control_seed: int = 0,
    permutation_seed: int = 0,
    trace: Trace | None = None,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a model on a dataset and probe every unit of every layer, and each layer as a whole.

    Runs on the device of ``model``'s parameters (the control networks too); the probes fit
    on the CPU, on the states brought back from it.

    Parameters
    ----------
    model : UnitLSTM
    dataset : Dataset
        Its ``inputs`` (n_sequences, n_steps, n_inputs) are run through the model; targets
        are evaluated on its raw series.
    targets : list of str or Targets, optional
        Target expressions (``"K[t-1]"``, ``"K[t-1] + 2*X[t]"``) or a ready
        :class:`~unitprobe.methods.targets.Targets`; default ``config.targets``, else
        :func:`~unitprobe.methods.targets.default_targets` of the dataset's task (without a
        task: every raw series at lags 0 and 1).
    config : ProbeConfig, optional
        States, folds, ridge penalty, number of controls and permutations, and the
        correction of the p-values (Benjamini–Hochberg by default, over all units x targets
        of one layer and state). Default ``ProbeConfig()``.
    control_seed : int, default 0
        Control network ``k`` is initialized with torch seed ``control_seed + k``. Pass a seed
        other than the trained network's initialization seed
        (:func:`unitprobe.seeds.stream_seed` with stream ``"controls"``).
    permutation_seed : int, default 0
        Seeds the whole-sequence target permutations (stream ``"permutations"``).
    trace : Trace, optional
        A run of ``model`` on ``dataset.inputs`` that recorded the probed states (saves a run).
    progress : bool, optional
        Show a progress bar; default: when stderr is a terminal.

    Returns
    -------
    probes : DataFrame
        The ``probes`` table: one row per layer x unit x state x target (``unit`` an int):
        held-out ``r2`` and ``r2_std`` of the one-unit ridge probe
        (:func:`~unitprobe.methods.probes.unit_probes`), ``r2_control`` (the 99th
        percentile of the target's R² over every unit of the control networks: the null,
        never the unit of the same index), ``selectivity = r2 - r2_control``, ``p_value``
        (corrected) and ``p_value_raw`` (:func:`~unitprobe.methods.probes.permutation_pvalues`),
        ``partial_r2`` (:func:`~unitprobe.methods.probes.partial_r2`), ``coef`` and
        ``intercept`` of the probe fitted on all samples, ``n_samples``, ``note``.
    population_probes : DataFrame
        The ``population_probes`` table: one row per layer x state x target for the probe
        from all units of the layer (:func:`~unitprobe.methods.probes.population_probe`):
        ``r2``, ``r2_std``, ``r2_control`` (mean over the control networks' populations),
        ``selectivity``, ``n_samples``.
    """
    config = ProbeConfig() if config is None else config
    if not isinstance(config, ProbeConfig):
        raise UnitprobeError(f"config must be a ProbeConfig, got {type(config).__name__}")
    control_seed = check_int(control_seed, "control_seed", minimum=0)
    permutation_seed = check_int(permutation_seed, "permutation_seed", minimum=0)
    states = config.states
    if not isinstance(targets, Targets):
        exprs = targets or config.targets or _default_exprs(dataset)
        targets = make_targets(dataset, list(exprs))
    with torch.no_grad():
        if trace is None:
            trace = run(model, dataset.inputs, record=states)
        controls = [
            run(untrained_network(model, control_seed + k), dataset.inputs, record=states)
            for k in range(config.n_controls)
        ]
    values, groups, mask = targets.values, targets.groups, targets.mask
    jobs = [(layer, s) for layer in range(model.config.n_layers) for s in states]
    unit_tables, population_tables = [], []
    for layer, state in tqdm(jobs, desc="probes", disable=not _show(progress), leave=False):
        X = trace.numpy(state, layer)[mask]  # (n_samples, n_units)
        Xc = [c.numpy(state, layer)[mask] for c in controls]
        units, population = _probe_layer(X, Xc, values, groups, config, permutation_seed)
        for table in (units, population):
            table.insert(0, "layer", layer)
            table.insert(1, "state", state)
        unit_tables.append(units)
        population_tables.append(population)
    probes = pd.concat(unit_tables, ignore_index=True)
    population = pd.concat(population_tables, ignore_index=True)
    for table in (probes, population):
        with np.errstate(invalid="ignore"):
            table["selectivity"] = selectivity(table["r2"], table["r2_control"])
    return (
        schemas.SCHEMAS["probes"].coerce(probes),
        schemas.SCHEMAS["population_probes"].coerce(population),
    )


def _probe_layer(
    X: np.ndarray,
    controls: list[np.ndarray],
    values: pd.DataFrame,
    groups: np.ndarray,
    config: ProbeConfig,
    permutation_seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-unit and population probes of one layer and state, with their control R²."""
    kw = {"n_splits": config.n_splits}
    units = unit_probes(X, values, groups, alpha=config.alpha, **kw)
    pop = {**kw, "select": population_select(config.n_splits)}
    population = population_probe(X, values, groups, **pop)
    ctrl_units = [unit_probes(c, values, groups, alpha=config.alpha, **kw) for c in controls]
    ctrl_population = [
        population_probe(c, values, groups, **pop)["r2"].to_numpy() for c in controls
    ]
    units["r2_control"] = units["target"].map(_null_r2(ctrl_units)) if controls else np.nan
    with warnings.catch_warnings():  # a constant unit has no R² in any control: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        population["r2_control"] = np.nanmean(ctrl_population, axis=0) if controls else np.nan
    perm = permutation_pvalues(
        X, values, groups, n_permutations=config.n_permutations, seed=permutation_seed,
        alpha=config.alpha, correction=config.correction, **kw,
    )  # fmt: skip
    part = partial_r2(X, values, groups, alpha=config.alpha, **kw)
    units["p_value"] = perm["p_value"].to_numpy()
    units["p_value_raw"] = perm["p_value_raw"].to_numpy()
    units["partial_r2"] = part["partial_r2"].to_numpy()
    part_note = part["note"].fillna("").astype(str).to_numpy()
    unit_note = units["note"].fillna("").astype(str).to_numpy()
    units["note"] = [
        "; ".join(n for n in (a, f"partial R²: {b}" if b else "") if n)
        for a, b in zip(unit_note, part_note, strict=True)
    ]
    return units, population


def _null_r2(tables: list[pd.DataFrame]) -> dict[str, float]:
    """Per target: the 99th percentile of the probe R² over every unit of the control networks.

    A unit is compared with the null distribution of all control units, not with the control
    unit of the same index: unit indices mean nothing across networks.
    """
    pooled = pd.concat(tables, ignore_index=True)
    return {
        str(target): float(np.nanquantile(r2, NULL_QUANTILE)) if np.isfinite(r2).any() else np.nan
        for target, r2 in pooled.groupby("target", sort=False)["r2"]
    }


def _default_exprs(dataset) -> list[str]:
    spec = getattr(dataset, "spec", None)
    if spec is not None:
        return default_targets(spec)
    return [f"{name}[t{lag}]" for name in dataset.raw for lag in ("", "-1")]


def _show(progress: bool | None) -> bool:
    return progress if progress is not None else stderr_is_tty()
