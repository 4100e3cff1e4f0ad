"""The machinery of distributed alignment search: batched pair runs, patches along a basis,
and L-BFGS searches driven together.

A :class:`Batch` holds what patching some counterfactual pairs needs in ``N`` networks of one
shape at once (the same pairs, each network's own runs): rows are pairs, the first axis of
every per-network tensor is the network. :func:`patched_delta` patches the states of every
row along a basis (or the whole layer) and runs on; one-layer networks run through
:func:`~unitprobe.model.stacked.stacked_suffix_outputs` (all networks in one batched recurrence,
only the steps after each row's edit), others through
:func:`~unitprobe.methods.interventions.interchange.patched_outputs`.

:func:`lbfgs` is one search written as a generator: it yields the points (free matrices) it
wants evaluated and receives the loss and gradient at each. :func:`run_searches` drives many
searches together, one batched evaluation per round, so every search follows its own L-BFGS
path and stopping rule exactly as it would alone; :func:`fit_searches` is that driver for
the DAS loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unitprobe.methods.interventions.interchange import (
    MIN_EFFECT,
    pair_runs,
    patched_outputs,
    transfer,
)
from unitprobe.methods.interventions.pairs import Pairs, ReferenceChange, reference_change
from unitprobe.model.lstm import UnitLSTM, as_tensor
from unitprobe.model.stacked import stacked_suffix_outputs, stacked_weights

__all__ = [
    "DAS_ATOL",
    "DAS_LR",
    "DAS_MEMORY",
    "DAS_PATIENCE",
    "DAS_RTOL",
    "Batch",
    "Fit",
    "Networks",
    "PairSums",
    "concat",
    "fit_searches",
    "lbfgs",
    "make_batch",
    "orthonormal",
    "patched_changes",
    "patched_delta",
    "run_searches",
    "score_jobs",
]

#: Length of the first step (steepest descent), relative to the free matrix's norm.
DAS_LR = 0.1
#: A step that lowers the loss by no more than this share of it has stalled ...
DAS_RTOL = 1e-3
#: ... or by no more than this (the loss is relative to ``Σ Δ_ref²``), whichever is larger.
DAS_ATOL = 1e-4
#: Successive stalled steps that end the fit.
DAS_PATIENCE = 3
#: Curvature pairs L-BFGS keeps.
DAS_MEMORY = 10
#: Armijo's sufficient-decrease share, and the halvings of a step before it is given up.
_ARMIJO, _HALVINGS = 1e-4, 10
#: Longest step of the unit-norm free matrix (1: a 45 degree turn of a 1-d basis).
_MAX_STEP = 1.0


@dataclass
class Networks:
    """Networks of one shape searched together, and the layer and states patched."""

    models: list[UnitLSTM]
    layer: int
    states: tuple[str, ...]

    def __post_init__(self) -> None:
        one_layer = all(m.config.n_layers == 1 and not m._interventions for m in self.models)
        self.stacked = (
            stacked_weights(self.models)
            if one_layer and self.layer == 0 and set(self.states) == {"h", "c"}
            else None
        )

    @property
    def n_units(self) -> int:
        return self.models[0].config.n_units


@dataclass
class Batch:
    """Counterfactual pairs in ``N`` networks: shared inputs, each network's runs.

    Attributes
    ----------
    base : Tensor of shape (R, T, F)
        The base inputs (cut to the counted steps).
    steps : Tensor of int64, shape (R,)
    z_base, z_delta : Tensor of shape (N, R, d)
        The layer's states right after each pair's step in the base run, and source - base.
    y_base : Tensor of shape (N, R, T, O)
    refs : list of ReferenceChange, one per network (arrays of shape (R, T, O))
    ref_delta, weight : Tensor of shape (N, R, T, O)
        ``Δ_ref`` (0 outside the mask) and the mask as 0/1.
    """

    base: Tensor
    steps: Tensor
    z_base: Tensor
    z_delta: Tensor
    y_base: Tensor
    refs: list[ReferenceChange]
    ref_delta: Tensor
    weight: Tensor

    @property
    def n(self) -> int:
        """Pairs (rows)."""
        return int(self.steps.shape[0])

    def effects(self) -> list[float]:
        """RMS of each network's reference change (0 where its output ignores the term)."""
        return [transfer(np.zeros_like(r.delta), r).effect for r in self.refs]

    def has_effect(self) -> list[bool]:
        """Per network: whether the reference predicts an output change on these pairs."""
        return [e > MIN_EFFECT for e in self.effects()]

    def rows(self, index: Tensor) -> Batch:
        """The rows ``index`` (its reference changes are kept whole: only the fit uses it)."""
        return Batch(
            self.base[index], self.steps[index], self.z_base[:, index], self.z_delta[:, index],
            self.y_base[:, index], self.refs, self.ref_delta[:, index], self.weight[:, index],
        )  # fmt: skip


