"""The sequences a command works on: generated from a task, or read from a CSV file.

:class:`DataSource` names a CSV file and how to read it (the options of :func:`load_csv`);
:func:`dataset_for` returns a task's sequences from a source or, without one, generates them
(:func:`~unitprobe.tasks.generate.generate` refuses requests that are too large);
:func:`training_dataset` also turns a CSV without a task into a data task over its columns;
:func:`require_sequences` refuses data with too few sequences for a method, saying how to get
more; :func:`split_in_time` cuts a source into an earlier (training) and a later
(held-out) part, :func:`split_in_time_validated` also puts a validation block between them;
:func:`scaling_norm` reads how a foreign model's inputs were scaled
(``--scaling none|standardize|FILE``).

Example
-------
>>> from unitprobe.tasks import get_preset
>>> dataset_for(get_preset("seed"), None, n_sequences=8, seed=0).n_sequences
8
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from unitprobe.errors import DataError
from unitprobe.tasks.csvdata import data_task, is_data_task, load_csv
from unitprobe.tasks.generate import Dataset, generate
from unitprobe.tasks.spec import MAX_NAME_LENGTH, TaskSpec
from unitprobe.tasks.timesplit import load_csv_split, load_csv_split_validation

__all__ = [
    "SCALINGS",
    "DataSource",
    "dataset_for",
    "require_sequences",
    "scaling_norm",
    "split_in_time",
    "split_in_time_validated",
    "training_dataset",
]

#: The named ways a model's inputs can have been scaled (besides a JSON file).
SCALINGS = ("none", "standardize")

Norm = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class DataSource:
    """A CSV file and how to read it (see :func:`unitprobe.tasks.load_csv`).

    Parameters
    ----------
    path : Path
        The CSV file, one column per series.
    time_col, sequence_col : str, optional
        Order the rows by this column; rows with the same id form one sequence.
    window, stride : int, optional
        Cut each sequence into windows of ``window`` steps, ``stride`` steps apart.
    fill : {None, "interpolate", "ffill", "drop"}
        What to do with missing values (None refuses them).
    sep : str
        Field delimiter.
    """

    path: Path
    time_col: str | None = None
    sequence_col: str | None = None
    window: int | None = None
    stride: int | None = None
    fill: str | None = None
    sep: str = ","

    def load(self, spec: TaskSpec | None = None, norm: Norm | None = None) -> Dataset:
        """The file as a :class:`Dataset`; with ``spec``, its columns are the task's series.

        ``norm`` (e.g. ``checkpoint.norm``) is applied instead of fitting one on the file.
        """
        return load_csv(
            self.path,
            spec,
            time_col=self.time_col,
            sequence_col=self.sequence_col,
            window=self.window,
            stride=self.stride,
            fill=self.fill,
            sep=self.sep,
            norm=norm,
        )


def dataset_for(
    spec: TaskSpec,
    source: DataSource | None,
    n_sequences: int,
    seed: int,
    norm: Norm | None = None,
) -> Dataset:
    """The sequences of ``spec``: read from ``source``, or generated.

    Parameters
    ----------
    spec : TaskSpec
    source : DataSource or None
        Read the task's series from this CSV file; None generates them.
    n_sequences : int
        Sequences to generate (ignored with a source).
    seed : int
        Seed of the generated sequences (ignored with a source).
    norm : dict of str to (shift, scale), optional
        The normalization the model was trained with (``checkpoint.norm``), applied instead
        of one fitted on these data; None fits one.

    Returns
    -------
    Dataset
        ``inputs`` of shape (n_sequences, length, n_inputs).

    Raises
    ------
    DataError
        ``spec`` is a data task (its series are observed, not generated) and no source is
        given.
    TaskSpecError
        Generation asks for too many values, or a series overflows.
    """
    if source is not None:
        return source.load(spec, norm=norm)
    if is_data_task(spec):
        raise DataError(
            f"task '{spec.name}' is a data task: its series ({', '.join(spec.series)}) are "
            "observed, not generated; pass --data CSV with these columns"
        )
    return generate(spec, n_sequences, seed, norm=norm)


def split_in_time(
    source: DataSource, spec: TaskSpec | None, at: float | str
) -> tuple[Dataset, Dataset]:
    """The source's data cut in time at ``at``: (earlier part, later part).

    Every sequence is cut at ``at`` (a fraction in (0, 1) of its steps, or a value of the
    time column); windows never cross the cut, the later part is cut into non-overlapping
    windows, and both parts share the normalization fitted on the earlier part (see
    :func:`~unitprobe.tasks.csvdata.load_csv_split`). Without ``spec`` both parts get the data
    task over the file's columns, as :func:`training_dataset` does.
    """
    train, later = load_csv_split(source.path, spec, at=at, **_read_options(source))
    return _with_task(spec, source, train, later)  # type: ignore[return-value]


def split_in_time_validated(
    source: DataSource, spec: TaskSpec | None, at: float | str, validation: float = 0.2
) -> tuple[Dataset, Dataset, Dataset]:
    """The source's data cut in time twice: (training, validation, later part).

    As :func:`split_in_time`, and the last ``validation`` share of each sequence's earlier
    steps is a validation block in non-overlapping windows (see
    :func:`~unitprobe.tasks.timesplit.load_csv_split_validation`): a network that stops
    early on it is validated on steps after all its training steps, as it is then tested.
    """
    parts = load_csv_split_validation(
        source.path, spec, at=at, validation=validation, **_read_options(source)
    )
    return _with_task(spec, source, *parts)  # type: ignore[return-value]


def _read_options(source: DataSource) -> dict:
    return {
        "time_col": source.time_col,
        "sequence_col": source.sequence_col,
        "window": source.window,
        "stride": source.stride,
        "fill": source.fill,
        "sep": source.sep,
    }


def _with_task(spec: TaskSpec | None, source: DataSource, *parts: Dataset) -> tuple[Dataset, ...]:
    """Without a spec, every part gets the data task over the file's columns."""
    if spec is not None:
        return parts
    task = data_task(_task_name(Path(source.path)), list(parts[0].input_names))
    return tuple(
        dataclasses.replace(part, spec=dataclasses.replace(task, length=part.length))
        for part in parts
    )


