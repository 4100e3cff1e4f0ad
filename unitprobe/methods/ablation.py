"""Ablations through the recurrence: what happens to the outputs when units are knocked out?

An ablation overwrites some units of one layer's hidden state ``h`` (or cell state ``c``, or
both) at every step from ``start`` on, inside the stepwise forward pass of
:func:`unitprobe.model.lstm.run`, so the edit propagates through the recurrence to every later step,
to the layers above and to the readout. Three replacement values:

- ``zero``: 0.
- ``mean``: the unit's mean clean activation over the sequences *at the same step* (a per-step
  mean, so a unit that follows a fixed time course keeps it; a unit that is the same in every
  sequence at each step is not changed at all).
- ``resample``: the unit's clean value, at the same step, in another sequence: sequence ``n``
  takes sequence ``perm[n]`` of a seeded random derangement (a permutation without fixed
  points), so no sequence gets its own value back.

"Clean" values come from an unedited run of the same inputs (or of ``reference``). The three
modes are one function, :func:`generic_ablation`, with three value makers bound by
``functools.partial`` (:data:`zero_ablation`, :data:`mean_ablation`, :data:`resample_ablation`);
the edit itself is always the same setter, "return the prepared value at this step".

:func:`ablation_table` measures the change of the output MSE for many ablations (every unit,
groups of units, every mode) in batched forward passes: the ablations are stacked along the
batch, each row block with its own unit mask and replacement values, in memory-bounded chunks.
:func:`decodability_drop` measures how much an ablation lowers what a linear probe can read
from the remaining units at later steps.

Example
-------
>>> trace = ablate(model, inputs, [3], mode="mean", start=10)
>>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "resample"))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe import schemas
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.model.lstm import SITES, Intervention, Trace, UnitLSTM, as_tensor, interventions, run

__all__ = [
    "MODES",
    "ABLATION_SITES",
    "ABLATION_COLUMNS",
    "DECODABILITY_COLUMNS",
    "derangement",
    "zero_values",
    "mean_values",
    "resample_values",
    "generic_ablation",
    "zero_ablation",
    "mean_ablation",
    "resample_ablation",
    "ablate",
    "ablation_table",
    "ablation_table_arrays",
    "decodability_drop",
    "top_k_units",
    "all_but",
]

MODES = ("zero", "mean", "resample")
ABLATION_SITES = ("h", "c", "both")
ABLATION_COLUMNS = schemas.ABLATION
DECODABILITY_COLUMNS = ("layer", "units", "mode", "target", "r2_base", "r2_ablated", "r2_drop")

#: rel_delta is NaN where mse_base <= (_ROUNDING * eps)² * mean(targets²): a zero base MSE up to
#: the rounding of the model's float outputs.
_ROUNDING = 8

#: Most batch rows per chunk on CPU: the stepwise pass gets slower per row on larger batches
#: (64 units, 30 steps, 2 cores: about 36 us per row at 1,000 rows, 47 at 2,000, 72 at 8,000).
_CPU_CHUNK_ROWS = 1024

#: ``(reference, n_sequences, seed) -> values``: replacement values of one site of one layer.
ValuesFn = Callable[[Tensor, int, int], Tensor]


# --------------------------------------------------------------------------------------------
# Replacement values (pure functions of the clean activations)
# --------------------------------------------------------------------------------------------


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded, uniformly drawn permutation of ``range(n)`` without fixed points.

    Parameters
    ----------
    n : int
        Number of sequences, >= 2.
    seed : int, default 0

    Returns
    -------
    ndarray of int of shape (n,)
        ``perm[k] != k`` for every ``k``; the same seed gives the same permutation.

    Example
    -------
    >>> derangement(2)
    array([1, 0])
    """
    if n < 2:
        raise DataError(f"resample ablation needs >= 2 sequences, got {n}")
    rng = np.random.default_rng(seed)
    while True:  # rejection: about e ≈ 2.7 draws on average
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


