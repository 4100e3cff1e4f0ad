"""One ablation through the recurrence: replace units' states and run the model on.

An ablation overwrites some units of one layer's hidden state ``h`` (or cell state ``c``, or
both) at every step from ``start`` on, inside the stepwise forward pass of
:func:`unitprobe.model.lstm.run`, so the edit propagates through the recurrence to every later
step, to the layers above and to the readout. Three replacement values:

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

Example
-------
>>> trace = ablate(model, inputs, [3], mode="mean", start=10)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unitprobe.errors import DataError, UnitprobeError
from unitprobe.model.lstm import SITES, Intervention, Trace, UnitLSTM, as_tensor, interventions, run
from unitprobe.schemas import ABLATION_MODES as MODES
from unitprobe.validation import check_choice, check_int, is_int

__all__ = [
    "MODES",
    "ABLATION_SITES",
    "derangement",
    "zero_values",
    "mean_values",
    "resample_values",
    "generic_ablation",
    "zero_ablation",
    "mean_ablation",
    "resample_ablation",
    "ablate",
    "check_mode",
    "check_site",
    "check_layer",
    "check_units",
    "check_start",
    "units_label",
    "VALUE_MAKERS",
    "replay",
]

#: Which unit state an ablation replaces: ``h``, ``c`` or both.
ABLATION_SITES = ("h", "c", "both")

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


VALUE_MAKERS: dict[str, ValuesFn] = {
    "zero": zero_values,
    "mean": mean_values,
    "resample": resample_values,
}


def replay(values: Tensor, value: Tensor, step: int) -> Tensor:
    """The one setter: the prepared replacement at ``step``, shape (rows or 1, n_units)."""
    return values[step]


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def check_mode(mode: str) -> str:
    """``mode`` if it is an ablation mode (:data:`~unitprobe.schemas.ABLATION_MODES`)."""
    return check_choice(mode, "mode", MODES)


def check_site(site: str) -> tuple[str, ...]:
    """The model sites an ablation of ``site`` (``h``, ``c`` or ``both``) edits."""
    check_choice(site, "site", ABLATION_SITES)
    return ("c", "h") if site == "both" else (site,)


def check_layer(layer: Any, n_layers: int) -> int:
    """``layer`` as an int if the model has it (0-based)."""
    check_int(layer, "layer")
    if not 0 <= layer < n_layers:
        raise UnitprobeError(f"layer == {layer}, model has {n_layers} layer(s) (0-based)")
    return int(layer)


def check_units(units: Any, n_units: int) -> tuple[int, ...]:
    """Sorted unique unit ids; an int is one unit."""
    if is_int(units):
        units = [units]
    if isinstance(units, str) or not isinstance(units, Sequence | np.ndarray):
        raise UnitprobeError(f"units == {units!r}, must be a unit id or a list of unit ids")
    out = set()
    for u in units:
        if not is_int(u):
            raise UnitprobeError(f"unit {u!r} is not an integer unit id")
        if not 0 <= u < n_units:
            raise UnitprobeError(f"unit {u} out of range, model has {n_units} units (0-based)")
        out.add(int(u))
    return tuple(sorted(out))


def check_start(start: Any, n_steps: int) -> int:
    """``start`` as an int if it is a step of a sequence of ``n_steps``."""
    if not is_int(start):
        raise UnitprobeError(f"start == {start!r}, must be an integer step")
    if not 0 <= start < n_steps:
        raise UnitprobeError(f"start == {start}, must be in [0, {n_steps}) for {n_steps} steps")
    return int(start)


def units_label(units: Sequence[int]) -> str:
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
    sites = check_site(site)
    layer = check_layer(layer, model.config.n_layers)
    units = check_units(units, model.config.n_units)
    start = check_start(start, x.shape[1])
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
            setter=partial(replay, values(clean[s], x.shape[0], seed)),
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
    return _ABLATIONS[check_mode(mode)](
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
