"""Split a CSV file's series in time: earlier steps train, later steps validate and test.

:func:`load_csv_split` cuts every sequence at one point (a fraction of its steps, or a value
of the time column) into an earlier and a later part; :func:`load_csv_split_validation`
also cuts the earlier part once more, so that a validation block lies between the training
steps and the held-out steps. Each part is cut into windows on its own, so no window crosses
a cut and no window of a later part shares a time point with an earlier one; the later parts
are cut into non-overlapping windows (stride = window) whatever ``stride`` is, so their
errors are not counted twice. The normalization is fitted on the training part only and
applied to the others, so nothing about the later steps leaks into training.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from unitprobe.errors import DataError
from unitprobe.tasks.csvdata import (
    _assemble,
    _check_spec,
    _parse_times,
    _read_sequences,
    _sequence_ids,
    _windows,
)
from unitprobe.tasks.generate import Dataset
from unitprobe.tasks.spec import TaskSpec

__all__ = ["load_csv_split", "load_csv_split_validation"]


def load_csv_split(
    path: str | Path,
    spec: TaskSpec | None = None,
    *,
    at: float | str,
    series: list[str] | None = None,
    sequence_col: str | None = None,
    time_col: str | None = None,
    window: int | None = None,
    stride: int | None = None,
    fill: str | None = None,
    sep: str = ",",
) -> tuple[Dataset, Dataset]:
    """Load a CSV file split in time: (earlier part, later part), for honest testing.

    Every sequence is cut at ``at``; each part is cut into windows on its own, so no window
    crosses the cut and the later windows share no time point with the earlier ones. The
    later part is cut into non-overlapping windows (stride = window) whatever ``stride``
    is. The normalization is fitted on the earlier part only and applied to the later part.

    Parameters
    ----------
    at : float or str
        A fraction in (0, 1) of each sequence's steps, or a value of ``time_col`` (a number
        or a date in the column's format): rows at or after it are the later part.
    Other parameters
        As :func:`~unitprobe.tasks.csvdata.load_csv`.

    Returns
    -------
    (Dataset, Dataset)
        The earlier and the later part (``later.norm == earlier.norm``).

    Raises
    ------
    DataError
        As :func:`~unitprobe.tasks.csvdata.load_csv`; ``at`` not a fraction or time value;
        either part too short.
    """
    parts = _split(path, spec, at, None, series, sequence_col, time_col, window, stride, fill, sep)
    return parts[0], parts[-1]


def load_csv_split_validation(
    path: str | Path,
    spec: TaskSpec | None = None,
    *,
    at: float | str,
    validation: float = 0.2,
    series: list[str] | None = None,
    sequence_col: str | None = None,
    time_col: str | None = None,
    window: int | None = None,
    stride: int | None = None,
    fill: str | None = None,
    sep: str = ",",
) -> tuple[Dataset, Dataset, Dataset]:
    """Load a CSV file split in time three ways: (training, validation, later part).

    As :func:`load_csv_split`, and the earlier part of every sequence is cut once more: its
    last ``validation`` share of steps is a validation block, cut into non-overlapping
    windows, between the training steps and the later (held-out) steps. A network validated
    on this block is validated on steps it never trained on, after all of them in time, as
    the held-out part will be; its validation error is an honest preview of the held-out
    error, where validation windows drawn among overlapping training windows are not.

    Parameters
    ----------
    at : float or str
        Where the later (held-out) part starts, as in :func:`load_csv_split`.
    validation : float, default 0.2
        Share in (0, 1) of each sequence's earlier steps that validate.
    Other parameters
        As :func:`~unitprobe.tasks.csvdata.load_csv`.

    Returns
    -------
    (Dataset, Dataset, Dataset)
        Training, validation and later part; all three share the training part's
        normalization.

    Raises
    ------
    DataError
        As :func:`load_csv_split`; ``validation`` not in (0, 1); a part too short.
    """
    fraction = _as_fraction(validation)
    if fraction is None or isinstance(validation, str):
        raise DataError(f"validation == {validation!r}, must be a fraction in (0, 1)")
    return _split(  # type: ignore[return-value]
        path, spec, at, fraction, series, sequence_col, time_col, window, stride, fill, sep
    )


def _split(path, spec, at, validation, series, sequence_col, time_col, window, stride, fill, sep):
    """The parts of a time split: (training, [validation,] later)."""
    horizon = _check_spec(spec, window, stride)
    path = Path(path)
    columns, chunks, labels, times = _read_sequences(
        path, spec, series, sequence_col, time_col, fill, sep
    )
    cuts = _cut_points(at, chunks, times, time_col, path)
    early = [chunk[:cut] for chunk, cut in zip(chunks, cuts, strict=True)]
    late = [chunk[cut:] for chunk, cut in zip(chunks, cuts, strict=True)]
    parts = [(early, "before the split"), (late, "from the split on")]
    if validation is not None:
        cuts = [int(math.floor((1 - validation) * len(c))) for c in early]
        train = [c[:cut] for c, cut in zip(early, cuts, strict=True)]
        val = [c[cut:] for c, cut in zip(early, cuts, strict=True)]
        parts = [(train, "to train"), (val, "to validate"), parts[1]]
    # every part must hold one window (or, unwindowed, one target step)
    need = horizon + 1 if window is None else max(horizon + 1, int(window))
    needs = f"horizon + 1 = {need}" if need == horizon + 1 else f"the window, {need}"
    for part, what in parts:
        short = [(lab, len(c)) for lab, c in zip(labels, part, strict=True) if len(c) < need]
        if short:
            raise DataError(
                f"split at {at!r}: sequence {short[0][0]} has too few steps {what} "
                f"({short[0][1]}; needs at least {needs}); move --split-at"
                + (" or use a smaller --window" if need > horizon + 1 else "")
            )
    pieces = _windows(parts[0][0], labels, window, stride, horizon)
    overlapping = window is not None and stride is not None and stride < window
    train_set = _assemble(
        pieces, columns, spec, horizon, _sequence_ids(labels, len(pieces), window is not None),
        None, overlapping,
    )  # fmt: skip
    return [train_set] + [
        _later(part, labels, window, columns, spec, horizon, train_set.norm)
        for part, _ in parts[1:]
    ]


def _later(part, labels, window, columns, spec, horizon, norm) -> Dataset:
    """A part after the training steps, in non-overlapping windows, with the training norm."""
    if window is None:
        lengths = {len(c) for c in part}
        window = min(lengths) if len(lengths) > 1 else None
    pieces = _windows(part, labels, window, window, horizon)
    ids = _sequence_ids(labels, len(pieces), window is not None)
    return _assemble(pieces, columns, spec, horizon, ids, norm, False)


def _cut_points(
    at: Any,
    chunks: list[np.ndarray],
    times: list[np.ndarray | None],
    time_col: str | None,
    path: Path,
) -> list[int]:
    """Where each sequence is cut: the index of its first row at or after ``at``."""
    fraction = _as_fraction(at)
    if fraction is not None:
        return [int(math.floor(fraction * len(c))) for c in chunks]
    if time_col is None:
        raise DataError(
            f"split at {at!r}: a time value needs time_col (--time-col); or give a fraction "
            "of the steps between 0 and 1, e.g. 0.8"
        )
    text = pd.Series([str(at).strip()])
    dates = any(t is not None and t.dtype == np.int64 for t in times)
    if dates:  # a date column: ``at`` must be a date too
        point = _parse_times(text, time_col, np.array([0]), path)[0]
        if not isinstance(point, np.integer):
            raise DataError(f"split at {at!r}: column '{time_col}' holds dates; give a date")
    else:
        point = pd.to_numeric(text, errors="coerce").iloc[0]
        if pd.isna(point):
            raise DataError(f"split at {at!r}: column '{time_col}' holds numbers; give a number")
    return [int(np.searchsorted(t, point, side="left")) for t in times]


def _as_fraction(at: Any) -> float | None:
    """``at`` as a fraction in (0, 1), or None if it is not one (then it is a time value)."""
    if isinstance(at, bool):
        raise DataError(f"split at == {at!r}, must be a fraction in (0, 1) or a time value")
    try:
        value = float(at)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        raise DataError(f"split at == {at!r}, must be a fraction in (0, 1) or a time value")
    return value if 0 < value < 1 else None
