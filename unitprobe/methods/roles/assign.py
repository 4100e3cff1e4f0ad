"""One role per unit from the evidence tables (see :mod:`unitprobe.methods.roles`)."""

from __future__ import annotations

import math

import pandas as pd

from unitprobe import schemas
from unitprobe.config import RoleConfig
from unitprobe.errors import DataError
from unitprobe.methods.roles.decide import Evidence, decide, shared_with
from unitprobe.methods.roles.evidence import (
    confusable_groups,
    field_vectors,
    probe_rows,
    receptive_field_vectors,
    unit_shares,
    usage_table,
)
from unitprobe.methods.roles.formula import unit_formula
from unitprobe.validation import check_choice

__all__ = ["ROLE_COLUMNS", "assign_roles"]

#: Columns of the ``roles`` table, in order.
ROLE_COLUMNS = schemas.SCHEMAS["roles"].columns


def assign_roles(
    probes: pd.DataFrame,
    *,
    ablation: pd.DataFrame | None = None,
    receptive_fields: pd.DataFrame | None = None,
    unit_attribution: pd.DataFrame | None = None,
    identifiability: pd.DataFrame | None = None,
    target_fields: pd.DataFrame | None = None,
    state: str = "h",
    config: RoleConfig | None = None,
    field_method: str | None = None,
    share_method: str | None = None,
) -> pd.DataFrame:
    """Assign each unit the target it holds, or ``none``, from the evidence tables.

    The decision procedure and the confidence formulas are in :mod:`unitprobe.methods.roles`.
    Every table may come straight from :meth:`unitprobe.tables.Tables.read` or from a CSV
    file (ids and numbers as text are converted).

    Parameters
    ----------
    probes : DataFrame
        The ``probes`` table (one row per layer x unit x state x target); needs ``layer``,
        ``unit``, ``state``, ``target``, ``r2``, ``selectivity``, ``p_value``; uses
        ``partial_r2`` and ``coef`` when present.
    ablation : DataFrame, optional
        The ``ablation`` table; needs ``layer``, ``units``, ``mode``, ``output``,
        ``delta_mse``, ``rel_delta``. Only single-unit rows are read.
    receptive_fields : DataFrame, optional
        The ``receptive_fields`` table; needs ``method``, ``state``, ``layer``, ``unit``,
        ``feature``, ``lag``, ``attribution_signed``. Where it holds several states, the rows
        of ``state`` are read.
    unit_attribution : DataFrame, optional
        The ``unit_attribution`` table behind ``attribution_share``; needs ``method``,
        ``output``, ``layer``, ``unit``, ``attribution``. The rows of output ``"all"`` are
        read where there are any.
    identifiability : DataFrame, optional
        The ``identifiability`` table; needs ``target_a``, ``target_b``, ``separable``.
    target_fields : DataFrame, optional
        The ``target_fields`` table: ``target``, ``feature``, ``lag``, ``weight``.
    state : {"h", "c"}, default "h"
        Probe state to read.
    config : RoleConfig, optional
        Thresholds of the rules; default ``RoleConfig()``: ``alpha`` (largest corrected
        p-value of a significant target), ``min_selectivity``, ``min_r2``, ``min_partial_r2``
        (a best target with a smaller partial R² is taken as collinear with the others; in
        [0, 1]), ``min_field_similarity`` (smallest ``|cosine|`` between receptive field and
        target field that decides a role; in [0, 1]), ``min_usage`` (smallest relative MSE
        increase under ablation, 0.05 = +5%, that makes a unit *used*).
    field_method : str, optional
        Method of the receptive fields to read. Default: the only one present, else
        ``"gradient"`` (the mean Jacobian); several others need a choice.
    share_method : str, optional
        Method of the unit attributions behind ``attribution_share``. Default: the only one
        present, else the first by name.

    Returns
    -------
    DataFrame
        The ``roles`` table: one row per unit (sorted by ``layer``, ``unit``) with the columns
        of :data:`ROLE_COLUMNS`: ``role``, ``r2`` and ``selectivity`` (the role's probe
        values, NaN for ``none``), ``delta_mse`` (from the ablation mode of largest
        ``rel_delta``), ``confidence``, ``decided_by``, ``evidence``, then ``used`` (bool),
        ``usage`` (relative MSE increase), ``usage_mode``, ``attribution_share`` (unit's share
        of its layer's output attribution), ``p_value``, ``partial_r2``, ``field_cosine``
        (signed cosine of receptive field and role field), ``sign`` (+1/-1: holds the role or
        its negative), ``runner_up``, ``confusable_with`` and ``shared_with``
        (comma-separated), ``formula`` (the receptive field as a formula, see
        :func:`~unitprobe.methods.roles.unit_formula`; "" without one).

    Raises
    ------
    DataError
        A table lacks columns, holds malformed ids or values, or a threshold is out of range.

    Examples
    --------
    >>> roles = assign_roles(probes, ablation=ablation, receptive_fields=fields,
    ...                      identifiability=pairs, target_fields=target_fields)
    >>> roles.loc[roles["decided_by"] == "receptive_field", ["unit", "role", "evidence"]]
    """
    th = _check_config(config)
    check_choice(state, "state", schemas.STATES, error=DataError)
    units_probes = probe_rows(probes, state)
    usage = usage_table(ablation) if ablation is not None else pd.DataFrame()
    fields_rf = receptive_field_vectors(receptive_fields, state, field_method)
    share = unit_shares(unit_attribution, share_method)
    groups = confusable_groups(identifiability) if identifiability is not None else {}
    fields = field_vectors(target_fields) if target_fields is not None else {}

    keys = set(map(tuple, units_probes[["layer", "unit"]].to_numpy().tolist()))
    keys |= set(usage.index) | set(fields_rf) | set(share)
    rows = []
    by_unit = dict(tuple(units_probes.groupby(["layer", "unit"], sort=True)))
    for key in sorted(keys):
        u = usage.loc[key] if key in usage.index else None
        evidence = Evidence(
            probes=by_unit.get(key, units_probes.iloc[:0]),
            rf=fields_rf.get(key),
            usage=float(u["usage"]) if u is not None else math.nan,
            has_ablation=u is not None,
        )
        row = {"layer": key[0], "unit": key[1], **decide(evidence, fields, groups, th)}
        row["delta_mse"] = float(u["delta_mse"]) if u is not None else math.nan
        row["usage"] = evidence.usage
        row["usage_mode"] = u["usage_mode"] if u is not None else ""
        row["used"] = bool(evidence.usage >= th.min_usage)
        row["attribution_share"] = share.get(key, math.nan)
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(ROLE_COLUMNS))
    out["shared_with"] = shared_with(out)
    out["formula"] = [
        unit_formula(receptive_fields, layer, unit, top=3) if (layer, unit) in fields_rf else ""
        for layer, unit in zip(out["layer"], out["unit"], strict=True)
    ]
    explain = (out["role"] == schemas.NO_ROLE) & out["used"] & (out["formula"] != "")
    out.loc[explain, "evidence"] += "; h ≈ " + out.loc[explain, "formula"]
    out = out.assign(
        kind=[schemas.NO_ROLE if r == schemas.NO_ROLE else "term" for r in out["role"]],
        transfer=math.nan,
        margin=math.nan,
        null_percentile=math.nan,
    )
    return schemas.SCHEMAS["roles"].coerce(out)


def _check_config(config: RoleConfig | None) -> RoleConfig:
    """``config``, default ``RoleConfig()`` (which checks its own thresholds)."""
    config = RoleConfig() if config is None else config
    if not isinstance(config, RoleConfig):
        raise DataError(f"config must be a RoleConfig, got {type(config).__name__}")
    return config
