"""The two exact engines of the ablation table: stepwise (the hookable reference) and fused.

Both return the summed squared readout error of every (ablation, mode) pair, float64 of
shape (n_conditions, n_modes, n_outputs), over the steps from ``start`` on:

- :func:`stepwise_sse` stacks every pair along the batch of one stepwise
  :func:`~unitprobe.model.lstm.run`, each block of rows with its own unit mask and replacement
  values (the reference; equals one :func:`~unitprobe.methods.ablation.ablate` run per pair);
- :func:`fused_sse` runs each unit set as a modified layer in the fused kernel, all modes and
  sequences of the set in one batch (:mod:`~unitprobe.methods.ablation.fused` gives the
  construction); it leaves NaN where the construction does not apply (``site="c"`` with mean
  or resample values).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe.methods.ablation.fused import (
    CleanStates,
    ablated_hidden,
    fused_bytes_per_row,
    fused_supports,
    readout_sse,
)
from unitprobe.methods.ablation.values import VALUE_MAKERS, replay
from unitprobe.model.lstm import Intervention, UnitLSTM, run

__all__ = ["stepwise_sse", "fused_sse", "Condition"]

#: (layer, sorted unit ids) of one ablation.
Condition = tuple[int, tuple[int, ...]]

#: Most batch rows per chunk of the stepwise engine on CPU: the stepwise pass gets slower per
#: row on larger batches (64 units, 30 steps, 2 cores: about 36 us per row at 1,000 rows, 47 at
#: 2,000, 72 at 8,000).
CPU_CHUNK_ROWS = 1024


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


def stepwise_sse(
    model: UnitLSTM,
    x: Tensor,
    y: Tensor,
    conditions: Sequence[Condition],
    modes: Sequence[str],
    sites: Sequence[str],
    start: int,
    seed: int,
    memory_budget_mb: float,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Summed squared errors through the stepwise :func:`~unitprobe.model.lstm.run`.

    Parameters
    ----------
    x : Tensor of shape (N, T, n_inputs); y : Tensor of float64, shape (N, T, n_outputs)
    conditions : list of (layer, unit ids); modes : mode names; sites : edited model sites
    start, seed, memory_budget_mb, progress : as in :func:`ablation_table`

    Returns
    -------
    (sse, sse_base)
        ``sse`` float64 of shape (n_conditions, n_modes, n_outputs); ``sse_base`` (n_outputs,)
        of the clean stepwise run.
    """
    cfg = model.config
    n_seq, n_steps = x.shape[:2]
    dev = x.device
    with torch.no_grad():
        clean = run(model, x, record=tuple(dict.fromkeys(("h", *sites))))
        sse_base = readout_sse(clean.h[-1][:, start:], model, y[:, start:]).sum(dim=0)
        tables = {
            (l, s, k): VALUE_MAKERS[m](clean.sites[s][l], n_seq, seed)
            for l in {c[0] for c in conditions}
            for s in sites
            for k, m in enumerate(modes)
        }  # (T, N or 1, H) per (layer, site, mode index)
        # one job per (condition, mode), grouped by layer so that chunks touch few layers
        jobs = sorted(
            ((c, k) for c in range(len(conditions)) for k in range(len(modes))),
            key=lambda j: conditions[j[0]][0],
        )
        job_layer = torch.tensor([conditions[c][0] for c, _ in jobs], device=dev)
        job_mode = torch.tensor([k for _, k in jobs], device=dev)
        job_mask = torch.zeros(len(jobs), cfg.n_units, dtype=torch.bool, device=dev)
        for j, (c, _) in enumerate(jobs):
            job_mask[j, list(conditions[c][1])] = True
        n_edited = len(sites) * min(len(conditions), cfg.n_layers)
        per_row = _bytes_per_row(model, n_steps, n_edited, x.element_size())
        chunk_rows = max(1, int(memory_budget_mb * 2**20) // per_row)
        if dev.type == "cpu":
            chunk_rows = min(chunk_rows, CPU_CHUNK_ROWS)
        n_rows = len(jobs) * n_seq
        sse = torch.zeros(len(jobs), cfg.n_outputs, dtype=torch.float64, device=dev)
        for r0 in tqdm(range(0, n_rows, chunk_rows), desc="ablation", disable=not progress):
            rows = torch.arange(r0, min(r0 + chunk_rows, n_rows), device=dev)
            job_of, seq_of = rows // n_seq, rows % n_seq
            edits = _chunk_edits(
                job_of, seq_of, job_layer, job_mode, job_mask, tables, sites, start, n_steps
            )
            trace = run(model, x[seq_of], edits, record=("h",))
            hidden = trace.h[-1][:, start:]
            sse.index_add_(0, job_of, readout_sse(hidden, model, y[seq_of, start:]))
    out = torch.empty(len(conditions), len(modes), cfg.n_outputs, dtype=torch.float64, device=dev)
    for j, (c, k) in enumerate(jobs):
        out[c, k] = sse[j]
    return out, sse_base


def fused_sse(
    model: UnitLSTM,
    y: Tensor,
    conditions: Sequence[Condition],
    modes: Sequence[str],
    site: str,
    seed: int,
    clean: CleanStates,
    memory_budget_mb: float,
    progress: bool = False,
) -> Tensor:
    """Summed squared errors through the fused kernel, one batched call per unit set.

    Parameters
    ----------
    y : Tensor of float64, shape (N, T, n_outputs)
    conditions, modes, seed, memory_budget_mb, progress : as in :func:`stepwise_sse`
    site : {"h", "c", "both"}
    clean : CleanStates
        The clean fused run of the inputs (gives ``start``).

    Returns
    -------
    Tensor of float64, shape (n_conditions, n_modes, n_outputs)
        NaN for modes the construction does not cover (see :func:`fused_supports`).
    """
    cfg = model.config
    start = clean.start
    n_seq, n_steps = clean.h[0].shape[:2]
    dev = clean.h[0].device
    kept = [k for k, m in enumerate(modes) if fused_supports(site, m)]
    out = torch.full(
        (len(conditions), len(modes), cfg.n_outputs), torch.nan, dtype=torch.float64, device=dev
    )
    if not kept:
        return out
    # replacement h of every kept mode, per layer: (T', N or 1, H)
    tables = {
        (l, k): VALUE_MAKERS[modes[k]](clean.h[l], n_seq, seed)[start:]
        for l in {c[0] for c in conditions}
        for k in kept
    }
    y_tail = y[:, start:]
    n_tail = n_steps - start
    with torch.no_grad():
        for c, (layer, units) in enumerate(tqdm(conditions, desc="ablation", disable=not progress)):
            per_row = fused_bytes_per_row(model, n_tail, len(units), clean.h[0].element_size())
            n_chunk = max(1, int(memory_budget_mb * 2**20) // (per_row * len(kept)))
            idx = torch.as_tensor(list(units), device=dev)
            sse = out.new_zeros(len(kept), cfg.n_outputs)
            for s0 in range(0, n_seq, n_chunk):
                seqs = torch.arange(s0, min(s0 + n_chunk, n_seq), device=dev)
                values = torch.cat(
                    [_rows_of(tables[(layer, k)], seqs)[:, :, idx] for k in kept]
                )  # (len(kept) * n, T', |S|), mode-major
                rows = seqs.repeat(len(kept))
                hidden = ablated_hidden(model, clean, layer, units, values, rows)
                err = readout_sse(hidden, model, y_tail[rows])  # (rows, O)
                sse += err.view(len(kept), len(seqs), -1).sum(dim=1)
            out[c, kept] = sse
    return out


def _rows_of(table: Tensor, seqs: Tensor) -> Tensor:
    """Rows ``seqs`` of a value table (T', N or 1, H), as (len(seqs), T', H)."""
    if table.shape[1] == 1:
        return table.transpose(0, 1).expand(len(seqs), -1, -1)
    return table[:, seqs].transpose(0, 1)
