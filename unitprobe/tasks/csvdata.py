"""Load sequences from a CSV file into a :class:`~unitprobe.tasks.generate.Dataset`.

Layout: a header row, then one column per series (the header names are the series names),
optionally a sequence-id column (rows are grouped by it; sequences keep the order in which
their ids first appear) and a time column (rows are sorted by it within each sequence, then
it is dropped; numbers, or dates and times such as ``2020-01-31`` or ``2020-01-31 09:30``,
in one format throughout the column). Without a sequence column the whole file is one
sequence, which ``window`` cuts into windows of ``window`` steps every ``stride`` steps
(trailing steps that do not fill a window are dropped; windows never cross sequences).

What real exports contain is handled explicitly: lines starting with ``#`` (a source note
above the header) and blank lines are skipped; a UTF-8 byte-order mark is ignored; trailing
empty fields (``1,2,``) are ignored; other columns of the file are ignored when ``series`` or
a ``spec`` names the ones to load. Line numbers in messages count every line of the file,
the first being line 1.

Missing values (empty cells, ``NA``, ``NaN``, ``null``, ``N/A``, ``None``) are refused with
their line number unless ``fill`` says what to do:

``"interpolate"``
    linear in the step index within a sequence; leading and trailing gaps take the nearest
    value;
``"ffill"``
    the last observed value within a sequence (a sequence may not start with a gap);
``"drop"``
    rows with a missing value in any loaded series are left out, so the observations before
    and after become neighbours (right for rows that are not observations at all, such as
    the dividend-date rows of a monthly price export).

Infinite values, values beyond the float32 range and text in a series column are refused
with their line number. With a ``spec``, the series it feeds and predicts must be present;
every spec series found in the file is loaded. The data are the raw series, normalized with
one affine map per series over the whole dataset as
:func:`~unitprobe.tasks.generate.generate` does, and targets are built with ``spec.horizon``,
so a sequence (or window) of ``n`` steps gives ``n - horizon`` input steps; the dataset's spec
is the given one with ``length`` set to that number. The spec's observation noise is not added
to loaded data (they are observations already). Without a spec, every loaded series is both
an input and a prediction target, with horizon 1, and ``dataset.spec`` is None.

Task files and data tasks (``relations = []``) are read by :mod:`unitprobe.tasks.taskfile`
(:func:`read_task_file`, :func:`data_task`), re-exported here.
"""

from __future__ import annotations

import csv
import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.tasks.generate import FLOAT32_MAX, MAX_GENERATED_VALUES, Dataset, dataset_from_raw
from unitprobe.tasks.spec import TaskSpec
from unitprobe.tasks.taskfile import OBSERVED, data_task, is_data_task, read_task_file
from unitprobe.validation import is_int

__all__ = [
    "FILLS", "MAX_CSV_BYTES", "MAX_CSV_CELLS", "OBSERVED", "data_task", "is_data_task",
    "load_csv", "read_task_file",
]  # fmt: skip

#: Ways to handle missing values (None refuses them).
FILLS = (None, "interpolate", "ffill", "drop")
#: Largest CSV file read (bytes): parsing holds about 25 times the file size in memory.
MAX_CSV_BYTES = 2**28
#: Largest number of cells (lines x header fields) read: parsing holds about 60 bytes a cell.
MAX_CSV_CELLS = 2**24

_MISSING = {"", "na", "nan", "n/a", "null", "none"}
_FILL_HINT = "pass fill='interpolate', 'ffill' or 'drop' (--fill on the command line)"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ----------------------------------------------------------------------------- reading


def _check_sep(sep: Any) -> str:
    if not isinstance(sep, str) or len(sep) != 1 or sep in '"\r\n':
        raise DataError(f"sep == {sep!r}, must be one character (not a quote or a newline)")
    return sep


def _read_rows(path: Path, sep: str) -> tuple[list[str], list[list[str]], np.ndarray]:
    """The header, the data rows (as text) and each row's line number (first line = 1)."""
    if not path.exists():
        what = "is a symlink loop or to a missing file" if path.is_symlink() else "not found"
        raise DataError(f"CSV file '{path}' {what}")
    if not path.is_file():
        raise DataError(f"'{path}' is not a regular file")
    size = path.stat().st_size
    if size > MAX_CSV_BYTES:
        raise DataError(
            f"CSV file '{path}' has {size:.3g} bytes, more than {MAX_CSV_BYTES:.3g}; "
            "load a shorter extract (reading holds about 25 times the file size in memory)"
        )
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    try:
        _check_cells(path, sep)
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=sep)
            for row in reader:
                if not row or all(not f.strip() for f in row) or row[0].lstrip().startswith("#"):
                    continue
                if header is None:
                    header = _check_header(row, path, sep)
                    continue
                rows.append(_fit_row(row, len(header), reader.line_num, path))
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read CSV file '{path}': not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"cannot parse CSV file '{path}': {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read CSV file '{path}': {exc.strerror or exc}") from None
    if header is None:
        raise DataError(f"CSV file '{path}' is empty")
    if not rows:
        raise DataError(f"CSV file '{path}' has a header but no data rows")
    return header, rows, np.asarray(lines, dtype=np.int64)


