"""Task files: TOML task specifications, and data tasks over observed series.

Data tasks
----------
A task whose series are observed rather than generated is written as a task file with an
empty ``relations`` list (read with :func:`read_task_file`)::

    name = "stocks"
    relations = []          # the series are observed: their values come from a CSV file
    inputs = ["SPX", "NDX"]
    predict = ["SPX"]
    horizon = 1             # optional

:func:`data_task` turns it into an ordinary :class:`~unitprobe.tasks.spec.TaskSpec` with one
placeholder relation per series, ``SPX[t] = normal(0, 1)  # observed in data``, so that it
is stored in checkpoints, shown and probed like any task (its default probe targets are each
series at lags 0 and 1). :func:`is_data_task` recognizes such a spec; its sequences must come
from data: generating them would only give the white-noise placeholders.

Reading is bounded: only regular files of at most :data:`MAX_TASK_FILE_BYTES` are read (a
FIFO or ``/dev/zero`` is refused instead of blocking), and TOML nested too deeply for the
reader is one clear error.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

from unitprobe.errors import TaskSpecError
from unitprobe.tasks.relations import FUNCTIONS, RANDOM_FUNCTIONS
from unitprobe.tasks.spec import TaskSpec

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["MAX_TASK_FILE_BYTES", "OBSERVED", "data_task", "is_data_task", "read_task_file"]

#: Marks the placeholder relation of an observed series in a data task.
OBSERVED = "# observed in data"
#: Largest task file read (bytes).
MAX_TASK_FILE_BYTES = 2**20

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED = {"t", *FUNCTIONS, *RANDOM_FUNCTIONS}
_DATA_TASK_KEYS = ("name", "relations", "inputs", "predict", "horizon", "length", "description")


# ----------------------------------------------------------------------------- data tasks


def data_task(
    name: str,
    inputs: list[str],
    predict: list[str] | None = None,
    *,
    horizon: int = 1,
    length: int = 1,
    description: str = "",
) -> TaskSpec:
    """A task over observed series: one placeholder relation per series (module docstring).

    Parameters
    ----------
    name : str
    inputs : list of str
        Series fed to the network (CSV column names; letters, digits and ``_``, not
        starting with a digit).
    predict : list of str, optional
        Series to predict ``horizon`` steps ahead; default: the inputs.
    horizon : int, default 1
    length : int, default 1
        Input steps per sequence; :func:`load_csv` sets it from the data.
    description : str

    Returns
    -------
    TaskSpec
        ``is_data_task(spec)`` is True.

    Raises
    ------
    TaskSpecError
        A name that cannot be a series name, or any invalid field.

    Examples
    --------
    >>> data_task("stocks", ["SPX", "NDX"], ["SPX"]).relations
    ['SPX[t] = normal(0, 1)  # observed in data', 'NDX[t] = normal(0, 1)  # observed in data']
    """
    predict = list(inputs) if predict is None else predict
    for key, names in (("inputs", inputs), ("predict", predict)):
        if isinstance(names, str) or not isinstance(names, (list, tuple)):
            raise TaskSpecError(f"{key} == {names!r}, must be a list of series names")
        for series in names:
            if not isinstance(series, str) or not _NAME.fullmatch(series):
                raise TaskSpecError(
                    f"{key} names {series!r}, which cannot be a series name: use letters, "
                    "digits and '_', not starting with a digit (rename the CSV column)"
                )
            if series in _RESERVED:
                raise TaskSpecError(
                    f"{key} names {series!r}, a word of the relation language (the time index "
                    "or a function); rename the CSV column"
                )
    series = list(dict.fromkeys([*inputs, *predict]))
    note = "Series observed in data (a data task: relations = [] in its task file)."
    return TaskSpec(
        name=name,
        relations=[f"{s}[t] = normal(0, 1)  {OBSERVED}" for s in series],
        inputs=list(inputs),
        predict=list(predict),
        horizon=horizon,
        length=length,
        description=description if isinstance(description, str) and description else note,
    )


def is_data_task(spec: Any) -> bool:
    """Whether ``spec`` is a data task made by :func:`data_task` (its series are observed)."""
    relations = getattr(spec, "relations", None)
    return bool(relations) and all(str(r).endswith(OBSERVED) for r in relations)


def read_task_file(path: str | Path) -> TaskSpec:
    """Read a TOML task file: a relation task, or a data task (``relations = []``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    TaskSpec

    Raises
    ------
    TaskSpecError
        As :meth:`TaskSpec.from_toml`, plus keys a data task does not take (``init``,
        ``noise``, ``burn_in``); the message names the file.
    """
    path = Path(path)
    _check_file(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = None  # TaskSpec.from_toml reports it in its words
    except RecursionError:
        raise TaskSpecError(
            f"task file '{path}' nests arrays or tables too deeply to read"
        ) from None
    if not _shallow(data, 64):
        raise TaskSpecError(f"task file '{path}' nests arrays or tables more than 64 deep")
    _check_toml_integers(data, path)
    if not (isinstance(data, dict) and data.get("relations") == []):
        return TaskSpec.from_toml(path)
    unknown = sorted(set(data) - set(_DATA_TASK_KEYS))
    if unknown:
        raise TaskSpecError(
            f"task file '{path}': a data task (relations = []) takes no {unknown}; "
            f"allowed keys: {', '.join(_DATA_TASK_KEYS)}"
        )
    missing = [k for k in ("name", "inputs") if k not in data]
    if missing:
        raise TaskSpecError(f"task file '{path}': data task is missing required keys {missing}")
    options = {k: data[k] for k in ("predict", "horizon", "length", "description") if k in data}
    try:
        return data_task(data["name"], data["inputs"], **options)
    except TaskSpecError as exc:
        raise TaskSpecError(f"task file '{path}': {exc}") from None


def _check_file(path: Path) -> None:
    """A regular file of at most :data:`MAX_TASK_FILE_BYTES` (never block on a FIFO)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        what = "is a symlink to a missing file" if path.is_symlink() else "does not exist"
        raise TaskSpecError(f"task file '{path}' {what}") from None
    except OSError as err:  # a symlink loop, a permission error
        raise TaskSpecError(f"cannot read task file '{path}': {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TaskSpecError(
            f"task file '{path}' is not a regular file (a directory, pipe or device)"
        )
    if info.st_size > MAX_TASK_FILE_BYTES:
        raise TaskSpecError(
            f"task file '{path}' has {info.st_size} bytes, more than {MAX_TASK_FILE_BYTES}; "
            "a task file is a few lines of TOML"
        )


def _shallow(value: Any, limit: int) -> bool:
    """Whether lists and dicts in ``value`` nest at most ``limit`` deep (iteratively)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            if depth >= limit:
                return False
            stack += [(v, depth + 1) for v in item]
    return True


def _check_toml_integers(value: Any, path: Path, where: str = "") -> None:
    """Refuse integers outside TOML's 64-bit range (Python's reader accepts any size)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_toml_integers(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_toml_integers(item, path, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**63:
            raise TaskSpecError(
                f"task file '{path}': {where} is an integer of {len(str(abs(value)))} digits; "
                "TOML integers must fit in 64 bits"
            )