def zero_values(reference: Tensor, n_sequences: int, seed: int = 0) -> Tensor:
    """Zeros, of shape (n_steps, 1, n_units); ``reference`` only gives the shape and dtype.

    Parameters
    ----------
    reference : Tensor of shape (n_reference, n_steps, n_units)
        Clean activations of the ablated site and layer (may have 0 sequences).
    n_sequences, seed : int
        Unused (the same signature as the other value makers).
    """
    return reference.new_zeros(reference.shape[1], 1, reference.shape[2])


def mean_values(reference: Tensor, n_sequences: int, seed: int = 0) -> Tensor:
    """Per-step mean over the reference sequences, of shape (n_steps, 1, n_units).

    The mean is accumulated in float64, so a unit whose value is the same in every sequence
    at a step gets exactly that value back.

    Parameters
    ----------
    reference : Tensor of shape (n_reference, n_steps, n_units)
        Clean activations of the ablated site and layer.
    n_sequences, seed : int
        Unused.
    """
    return reference.double().mean(dim=0).to(reference.dtype)[:, None, :]  # (T, 1, H)


def resample_values(reference: Tensor, n_sequences: int, seed: int = 0) -> Tensor:
    """Clean values of other sequences at the same step, of shape (n_steps, n_sequences, n_units).

    Sequence ``n`` takes reference sequence ``derangement(n_sequences, seed)[n]`` when the
    reference has ``n_sequences`` sequences (the usual case: the reference is the clean run of
    the same inputs); otherwise a seeded random draw of reference sequences (without
    replacement when there are enough).

    Parameters
    ----------
    reference : Tensor of shape (n_reference, n_steps, n_units)
    n_sequences : int
        Rows of the ablated run.
    seed : int, default 0
    """
    n_ref = reference.shape[0]
    if n_ref == n_sequences:
        idx = derangement(n_ref, seed)
    else:
        rng = np.random.default_rng(seed)
        idx = rng.choice(n_ref, size=n_sequences, replace=n_sequences > n_ref)
    picked = reference[torch.as_tensor(idx, device=reference.device)]  # (N, T, H)
    return picked.transpose(0, 1).contiguous()  # (T, N, H)


_VALUES: dict[str, ValuesFn] = {
    "zero": zero_values,
    "mean": mean_values,
    "resample": resample_values,
}


def _replay(values: Tensor, value: Tensor, step: int) -> Tensor:
    """The one setter: the prepared replacement at ``step``, shape (rows or 1, n_units)."""
    return values[step]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UnitprobeError(f"mode == {mode!r}, must be one of {', '.join(MODES)}")
    return mode


def _check_site(site: str) -> tuple[str, ...]:
    """The model sites an ablation site edits."""
    if site not in ABLATION_SITES:
        raise UnitprobeError(f"site == {site!r}, must be one of {', '.join(ABLATION_SITES)}")
    return ("c", "h") if site == "both" else (site,)


def _check_layer(layer: Any, n_layers: int) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
        raise UnitprobeError(f"layer == {layer!r}, must be an integer")
    if not 0 <= layer < n_layers:
        raise UnitprobeError(f"layer == {layer}, model has {n_layers} layer(s) (0-based)")
    return int(layer)


def _check_units(units: Any, n_units: int) -> tuple[int, ...]:
    """Sorted unique unit ids; an int is one unit."""
    if isinstance(units, int | np.integer) and not isinstance(units, bool):
        units = [units]
    if isinstance(units, str) or not isinstance(units, Sequence | np.ndarray):
        raise UnitprobeError(f"units == {units!r}, must be a unit id or a list of unit ids")
    out = set()
    for u in units:
        if isinstance(u, bool) or not isinstance(u, int | np.integer):
            raise UnitprobeError(f"unit {u!r} is not an integer unit id")
        if not 0 <= u < n_units:
            raise UnitprobeError(f"unit {u} out of range, model has {n_units} units (0-based)")
        out.add(int(u))
    return tuple(sorted(out))


def _check_start(start: Any, n_steps: int) -> int:
    if isinstance(start, bool) or not isinstance(start, int | np.integer):
        raise UnitprobeError(f"start == {start!r}, must be an integer step")
    if not 0 <= start < n_steps:
        raise UnitprobeError(f"start == {start}, must be in [0, {n_steps}) for {n_steps} steps")
    return int(start)


def _units_label(units: Sequence[int]) -> str:
    return "+".join(str(u) for u in units)


