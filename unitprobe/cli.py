"""The ``unitprobe`` command line: a thin layer of option parsing over the library.

Every command turns its options into library calls and prints the result. Errors the user can
act on (:class:`~unitprobe.errors.UnitprobeError`) become one line ``Error: ...`` with exit
status 1; usage errors exit with 2. No traceback is shown for either.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

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
    from unitprobe.tasks import TaskSpec, get_preset

    if path is not None:
        return TaskSpec.from_toml(path)
    if name is not None:
        return get_preset(name)
    return None


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


def _refuse_existing(path: Path, overwrite: bool, what: str = "file") -> None:
    if path.is_dir():
        raise UnitprobeError(f"{path} is a directory, expected a {what} path")
    if path.exists() and not overwrite:
        raise UnitprobeError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise UnitprobeError(f"directory {path.parent} does not exist")


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
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with one column per series.",
)
@click.option(
    "--series",
    "series_args",
    multiple=True,
    metavar="NAME=v0,v1,...",
    help="Values of one series, e.g. --series K=0,1,1,2,3,5 (repeatable).",
)
@click.option("--tolerance", type=click.FloatRange(min=0), default=1e-9, help="Relative tolerance.")
def tasks_check(
    task: Any, data: Path | None, series_args: tuple[str, ...], tolerance: float
) -> None:
    """Evaluate a task's relations on data and report each relation's residuals.

    Example: unitprobe tasks check --task seed --series K=0,1,1,2,3,5 --series X=1,4,7,12,30
    """
    from unitprobe.tasks import check_summary, load_csv, parse_series_arg, relation_residuals

    if task is None:
        raise click.UsageError("give --task or --task-file")
    if (data is None) == (not series_args):
        raise click.UsageError("give --data CSV or --series NAME=values, not both or neither")
    if data is not None:
        loaded = load_csv(data)
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
@click.option("--units", type=click.IntRange(min=1), default=8, help="Hidden units per layer.")
@click.option("--layers", type=click.IntRange(min=1), default=1, help="LSTM layers.")
@seed_option
@click.option("--n-sequences", type=click.IntRange(min=2), default=512, help="Generated sequences.")
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
    """Train a multi-unit LSTM on a task and save a checkpoint."""
    from unitprobe.checkpoint import save
    from unitprobe.train import TrainConfig, train_task

    if task is None:
        raise click.UsageError("give --task NAME or --task-file FILE")
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
    _, result = train_task(task, config, n_sequences=n_sequences, progress=_progress(quiet))
    save(
        out,
        result.model,
        task,
        history=result.history,
        metrics=result.metrics,
        train_config=config.to_dict(),
    )
    _say(quiet, _train_summary(task, result, out))


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


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """MODEL argument, task override, --unsafe-load, --data, --n-sequences, --seed."""

    @click.argument("model_path", metavar="MODEL.pt", type=click.Path(path_type=Path))
    @task_options
    @click.option(
        "--unsafe-load",
        is_flag=True,
        help="Allow a pickled nn.Module checkpoint (unpickling runs code: trusted files only).",
    )
    @click.option(
        "--data",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Analyze the series in this CSV instead of generated sequences.",
    )
    @click.option(
        "--n-sequences", type=click.IntRange(min=2), default=256, help="Generated sequences."
    )
    @seed_option
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        model_path: Path,
        task: Any,
        unsafe_load: bool,
        data: Path | None,
        n_sequences: int,
        seed: int,
        **kwargs: Any,
    ) -> Any:
        from unitprobe.checkpoint import load
        from unitprobe.tasks import generate, load_csv

        ckpt = load(model_path, task=task, unsafe=unsafe_load)
        dataset = (
            load_csv(data, ckpt.task)
            if data is not None
            else generate(ckpt.task, n_sequences, seed)
        )
        return func(*args, ckpt=ckpt, dataset=dataset, seed=seed, **kwargs)

    return wrapper


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


@main.command()
@model_options
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
    from unitprobe.probes import probe_model

    _refuse_existing(out, overwrite)
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
@model_options
@click.option(
    "--modes",
    default="zero,mean,resample",
    help="Comma-separated ablation modes (zero, mean, resample).",
)
@click.option("--site", type=click.Choice(["h", "c", "both"]), default="h", help="State to ablate.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="U+V",
    help="Also ablate this group of units together, e.g. 1+4.",
)
@_csv_out
@quiet_option
def ablate(
    ckpt: Any,
    dataset: Any,
    seed: int,
    modes: str,
    site: str,
    groups: tuple[str, ...],
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Ablate every unit (and groups) through the recurrence; report the change of output MSE."""
    from unitprobe.ablation import ablation_table

    _refuse_existing(out, overwrite)
    table = ablation_table(
        ckpt.model,
        dataset,
        groups=[_parse_group(g) for g in groups] or None,
        modes=_split_list(modes),
        site=site,
        seed=seed,
        progress=_progress(quiet),
    )
    _write_table(table, out, overwrite, quiet)