def scaling_norm(scaling: str | Path | None, series: Sequence[str]) -> dict | None:
    """How a model's inputs were scaled, as a normalization map (None: fit on the data).

    Parameters
    ----------
    scaling : {"none", "standardize"}, path or None
        ``"none"``: raw values (shift 0, scale 1 for every series); ``"standardize"`` or
        None: mean 0 and standard deviation 1 on the analyzed data (fitted, returns None);
        a path: a JSON object ``{"X": {"shift": 1.5, "scale": 2.0}, ...}`` (or
        ``{"X": [1.5, 2.0]}``) naming every series.
    series : sequence of str
        The task's series.

    Raises
    ------
    DataError
        An unreadable or malformed file, a series it lacks, a scale that is not > 0.
    """
    if scaling is None or scaling == "standardize":
        return None
    if scaling == "none":
        return {name: (0.0, 1.0) for name in series}
    path = Path(scaling)
    try:
        info = path.stat()
    except OSError as err:
        raise DataError(
            f"--scaling {str(scaling)[:80]!r} is neither none, standardize nor a readable "
            f"JSON file ({err.strerror or err})"
        ) from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > 2**20:
        raise DataError(f"scaling file '{path}' is not a regular file of at most 1 MiB")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise DataError(f"cannot read scaling file '{path}': {str(err)[:120]}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"scaling file '{path}' must hold a JSON object {{series: {{shift, scale}}}}"
        )
    missing = [name for name in series if name not in data]
    if missing:
        raise DataError(f"scaling file '{path}' lacks the series {missing}")
    norm = {}
    for name in series:
        entry = data[name]
        pair = (entry.get("shift"), entry.get("scale")) if isinstance(entry, dict) else entry
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        if not ok or not all(math.isfinite(v) for v in pair) or not pair[1] > 0:
            raise DataError(
                f"scaling file '{path}': series '{name}' must have a finite shift and a "
                f"scale > 0, got {str(entry)[:80]}"
            )
        norm[name] = (float(pair[0]), float(pair[1]))
    return norm


def training_dataset(
    spec: TaskSpec | None, source: DataSource | None, n_sequences: int, seed: int
) -> Dataset:
    """Like :func:`dataset_for`; a source without a task becomes a data task over its columns.

    The data task is named after the file (``returns.csv`` -> ``returns``) and predicts each
    column one step ahead.
    """
    if spec is not None or source is None:
        if spec is None:
            raise DataError("no task and no data: give a task or a CSV source")
        return dataset_for(spec, source, n_sequences, seed)
    loaded = source.load()
    name = _task_name(Path(source.path))
    task = data_task(name, list(loaded.input_names), length=loaded.length)
    return dataclasses.replace(loaded, spec=task)


def require_sequences(dataset: Dataset, need: int, why: str, from_csv: bool) -> None:
    """Refuse data with fewer than ``need`` sequences, saying how to get more.

    Parameters
    ----------
    dataset : Dataset
    need : int
        Fewest sequences the method accepts.
    why : str
        What needs them (``"probes (cross-validated over sequences)"``).
    from_csv : bool
        Whether the data came from a CSV file (the hint is then to cut windows).

    Raises
    ------
    DataError
        ``"the data have 1 sequence; probes (...) need at least 5: cut the CSV's series into
        windows with --window N (and --stride S)"``.
    """
    n = dataset.n_sequences
    if n >= need:
        return
    how = (
        "cut the CSV's series into windows with --window N (and --stride S)"
        if from_csv
        else f"use --n-sequences >= {need}"
    )
    plural = "sequence" if n == 1 else "sequences"
    raise DataError(f"the data have {n} {plural}; {why} need at least {need}: {how}")


def _task_name(path: Path) -> str:
    """A data task's name from its CSV file: the stem, printable, at most 64 characters."""
    stem = "".join(c for c in path.stem if c.isprintable())
    return stem[:MAX_NAME_LENGTH] or "data"
