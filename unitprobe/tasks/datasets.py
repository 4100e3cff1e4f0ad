"""The sequences a command works on: generated from a task, or read from a CSV file.

:class:`DataSource` names a CSV file and how to read it (the options of :func:`load_csv`);
:func:`dataset_for` returns a task's sequences from a source or, without one, generates them
(:func:`~unitprobe.tasks.generate.generate` refuses requests that are too large);
:func:`training_dataset` also turns a CSV without a task into a data task over its columns;
:func:`require_sequences` refuses data with too few sequences for a method, saying how to get
more.

Example
-------
>>> from unitprobe.tasks import get_preset
>>> dataset_for(get_preset("seed"), None, n_sequences=8, seed=0).n_sequences
8
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from unitprobe.errors import DataError
from unitprobe.tasks.csvdata import data_task, is_data_task, load_csv
from unitprobe.tasks.generate import Dataset, generate
from unitprobe.tasks.spec import TaskSpec

__all__ = ["DataSource", "dataset_for", "require_sequences", "training_dataset"]


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

    def load(self, spec: TaskSpec | None = None) -> Dataset:
        """The file as a :class:`Dataset`; with ``spec``, its columns are the task's series."""
        return load_csv(
            self.path,
            spec,
            time_col=self.time_col,
            sequence_col=self.sequence_col,
            window=self.window,
            stride=self.stride,
            fill=self.fill,
            sep=self.sep,
        )


def dataset_for(spec: TaskSpec, source: DataSource | None, n_sequences: int, seed: int) -> Dataset:
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
        return source.load(spec)
    if is_data_task(spec):
        raise DataError(
            f"task '{spec.name}' is a data task: its series ({', '.join(spec.series)}) are "
            "observed, not generated; pass --data CSV with these columns"
        )
    return generate(spec, n_sequences, seed)


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
    name = Path(source.path).stem or "data"
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
