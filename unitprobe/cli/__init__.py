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

Every command runs with a fixed number of torch threads (``--jobs``, the CPU cores it may
use), so a loaded machine does not slow it down by oversubscription.

Shell completion: add ``eval "$(_UNITPROBE_COMPLETE=bash_source unitprobe)"`` to
``~/.bashrc`` (``zsh_source`` for ~/.zshrc, ``fish_source`` for fish); task names complete
after ``--task``.

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
    "patch": (
        "unitprobe.cli.patch:patch",
        "Patch units' states from counterfactual runs: which units carry which term.",
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

#: Longest error message printed (a message quoting a huge input is cut).
MAX_MESSAGE = 500


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type name if it has none): control characters
    escaped (never sent raw to the terminal), at most :data:`MAX_MESSAGE` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if len(text) > MAX_MESSAGE:
        text = f"{text[: MAX_MESSAGE - 40]} ... ({len(text)} characters in all)"
    return text


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
        rows = [(name, text) for name, (_, text) in sorted(COMMANDS.items())]  # wrapped, not cut
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UnitprobeError as err:
            raise click.ClickException(one_line(err)) from None
        except OSError as err:  # disk full, permission denied while writing results
            where = f": {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(one_line(OSError(f"{err.strerror or err}{where}"))) from None
        except MemoryError as err:
            detail = f" ({one_line(err)})" if str(err) else ""
            raise click.ClickException(
                f"out of memory{detail}: the data, the model or a file is too large for this "
                "machine"
            ) from None
        except RecursionError:
            raise click.ClickException(
                "an input is nested too deeply to process (a file or expression)"
            ) from None


@click.group(cls=_Group, context_settings=SETTINGS)
@click.version_option(__version__, "--version", prog_name="unitprobe")
def main() -> None:
    """What does each unit of a recurrent network hold?

    Train multi-unit LSTMs on sequence tasks defined by recurrence relations, then find out
    which unit holds which term with probes, ablations and attributions.
    """
