"""Interchange interventions: patch units' states from a source run into a base run.

:func:`patched_outputs` runs base inputs through :func:`unitprobe.model.lstm.run` with, in row
``r``, the states of the selected units of one layer replaced at step ``step[r]`` only (an
:class:`~unitprobe.model.lstm.Intervention` per state and layer whose setter swaps in the new
value at that row's step); the edit propagates to every later step. :func:`interchange_table`
stacks the pairs of a term and every unit set along the batch, in memory-bounded chunks, and
reports the *transfer* of each unit set (package docstring) with a bootstrap interval over
pairs. Its rows follow :data:`INTERCHANGE`.

Example
-------
>>> table = interchange_table(model, dataset, ["K[t-1]", "X[t]"], groups=[[0, 1]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe.config import RoleConfig
from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions.pairs import (
    REFERENCES,
    Pairs,
    ReferenceChange,
    counterfactual_pairs,
    reference_change,
    term_rng,
)
from unitprobe.methods.interventions.screen import linear_transfers, screen_units
from unitprobe.methods.interventions.terms import Term, default_terms, output_fields, parse_term
from unitprobe.model.lstm import (
    Intervention,
    UnitLSTM,
    as_tensor,
    run,
    states_at_steps,
    suffix_outputs,
)
from unitprobe.schemas import SCHEMAS, STATES
from unitprobe.validation import check_choice, check_choices, check_int

__all__ = [
    "CHUNK_ROWS",
    "INTERCHANGE",
    "MIN_EFFECT",
    "N_BOOTSTRAP",
    "N_PAIRS",
    "SCREENED_NOTE",
    "PairRuns",
    "Transfer",
    "check_layers",
    "check_states",
    "interchange_table",
    "pair_runs",
    "pair_transfers",
    "patched_outputs",
    "resolve_terms",
    "screen_summary",
    "term_transfers",
    "transfer",
    "units_label",
]

#: Pairs per term (the library default, ``RoleConfig.n_pairs``).
N_PAIRS = RoleConfig.n_pairs
#: Bootstrap resamples of the pairs for the transfer interval.
N_BOOTSTRAP = 1000
#: RMS reference change (normalized output units) below which the output ignores the term and
#: the transfer is undefined (float32 rounding of unaffected outputs stays far below it).
MIN_EFFECT = 1e-6
#: Most batch rows of one stepwise run (pairs x unit sets), to keep memory bounded.
CHUNK_ROWS = 4096
#: Note of a row whose transfer is the screen's first-order estimate.
SCREENED_NOTE = "screened: first-order estimate (not patched exactly)"

INTERCHANGE = SCHEMAS["interchange"]


def _quiet(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows the bar only on a terminal."""
    return None if progress is None else not progress


def units_label(units: Sequence[int]) -> str:
    """``"3"``, ``"1+4"``, or ``"none"`` for the empty set."""
    return "+".join(str(u) for u in units) if len(units) else "none"


def check_states(states: Any) -> tuple[str, ...]:
    """``states`` as a tuple of distinct names from ``("h", "c")``."""
    states = check_choices(states, "states", STATES)
    if len(set(states)) != len(states):
        raise UnitprobeError(f"states == {states!r} repeats a state")
    return tuple(s for s in STATES if s in states)


def check_layers(layers: Any, model: UnitLSTM) -> list[int]:
    """Layer ids (None: every layer), each in range."""
    n = model.config.n_layers
    if layers is None:
        return list(range(n))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    return [check_int(v, "layer", minimum=0, maximum=n - 1) for v in layers]


def _check_units(units: Any, n_units: int, what: str) -> tuple[int, ...]:
    if isinstance(units, str) or not isinstance(units, Sequence | np.ndarray):
        raise UnitprobeError(f"{what} == {units!r}, must be a list of unit ids")
    out = tuple(check_int(u, f"unit in {what}", minimum=0, maximum=n_units - 1) for u in units)
    if len(set(out)) != len(out):
        raise UnitprobeError(f"{what} == {list(units)!r} repeats a unit")
    return out


