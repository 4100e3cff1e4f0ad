"""Check whether data satisfy relations: residuals step by step.

``relation_residuals`` evaluates the right-hand side of every relation on the data and
compares it with the observed left-hand side at every step where the relation can be
evaluated (all the values it reads exist and are finite). Random terms are evaluated as their
mean (``normal(mean, sd)`` -> mean, ``uniform(a, b)`` -> (a + b) / 2), so a relation with
innovations leaves residuals equal to the innovations.

Example
-------
>>> df = relation_residuals(["X[t] = X[t-1] + X[t-2]"], {"X": [1, 4, 7, 12, 30]})
>>> df[["step", "expected", "observed", "residual"]].to_numpy().tolist()
[[2.0, 5.0, 7.0, 2.0], [3.0, 11.0, 12.0, 1.0], [4.0, 19.0, 30.0, 11.0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.tasks.csvdata import is_data_task
from unitprobe.tasks.generate import Dataset
from unitprobe.tasks.relations import Relation, parse_system
from unitprobe.tasks.spec import TaskSpec

__all__ = ["check_summary", "parse_series_arg", "relation_residuals"]

_COLUMNS = ["relation", "series", "sequence", "step", "expected", "observed", "residual"]


def _as_relations(spec_or_relations) -> tuple[list[Relation], list[str]]:
    if isinstance(spec_or_relations, TaskSpec):
        return spec_or_relations.system, list(spec_or_relations.relations)
    if isinstance(spec_or_relations, str):
        spec_or_relations = [spec_or_relations]
    if isinstance(spec_or_relations, (list, tuple)) and all(
        isinstance(r, Relation) for r in spec_or_relations
    ):
        return list(spec_or_relations), [r.text for r in spec_or_relations]
    return None, spec_or_relations  # parsed later, once the data's names are known


def _as_arrays(data) -> dict[str, np.ndarray]:
    if isinstance(data, Dataset):
        return {name: data.raw_full(name) for name in data.raw}
    if not isinstance(data, Mapping) or not data:
        raise DataError("data must be a non-empty dict series name -> array (T,) or (N, T)")
    arrays = {}
    for name, values in data.items():
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"series '{name}' is not numeric: {values!r:.80}") from None
        if arr.ndim not in (1, 2):
            raise DataError(f"series '{name}' has shape {arr.shape}, must be (T,) or (N, T)")
        arrays[name] = arr if arr.ndim == 2 else arr[None, :]
    n_seq = {a.shape[0] for a in arrays.values()}
    if len(n_seq) > 1:
        shapes = {k: v.shape for k, v in arrays.items()}
        raise DataError(f"series have different numbers of sequences: {shapes}")
    t_max = max(a.shape[1] for a in arrays.values())
    # series of different lengths are aligned at step 0 and padded with NaN at the end
    return {
        k: np.pad(a, ((0, 0), (0, t_max - a.shape[1])), constant_values=np.nan)
        for k, a in arrays.items()
    }


def relation_residuals(
    spec_or_relations: TaskSpec | Sequence[str] | Mapping[str, str] | str,
    data: Mapping[str, np.ndarray | Sequence[float]] | Dataset,
) -> pd.DataFrame:
    """Residuals ``observed - expected`` of every relation at every evaluable step.

    Parameters
    ----------
    spec_or_relations : TaskSpec, list of str, dict or str
        The relations to check. Relations may read series that no relation defines, as long
        as the data hold them.
    data : dict of str to array of shape (T,) or (N, T), or Dataset
        Raw values per series; 1-D series of different lengths are aligned at step 0 (the
        first value is step 0) and the shorter ones padded with NaN. A Dataset contributes
        its raw series including the horizon steps.

    Returns
    -------
    DataFrame
        One row per relation x sequence x step where all the values the relation reads and
        the observed value are finite, with columns ``relation`` (text), ``series``,
        ``sequence`` (0 for 1-D data), ``step``, ``expected`` (right-hand side, random terms
        at their mean), ``observed`` and ``residual`` (observed - expected).

    Raises
    ------
    DataError
        Data missing a series a relation needs, non-numeric data, or a data task (it has no
        relations, only observed series).
    TaskSpecError
        Malformed relations.
    """
    if isinstance(spec_or_relations, TaskSpec) and is_data_task(spec_or_relations):
        raise DataError(
            f"task '{spec_or_relations.name}' is a data task: it has no relations to check, "
            "only observed series"
        )
    arrays = _as_arrays(data)
    relations, texts = _as_relations(spec_or_relations)
    if relations is None:
        relations = parse_system(texts, extra_series=None)
    frames = []
    for rel in relations:
        needed = {rel.name} | {name for name, _ in rel.expr.references}
        missing = sorted(needed - set(arrays))
        if missing:
            raise DataError(
                f"relation '{rel.text}' needs series {missing}; data has {', '.join(arrays)}"
            )
        frames.append(_residuals_one(rel, arrays))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_COLUMNS)
    return df[_COLUMNS]


def _residuals_one(rel: Relation, arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    n, t_len = arrays[rel.name].shape
    m = rel.expr.max_lag
    if m >= t_len:
        return pd.DataFrame(columns=_COLUMNS)

    def lookup(name: str, lag: int) -> np.ndarray:
        return arrays[name][:, m - lag : t_len - lag]  # (N, T - m), step t at column t - m

    expected = rel.expr.evaluate(lookup, None, (n, t_len - m))
    observed = arrays[rel.name][:, m:]
    ok = np.isfinite(observed)
    for name, lag in rel.expr.references:
        ok &= np.isfinite(lookup(name, lag))
    seq, col = np.nonzero(ok)
    return pd.DataFrame(
        {
            "relation": rel.text,
            "series": rel.name,
            "sequence": seq.astype(np.int64),
            "step": (col + m).astype(np.int64),
            "expected": expected[seq, col],
            "observed": observed[seq, col],
            "residual": observed[seq, col] - expected[seq, col],
        }
    )


def check_summary(df: pd.DataFrame, rtol: float = 1e-9) -> pd.DataFrame:
    """Summarize :func:`relation_residuals` per relation.

    A step fails when ``|residual| > rtol * max(1, |expected|, |observed|)``.

    Parameters
    ----------
    df : DataFrame
        Output of :func:`relation_residuals`.
    rtol : float
        Relative tolerance (with an absolute floor of ``rtol``).

    Returns
    -------
    DataFrame
        One row per relation (in order of appearance) with columns ``relation``, ``series``,
        ``n_steps`` (steps checked), ``n_failing``, ``max_abs_residual``,
        ``first_failing_step`` (smallest failing step, -1 if none), ``ok`` (bool).
    """
    missing = [c for c in _COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"residual table lacks columns {missing}")
    rows = []
    for relation, group in df.groupby("relation", sort=False):
        res = group["residual"].to_numpy(dtype=float)
        size = np.maximum.reduce(
            [
                np.ones_like(res),
                group["expected"].abs().to_numpy(),
                group["observed"].abs().to_numpy(),
            ]
        )
        fail = np.abs(res) > rtol * size
        steps = group["step"].to_numpy()
        rows.append(
            {
                "relation": relation,
                "series": group["series"].iloc[0],
                "n_steps": int(len(group)),
                "n_failing": int(fail.sum()),
                "max_abs_residual": float(np.abs(res).max()) if len(res) else 0.0,
                "first_failing_step": int(steps[fail].min()) if fail.any() else -1,
                "ok": bool(not fail.any()),
            }
        )
    columns = ["relation", "series", "n_steps", "n_failing", "max_abs_residual"]
    return pd.DataFrame(rows, columns=[*columns, "first_failing_step", "ok"])


def parse_series_arg(text: str) -> tuple[str, np.ndarray]:
    """Parse a command-line series ``"K=0,1,1,2"`` into ``("K", array([0., 1., 1., 2.]))``.

    Raises
    ------
    DataError
        No ``=``, a name that is not an identifier, or an item that is not a number.
    """
    if not isinstance(text, str) or "=" not in text:
        raise DataError(f"series argument {text!r} must look like 'K=0,1,1,2'")
    name, _, body = text.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise DataError(f"series name {name!r} in {text!r} must be an identifier such as 'K'")
    items = [s.strip() for s in body.replace(" ", ",").split(",") if s.strip()]
    if not items:
        raise DataError(f"series argument {text!r} has no values")
    values = []
    for i, item in enumerate(items):
        try:
            values.append(float(item))
        except ValueError:
            raise DataError(
                f"value {i + 1} of series '{name}' is {item!r}, not a number (in {text!r})"
            ) from None
    return name, np.asarray(values, dtype=np.float64)
