"""Where sweep runs execute: local worker processes or a dask cluster.

Each function takes the function that runs one configuration, so this module knows nothing of
what a run does. Local workers are spawned processes with one torch thread each; interrupting
the sweep terminates them at once (their unfinished runs are redone on resume), and on Linux
they get SIGTERM when the sweep process dies, even by SIGKILL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from unitprobe.errors import UnitprobeError

__all__ = ["run_local", "run_dask", "dask_client", "one_line"]


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 300 characters: ``"Type: message"``."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}"[:300] if text else type(err).__name__


#: ``prctl`` option that sends the calling process a signal when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux; elsewhere a
    no-op), so a killed sweep leaves no worker behind; exit now if the parent is gone."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _init_worker() -> None:
    _die_with_parent()
    torch.set_num_threads(1)


def run_local(run_config, pending, runs_dir, jobs, figures, on_result) -> None:
    """Run ``run_config(config, runs_dir, figures=...)`` for every pending config in ``jobs``
    spawned worker processes (in this process when ``jobs == 1``); report each to
    ``on_result(config, result, error)``. An interrupt terminates the workers at once."""
    if jobs == 1 or len(pending) == 1:
        for config in pending:
            on_result(config, run_config(config, runs_dir, figures=figures), None)
        return
    executor = ProcessPoolExecutor(
        max_workers=min(jobs, len(pending)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )
    futures = {}
    try:
        futures = {
            executor.submit(run_config, c, str(runs_dir), figures=figures): c for c in pending
        }
        for future in as_completed(futures):
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                raise UnitprobeError(
                    f"a worker process died while running {futures[future].name} (out of "
                    "memory?); rerun the same command to resume the sweep"
                ) from error
            on_result(futures[future], None if error else future.result(), error)
    except BaseException:
        for future in futures:
            future.cancel()
        _terminate(executor)
        raise
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _terminate(executor: Any) -> None:
    """Stop the worker processes now (their unfinished runs are redone on resume)."""
    terminate = getattr(executor, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        process.terminate()


def dask_client(scheduler: Any) -> Any:
    """A ``distributed.Client`` for a scheduler address (or the client itself)."""
    try:  # optional dependency (the 'dist' extra)
        from distributed import Client
    except ImportError:
        raise UnitprobeError(
            "--scheduler needs dask.distributed: pip install -e '.[dist]'"
        ) from None
    if isinstance(scheduler, Client):
        return scheduler
    try:
        return Client(scheduler, timeout="30s")
    except (OSError, TimeoutError) as err:
        raise UnitprobeError(
            f"cannot connect to the dask scheduler at {scheduler!r}: {one_line(err)}"
        ) from None


def run_dask(run_config, pending, runs_dir, client, figures, on_result) -> None:
    """Like :func:`run_local`, on the workers of a dask cluster."""
    from distributed import as_completed  # optional dependency, imported with the client

    futures = {}
    try:
        for config in pending:
            future = client.submit(
                run_config,
                config,
                str(Path(runs_dir).absolute()),
                figures=figures,
                key=f"unitprobe-run-{config.name}",
                pure=False,
            )
            futures[future] = config
        for future in as_completed(list(futures)):
            try:
                result, error = future.result(), None
            except Exception as err:  # errors of a run itself are recorded by run_config
                if "Cancelled" in type(err).__name__:
                    raise UnitprobeError(
                        f"the dask scheduler cancelled {futures[future].name}; rerun the same "
                        "command to resume the sweep"
                    ) from err
                result, error = None, err  # e.g. KilledWorker: recorded as failed
            on_result(futures[future], result, error)
    except BaseException:
        client.cancel(list(futures), force=True)
        raise