def _unit_sets(units: Any, groups: Any, n_units: int) -> list[tuple[int, ...]]:
    """The unit sets of the table: single units, then groups (an empty group patches nothing)."""
    if isinstance(units, str):
        if units != "each":
            raise UnitprobeError(f"units == {units!r}, must be 'each', a list of unit ids or None")
        sets = [(u,) for u in range(n_units)]
    elif units is None:
        sets = []
    else:
        sets = [(u,) for u in _check_units(units, n_units, "units")]
    if groups is not None:
        if isinstance(groups, str) or not isinstance(groups, Sequence):
            raise UnitprobeError(f"groups == {groups!r}, must be None or a list of unit-id lists")
        sets += [_check_units(g, n_units, f"group {k}") for k, g in enumerate(groups)]
    sets = list(dict.fromkeys(sets))
    if not sets:
        raise UnitprobeError("nothing to patch: units is None and groups is None")
    return sets


def resolve_terms(terms: Any, dataset: Any) -> list[Term]:
    """Terms from text (None: :func:`~.terms.default_terms`), checked against the inputs."""
    inputs = tuple(dataset.input_names)
    if terms is None:
        return default_terms(getattr(dataset, "spec", None), inputs)
    if isinstance(terms, (str, Term)):
        terms = [terms]
    out = list(dict.fromkeys(parse_term(t, inputs) for t in terms))
    if not out:
        raise UnitprobeError("terms is empty; give at least one term such as 'X[t-1]'")
    return out


def _at_step(value: Tensor, step: int, *, steps: Tensor, new: Tensor) -> Tensor:
    """``value`` with the rows whose intervention step is ``step`` replaced by ``new``."""
    return torch.where((steps == step)[:, None], new, value)


def patched_outputs(
    model: UnitLSTM,
    base: Tensor,
    steps: Tensor,
    new: Mapping[tuple[str, int], Tensor],
    masks: Mapping[int, Tensor],
    *,
    base_states: Mapping[str, Tensor] | None = None,
    y_base: Tensor | None = None,
) -> Tensor:
    """Outputs of ``base`` with, in each row, some units' states replaced at one step.

    Parameters
    ----------
    model : UnitLSTM
    base : Tensor of shape (n_rows, n_steps, n_inputs)
    steps : Tensor of int64, shape (n_rows,)
        The step at which each row is patched (the state *after* that step is replaced).
    new : dict of (state, layer) to Tensor of shape (n_rows, n_units)
        Replacement values of ``h`` and/or ``c`` of a layer (may require grad).
    masks : dict of layer to Tensor of bool, shape (n_rows, n_units)
        Which units of that layer each row replaces.
    base_states : dict of {"h", "c"} to Tensor of shape (n_rows, n_units), optional
        The unedited states right after each row's step; with ``y_base`` (the unedited
        outputs, shape (n_rows, n_steps, n_outputs)), a one-layer model whose ``h`` is
        patched runs only the steps after the edit, through the fused kernel
        (:func:`~unitprobe.model.lstm.suffix_outputs`): the same values to float rounding,
        several times faster. Other models take the stepwise path.

    Returns
    -------
    Tensor of shape (n_rows, n_steps, n_outputs)
        Differentiable in ``new``.
    """
    if base_states is not None and y_base is not None and _suffix_ok(model, ("h", 0) in new):
        mask = masks[0]
        h = torch.where(mask, new[("h", 0)], base_states["h"])
        c = torch.where(mask, new[("c", 0)], base_states["c"]) if ("c", 0) in new else None
        c = base_states["c"] if c is None else c
        return suffix_outputs(model, base, steps, h, c, y_base)
    start, stop = int(steps.min()), int(steps.max()) + 1
    edits = [
        Intervention(
            state,
            layer=layer,
            mask=masks[layer],
            setter=partial(_at_step, steps=steps, new=value),
            start=start,
            stop=stop,
        )
        for (state, layer), value in new.items()
    ]
    return run(model, base, edits, record=()).outputs


def _suffix_ok(model: UnitLSTM, patches_h: bool) -> bool:
    """Whether :func:`suffix_outputs` computes a patch: one layer, no attached interventions,
    ``h`` patched (with or without ``c``)."""
    return model.config.n_layers == 1 and not model._interventions and patches_h


