"""Saving figures, the registry of per-run figures, and drawing them all from a :class:`Tables`.

:func:`save_figure` writes PNG (200 dpi), PDF (TrueType fonts embedded) or SVG;
:data:`FIGURES` lists every figure of one analysis with the tables it is drawn from and a
one-sentence caption; :func:`render_all` draws each of them whose tables are at hand.

Example
-------
>>> tables = Tables.read("results")
>>> render_all(tables, Path("results/figures"), formats=("png",))
[PosixPath('results/figures/probe_r2.png'), ...]
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from unitprobe.errors import DataError
from unitprobe.schemas import FIGURE_FORMATS
from unitprobe.tables import Tables
from unitprobe.validation import check_choices, check_int
from unitprobe.views import _draw
from unitprobe.views import style as _style
from unitprobe.views.intervention_figures import plot_directions, plot_interchange
from unitprobe.views.probe_figures import plot_identifiability, plot_partial_r2, plot_probe_heatmap
from unitprobe.views.role_figures import plot_role_traces, plot_roles
from unitprobe.views.unit_figures import (
    plot_ablation,
    plot_input_lag,
    plot_receptive_fields,
    plot_unit_attribution,
)

__all__ = ["FIGURES", "REQUIRED_TABLES", "FigureSpec", "render_all", "save_figure"]

log = logging.getLogger(__name__)


def save_figure(
    fig: Figure, path_stem: str | Path, formats: Sequence[str] = ("png",)
) -> list[Path]:
    """Write ``fig`` as ``<path_stem>.<format>`` for each format, then close it.

    Parameters
    ----------
    fig : Figure
    path_stem : str or Path
        Path without extension (``results/figures/probe_r2``); parent folders are created.
    formats : sequence of {"png", "pdf", "svg"}, default ("png",)
        PNG at 200 dpi; PDF with TrueType (Type 42) fonts embedded; SVG with text as text.

    Returns
    -------
    list of Path
        Written files, in ``formats`` order.
    """
    formats = check_choices(formats, "formats", FIGURE_FORMATS, error=DataError)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        with _style.style(), mpl.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42}):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}.{fmt}")
                metadata = {"CreationDate": None} if fmt == "pdf" else None
                fig.savefig(path, format=fmt, dpi=_style.PNG_DPI, metadata=metadata)
                written.append(path)
    finally:
        plt.close(fig)  # a pyplot-managed figure is released; an Agg-only one is unaffected
    return written


class FigureSpec(NamedTuple):
    """One entry of :data:`FIGURES`.

    ``tables`` names the tables ``function`` takes, in order: the first must be present for
    the figure to be drawn; each further one is passed as ``None`` when absent.
    """

    name: str
    function: Callable[..., Figure]
    tables: tuple[str, ...]
    caption: str


#: Every per-run figure, in drawing order.
FIGURES: list[FigureSpec] = [
    FigureSpec(
        "probe_r2",
        plot_probe_heatmap,
        ("probes", "population_probes"),
        "Held-out R² of a linear probe from each unit's hidden state (and from all units together,"
        " bottom row) to each target, with selectivity over an untrained network in each cell.",
    ),
    FigureSpec(
        "probe_partial_r2",
        plot_partial_r2,
        ("probes",),
        "Partial R² of each unit for each target: what the unit explains of the target once the"
        " other targets are regressed out.",
    ),
    FigureSpec(
        "ablation",
        plot_ablation,
        ("ablation",),
        "Increase in each output's mean squared error when single units or groups of units are"
        " ablated, one panel per ablation mode.",
    ),
    FigureSpec(
        "input_lag",
        plot_input_lag,
        ("input_lag",),
        "Mean absolute attribution of each output to each input feature at each lag, showing how"
        " far back and on which input each prediction relies.",
    ),
    FigureSpec(
        "unit_attribution",
        plot_unit_attribution,
        ("unit_attribution",),
        "Mean absolute attribution of each output to each unit's hidden state.",
    ),
    FigureSpec(
        "receptive_fields",
        plot_receptive_fields,
        ("receptive_fields",),
        "Signed attribution of each unit's activation to each input feature and lag, the unit's"
        " receptive field.",
    ),
    FigureSpec(
        "identifiability",
        plot_identifiability,
        ("identifiability", "vif"),
        "Squared correlation between probe targets, with pairs too collinear for a probe to tell"
        " apart hatched and each target's variance inflation factor in its label.",
    ),
    FigureSpec(
        "roles",
        plot_roles,
        ("roles",),
        "The role assigned to each unit, with its confidence and the evidence that decided it.",
    ),
    FigureSpec(
        "role_traces",
        plot_role_traces,
        ("traces",),
        "Activation of each unit with a role over one sequence, drawn against its role's"
        " target (z-scored).",
    ),
    FigureSpec(
        "interchange",
        plot_interchange,
        ("interchange",),
        "Share of each term's output change that patching a unit's state from a counterfactual"
        " run carries (interchange intervention, the model's own change as reference): the causal"
        " test of which unit holds which term.",
    ),
    FigureSpec(
        "directions",
        plot_directions,
        ("directions", "direction_loadings"),
        "Held-out transfer of a learned direction (distributed alignment search) for each term no"
        " single unit holds, beside the best single unit, and the direction's loadings on the"
        " units.",
    ),
]

#: Tables render_all cannot do without.
REQUIRED_TABLES = ("probes", "roles")

#: Options render_all passes (whole tables rather than the single-layer defaults).
_RENDER_OPTIONS: dict[str, dict[str, Any]] = {
    "probe_r2": {"layer": None},
    "probe_partial_r2": {"layer": None},
}


def _probe_state(probes: pd.DataFrame) -> str:
    """``"h"`` if the probes table has ``h`` rows (or no rows), else its first state."""
    states = _draw.unique(probes["state"])
    return "h" if "h" in states or not states else str(states[0])


def render_all(
    tables: Tables | Mapping[str, pd.DataFrame],
    out_dir: str | Path,
    *,
    formats: Sequence[str] = ("png",),
    jobs: int = 1,
) -> list[Path]:
    """Draw every figure of :data:`FIGURES` whose table is in ``tables`` and save it.

    Parameters
    ----------
    tables : Tables
        Result tables of one analysis; ``probes`` and ``roles`` are required, the others
        (``population_probes``, ``ablation``, ``input_lag``, ``unit_attribution``,
        ``receptive_fields``, ``identifiability``, ``vif``, ``traces``) are used when present.
        A plain mapping of name to DataFrame is turned into a :class:`Tables` first.
    out_dir : str or Path
        Folder the figures go to (created if needed).
    formats : sequence of {"png", "pdf", "svg"}, default ("png",)
    jobs : int, default 1
        Worker processes drawing independent figures at once (forked, where the platform
        forks; elsewhere the figures are drawn one after another). The written files do not
        depend on it.

    Returns
    -------
    list of Path
        Written files, ``<out_dir>/<name>.<format>``, in :data:`FIGURES` order then
        ``formats`` order. A figure whose table is present but holds no rows it can draw (e.g.
        an empty ``receptive_fields`` table) is skipped.

    Raises
    ------
    DataError
        A required table is missing, a format is unknown, or a table cannot be drawn (the
        message names the figure and the table).
    """
    if not isinstance(tables, Tables):
        tables = Tables(tables)
    formats = check_choices(formats, "formats", FIGURE_FORMATS, error=DataError)
    for name in REQUIRED_TABLES:
        if name not in tables:
            raise DataError(f"these results have no {name} table; run `unitprobe analyze` first")
    check_int(jobs, "jobs", minimum=1)
    out = Path(out_dir)
    work = []
    for spec in FIGURES:
        if spec.tables[0] not in tables:
            continue
        options = dict(_RENDER_OPTIONS.get(spec.name, {}))
        if spec.tables[0] == "probes":
            options["state"] = _probe_state(tables["probes"])
        work.append((spec, [tables.get(name) for name in spec.tables], options))
    draw = partial(_draw_one, out=out, formats=tuple(formats))
    if jobs > 1 and len(work) > 1 and "fork" in mp.get_all_start_methods():
        context = mp.get_context("fork")
        with ProcessPoolExecutor(min(jobs, len(work)), mp_context=context) as pool:
            results = list(pool.map(draw, work))
    else:
        results = [draw(item) for item in work]
    return [path for paths in results for path in paths]


def _draw_one(
    item: tuple[FigureSpec, list, dict], *, out: Path, formats: tuple[str, ...]
) -> list[Path]:
    """Draw and save one figure of :data:`FIGURES`; [] when its table has nothing to draw."""
    spec, args, options = item
    try:
        fig = spec.function(*args, **options)
    except _draw.EmptySelectionError as err:
        log.info("skipping figure %s: %s", spec.name, err)
        return []
    except DataError as err:
        raise DataError(f"{spec.name} figure ({spec.tables[0]} table): {err}") from err
    return save_figure(fig, out / spec.name, formats)
