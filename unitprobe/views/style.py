"""Shared look of every unitprobe figure: rcParams, palettes and figure construction.

Figures are built on the Agg canvas directly (never through pyplot's global state), so making
one does not open a window, does not change the user's backend and leaves nothing to close.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import matplotlib as mpl
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Smallest font size (points) used anywhere; figures are saved at their natural size, so this
#: is also the printed size.
MIN_FONT_PT = 8

#: PNG resolution of saved figures.
PNG_DPI = 200

#: Colormaps: sequential (R², |attribution|), diverging around 0 (signed values).
SEQUENTIAL = "viridis"
SEQUENTIAL_ALT = "cividis"
DIVERGING = "vlag"

#: Colour of "nothing" (role ``none``, missing values).
NEUTRAL = "0.72"

RC: dict[str, object] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "figure.titlesize": 10,
    "figure.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlelocation": "center",
    "hatch.linewidth": 0.8,
    "figure.dpi": 100,
    "savefig.dpi": PNG_DPI,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "image.cmap": SEQUENTIAL,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the unitprobe rcParams for the duration of a ``with`` block."""
    with mpl.rc_context(RC):
        yield


def categorical(n: int) -> list[tuple[float, float, float]]:
    """``n`` colour-blind-safe category colours (seaborn ``colorblind``, cycled if ``n > 10``)."""
    base = sns.color_palette("colorblind", 10)
    return [base[i % len(base)] for i in range(max(n, 0))]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width`` × ``height`` inches on an Agg canvas."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
