"""Counterfactual pairs for a term, and the output change each reference expects of them.

For term ``F[t-l]`` at step ``s``, a pair is a base sequence and a source that equals it except
for the one value ``x[s - l, F]``: by default the value of the same input at the same step of
another sequence (a seeded derangement of the sequences, so the change has the data's scale),
or ``base + delta`` for a fixed ``delta``. Steps are sampled (seeded) among the steps with
``s - l >= 0``; the output change is read at steps ``s .. s + horizon``.

Example
-------
>>> pairs = counterfactual_pairs(dataset, parse_term("X[t-1]", dataset.input_names), 256)
>>> pairs.base.shape, pairs.step.shape
((256, 20, 2), (256,))
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from unitprobe.errors import DataError, UnitprobeError
from unitprobe.methods.interventions.terms import OutputField, Term, output_fields
from unitprobe.validation import check_choice, check_float, check_int

__all__ = [
    "REFERENCES",
    "Pairs",
    "ReferenceChange",
    "counterfactual_pairs",
    "reference_change",
    "term_rng",
    "window_mask",
]

#: What the patched output change is compared with: ``model`` (the model's own output on the
#: source), ``relations`` (the change the task's relations predict), ``auto`` (relations where
#: the output has a linear field, else model).
REFERENCES = ("auto", "model", "relations")


def term_rng(seed: int, term: Term, purpose: int = 0) -> np.random.Generator:
    """The random stream of one term and purpose: the same for a term whatever the others."""
    check_int(seed, "seed", minimum=0)
    entropy = [int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(str(term).encode()), purpose]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass
class Pairs:
    """Counterfactual pairs of one term.

    Attributes
    ----------
    term : Term
    sequence : ndarray of int64, shape (n_pairs,)
        Index of each pair's base sequence in the dataset.
    step : ndarray of int64, shape (n_pairs,)
        The intervention step ``s`` of each pair.
    base, source : ndarray of float32, shape (n_pairs, n_steps, n_inputs)
        Inputs of the base and source runs; they differ only at ``[i, step[i] - lag, feature]``.
    delta : ndarray of float64, shape (n_pairs,)
        ``source - base`` at that place (normalized input units).
    """

    term: Term
    sequence: np.ndarray
    step: np.ndarray
    base: np.ndarray
    source: np.ndarray
    delta: np.ndarray

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return int(self.step.shape[0])

    def subset(self, idx: np.ndarray) -> Pairs:
        """The pairs ``idx``."""
        return Pairs(
            self.term,
            self.sequence[idx],
            self.step[idx],
            self.base[idx],
            self.source[idx],
            self.delta[idx],
        )


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random cyclic permutation of ``range(n)`` (Sattolo): no element maps to itself."""
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def counterfactual_pairs(
    dataset: Any,
    term: Term,
    n_pairs: int,
    *,
    seed: int = 0,
    delta: float | None = None,
) -> Pairs:
    """Sample ``n_pairs`` counterfactual pairs of ``term`` (see the module docstring).

    Parameters
    ----------
    dataset : Dataset
        ``inputs`` of shape (n_sequences, n_steps, n_inputs) and ``input_names``.
    term : Term
    n_pairs : int
        Pairs to draw; (sequence, step) combinations are drawn without replacement while there
        are enough of them, with replacement otherwise.
    seed : int
        Seeds the draw through :func:`term_rng` (the pairs of a term do not depend on the other
        terms asked for).
    delta : float, optional
        Change the value by this fixed amount instead of taking another sequence's value.

    Returns
    -------
    Pairs
    """
    n_pairs = check_int(n_pairs, "n_pairs", minimum=1)
    delta = check_float(delta, "delta", allow_none=True)
    x = np.asarray(dataset.inputs, dtype=np.float32)
    n_seq, n_steps, _ = x.shape
    feature = list(dataset.input_names).index(term.feature)
    n_valid = n_steps - term.lag
    if n_valid < 1:
        raise DataError(
            f"term {term} reaches back {term.lag} steps; the sequences have only {n_steps}"
        )
    if delta is None and n_seq < 2:
        raise DataError(
            f"counterfactuals of {term} take the value from another sequence; the data have "
            "1 sequence (pass delta= for a fixed change, or cut windows)"
        )
    rng = term_rng(seed, term)
    total = n_seq * n_valid
    draw = rng.choice(total, size=n_pairs, replace=n_pairs > total)
    sequence = (draw // n_valid).astype(np.int64)
    step = (term.lag + draw % n_valid).astype(np.int64)
    base = x[sequence]
    source = base.copy()
    rows = np.arange(n_pairs)
    at = step - term.lag
    if delta is None:
        donor = _derangement(n_seq, rng)[sequence]
        source[rows, at, feature] = x[donor, at, feature]
    else:
        source[rows, at, feature] = base[rows, at, feature] + np.float32(delta)
    change = source[rows, at, feature].astype(np.float64) - base[rows, at, feature]
    return Pairs(term, sequence, step, base, source, change)


def window_mask(step: np.ndarray, n_steps: int, horizon: int | None) -> np.ndarray:
    """Bool array of shape (n_pairs, n_steps): output steps ``step .. step + horizon``."""
    t = np.arange(n_steps)[None, :]
    mask = t >= step[:, None]
    if horizon is not None:
        mask &= t <= step[:, None] + horizon
    return mask


@dataclass
class ReferenceChange:
    """The output change a reference expects, and where it is counted.

    Attributes
    ----------
    delta : ndarray of float64, shape (n_pairs, n_steps, n_outputs)
        ``Δ_ref``: expected change of every output at every step (0 outside ``mask``).
    mask : ndarray of bool, same shape
        Outputs counted: steps ``s .. s + horizon``, and for relation fields only the steps
        where the field holds.
    used : str
        ``"relations"``, ``"model"`` or ``"relations+model"`` (per output).
    note : str
        Why an output fell back to the model reference ("" when none did).
    """

    delta: np.ndarray
    mask: np.ndarray
    used: str
    note: str


def reference_change(
    pairs: Pairs,
    dataset: Any,
    reference: str,
    horizon: int | None,
    y_base: np.ndarray,
    y_source: np.ndarray,
    fields: dict[str, OutputField | None] | None = None,
) -> ReferenceChange:
    """``Δ_ref`` of every pair for ``reference`` (``auto``, ``model`` or ``relations``).

    Parameters
    ----------
    pairs : Pairs
    dataset : Dataset
        Supplies the output names and, for the relations reference, spec and normalization.
    reference : {"auto", "model", "relations"}
    horizon : int or None
        Output steps ``s .. s + horizon`` count (None: through the end of the sequence).
    y_base, y_source : ndarray of shape (n_pairs, n_steps, n_outputs)
        The model's outputs on the base and source inputs.
    fields : dict, optional
        :func:`~unitprobe.methods.interventions.terms.output_fields` of ``dataset`` (computed
        when not given).
    """
    check_choice(reference, "reference", REFERENCES)
    n_pairs, n_steps, n_out = y_base.shape
    window = window_mask(pairs.step, n_steps, horizon)
    delta = np.zeros((n_pairs, n_steps, n_out))
    mask = np.repeat(window[:, :, None], n_out, axis=2)
    if fields is None:
        fields = output_fields(dataset) if reference != "model" else {}
    outputs = list(dataset.output_names)
    if len(outputs) != n_out:
        raise UnitprobeError(f"the data name {len(outputs)} outputs, the model has {n_out}")
    kinds, fallback = [], []
    model_change = np.asarray(y_source, np.float64) - np.asarray(y_base, np.float64)
    t = np.arange(n_steps)[None, :]
    lag_at = t - pairs.step[:, None] + pairs.term.lag  # field lag that reads the changed value
    for o, name in enumerate(outputs):
        field = fields.get(name) if reference != "model" else None
        if field is None:
            kinds.append("model")
            if reference != "model":
                fallback.append(name)
            delta[:, :, o] = np.where(window, model_change[:, :, o], 0.0)
            continue
        kinds.append("relations")
        by_lag = np.array([field.weight(pairs.term, j) for j in range(n_steps + pairs.term.lag)])
        coef = by_lag[np.clip(lag_at, 0, len(by_lag) - 1)]  # (n_pairs, n_steps)
        valid = window & (t >= field.min_step)
        delta[:, :, o] = np.where(valid, coef * pairs.delta[:, None], 0.0)
        mask[:, :, o] = valid
    used = "+".join(sorted(set(kinds), reverse=True))
    note = ""
    if fallback:
        note = (
            f"no linear relation field for output(s) {', '.join(fallback)}: model reference there"
        )
    return ReferenceChange(delta, mask, used, note)