# --------------------------------------------------------------------------------------------
# One ablation
# --------------------------------------------------------------------------------------------


def _reference_sites(
    model: UnitLSTM,
    x: Tensor,
    reference: Trace | Tensor | np.ndarray | None,
    sites: Sequence[str],
    layer: int,
) -> dict[str, Tensor]:
    """Clean activations (n_reference, n_steps, n_units) of ``sites`` of ``layer``."""
    if isinstance(reference, Trace):
        missing = [s for s in sites if s not in reference.sites]
        if missing:
            raise UnitprobeError(
                f"reference trace lacks site(s) {missing}; record them: "
                f"run(model, inputs, record={tuple(sites)})"
            )
        clean = {s: reference.sites[s][layer].detach() for s in sites}
    else:
        ref = x if reference is None else as_tensor(reference, model)
        with torch.no_grad():
            trace = run(model, ref, record=tuple(sites))
        clean = {s: trace.sites[s][layer] for s in sites}
    n_steps = x.shape[1]
    for s, value in clean.items():
        if value.shape[1] < n_steps or value.shape[2] != model.config.n_units:
            raise DataError(
                f"reference {s} has shape {tuple(value.shape)}, need (n_reference, >= {n_steps}, "
                f"{model.config.n_units}) for inputs of {n_steps} steps"
            )
    return {s: v[:, :n_steps] for s, v in clean.items()}


def generic_ablation(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    units: int | Sequence[int],
    *,
    values: ValuesFn,
    needs_reference: bool = True,
    site: str = "h",
    layer: int = 0,
    start: int = 0,
    seed: int = 0,
    reference: Trace | Tensor | np.ndarray | None = None,
    record: Sequence[str] = SITES,
) -> Trace:
    """Run ``model`` with ``units`` of one layer replaced by ``values(...)`` from ``start`` on.

    The zero, mean and resample ablations are this function with ``values`` bound
    (:data:`zero_ablation`, :data:`mean_ablation`, :data:`resample_ablation`); :func:`ablate`
    picks one by name.

    Parameters
    ----------
    model : UnitLSTM
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
        In the model's (normalized) units.
    units : int or sequence of int
        0-based units of ``layer`` to ablate; empty ablates nothing (the run then equals the
        plain :func:`~unitprobe.model.lstm.run` exactly).
    values : callable ``(reference, n_sequences, seed) -> Tensor``
        Makes the replacement values, of shape (n_steps, n_sequences or 1, n_units), from the
        clean activations ``reference`` of shape (n_reference, n_steps, n_units) of the edited
        site and layer.
    needs_reference : bool, default True
        False for value makers that only read the reference's shape (zero): skips the clean run.
    site : {"h", "c", "both"}, default "h"
        ``"both"`` overwrites ``c`` and then ``h``, each with its own replacement.
    layer : int, default 0
    start : int, default 0
        First ablated step; steps before it are untouched.
    seed : int, default 0
        Passed to ``values`` (the resample derangement).
    reference : Trace, or array-like of shape (n_reference, >= n_steps, n_inputs), optional
        Where mean and resample values come from: a :class:`~unitprobe.model.lstm.Trace` of a
        clean run with the edited sites recorded (reused as is), or inputs to run clean.
        Default: the clean run of ``inputs``.
    record : sequence of site names, default all
        Sites to keep in the returned trace.

    Returns
    -------
    Trace
        ``outputs`` of shape (n_sequences, n_steps, n_outputs) and the recorded sites of shape
        (n_layers, n_sequences, n_steps, n_units), after the edit.

    Notes
    -----
    The clean reference run is done without gradients; the ablated run follows the caller's
    grad mode. The edits are attached with :func:`~unitprobe.model.lstm.interventions`, so none stay
    on the model if the run fails.
    """
    x = as_tensor(inputs, model)
    sites = _check_site(site)
    layer = _check_layer(layer, model.config.n_layers)
    units = _check_units(units, model.config.n_units)
    start = _check_start(start, x.shape[1])
    if needs_reference:
        clean = _reference_sites(model, x, reference, sites, layer)
    else:  # shape only: (0, T, H)
        clean = {s: x.new_zeros(0, x.shape[1], model.config.n_units) for s in sites}
    mask = torch.zeros(model.config.n_units, dtype=torch.bool, device=x.device)
    mask[list(units)] = True
    edits = [
        Intervention(
            s,
            layer=layer,
            mask=mask,
            setter=partial(_replay, values(clean[s], x.shape[0], seed)),
            start=start,
        )
        for s in sites
    ]
    with interventions(model, edits):
        return run(model, x, record=record)


