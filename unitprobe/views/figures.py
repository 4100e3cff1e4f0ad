"""Figures from unitprobe's result tables, in one namespace.

Every figure is one function that takes a DataFrame in its :mod:`unitprobe.schemas` shape
(``probes``, ``ablation``, ...) plus keyword options and returns a matplotlib
:class:`~matplotlib.figure.Figure`. Figures never touch a model. They are drawn on an Agg canvas
(no window, no global pyplot state), sized by the number of rows and columns they show, with
colour-blind-safe colours (seaborn ``colorblind`` for categories, ``viridis``/``cividis`` for
sequential values, ``vlag`` centred at 0 for signed values) and no text under 8 pt. A layer of
more than 64 units keeps every unit but labels every 2nd, 4th, ... one, in a figure no larger
than a 64-unit layer's.

The functions live in :mod:`~unitprobe.views.probe_figures`,
:mod:`~unitprobe.views.unit_figures`, :mod:`~unitprobe.views.role_figures`,
:mod:`~unitprobe.views.intervention_figures` and :mod:`~unitprobe.views.sweep_figures`;
:mod:`~unitprobe.views.render` saves them (:func:`save_figure`) and draws every per-run figure
from a :class:`~unitprobe.tables.Tables` (:func:`render_all`, registry :data:`FIGURES`).
See ``docs/architecture.md``.

Example
-------
>>> tables = Tables.read("results")
>>> fig = plot_probe_heatmap(tables["probes"], tables["population_probes"], state="h")
>>> save_figure(fig, "results/figures/probe_r2")
[PosixPath('results/figures/probe_r2.png'), PosixPath('results/figures/probe_r2.pdf')]
"""

from __future__ import annotations

from unitprobe.views.intervention_figures import plot_directions, plot_interchange
from unitprobe.views.probe_figures import plot_identifiability, plot_partial_r2, plot_probe_heatmap
from unitprobe.views.render import FIGURES, REQUIRED_TABLES, FigureSpec, render_all, save_figure
from unitprobe.views.role_figures import plot_role_traces, plot_roles
from unitprobe.views.sweep_figures import (
    plot_capacity_curve,
    plot_role_stability,
    plot_specialization,
)
from unitprobe.views.unit_figures import (
    plot_ablation,
    plot_input_lag,
    plot_receptive_fields,
    plot_unit_attribution,
)

__all__ = [
    "FIGURES",
    "FigureSpec",
    "REQUIRED_TABLES",
    "plot_ablation",
    "plot_capacity_curve",
    "plot_directions",
    "plot_identifiability",
    "plot_input_lag",
    "plot_interchange",
    "plot_partial_r2",
    "plot_probe_heatmap",
    "plot_receptive_fields",
    "plot_role_stability",
    "plot_role_traces",
    "plot_roles",
    "plot_specialization",
    "plot_unit_attribution",
    "render_all",
    "save_figure",
]
