"""The ``unitprobe`` command line: a thin layer of option parsing over the library.

Every command turns its options into library calls and prints the result. Errors the user can
act on (:class:`~unitprobe.errors.UnitprobeError`) become one line ``Error: ...`` with exit
status 1; usage errors exit with 2. No traceback is shown for either.

Bad input is refused as early as possible and leaves the disk as it was: names in list
options (``--ablation``, ``--format``, ...) are checked while parsing; output paths (exists,
is a file, not writable) before a checkpoint is read or a model trained; results are written
to temporary files or a staging directory that replace the output only on success.
``--data CSV`` and its reading options (``--time-col``, ``--sequence-col``, ``--window``,
``--stride``, ``--fill``, ``--sep``) are shared by ``train``, ``analyze``, ``probe``,
``ablate``, ``attribute`` and ``tasks check``; see :func:`unitprobe.tasks.load_csv`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from unitprobe import __version__
from unitprobe.errors import UnitprobeError

__all__ = ["main"]

SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


class _Group(click.Group):
    """A click group that turns the package's errors into ``Error: ...`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnitprobeError as err:
            raise click.ClickException(_one_line(err)) from None
        except OSError as err:  # disk full, permission denied while writing results
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None
        except MemoryError as err:  # e.g. a task file asking for 10**9 steps per sequence
            detail = f" ({_one_line(err)})" if str(err) else ""
            raise click.ClickException(
                f"out of memory{detail}; use fewer or shorter sequences"
            ) from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@click.group(cls=_Group, context_settings=SETTINGS)
@click.version_option(__version__, "--version", prog_name="unitprobe")
def main() -> None:
    """What does each unit of a recurrent network hold?

    Train multi-unit LSTMs on sequence tasks defined by recurrence relations, then find out
    which unit holds which term with probes, ablations and attributions.
    """


# ----------------------------------------------------------------------------- shared options

#: Values of the comma-separated list options (the library checks them again).
ABLATION_MODES = ("zero", "mean", "resample")
ATTRIBUTION_METHODS = ("integrated_gradients", "saliency", "input_x_gradient")
FIGURE_FORMATS = ("png", "pdf", "svg")
FILLS = ("interpolate", "ffill", "drop")
#: Most values a command generates from a task (2**31 float64 values = 16 GiB).
MAX_GENERATED_VALUES = 2**31


def task_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--task NAME`` / ``--task-file FILE`` (mutually exclusive)."""

    @click.option(
        "--task", "task_name", metavar="NAME", help="Preset task (see `unitprobe tasks list`)."
    )
    @click.option(
        "--task-file",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Task spec in TOML (see `unitprobe tasks show seed --toml`).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, task_name: str | None, task_file: Path | None, **kwargs: Any) -> Any:
        if task_name and task_file:
            raise click.UsageError("give --task or --task-file, not both")
        return func(*args, task=resolve_task(task_name, task_file), **kwargs)

    return wrapper


def resolve_task(name: str | None, path: Path | None) -> Any:
    """The TaskSpec named by ``--task`` or read from ``--task-file`` (None if neither)."""
    from unitprobe.tasks import get_preset
    from unitprobe.tasks.csvdata import read_task_file

    if path is not None:
        return read_task_file(path)
    if name is not None:
        return get_preset(name)
    return None


@dataclass(frozen=True)
class DataSource:
    """A CSV file and how to read it (the ``--data`` options)."""

    path: Path
    options: dict[str, Any]

    def load(self, spec: Any = None) -> Any:
        """The file as a Dataset (see :func:`unitprobe.tasks.load_csv`)."""
        from unitprobe.tasks import load_csv

        return load_csv(self.path, spec, **self.options)


_DATA_READING = ("time_col", "sequence_col", "window", "stride", "fill", "sep")


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
        "--stride", type=click.IntRange(min=1), help="Steps between window starts [--window]."
    )
    @click.option(
        "--fill",
        type=click.Choice(FILLS),
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
        source = None if data is None else DataSource(data, reading)
        return func(*args, data_source=source, **kwargs)

    return wrapper


def _dataset(spec: Any, source: DataSource | None, n_sequences: int, seed: int) -> Any:
    """Sequences of ``spec``: read from ``source``, or generated."""
    from unitprobe.tasks import generate
    from unitprobe.tasks.csvdata import is_data_task

    if source is not None:
        return source.load(spec)
    if is_data_task(spec):
        raise UnitprobeError(
            f"task '{spec.name}' is a data task: its series ({', '.join(spec.series)}) are "
            "observed, not generated; pass --data CSV with these columns"
        )
    steps = spec.burn_in + spec.length + spec.horizon
    values = n_sequences * steps * len(spec.series)
    if values > MAX_GENERATED_VALUES:
        raise UnitprobeError(
            f"task '{spec.name}' asks for {n_sequences} sequences x {steps} steps (burn_in + "
            f"length + horizon) x {len(spec.series)} series = {values:.3g} values, more than "
            f"{MAX_GENERATED_VALUES:.3g}; use fewer or shorter sequences"
        )
    return generate(spec, n_sequences, seed)


def _need_sequences(dataset: Any, need: int, why: str, from_csv: bool) -> None:
    """Refuse data with fewer than ``need`` sequences, saying how to get more."""
    n = dataset.n_sequences
    if n >= need:
        return
    how = (
        "cut the CSV's series into windows with --window N (and --stride S)"
        if from_csv
        else f"use --n-sequences >= {need}"
    )
    plural = "sequence" if n == 1 else "sequences"
    raise UnitprobeError(f"the data have {n} {plural}; {why} need at least {need}: {how}")


def _comma_choices(allowed: tuple[str, ...]) -> Callable[..., tuple[str, ...]]:
    """A click callback that parses ``a,b`` into a tuple of distinct names from ``allowed``."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
        items = _split_list(value)
        for item in items:
            if item not in allowed:
                raise click.BadParameter(f"{item!r} is not one of {', '.join(allowed)}")
        dupes = sorted({i for i in items if items.count(i) > 1})
        if dupes:
            raise click.BadParameter(f"{', '.join(dupes)} given more than once")
        return tuple(items)

    return callback


