"""Private helpers of every layer: safe output directories, file writing, torch threads."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from unitprobe.errors import UnitprobeError

__all__ = [
    "atomic_write",
    "check_output_dir",
    "check_output_file",
    "check_parent_writable",
    "staged_output_dir",
    "write_csv",
    "write_csv_atomic",
    "write_json",
    "to_plain",
    "torch_threads",
    "stderr_is_tty",
]


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse an output directory that cannot or must not be written, before any work starts.

    Raises
    ------
    UnitprobeError
        ``out`` is a file, an existing non-empty directory without ``overwrite``, or its
        parent does not exist or is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnitprobeError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UnitprobeError(f"output directory {out} exists and is not empty; pass --overwrite")
    check_parent_writable(out)


def check_output_file(out: Path, overwrite: bool) -> None:
    """Refuse an output file path that cannot or must not be written, before any work starts.

    Raises
    ------
    UnitprobeError
        ``out`` is a directory, exists without ``overwrite``, or its directory does not exist,
        is not a directory or is not writable.
    """
    out = Path(out)
    if out.is_dir():
        raise UnitprobeError(f"{out} is a directory, expected a file path")
    if out.exists() and not overwrite:
        raise UnitprobeError(f"{out} already exists; pass --overwrite to replace it")
    check_parent_writable(out)


def check_parent_writable(out: Path) -> None:
    """The directory that will hold ``out`` exists and a file can be created in it.

    Creating (and at once removing) a temporary file is the only reliable test: permission
    bits do not stop root, and some file systems (``/proc``, read-only mounts) refuse anyway.
    """
    parent = out.absolute().parent
    if not parent.exists():
        raise UnitprobeError(f"cannot create {out}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UnitprobeError(f"cannot create {out}: {parent} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as err:
        raise UnitprobeError(
            f"cannot create {out}: directory {parent} is not writable ({err.strerror or err})"
        ) from None


@contextlib.contextmanager
def staged_output_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds.

    The temporary directory is created beside ``out`` (same file system), so the final move
    is a rename. If the block raises (or is interrupted), the temporary directory is removed
    and ``out`` is left exactly as it was. An existing ``out`` is replaced only with
    ``overwrite``; it is first renamed aside and deleted once the new results are in place.
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    parent = out.absolute().parent
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        yield stage
        aside = None
        if out.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=parent))
            os.replace(out, aside / "old")
        os.replace(stage, out)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a result table with a fixed float format, so equal numbers give equal bytes."""
    table.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
    return path


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Readers see the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_csv_atomic(table: pd.DataFrame, path: Path) -> Path:
    """Write a CSV through a temporary file in the same directory, then rename it into place."""
    return atomic_write(path, lambda tmp: write_csv(table, tmp))


def to_plain(value: Any) -> Any:
    """Convert numpy / pandas scalars and containers to JSON-serializable plain data."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if np.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: Any, path: Path) -> Path:
    """Write plain data as indented JSON (NaN and inf become null)."""
    path.write_text(json.dumps(to_plain(data), indent=2, sort_keys=False) + "\n")
    return path


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stderr_is_tty() -> bool:
    """Whether standard error is a terminal (progress bars are shown only then by default)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())
