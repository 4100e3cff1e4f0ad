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

The fit is full-batch L-BFGS from seeded random bases (``restarts`` of them; the lowest
training loss is kept and the starts' agreement, :attr:`Direction.agreement` and
:attr:`Direction.overlap`, is reported): each *evaluation* of the loss is one patched run of
the training pairs (from each pair's step on) and one backward pass. A search stops when the
loss stops falling (:func:`~unitprobe.methods.interventions.das.lbfgs`: after
``DAS_PATIENCE`` successive steps that each lower it by no more than ``DAS_RTOL`` of its
value, or ``DAS_ATOL``), when no step along the search direction lowers it, or after
``epochs`` evaluations (then the row's note says so). :func:`direction_search` runs the
searches of many terms, restarts and networks at once: every search keeps its own L-BFGS
state and stopping rule, and each round of evaluations is one batched patched run (one-layer
networks of one shape through :func:`~unitprobe.model.stacked.stacked_suffix_outputs`), so a
batch gives each search the result it would get alone (up to float rounding).

What a direction proves. A scalar input change moves any LSTM's state along about one
direction, so a 1-d direction that transfers most of a term's effect is found in untrained
networks too. A direction is evidence that the layer holds the term only where it is
**bounded** and **specific** (the ``score``):

* bounded: patching the whole layer (every unit's ``h`` and ``c``) on the same held-out
  pairs transfers :attr:`Direction.layer_transfer`, and no share claimed for a direction can
  exceed it (a 1-d patch can overshoot where the rest of the state change cancels);
* specific: the direction learned for one term is scored on the held-out pairs of every
  other term (:attr:`Direction.cross`); the largest share it carries of a material other
  term's effect is its ``leak``. ``score = min(transfer_test, layer_transfer) - leak``.

The pipeline compares the score with the same search on null networks.

Example
-------
>>> d = learn_direction(model, dataset, "X[t-1]", k=1)
>>> d.transfer_test, d.best_unit_transfer, d.leak, d.score
(0.99, 0.5, ('K[t-1]', 0.01), 0.98)
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

from unitprobe.config import RoleConfig, material_terms
from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions.das import (
    DAS_LR,
    Batch,
    Fit,
    Networks,
    PairSums,
    fit_searches,
    make_batch,
    patched_changes,
    score_jobs,
)
from unitprobe.methods.interventions.interchange import (
    N_BOOTSTRAP,
    _quiet,
    check_layers,
    check_states,
    resolve_terms,
    term_transfers,
)
from unitprobe.methods.interventions.pairs import REFERENCES, counterfactual_pairs, term_rng
from unitprobe.methods.interventions.terms import Term, output_fields, parse_term
from unitprobe.model.lstm import UnitLSTM
from unitprobe.schemas import SCHEMAS, STATES
from unitprobe.validation import check_choice, check_float, check_int

__all__ = [
    "DIRECTIONS",
    "DIRECTION_LOADINGS",
    "TEST_FRACTION",
    "Direction",
    "direction_search",
    "direction_table",
    "direction_transfer",
    "directions_frames",
    "learn_direction",
]

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
        The best single unit's transfer on the same held-out pairs (NaN where not measured).
    n_pairs : int
        Pairs used (train + test).
    reference : str
        The reference used (``relations``, ``model`` or ``relations+model``).
    counterfactual_term : Term
        The term whose pairs scored ``transfer_test``.
    note : str
    losses : list of float
        Training loss of the starting basis and after each accepted step (of the kept start).
    evaluations : int
        Evaluations of the training loss spent by the kept start (at most ``epochs``).
    stopped : str
        Why the kept start's fit ended: ``converged`` (the loss stopped falling), ``stalled``
        (no step along the search direction lowered it), ``budget`` (``epochs`` evaluations
        spent), ``stationary`` (zero gradient), ``not finite`` (the loss or its gradient), or
        ``""`` where nothing was fitted. The note names ``budget`` and ``not finite``.
    layer_transfer : float
        Transfer of patching the whole layer on the held-out pairs: the bound of any share.
    cross : dict of str to float
        Transfer of this direction on the held-out pairs of each other scored term.
    material : tuple of str
        The scored terms (this one included) whose output effect is material
        (:func:`unitprobe.config.material_terms`); only they count as leaks.
    overlap : float
        Subspace overlap of the restarts: mean over pairs of starts of ``||R_aᵀ R_b||²_F / k``
        (1: the same subspace; about ``k / d`` for unrelated ones); NaN with one start. State
        dimensions the output never reads (the ``c`` of a unit whose forget gate is shut) are
        free in the fit and lower it.
    agreement : float
        Functional agreement of the restarts: mean over pairs of starts of the cosine between
        their patched output changes on the held-out pairs (1: the starts' directions act
        alike, whatever the free dimensions); NaN with one start.
    restarts : int
        Starts of the search.
    specificity_lo : float
        Lower end of the 95 % bootstrap interval of :attr:`specificity` (the held-out pairs
        of every term resampled).
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
    layer_transfer: float = math.nan
    cross: dict[str, float] = field(default_factory=dict, repr=False)
    material: tuple[str, ...] = ()
    overlap: float = math.nan
    agreement: float = math.nan
    restarts: int = 1
    specificity_lo: float = math.nan

    @property
    def k(self) -> int:
        """Dimension of the subspace."""
        return int(self.basis.shape[1])

    @property
    def leak(self) -> tuple[str, float]:
        """The material other term whose effect this direction carries most, and that share
        (``|transfer|``); ``("", 0.0)`` where no other term is material."""
        others = [(t, abs(v)) for t, v in self.cross.items()
                  if t in self.material and math.isfinite(v)]  # fmt: skip
        return max(others, key=lambda kv: kv[1], default=("", 0.0))

    @property
    def score(self) -> float:
        """``min(transfer_test, layer_transfer) - leak``: the bounded, term-specific share
        (NaN where the direction was not scored on its own term)."""
        return self._bounded - self.leak[1]

    @property
    def specificity(self) -> float:
        """``1 - leak / min(transfer_test, layer_transfer)``: 1 for a direction that carries
        no other material term, 0 for one that carries another as much as its own (NaN where
        its own transfer is not positive)."""
        bounded = self._bounded
        return 1.0 - self.leak[1] / bounded if bounded > 0 else math.nan

    @property
    def _bounded(self) -> float:
        bound = self.layer_transfer if math.isfinite(self.layer_transfer) else math.inf
        return min(self.transfer_test, bound)

    def row(self) -> dict[str, Any]:
        """This direction as a row of :data:`DIRECTIONS`."""
        leak_term, leak = self.leak
        return {
            "layer": self.layer,
            "term": str(self.term),
            "k": self.k,
            "transfer_train": self.transfer_train,
            "transfer_test": self.transfer_test,
            "best_unit_transfer": self.best_unit_transfer,
            "layer_transfer": self.layer_transfer,
            "leak": leak if math.isfinite(self.transfer_test) else math.nan,
            "leak_term": leak_term,
            "score": self.score,
            "specificity": self.specificity,
            "specificity_lo": self.specificity_lo,
            "restart_overlap": self.overlap,
            "restart_agreement": self.agreement,
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


def _start(seed: int, term: Term, restart: int, d: int, k: int, like: Tensor) -> Tensor:
    """The seeded random start of one restart: drawn on the CPU (the generator's device) so
    every device starts from the same basis; norm 1."""
    purpose = 3 if restart == 0 else 1000 + restart
    generator = torch.Generator().manual_seed(int(term_rng(seed, term, purpose).integers(2**31)))
    free = torch.randn(d, k, generator=generator, dtype=like.dtype, device="cpu").to(like.device)
    return free / free.norm()


def _agreement(
    nets: Networks,
    test: dict[Term, Batch],
    jobs: Sequence[tuple[Term, int]],
    fits: Sequence[Sequence[Fit]],
) -> dict[Term, list[float]]:
    """Per term and network: the mean cosine between the restarts' patched output changes
    on the term's held-out pairs (counted outputs only)."""
    bases = [torch.stack([f.basis for f in fits[j]]) for j in range(len(jobs))]
    changes = patched_changes(nets, [(test[t], b) for (t, _), b in zip(jobs, bases, strict=True)])
    out: dict[Term, list[float]] = {}
    for t in dict.fromkeys(u for u, _ in jobs):
        mine = [c for (u, _), c in zip(jobs, changes, strict=True) if u == t]
        values = []
        for i, ref in enumerate(test[t].refs):
            flat = [np.where(ref.mask, c[i], 0.0).ravel() for c in mine]
            pairs = [
                float(a @ b / np.sqrt((a @ a) * (b @ b))) if (a @ a) * (b @ b) > 0 else math.nan
                for k, a in enumerate(flat)
                for b in flat[k + 1 :]
            ]
            values.append(float(np.mean(pairs)) if pairs else math.nan)
        out[t] = values
    return out


def _overlap(bases: Sequence[Tensor]) -> float:
    """Mean over pairs of ``||R_aᵀ R_b||²_F / k`` (NaN for fewer than two bases)."""
    values = [
        float((a.T @ b).pow(2).sum()) / a.shape[1]
        for i, a in enumerate(bases)
        for b in bases[i + 1 :]
    ]
    return float(np.mean(values)) if values else math.nan


def direction_search(
    models: Sequence[UnitLSTM],
    dataset: Any,
    terms: Sequence[str | Term],
    *,
    layer: int = 0,
    scored_terms: Sequence[str | Term] | None = None,
    k: int = 1,
    states: Sequence[str] = STATES,
    n_pairs: int = RoleConfig.n_pairs,
    test_fraction: float = TEST_FRACTION,
    epochs: int = RoleConfig.direction_epochs,
    lr: float = DAS_LR,
    seed: int = 0,
    reference: str = "auto",
    horizon: int | None = None,
    restarts: int = RoleConfig.direction_restarts,
    best_unit: bool = True,
    screen: int | None = None,
    material: float = RoleConfig.material_effect,
) -> list[list[Direction]]:
    """Learn a direction of layer ``layer`` for each of ``terms`` in each of ``models``, all
    searches at once.

    Every direction is scored on its own held-out pairs, on the whole layer's patch of the
    same pairs (``layer_transfer``), and on the held-out pairs of every term of
    ``scored_terms`` (``cross``; the module doc's specificity). The pairs of a term, its
    split, and each restart's start depend only on ``seed`` and the term, so a term's
    direction is the same whichever other terms or networks are searched with it (up to the
    float rounding of the batched runs), and every network sees the same pairs.

    Parameters
    ----------
    models : sequence of UnitLSTM
        Networks of one shape (e.g. null networks); one-layer ones run in one batched
        recurrence (:func:`~unitprobe.model.stacked.stacked_suffix_outputs`).
    dataset : Dataset
        As for :func:`~unitprobe.methods.interventions.interchange_table`.
    terms : sequence of str or Term
        Terms to learn a direction for (``NAME[t-k]`` over the input features).
    layer : int
    scored_terms : sequence of str or Term, optional
        Terms whose held-out pairs score every direction (``terms`` are always included).
    k : int
        Dimension of each subspace, ``1 <= k <= d``.
    states : sequence of {"h", "c"}
        States that span ``z`` (``d = n_units * len(states)``).
    n_pairs : int
        Counterfactual pairs per term, split into training and held-out pairs.
    test_fraction : float
        Share held out (at least one pair each side).
    epochs : int
        Most evaluations of the training loss per start (one patched run of the training
        pairs each, batched over the searches). 0 keeps the random start.
    lr : float
        Length of the first step (steepest descent) relative to the free matrix's norm.
    seed : int
        Seeds the pairs, the split and the starts: the same seed gives the same result.
    reference : {"auto", "model", "relations"}
    horizon : int, optional
        Output steps ``s .. s + horizon`` count (None: through the end).
    restarts : int
        Seeded starts per term; the lowest training loss is kept.
    best_unit : bool
        Also measure the best single unit's transfer on each term's held-out pairs.
    screen : int, optional
        Find the best single unit among the ``screen`` units with the largest first-order
        transfer estimate (patched exactly; see ``interchange_table``); None: every unit.
    material : float
        Share of the largest scored effect below which a scored term is no leak.

    Returns
    -------
    list (per network) of list (per term, in the order of ``terms``) of Direction
    """
    check_choice(reference, "reference", REFERENCES)
    models = list(models)
    if not models:
        raise UnitprobeError("models is empty: give at least one network")
    nets = Networks(models, check_layers(layer, models[0])[0], check_states(states))
    inputs = tuple(dataset.input_names)
    fitted = list(dict.fromkeys(parse_term(t, inputs) for t in terms))
    if not fitted:
        return [[] for _ in models]
    scored = list(dict.fromkeys([*fitted, *(parse_term(t, inputs) for t in scored_terms or ())]))
    d = nets.n_units * len(nets.states)
    k = check_int(k, "k", minimum=1, maximum=d)
    n_pairs = check_int(n_pairs, "n_pairs", minimum=2)
    test_fraction = check_float(
        test_fraction, "test_fraction", minimum=0, maximum=1, strict_minimum=True,
        strict_maximum=True,
    )  # fmt: skip
    epochs = check_int(epochs, "epochs", minimum=0)
    restarts = check_int(restarts, "restarts", minimum=1)
    lr = check_float(lr, "lr", minimum=0, strict_minimum=True)
    horizon = check_int(horizon, "horizon", minimum=0, allow_none=True)
    n_test = min(max(1, round(n_pairs * test_fraction)), n_pairs - 1)
    fields = output_fields(dataset) if reference != "model" else {}
    splits = {}
    for term in scored:
        pairs = counterfactual_pairs(dataset, term, n_pairs, seed=seed)
        order = term_rng(seed, term, 2).permutation(n_pairs)
        splits[term] = (pairs.subset(order[n_test:]), pairs.subset(order[:n_test]))
    test = {t: make_batch(nets, dataset, splits[t][1], reference, horizon, fields) for t in scored}
    train = {t: make_batch(nets, dataset, splits[t][0], reference, horizon, fields)
             for t in fitted}  # fmt: skip
    like = test[fitted[0]].z_base
    jobs = [(t, r) for t in fitted for r in range(restarts)]
    starts = [[_start(seed, t, r, d, k, like)] * len(models) for t, r in jobs]
    fits = fit_searches(nets, [train[t] for t, _ in jobs], starts, epochs, lr)
    kept: list[dict[Term, tuple[Fit, float, float]]] = [{} for _ in models]
    agreement = _agreement(nets, test, jobs, fits) if restarts > 1 else {}
    for i in range(len(models)):
        for t in fitted:
            mine = [fits[j][i] for j, (u, _) in enumerate(jobs) if u == t]
            best = min(mine, key=lambda f: f.losses[-1] if f.losses else math.inf)
            kept[i][t] = (
                best if best.losses else mine[0],
                _overlap([f.basis for f in mine]),
                agreement.get(t, [math.nan] * len(models))[i],
            )
    score: list[tuple[Batch, Tensor | None]] = []
    for t in fitted:
        basis = torch.stack([kept[i][t][0].basis for i in range(len(models))])
        score += [(train[t], basis), (test[t], None), *((test[u], basis) for u in scored)]
    values = iter(score_jobs(nets, score))
    effects = [{str(t): test[t].effects()[i] for t in scored} for i in range(len(models))]
    draws = {str(u): term_rng(seed, u, 1).integers(0, test[u].n, size=(N_BOOTSTRAP, test[u].n))
             for u in scored}  # fmt: skip
    out: list[list[Direction]] = [[] for _ in models]
    for t in fitted:
        train_sums, layer_sums = next(values), next(values)
        cross = {str(u): next(values) for u in scored}
        for i, model in enumerate(models):
            material_set = tuple(s for s in map(str, scored)
                                 if s in material_terms(effects[i], material))  # fmt: skip
            best_value = math.nan
            if best_unit:
                best_value = _best_unit(model, dataset, splits[t][1], test[t].has_effect()[i],
                                        nets, reference, horizon, fields, seed, screen)  # fmt: skip
            mine = {u: v[i] for u, v in cross.items()}
            low = _specificity_lo(str(t), mine, layer_sums[i], material_set, draws)
            out[i].append(_direction(
                t, nets, kept[i][t], train[t], i, train_sums[i].transfer, layer_sums[i].transfer,
                {u: v.transfer for u, v in mine.items()}, best_value, n_pairs, material_set,
                restarts, epochs, low,
            ))  # fmt: skip
    return out


def _direction(
    term: Term, nets: Networks, kept: tuple[Fit, float, float], train: Batch, i: int,
    train_score: float, layer_score: float, cross: dict[str, float], best_value: float,
    n_pairs: int, material_set: tuple[str, ...], restarts: int, epochs: int,
    specificity_lo: float,
) -> Direction:  # fmt: skip
    """The :class:`Direction` of network ``i`` from its kept search and its scores."""
    fit, overlap, agreement = kept
    ref = train.refs[i]
    notes = [ref.note] if ref.note else []
    if not train.has_effect()[i]:
        notes.append("the reference predicts no output change for this term: nothing to learn")
        d = nets.n_units * len(nets.states)
        return Direction(
            term, nets.layer, nets.states, np.zeros((d, fit.basis.shape[1])), math.nan,
            math.nan, best_value, n_pairs, ref.used, term, "; ".join(notes),
            material=material_set, restarts=restarts,
        )  # fmt: skip
    if fit.stopped == "budget":
        notes.append(f"the fit spent all {epochs} loss evaluations with the loss still falling")
    elif fit.stopped == "not finite":
        notes.append("the fit stopped: the training loss or its gradient is not finite")
    return Direction(
        term=term, layer=nets.layer, states=nets.states,
        basis=fit.basis.double().cpu().numpy(), transfer_train=train_score,
        transfer_test=cross.pop(str(term)), best_unit_transfer=best_value, n_pairs=n_pairs,
        reference=ref.used, counterfactual_term=term, note="; ".join(notes),
        losses=fit.losses, evaluations=fit.evaluations, stopped=fit.stopped,
        layer_transfer=layer_score, cross=cross, material=material_set, overlap=overlap,
        agreement=agreement, restarts=restarts, specificity_lo=specificity_lo,
    )  # fmt: skip


def _specificity_lo(
    term: str,
    cross: dict[str, PairSums],
    layer: PairSums,
    material_set: tuple[str, ...],
    draws: dict[str, np.ndarray],
) -> float:
    """Lower end of the 95 % bootstrap interval of the specificity: each term's held-out
    pairs resampled with the seeded draws of
    :func:`~unitprobe.methods.interventions.interchange_table`'s intervals."""
    own = draws[term]
    bounded = np.minimum(cross[term].resampled(own), layer.resampled(own))
    leaks = [np.abs(cross[u].resampled(draws[u])) for u in material_set if u != term]
    leak = np.max(leaks, axis=0) if leaks else np.zeros_like(bounded)
    with np.errstate(invalid="ignore", divide="ignore"):
        specificity = np.where(bounded > 0, 1.0 - leak / bounded, np.nan)
    if not np.isfinite(specificity).all():
        return math.nan  # a resample with no positive transfer: no specificity to claim
    return float(np.percentile(specificity, 2.5))


def _best_unit(
    model, dataset, pairs, has_effect, nets, reference, horizon, fields, seed, screen
) -> float:
    """The best single unit's transfer on ``pairs`` (NaN where the reference has no effect)."""
    if not has_effect:
        return math.nan
    (singles,), exact, _ = term_transfers(
        model, dataset, pairs, [(nets.layer, (u,)) for u in range(nets.n_units)], nets.states,
        [reference], horizon, fields, seed, screen,
    )  # fmt: skip
    measured = [s.transfer for s, e in zip(singles, exact, strict=True) if e]
    return float(max((t for t in measured if not np.isnan(t)), default=np.nan))


def learn_direction(
    model: UnitLSTM,
    dataset: Any,
    term: str | Term,
    *,
    counterfactual_term: str | Term | None = None,
    **options: Any,
) -> Direction:
    """Learn a k-dimensional direction of one layer that carries ``term`` (module doc).

    :func:`direction_search` for one network and one term; ``options`` are its keyword
    parameters (``layer``, ``k``, ``states``, ``n_pairs``, ``epochs``, ``seed``,
    ``reference``, ``restarts``, ...).

    Parameters
    ----------
    model : UnitLSTM
    dataset : Dataset
    term : str or Term
        ``NAME[t-k]`` over the input features.
    counterfactual_term : str or Term, optional
        Score ``transfer_test`` (and the best unit) on the held-out pairs of this term
        instead (the illusion guard: a direction for ``X[t-1]`` should not transfer
        ``K[t-1]``).

    Returns
    -------
    Direction
    """
    scored = [*options.pop("scored_terms", ())]
    if counterfactual_term is not None:
        scored.append(counterfactual_term)
    best_unit = options.pop("best_unit", True)
    ((d,),) = direction_search(
        [model], dataset, [term], scored_terms=scored,
        best_unit=best_unit and counterfactual_term is None, **options,
    )  # fmt: skip
    if counterfactual_term is None:
        return d
    other = parse_term(counterfactual_term, tuple(dataset.input_names))
    if other == d.term:
        return d
    d.counterfactual_term = other
    d.transfer_test = d.cross.get(str(other), math.nan)
    if best_unit:
        d.best_unit_transfer = _counterfactual_best_unit(model, dataset, d, **options)
    d.note = "; ".join(filter(None, [d.note, f"scored on counterfactuals of {other}"]))
    return d


def _counterfactual_best_unit(model: UnitLSTM, dataset: Any, d: Direction, **options) -> float:
    """The best single unit on the held-out pairs of ``d.counterfactual_term``."""
    n_pairs = options.get("n_pairs", RoleConfig.n_pairs)
    test_fraction = options.get("test_fraction", TEST_FRACTION)
    seed, reference = options.get("seed", 0), options.get("reference", "auto")
    horizon = options.get("horizon")
    n_test = min(max(1, round(n_pairs * test_fraction)), n_pairs - 1)
    term = d.counterfactual_term
    pairs = counterfactual_pairs(dataset, term, n_pairs, seed=seed)
    test = pairs.subset(term_rng(seed, term, 2).permutation(n_pairs)[:n_test])
    fields = output_fields(dataset) if reference != "model" else {}
    nets = Networks([model], d.layer, d.states)
    batch = make_batch(nets, dataset, test, reference, horizon, fields)
    return _best_unit(model, dataset, test, batch.has_effect()[0], nets, reference, horizon,
                      fields, seed, options.get("screen"))  # fmt: skip


def direction_transfer(
    model: UnitLSTM,
    dataset: Any,
    direction: Direction,
    term: str | Term | None = None,
    *,
    n_pairs: int = RoleConfig.n_pairs,
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
    nets = Networks([model], direction.layer, direction.states)
    batch = make_batch(nets, dataset, pairs, reference, horizon, fields)
    if batch.z_base.shape[2] != direction.basis.shape[0]:
        raise UnitprobeError(
            f"direction has {direction.basis.shape[0]} rows, the layer's states have "
            f"{batch.z_base.shape[2]}"
        )
    like = batch.z_base
    basis = torch.as_tensor(direction.basis, dtype=like.dtype, device=like.device)[None]
    ((value,),) = score_jobs(nets, [(batch, basis)])
    return value.transfer


def direction_table(
    model: UnitLSTM,
    dataset: Any,
    terms: Any = None,
    *,
    layers: Sequence[int] | int | None = None,
    progress: bool | None = False,
    **options: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`direction_search` of one network for every layer (``terms`` default: every
    term the task's relations read); ``options`` are its keyword parameters.

    Returns
    -------
    directions : DataFrame with the columns of :data:`DIRECTIONS`
        ``attrs["fits"]`` holds, per row, how its fit ended: ``layer``, ``term``,
        ``evaluations`` (of the training loss, at most ``epochs``), ``stopped`` (see
        :class:`Direction`) and the final training ``loss`` (NaN where nothing was fitted).
    direction_loadings : DataFrame with the columns of :data:`DIRECTION_LOADINGS`
    """
    term_list = resolve_terms(terms, dataset)
    found = []
    for layer in tqdm(check_layers(layers, model), desc="directions", disable=_quiet(progress),
                      leave=False):  # fmt: skip
        (mine,) = direction_search([model], dataset, term_list, layer=layer, **options)
        found += mine
    return directions_frames(found)


def directions_frames(found: Sequence[Direction]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``directions`` and ``direction_loadings`` tables of some directions (with
    ``attrs["fits"]`` as in :func:`direction_table`)."""
    table = DIRECTIONS.coerce(pd.DataFrame([d.row() for d in found],
                                           columns=list(DIRECTIONS.columns)))  # fmt: skip
    table.attrs["fits"] = [
        {
            "layer": d.layer, "term": str(d.term), "evaluations": d.evaluations,
            "stopped": d.stopped, "loss": d.losses[-1] if d.losses else np.nan,
        }
        for d in found
    ]  # fmt: skip
    frames = [f for f in (d.loadings() for d in found) if len(f)]
    loads = pd.concat(frames, ignore_index=True) if frames else DIRECTION_LOADINGS.empty()
    return table, DIRECTION_LOADINGS.coerce(loads)