def _split_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise click.BadParameter(f"{text!r} names nothing")
    return items


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or chatter.")(func)


def seed_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seed", type=click.IntRange(min=0), default=0, help="Random seed (data, init, order)."
    )(func)


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        click.echo(message)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    from unitprobe._utils import check_output_file

    check_output_file(path, overwrite)


# ----------------------------------------------------------------------------- tasks


@main.group(cls=_Group)
def tasks() -> None:
    """List, show and check task specifications."""


@tasks.command("list")
def tasks_list() -> None:
    """List the preset tasks."""
    from unitprobe.tasks import PRESETS

    width = max(map(len, PRESETS))
    for name, spec in PRESETS.items():
        click.echo(
            f"{name:<{width}}  {spec.description.splitlines()[0] if spec.description else ''}"
        )
    click.echo(f"{'delay-K':<{width}}  (any K >= 1) remember the input from K steps back")


@tasks.command("show")
@click.argument("name", required=False)
@click.option("--task-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--toml", "as_toml", is_flag=True, help="Print the spec as a TOML task file.")
def tasks_show(name: str | None, task_file: Path | None, as_toml: bool) -> None:
    """Show a preset (NAME) or a task file: relations, inputs, outputs, initial values."""
    if (name is None) == (task_file is None):
        raise click.UsageError("give a preset NAME or --task-file, not both or neither")
    spec = resolve_task(name, task_file)
    click.echo(spec.to_toml() if as_toml else spec.describe())


@tasks.command("check")
@task_options
@data_options
@click.option(
    "--series",
    "series_args",
    multiple=True,
    metavar="NAME=v0,v1,...",
    help="Values of one series, e.g. --series K=0,1,1,2,3,5 (repeatable).",
)
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-9, help="Relative tolerance.")
def tasks_check(
    task: Any, data_source: DataSource | None, series_args: tuple[str, ...], tolerance: float
) -> None:
    """Evaluate a task's relations on data and report each relation's residuals.

    Example: unitprobe tasks check --task seed --series K=0,1,1,2,3,5 --series X=1,4,7,12,30
    """
    from unitprobe.tasks import check_summary, parse_series_arg, relation_residuals
    from unitprobe.tasks.csvdata import is_data_task

    if task is None:
        raise click.UsageError("give --task or --task-file")
    if (data_source is None) == (not series_args):
        raise click.UsageError("give --data CSV or --series NAME=values, not both or neither")
    if is_data_task(task):
        raise UnitprobeError(
            f"task '{task.name}' is a data task: it has no relations to check, only observed series"
        )
    if data_source is not None:
        loaded = data_source.load()
        values = {name: loaded.raw_full(name) for name in loaded.raw}
    else:
        values = dict(map(parse_series_arg, series_args))
    residuals = relation_residuals(task, values)
    summary = check_summary(residuals, rtol=tolerance)
    click.echo(summary.to_string(index=False))
    for row in summary[~summary["ok"]].itertuples():
        first = residuals[
            (residuals["relation"] == row.relation) & (residuals["step"] == row.first_failing_step)
        ].iloc[0]
        click.echo(
            f"FAIL {row.relation}: at step {int(first.step)} "
            f"the relation gives {first.expected:g}, "
            f"the data has {first.observed:g} (residual {first.residual:g})"
        )
    if not summary["ok"].all():
        sys.exit(1)


