"""Column names of the result tables (the schemas of DESIGN.md), in one place.

Each tuple lists a table's required columns in order; functions that build a table may add
documented extra columns after them.
"""

from __future__ import annotations

__all__ = ["PROBES", "ABLATION", "ATTRIBUTION", "IDENTIFIABILITY", "ROLES", "TRACES", "FIELDS"]

#: ``probes.csv``: one row per layer x unit (or ``"all"``) x state x target.
PROBES = (
    "layer", "unit", "state", "target", "r2", "r2_std", "r2_control", "selectivity",
    "p_value", "partial_r2", "coef", "n_samples",
)  # fmt: skip
#: ``ablation.csv``: one row per layer x unit group x mode x output (or ``"all"``).
ABLATION = ("layer", "units", "mode", "target", "mse", "mse_base", "delta_mse", "rel_delta")
#: ``attribution.csv``: one row per method x output x kind x feature x lag x unit.
ATTRIBUTION = (
    "method", "target", "kind", "feature", "lag", "layer", "unit", "attribution",
    "attribution_signed",
)  # fmt: skip
#: ``identifiability.csv``: one row per target pair, plus one per target with ``target_b = VIF``.
IDENTIFIABILITY = ("target_a", "target_b", "r2", "separable")
#: ``roles.csv``: one row per unit.
ROLES = (
    "layer", "unit", "role", "r2", "selectivity", "delta_mse", "confidence", "decided_by",
    "evidence",
)  # fmt: skip
#: ``traces.csv``: a role unit's activation beside its z-scored target, per sequence and step.
TRACES = ("layer", "unit", "role", "sequence", "step", "activation", "target_value")
#: ``target_fields.csv``: each target as a linear combination of normalized lagged inputs.
FIELDS = ("target", "feature", "lag", "weight")
