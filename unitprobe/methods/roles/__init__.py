"""Combine probe, receptive-field and ablation evidence into one role per unit.

A unit's *role* is the probe target it holds (``K[t-1]``, ``X[t]``, ...) or ``none``.
:func:`assign_roles` reads the result tables of ``docs/architecture.md`` (``probes``,
``ablation``, ``receptive_fields``, ``unit_attribution``, ``identifiability``,
``target_fields``) and returns the ``roles`` table: one row per unit, saying which evidence
decided (``decided_by``) and why (``evidence``, one short line).

Decision procedure
------------------
Per layer and unit (probe rows of state ``state``). A unit whose probe ``r2`` is NaN for every
target is *dead* (constant activation). The thresholds are those of
:class:`~unitprobe.config.RoleConfig`.

1. **Significant targets**: ``p_value <= alpha``, ``selectivity >= min_selectivity`` and
   ``r2 >= min_r2`` (a NaN in any of them fails). The *best* probe target is the significant
   target with the largest ``partial_r2`` (largest ``r2`` where no partial R² is finite; ties
   in natural target order: K[t] before K[t-1] before X[t]).
2. **Can the probe tell?** The probe decision is *ambiguous* when the best target is
   confusable with another significant target (a row of ``identifiability`` with
   ``separable == False`` links them, directly or through other targets), or its
   ``partial_r2`` is missing, or below ``min_partial_r2`` (a target with high R² but no R² of
   its own once the others are regressed out is collinear with them, even where no
   identifiability table was given).
3. **Probe decision** (not ambiguous): role = best target, ``decided_by = "probe"``.
4. **Receptive-field decision** (ambiguous, and the unit has a receptive field): the unit's
   signed receptive field (its rows of ``receptive_fields``: mean
   ``d h_u[t] / d x_f[t - lag]`` over (feature, lag)) is compared with each candidate
   target's field (``target_fields``) by the cosine of the two vectors (cells missing from one
   side count as 0). Candidates: the best target's confusable group plus all significant
   targets, those with a field. The largest ``|cosine|`` wins if it is
   ``>= min_field_similarity``: ``decided_by = "receptive_field"`` (a unit may hold
   ``-K[t]``, hence the absolute value; the sign is in column ``sign``). The receptive field
   reads the network's mechanism (which input, how many steps back), so it separates targets
   that the data makes collinear.
   Where no receptive field matches, the role is ``none`` (``decided_by = "probe"``): a probe
   alone must not claim one of several targets it cannot tell apart. The best probe target
   is kept in ``runner_up`` and the evidence names the group; the confidence is divided by the
   size of the confusable group.
5. **No significant target**: if the unit is *used* (ablation ``usage >= min_usage``) and its
   receptive field matches some target of ``target_fields`` with ``|cosine| >=
   min_field_similarity``, that target is the role (``decided_by = "receptive_field"``).
   Otherwise the role is ``none``: ``decided_by = "ablation"`` when the unit is used ("used by
   the output (+x% MSE) but holds no tested target"), ``"probe"`` when it is not.
6. Dead units get role ``none`` ("constant activation"); ``decided_by = "ablation"`` if
   ablating them still changes the output (a constant acts as a bias), else ``"probe"``.
7. Units with the same role in the same layer are all reported; ``shared_with`` lists the
   others (redundancy is an answer too).

Usage
-----
From single-unit ablation rows (``units`` one integer) with ``output == "all"`` (pooled over
the outputs): ``usage`` = the largest ``rel_delta`` over ablation modes, ``usage_mode`` = that
mode, and ``delta_mse`` = that row's ``delta_mse``. A unit without an ``"all"`` row takes the
largest ``rel_delta`` over its per-output rows (used by any output counts as used).
``used = usage >= min_usage``.

Confidence (always in [0, 1])
-----------------------------
- probe: ``clip(selectivity, 0, 1) * (1 - p_value) * margin``, ``margin = clip((best partial
  R² - runner-up partial R²) / best partial R², 0, 1)`` with the runner-up over all other
  targets probed on the unit (1 without one); ``margin = 1 / n`` for an ambiguous probe
  decision among ``n`` confusable targets.
- receptive_field: ``|cosine| * concentration``, ``concentration`` = share of the receptive
  field's absolute mass (sum of ``|attribution_signed|``) in the (feature, lag) cells that the
  role's field uses.
- ``none``: ``1 - max over targets of clip(selectivity, 0, 1) * (1 - p_value)`` (how little any
  target is held; 1 for dead units).

The ``target_fields`` table
---------------------------
Columns ``target``, ``feature``, ``lag``, ``weight``: each probe target written as a linear
combination of the network's **inputs**, ``target = sum(weight * x_feature[t - lag])``, with
``weight`` in normalized input units (the unit a receptive field is measured in). ``K[t-1]``
is one row ``(K, 1, 1.0)``; ``K[t-1] + 2*X[t]`` is two rows, ``(K, 1, s_K)`` and
``(X, 0, 2 * s_X)`` when inputs are normalized by their standard deviations ``s`` (a factor
common to all rows does not change a cosine). Constants are dropped. Targets that are not
linear in the inputs have no rows. Repeated (target, feature, lag) rows are summed.
:func:`target_fields_from_terms` builds it from coefficients in raw units.

Example
-------
>>> roles = assign_roles(probes, ablation=ablation, receptive_fields=fields,
...                      identifiability=pairs, target_fields=target_fields)
>>> print(summarize_roles(roles))
>>> role_counts(roles)

Modules: :mod:`~unitprobe.methods.roles.assign` (:func:`assign_roles`),
:mod:`~unitprobe.methods.roles.decide` (the rules), :mod:`~unitprobe.methods.roles.evidence`
(reading the tables, :func:`target_fields_from_terms`), :mod:`~unitprobe.methods.roles.formula`
(:func:`unit_formula`), :mod:`~unitprobe.methods.roles.summary` (:func:`summarize_roles`,
:func:`role_counts`).
"""

from __future__ import annotations

from unitprobe.methods.roles.assign import ROLE_COLUMNS, assign_roles
from unitprobe.methods.roles.causal import assign_causal_roles, field_candidates
from unitprobe.methods.roles.evidence import target_fields_from_terms
from unitprobe.methods.roles.formula import unit_formula
from unitprobe.methods.roles.summary import role_counts, summarize_roles, summarize_terms
from unitprobe.methods.roles.terms import term_table

__all__ = [
    "ROLE_COLUMNS",
    "assign_causal_roles",
    "assign_roles",
    "field_candidates",
    "role_counts",
    "summarize_roles",
    "summarize_terms",
    "target_fields_from_terms",
    "term_table",
    "unit_formula",
]