@main.command()
@model_options
@click.option(
    "--methods",
    default="integrated_gradients",
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
    methods: str,
    max_sequences: int,
    out: Path,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Captum attributions: input × lag, unit → output, and each unit's receptive field."""
    from unitprobe.attribution import attribution_table

    _refuse_existing(out, overwrite)
    inputs = dataset.inputs[:max_sequences]
    table = attribution_table(
        ckpt.model, inputs, dataset.input_names, dataset.output_names, methods=_split_list(methods)
    )
    _write_table(table, out, overwrite, quiet)


@main.command()
@model_options
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
    default="zero,mean,resample",
    help="Comma-separated ablation modes.",
)
@click.option(
    "--attribution",
    "attribution_methods",
    default="integrated_gradients",
    help="Comma-separated input × lag attribution methods.",
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
@click.option("--format", "formats", default="png,pdf", help="Comma-separated figure formats.")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty output directory.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, help="CPU threads.")
@quiet_option
def analyze(
    ckpt: Any,
    dataset: Any,
    seed: int,
    out: Path,
    target_exprs: tuple[str, ...],
    state: str,
    ablation_modes: str,
    attribution_methods: str,
    n_permutations: int,
    n_controls: int,
    formats: str,
    overwrite: bool,
    jobs: int,
    quiet: bool,
) -> None:
    """Which unit holds which term? Probes, ablations, attributions, roles, figures, report."""
    from unitprobe.analyze import AnalyzeConfig
    from unitprobe.analyze import analyze as run_analysis
    from unitprobe.roles import summarize_roles

    config = AnalyzeConfig(
        n_sequences=dataset.n_sequences,
        seed=seed,
        targets=tuple(target_exprs) or None,
        state=state,
        n_permutations=n_permutations,
        n_controls=n_controls,
        ablation_modes=tuple(_split_list(ablation_modes)),
        attribution_methods=tuple(_split_list(attribution_methods)),
        formats=tuple(_split_list(formats)),
        jobs=jobs,
    )
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
@click.option("--format", "formats", default="png,pdf", help="Comma-separated figure formats.")
@quiet_option
def figures(results: Path, formats: str, quiet: bool) -> None:
    """Re-render every figure (and the report) of a results directory from its tables."""
    from unitprobe.analyze import rerender

    paths = rerender(results, formats=tuple(_split_list(formats)))
    _say(quiet, f"wrote {len(paths)} files to {results / 'figures'}")


def _split_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise click.BadParameter(f"{text!r} names nothing")
    return items


def _parse_group(text: str) -> list[int]:
    try:
        units = [int(part) for part in text.split("+")]
    except ValueError:
        raise click.BadParameter(
            f"group {text!r} must be unit numbers joined by '+', e.g. 1+4"
        ) from None
    return units


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
    from unitprobe.analyze import run_demo

    report = run_demo(
        out, overwrite=overwrite, progress=_progress(quiet), echo=lambda s: _say(quiet, s)
    )
    _say(quiet, json.dumps(report, indent=2) if isinstance(report, dict) else str(report))


if __name__ == "__main__":  # pragma: no cover
    main()