def _check_cells(path: Path, sep: str) -> None:
    """Refuse more than :data:`MAX_CSV_CELLS` cells (lines x header fields), counted in bytes."""
    lines, width, tail = 0, 0, b"\n"
    with path.open("rb") as fh:  # OSError: reported by the caller
        while chunk := fh.read(1 << 20):
            if not width:  # the header: the first line neither blank nor a comment
                heads = [ln for ln in chunk.split(b"\n") if ln.strip(b"\xef\xbb\xbf \t\r")
                         and not ln.lstrip(b"\xef\xbb\xbf \t").startswith(b"#")]  # fmt: skip
                width = heads[0].count(sep.encode()) + 1 if heads else 1
            lines, tail = lines + chunk.count(b"\n"), chunk[-1:]
    if (lines := lines + (tail != b"\n")) * width > MAX_CSV_CELLS:
        raise DataError(
            f"CSV file '{path}' has about {lines * width} cells ({lines} lines x {width} "
            f"columns), more than {MAX_CSV_CELLS}; load a shorter extract or fewer columns "
            "(parsing holds about 60 bytes per cell)"
        )


def _check_header(row: list[str], path: Path, sep: str) -> list[str]:
    header = [h.strip() for h in row]
    while len(header) > 1 and not header[-1]:  # a trailing delimiter
        header.pop()
    if len(header) == 1:
        for other in (";", "\t", ",", "|"):
            if other != sep and other in header[0]:
                shown = "\\t" if other == "\t" else other
                raise DataError(
                    f"CSV file '{path}' has a single column {header[0]!r}; the file looks "
                    f"'{shown}'-delimited: pass sep='{shown}' (--sep on the command line) or "
                    "save it comma-separated"
                )
    empty = [i + 1 for i, h in enumerate(header) if not h]
    if empty:
        raise DataError(f"CSV file '{path}': header column(s) {empty} have no name")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"CSV file '{path}': duplicate column names {dupes} in the header")
    return header


def _fit_row(row: list[str], width: int, line: int, path: Path) -> list[str]:
    if len(row) > width and not any(f.strip() for f in row[width:]):
        row = row[:width]  # trailing delimiters
    if len(row) != width:
        raise DataError(
            f"CSV file '{path}': line {line} has {_plural(len(row), 'field')}, "
            f"the header has {width}"
        )
    return row


def _select_columns(
    header: list[str],
    spec: TaskSpec | None,
    series: list[str] | None,
    reserved: list[str | None],
    path: Path,
) -> list[str]:
    for role, col in zip(("sequence_col", "time_col"), reserved, strict=True):
        if col is not None and (not isinstance(col, str) or col not in header):
            raise DataError(f"{role} {col!r} is not a column of '{path}'; available: {header}")
    if reserved[0] is not None and reserved[0] == reserved[1]:
        raise DataError(f"sequence_col and time_col are both '{reserved[0]}'")
    reserved = [c for c in reserved if c is not None]
    if series is not None:
        if not isinstance(series, (list, tuple)) or not all(isinstance(s, str) for s in series):
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
    dupes = sorted({c for c in wanted if wanted.count(c) > 1})
    if dupes:
        raise DataError(f"series {dupes} are requested more than once")
    return wanted


