"""Load sequences from a CSV file into a :class:`~unitprobe.tasks.generate.Dataset`.

Layout: a header row, then one column per series (the header names are the series names),
optionally a sequence-id column (rows are grouped by it; sequences keep the order in which
their ids first appear) and a time column (rows are sorted by it within each sequence, then
it is dropped). Without a sequence column the whole file is one sequence, which ``window``
cuts into windows of ``window`` steps every ``stride`` steps (trailing steps that do not fill
a window are dropped; windows never cross sequences).

Missing values (empty cells, ``NA``, ``NaN``, ``null``, ``N/A``) are refused with their line
number unless ``fill`` is ``"interpolate"`` (linear within a sequence; leading and trailing
gaps take the nearest value) or ``"ffill"`` (forward fill within a sequence; a sequence may
not start with a gap). Blank lines are skipped; line numbers count the header as line 1.

With a ``spec``, the series it feeds and predicts must be present; every spec series found
in the file is loaded. The data are the raw series, normalized with one affine map per series
over the whole dataset as :func:`~unitprobe.tasks.generate.generate` does, and targets are
built with ``spec.horizon``, so a sequence (or window) of ``n`` steps gives ``n - horizon``
input steps; the dataset's spec is the given one with ``length`` set to that number. The
spec's observation noise is not added to loaded data (they are observations already).
Without a spec, every loaded series is both an input and a prediction target, with horizon 1,
and ``dataset.spec`` is None.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.tasks.generate import Dataset, dataset_from_raw
from unitprobe.tasks.spec import TaskSpec

__all__ = ["load_csv"]

_MISSING = {"", "na", "nan", "n/a", "null", "none"}
_FILLS = (None, "interpolate", "ffill")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _read_header(path: Path, sep: str) -> list[str]:
    if not path.exists():
        raise DataError(f"CSV file '{path}' not found")
    if not path.is_file():
        raise DataError(f"'{path}' is not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            first = ""
            for line in fh:
                if line.strip():
                    first = line
                    break
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV file '{path}': {exc}") from None
    if not first:
        raise DataError(f"CSV file '{path}' is empty")
    header = [h.strip() for h in next(csv.reader([first], delimiter=sep))]
    if len(header) == 1:
        for other in (";", "\t", ",", "|"):
            if other != sep and other in header[0]:
                shown = "\\t" if other == "\t" else other
                raise DataError(
                    f"CSV file '{path}' has a single column {header[0]!r}; the file looks "
                    f"'{shown}'-delimited: pass sep='{shown}' or save it comma-separated"
                )
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise DataError(f"CSV file '{path}': header column(s) {empty} have no name")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"CSV file '{path}': duplicate column names {dupes} in the header")
    return header


def _read_table(path: Path, sep: str, header: list[str]) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse CSV file '{path}': {exc}") from None
    if len(df.columns) != len(header):
        raise DataError(
            f"CSV file '{path}': header has {len(header)} columns, table has {len(df.columns)}"
        )
    df.columns = header
    # the index + 2 is the line number (header = line 1); then drop blank lines
    blank = df.apply(lambda s: s.str.strip() == "").all(axis=1)
    df = df[~blank.to_numpy()]
    if df.empty:
        raise DataError(f"CSV file '{path}' has a header but no data rows")
    return df


def _select_columns(
    header: list[str],
    spec: TaskSpec | None,
    series: list[str] | None,
    reserved: list[str],
    path: Path,
) -> list[str]:
    for role, col in zip(("sequence_col", "time_col"), reserved, strict=True):
        if col is not None and col not in header:
            raise DataError(f"{role} '{col}' is not a column of '{path}'; available: {header}")
    reserved = [c for c in reserved if c is not None]
    if series is not None:
        if isinstance(series, str) or not all(isinstance(s, str) for s in series):
            raise DataError(f"series == {series!r}, must be a list of column names")
        wanted = list(series)
    elif spec is None:
        wanted = [h for h in header if h not in reserved]
    else:
        wanted = []
    if spec is not None:
        required = list(dict.fromkeys([*spec.inputs, *spec.predict]))
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(
                f"CSV file '{path}' lacks the columns {missing} that task '{spec.name}' "
                f"needs (inputs + predict); available columns: {header}"
            )
        extra = [s for s in spec.series if s in header]
        wanted = list(dict.fromkeys([*extra, *wanted]))
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"CSV file '{path}' lacks columns {missing}; available columns: {header}")
    clash = [c for c in wanted if c in reserved]
    if clash:
        raise DataError(f"columns {clash} cannot be both a series and the sequence/time column")
    if not wanted:
        raise DataError(f"CSV file '{path}' has no series columns")
    return wanted


def _numeric(df: pd.DataFrame, columns: list[str], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Values (n_rows, n_columns) with NaN for missing cells, and the missing mask."""
    values = np.empty((len(df), len(columns)))
    missing = np.zeros((len(df), len(columns)), dtype=bool)
    lines = df.index.to_numpy() + 2
    for j, col in enumerate(columns):
        text = df[col].str.strip()
        miss = text.str.lower().isin(_MISSING).to_numpy()
        num = pd.to_numeric(text.where(~miss), errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(num) & ~miss
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"CSV file '{path}': non-numeric value {df[col].iloc[i]!r} in column '{col}' "
                f"at line {lines[i]}"
            )
        values[:, j] = num
        missing[:, j] = miss | np.isnan(num)
    return values, missing