zero_ablation = partial(generic_ablation, values=zero_values, needs_reference=False)
zero_ablation.__doc__ = "Zero ablation: :func:`generic_ablation` with ``values=zero_values``."
mean_ablation = partial(generic_ablation, values=mean_values)
mean_ablation.__doc__ = "Per-step mean ablation: :func:`generic_ablation` with ``mean_values``."
resample_ablation = partial(generic_ablation, values=resample_values)
resample_ablation.__doc__ = "Resample ablation: :func:`generic_ablation` with ``resample_values``."

_ABLATIONS = {"zero": zero_ablation, "mean": mean_ablation, "resample": resample_ablation}


def ablate(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    units: int | Sequence[int],
    *,
    mode: str = "zero",
    site: str = "h",
    layer: int = 0,
    start: int = 0,
    seed: int = 0,
    reference: Trace | Tensor | np.ndarray | None = None,
    record: Sequence[str] = SITES,
) -> Trace:
    """Run ``model`` on ``inputs`` with ``units`` of ``layer`` ablated from step ``start`` on.

    Parameters
    ----------
    model : UnitLSTM
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
    units : int or sequence of int
        0-based units of ``layer``; empty ablates nothing.
    mode : {"zero", "mean", "resample"}, default "zero"
        Replacement value: 0; the per-step mean over the reference sequences; or the value of
        another sequence at the same step (a seeded derangement of the sequences).
    site : {"h", "c", "both"}, default "h"
    layer, start, seed : int
    reference : Trace or array-like, optional
        Source of the mean / resample values; see :func:`generic_ablation`.
    record : sequence of site names, default all

    Returns
    -------
    Trace
        Outputs of shape (n_sequences, n_steps, n_outputs) and recorded sites of shape
        (n_layers, n_sequences, n_steps, n_units).

    Example
    -------
    >>> trace = ablate(model, x, [2, 5], mode="resample", site="both", start=10, seed=1)
    """
    return _ABLATIONS[_check_mode(mode)](
        model,
        inputs,
        units,
        site=site,
        layer=layer,
        start=start,
        seed=seed,
        reference=reference,
        record=record,
    )


# --------------------------------------------------------------------------------------------
# Batched ablation table
# --------------------------------------------------------------------------------------------


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
        singles = [(u,) for u in _check_units(units, n_units)]
    sets = []
    if groups is not None:
        if isinstance(groups, str) or not isinstance(groups, Sequence) or len(groups) == 0:
            raise UnitprobeError(
                f"groups == {groups!r}, must be None or a non-empty list of unit-id lists"
            )
        for k, group in enumerate(groups):
            unit_set = _check_units(group, n_units)
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
    if "all" in names or len(set(names)) != len(names):
        raise DataError(f"output_names {names} must be unique and not 'all'")
    return y


def _bytes_per_row(model: UnitLSTM, n_steps: int, n_edited: int, itemsize: int) -> int:
    """Approximate peak memory of one batch row in a stepwise run.

    ``run`` keeps every site of a layer at every step (6 H), the input projection (4 H) and the
    stacked hidden states (2 H) of up to two layers; plus the replacement values (one H per
    edited layer x site), inputs, targets and the float64 readout.
    """
    cfg = model.config
    floats = n_steps * (2 * 12 * cfg.n_units + n_edited * cfg.n_units + cfg.n_inputs)
    doubles = n_steps * (cfg.n_units + 3 * cfg.n_outputs)
    return itemsize * floats + 8 * doubles + 4 * cfg.n_units