@dataclass
class PairRuns:
    """The base and source runs of some pairs.

    Attributes
    ----------
    y_base, y_source : ndarray of float64, shape (n_pairs, n_steps, n_outputs)
    states_base, states_source : dict of state to Tensor of shape (n_layers, n_pairs, n_units)
        ``h`` and ``c`` of every layer right after each pair's step.
    """

    y_base: np.ndarray
    y_source: np.ndarray
    states_base: dict[str, Tensor]
    states_source: dict[str, Tensor]
    fused: bool = False


def pair_runs(model: UnitLSTM, pairs: Pairs, n_steps: int) -> PairRuns:
    """Run the base and source inputs of ``pairs`` (first ``n_steps`` steps) without gradients.

    A one-layer model without attached interventions runs in the fused kernel
    (:func:`~unitprobe.model.lstm.states_at_steps`, ``fused`` True), the same values to float
    rounding as the stepwise :func:`~unitprobe.model.lstm.run` the others take.
    """
    n = pairs.n_pairs
    x = as_tensor(np.concatenate([pairs.base, pairs.source])[:, :n_steps], model)
    steps = torch.as_tensor(pairs.step, device=x.device).repeat(2)  # base rows, then source
    fused = _suffix_ok(model, True)
    with torch.no_grad():
        if fused:
            outputs, h, c = states_at_steps(model, x, steps)
            at_step = {"h": h[None], "c": c[None]}  # (L, 2n, H)
        else:
            trace = run(model, x, record=STATES)
            outputs = trace.outputs
            rows = torch.arange(2 * n, device=x.device)
            at_step = {s: trace.sites[s][:, rows, steps] for s in STATES}
    y = outputs.double().cpu().numpy()
    base = {s: at_step[s][:, :n] for s in STATES}  # (L, n, H)
    source = {s: at_step[s][:, n:] for s in STATES}
    return PairRuns(y[:n], y[n:], base, source, fused)


@dataclass
class Transfer:
    """Transfer of one unit set: point estimate, bootstrap interval and the reference effect."""

    transfer: float
    lo: float
    hi: float
    effect: float


def transfer(
    delta_patch: np.ndarray, ref: ReferenceChange, boot: np.ndarray | None = None
) -> Transfer:
    """``Σ Δ_patch·Δ_ref / Σ Δ_ref²`` pooled over pairs (and a bootstrap interval).

    Parameters
    ----------
    delta_patch : ndarray of shape (n_pairs, n_steps, n_outputs)
        ``y_patched - y_base``.
    ref : ReferenceChange
    boot : ndarray of int, shape (n_boot, n_pairs), optional
        Resampled pair indices; the 2.5 and 97.5 percentiles of the resampled transfers.
    """
    num = np.where(ref.mask, delta_patch * ref.delta, 0.0).sum(axis=(1, 2))  # (n_pairs,)
    den = np.where(ref.mask, ref.delta**2, 0.0).sum(axis=(1, 2))
    count = ref.mask.sum()
    effect = float(np.sqrt(den.sum() / count)) if count else 0.0
    if not effect > MIN_EFFECT:
        return Transfer(np.nan, np.nan, np.nan, effect)
    value = float(num.sum() / den.sum())
    lo = hi = np.nan
    if boot is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = num[boot].sum(axis=1) / den[boot].sum(axis=1)
        lo, hi = (float(v) for v in np.nanpercentile(draws, [2.5, 97.5]))
    return Transfer(value, lo, hi, effect)


def _row(layer: int, units: tuple[int, ...], term: Term, ref: ReferenceChange, t: Transfer,
         n: int, exact: bool = True) -> dict[str, Any]:  # fmt: skip
    notes = [ref.note] if ref.note else []
    if np.isnan(t.effect) or not t.effect > MIN_EFFECT:
        notes.append("the reference predicts no output change for this term: transfer undefined")
    elif not exact:
        notes.append(SCREENED_NOTE)
    return {
        "layer": layer,
        "units": units_label(units),
        "term": str(term),
        "feature": term.feature,
        "lag": term.lag,
        "reference": ref.used,
        "transfer": t.transfer,
        "transfer_lo": t.lo,
        "transfer_hi": t.hi,
        "effect": t.effect,
        "n_pairs": n,
        "exact": exact,
        "note": "; ".join(notes),
    }