def _sort_keys(df: pd.DataFrame, sequence_col, time_col, path: Path):
    n = len(df)
    lines = df.index.to_numpy() + 2
    if sequence_col is not None:
        raw_ids = df[sequence_col].str.strip()
        empty = (raw_ids == "").to_numpy()
        if empty.any():
            raise DataError(
                f"CSV file '{path}': missing sequence id in column '{sequence_col}' "
                f"at line {lines[int(np.argmax(empty))]}"
            )
        codes, labels = pd.factorize(raw_ids)  # in order of first appearance
        labels = [str(x) for x in labels]
    else:
        codes, labels = np.zeros(n, dtype=np.int64), ["0"]
    if time_col is None:
        return codes, labels, np.arange(n)
    text = df[time_col].str.strip()
    time = pd.to_numeric(text, errors="coerce")
    if time.isna().any():
        try:
            time = pd.to_datetime(text, errors="raise")
        except (ValueError, TypeError):
            i = int(np.argmax(time.isna().to_numpy()))
            raise DataError(
                f"CSV file '{path}': time value {df[time_col].iloc[i]!r} in column "
                f"'{time_col}' at line {lines[i]} is neither a number nor a date"
            ) from None
    order = np.lexsort((time.to_numpy(), codes))
    t_sorted, c_sorted = time.to_numpy()[order], codes[order]
    dup = (t_sorted[1:] == t_sorted[:-1]) & (c_sorted[1:] == c_sorted[:-1])
    if dup.any():
        i = order[int(np.argmax(dup)) + 1]
        raise DataError(
            f"CSV file '{path}': time {df[time_col].iloc[i]!r} appears twice in sequence "
            f"{labels[codes[i]]} (line {lines[i]})"
        )
    return codes, labels, order


def _fill(
    values: np.ndarray,
    missing: np.ndarray,
    fill: str | None,
    label: str,
    lines: np.ndarray,
    columns: list[str],
    path: Path,
) -> np.ndarray:
    """Fill the gaps of one sequence's values (n_steps, n_columns)."""
    if not missing.any():
        return values
    i, j = np.argwhere(missing)[0]
    where = f"column '{columns[j]}' at line {lines[i]} (sequence {label})"
    if fill is None:
        raise DataError(
            f"CSV file '{path}': missing value in {where}; pass fill='interpolate' or "
            "fill='ffill' to fill gaps"
        )
    out = values.copy()
    steps = np.arange(len(values))
    for j in range(values.shape[1]):
        gaps = missing[:, j]
        if not gaps.any():
            continue
        if gaps.all():
            raise DataError(
                f"CSV file '{path}': column '{columns[j]}' of sequence {label} has no values"
            )
        if fill == "interpolate":
            out[gaps, j] = np.interp(steps[gaps], steps[~gaps], values[~gaps, j])
            continue
        if gaps[0]:
            raise DataError(
                f"CSV file '{path}': cannot forward-fill column '{columns[j]}' of sequence "
                f"{label}: it starts with a missing value (line {lines[0]})"
            )
        last = np.maximum.accumulate(np.where(gaps, 0, steps))
        out[:, j] = values[last, j]
    return out