def _looks_like_date(text: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return not pd.isna(pd.to_datetime(text, errors="coerce"))
        except (ValueError, TypeError, OverflowError):
            return False


def _numeric(
    df: pd.DataFrame, columns: list[str], lines: np.ndarray, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Values (n_rows, n_columns) with NaN for missing cells, and the missing mask."""
    values = np.empty((len(df), len(columns)))
    missing = np.zeros((len(df), len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        text = df[col].str.strip()
        miss = text.str.lower().isin(_MISSING).to_numpy()
        num = pd.to_numeric(text.where(~miss), errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(num) & ~miss
        if bad.any():
            i = int(np.argmax(bad))
            value = df[col].iloc[i]
            hint = (
                f"; if '{col}' holds dates, pass time_col='{col}' (--time-col) to order the "
                "rows by it, or name the series to load"
                if _looks_like_date(value)
                else ""
            )
            raise DataError(
                f"CSV file '{path}': non-numeric value {value!r} in column '{col}' "
                f"at line {lines[i]}{hint}"
            )
        huge = ~np.isnan(num) & ~(np.abs(num) <= FLOAT32_MAX)
        if huge.any():
            i = int(np.argmax(huge))
            raise DataError(
                f"CSV file '{path}': value {df[col].iloc[i]!r} in column '{col}' at line "
                f"{lines[i]} is not finite or beyond float32 (|x| <= {FLOAT32_MAX:.3g})"
            )
        values[:, j] = num
        missing[:, j] = miss
    return values, missing


def _parse_times(text: pd.Series, col: str, lines: np.ndarray, path: Path) -> np.ndarray:
    """Numbers, or dates in one format (as nanoseconds), from the time column's text."""
    empty = (text == "").to_numpy()
    if empty.any():
        raise DataError(
            f"CSV file '{path}': missing time value in column '{col}' at line "
            f"{lines[int(np.argmax(empty))]}"
        )
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    if not np.isnan(numbers).any():
        return numbers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not infer format": reported below instead
        try:
            times = pd.to_datetime(text, errors="coerce", utc=True)
        except (ValueError, TypeError, OverflowError):
            times = pd.Series(pd.NaT, index=text.index)
    bad = times.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"CSV file '{path}': time value {text.iloc[i]!r} in column '{col}' at line "
            f"{lines[i]} is neither a number nor a date in the format of the column's first rows"
        )
    # microseconds since 1970 as int64: dates before 1677 or after 2262 would overflow the
    # nanoseconds pandas uses by default and be silently misordered
    return times.dt.tz_convert(None).to_numpy().astype("datetime64[us]").view(np.int64)


def _sort_keys(
    df: pd.DataFrame,
    sequence_col: str | None,
    time_col: str | None,
    lines: np.ndarray,
    path: Path,
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray | None]:
    """Sequence codes per row, sequence labels, the row order (sequence, then time), and
    each row's time (numbers, or microseconds for dates; None without a time column)."""
    n = len(df)
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
    if time_col is None:  # rows of one id form its sequence, in file order, wherever they sit
        return codes, labels, np.argsort(codes, kind="stable"), None
    text = df[time_col].str.strip()
    time = _parse_times(text, time_col, lines, path)
    order = np.lexsort((time, codes))
    t_sorted, c_sorted = time[order], codes[order]
    dup = (t_sorted[1:] == t_sorted[:-1]) & (c_sorted[1:] == c_sorted[:-1])
    if dup.any():
        i = order[int(np.argmax(dup)) + 1]
        raise DataError(
            f"CSV file '{path}': time {text.iloc[i]!r} appears twice in sequence "
            f"{labels[codes[i]]} (line {lines[i]})"
        )
    return codes, labels, order, time


def _fill(
    values: np.ndarray,
    missing: np.ndarray,
    fill: str | None,
    label: str,
    lines: np.ndarray,
    columns: list[str],
    path: Path,
) -> np.ndarray:
    """Fill the gaps of one sequence's values (n_steps, n_columns); "drop" removes rows."""
    if not missing.any():
        return values
    i, j = np.argwhere(missing)[0]
    where = f"column '{columns[j]}' at line {lines[i]} (sequence {label})"
    if fill is None:
        raise DataError(f"CSV file '{path}': missing value in {where}; {_FILL_HINT}")
    if fill == "drop":
        return values[~missing.any(axis=1)]
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


def _check_window(window: Any, stride: Any, need: int) -> None:
    if window is None:
        if stride is not None:
            raise DataError("stride is given without window; pass window too")
        return
    for key, value, low in (("window", window, need), ("stride", stride, 1)):
        if value is not None and (not is_int(value) or value < low):
            what = "horizon + 1" if key == "window" else "1"
            raise DataError(f"{key} == {value!r}, must be an integer >= {what} = {low}")


def _windows(
    chunks: list[np.ndarray],
    labels: list[str],
    window: int | None,
    stride: int | None,
    horizon: int,
) -> list[np.ndarray]:
    need = horizon + 1
    if window is None:
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
    stride = window if stride is None else stride
    count = sum(max(0, (len(c) - window) // stride + 1) for c in chunks)
    values = count * window * (chunks[0].shape[1] if chunks and chunks[0].ndim == 2 else 1)
    if values > MAX_GENERATED_VALUES:
        raise DataError(
            f"windows of {window} steps every {stride} give {count} windows = {values:.3g} "
            f"values, more than {MAX_GENERATED_VALUES:.3g}; use a larger --stride"
        )
    out = []
    for chunk, label in zip(chunks, labels, strict=True):
        if len(chunk) < window:
            raise DataError(
                f"sequence {label} has {_plural(len(chunk), 'step')}, shorter than "
                f"window == {window}"
            )
        out += [chunk[s : s + window] for s in range(0, len(chunk) - window + 1, stride)]
    return out


def _read_sequences(
    path: Path,
    spec: TaskSpec | None,
    series: list[str] | None,
    sequence_col: str | None,
    time_col: str | None,
    fill: str | None,
    sep: str,
) -> tuple[list[str], list[np.ndarray], list[str], list[np.ndarray | None]]:
    """The series columns, each sequence's values (steps, columns) in time order, the
    sequence labels, and each sequence's times (None without a time column)."""
    if fill not in FILLS:
        raise DataError(f"fill == {fill!r}, must be one of {list(FILLS)}")
    header, rows, lines = _read_rows(path, _check_sep(sep))
    columns = _select_columns(header, spec, series, [sequence_col, time_col], path)
    df = pd.DataFrame(rows, columns=header, dtype=str)
    codes, labels, order, time = _sort_keys(df, sequence_col, time_col, lines, path)
    values, missing = _numeric(df, columns, lines, path)
    if fill is None and missing.any():  # report the first gap in file order
        first = np.argwhere(missing)[0][0]
        _fill(values, missing, None, labels[codes[first]], lines, columns, path)
    values, missing, lines, codes = values[order], missing[order], lines[order], codes[order]
    time = None if time is None else time[order]
    bounds = np.flatnonzero(np.diff(codes)) + 1
    chunks, chunk_labels, times = [], [], []
    for idx in np.split(np.arange(len(codes)), bounds):
        label = labels[codes[idx[0]]]
        chunk = _fill(values[idx], missing[idx], fill, label, lines[idx], columns, path)
        chunks.append(chunk)
        chunk_labels.append(label)
        kept = ~missing[idx].any(axis=1) if fill == "drop" else slice(None)
        times.append(None if time is None else time[idx][kept])
    return columns, chunks, chunk_labels, times


def _check_spec(spec: Any, window: Any, stride: Any) -> int:
    if spec is not None and not isinstance(spec, TaskSpec):
        raise DataError(f"spec must be a TaskSpec or None, got {type(spec).__name__}")
    horizon = spec.horizon if spec is not None else 1
    _check_window(window, stride, horizon + 1)
    return horizon


def _assemble(
    pieces: list[np.ndarray],
    columns: list[str],
    spec: TaskSpec | None,
    horizon: int,
    ids: np.ndarray,
    norm: Mapping[str, tuple[float, float]] | None,
    overlapping: bool,
) -> Dataset:
    block = np.stack(pieces)  # (N, steps, n_columns)
    raw = {col: block[:, :, j] for j, col in enumerate(columns)}
    if spec is not None:
        task = dataclasses.replace(spec, length=block.shape[1] - horizon)
        inputs, predict = spec.inputs, spec.predict
    else:
        task, inputs, predict = None, columns, columns
    return dataset_from_raw(
        raw,
        inputs=inputs,
        predict=predict,
        horizon=horizon,
        spec=task,
        sequence_ids=ids,
        norm=norm,
        overlapping=overlapping,
    )


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
    norm: Mapping[str, tuple[float, float]] | None = None,
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
        Sequence-id column and time column (numbers or dates).
    window, stride : int or None
        Cut each sequence into windows of ``window`` steps (>= horizon + 1) starting every
        ``stride`` steps (default ``stride = window``). Without ``window``, every sequence
        must have the same number of steps. Windows less than ``window`` apart share time
        points: the dataset's ``overlapping`` is then True.
    fill : {None, "interpolate", "ffill", "drop"}
        How to handle missing values; None refuses them.
    sep : str
        Field delimiter, one character.
    norm : dict of str to (shift, scale), optional
        Apply this normalization (that of the data a model was trained on, e.g.
        ``checkpoint.norm``) instead of fitting one on this file.

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
        Missing, empty or too large file (bytes or cells), missing columns, duplicate
        headers, a row with a different number of fields, a non-numeric or non-finite cell, a
        missing value without ``fill``, sequences too short for the horizon or the window,
        more windows than :data:`~unitprobe.tasks.generate.MAX_GENERATED_VALUES` values.

    Examples
    --------
    >>> ds = load_csv("prices.csv", time_col="Date", series=["SPX"], window=24, stride=6)
    >>> ds.inputs.shape  # (n_windows, 23, 1)
    """
    horizon = _check_spec(spec, window, stride)
    path = Path(path)
    columns, chunks, labels, _ = _read_sequences(
        path, spec, series, sequence_col, time_col, fill, sep
    )
    pieces = _windows(chunks, labels, window, stride, horizon)
    ids = _sequence_ids(labels, len(pieces), window is not None)
    overlapping = window is not None and stride is not None and stride < window
    return _assemble(pieces, columns, spec, horizon, ids, norm, overlapping)


def _sequence_ids(labels: list[str], n: int, windowed: bool) -> np.ndarray:
    if windowed:
        return np.arange(n)
    try:
        ids = np.array([int(lab) for lab in labels], dtype=np.int64)
    except (ValueError, OverflowError):
        return np.arange(n)
    return ids if len(np.unique(ids)) == len(ids) else np.arange(n)
