"""Private helpers of every layer: safe output directories, file writing, BLAS threads.

Outputs never destroy what the user did not ask to replace:

- every result directory written through :func:`staged_output_dir` holds a marker,
  :data:`MARKER`, listing the files unitprobe wrote; ``overwrite`` replaces only such a
  directory, and only while it holds nothing else (a file the user added is refused), never
  the current directory, one of its parents, or a directory holding a protected path (the
  checkpoint being analyzed);
- the new directory is built beside the old one and swapped in with one atomic exchange
  (``renameat2(RENAME_EXCHANGE)`` on Linux). Where that is not available the old directory
  is first renamed to ``.NAME.old-PID-XXXX`` and the next run restores it if it was left
  there by a killed process (a recoverable protocol);
- the output is checked again at commit time: if another process created or replaced it
  meanwhile, nothing is replaced and the run fails with one clear error;
- staging directories are removed on errors, Ctrl-C and SIGTERM; those left by a killed
  process are removed (and reported) by the next run on the same output;
- files and directories get the user's umask (temporary files are created 0600 and
  relaxed before they are renamed into place);
- a symlinked output is followed: the link stays and its target is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import threadpoolctl

from unitprobe.errors import UnitprobeError

__all__ = [
    "MARKER",
    "atomic_write",
    "check_output_dir",
    "check_output_file",
    "check_parent_writable",
    "claim_files",
    "commit_file",
    "relax_mode",
    "result_files",
    "staged_output_dir",
    "write_csv",
    "write_csv_atomic",
    "write_json",
    "to_plain",
    "blas_limit",
    "stderr_is_tty",
    "user_umask",
]

#: The file every result directory holds: JSON ``{"format": ..., "files": [relative paths]}``.
MARKER = ".unitprobe-result"
_MARKER_FORMAT = "unitprobe-result"
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100
_UMASK_LOCK = threading.Lock()


# ----------------------------------------------------------------------------- permissions


def user_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def relax_mode(path: Path, directory: bool = False) -> None:
    """Give ``path`` the mode a plain ``open``/``mkdir`` would: 0666/0777 minus the umask.

    ``tempfile`` creates files 0600 and directories 0700, which would make a results folder
    shared with a colleague unreadable.
    """
    os.chmod(path, (0o777 if directory else 0o666) & ~user_umask())


# ----------------------------------------------------------------------------- checks


def _shown(out: Path) -> str:
    return str(out)


def _real(out: Path) -> Path:
    """The path that will be written: a symlinked ``out`` is followed (the link is kept)."""
    if out.is_symlink():
        try:
            target = out.resolve(strict=False)
        except (OSError, RuntimeError):
            raise UnitprobeError(f"output {out} is a symlink loop") from None
        if not target.parent.is_dir():
            raise UnitprobeError(f"output {out} is a symlink to {target}, whose folder is missing")
        return target
    return out.absolute()


def _contains(outer: Path, inner: Path) -> bool:
    """Whether ``inner`` is ``outer`` or lies inside it (both resolved)."""
    try:
        inner.resolve().relative_to(outer.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def check_output_dir(out: Path, overwrite: bool, *, protect: Iterable[Path] = ()) -> None:
    """Refuse an output directory that cannot or must not be written, before any work starts.

    Parameters
    ----------
    out : Path
    overwrite : bool
        Allow replacing a previous unitprobe result (a directory holding :data:`MARKER` and
        only the files it lists).
    protect : iterable of Path
        Paths that must survive (the checkpoint being analyzed): a directory holding one is
        never replaced.

    Raises
    ------
    UnitprobeError
        ``out`` is a file, the current directory or one of its parents, an existing
        non-empty directory without ``overwrite``, a directory with files unitprobe did not
        write, or one holding a protected path; or its parent does not exist or is not
        writable.
    """
    out = Path(out)
    real = _real(out)
    if real.exists() and not real.is_dir():
        raise UnitprobeError(f"output {out} exists and is not a directory")
    if _contains(real, Path.cwd()):
        raise UnitprobeError(
            f"output directory {out} is the current directory or one of its parents; "
            "name a new directory for the results (e.g. --out results)"
        )
    if real.is_dir() and _nonempty(real):
        if not overwrite:
            raise UnitprobeError(
                f"output directory {out} exists and is not empty; pass --overwrite"
            )
        for path in protect:
            if _contains(real, Path(path)):
                raise UnitprobeError(
                    f"output directory {out} holds {path}, which this command reads; "
                    "choose another --out"
                )
        _check_owned(out, real)
    check_parent_writable(real)


def _nonempty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return any(True for _ in entries)


def _read_manifest(directory: Path) -> set[str] | None:
    """The files listed by ``directory``'s marker (None without a readable marker)."""
    marker = directory / MARKER
    try:
        if not marker.is_file() or marker.stat().st_size > 16 * 2**20:
            return None
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _MARKER_FORMAT:
        return None
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def result_files(directory: Path) -> set[str] | None:
    """The files a unitprobe result ``directory`` lists as its own (relative paths), or None
    where it is not a result (no readable marker)."""
    return _read_manifest(Path(directory))