def _layer_states(states: dict[str, Tensor], names: tuple[str, ...], layer: int) -> Tensor:
    """``z`` of shape (n_pairs, n_units * len(names)): the named states of one layer."""
    return torch.cat([states[s][layer] for s in names], dim=1)


def make_batch(
    nets: Networks,
    dataset: Any,
    pairs: Pairs,
    reference: str,
    horizon: int | None,
    fields: dict,
) -> Batch:
    """Run ``pairs`` in every network and collect what patching them needs."""
    n_steps = pairs.base.shape[1]
    if horizon is not None:
        n_steps = min(n_steps, int(pairs.step.max()) + horizon + 1)
    z_base, z_delta, y_base, refs = [], [], [], []
    for model in nets.models:
        runs = pair_runs(model, pairs, n_steps)
        refs.append(reference_change(
            pairs, dataset, reference, horizon, runs.y_base, runs.y_source, fields
        ))  # fmt: skip
        base = _layer_states(runs.states_base, nets.states, nets.layer)
        z_base.append(base)
        z_delta.append(_layer_states(runs.states_source, nets.states, nets.layer) - base)
        y_base.append(runs.y_base)
    like = z_base[0]

    def tensor(arrays: list[np.ndarray]) -> Tensor:
        return torch.as_tensor(np.stack(arrays), dtype=like.dtype, device=like.device)

    return Batch(
        base=as_tensor(pairs.base[:, :n_steps], nets.models[0]),
        steps=torch.as_tensor(pairs.step, device=like.device),
        z_base=torch.stack(z_base),
        z_delta=torch.stack(z_delta),
        y_base=tensor(y_base),
        refs=refs,
        ref_delta=tensor([r.delta for r in refs]),
        weight=tensor([r.mask for r in refs]),
    )


def concat(batches: Sequence[Batch]) -> Batch:
    """The batches' rows stacked in order. Batches cut to fewer steps are padded (inputs
    repeat their last step, nothing counts there); the reference changes are those of the
    first batch (only the fit reads the stacked rows)."""
    n_steps = max(b.base.shape[1] for b in batches)

    def pad(x: Tensor, axis: int, zero: bool) -> Tensor:
        extra = n_steps - x.shape[axis]
        if extra == 0:
            return x
        shape = list(x.shape)
        shape[axis] = extra
        tail = x.new_zeros(shape) if zero else x.narrow(axis, x.shape[axis] - 1, 1).expand(shape)
        return torch.cat([x, tail], dim=axis)

    return Batch(
        base=torch.cat([pad(b.base, 1, False) for b in batches]),
        steps=torch.cat([b.steps for b in batches]),
        z_base=torch.cat([b.z_base for b in batches], dim=1),
        z_delta=torch.cat([b.z_delta for b in batches], dim=1),
        y_base=torch.cat([pad(b.y_base, 2, True) for b in batches], dim=1),
        refs=batches[0].refs,
        ref_delta=torch.cat([pad(b.ref_delta, 2, True) for b in batches], dim=1),
        weight=torch.cat([pad(b.weight, 2, True) for b in batches], dim=1),
    )


