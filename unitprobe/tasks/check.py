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

import itertools
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.tasks.csvdata import is_data_task
from unitprobe.tasks.generate import Dataset
from unitprobe.tasks.relations import Relation, parse_system
from unitprobe.tasks.spec import TaskSpec

__all__ = [
    "check_summary",
    "parse_series_arg",
    "relation_residuals",
    "rename_relations",
    "renamed_fits",
]

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


def rename_relations(relations: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    """The relations with series renamed at once (``{"K": "X", "X": "K"}`` swaps K and X).

    Examples
    --------
    >>> rename_relations(["X[t] = X[t-1] + 2*K[t]"], {"K": "X", "X": "K"})
    ['K[t] = K[t-1] + 2*X[t]']
    """
    if not mapping:
        return list(relations)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")(?=\s*\[)")
    return [pattern.sub(lambda m: mapping[m.group(1)], text) for text in relations]


#: Most series whose renamings :func:`renamed_fits` tries (6! = 720 permutations).
MAX_RENAMED_SERIES = 6


def renamed_fits(
    spec_or_relations: TaskSpec | Sequence[str] | str,
    data: Mapping[str, np.ndarray | Sequence[float]] | Dataset,
    rtol: float = 1e-9,
) -> pd.DataFrame:
    """How well the data fit the relations under every renaming of their series.

    Every permutation of the series the relations define (at most
    :data:`MAX_RENAMED_SERIES`) is applied to the relations at once, and the renamed
    relations are checked against the data as in :func:`check_summary`.

    Returns
    -------
    DataFrame
        One row per renaming, fewest failing steps first (the identity first among equals):
        ``renaming`` (``"K->X, X->K"``, or ``"as stated"``), ``relations`` (the renamed
        relations joined by ``; ``), ``n_steps``, ``n_failing``, ``failures`` (each failing
        step as ``X[4]: relation 19, data 30``), ``identity`` (bool).

    Examples
    --------
    >>> fits = renamed_fits(["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"],
    ...                     {"K": [0, 1, 1, 2, 3, 5], "X": [1, 4, 7, 12, 30]})
    >>> best = fits.iloc[0]
    >>> best["renaming"], int(best["n_failing"]), best["failures"]
    ('X->K, K->X', 1, 'X[4]: relation 19, data 30')
    """
    if isinstance(spec_or_relations, TaskSpec) and is_data_task(spec_or_relations):
        raise DataError(f"task '{spec_or_relations.name}' is a data task: no relations to rename")
    _, texts = _as_relations(spec_or_relations)
    names = [rel.name for rel in parse_system(list(texts), extra_series=None)]
    if len(names) > MAX_RENAMED_SERIES:
        raise DataError(
            f"{len(names)} series; renamings are tried for at most {MAX_RENAMED_SERIES}"
        )
    rows = []
    for perm in itertools.permutations(names):
        mapping = {a: b for a, b in zip(names, perm, strict=True) if a != b}
        renamed = rename_relations(list(texts), mapping)
        residuals = relation_residuals(renamed, data)
        summary = check_summary(residuals, rtol=rtol)
        failures = _failures(residuals, rtol)
        rows.append(
            {
                "renaming": ", ".join(f"{a}->{b}" for a, b in mapping.items()) or "as stated",
                "relations": "; ".join(renamed),
                "n_steps": int(summary["n_steps"].sum()),
                "n_failing": int(summary["n_failing"].sum()),
                "failures": ", ".join(failures),
                "identity": not mapping,
            }
        )
    out = pd.DataFrame(rows)
    out = out.sort_values(["n_failing", "identity"], ascending=[True, False], kind="stable")
    return out.reset_index(drop=True)


def _failures(residuals: pd.DataFrame, rtol: float) -> list[str]:
    size = np.maximum(1.0, np.maximum(residuals["expected"].abs(), residuals["observed"].abs()))
    bad = residuals[residuals["residual"].abs() > rtol * size]
    return [
        f"{r.series}[{int(r.step)}]: relation {r.expected:g}, data {r.observed:g}"
        for r in bad.itertuples()
    ]


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