def interchange_table(
    model: UnitLSTM,
    dataset: Any,
    terms: Any = None,
    *,
    layers: Sequence[int] | int | None = None,
    units: Any = "each",
    groups: Sequence[Sequence[int]] | None = None,
    states: Sequence[str] = STATES,
    reference: str | Sequence[str] = "auto",
    n_pairs: int = N_PAIRS,
    horizon: int | None = None,
    delta: float | None = None,
    seed: int = 0,
    progress: bool | None = False,
    screen: int | None = None,
    exact_units: Mapping[int, Sequence[int]] | None = None,
) -> pd.DataFrame:
    """Transfer of every unit set for every term: one row per layer x unit set x term.

    Parameters
    ----------
    model : UnitLSTM
    dataset : Dataset
        ``inputs`` of shape (n_sequences, n_steps, n_inputs), ``input_names``, ``output_names``;
        the relations reference also reads ``spec`` and ``norm``.
    terms : sequence of str or Term, optional
        Terms ``NAME[t-k]`` over the input features; default every input at lags 0 .. the
        largest lag of the task's relations.
    layers : int or sequence of int, optional
        Layers to patch (default all).
    units : "each", sequence of int or None
        Single units to patch one at a time.
    groups : sequence of sequence of int, optional
        Unit sets patched together (``[[1, 4]]``; ``[]`` patches nothing, a null check).
    states : sequence of {"h", "c"}, default both
        Which states of the units are patched.
    reference : {"auto", "model", "relations"} or a sequence of them
        What the patched change is compared with (package docstring). Several references
        share the same patched runs and give one row each per unit set and term.
    n_pairs : int
        Counterfactual pairs per term.
    horizon : int, optional
        Output steps ``s .. s + horizon`` count; None: through the end of the sequence.
    delta : float, optional
        Change the term by this fixed amount instead of another sequence's value.
    seed : int
        Seeds the pairs and the bootstrap (per term, :func:`~.pairs.term_rng`).
    progress : bool or None
        A progress bar over terms (None: when stderr is a terminal).
    screen : int, optional
        Screen single units (:mod:`~unitprobe.methods.interventions.screen`): per term and
        layer, only the ``screen`` units with the largest first-order ``|transfer|`` under
        any reference, and ``exact_units``, are patched exactly; the other single units'
        rows hold the estimate (``exact`` False, lo/hi NaN). None: every unit exactly.
        Groups are always patched exactly.
    exact_units : dict of layer to unit ids, optional
        Units always patched exactly under ``screen`` (e.g. the candidates of a role).

    Returns
    -------
    DataFrame with the columns of :data:`INTERCHANGE`
        ``transfer`` is NaN (with a note) where the reference change is 0.
    """
    references = [reference] if isinstance(reference, str) else list(dict.fromkeys(reference))
    if not references:
        raise UnitprobeError("reference is empty; give 'auto', 'model' or 'relations'")
    for ref_name in references:
        check_choice(ref_name, "reference", REFERENCES)
    screen = check_int(screen, "screen", minimum=1, allow_none=True)
    states = check_states(states)
    layer_ids = check_layers(layers, model)
    horizon = check_int(horizon, "horizon", minimum=0, allow_none=True)
    term_list = resolve_terms(terms, dataset)
    sets = _unit_sets(units, groups, model.config.n_units)
    conditions = [(layer, s) for layer in layer_ids for s in sets]
    fields = output_fields(dataset) if references != ["model"] else {}
    always = {int(k): [int(u) for u in v] for k, v in (exact_units or {}).items()}
    rows, agreement = [], []
    for term in tqdm(term_list, desc="interchange", disable=_quiet(progress), leave=False):
        pairs = counterfactual_pairs(dataset, term, n_pairs, seed=seed, delta=delta)
        results, exact, refs = term_transfers(
            model, dataset, pairs, conditions, states, references, horizon, fields, seed,
            screen, always, agreement,
        )  # fmt: skip
        for ref, per_condition in zip(refs, results, strict=True):
            for (layer, unit_set), result, done in zip(
                conditions, per_condition, exact, strict=True
            ):
                rows.append(_row(layer, unit_set, term, ref, result, pairs.n_pairs, done))
    table = INTERCHANGE.coerce(pd.DataFrame(rows, columns=list(INTERCHANGE.columns)))
    if screen is not None:
        table.attrs["screen"] = screen_summary(agreement, table, screen)
    return table