# ----------------------------------------------------------------------------- train


@main.command()
@task_options
@data_options
@click.option("--units", type=click.IntRange(min=1), default=8, help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, help="LSTM layers.")
@seed_option
@click.option(
    "--n-sequences",
    type=click.IntRange(min=2),
    default=512,
    help="Generated sequences (ignored with --data).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=200, help="Maximum epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option(
    "--lr", type=click.FloatRange(min=0, min_open=True), default=1e-2, help="Adam learning rate."
)
@click.option(
    "--patience", type=click.IntRange(min=1), default=40, help="Early-stopping patience (epochs)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Checkpoint to write (.pt)."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing checkpoint.")
@quiet_option
def train(
    task: Any,
    data_source: DataSource | None,
    units: int,
    layers: int,
    seed: int,
    n_sequences: int,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Train a multi-unit LSTM on a task and save a checkpoint.

    With --data CSV the network learns the file's series: those of --task/--task-file (a task
    file with `relations = []` names observed series), or, with neither, every series column,
    each predicted one step ahead. Validation holds out whole sequences (windows).
    """
    from unitprobe.model.checkpoint import save_trained
    from unitprobe.model.train import TrainConfig
    from unitprobe.model.train import train as fit

    if task is None and data_source is None:
        raise click.UsageError("give --task NAME, --task-file FILE or --data CSV")
    _refuse_existing(out, overwrite)
    config = TrainConfig(
        n_units=units,
        n_layers=layers,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        patience=patience,
    )
    dataset = _training_data(task, data_source, n_sequences, seed)
    _need_sequences(dataset, 2, "training and validation", from_csv=data_source is not None)
    result = fit(dataset, config, progress=_progress(quiet))
    save_trained(out, result, dataset.spec, config)
    _say(quiet, _train_summary(dataset.spec, result, out))


def _training_data(task: Any, source: DataSource | None, n_sequences: int, seed: int) -> Any:
    """The training sequences; a CSV without a task becomes a data task over its columns."""
    if task is not None or source is None:
        return _dataset(task, source, n_sequences, seed)
    from unitprobe.tasks.csvdata import data_task

    loaded = source.load()
    spec = data_task(source.path.stem or "data", list(loaded.input_names), length=loaded.length)
    return dataclasses.replace(loaded, spec=spec)


def _train_summary(task: Any, result: Any, out: Path) -> str:
    m, units = result.metrics, result.model.config.n_units
    return (
        f"trained {units}-unit LSTM on '{task.name}' in {m['train_seconds']:.1f} s "
        f"({m['epochs_run']} epochs, best {m['best_epoch']})\n"
        f"validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.3g}% of the repeat-last-value "
        f"baseline ({m['baseline_mse']:.3g}), normalized units\n"
        f"checkpoint: {out}"
    )


# ----------------------------------------------------------------------------- analysis


def model_options(out: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """MODEL argument, task override, --unsafe-load, --data ..., --n-sequences, --seed.

    ``out`` is ``"file"`` or ``"dir"``: what the command's ``--out`` names. It is checked
    before the checkpoint is loaded, so a bad output path costs nothing.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @click.argument("model_path", metavar="MODEL.pt", type=click.Path(path_type=Path))
        @task_options
        @click.option(
            "--unsafe-load",
            is_flag=True,
            help="Allow a pickled nn.Module checkpoint (unpickling runs code: trusted files only).",
        )
        @data_options
        @click.option(
            "--n-sequences",
            type=click.IntRange(min=2),
            default=256,
            help="Generated sequences (ignored with --data).",
        )
        @seed_option
        @functools.wraps(func)
        def wrapper(
            *args: Any,
            model_path: Path,
            task: Any,
            unsafe_load: bool,
            data_source: DataSource | None,
            n_sequences: int,
            seed: int,
            **kwargs: Any,
        ) -> Any:
            from unitprobe._utils import check_output_dir
            from unitprobe.model.checkpoint import load

            if out == "dir":
                check_output_dir(kwargs["out"], kwargs["overwrite"])
            else:
                _refuse_existing(kwargs["out"], kwargs["overwrite"])
            ckpt = load(model_path, task=task, unsafe=unsafe_load)
            dataset = _dataset(ckpt.task, data_source, n_sequences, seed)
            return func(
                *args,
                ckpt=ckpt,
                dataset=dataset,
                seed=seed,
                from_csv=data_source is not None,
                **kwargs,
            )

        return wrapper

    return decorate


def _csv_out(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--overwrite", is_flag=True, help="Replace an existing output file.")(func)
    return click.option(
        "--out", type=click.Path(path_type=Path), required=True, help="CSV file to write."
    )(func)


def _write_table(table: Any, out: Path, overwrite: bool, quiet: bool) -> None:
    from unitprobe._utils import write_csv_atomic

    _refuse_existing(out, overwrite)
    write_csv_atomic(table, out)
    _say(quiet, f"wrote {len(table)} rows to {out}")


def _parse_groups(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[tuple[int, ...], ...]:
    """``--group 1+4`` → ((1, 4),): non-negative unit numbers, each at most once per group."""
    groups = []
    for text in values:
        try:
            units = tuple(int(part) for part in text.split("+"))
        except ValueError:
            raise click.BadParameter(
                f"group {text!r} must be unit numbers joined by '+', e.g. 1+4"
            ) from None
        if any(u < 0 for u in units):
            raise click.BadParameter(f"group {text!r}: unit numbers start at 0")
        if len(set(units)) != len(units):
            raise click.BadParameter(f"group {text!r} names a unit more than once")
        groups.append(units)
    return tuple(groups)


@main.command()
@model_options(out="file")
@click.option(
    "--targets",
    "target_exprs",
    multiple=True,
    metavar="EXPR",
    help="Probe target (repeatable), e.g. 'X[t-1]'.",
)
@click.option(
    "--state", type=click.Choice(["h", "c", "both"]), default="h", help="Unit state to probe."
)
@click.option(
    "--n-splits", type=click.IntRange(min=2), default=5, help="GroupKFold folds over sequences."
)
@click.option(
    "--n-permutations",
    type=click.IntRange(min=1),
    default=99,
    help="Sequence permutations for p-values.",
)
@click.option(
    "--n-controls", type=click.IntRange(min=0), default=3, help="Untrained control networks."
)
@_csv_out
@quiet_option
def probe(
    ckpt: Any,
    dataset: Any,
    seed: int,
    from_csv: bool,
    target_exprs: tuple[str, ...],
    state: str,
    n_splits: int,
    n_permutations: int,
    n_controls: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Linear probes from every unit (and each layer's population) to the task's terms."""
    from unitprobe.methods.probes import probe_model

    _need_sequences(dataset, n_splits, "probes (cross-validated over sequences)", from_csv)
    table = probe_model(
        ckpt.model,
        dataset,
        targets=list(target_exprs) or None,
        state=state,
        n_splits=n_splits,
        n_permutations=n_permutations,
        n_controls=n_controls,
        seed=seed,
        progress=_progress(quiet),
    )
    _write_table(table, out, overwrite, quiet)


@main.command()
@model_options(out="file")
@click.option(
    "--modes",
    default=",".join(ABLATION_MODES),
    callback=_comma_choices(ABLATION_MODES),
    help="Comma-separated ablation modes (zero, mean, resample).",
)
@click.option("--site", type=click.Choice(["h", "c", "both"]), default="h", help="State to ablate.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="U+V",
    callback=_parse_groups,
    help="Also ablate this group of units together, e.g. 1+4.",
)
@_csv_out
@quiet_option
def ablate(
    ckpt: Any,
    dataset: Any,
    seed: int,
    from_csv: bool,
    modes: tuple[str, ...],
    site: str,
    groups: tuple[tuple[int, ...], ...],
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Ablate every unit (and groups) through the recurrence; report the change of output MSE."""
    from unitprobe.methods.ablation import ablation_table

    table = ablation_table(
        ckpt.model,
        dataset,
        groups=[list(g) for g in groups] or None,
        modes=list(modes),
        site=site,
        seed=seed,
        progress=_progress(quiet),
    )
    _write_table(table, out, overwrite, quiet)


@main.command()
@model_options(out="file")
@click.option(
    "--methods",
    default="integrated_gradients",
    callback=_comma_choices(ATTRIBUTION_METHODS),
    help="Comma-separated input × lag methods: integrated_gradients, saliency, input_x_gradient.",
)
@click.option(
    "--max-sequences", type=click.IntRange(min=1), default=128, help="Sequences to attribute."
)
@_csv_out
@quiet_option
def attribute(
    ckpt: Any,
    dataset: Any,
    seed: int,
    from_csv: bool,
    methods: tuple[str, ...],
    max_sequences: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Captum attributions: input × lag, unit → output, and each unit's receptive field."""
    from unitprobe.methods.attribution import attribution_table

    inputs = dataset.inputs[:max_sequences]
    table = attribution_table(
        ckpt.model,
        inputs,
        dataset.input_names,
        dataset.output_names,
        methods=list(methods),
        seed=seed,
        progress=_progress(quiet),
    )
    _write_table(table, out, overwrite, quiet)


@main.command()
@model_options(out="dir")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Results directory to create."
)
@click.option(
    "--targets",
    "target_exprs",
    multiple=True,
    metavar="EXPR",
    help="Probe target (repeatable); default: the task's terms.",
)
@click.option(
    "--state", type=click.Choice(["h", "c", "both"]), default="h", help="Unit state to probe."
)
@click.option(
    "--ablation",
    "ablation_modes",
    default=",".join(ABLATION_MODES),
    callback=_comma_choices(ABLATION_MODES),
    help="Comma-separated ablation modes (zero, mean, resample).",
)
@click.option(
    "--attribution",
    "attribution_methods",
    default="integrated_gradients",
    callback=_comma_choices(ATTRIBUTION_METHODS),
    help="Comma-separated input × lag attribution methods "
    "(integrated_gradients, saliency, input_x_gradient).",
)
@click.option(
    "--n-permutations",
    type=click.IntRange(min=1),
    default=99,
    help="Sequence permutations for p-values.",
)
@click.option(
    "--n-controls", type=click.IntRange(min=0), default=3, help="Untrained control networks."
)
@click.option(
    "--format",
    "formats",
    default="png,pdf",
    callback=_comma_choices(FIGURE_FORMATS),
    help="Comma-separated figure formats (png, pdf, svg).",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, help="CPU threads.")
@quiet_option
def analyze(
    ckpt: Any,
    dataset: Any,
    seed: int,
    from_csv: bool,
    out: Path,
    target_exprs: tuple[str, ...],
    state: str,
    ablation_modes: tuple[str, ...],
    attribution_methods: tuple[str, ...],
    n_permutations: int,
    n_controls: int,
    formats: tuple[str, ...],
    overwrite: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Which unit holds which term? Probes, ablations, attributions, roles, figures, report."""
    from unitprobe.methods.roles import summarize_roles
    from unitprobe.pipeline.analyze import AnalyzeConfig
    from unitprobe.pipeline.analyze import analyze as run_analysis

    config = AnalyzeConfig(
        n_sequences=dataset.n_sequences,
        seed=seed,
        targets=tuple(target_exprs) or None,
        state=state,
        n_permutations=n_permutations,
        n_controls=n_controls,
        ablation_modes=ablation_modes,
        attribution_methods=attribution_methods,
        formats=formats,
        jobs=jobs,
    )
    _need_sequences(dataset, config.n_splits, "probes (cross-validated over sequences)", from_csv)
    result = run_analysis(
        ckpt,
        out,
        config,
        dataset=dataset,
        overwrite=overwrite,
        progress=_progress(quiet),
        echo=None if quiet else click.echo,
    )
    click.echo(summarize_roles(result.tables["roles"]))
    click.echo(f"report: {out / 'report.html'}")


@main.command()
@click.argument("results", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--format",
    "formats",
    default="png,pdf",
    callback=_comma_choices(FIGURE_FORMATS),
    help="Comma-separated figure formats (png, pdf, svg).",
)
@quiet_option
def figures(results: Path, formats: tuple[str, ...], quiet: bool) -> None:
    """Re-render every figure (and the report) of a results directory from its tables."""
    from unitprobe.pipeline.analyze import rerender

    paths = rerender(results, formats=formats)
    _say(quiet, f"wrote {len(paths)} files to {results / 'figures'}")


# ----------------------------------------------------------------------------- sweep


def _int_list(minimum: int) -> Callable[..., tuple[int, ...]]:
    """A click callback that parses ``1,2,4`` into distinct integers >= ``minimum``."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        numbers = []
        for item in _split_list(value):
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


@main.command()
@click.option(
    "--task",
    "task_names",
    metavar="NAMES",
    help="Comma-separated preset tasks, e.g. seed,fibonacci,delay-3.",
)
@click.option(
    "--task-file",
    "task_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also sweep this task file (repeatable).",
)
@click.option(
    "--units",
    required=True,
    callback=_int_list(1),
    metavar="LIST",
    help="Comma-separated layer sizes, e.g. 1,2,3,4,6,8,16.",
)
@click.option(
    "--seeds", type=click.IntRange(min=1), default=3, help="Seeds per configuration (0..N-1)."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Sweep directory (an earlier sweep there is resumed).",
)
@click.option("--jobs", type=click.IntRange(min=1), default=1, help="Local worker processes.")
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="dask.distributed scheduler, e.g. tcp://host:8786 (pip install -e '.[dist]').",
)
@click.option(
    "--n-sequences",
    type=click.IntRange(min=2),
    help="Training sequences per run [default: 512; 96 with --quick].",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs [default: 200].")
@click.option("--patience", type=click.IntRange(min=1), help="Early-stopping patience.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per minibatch.")
@click.option(
    "--quick", is_flag=True, help="Few sequences and epochs, a light analysis (a smoke test)."
)
@click.option("--figures", "draw_figures", is_flag=True, help="Also draw each run's figures.")
@click.option("--retry-failed", is_flag=True, help="Run configurations that failed before again.")
@quiet_option
def sweep(
    task_names: str | None,
    task_files: tuple[Path, ...],
    units: tuple[int, ...],
    seeds: int,
    out: Path,
    jobs: int,
    scheduler: str | None,
    n_sequences: int | None,
    epochs: int | None,
    patience: int | None,
    lr: float | None,
    batch_size: int | None,
    quick: bool,
    draw_figures: bool,
    retry_failed: bool,
    quiet: bool,
) -> None:
    """Train and analyze every task x units x seed; write OUT/sweep.csv (resumable).

    \b
    Example:
      unitprobe sweep --task seed,fibonacci,delay-3 --units 1,2,3,4,6,8,16 \\
          --seeds 5 --out SWEEP/ --jobs 2
    """
    from unitprobe._utils import check_parent_writable
    from unitprobe.pipeline.sweep import quick_options, run_sweep
    from unitprobe.tasks.csvdata import is_data_task

    if task_names is None and not task_files:
        raise click.UsageError("give --task NAMES and/or --task-file FILE")
    specs: list[Any] = _split_list(task_names) if task_names is not None else []
    for path in task_files:
        spec = resolve_task(None, path)
        if is_data_task(spec):
            raise UnitprobeError(
                f"task file '{path}' is a data task; a sweep generates its sequences"
            )
        specs.append(spec)
    if out.exists() and not out.is_dir():
        raise UnitprobeError(f"sweep output {out} exists and is not a directory")
    if not out.exists():
        check_parent_writable(out)
    options = quick_options() if quick else {}
    given = {"epochs": epochs, "patience": patience, "lr": lr, "batch_size": batch_size}
    overrides = {
        **options.get("train_overrides", {}),
        **{k: v for k, v in given.items() if v is not None},
    }
    if n_sequences is not None:
        options["n_sequences"] = n_sequences
    options["train_overrides"] = overrides
    table = run_sweep(
        specs,
        list(units),
        seeds,
        out,
        jobs=jobs,
        scheduler=scheduler,
        figures=draw_figures,
        retry_failed=retry_failed,
        progress=_progress(quiet),
        echo=None if quiet else click.echo,
        **options,
    )
    failed = table[table["status"] != "ok"]
    if len(failed):
        click.echo(f"{len(failed)} of {len(table)} configurations failed; see {out / 'sweep.csv'}")


# ----------------------------------------------------------------------------- demo


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("unitprobe-demo"),
    help="Output directory.",
)
@click.option("--overwrite/--no-overwrite", default=True, help="Replace a previous demo in --out.")
@quiet_option
def demo(out: Path, overwrite: bool, quiet: bool) -> None:
    """Train the `seed` task (the classic K/X answer) and analyze it, end to end."""
    from unitprobe.pipeline.analyze import run_demo

    report = run_demo(
        out, overwrite=overwrite, progress=_progress(quiet), echo=lambda s: _say(quiet, s)
    )
    _say(quiet, json.dumps(report, indent=2) if isinstance(report, dict) else str(report))


if __name__ == "__main__":  # pragma: no cover
    main()
