"""A unit's receptive field written as a short linear formula over lagged inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unitprobe.errors import UnitprobeError
from unitprobe.validation import check_int

__all__ = ["unit_formula"]


def unit_formula(
    receptive_fields: pd.DataFrame,
    layer: int,
    unit: int,
    top: int = 3,
    *,
    method: str | None = None,
    state: str | None = None,
    digits: int = 3,
    rel_tol: float = 1e-3,
) -> str:
    """A short linear formula of a unit from its receptive field's signed coefficients.

    Parameters
    ----------
    receptive_fields : DataFrame
        The ``receptive_fields`` table (``method``, ``state``, ``layer``, ``unit``,
        ``feature``, ``lag``, ``attribution_signed``), one row per method x state x layer x
        unit x input feature x lag.
    layer, unit : int
    top : int, default 3
        Most terms shown, the largest ``|attribution_signed|`` first.
    method, state : str, optional
        Which method / state to use when the table holds several; default the first present
        (rows ordered by feature name, then lag).
    digits : int, default 3
        Significant digits of the coefficients.
    rel_tol : float, default 1e-3
        Terms smaller than ``rel_tol`` times the largest ``|coefficient|`` are dropped (they
        are float rounding or leaks through saturated gates, not a reading).

    Returns
    -------
    str
        Terms ``coef·NAME[t-lag]`` (``NAME[t]`` for lag 0), e.g.
        ``"0.218·X[t] + 0.0973·K[t] + 0.0705·X[t-1]"``; ``"0"`` when every coefficient is zero.

    Raises
    ------
    UnitprobeError
        No rows for this layer and unit (or for the chosen method or state).
    """
    check_int(top, "top", minimum=1)
    rows = receptive_fields[
        (receptive_fields["layer"] == layer) & (receptive_fields["unit"] == unit)
    ]
    if rows.empty:
        raise UnitprobeError(f"no receptive-field rows for layer {layer}, unit {unit}")
    rows = rows.sort_values(["feature", "lag"], kind="stable")  # ties: by feature name, then lag
    for column, value in (("method", method), ("state", state)):
        chosen = value if value is not None else rows[column].iloc[0]
        rows = rows[rows[column] == chosen]
        if rows.empty:
            raise UnitprobeError(f"no receptive-field rows with {column} == {chosen!r}")
    coef = rows["attribution_signed"].to_numpy(dtype=float)
    order = np.argsort(-np.abs(np.nan_to_num(coef)), kind="stable")[:top]
    largest = np.nanmax(np.abs(coef)) if np.isfinite(coef).any() else 0.0
    terms = []
    for k in order:
        value = coef[k]
        if not np.isfinite(value) or value == 0.0 or abs(value) < rel_tol * largest:
            continue
        lag = int(rows["lag"].iloc[k])
        name = f"{rows['feature'].iloc[k]}[t{'-' + str(lag) if lag else ''}]"
        sign = "-" if value < 0 else "+"
        terms.append((sign, f"{abs(value):.{digits}g}·{name}"))
    if not terms:
        return "0"
    first_sign, first = terms[0]
    text = ("-" if first_sign == "-" else "") + first
    return text + "".join(f" {sign} {term}" for sign, term in terms[1:])
