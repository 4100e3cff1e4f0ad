"""Distributed directions: learn the subspace of a layer's states that carries a term (DAS).

A term may be held by no single unit but by a direction over several (a rotation of the
units). :func:`learn_direction` learns an orthonormal basis ``R`` of shape (d, k) over the
layer's states ``z`` (``h`` then ``c`` of every unit, ``d = n_units * len(states)``) so that
the interchange ``z_base + R Rᵀ (z_source - z_base)`` at step ``s`` reproduces the reference
output change of the term's counterfactual pairs. ``R`` is the Q factor of a free (d, k)
matrix (differentiable QR), fitted with Adam on a training share of the pairs (loss:
``Σ (Δ_patch - Δ_ref)² / Σ Δ_ref²``) and scored by its transfer on the held-out pairs, beside
the best single unit's transfer on the same pairs. Gradients flow to the basis only
(:func:`torch.autograd.grad`), so the model is left untouched.

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
    "DAS_EPOCHS",
    "DAS_LR",
    "DAS_PAIRS",
    "DIRECTIONS",
    "DIRECTION_LOADINGS",
    "TEST_FRACTION",
    "Direction",
    "direction_table",
    "direction_transfer",
    "learn_direction",
]

#: Full-batch Adam steps of the basis.
DAS_EPOCHS = 150
#: Adam learning rate of the basis.
DAS_LR = 0.05
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
        Training loss per epoch.
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
    z_base = _stack(runs.states_base, states, layer)
    dtype = z_base.dtype
    return _Batch(
        base=as_tensor(pairs.base[:, :n_steps], model),
        steps=torch.as_tensor(pairs.step),
        z_base=z_base,
        z_delta=_stack(runs.states_source, states, layer) - z_base,
        y_base=torch.as_tensor(runs.y_base, dtype=dtype),
        ref=ref,
        ref_delta=torch.as_tensor(ref.delta, dtype=dtype),
        weight=torch.as_tensor(ref.mask, dtype=dtype),
    )


def _patched(model: UnitLSTM, batch: _Batch, basis: Tensor, layer: int, states: tuple[str, ...]):
    """``Δ_patch`` of shape (n, T, O) for the interchange along ``basis`` (d, k)."""
    z = batch.z_base + (batch.z_delta @ basis) @ basis.T  # (n, d)
    n_units = model.config.n_units
    new = {(s, layer): z[:, i * n_units : (i + 1) * n_units] for i, s in enumerate(states)}
    masks = {layer: torch.ones(z.shape[0], n_units, dtype=torch.bool)}
    fast = {}
    if layer == 0 and set(states) == {"h", "c"}:  # the suffix path needs both base states
        base = {s: batch.z_base[:, i * n_units : (i + 1) * n_units] for i, s in enumerate(states)}
        fast = {"base_states": base, "y_base": batch.y_base}
    return patched_outputs(model, batch.base, batch.steps, new, masks, **fast) - batch.y_base


def _score(model: UnitLSTM, batch: _Batch, basis: Tensor, layer: int, states) -> float:
    with torch.no_grad():
        delta = _patched(model, batch, basis, layer, states).double().numpy()
    return transfer(delta, batch.ref).transfer


def _orthonormal(free: Tensor) -> Tensor:
    q, r = torch.linalg.qr(free)
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)


def _fit(model, batch: _Batch, layer, states, k, epochs, lr, generator) -> tuple[Tensor, list]:
    """Adam on a free (d, k) matrix whose Q factor is the basis; returns the basis and losses.

    Adam's update is written out (betas 0.9, 0.999): ``torch.optim`` costs seconds to import.
    """
    d = batch.z_base.shape[1]
    free = torch.randn(d, k, generator=generator, dtype=batch.z_base.dtype).requires_grad_()
    first, second = torch.zeros_like(free), torch.zeros_like(free)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    norm = (batch.weight * batch.ref_delta**2).sum()
    losses = []
    for epoch in range(1, epochs + 1):
        delta = _patched(model, batch, _orthonormal(free), layer, states)
        loss = (batch.weight * (delta - batch.ref_delta) ** 2).sum() / norm
        (grad,) = torch.autograd.grad(loss, [free])
        with torch.no_grad():
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step = lr * (first / (1 - beta1**epoch)) / ((second / (1 - beta2**epoch)).sqrt() + eps)
            free -= step
        losses.append(float(loss.detach()))
    basis = _orthonormal(free.detach())
    signs = torch.sign(basis.gather(0, basis.abs().argmax(dim=0, keepdim=True)))
    return basis * signs, losses


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
    epochs, lr : int, float
        Full-batch Adam steps and learning rate.
    seed : int
        Seeds the pairs, the split and the initial basis: the same seed gives the same result.
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
    (singles,), exact, _ = term_transfers(
        model, dataset, test, [(layer, (u,)) for u in range(n_units)], states, [reference],
        horizon, fields, seed, screen,
    )  # fmt: skip
    measured = [s.transfer for s, e in zip(singles, exact, strict=True) if e]
    best = max((t for t in measured if not np.isnan(t)), default=np.nan)
    effect = transfer(np.zeros_like(batch.ref.delta), batch.ref).effect
    if not effect > MIN_EFFECT:
        notes.append("the reference predicts no output change for this term: nothing to learn")
        basis = np.zeros((n_units * len(states), k))
        return Direction(
            term, layer, states, basis, np.nan, np.nan, float(best), n_pairs, batch.ref.used,
            scored, "; ".join(notes),
        )  # fmt: skip
    generator = torch.Generator().manual_seed(int(term_rng(seed, term, 3).integers(2**31)))
    basis, losses = _fit(model, batch, layer, states, k, epochs, lr, generator)
    return Direction(
        term=term,
        layer=layer,
        states=states,
        basis=basis.double().numpy(),
        transfer_train=_score(model, batch, basis, layer, states),
        transfer_test=_score(model, test_batch, basis, layer, states),
        best_unit_transfer=float(best),
        n_pairs=n_pairs,
        reference=batch.ref.used,
        counterfactual_term=scored,
        note="; ".join(notes),
        losses=losses,
    )


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
    basis = torch.as_tensor(direction.basis, dtype=batch.z_base.dtype)
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
    """:func:`learn_direction` for every layer x term (``screen`` as there).

    Returns
    -------
    directions : DataFrame with the columns of :data:`DIRECTIONS`
    direction_loadings : DataFrame with the columns of :data:`DIRECTION_LOADINGS`
    """
    term_list = resolve_terms(terms, dataset)
    layer_ids = check_layers(layers, model)
    jobs = [(layer, term) for layer in layer_ids for term in term_list]
    rows, loadings = [], []
    for layer, term in tqdm(jobs, desc="directions", disable=_quiet(progress), leave=False):
        d = learn_direction(
            model, dataset, term, layer=layer, k=k, states=states, n_pairs=n_pairs,
            test_fraction=test_fraction, epochs=epochs, lr=lr, seed=seed, reference=reference,
            horizon=horizon, screen=screen,
        )  # fmt: skip
        rows.append(d.row())
        loadings.append(d.loadings())
    table = DIRECTIONS.coerce(pd.DataFrame(rows, columns=list(DIRECTIONS.columns)))
    frames = [f for f in loadings if len(f)]
    loads = pd.concat(frames, ignore_index=True) if frames else DIRECTION_LOADINGS.empty()
    return table, DIRECTION_LOADINGS.coerce(loads)