def _sse(hidden: Tensor, model: UnitLSTM, targets: Tensor, start: int) -> Tensor:
    """Squared readout error summed over steps >= start, float64 of shape (rows, n_outputs).

    hidden : (rows, n_steps, n_units), the last layer's h; targets : (rows, n_steps, n_outputs).
    """
    weight = model.readout.weight.detach().double()
    bias = model.readout.bias.detach().double()
    pred = hidden[:, start:].double() @ weight.T + bias  # (rows, T', O)
    return ((pred - targets[:, start:]) ** 2).sum(dim=1)


def _chunk_edits(
    jobs: Tensor,
    seqs: Tensor,
    job_layer: Tensor,
    job_mode: Tensor,
    job_mask: Tensor,
    tables: dict[tuple[int, str, int], Tensor],
    sites: Sequence[str],
    start: int,
    n_steps: int,
) -> list[Intervention]:
    """Interventions for one chunk of rows: one per (layer, site) that its jobs ablate.

    jobs, seqs : (rows,) job and sequence index of every row; job_mask : (n_jobs, n_units).
    """
    rows_layer, rows_mode = job_layer[jobs], job_mode[jobs]
    edits = []
    for layer in torch.unique(rows_layer).tolist():
        in_layer = rows_layer == layer
        mask = job_mask[jobs] & in_layer[:, None]  # (rows, H)
        for site in sites:
            ref = tables[(layer, site, 0)]
            vals = ref.new_zeros(n_steps, len(jobs), ref.shape[2])  # (T, rows, H)
            for mode in torch.unique(rows_mode[in_layer]).tolist():
                table = tables[(layer, site, mode)]  # (T, N or 1, H)
                rows = torch.nonzero(in_layer & (rows_mode == mode)).squeeze(1)
                src = seqs[rows] if table.shape[1] > 1 else torch.zeros_like(rows)
                vals[:, rows] = table[:, src]
            edits.append(
                Intervention(
                    site, layer=layer, mask=mask, setter=partial(_replay, vals), start=start
                )
            )
    return edits


