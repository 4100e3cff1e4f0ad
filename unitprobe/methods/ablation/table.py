"""The ablation table: the change of the output MSE for many ablations.

:func:`ablation_table` computes the output MSE of every (ablation, mode) pair with one of two
exact engines (:mod:`~unitprobe.methods.ablation.engines`): ``"fused"`` (default) runs each
unit set as a modified layer in the fused ``nn.LSTM`` kernel
(:mod:`~unitprobe.methods.ablation.fused` gives the construction); ``"stepwise"`` batches
every pair through the hookable :func:`~unitprobe.model.lstm.run`, the reference. Both equal
one :func:`~unitprobe.methods.ablation.ablate` run per ablation (tested to 1e-6).

With ``exact="screen"`` the output-linearized screen
(:mod:`~unitprobe.methods.ablation.screen`) first estimates every single-unit ablation from a
few backward passes, and only the units it cannot rule out run exactly. Rows follow the
``ablation`` schema of :mod:`unitprobe.schemas` (``docs/architecture.md``).

Example
-------
>>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "resample"))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from unitprobe import schemas
from unitprobe.config import AblationConfig, RoleConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation.engines import fused_sse, stepwise_sse
from unitprobe.methods.ablation.fused import clean_states, readout_sse
from unitprobe.methods.ablation.screen import screen_agreement, screen_parts
from unitprobe.methods.ablation.values import (
    MODES,
    check_layer,
    check_mode,
    check_site,
    check_start,
    check_units,
    units_label,
)
from unitprobe.model.lstm import UnitLSTM, as_tensor, run
from unitprobe.validation import check_choice, check_float, check_int

__all__ = [
    "ablation_table",
    "ablation_table_arrays",
    "ENGINES",
    "EXACT_CHOICES",
    "DEFAULT_ENGINE",
    "DEFAULT_EXACT",
    "DEFAULT_SCREEN_MARGIN",
    "DEFAULT_SCREEN_TOP_K",
]

#: rel_delta is NaN where mse_base <= (_ROUNDING * eps)² * mean(targets²): a zero base MSE up to
#: the rounding of the model's float outputs.
_ROUNDING = 8

#: Exact engines: the fused kernel, or the stepwise hookable run (the reference).
ENGINES = ("fused", "stepwise")
#: ``"screen"``: exact only where the screen cannot rule a unit out; ``"all"``: every ablation.
EXACT_CHOICES = ("screen", "all")
DEFAULT_ENGINE = AblationConfig.engine
DEFAULT_EXACT = AblationConfig.exact
#: A single unit runs exactly when its screened usage is within a factor margin of the threshold.
DEFAULT_SCREEN_MARGIN = AblationConfig.screen_margin
#: The screen's top k single units always run exactly.
DEFAULT_SCREEN_TOP_K = AblationConfig.screen_top_k


def _conditions(
    units: Any, groups: Any, layers: Sequence[int], n_units: int
) -> list[tuple[int, tuple[int, ...]]]:
    """(layer, unit ids) of every ablation, in table order, duplicates removed."""
    if isinstance(units, str):
        if units != "each":
            raise UnitprobeError(f"units == {units!r}, must be 'each', a list of unit ids or None")
        singles = [(u,) for u in range(n_units)]
    elif units is None:
        singles = []
    else:
        singles = [(u,) for u in check_units(units, n_units)]
    sets = []
    if groups is not None:
        if isinstance(groups, str) or not isinstance(groups, Sequence) or len(groups) == 0:
            raise UnitprobeError(
                f"groups == {groups!r}, must be None or a non-empty list of unit-id lists"
            )
        for k, group in enumerate(groups):
            unit_set = check_units(group, n_units)
            if not unit_set:
                raise UnitprobeError(f"group {k} of groups is empty; each group needs >= 1 unit")
            sets.append(unit_set)
    conditions = list(dict.fromkeys((l, s) for l in layers for s in [*singles, *sets]))
    if not conditions:
        raise UnitprobeError("nothing to ablate: units is None and groups is None")
    return conditions


def _check_targets(
    x: Tensor, targets: Any, output_names: Sequence[str], n_outputs: int
) -> np.ndarray:
    y = np.asarray(targets, dtype=np.float64)
    if y.ndim != 3 or y.shape[:2] != tuple(x.shape[:2]):
        raise DataError(
            f"targets of shape {y.shape} do not match inputs of shape {tuple(x.shape)}: "
            f"need (n_sequences, n_steps, n_outputs) = ({x.shape[0]}, {x.shape[1]}, {n_outputs})"
        )
    if y.shape[2] != n_outputs:
        raise DataError(f"targets have {y.shape[2]} outputs per step, model has {n_outputs}")
    names = [str(n) for n in output_names]
    if len(names) != n_outputs:
        raise DataError(f"{len(names)} output_names {names} for {n_outputs} model outputs")
    if schemas.ALL_OUTPUTS in names or len(set(names)) != len(names):
        raise DataError(f"output_names {names} must be unique and not {schemas.ALL_OUTPUTS!r}")
    return y


def ablation_table_arrays(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    targets: np.ndarray,
    output_names: Sequence[str],
    units: str | Sequence[int] | None = "each",
    groups: Sequence[Sequence[int]] | None = None,
    modes: Sequence[str] = AblationConfig.modes,
    *,
    layer: int | None = None,
    site: str = "h",
    start: int = 0,
    seed: int = 0,
    engine: str = DEFAULT_ENGINE,
    exact: str = DEFAULT_EXACT,
    threshold: float = RoleConfig.min_usage,
    screen_margin: float = DEFAULT_SCREEN_MARGIN,
    screen_top_k: int = DEFAULT_SCREEN_TOP_K,
    exact_used: bool = False,
    memory_budget_mb: float = AblationConfig.memory_budget_mb,
    progress: bool = False,
) -> pd.DataFrame:
    """Output MSE under every ablation; the array form of :func:`ablation_table`.

    Parameters
    ----------
    model : UnitLSTM
    inputs : array-like of shape (n_sequences, n_steps, n_inputs)
        Normalized inputs.
    targets : ndarray of shape (n_sequences, n_steps, n_outputs)
        What the model's outputs should be, in the same (normalized) units.
    output_names : sequence of str, length n_outputs
    units, groups, modes, layer, site, start, seed, engine, exact, threshold, screen_margin,
    screen_top_k, exact_used, memory_budget_mb, progress
        See :func:`ablation_table`.

    Returns
    -------
    DataFrame
        See :func:`ablation_table`.
    """
    x = as_tensor(inputs, model)
    cfg = model.config
    y = torch.as_tensor(_check_targets(x, targets, output_names, cfg.n_outputs), device=x.device)
    modes = [check_mode(m) for m in modes]
    if not modes or len(set(modes)) != len(modes):
        raise UnitprobeError(f"modes == {modes!r}, must be distinct names from {', '.join(MODES)}")
    sites = check_site(site)
    check_choice(engine, "engine", ENGINES)
    check_choice(exact, "exact", EXACT_CHOICES)
    check_float(threshold, "threshold", minimum=0)
    check_float(screen_margin, "screen_margin", minimum=1)
    check_int(screen_top_k, "screen_top_k", minimum=0)
    if not isinstance(exact_used, bool | np.bool_):
        raise UnitprobeError(f"exact_used == {exact_used!r}, must be True or False")
    layers = range(cfg.n_layers) if layer is None else [check_layer(layer, cfg.n_layers)]
    start = check_start(start, x.shape[1])
    check_float(memory_budget_mb, "memory_budget_mb", minimum=0, strict_minimum=True)
    conditions = _conditions(units, groups, layers, cfg.n_units)
    n_values = x.shape[0] * (x.shape[1] - start)
    # an MSE below float32 resolution of the targets counts as 0 for rel_delta
    floor = (_ROUNDING * torch.finfo(x.dtype).eps) ** 2 * float((y[:, start:] ** 2).mean())
    with torch.no_grad():
        clean = clean_states(model, x, start) if engine == "fused" else None
        if clean is not None:
            tail = clean.h[-1][:, start:]
            sse_base = readout_sse(tail, model, y[:, start:]).sum(dim=0)  # (O,)
        else:
            sse_base = None
    screen, band = None, None
    run_exact = list(range(len(conditions)))
    if exact == "screen" and sse_base is None:
        with torch.no_grad():
            hidden = run(model, x, record=("h",)).h[-1][:, start:]
            sse_base = readout_sse(hidden, model, y[:, start:]).sum(dim=0)
    if exact == "screen" and float(sse_base.mean()) / n_values > floor:
        screen, quadratic = _screen(
            model, x, y, conditions, modes, site, start, seed, memory_budget_mb
        )
        usage = _usage(screen + sse_base, sse_base)  # estimated, per condition
        if threshold > 0:
            band = (threshold / screen_margin, np.inf if exact_used else threshold * screen_margin)
            near = (usage >= band[0]) & (usage <= band[1])
        else:
            band = (0.0, np.inf if exact_used else 0.0)
            used_modes = [k for k, m in enumerate(modes) if m in schemas.USAGE_MODES]
            near = _sign_uncertain(
                screen[:, used_modes], quadratic[:, used_modes], 1 - 1 / screen_margin, exact_used
            )
        run_exact = _must_run(conditions, usage, near, screen_top_k)
    sse = torch.full(
        (len(conditions), len(modes), cfg.n_outputs),
        torch.nan,
        dtype=torch.float64,
        device=x.device,
    )
    todo = [conditions[c] for c in run_exact]
    if todo and engine == "fused":
        sse[run_exact] = fused_sse(
            model, y, todo, modes, site, seed, clean, memory_budget_mb, progress
        )
    left = [k for k in range(len(modes)) if torch.isnan(sse[run_exact, k]).any()]
    if todo and left:  # the stepwise engine, or what the fused construction does not cover
        step_sse, step_base = stepwise_sse(
            model, x, y, todo, [modes[k] for k in left], sites, start, seed,
            memory_budget_mb, progress,
        )  # fmt: skip
        for j, k in enumerate(left):
            sse[run_exact, k] = step_sse[:, j]
        sse_base = step_base if sse_base is None else sse_base
    if sse_base is None:  # nothing ran: a clean stepwise run for the base
        with torch.no_grad():
            hidden = run(model, x, record=("h",)).h[-1][:, start:]
            sse_base = readout_sse(hidden, model, y[:, start:]).sum(dim=0)
    exact_rows = np.zeros(len(conditions), dtype=bool)
    exact_rows[run_exact] = True
    if screen is not None:
        out = ~torch.as_tensor(exact_rows, device=sse.device)
        sse[out] = (screen + sse_base)[out]
    mse, mse_base = (sse / n_values).cpu().numpy(), (sse_base / n_values).cpu().numpy()
    table = _table(conditions, modes, mse, mse_base, output_names, floor, exact_rows)
    table.attrs.update(_attrs(engine, exact, conditions, exact_rows, screen, sse, sse_base,
                              screen_top_k, band))  # fmt: skip
    return table


def _screen(model, x, y, conditions, modes, site, start, seed, budget) -> tuple[Tensor, Tensor]:
    """Screen estimates of Δ SSE for every condition and their quadratic part (``sum dy²``),
    each (n_cond, M, O); NaN for unit groups."""
    layers = sorted({l for l, _ in conditions})
    parts = screen_parts(
        model, x, y, modes, site=site, start=start, seed=seed, layers=layers,
        memory_budget_mb=budget,
    )  # fmt: skip  # each (len(layers), H, M, O)
    dsse = parts.linear + parts.quadratic
    out = torch.full(
        (len(conditions), *dsse.shape[2:]), torch.nan, dtype=torch.float64, device=dsse.device
    )
    quadratic = out.clone()
    for c, (l, units) in enumerate(conditions):
        if len(units) == 1:
            out[c] = dsse[layers.index(l), units[0]]
            quadratic[c] = parts.quadratic[layers.index(l), units[0]]
    return out, quadratic


def _usage(sse: Tensor, sse_base: Tensor) -> np.ndarray:
    """What the roles read: the largest relative increase of the pooled MSE over modes."""
    base = float(sse_base.mean())
    rel = (sse.mean(dim=2) - base) / base  # (n_cond, M)
    return rel.max(dim=1).values.cpu().numpy()


def _sign_uncertain(dsse: Tensor, quadratic: Tensor, kappa: float, exact_used: bool) -> np.ndarray:
    """Per condition: can the screen not tell the sign of the usage (``usage > 0``)?

    ``dsse`` and ``quadratic`` hold the modes that decide usage (``schemas.USAGE_MODES``: mean and
    resample; zero ablation never decides), shape (n_cond, M, O) each.

    The usage is positive for sure when some mode's pooled estimate exceeds ``kappa`` times its
    quadratic part, and not positive for sure when every mode's is below ``-kappa`` times it (a
    linearized ``dy`` off by a share ``e`` moves the estimate by about ``2 e`` of the
    quadratic part, plus ``e`` of the linear part, which is bounded by the two together).
    With ``exact_used`` every unit that may be used is uncertain.
    """
    est, quad = dsse.mean(dim=2), quadratic.mean(dim=2)  # (n_cond, M), pooled over outputs
    if est.shape[1] == 0:  # no mode decides usage (zero ablation only): nothing to guard
        return np.zeros(est.shape[0], dtype=bool)
    positive = (est > kappa * quad).any(dim=1)
    negative = (est <= -kappa * quad).all(dim=1)
    uncertain = ~negative if exact_used else ~(positive | negative)
    return uncertain.cpu().numpy()


def _must_run(conditions, usage: np.ndarray, near: np.ndarray, top_k: int) -> list[int]:
    """Conditions the screen cannot rule out: groups, those ``near`` a decision, the top k of
    the estimated ``usage``."""
    single = np.array([len(u) == 1 for _, u in conditions])
    keep = ~single | ~np.isfinite(usage) | near
    ranked = [c for c in np.argsort(-np.nan_to_num(usage, nan=-np.inf), kind="stable") if single[c]]
    keep[ranked[:top_k]] = True
    return [int(c) for c in np.flatnonzero(keep)]


def _attrs(engine, exact, conditions, exact_rows, screen, sse, sse_base, k, band):
    """Table attributes: the engine, which rows are exact, the screen's agreement."""
    attrs: dict[str, Any] = {
        "ablation_engine": engine,
        "exact_ablation": exact,
        "n_exact": int(exact_rows.sum()),
        "screened_out": [
            f"{l}:{units_label(u)}"
            for (l, u), ok in zip(conditions, exact_rows, strict=True)
            if not ok
        ],
    }
    if screen is None:
        return attrs
    single = np.array([len(u) == 1 for _, u in conditions])
    both = exact_rows & single
    agree = screen_agreement(
        _usage(screen + sse_base, sse_base)[both], _usage(sse, sse_base)[both], k
    )
    attrs.update(
        {
            "screen_band": [float(band[0]), float(band[1])],
            "screen_top_k": k,
            "screen_spearman": agree["spearman"],
            "screen_median_rel_error": agree["median_rel_error"],
            "screen_topk_recall": agree["topk_recall"],
            "screen_n_compared": agree["n"],
        }
    )
    return attrs