def patched_delta(
    nets: Networks, batch: Batch, bases: Sequence[Tensor | None], counts: Sequence[int]
) -> Tensor:
    """``Δ_patch`` of shape (N, R, T, O): each block of rows patched along its basis.

    ``bases[j]`` of shape (N, d, k) (each network's basis) patches the next ``counts[j]``
    rows; None patches those rows' whole layer (``z_source``).
    """
    pieces, first = [], 0
    for basis, count in zip(bases, counts, strict=True):
        zb = batch.z_base[:, first : first + count]
        zd = batch.z_delta[:, first : first + count]
        pieces.append(zb + zd if basis is None else zb + (zd @ basis) @ basis.mT)
        first += count
    z = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]  # (N, R, d)
    n_units = nets.n_units
    if nets.stacked is not None:
        h, c = z[..., :n_units], z[..., n_units:]
        y = stacked_suffix_outputs(nets.stacked, batch.base, batch.steps, h, c, batch.y_base)
        return y - batch.y_base
    out = []
    for i, model in enumerate(nets.models):
        new = {
            (s, nets.layer): z[i, :, j * n_units : (j + 1) * n_units]
            for j, s in enumerate(nets.states)
        }
        mask = torch.ones(z.shape[1], n_units, dtype=torch.bool, device=z.device)
        out.append(patched_outputs(model, batch.base, batch.steps, new, {nets.layer: mask}))
    return torch.stack(out) - batch.y_base


def orthonormal(free: Tensor) -> Tensor:
    """The Q factor of ``free`` (..., d, k), with the signs of a positive R diagonal."""
    q, r = torch.linalg.qr(free)
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    return q * torch.sign(diag).where(diag != 0, 1.0).unsqueeze(-2)


def _signed(basis: Tensor) -> Tensor:
    """``basis`` (d, k) with each column's largest entry positive."""
    signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
    return basis * signs.where(signs != 0, 1.0)


@dataclass
class Fit:
    """What one search found: the basis, the loss path and why it stopped."""

    basis: Tensor  # (d, k)
    losses: list[float]
    evaluations: int
    stopped: str


#: A search: yields the points (free matrices) it wants evaluated, receives (loss, gradient)
#: at each, returns its :class:`Fit`.
Search = Generator[Tensor, tuple[float, Tensor], Fit]


def lbfgs(free: Tensor, epochs: int, lr: float = DAS_LR) -> Search:
    """L-BFGS on a free (d, k) matrix whose Q factor is the basis.

    The loss depends on ``free`` only through its Q factor, so it is the same at any scale of
    ``free``: after every step ``free`` is scaled back to norm 1 (and the curvature pairs
    with it), which keeps step lengths meaningful. The first step is steepest descent of
    length ``lr``; later ones take L-BFGS's direction, at most :data:`_MAX_STEP` long, halved
    (Armijo) until the loss falls, so the loss never rises. It stops after
    :data:`DAS_PATIENCE` successive steps that each lower the loss by no more than
    :data:`DAS_RTOL` of it (or :data:`DAS_ATOL`), when no step lowers it, or after ``epochs``
    evaluations.
    """
    if epochs == 0:
        return Fit(_signed(orthonormal(free)), [], 0, "")
    value, grad = yield free
    losses, evaluations, stalled, stopped = [value], 1, 0, "budget"
    memory: list[tuple[Tensor, Tensor, float]] = []
    while evaluations < epochs:
        if not (math.isfinite(value) and torch.isfinite(grad).all()):
            stopped = "not finite"
            break
        if not grad.any():
            stopped = "stationary"
            break
        direction = _search_direction(grad, memory, lr)
        direction *= min(1.0, _MAX_STEP / float(direction.norm()))
        slope = float((grad * direction).sum())
        step, trial = 1.0, None
        for _ in range(_HALVINGS):
            if evaluations == epochs:
                break
            candidate = free + step * direction
            loss, candidate_grad = yield candidate
            evaluations += 1
            if loss <= value + _ARMIJO * step * slope:
                trial = (candidate, loss, candidate_grad)
                break
            step /= 2
        if trial is None:
            if evaluations < epochs and memory:  # stale curvature: retry steepest descent
                memory.clear()
                continue
            stopped = "budget" if evaluations == epochs else "stalled"
            break
        point, new_value, new_grad = trial
        _remember(memory, point - free, new_grad - grad)
        scale = float(point.norm())  # back to norm 1: same loss, gradient x scale
        memory[:] = [(s / scale, y * scale, rho) for s, y, rho in memory]
        stalled = stalled + 1 if value - new_value <= max(DAS_RTOL * value, DAS_ATOL) else 0
        free, value, grad = point / scale, new_value, new_grad * scale
        losses.append(value)
        if stalled == DAS_PATIENCE:
            stopped = "converged"
            break
    return Fit(_signed(orthonormal(free)), losses, evaluations, stopped)