def _foreign(directory: Path, listed: set[str] | None, prefix: str = "") -> list[str]:
    """Files under ``directory`` that no marker lists (a nested marker covers its folder)."""
    own = _read_manifest(directory)
    if own is not None:
        listed, prefix = own, ""
    found: list[str] = []
    with os.scandir(directory) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        rel = prefix + entry.name
        if entry.name == MARKER and own is not None:
            continue
        if entry.is_dir(follow_symlinks=False):
            found += [f"{entry.name}/{f}" for f in _foreign(Path(entry.path), listed, rel + "/")]
        elif listed is None or rel not in listed:
            found.append(entry.name)
    return found


def _check_owned(out: Path, real: Path) -> None:
    """Refuse to replace ``real`` unless it is a previous unitprobe result, and only that."""
    parent_listed = _read_manifest(real.parent)
    if _read_manifest(real) is None and parent_listed is None:
        raise UnitprobeError(
            f"output directory {out} is not a previous unitprobe result (it has no {MARKER} "
            "file); --overwrite only replaces unitprobe results: choose a new --out or "
            "empty it yourself"
        )
    foreign = _foreign(real, parent_listed, real.name + "/")
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise UnitprobeError(
            f"output directory {out} holds files unitprobe did not write ({shown}); "
            "--overwrite would delete them: move them away or choose a new --out"
        )