def screen_summary(
    pairs: Sequence[tuple[float, float]], table: pd.DataFrame, top_k: int
) -> dict[str, Any]:
    """How the screen did: rows patched exactly or estimated, and, on the units both screened
    and patched exactly, the rank correlation and the errors of the estimate (plain data)."""
    out: dict[str, Any] = {
        "exact_interchange": "screen",
        "interchange_top_k": int(top_k),
        "n_exact_rows": int(table["exact"].sum()),
        "n_estimated_rows": int((~table["exact"]).sum()),
        "n_compared": len(pairs),
    }
    if len(pairs) >= 3:
        est, exact = np.array(pairs).T
        constant = np.ptp(est) == 0 or np.ptp(exact) == 0  # no ranks to correlate
        out["spearman"] = math.nan if constant else float(spearmanr(est, exact).statistic)
        out["median_abs_error"] = float(np.median(np.abs(est - exact)))
        out["max_abs_error"] = float(np.max(np.abs(est - exact)))
    return out


def pair_transfers(
    model: UnitLSTM,
    dataset: Any,
    pairs: Pairs,
    conditions: list[tuple[int, tuple[int, ...]]],
    states: tuple[str, ...],
    reference: str,
    horizon: int | None,
    fields: dict,
    seed: int,
) -> tuple[list[Transfer], ReferenceChange]:
    """Transfers of every (layer, unit set) on ``pairs``, in batched chunks, and ``Δ_ref``.

    ``fields`` are the output fields (``{}`` for the model reference); ``seed`` seeds the
    bootstrap. Runs are cut after the last step any pair counts.
    """
    results, _, refs = term_transfers(
        model, dataset, pairs, conditions, states, [reference], horizon, fields, seed
    )
    return results[0], refs[0]


def term_transfers(
    model: UnitLSTM,
    dataset: Any,
    pairs: Pairs,
    conditions: list[tuple[int, tuple[int, ...]]],
    states: tuple[str, ...],
    references: Sequence[str],
    horizon: int | None,
    fields: dict,
    seed: int,
    screen: int | None = None,
    always: Mapping[int, Sequence[int]] | None = None,
    agreement: list[tuple[float, float]] | None = None,
) -> tuple[list[list[Transfer]], list[bool], list[ReferenceChange]]:
    """Transfers of every (layer, unit set) under every reference, from one set of patched runs.

    Returns ``(results[reference][condition], exact[condition], refs)``; with ``screen``,
    single units outside the screen's exact set hold its first-order estimate (see
    :func:`interchange_table`). ``agreement``, when given, receives ``(estimate, exact)`` of
    every screened unit that was also patched exactly, per reference.
    """
    n, n_steps_all = pairs.n_pairs, pairs.base.shape[1]
    last = n_steps_all if horizon is None else int(pairs.step.max()) + horizon + 1
    n_steps = min(n_steps_all, last)
    runs = pair_runs(model, pairs, n_steps)
    refs = [
        reference_change(pairs, dataset, r, horizon, runs.y_base, runs.y_source, fields)
        for r in references
    ]
    boot = term_rng(seed, pairs.term, 1).integers(0, n, size=(N_BOOTSTRAP, n))
    base = as_tensor(pairs.base[:, :n_steps], model)  # on the model's device
    steps = torch.as_tensor(pairs.step, device=base.device)
    estimates: dict[tuple[int, tuple[int, ...]], list[Transfer]] = {}
    checked: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    dtype = next(model.parameters()).dtype
    # float32 -> float64 -> back: exact
    y_base = torch.as_tensor(runs.y_base, dtype=dtype, device=base.device)
    fast = {"base_states": _at_steps(runs.states_base), "y_base": y_base}
    if screen is not None:
        patch = partial(patched_outputs, model, base, steps, **fast)
        for layer in sorted({c[0] for c in conditions if len(c[1]) == 1}):
            est = linear_transfers(patch, runs.states_base, runs.states_source, refs, layer, states)
            keep = set(screen_units(est, screen, (always or {}).get(layer, ())))
            for lay, unit_set in conditions:
                if lay == layer and len(unit_set) == 1 and unit_set[0] in keep:
                    checked[(lay, unit_set)] = est[:, unit_set[0]]
                elif lay == layer and len(unit_set) == 1:
                    estimates[(lay, unit_set)] = [
                        _estimate(float(est[r, unit_set[0]]), ref) for r, ref in enumerate(refs)
                    ]
    todo = [c for c in conditions if c not in estimates]
    exact = dict(zip(todo, _patched(model, runs, refs, boot, base, steps, todo, states, fast),
                     strict=True))  # fmt: skip
    results = [
        [exact[c][r] if c in exact else estimates[c][r] for c in conditions]
        for r in range(len(refs))
    ]
    if agreement is not None:
        for c, values in checked.items():
            agreement += [
                (float(v), exact[c][r].transfer)
                for r, v in enumerate(values)
                if np.isfinite(v) and np.isfinite(exact[c][r].transfer)
            ]
    return results, [c in exact for c in conditions], refs