def _search_direction(grad: Tensor, memory: list, first: float) -> Tensor:
    """L-BFGS's two-loop recursion; without curvature pairs (or where it does not descend),
    steepest descent of length ``first``."""
    if memory:
        q, alphas = grad.clone(), []
        for s, y, rho in reversed(memory):
            alphas.append(rho * float((s * q).sum()))
            q -= alphas[-1] * y
        s, y, _ = memory[-1]
        q *= float((s * y).sum() / (y * y).sum())  # the initial Hessian's scale
        for (s, y, rho), alpha in zip(memory, reversed(alphas), strict=True):
            q += (alpha - rho * float((y * q).sum())) * s
        if float((grad * q).sum()) > 0:
            return -q
        memory.clear()
    return -grad * (first / float(grad.norm()))


def _remember(memory: list, s: Tensor, y: Tensor) -> None:
    """Keep the curvature pair ``(s, y)`` where it is positive (the last :data:`DAS_MEMORY`)."""
    sy = float((s * y).sum())
    if sy > 1e-10 * float(s.norm() * y.norm()):
        memory.append((s, y, 1.0 / sy))
        del memory[:-DAS_MEMORY]


def run_searches(
    searches: dict[Any, Search],
    evaluate: Callable[[dict[Any, Tensor]], dict[Any, tuple[float, Tensor]]],
) -> dict[Any, Fit]:
    """Drive independent searches together: each round evaluates every pending point in one
    call of ``evaluate`` (``{key: point} -> {key: (loss, gradient)}``)."""
    fits: dict[Any, Fit] = {}
    points: dict[Any, Tensor] = {}
    for key, search in searches.items():
        try:
            points[key] = next(search)
        except StopIteration as done:
            fits[key] = done.value
    while points:
        results = evaluate(points)
        pending = {}
        for key in points:
            try:
                pending[key] = searches[key].send(results[key])
            except StopIteration as done:
                fits[key] = done.value
        points = pending
    return fits


