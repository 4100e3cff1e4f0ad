"""Options shared by several commands: task, data, seed, device, quiet, output and list options.

Defaults come from the library's config classes (:mod:`unitprobe.config`,
:class:`~unitprobe.model.train.TrainConfig`), and the vocabularies of list options from
:mod:`unitprobe.schemas`, so each has one definition.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd
from click.core import ParameterSource
from click.shell_completion import CompletionItem

from unitprobe._utils import check_output_file, write_csv_atomic
from unitprobe.config import AnalyzeConfig, ProbeConfig
from unitprobe.devices import DEFAULT_DEVICE, DEVICES
from unitprobe.schemas import FIGURE_FORMATS, STATE_CHOICES
from unitprobe.tasks import PRESETS, DataSource, TaskSpec, get_preset, read_task_file
from unitprobe.tasks.csvdata import FILLS

__all__ = [
    "choice_list_option",
    "comma_choices",
    "data_options",
    "default_of",
    "device_option",
    "sweep_device_option",
    "formats_option",
    "input_files",
    "int_list",
    "jobs_option",
    "MAX_SEED",
    "out_file_options",
    "probe_options",
    "progress",
    "quiet_option",
    "resolve_task",
    "say",
    "seed_option",
    "split_list",
    "state_option",
    "task_options",
    "write_table",
]

_DATA_READING = ("time_col", "sequence_col", "window", "stride", "fill", "sep")
#: Largest seed (torch and numpy both take it).
MAX_SEED = 2**63 - 1


def _complete_tasks(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of ``--task``: the preset names."""
    return [CompletionItem(name) for name in sorted(PRESETS) if name.startswith(incomplete)]


def default_of(func: Callable[..., Any], name: str) -> Any:
    """The default of parameter ``name`` of ``func`` (for defaults no config class holds)."""
    return inspect.signature(func).parameters[name].default


def resolve_task(name: str | None, path: Path | None) -> TaskSpec | None:
    """The TaskSpec named by ``--task`` or read from ``--task-file`` (None if neither)."""
    if path is not None:
        return read_task_file(path)
    if name is not None:
        return get_preset(name)
    return None


def input_files() -> list[Path]:
    """The files the running command reads from its options: ``--task-file``, ``--data`` and
    a ``--scaling`` file (what no output may replace)."""
    ctx = click.get_current_context(silent=True)
    params = ctx.params if ctx is not None else {}
    found = [params.get("task_file"), params.get("data")]
    scaling = params.get("scaling")
    if scaling is not None and str(scaling) not in ("none", "standardize"):
        found.append(scaling)
    return [Path(p) for p in found if p is not None]