def ablation_table_arrays(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    targets: np.ndarray,
    output_names: Sequence[str],
    units: str | Sequence[int] | None = "each",
    groups: Sequence[Sequence[int]] | None = None,
    modes: Sequence[str] = MODES,
    *,
    layer: int | None = None,
    site: str = "h",
    start: int = 0,
    seed: int = 0,
    memory_budget_mb: float = 512,
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
    units, groups, modes, layer, site, start, seed, memory_budget_mb, progress
        See :func:`ablation_table`.

    Returns
    -------
    DataFrame
        See :func:`ablation_table`.
    """
    x = as_tensor(inputs, model)
    cfg = model.config
    y = torch.as_tensor(_check_targets(x, targets, output_names, cfg.n_outputs), device=x.device)
    modes = [_check_mode(m) for m in modes]
    if not modes or len(set(modes)) != len(modes):
        raise UnitprobeError(f"modes == {modes!r}, must be distinct names from {', '.join(MODES)}")
    sites = _check_site(site)
    layers = range(cfg.n_layers) if layer is None else [_check_layer(layer, cfg.n_layers)]
    start = _check_start(start, x.shape[1])
    if not memory_budget_mb > 0:
        raise UnitprobeError(f"memory_budget_mb == {memory_budget_mb!r}, must be > 0")
    conditions = _conditions(units, groups, layers, cfg.n_units)
    n_seq, n_steps = x.shape[:2]
    with torch.no_grad():
        clean = run(model, x, record=tuple(dict.fromkeys(("h", *sites))))
        sse_base = _sse(clean.h[-1], model, y, start).sum(dim=0)  # (O,)
        # replacement values per (layer, site, mode index): (T, N or 1, H)
        tables = {
            (l, s, k): _VALUES[m](clean.sites[s][l], n_seq, seed)
            for l in {c[0] for c in conditions}
            for s in sites
            for k, m in enumerate(modes)
        }
        # one job per (condition, mode), grouped by layer so that chunks touch few layers
        jobs = sorted(
            ((c, k) for c in range(len(conditions)) for k in range(len(modes))),
            key=lambda j: conditions[j[0]][0],
        )
        dev = x.device
        job_layer = torch.tensor([conditions[c][0] for c, _ in jobs], device=dev)
        job_mode = torch.tensor([k for _, k in jobs], device=dev)
        job_mask = torch.zeros(len(jobs), cfg.n_units, dtype=torch.bool, device=dev)
        for j, (c, _) in enumerate(jobs):
            job_mask[j, list(conditions[c][1])] = True
        n_edited = len(sites) * min(len(conditions), cfg.n_layers)
        per_row = _bytes_per_row(model, n_steps, n_edited, x.element_size())
        chunk_rows = max(1, int(memory_budget_mb * 2**20) // per_row)
        if x.device.type == "cpu":
            chunk_rows = min(chunk_rows, _CPU_CHUNK_ROWS)
        n_rows = len(jobs) * n_seq
        sse = torch.zeros(len(jobs), cfg.n_outputs, dtype=torch.float64, device=dev)
        for r0 in tqdm(range(0, n_rows, chunk_rows), desc="ablation", disable=not progress):
            rows = torch.arange(r0, min(r0 + chunk_rows, n_rows), device=dev)
            job_of, seq_of = rows // n_seq, rows % n_seq
            edits = _chunk_edits(
                job_of, seq_of, job_layer, job_mode, job_mask, tables, sites, start, n_steps
            )
            trace = run(model, x[seq_of], edits, record=("h",))
            sse.index_add_(0, job_of, _sse(trace.h[-1], model, y[seq_of], start))
    n_values = n_seq * (n_steps - start)
    # an MSE below float32 resolution of the targets counts as 0 for rel_delta
    floor = (_ROUNDING * torch.finfo(x.dtype).eps) ** 2 * float((y[:, start:] ** 2).mean())
    mse, mse_base = (sse / n_values).cpu(), (sse_base / n_values).cpu()
    return _table(conditions, modes, jobs, mse, mse_base, output_names, floor)


def _table(
    conditions, modes, jobs, mse: Tensor, mse_base: Tensor, output_names, floor: float
) -> pd.DataFrame:
    """Tidy rows in condition, mode, target order; ``mse`` (n_jobs, O) is in ``jobs`` order."""
    order = {job: j for j, job in enumerate(jobs)}
    names = [*map(str, output_names), "all"]
    base = np.append(mse_base.numpy(), mse_base.numpy().mean())
    records = []
    for c, (layer, units) in enumerate(conditions):
        for k, mode in enumerate(modes):
            row = mse[order[(c, k)]].numpy()
            for name, value, b in zip(names, np.append(row, row.mean()), base, strict=True):
                records.append((layer, _units_label(units), mode, name, value, b))
    df = pd.DataFrame.from_records(records, columns=list(ABLATION_COLUMNS[:6]))
    df["delta_mse"] = df["mse"] - df["mse_base"]
    base_col = df["mse_base"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(base_col > floor, df["delta_mse"].to_numpy() / base_col, np.nan)
    df["rel_delta"] = rel
    return df


def ablation_table(
    model: UnitLSTM,
    dataset: Any,
    units: str | Sequence[int] | None = "each",
    groups: Sequence[Sequence[int]] | None = None,
    modes: Sequence[str] = MODES,
    *,
    layer: int | None = None,
    site: str = "h",
    start: int = 0,
    seed: int = 0,
    memory_budget_mb: float = 512,
    progress: bool = False,
) -> pd.DataFrame:
    """Change of the output MSE when units are ablated, for many ablations in batched runs.

    Every (ablation, mode) pair is a block of rows of one stepwise forward pass: the inputs
    are repeated once per pair, each block gets its own unit mask and replacement values
    (a per-row mask in one :class:`~unitprobe.model.lstm.Intervention` per layer and site), and
    the rows are cut into chunks that stay under ``memory_budget_mb``. The result equals one
    :func:`ablate` run per unit and mode (tested to 1e-6).

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
    memory_budget_mb : float, default 512
        Approximate peak memory of one chunk of batch rows. On CPU a chunk also holds at most
        1,024 rows, where the stepwise pass is fastest per row.
    progress : bool, default False
        Show a tqdm bar over chunks.

    Returns
    -------
    DataFrame
        One row per ablation x mode x target: ``layer``, ``units`` (sorted ids joined by "+",
        e.g. "3" or "1+4"), ``mode``, ``target`` (each output name, plus "all": the MSE over all
        outputs), ``mse`` (ablated), ``mse_base`` (clean), ``delta_mse`` (= mse - mse_base) and
        ``rel_delta`` (= delta_mse / mse_base; NaN where mse_base is 0 up to the float rounding
        of the outputs, i.e. <= (8 eps)² x the mean square of the targets).

    Notes
    -----
    MSEs are in the normalized units of ``targets``, averaged over every sequence and every
    step >= ``start`` (earlier steps are the same in the clean and ablated runs). They are
    computed in float64 from the last layer's hidden state with the model's readout, so an
    ablation that leaves the hidden states unchanged has ``delta_mse`` 0 up to float64
    summation order (about 1e-16 of the MSE). Mean ablation uses the per-step mean over the
    dataset's sequences; resample takes the value of sequence ``derangement(n_sequences,
    seed)[n]`` at the same step. Rows of different ablations are batched together, so the
    float32 forward may round differently from a lone :func:`ablate` run (about 1e-9 here).

    On CPU a chunk holds at most 1,024 rows whatever the budget: per row, the stepwise pass of
    :func:`~unitprobe.model.lstm.run` is fastest around 1,000 rows. Batching saves the per-run
    Python overhead, which matters for small datasets; for thousands of sequences a run is
    bound by arithmetic and memory traffic, and the table costs about as much as one
    :func:`ablate` call per ablation.

    Example
    -------
    >>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "mean"))
    >>> table.query("target == 'all'").nlargest(3, "delta_mse")
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
        memory_budget_mb=memory_budget_mb,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# Unit selection helpers
