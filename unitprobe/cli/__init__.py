"""The ``unitprobe`` command line: a thin layer of option parsing over the library.

Every command turns its options into a config and calls one library function. Errors the user
can act on (:class:`~unitprobe.errors.UnitprobeError`) become one line ``Error: ...`` with
exit status 1; usage errors exit with 2. No traceback is shown for either.

Bad input is refused as early as possible and leaves the disk as it was: names in list
options (``--ablation``, ``--format``, ...) are checked while parsing; output paths (exists,
is a file, not writable) before a checkpoint is read or a model trained; results are written
to temporary files or a staging directory that replace the output only on success.
``--data CSV`` and its reading options (``--time-col``, ``--sequence-col``, ``--window``,
``--stride``, ``--fill``, ``--sep``) are shared by ``train``, ``analyze``, ``probe``,
``ablate``, ``attribute`` and ``tasks check``; see :func:`unitprobe.tasks.load_csv`.

Each command lives in a module of this package (``unitprobe.cli.train``, ...), imported only
when the command runs (:data:`COMMANDS`), so ``unitprobe --help`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from unitprobe import __version__
from unitprobe.errors import UnitprobeError

__all__ = ["COMMANDS", "main"]

#: Command name -> ("module:attribute", one-line help). The help is listed by ``--help``
#: without importing the command's module.
COMMANDS: dict[str, tuple[str, str]] = {
    "ablate": (
        "unitprobe.cli.ablate:ablate",
        "Ablate every unit (and groups) through the recurrence; report the change of output MSE.",
    ),
    "analyze": (
        "unitprobe.cli.analyze:analyze",
        "Which unit holds which term? Probes, ablations, attributions, roles, figures, report.",
    ),
    "attribute": (
        "unitprobe.cli.attribute:attribute",
        "Captum attributions: input × lag, unit → output, and each unit's receptive field.",
    ),
    "demo": (
        "unitprobe.cli.analyze:demo",
        "Train the `seed` task (the classic K/X answer) and analyze it, end to end.",
    ),
    "figures": (
        "unitprobe.cli.analyze:figures",
        "Re-render every figure (and the report) of a results directory from its tables.",
    ),
    "probe": (
        "unitprobe.cli.probe:probe",
        "Linear probes from every unit (and each layer's population) to the task's terms.",
    ),
    "sweep": (
        "unitprobe.cli.sweep:sweep",
        "Train and analyze every task x units x seed; write OUT/sweep.csv (resumable).",
    ),
    "tasks": ("unitprobe.cli.tasks:tasks", "List, show and check task specifications."),
    "train": (
        "unitprobe.cli.train:train",
        "Train a multi-unit LSTM on a task and save a checkpoint.",
    ),
}

SETTINGS = {"help_option_names": ["-h", "--help"], "show_default": True}


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type name if it has none)."""
    return " ".join(str(err).split()) or type(err).__name__


class _Group(click.Group):
    """Turns the package's errors into ``Error: ...`` and exit status 1; loads commands lazily.

    Click's lazy-subcommand pattern: :data:`COMMANDS` maps each command to the module that
    defines it, which is imported only when the command is resolved (run, or asked for its
    own ``--help``); the group's ``--help`` lists the commands from the mapping.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMANDS))
        rows = [
            (name, click.utils.make_default_short_help(text, limit))
            for name, (_, text) in sorted(COMMANDS.items())
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnitprobeError as err:
            raise click.ClickException(one_line(err)) from None
        except OSError as err:  # disk full, permission denied while writing results
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{err.strerror or err}{where}") from None
        except MemoryError as err:  # e.g. a task file asking for 10**9 steps per sequence
            detail = f" ({one_line(err)})" if str(err) else ""
            raise click.ClickException(
                f"out of memory{detail}; use fewer or shorter sequences"
            ) from None


@click.group(cls=_Group, context_settings=SETTINGS)
@click.version_option(__version__, "--version", prog_name="unitprobe")
def main() -> None:
    """What does each unit of a recurrent network hold?

    Train multi-unit LSTMs on sequence tasks defined by recurrence relations, then find out
    which unit holds which term with probes, ablations and attributions.
    """