def _table(
    conditions,
    modes,
    mse: np.ndarray,
    mse_base: np.ndarray,
    output_names,
    floor: float,
    exact_rows: np.ndarray,
) -> pd.DataFrame:
    """Tidy rows in condition, mode, output order; ``mse`` of shape (n_cond, n_modes, O);
    ``exact`` False on the rows of conditions that hold the screen's estimate."""
    names = [*map(str, output_names), schemas.ALL_OUTPUTS]
    base = np.append(mse_base, mse_base.mean())
    records = []
    for c, (layer, units) in enumerate(conditions):
        for k, mode in enumerate(modes):
            row = mse[c, k]
            for name, value, b in zip(names, np.append(row, row.mean()), base, strict=True):
                records.append((layer, units_label(units), mode, name, value, b))
    df = pd.DataFrame.from_records(records, columns=schemas.columns("ablation")[:6])
    df["delta_mse"] = df["mse"] - df["mse_base"]
    base_col = df["mse_base"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(base_col > floor, df["delta_mse"].to_numpy() / base_col, np.nan)
    df["rel_delta"] = rel
    per_condition = len(modes) * len(names)
    df["exact"] = np.repeat(exact_rows, per_condition)
    return schemas.SCHEMAS["ablation"].coerce(df)


def ablation_table(
    model: UnitLSTM,
    dataset: Any,
    units: str | Sequence[int] | None = "each",
    groups: Sequence[Sequence[int]] | None = None,
    modes: Sequence[str] = AblationConfig.modes,
    *,
    layer: int | None = None,
    site: str = "h",
    start: int = 0,
    seed: int = 0,
    engine: str = DEFAULT_ENGINE,
    exact: str = DEFAULT_EXACT,
    threshold: float = RoleConfig.min_usage,
    screen_margin: float = DEFAULT_SCREEN_MARGIN,
    screen_top_k: int = DEFAULT_SCREEN_TOP_K,
    exact_used: bool = False,
    memory_budget_mb: float = AblationConfig.memory_budget_mb,
    progress: bool = False,
) -> pd.DataFrame:
    """Change of the output MSE when units are ablated, for many ablations.

    Parameters
    ----------
    model : UnitLSTM
    dataset : object with ``inputs``, ``targets``, ``output_names``
        ``inputs`` ndarray of shape (n_sequences, n_steps, n_inputs), normalized; ``targets``
        ndarray of shape (n_sequences, n_steps, n_outputs), the model's prediction targets in
        the same units; ``output_names`` list of n_outputs str.
    units : "each", sequence of int, or None, default "each"
        Single-unit ablations: ``"each"`` every unit; a list, those units; None, none.
    groups : sequence of sequence of int, optional
        Unit sets ablated together (e.g. pairs, or ``all_but(u, n_units)``).
    modes : sequence of {"zero", "mean", "resample"}, default all three
    layer : int, optional
        Only this layer's units; default every layer (``units`` and ``groups`` apply to each).
    site : {"h", "c", "both"}, default "h"
    start : int, default 0
        First ablated step; the MSE is taken over steps >= start.
    seed : int, default 0
        Seed of the resample derangement (one derangement for every ablation).
    engine : {"fused", "stepwise"}, default "fused"
        ``"fused"``: each unit set runs as a modified layer in the fused ``nn.LSTM`` kernel,
        its modes and sequences in one batch (``site="c"`` with mean or resample values has no
        exact fused form and runs stepwise); ``"stepwise"``: every pair is a block of rows of
        the hookable :func:`~unitprobe.model.lstm.run` (the reference). Equal to ~1e-6.
    exact : {"screen", "all"}, default "all"
        ``"all"``: every ablation runs exactly. ``"screen"``: the output-linearized screen
        estimates every single-unit ablation first; a unit runs exactly when the estimate
        could change the ``used`` flag the roles report (see ``threshold``) or is among the
        ``screen_top_k`` largest estimated usages (largest ``rel_delta`` of the pooled
        ``"all"`` output over modes); unit groups always run exactly. Rows of the other units
        hold the screen's estimate (see Returns). Where the clean MSE is 0 up to rounding,
        everything runs exactly.
    threshold : float, default RoleConfig.min_usage
        The usage threshold of the ``used`` flag the screen guards. Above 0 (the probe-first
        roles: ``used = usage >= threshold``), a unit runs exactly when its estimated usage
        lies in ``[threshold / screen_margin, threshold * screen_margin]``. At 0 (the causal
        roles of ``unitprobe analyze``: ``used = usage > 0``), when the screen cannot tell the
        sign: no mode's pooled estimate is above ``(1 - 1 / screen_margin)`` times its
        quadratic part ``sum dy²`` and not every mode's is below minus that (measured on
        trained 64-unit networks of 11 presets and seed networks of 64-256 units: no sign
        missed at 0.3 times the quadratic part, under half of that bound).
    screen_margin : float, default 3
        >= 1; how far an estimate must be from the threshold to skip the exact run. On trained
        networks of every preset the exact usage was at most 1.4x the estimate.
    screen_top_k : int, default 8
    exact_used : bool, default False
        Also run exactly every unit that may be used (estimate above the band, or not surely
        at most 0), so that the usage numbers the roles print are exact, not only ``used``.
    memory_budget_mb : float, default 512
        Approximate peak memory of one batch (of rows, or of the screen's backward passes).
        The stepwise engine on CPU also holds at most 1,024 rows per chunk.
    progress : bool, default False
        Show a tqdm bar.

    Returns
    -------
    DataFrame
        The ``ablation`` table, one row per ablation x mode x output: ``layer``, ``units``
        (sorted ids joined by "+", e.g. "3" or "1+4"), ``mode``, ``output`` (each output name,
        plus "all": the MSE over all outputs), ``mse`` (ablated), ``mse_base`` (clean),
        ``delta_mse`` (= mse - mse_base) and ``rel_delta`` (= delta_mse / mse_base; NaN where
        mse_base is 0 up to the float rounding of the outputs, i.e. <= (8 eps)² x the mean
        square of the targets).

        ``table.attrs``: ``ablation_engine``, ``exact_ablation``, ``n_exact`` (conditions run
        exactly), ``screened_out`` (``"layer:units"`` of the rows that hold screen estimates:
        their ``mse`` is ``mse_base`` + the screen's estimated change, and ``delta_mse``,
        ``rel_delta`` follow from it); with the screen also ``screen_band`` (``[0, 0]``
        under the sign rule), ``screen_top_k``, and its agreement with the exact values of
        the units run exactly:
        ``screen_spearman``, ``screen_median_rel_error``, ``screen_topk_recall``,
        ``screen_n_compared`` (on the usage, see :func:`screen_agreement`).

    Notes
    -----
    MSEs are in the normalized units of ``targets``, averaged over every sequence and every
    step >= ``start`` (earlier steps are the same in the clean and ablated runs). They are
    computed in float64 from the last layer's hidden state with the model's readout, so an
    ablation that leaves the hidden states unchanged has ``delta_mse`` 0 up to float64
    summation order. Mean ablation uses the per-step mean over the dataset's sequences;
    resample takes the value of sequence ``derangement(n_sequences, seed)[n]`` at the same
    step. The float32 forward of either engine rounds differently from a lone :func:`ablate`
    run (about 1e-7 relative). Runs on the device of the model's parameters.

    Example
    -------
    >>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "mean"))
    >>> table.query("output == 'all'").nlargest(3, "delta_mse")
    >>> screened = ablation_table(model, dataset, exact="screen")
    >>> screened.attrs["screen_spearman"]
    """
    return ablation_table_arrays(
        model,
        dataset.inputs,
        dataset.targets,
        dataset.output_names,
        units,
        groups,
        modes,
        layer=layer,
        site=site,
        start=start,
        seed=seed,
        engine=engine,
        exact=exact,
        threshold=threshold,
        screen_margin=screen_margin,
        screen_top_k=screen_top_k,
        exact_used=exact_used,
        memory_budget_mb=memory_budget_mb,
        progress=progress,
    )