# --------------------------------------------------------------------------------------------


def top_k_units(
    probes: pd.DataFrame, target: str, k: int, layer: int = 0, *, state: str = "h"
) -> list[int]:
    """The ``k`` units of ``layer`` whose single-unit probe R² for ``target`` is highest.

    Parameters
    ----------
    probes : DataFrame
        A probes table with columns ``layer``, ``unit``, ``target``, ``r2`` (rows with unit
        "all" are ignored; if it has a ``state`` column, only rows of ``state`` are used).
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
    missing = {"layer", "unit", "target", "r2"} - set(probes.columns)
    if missing:
        raise DataError(f"probes table lacks column(s) {sorted(missing)}")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise UnitprobeError(f"k == {k!r}, must be an integer >= 1")
    rows = probes[(probes["unit"].astype(str) != "all") & (probes["layer"] == layer)]
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
    if isinstance(n_units, bool) or not isinstance(n_units, int | np.integer) or n_units < 1:
        raise UnitprobeError(f"n_units == {n_units!r}, must be an integer >= 1")
    _check_units([unit], n_units)
    return [u for u in range(n_units) if u != unit]


# --------------------------------------------------------------------------------------------
# Decodability
# --------------------------------------------------------------------------------------------


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
        from unitprobe.methods.probes import population_probe

        probe = partial(population_probe, n_splits=n_splits)
    keep = np.isfinite(values).all(axis=1)
    table = probe(states[keep], pd.DataFrame(values[keep], columns=list(names)), groups[keep])
    if "unit" in table.columns:
        table = table[table["unit"].astype(str) == "all"]
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
    n_splits: int = 5,
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
        Population probe returning columns ``target`` and ``r2`` (rows with ``unit`` "all");
        default :func:`unitprobe.methods.probes.population_probe` with ``n_splits``.

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
    modes = [_check_mode(m) for m in modes]
    layer = _check_layer(layer, model.config.n_layers)
    probe_layer = layer if probe_layer is None else _check_layer(probe_layer, model.config.n_layers)
    if state not in ("h", "c"):
        raise UnitprobeError(f"state == {state!r}, must be one of h, c")
    step = _check_start(n_steps // 2 if step is None else step, n_steps)
    if isinstance(units, int | np.integer) or len(units) == 0:
        raise UnitprobeError(f"units == {units!r}, must be a non-empty list of units or groups")
    ablations = [_check_units(u, model.config.n_units) for u in units]
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
                rows.append((layer, _units_label(ablated), mode, name, base, abl, base - abl))
    return pd.DataFrame.from_records(rows, columns=list(DECODABILITY_COLUMNS))
