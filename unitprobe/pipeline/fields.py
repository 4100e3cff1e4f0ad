"""Tables the roles and figures read beside the method tables: target fields and role traces.

Example
-------
>>> target_field_table(dataset, ["K[t-1]", "X[t] + X[t-1]"])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from unitprobe import schemas
from unitprobe.tasks.relations import parse_expression

__all__ = ["target_field_table", "trace_table"]


def target_field_table(data: Any, exprs: list[str]) -> pd.DataFrame:
    """Each target as a linear combination of the network's inputs, in normalized units.

    Parameters
    ----------
    data : Dataset
        Supplies the input names and the normalization maps (``data.norm[name] = (shift, scale)``).
    exprs : list of str
        Target expressions.

    Returns
    -------
    DataFrame with columns ``target``, ``feature``, ``lag``, ``weight``
        ``target = sum(weight * z_feature[t - lag]) + const`` where ``z`` is the normalized
        input. Targets that are not linear in the input series have no rows.
    """
    series = list(data.norm)
    rows = []
    for expr in exprs:
        terms = parse_expression(expr, series).linear_terms()
        if (
            terms is None
            or not terms[0]
            or any(name not in data.input_names for name, _ in terms[0])
        ):
            continue
        for (name, lag), coef in sorted(terms[0].items()):
            rows.append(
                {"target": expr, "feature": name, "lag": lag, "weight": coef * data.norm[name][1]}
            )
    return schemas.frame("target_fields", rows)


def trace_table(
    roles: pd.DataFrame, trace: Any, targets: Any, *, n_sequences: int = 3
) -> pd.DataFrame:
    """Activation of every role unit over time beside its (z-scored) target.

    Returns
    -------
    DataFrame with columns ``layer``, ``unit``, ``role``, ``sequence``, ``step``,
    ``activation`` (the unit's h) and ``target_value`` (the role target, z-scored over the
    probing samples), for the first ``n_sequences`` sequences.
    """
    rows = []
    mask = targets.mask
    seq_of_row, step_of_row = np.nonzero(mask)
    keep = seq_of_row < n_sequences
    for role in roles[roles["role"] != schemas.NO_ROLE].itertuples():
        if role.role not in targets.values.columns:
            continue
        values = targets.values[role.role].to_numpy(float)
        z = (values - values.mean()) / (values.std() or 1.0)
        h = trace.sites["h"][int(role.layer)][:, :, int(role.unit)]  # (N, T)
        h = h.detach().cpu().numpy()
        for s, t, v in zip(seq_of_row[keep], step_of_row[keep], z[keep], strict=True):
            rows.append(
                (
                    int(role.layer),
                    int(role.unit),
                    role.role,
                    int(s),
                    int(t),
                    float(h[s, t]),
                    float(v),
                )
            )
    return schemas.frame("traces", rows)