def check_output_file(out: Path, overwrite: bool, *, protect: Iterable[Path] = ()) -> None:
    """Refuse an output file path that cannot or must not be written, before any work starts.

    ``protect``: the command's own inputs (checkpoints, CSV files), never replaced, not even
    with ``overwrite`` (paths compared after resolving links, and as files where both exist).

    Raises
    ------
    UnitprobeError
        ``out`` is one of ``protect``, is a directory, exists without ``overwrite``, or its
        directory does not exist, is not a directory or is not writable.
    """
    out = Path(out)
    for keep in protect:
        if _same_path(out, Path(keep)):
            raise UnitprobeError(
                f"{out} is an input of this command ({keep}); choose another output path"
            )
    if out.is_dir():
        raise UnitprobeError(f"{out} is a directory, expected a file path")
    if (out.exists() or out.is_symlink()) and not overwrite:
        raise UnitprobeError(f"{out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_file():
        raise UnitprobeError(f"{out} is not a regular file; choose another output path")
    check_parent_writable(out)


def _same_path(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name the same file (links resolved; hard links too)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


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


# ----------------------------------------------------------------------------- renames


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(src, dst, flags)``; False where the call or the flag is not supported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = call(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def _raced(out: Path) -> UnitprobeError:
    return UnitprobeError(
        f"output {out} was created or replaced by another process while this one ran; "
        "nothing was replaced (run again with a different --out)"
    )


def commit_file(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move the finished temporary file ``tmp`` to ``path`` (same directory).

    With ``overwrite`` it replaces ``path`` atomically; without, it fails if ``path`` appeared
    meanwhile (another process wrote it), so nothing is silently replaced.
    """
    relax_mode(tmp)
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        if _renameat2(tmp, path, _RENAME_NOREPLACE):
            return
    except FileExistsError:
        raise _raced(path) from None
    if os.path.lexists(path):
        raise _raced(path)
    os.replace(tmp, path)


def atomic_write(path: Path, write: Callable[[Path], Any], *, overwrite: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Readers see the old file or the complete new one, never a partial write. Without
    ``overwrite``, a ``path`` that appeared meanwhile is not replaced (an error instead).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.absolute().parent)
    os.close(fd)
    try:
        write(Path(tmp))
        commit_file(Path(tmp), path, overwrite)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


# ----------------------------------------------------------------------------- staging


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _leftovers(parent: Path, name: str, kind: str) -> list[Path]:
    """``.NAME.KIND-PID-XXXX`` folders of ``parent`` whose process is gone."""
    stale = []
    prefix = f".{name}.{kind}-"
    with contextlib.suppress(OSError), os.scandir(parent) as scan:
        for entry in scan:
            if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
                continue
            pid = entry.name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                stale.append(Path(entry.path))
    return sorted(stale)


def _clean_leftovers(real: Path, out: Path) -> None:
    """Restore an old result a killed run left aside; remove its staging folders."""
    parent, name = real.parent, real.name
    for old in _leftovers(parent, name, "old"):
        kept = old / "old"
        if not os.path.lexists(real) and kept.is_dir():
            os.rename(kept, real)
            print(
                f"note: restored {out} from {old.name}, left by an interrupted run", file=sys.stderr
            )
        shutil.rmtree(old, ignore_errors=True)
    for stage in _leftovers(parent, name, "partial"):
        shutil.rmtree(stage, ignore_errors=True)
        print(
            f"note: removed {stage.name}, left in {parent} by an interrupted run", file=sys.stderr
        )


def _write_marker(stage: Path, real: Path) -> Callable[[bool], None] | None:
    """List the stage's files in its marker, or in the enclosing result's marker.

    For a part of a result (``figures/``) the enclosing marker lists the old files and the
    new ones until the swap; the returned ``settle(committed)`` then keeps only the new ones,
    or only the old ones where the swap did not happen (None for a result of its own).
    """
    files = sorted(
        p.relative_to(stage).as_posix()
        for p in stage.rglob("*")
        if not p.is_dir() and p.name != MARKER
    )
    enclosing = _read_manifest(real.parent)
    prefix = real.name + "/"
    if enclosing is not None and any(f.startswith(prefix) for f in enclosing):
        # a part of a result (figures/): the result's marker lists it
        kept = {f for f in enclosing if not f.startswith(prefix)}
        new = kept | {prefix + f for f in files}
        _save_manifest(real.parent, enclosing | new)  # the old part stays owned until the swap

        def settle(committed: bool) -> None:
            _save_manifest(real.parent, new if committed else enclosing)

        return settle
    (stage / MARKER).write_text(json.dumps({"format": _MARKER_FORMAT, "files": files}) + "\n")
    return None


def _save_manifest(directory: Path, files: set[str]) -> None:
    text = json.dumps({"format": _MARKER_FORMAT, "files": sorted(files)}) + "\n"
    atomic_write(directory / MARKER, lambda tmp: tmp.write_text(text))


def claim_files(directory: Path, paths: Iterable[Path]) -> None:
    """Add ``paths`` (inside ``directory``) to the marker of the result ``directory``.

    For files written into a result after it was committed (a re-rendered ``report.html``).
    Does nothing when ``directory`` is not a unitprobe result.
    """
    directory = Path(directory)
    listed = _read_manifest(directory)
    if listed is None:
        return
    new = {Path(p).absolute().relative_to(directory.absolute()).as_posix() for p in paths}
    if not new <= listed:
        _save_manifest(directory, listed | new)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise SystemExit so that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None and signal.getsignal(sig) in (signal.SIG_DFL, None):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def staged_output_dir(
    out: Path, *, overwrite: bool = False, protect: Iterable[Path] = ()
) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``out`` only if the block succeeds.

    The temporary directory is created beside ``out`` (same file system), so the final move
    is a rename. If the block raises (or is interrupted, SIGTERM included), the temporary
    directory is removed and ``out`` is left exactly as it was. An existing ``out`` is
    replaced only with ``overwrite`` and only if it is a previous unitprobe result
    (:func:`check_output_dir`, checked before the block and again at commit time). The
    committed directory holds :data:`MARKER`.
    """
    out = Path(out)
    protect = tuple(protect)
    real = _real(out)
    _clean_leftovers(real, out)
    check_output_dir(out, overwrite, protect=protect)
    before = _identity(real)
    parent = real.parent
    stage = Path(tempfile.mkdtemp(prefix=f".{real.name}.partial-{os.getpid()}-", dir=parent))
    relax_mode(stage, directory=True)
    try:
        with _signals_raise():
            try:
                yield stage
            except OSError as err:  # name the output, not the staging folder, in messages
                if err.filename and str(err.filename).startswith(str(stage)):
                    err.filename = str(out) + str(err.filename)[len(str(stage)) :]
                raise
            settle = _write_marker(stage, real)
            try:
                if _identity(real) != before:
                    raise _raced(out)
                _commit(stage, real, out, overwrite, protect)
            except BaseException:
                if settle is not None:
                    settle(False)
                raise
            if settle is not None:
                settle(True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def _commit(stage: Path, real: Path, out: Path, overwrite: bool, protect: tuple) -> None:
    """Swap the finished ``stage`` in for ``real`` (checked again: nothing raced us)."""
    if not os.path.lexists(real):
        try:
            if _renameat2(stage, real, _RENAME_NOREPLACE):
                return
        except (FileExistsError, OSError) as err:
            if isinstance(err, FileExistsError) or err.errno == errno.EEXIST:
                raise _raced(out) from None
            raise
        if os.path.lexists(real):
            raise _raced(out)
        os.rename(stage, real)
        return
    if _nonempty(real):
        check_output_dir(out, overwrite, protect=protect)  # again: files may have appeared
    else:
        with contextlib.suppress(OSError):
            os.rmdir(real)  # an empty directory is simply taken over
        if not os.path.lexists(real):
            _commit(stage, real, out, overwrite, protect)
            return
    if _renameat2(stage, real, _RENAME_EXCHANGE):
        shutil.rmtree(stage, ignore_errors=True)  # stage now holds the old result
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{real.name}.old-{os.getpid()}-", dir=real.parent))
    os.rename(real, aside / "old")  # a kill from here on: the next run restores it
    os.rename(stage, real)
    shutil.rmtree(aside, ignore_errors=True)


# ----------------------------------------------------------------------------- writing


def write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a result table with a fixed float format, so equal numbers give equal bytes."""
    table.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")
    return path


def write_csv_atomic(table: pd.DataFrame, path: Path, *, overwrite: bool = True) -> Path:
    """Write a CSV through a temporary file in the same directory, then rename it into place."""
    return atomic_write(path, lambda tmp: write_csv(table, tmp), overwrite=overwrite)


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


_BLAS_CONTROLLER: list = []


def blas_limit(n: int | None):
    """Context that caps numpy's BLAS threads at ``n`` (no-op for None)."""
    if n is None:
        return contextlib.nullcontext()
    # the controller knows the libraries loaded when it was made: make it again after new
    # imports (scipy, torch) may have loaded another BLAS
    if not _BLAS_CONTROLLER or _BLAS_CONTROLLER[0][0] != len(sys.modules):
        _BLAS_CONTROLLER[:] = [(len(sys.modules), threadpoolctl.ThreadpoolController())]
    return _BLAS_CONTROLLER[0][1].limit(limits=n, user_api="blas")


def stderr_is_tty() -> bool:
    """Whether standard error is a terminal (progress bars are shown only then by default)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)())
