"""Distributed directions: learn the subspace of a layer's states that carries a term (DAS).

A term may be held by no single unit but by a direction over several (a rotation of the
units). :func:`learn_direction` learns an orthonormal basis ``R`` of shape (d, k) over the
layer's states ``z`` (``h`` then ``c`` of every unit, ``d = n_units * len(states)``) so that
the interchange ``z_base + R Rᵀ (z_source - z_base)`` at step ``s`` reproduces the reference
output change of the term's counterfactual pairs. ``R`` is the Q factor of a free (d, k)
matrix (differentiable QR), fitted on a training share of the pairs (loss:
``Σ (Δ_patch - Δ_ref)² / Σ Δ_ref²``) and scored by its transfer on the held-out pairs, beside
the best single unit's transfer on the same pairs. Gradients flow to the basis only
(:func:`torch.autograd.grad`), so the model is left untouched.

The fit (:func:`learn_direction`) is full-batch L-BFGS from a seeded random basis: each
*evaluation* of the loss is one patched run of the training pairs (from each pair's step on,
:func:`~unitprobe.model.lstm.suffix_outputs`), and an accepted step adds one backward pass.
It stops when the loss stops falling: after :data:`DAS_PATIENCE` successive steps that each
lower it by no more than :data:`DAS_RTOL` of its value (or :data:`DAS_ATOL`, whichever is
larger), when no step along the search direction lowers it, or after ``epochs``
evaluations (then the row's note says so). Where Adam took its whole budget (80 steps on a
256-unit network, the loss still falling), L-BFGS reaches a lower training loss in 15 to 45
evaluations on trained networks (untrained ones, worse conditioned, may take the budget).
Two shortcuts were measured and left out: a start from the top singular vectors of the
state changes ``z_source - z_base`` halves the evaluations on the seed task but, on
``seed-restart``, starts on a plateau and ends in a far worse minimum; fitting on half the
training pairs costs held-out transfer on small networks.

The illusion guard: ``counterfactual_term=`` scores the direction learned for one term on the
pairs of another (a direction that also transfers a term it was not trained on reads more
than the term); the pipeline also runs it on untrained networks.

Example
-------
>>> d = learn_direction(model, dataset, "X[t-1]", k=1)
>>> d.transfer_test, d.best_unit_transfer
(0.99, 0.5)
>>> directions, loadings = direction_table(model, dataset, ["X[t-1]", "K[t-1]"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions.interchange import (
    MIN_EFFECT,
    _quiet,
    check_layers,
    check_states,
    pair_runs,
    patched_outputs,
    resolve_terms,
    term_transfers,
    transfer,
)
from unitprobe.methods.interventions.pairs import (
    REFERENCES,
    Pairs,
    ReferenceChange,
    counterfactual_pairs,
    reference_change,
    term_rng,
)
from unitprobe.methods.interventions.terms import Term, output_fields, parse_term
from unitprobe.model.lstm import UnitLSTM, as_tensor
from unitprobe.schemas import SCHEMAS, STATES
from unitprobe.validation import check_choice, check_float, check_int

__all__ = [
    "DAS_ATOL",
    "DAS_EPOCHS",
    "DAS_LR",
    "DAS_MEMORY",
    "DAS_PAIRS",
    "DAS_PATIENCE",
    "DAS_RTOL",
    "DIRECTIONS",
    "DIRECTION_LOADINGS",
    "TEST_FRACTION",
    "Direction",
    "direction_table",
    "direction_transfer",
    "learn_direction",
]

#: Most evaluations of the training loss in one fit (it usually stops far earlier).
DAS_EPOCHS = 150
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
#: Counterfactual pairs per direction (train + test).
DAS_PAIRS = 512
#: Share of the pairs held out to score the direction.
TEST_FRACTION = 0.25

DIRECTIONS = SCHEMAS["directions"]
DIRECTION_LOADINGS = SCHEMAS["direction_loadings"]


@dataclass
class Direction:
    """A learned subspace of one layer's states and its transfers.

    Attributes
    ----------
    term : Term
        The term it was learned for.
    layer : int
    states : tuple of str
        Order of the state blocks of ``basis`` rows (``h`` then ``c``).
    basis : ndarray of shape (n_units * len(states), k)
        Orthonormal columns; row ``i * n_units + u`` is state ``states[i]`` of unit ``u``. Each
        column's largest entry is positive.
    transfer_train, transfer_test : float
        Transfer on the training pairs and on the held-out pairs (of ``counterfactual_term``).
    best_unit_transfer : float
        The best single unit's transfer on the same held-out pairs.
    n_pairs : int
        Pairs used (train + test).
    reference : str
        The reference used (``relations``, ``model`` or ``relations+model``).
    counterfactual_term : Term
        The term whose pairs scored ``transfer_test``.
    note : str
    losses : list of float
        Training loss of the starting basis and after each accepted step.
    evaluations : int
        Evaluations of the training loss spent (at most ``epochs``).
    stopped : str
        Why the fit ended: ``converged`` (the loss stopped falling), ``stalled`` (no step
        along the search direction lowered it), ``budget`` (``epochs`` evaluations spent),
        ``stationary`` (zero gradient), ``not finite`` (the loss or its gradient), or ``""``
        where nothing was fitted. The note names ``budget`` and ``not finite``.
    """

    term: Term
    layer: int
    states: tuple[str, ...]
    basis: np.ndarray
    transfer_train: float
    transfer_test: float
    best_unit_transfer: float
    n_pairs: int
    reference: str
    counterfactual_term: Term
    note: str = ""
    losses: list[float] = field(default_factory=list, repr=False)
    evaluations: int = 0
    stopped: str = ""

    @property
    def k(self) -> int:
        """Dimension of the subspace."""
        return int(self.basis.shape[1])

    def row(self) -> dict[str, Any]:
        """This direction as a row of :data:`DIRECTIONS`."""
        return {
            "layer": self.layer,
            "term": str(self.term),
            "k": self.k,
            "transfer_train": self.transfer_train,
            "transfer_test": self.transfer_test,
            "best_unit_transfer": self.best_unit_transfer,
            "n_pairs": self.n_pairs,
            "note": self.note,
        }

    def loadings(self) -> pd.DataFrame:
        """The basis as :data:`DIRECTION_LOADINGS` rows (component x state x unit)."""
        n_units = self.basis.shape[0] // len(self.states)
        rows = [
            (self.layer, str(self.term), j, u, state, float(self.basis[i * n_units + u, j]))
            for j in range(self.k)
            for i, state in enumerate(self.states)
            for u in range(n_units)
        ]
        return DIRECTION_LOADINGS.coerce(
            pd.DataFrame(rows, columns=list(DIRECTION_LOADINGS.columns))
        )


def _stack(states: dict[str, Tensor], names: tuple[str, ...], layer: int) -> Tensor:
    """``z`` of shape (n_pairs, n_units * len(names)): the named states of one layer."""
    return torch.cat([states[s][layer] for s in names], dim=1)


@dataclass
class _Batch:
    """What training or scoring a basis on some pairs needs."""

    base: Tensor  # (n, T, F)
    steps: Tensor  # (n,)
    z_base: Tensor  # (n, d)
    z_delta: Tensor  # (n, d)
    y_base: Tensor  # (n, T, O)
    ref: ReferenceChange
    ref_delta: Tensor  # (n, T, O), 0 outside the mask
    weight: Tensor  # (n, T, O), the mask as 0/1


def _batch(
    model: UnitLSTM,
    dataset: Any,
    pairs: Pairs,
    layer: int,
    states: tuple[str, ...],
    reference: str,
    horizon: int | None,
    fields: dict,
) -> _Batch:
    n_steps = pairs.base.shape[1]
    if horizon is not None:
        n_steps = min(n_steps, int(pairs.step.max()) + horizon + 1)
    runs = pair_runs(model, pairs, n_steps)
    ref = reference_change(pairs, dataset, reference, horizon, runs.y_base, runs.y_source, fields)
    z_base = _stack(runs.states_base, states, layer)  # on the model's device
    dtype, device = z_base.dtype, z_base.device
    return _Batch(
        base=as_tensor(pairs.base[:, :n_steps], model),
        steps=torch.as_tensor(pairs.step, device=device),
        z_base=z_base,
        z_delta=_stack(runs.states_source, states, layer) - z_base,
        y_base=torch.as_tensor(runs.y_base, dtype=dtype, device=device),
        ref=ref,
        ref_delta=torch.as_tensor(ref.delta, dtype=dtype, device=device),
        weight=torch.as_tensor(ref.mask, dtype=dtype, device=device),
    )


def _patched(model: UnitLSTM, batch: _Batch, basis: Tensor, layer: int, states: tuple[str, ...]):
    """``Δ_patch`` of shape (n, T, O) for the interchange along ``basis`` (d, k)."""
    z = batch.z_base + (batch.z_delta @ basis) @ basis.T  # (n, d)
    n_units = model.config.n_units
    new = {(s, layer): z[:, i * n_units : (i + 1) * n_units] for i, s in enumerate(states)}
    masks = {layer: torch.ones(z.shape[0], n_units, dtype=torch.bool, device=z.device)}
    fast = {}
    if layer == 0 and set(states) == {"h", "c"}:  # the suffix path needs both base states
        base = {s: batch.z_base[:, i * n_units : (i + 1) * n_units] for i, s in enumerate(states)}
        fast = {"base_states": base, "y_base": batch.y_base}
    return patched_outputs(model, batch.base, batch.steps, new, masks, **fast) - batch.y_base


def _score(model: UnitLSTM, batch: _Batch, basis: Tensor, layer: int, states) -> float:
    with torch.no_grad():
        delta = _patched(model, batch, basis, layer, states).double().cpu().numpy()
    return transfer(delta, batch.ref).transfer


def _orthonormal(free: Tensor) -> Tensor:
    q, r = torch.linalg.qr(free)
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)


@dataclass
class _Fit:
    """What :func:`_fit` found: the basis, the loss path and why it stopped."""

    basis: Tensor  # (d, k)
    losses: list[float]
    evaluations: int
    stopped: str


def _fit(model, batch: _Batch, layer, states, k, epochs, lr, generator) -> _Fit:
    """L-BFGS on a free (d, k) matrix whose Q factor is the basis (the module doc's rule).

    The loss depends on ``free`` only through its Q factor, so it is the same at any scale of
    ``free``: after every step ``free`` is scaled back to norm 1 (and the curvature pairs
    with it), which keeps step lengths meaningful. The first step is steepest descent of
    length ``lr``; later ones take L-BFGS's direction, at most :data:`_MAX_STEP` long, halved
    (Armijo) until the loss falls, so the loss never rises.
    """
    norm = (batch.weight * batch.ref_delta**2).sum()

    def loss_at(free: Tensor) -> Tensor:
        delta = _patched(model, batch, _orthonormal(free), layer, states)
        return (batch.weight * (delta - batch.ref_delta) ** 2).sum() / norm

    d = batch.z_base.shape[1]
    # drawn on the CPU (the generator's device) so every device starts from the same basis
    free = torch.randn(d, k, generator=generator, dtype=batch.z_base.dtype, device="cpu")
    free = free.to(batch.z_base.device)
    free /= free.norm()
    if epochs == 0:
        return _Fit(_signed(_orthonormal(free)), [], 0, "")
    value, grad = _value_and_grad(loss_at, free)
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
        step, trial, loss = 1.0, None, None
        for _ in range(_HALVINGS):
            if evaluations == epochs:
                break
            candidate = (free + step * direction).requires_grad_()
            loss, evaluations = loss_at(candidate), evaluations + 1
            if float(loss.detach()) <= value + _ARMIJO * step * slope:
                trial = candidate
                break
            step /= 2
        if trial is None:
            if evaluations < epochs and memory:  # stale curvature: retry steepest descent
                memory.clear()
                continue
            stopped = "budget" if evaluations == epochs else "stalled"
            break
        (new_grad,) = torch.autograd.grad(loss, [trial])
        trial, new_value = trial.detach(), float(loss.detach())
        _remember(memory, trial - free, new_grad - grad)
        scale = float(trial.norm())  # back to norm 1: same loss, gradient x scale
        memory[:] = [(s / scale, y * scale, rho) for s, y, rho in memory]
        stalled = stalled + 1 if value - new_value <= max(DAS_RTOL * value, DAS_ATOL) else 0
        free, value, grad = trial / scale, new_value, new_grad * scale
        losses.append(value)
        if stalled == DAS_PATIENCE:
            stopped = "converged"
            break
    return _Fit(_signed(_orthonormal(free)), losses, evaluations, stopped)


def _value_and_grad(loss_at, free: Tensor) -> tuple[float, Tensor]:
    free = free.detach().requires_grad_()
    loss = loss_at(free)
    (grad,) = torch.autograd.grad(loss, [free])
    return float(loss.detach()), grad


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


def _signed(basis: Tensor) -> Tensor:
    """``basis`` with each column's largest entry positive."""
    signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
    return basis * signs.where(signs != 0, 1.0)


def learn_direction(
    model: UnitLSTM,
    dataset: Any,
    term: str | Term,
    *,
    layer: int = 0,
    k: int = 1,
    states: Sequence[str] = STATES,
    n_pairs: int = DAS_PAIRS,
    test_fraction: float = TEST_FRACTION,
    epochs: int = DAS_EPOCHS,
    lr: float = DAS_LR,
    seed: int = 0,
    reference: str = "auto",
    horizon: int | None = None,
    counterfactual_term: str | Term | None = None,
    screen: int | None = None,
) -> Direction:
    """Learn a k-dimensional direction of layer ``layer`` that carries ``term`` (module doc).

    Parameters
    ----------
    model : UnitLSTM
    dataset : Dataset
        As for :func:`~unitprobe.methods.interventions.interchange_table`.
    term : str or Term
        ``NAME[t-k]`` over the input features.
    layer : int
    k : int
        Dimension of the subspace, ``1 <= k <= d``.
    states : sequence of {"h", "c"}
        States that span ``z`` (``d = n_units * len(states)``).
    n_pairs : int
        Counterfactual pairs, split into training and held-out pairs.
    test_fraction : float
        Share held out (at least one pair each side).
    epochs : int
        Most evaluations of the training loss (one patched run of the training pairs each;
        an accepted step adds a backward pass). The fit stops earlier once the loss stops
        falling (module doc); ``Direction.evaluations`` and ``stopped`` say how it ended,
        and the note says when the budget ran out first. 0 keeps the random start.
    lr : float
        Length of the first step (steepest descent) relative to the free matrix's norm;
        later steps are L-BFGS's, halved until the loss falls.
    seed : int
        Seeds the pairs, the split and the starting basis: the same seed gives the same result.
    reference : {"auto", "model", "relations"}
    horizon : int, optional
        Output steps ``s .. s + horizon`` count (None: through the end).
    counterfactual_term : str or Term, optional
        Score ``transfer_test`` (and the best unit) on held-out pairs of this term instead.
    screen : int, optional
        Find the best single unit among the ``screen`` units with the largest first-order
        transfer estimate (patched exactly; see ``interchange_table``); None: patch every unit.

    Returns
    -------
    Direction
    """
    check_choice(reference, "reference", REFERENCES)
    states = check_states(states)
    layer = check_layers(layer, model)[0]
    term = parse_term(term, tuple(dataset.input_names))
    scored = term if counterfactual_term is None else parse_term(
        counterfactual_term, tuple(dataset.input_names)
    )  # fmt: skip
    n_units = model.config.n_units
    k = check_int(k, "k", minimum=1, maximum=n_units * len(states))
    n_pairs = check_int(n_pairs, "n_pairs", minimum=2)
    test_fraction = check_float(
        test_fraction, "test_fraction", minimum=0, maximum=1, strict_minimum=True,
        strict_maximum=True,
    )  # fmt: skip
    epochs = check_int(epochs, "epochs", minimum=0)
    lr = check_float(lr, "lr", minimum=0, strict_minimum=True)
    horizon = check_int(horizon, "horizon", minimum=0, allow_none=True)
    n_test = min(max(1, round(n_pairs * test_fraction)), n_pairs - 1)
    fields = output_fields(dataset) if reference != "model" else {}
    pairs = counterfactual_pairs(dataset, term, n_pairs, seed=seed)
    order = term_rng(seed, term, 2).permutation(n_pairs)
    train = pairs.subset(order[n_test:])
    if scored == term:
        test = pairs.subset(order[:n_test])
    else:
        test = counterfactual_pairs(dataset, scored, n_test, seed=seed)
    batch = _batch(model, dataset, train, layer, states, reference, horizon, fields)
    test_batch = _batch(model, dataset, test, layer, states, reference, horizon, fields)
    notes = [batch.ref.note] if batch.ref.note else []
    if scored != term:
        notes.append(f"scored on counterfactuals of {scored}")
    best = np.nan  # every unit's transfer is undefined where the reference has no effect
    if _has_effect(test_batch):
        (singles,), exact, _ = term_transfers(
            model, dataset, test, [(layer, (u,)) for u in range(n_units)], states, [reference],
            horizon, fields, seed, screen,
        )  # fmt: skip
        measured = [s.transfer for s, e in zip(singles, exact, strict=True) if e]
        best = max((t for t in measured if not np.isnan(t)), default=np.nan)
    if not _has_effect(batch):
        notes.append("the reference predicts no output change for this term: nothing to learn")
        basis = np.zeros((n_units * len(states), k))
        return Direction(
            term, layer, states, basis, np.nan, np.nan, float(best), n_pairs, batch.ref.used,
            scored, "; ".join(notes),
        )  # fmt: skip
    generator = torch.Generator().manual_seed(int(term_rng(seed, term, 3).integers(2**31)))
    fit = _fit(model, batch, layer, states, k, epochs, lr, generator)
    if fit.stopped == "budget":
        notes.append(f"the fit spent all {epochs} loss evaluations with the loss still falling")
    elif fit.stopped == "not finite":
        notes.append("the fit stopped: the training loss or its gradient is not finite")
    return Direction(
        term=term,
        layer=layer,
        states=states,
        basis=fit.basis.double().cpu().numpy(),
        transfer_train=_score(model, batch, fit.basis, layer, states),
        transfer_test=_score(model, test_batch, fit.basis, layer, states),
        best_unit_transfer=float(best),
        n_pairs=n_pairs,
        reference=batch.ref.used,
        counterfactual_term=scored,
        note="; ".join(notes),
        losses=fit.losses,
        evaluations=fit.evaluations,
        stopped=fit.stopped,
    )


def _has_effect(batch: _Batch) -> bool:
    """Whether the reference predicts an output change on the batch's pairs."""
    return transfer(np.zeros_like(batch.ref.delta), batch.ref).effect > MIN_EFFECT


def direction_transfer(
    model: UnitLSTM,
    dataset: Any,
    direction: Direction,
    term: str | Term | None = None,
    *,
    n_pairs: int = DAS_PAIRS,
    seed: int = 0,
    reference: str = "auto",
    horizon: int | None = None,
) -> float:
    """Transfer of a learned ``direction`` on fresh counterfactual pairs of ``term``.

    ``term`` defaults to the direction's own term; another term is the illusion guard (a
    direction for ``X[t-1]`` should not transfer ``K[t-1]``). NaN where the output ignores it.
    """
    check_choice(reference, "reference", REFERENCES)
    term = direction.term if term is None else parse_term(term, tuple(dataset.input_names))
    fields = output_fields(dataset) if reference != "model" else {}
    pairs = counterfactual_pairs(dataset, term, n_pairs, seed=seed)
    batch = _batch(model, dataset, pairs, direction.layer, direction.states, reference,
                   horizon, fields)  # fmt: skip
    if batch.z_base.shape[1] != direction.basis.shape[0]:
        raise UnitprobeError(
            f"direction has {direction.basis.shape[0]} rows, the layer's states have "
            f"{batch.z_base.shape[1]}"
        )
    basis = torch.as_tensor(direction.basis, dtype=batch.z_base.dtype, device=batch.z_base.device)
    return _score(model, batch, basis, direction.layer, direction.states)


def direction_table(
    model: UnitLSTM,
    dataset: Any,
    terms: Any = None,
    *,
    layers: Sequence[int] | int | None = None,
    k: int = 1,
    states: Sequence[str] = STATES,
    n_pairs: int = DAS_PAIRS,
    test_fraction: float = TEST_FRACTION,
    epochs: int = DAS_EPOCHS,
    lr: float = DAS_LR,
    seed: int = 0,
    reference: str = "auto",
    horizon: int | None = None,
    progress: bool | None = False,
    screen: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`learn_direction` for every layer x term (``screen``, ``epochs`` as there).

    Returns
    -------
    directions : DataFrame with the columns of :data:`DIRECTIONS`
        ``attrs["fits"]`` holds, per row, how its fit ended: ``layer``, ``term``,
        ``evaluations`` (of the training loss, at most ``epochs``), ``stopped`` (see
        :class:`Direction`) and the final training ``loss`` (NaN where nothing was fitted).
    direction_loadings : DataFrame with the columns of :data:`DIRECTION_LOADINGS`
    """
    term_list = resolve_terms(terms, dataset)
    layer_ids = check_layers(layers, model)
    jobs = [(layer, term) for layer in layer_ids for term in term_list]
    rows, loadings, fits = [], [], []
    for layer, term in tqdm(jobs, desc="directions", disable=_quiet(progress), leave=False):
        d = learn_direction(
            model, dataset, term, layer=layer, k=k, states=states, n_pairs=n_pairs,
            test_fraction=test_fraction, epochs=epochs, lr=lr, seed=seed, reference=reference,
            horizon=horizon, screen=screen,
        )  # fmt: skip
        rows.append(d.row())
        loadings.append(d.loadings())
        fits.append(
            {
                "layer": d.layer, "term": str(d.term), "evaluations": d.evaluations,
                "stopped": d.stopped, "loss": d.losses[-1] if d.losses else np.nan,
            }
        )  # fmt: skip
    table = DIRECTIONS.coerce(pd.DataFrame(rows, columns=list(DIRECTIONS.columns)))
    table.attrs["fits"] = fits
    frames = [f for f in loadings if len(f)]
    loads = pd.concat(frames, ignore_index=True) if frames else DIRECTION_LOADINGS.empty()
    return table, DIRECTION_LOADINGS.coerce(loads)