def fit_searches(
    nets: Networks,
    batches: Sequence[Batch],
    starts: Sequence[Sequence[Tensor]],
    epochs: int,
    lr: float = DAS_LR,
) -> list[list[Fit]]:
    """One DAS search per network and batch, all driven together.

    ``starts[j][i]`` is the start (d, k) of network ``i`` on ``batches[j]``. Each round is one
    patched run of the rows of the batches that some network still searches; the loss of
    network ``i`` on batch ``j`` is ``Σ weight (Δ_patch - Δ_ref)² / Σ weight Δ_ref²``.
    Returns ``fits[j][i]``.
    """
    if not batches:
        return []
    n_nets = len(nets.models)
    norms = torch.stack([(b.weight * b.ref_delta**2).sum(dim=(1, 2, 3)) for b in batches])
    last = {(j, i): starts[j][i] for j in range(len(batches)) for i in range(n_nets)}

    def evaluate(points: dict[tuple[int, int], Tensor]) -> dict:
        last.update(points)
        jobs = sorted({j for j, _ in points})
        part = concat([batches[j] for j in jobs])
        free = torch.stack([torch.stack([last[(j, i)] for j in jobs]) for i in range(n_nets)])
        free = free.detach().requires_grad_()  # (N, J, d, k)
        with torch.enable_grad():
            basis = orthonormal(free)
            counts = [batches[j].n for j in jobs]
            delta = patched_delta(nets, part, [basis[:, m] for m in range(len(jobs))], counts)
            errors = (part.weight * (delta - part.ref_delta) ** 2).sum(dim=(2, 3))  # (N, R)
            sums = torch.stack([e.sum(dim=1) for e in errors.split(counts, dim=1)], dim=1)
            losses = sums / norms[jobs].T  # (N, J)
            (grads,) = torch.autograd.grad(losses.sum(), [free])
        values = losses.detach().cpu().tolist()
        return {(j, i): (values[i][jobs.index(j)], grads[i, jobs.index(j)]) for j, i in points}

    searches = {key: lbfgs(start, epochs, lr) for key, start in last.items()}
    fits = run_searches(searches, evaluate)
    return [[fits[(j, i)] for i in range(n_nets)] for j in range(len(batches))]


@dataclass(frozen=True)
class PairSums:
    """One interchange in one network, per pair: ``Σ Δ_patch·Δ_ref`` and ``Σ Δ_ref²`` over the
    counted outputs, and the RMS effect of ``Δ_ref``."""

    num: np.ndarray  # (n_pairs,)
    den: np.ndarray  # (n_pairs,)
    effect: float

    @property
    def transfer(self) -> float:
        """``Σ num / Σ den`` (NaN where the reference has no effect)."""
        if not self.effect > MIN_EFFECT:
            return math.nan
        return float(self.num.sum() / self.den.sum())

    def resampled(self, index: np.ndarray) -> np.ndarray:
        """The transfer on each resample of the pairs (``index`` of shape (B, n_pairs))."""
        if not self.effect > MIN_EFFECT:
            return np.full(index.shape[0], math.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.num[index].sum(axis=1) / self.den[index].sum(axis=1)


def patched_changes(
    nets: Networks, jobs: Sequence[tuple[Batch, Tensor | None]]
) -> list[np.ndarray]:
    """``Δ_patch`` of each (batch, bases) interchange, from one patched run of all their rows.

    ``bases`` of shape (N, d, k), or None for the whole layer. Returns per job an array of
    shape (N, R, T, O) (each batch's own steps), float64.
    """
    if not jobs:
        return []
    stacked = concat([b for b, _ in jobs])
    with torch.no_grad():
        delta = patched_delta(nets, stacked, [b for _, b in jobs], [b.n for b, _ in jobs])
    delta = delta.double().cpu().numpy()
    out, first = [], 0
    for batch, _ in jobs:
        out.append(delta[:, first : first + batch.n, : batch.refs[0].delta.shape[1]])
        first += batch.n
    return out


def score_jobs(nets: Networks, jobs: Sequence[tuple[Batch, Tensor | None]]) -> list[list[PairSums]]:
    """Each (batch, bases) interchange in every network (:func:`patched_changes`), as the
    per-pair sums of its transfer. Returns ``[job][network]``."""
    out = []
    for (batch, _), block in zip(jobs, patched_changes(nets, jobs), strict=True):
        sums = []
        for i, ref in enumerate(batch.refs):
            num = np.where(ref.mask, block[i] * ref.delta, 0.0).sum(axis=(1, 2))
            den = np.where(ref.mask, ref.delta**2, 0.0).sum(axis=(1, 2))
            sums.append(PairSums(num, den, transfer(np.zeros_like(ref.delta), ref).effect))
        out.append(sums)
    return out