def task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--task NAME`` / ``--task-file FILE`` (mutually exclusive); the command gets ``task``."""

    @click.option(
        "--task",
        "task_name",
        metavar="NAME",
        shell_complete=_complete_tasks,
        help="Preset task (see `unitprobe tasks list`); a TOML file goes to --task-file.",
    )
    @click.option(
        "--task-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Task spec in TOML (see `unitprobe tasks show seed --toml`; `length` is required).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, task_name: str | None, task_file: Path | None, **kwargs: Any) -> Any:
        if task_name and task_file:
            raise click.UsageError("give --task or --task-file, not both")
        if task_name and task_name.endswith(".toml") and task_name not in PRESETS:
            raise click.UsageError(
                f"--task takes a preset name; give a file as --task-file {task_name}"
            )
        return func(*args, task=resolve_task(task_name, task_file), **kwargs)

    return wrapper


def data_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--data CSV`` and how to read it; the command gets ``data_source`` (or None)."""

    @click.option(
        "--data",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="CSV file with one column per series (instead of generated sequences).",
    )
    @click.option(
        "--time-col", metavar="COLUMN", help="Order the rows by this column (numbers or dates)."
    )
    @click.option(
        "--sequence-col", metavar="COLUMN", help="Rows with the same id form one sequence."
    )
    @click.option(
        "--window",
        type=click.IntRange(min=1),
        help="Cut each sequence into windows of this many steps (needed for one long series).",
    )
    @click.option(
        "--stride",
        type=click.IntRange(min=1),
        help="With --window: steps from one window's start to the next (default: the window "
        "length, so windows do not overlap; a smaller stride makes them share time points).",
    )
    @click.option(
        "--fill",
        type=click.Choice([f for f in FILLS if f is not None]),
        help="Missing values: interpolate, carry the last value forward, or drop their rows "
        "(default: refuse them).",
    )
    @click.option("--sep", default=",", help="Field delimiter of the CSV file ('\\t' for tab).")
    @functools.wraps(func)
    def wrapper(*args: Any, data: Path | None, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        reading = {key: kwargs.pop(key) for key in _DATA_READING}
        if data is None:
            given = [
                "--" + key.replace("_", "-")
                for key in _DATA_READING
                if ctx.get_parameter_source(key) == ParameterSource.COMMANDLINE
            ]
            if given:
                raise click.UsageError(f"{', '.join(given)} given without --data CSV")
        if reading["sep"] == "\\t":  # typed as two characters on a command line
            reading["sep"] = "\t"
        source = None if data is None else DataSource(data, **reading)
        return func(*args, data_source=source, **kwargs)

    return wrapper


def split_list(text: str) -> list[str]:
    """``"a, b"`` -> ``["a", "b"]``; a usage error if it names nothing."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise click.BadParameter(f"{text!r} names nothing")
    return items


def comma_choices(allowed: Sequence[str]) -> Callable[..., tuple[str, ...]]:
    """A click callback that parses ``a,b`` into a tuple of distinct names from ``allowed``."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
        items = split_list(value)
        for item in items:
            if item not in allowed:
                raise click.BadParameter(f"{item!r} is not one of {', '.join(allowed)}")
        dupes = sorted({i for i in items if items.count(i) > 1})
        if dupes:
            raise click.BadParameter(f"{', '.join(dupes)} given more than once")
        return tuple(items)

    return callback


def int_list(minimum: int) -> Callable[..., tuple[int, ...] | None]:
    """A click callback that parses ``1,2,4`` into distinct integers >= ``minimum``."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        numbers = []
        for item in split_list(value):
            try:
                number = int(item)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not an integer") from None
            if number < minimum:
                raise click.BadParameter(f"{number} is not >= {minimum}")
            numbers.append(number)
        if len(set(numbers)) != len(numbers):
            raise click.BadParameter(f"{value!r} repeats a value")
        return tuple(numbers)

    return callback


def choice_list_option(
    *names: str, allowed: Sequence[str], default: Sequence[str], what: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A comma-separated list option whose items are checked against ``allowed``."""
    return click.option(
        *names,
        default=",".join(default),
        callback=comma_choices(allowed),
        help=f"Comma-separated {what} ({', '.join(allowed)}).",
    )


def formats_option(default: Sequence[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format png,pdf``: figure formats."""
    return choice_list_option(
        "--format", "formats", allowed=FIGURE_FORMATS, default=default, what="figure formats"
    )


def state_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--state h|c|both``: which unit state a method reads (probes) or replaces (ablation)."""
    return click.option(
        "--state",
        type=click.Choice(STATE_CHOICES),
        default=ProbeConfig.state,
        help="Unit state: h (hidden), c (cell) or both.",
    )(func)


def probe_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--targets``, ``--state``, ``--n-splits``, ``--alpha``, ``--n-permutations``,
    ``--n-controls``: the probe settings of :class:`~unitprobe.config.ProbeConfig`."""
    options = [
        click.option(
            "--targets",
            "target_exprs",
            multiple=True,
            metavar="EXPR",
            help="Probe target (repeatable), e.g. 'X[t-1]'; default: the task's terms.",
        ),
        state_option,
        click.option(
            "--n-splits",
            type=click.IntRange(min=2),
            default=ProbeConfig.n_splits,
            help="GroupKFold folds over sequences.",
        ),
        click.option(
            "--alpha",
            type=click.FloatRange(min=0),
            default=ProbeConfig.alpha,
            help="Ridge penalty of the per-unit probes.",
        ),
        click.option(
            "--n-permutations",
            type=click.IntRange(min=1),
            default=ProbeConfig.n_permutations,
            help="Sequence permutations for p-values.",
        ),
        click.option(
            "--n-controls",
            type=click.IntRange(min=0),
            default=ProbeConfig.n_controls,
            help="Untrained control networks.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--quiet/-q``: no progress bars or chatter."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")(func)


def seed_option(
    default: int, help: str = "Random seed (data, init, order)."
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--seed N`` (>= 0)."""
    return click.option(
        "--seed", type=click.IntRange(min=0, max=MAX_SEED), default=default, help=help
    )


def device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--device cpu|cuda|auto``: where to train (:func:`unitprobe.devices.resolve_device`);
    the command gets ``device``, a name, and resolves it before it reads or writes anything."""
    return _device_option("Where to train")(func)


def sweep_device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--device cpu|cuda|auto`` of ``sweep``: where each configuration trains and is
    analyzed; resolved as :func:`device_option`'s."""
    return _device_option("Where to train and analyze")(func)


def run_device_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--device cpu|cuda|auto`` of the analysis commands: where the model runs (probes fit
    on the CPU); :func:`~unitprobe.cli._model.model_options` resolves it."""
    return _device_option("Where to run the model")(func)


def _device_option(where: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--device",
        type=click.Choice(DEVICES),
        default=DEFAULT_DEVICE,
        help=f"{where} (auto: cuda when there is a GPU); results are the same up to "
        "float rounding. cuda needs a CUDA build of torch and a GPU.",
    )


def jobs_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--jobs N``: the CPU cores a command may use (torch threads), one meaning everywhere."""
    return click.option(
        "--jobs",
        type=click.IntRange(min=1, max=1024),
        default=AnalyzeConfig.jobs,
        help="CPU cores to use (torch threads; analyze also draws figures in parallel).",
    )(func)


def out_file_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--out FILE.csv`` and ``--overwrite``."""
    func = click.option("--overwrite", is_flag=True, help="Replace an existing output file.")(func)
    return click.option(
        "--out", type=click.Path(path_type=Path), required=True, help="CSV file to write."
    )(func)


def progress(quiet: bool) -> bool | None:
    """The library's ``progress`` argument: off with ``--quiet``, else automatic."""
    return False if quiet else None


def say(quiet: bool, message: str) -> None:
    """Print ``message`` unless ``--quiet``."""
    if not quiet:
        click.echo(message)


def write_table(table: pd.DataFrame, out: Path, overwrite: bool, quiet: bool) -> None:
    """Write a result table to ``out`` through a temporary file (refusing to replace it
    without ``overwrite``)."""
    check_output_file(out, overwrite)
    write_csv_atomic(table, out, overwrite=overwrite)
    say(quiet, f"wrote {len(table)} rows to {out}")