def _windows(
    chunks: list[np.ndarray],
    labels: list[str],
    window: int | None,
    stride: int | None,
    horizon: int,
) -> list[np.ndarray]:
    need = horizon + 1
    if window is None:
        if stride is not None:
            raise DataError("stride is given without window; pass window too")
        for chunk, label in zip(chunks, labels, strict=True):
            if len(chunk) < need:
                raise DataError(
                    f"sequence {label} has {_plural(len(chunk), 'step')}, needs at least "
                    f"horizon + 1 = {need}"
                )
        lengths = {len(c) for c in chunks}
        if len(lengths) > 1:
            shown = ", ".join(
                f"{lab}: {len(c)}" for lab, c in list(zip(labels, chunks, strict=True))[:6]
            )
            raise DataError(
                f"sequences have different lengths ({shown}, ...); pass window=N to cut them "
                "into equal windows"
            )
        return chunks
    for key, value, low in (("window", window, need), ("stride", stride, 1)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low
        ):
            what = "horizon + 1" if key == "window" else "1"
            raise DataError(f"{key} == {value!r}, must be an integer >= {what} = {low}")
    stride = window if stride is None else stride
    out = []
    for chunk, label in zip(chunks, labels, strict=True):
        if len(chunk) < window:
            raise DataError(
                f"sequence {label} has {_plural(len(chunk), 'step')}, shorter than "
                f"window == {window}"
            )
        out += [chunk[s : s + window] for s in range(0, len(chunk) - window + 1, stride)]
    return out


def load_csv(
    path: str | Path,
    spec: TaskSpec | None = None,
    *,
    series: list[str] | None = None,
    sequence_col: str | None = None,
    time_col: str | None = None,
    window: int | None = None,
    stride: int | None = None,
    fill: str | None = None,
    sep: str = ",",
) -> Dataset:
    """Load a CSV file of series as a :class:`Dataset` (layout in the module docstring).

    Parameters
    ----------
    path : str or Path
    spec : TaskSpec or None
        Which series are inputs and targets, and the horizon. None: every series is both,
        horizon 1.
    series : list of str or None
        Series columns to load (default: all columns but the sequence and time columns, or
        the spec's series).
    sequence_col, time_col : str or None
        Sequence-id column and time column.
    window, stride : int or None
        Cut each sequence into windows of ``window`` steps (>= horizon + 1) starting every
        ``stride`` steps (default ``stride = window``). Without ``window``, every sequence
        must have the same number of steps.
    fill : {None, "interpolate", "ffill"}
        How to fill missing values; None refuses them.
    sep : str
        Field delimiter.

    Returns
    -------
    Dataset
        ``inputs`` of shape (n_sequences_or_windows, steps - horizon, n_inputs).
        ``sequence_ids`` are the integer ids of the sequence column (their order of first
        appearance when the ids are not integers), or the window index when ``window`` is
        given.

    Raises
    ------
    DataError
        Missing or empty file, missing columns, duplicate headers, a non-numeric cell, a
        missing value without ``fill``, sequences too short for the horizon.
    """
    if fill not in _FILLS:
        raise DataError(f"fill == {fill!r}, must be one of {list(_FILLS)}")
    if spec is not None and not isinstance(spec, TaskSpec):
        raise DataError(f"spec must be a TaskSpec or None, got {type(spec).__name__}")
    path = Path(path)
    header = _read_header(path, sep)
    columns = _select_columns(header, spec, series, [sequence_col, time_col], path)
    df = _read_table(path, sep, header)
    codes, labels, order = _sort_keys(df, sequence_col, time_col, path)
    values, missing = _numeric(df, columns, path)
    lines = df.index.to_numpy() + 2
    if fill is None and missing.any():  # report the first gap in file order
        _fill(
            values, missing, None, labels[codes[np.argwhere(missing)[0][0]]], lines, columns, path
        )
    values, missing, lines, codes = values[order], missing[order], lines[order], codes[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    chunks = []
    for idx in np.split(np.arange(len(codes)), bounds):
        label = labels[codes[idx[0]]]
        chunks.append(_fill(values[idx], missing[idx], fill, label, lines[idx], columns, path))
    chunk_labels = [labels[codes[idx[0]]] for idx in np.split(np.arange(len(codes)), bounds)]
    horizon = spec.horizon if spec is not None else 1
    pieces = _windows(chunks, chunk_labels, window, stride, horizon)
    block = np.stack(pieces)  # (N, steps, n_columns)
    raw = {col: block[:, :, j] for j, col in enumerate(columns)}
    if window is not None:
        ids = np.arange(len(pieces))
    else:
        try:
            ids = np.array([int(lab) for lab in chunk_labels], dtype=np.int64)
        except ValueError:
            ids = np.arange(len(pieces))
        if len(np.unique(ids)) != len(ids):
            ids = np.arange(len(pieces))
    if spec is not None:
        task = dataclasses.replace(spec, length=block.shape[1] - horizon)
        inputs, predict = spec.inputs, spec.predict
    else:
        task, inputs, predict = None, columns, columns
    return dataset_from_raw(
        raw, inputs=inputs, predict=predict, horizon=horizon, spec=task, sequence_ids=ids
    )