def _estimate(value: float, ref: ReferenceChange) -> Transfer:
    """A screened unit's row: the estimate, no interval, the reference's effect."""
    undefined = transfer(np.zeros_like(ref.delta), ref)
    if np.isnan(undefined.transfer) and not undefined.effect > MIN_EFFECT:
        return undefined
    return Transfer(value, np.nan, np.nan, undefined.effect)


def _at_steps(states: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The first layer's states at each pair's step, (n_pairs, n_units) per state."""
    return {s: value[0] for s, value in states.items()}


def _patched(
    model, runs, refs, boot, base, steps, conditions, states, fast
) -> list[list[Transfer]]:
    """Exact transfers of ``conditions`` under every reference: ``[condition][reference]``."""
    n, n_steps = base.shape[0], base.shape[1]
    n_units = model.config.n_units
    per_chunk = max(1, CHUNK_ROWS // n)
    # the base run by the path the patched runs take, so that rounding cancels
    y_ref = runs.y_base
    suffix = _suffix_ok(model, "h" in states)
    if suffix:
        with torch.no_grad():
            h0, c0 = fast["base_states"]["h"], fast["base_states"]["c"]
            y_ref = suffix_outputs(model, base, steps, h0, c0, fast["y_base"])
            y_ref = y_ref.double().cpu().numpy()
    elif runs.fused:  # patched stepwise (only c patched): the stepwise base run
        with torch.no_grad():
            y_ref = run(model, base, record=()).outputs.double().cpu().numpy()
    out = []
    for first in range(0, len(conditions), per_chunk):
        chunk = conditions[first : first + per_chunk]
        k = len(chunk)
        masks = {}
        for layer in {c[0] for c in chunk}:
            mask = torch.zeros(k, n, n_units, dtype=torch.bool, device=base.device)
            for j, (lay, unit_set) in enumerate(chunk):
                if lay == layer:
                    mask[j, :, list(unit_set)] = True
            masks[layer] = mask.reshape(k * n, n_units)
        new = {
            (s, layer): runs.states_source[s][layer].repeat(k, 1) for s in states for layer in masks
        }
        tiled = {}  # the suffix path's inputs, only where it is taken
        if suffix:
            tiled = {
                "base_states": {s: v.repeat(k, 1) for s, v in fast["base_states"].items()},
                "y_base": fast["y_base"].repeat(k, 1, 1),
            }
        with torch.no_grad():
            y = patched_outputs(model, base.repeat(k, 1, 1), steps.repeat(k), new, masks, **tiled)
        y = y.double().cpu().numpy().reshape(k, n, n_steps, -1)
        for j, (_, unit_set) in enumerate(chunk):
            if not unit_set:  # patching nothing is the base run, exactly
                y[j] = y_ref
        out += [[transfer(y[j] - y_ref, ref, boot) for ref in refs] for j in range(k)]
    return out
