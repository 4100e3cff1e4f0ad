"""Counterfactual interchange interventions and learned directions: which units carry a term.

Modules: ``terms`` (terms and the task's output fields), ``pairs`` (counterfactual pairs and
reference changes), ``interchange`` (patching unit states, the ``interchange`` table),
``directions`` (distributed directions learned by gradient descent, the ``directions`` and
``direction_loadings`` tables).

Definitions
-----------
Term
    An input series at a lag, ``(feature, lag)``, written ``NAME[t-lag]`` (``NAME[t]`` for lag
    0). ``NAME`` must be one of the model's input features.
Counterfactual pair
    For term ``F[t-l]`` at intervention step ``s``: the *base* is a sequence of the dataset;
    the *source* is the same sequence with only ``x[s-l, F]`` replaced, by default by the value
    of that input at the same step of another sequence (a seeded derangement, so the change has
    the data's scale), or by ``base + delta``. Steps are sampled (seeded) among the steps with
    ``s - l >= 0``.
Interchange
    Run base and source through :func:`unitprobe.model.lstm.run`; take the state (``h`` and
    ``c`` by default) of units ``U`` of layer ``l`` right after step ``s`` from the source run,
    write it into the base run at step ``s`` only, and continue the base run. Outputs at steps
    ``>= s`` change.
Transfer
    With ``Δ_ref = y_ref - y_base`` and ``Δ_patch = y_patched - y_base`` over the outputs at
    steps ``s .. s + horizon`` (default: through the end of the sequence), ``transfer =
    Σ Δ_patch·Δ_ref / Σ Δ_ref²`` pooled over pairs, with a seeded bootstrap interval over pairs.
    1: the units carry all of the term's effect on the output; 0: none of it.
Reference
    ``"model"``: ``y_ref`` is the model's own output on the source. ``"relations"``: ``Δ_ref``
    is the change the task's relations predict, read from each output's *field* (the output
    written as a linear function of the inputs' lags by unrolling the relations with their
    random terms at their mean, in normalized units); an output without a linear field falls
    back to the model reference, which the table's ``reference`` and ``note`` columns say.
    ``"auto"``: relations where available, else model.
Effect
    The RMS of ``Δ_ref``: a term the output ignores has effect 0 and an undefined transfer.
Distributed direction (DAS)
    An orthonormal basis ``R`` of shape (d, k) over the layer's states (``d = n_units *
    len(states)``), learned (L-BFGS, until the loss stops falling) so that the interchange
    ``z_base + R Rᵀ (z_source - z_base)`` at step ``s`` reproduces the reference change (loss:
    squared error between ``Δ_patch`` and ``Δ_ref``, relative to ``Σ Δ_ref²``), scored by its
    transfer on held-out pairs, beside the best single unit's transfer on the same pairs. A
    direction can be scored on the pairs of another term (``counterfactual_term``) to expose
    interpretability illusions.

Example
-------
>>> table = interchange_table(model, dataset, ["K[t-1]", "X[t]"], n_pairs=256)
>>> direction = learn_direction(model, dataset, "X[t-1]", k=1)
>>> direction.transfer_test, direction.best_unit_transfer
"""

from unitprobe.methods.interventions.directions import (
    DIRECTION_LOADINGS,
    DIRECTIONS,
    Direction,
    direction_search,
    direction_table,
    direction_transfer,
    directions_frames,
    learn_direction,
)
from unitprobe.methods.interventions.interchange import (
    INTERCHANGE,
    interchange_table,
    patched_outputs,
    transfer,
)
from unitprobe.methods.interventions.pairs import (
    REFERENCES,
    Pairs,
    counterfactual_pairs,
    reference_change,
)
from unitprobe.methods.interventions.terms import (
    OutputField,
    Term,
    default_terms,
    output_fields,
    parse_term,
)

__all__ = [
    "DIRECTIONS",
    "DIRECTION_LOADINGS",
    "INTERCHANGE",
    "REFERENCES",
    "Direction",
    "OutputField",
    "Pairs",
    "Term",
    "counterfactual_pairs",
    "default_terms",
    "direction_search",
    "direction_table",
    "direction_transfer",
    "directions_frames",
    "interchange_table",
    "learn_direction",
    "output_fields",
    "parse_term",
    "patched_outputs",
    "reference_change",
    "transfer",
]
