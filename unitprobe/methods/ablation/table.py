"""The ablation table: the change of the output MSE for many ablations, in batched runs.

:func:`ablation_table` stacks every (ablation, mode) pair along the batch of one stepwise
forward pass, each row block with its own unit mask and replacement values, in
memory-bounded chunks; the result equals one :func:`~unitprobe.methods.ablation.ablate` run
per ablation (tested to 1e-6). Its rows follow the ``ablation`` schema of
:mod:`unitprobe.schemas` (``docs/architecture.md``).

Example
-------
>>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "resample"))
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe import schemas
from unitprobe.config import AblationConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.ablation.values import (
    MODES,
    VALUE_MAKERS,
    check_layer,
    check_mode,
    check_site,
    check_start,
    check_units,
    replay,
    units_label,
)
from unitprobe.model.lstm import Intervention, UnitLSTM, as_tensor, run
from unitprobe.validation import check_float

__all__ = ["ablation_table", "ablation_table_arrays"]

#: rel_delta is NaN where mse_base <= (_ROUNDING * eps)² * mean(targets²): a zero base MSE up to
#: the rounding of the model's float outputs.
_ROUNDING = 8

#: Most batch rows per chunk on CPU: the stepwise pass gets slower per row on larger batches
#: (64 units, 30 steps, 2 cores: about 36 us per row at 1,000 rows, 47 at 2,000, 72 at 8,000).
_CPU_CHUNK_ROWS = 1024


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
                    site, layer=layer, mask=mask, setter=partial(replay, vals), start=start
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
    modes: Sequence[str] = AblationConfig.modes,
    *,
    layer: int | None = None,
    site: str = "h",
    start: int = 0,
    seed: int = 0,
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
    modes = [check_mode(m) for m in modes]
    if not modes or len(set(modes)) != len(modes):
        raise UnitprobeError(f"modes == {modes!r}, must be distinct names from {', '.join(MODES)}")
    sites = check_site(site)
    layers = range(cfg.n_layers) if layer is None else [check_layer(layer, cfg.n_layers)]
    start = check_start(start, x.shape[1])
    check_float(memory_budget_mb, "memory_budget_mb", minimum=0, strict_minimum=True)
    conditions = _conditions(units, groups, layers, cfg.n_units)
    n_seq, n_steps = x.shape[:2]
    with torch.no_grad():
        clean = run(model, x, record=tuple(dict.fromkeys(("h", *sites))))
        sse_base = _sse(clean.h[-1], model, y, start).sum(dim=0)  # (O,)
        # replacement values per (layer, site, mode index): (T, N or 1, H)
        tables = {
            (l, s, k): VALUE_MAKERS[m](clean.sites[s][l], n_seq, seed)
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
    """Tidy rows in condition, mode, output order; ``mse`` (n_jobs, O) is in ``jobs`` order."""
    order = {job: j for j, job in enumerate(jobs)}
    names = [*map(str, output_names), schemas.ALL_OUTPUTS]
    base = np.append(mse_base.numpy(), mse_base.numpy().mean())
    records = []
    for c, (layer, units) in enumerate(conditions):
        for k, mode in enumerate(modes):
            row = mse[order[(c, k)]].numpy()
            for name, value, b in zip(names, np.append(row, row.mean()), base, strict=True):
                records.append((layer, units_label(units), mode, name, value, b))
    df = pd.DataFrame.from_records(records, columns=schemas.columns("ablation")[:6])
    df["delta_mse"] = df["mse"] - df["mse_base"]
    base_col = df["mse_base"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(base_col > floor, df["delta_mse"].to_numpy() / base_col, np.nan)
    df["rel_delta"] = rel
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
    memory_budget_mb: float = AblationConfig.memory_budget_mb,
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
        The ``ablation`` table, one row per ablation x mode x output: ``layer``, ``units``
        (sorted ids joined by "+", e.g. "3" or "1+4"), ``mode``, ``output`` (each output name,
        plus "all": the MSE over all outputs), ``mse`` (ablated), ``mse_base`` (clean),
        ``delta_mse`` (= mse - mse_base) and ``rel_delta`` (= delta_mse / mse_base; NaN where
        mse_base is 0 up to the float rounding of the outputs, i.e. <= (8 eps)² x the mean
        square of the targets).

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
    >>> table.query("output == 'all'").nlargest(3, "delta_mse")
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
