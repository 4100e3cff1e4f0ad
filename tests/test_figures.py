"""Tests of unitprobe.views: every figure is drawn from a small hand-made table in its
unitprobe.schemas shape and its data, labels and layout are read back from the matplotlib
objects; render_all and the report work from an in-memory Tables."""

from __future__ import annotations

import re
import struct

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, QuadMesh
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from unitprobe import figures as F
from unitprobe.errors import DataError
from unitprobe.schemas import SCHEMAS
from unitprobe.schemas import frame as table_of
from unitprobe.tables import Tables
from unitprobe.views.report import write_report

TARGETS = ["K[t]", "X[t-1]"]
ROWS = ["0", "1", "2", "population"]

# ---------------------------------------------------------------------------------------------
# hand-made tables
# ---------------------------------------------------------------------------------------------

_DEFAULTS = {"float64": np.nan, "string": None, "bool": False, "int64": 0, "Int64": pd.NA}
#: One ``directions`` row: X[t-1]'s direction, its transfers, leak, score and specificity.
DIRECTION_ROW = (0, "X[t-1]", 1, 0.97, 0.95, 0.5, 1.0, 0.1, "K[t-1]", 0.87, 0.9, 0.85, 0.99, 1.0,
                 128, "")  # fmt: skip


def _table(name: str, rows) -> pd.DataFrame:
    """Table ``name`` from records holding some of its columns; the rest take a neutral value."""
    df = pd.DataFrame(list(rows))
    for column, dtype in SCHEMAS[name].dtypes:
        if column not in df:
            df[column] = _DEFAULTS[dtype]
    return SCHEMAS[name].coerce(df)


_PROBE_R2 = {0: (0.93, 0.12), 1: (0.20, 0.88), 2: (-0.05, 0.31)}
_POPULATION_R2 = (0.97, 0.95)


@pytest.fixture
def probes() -> pd.DataFrame:
    rows = []
    for unit, values in _PROBE_R2.items():
        for j, target in enumerate(TARGETS):
            for state, shift in (("h", 0.0), ("c", 0.01)):
                rows.append(
                    {
                        "layer": 0,
                        "unit": unit,
                        "state": state,
                        "target": target,
                        "r2": values[j] + shift,
                        "r2_std": 0.01,
                        "r2_control": 0.52,
                        "selectivity": values[j] + shift - 0.52,
                        "p_value": 0.01,
                        "partial_r2": values[j] / 2 + shift,
                        "coef": 1.0,
                        "n_samples": 100,
                    }
                )
    return _table("probes", rows)


@pytest.fixture
def population() -> pd.DataFrame:
    rows = []
    for j, target in enumerate(TARGETS):
        for state, shift in (("h", 0.0), ("c", 0.01)):
            rows.append(
                {
                    "layer": 0,
                    "state": state,
                    "target": target,
                    "r2": _POPULATION_R2[j] + shift,
                    "r2_std": 0.01,
                    "r2_control": 0.52,
                    "selectivity": _POPULATION_R2[j] + shift - 0.52,
                    "n_samples": 100,
                }
            )
    return _table("population_probes", rows)


@pytest.fixture
def ablation() -> pd.DataFrame:
    rows = []
    for m, mode in enumerate(("zero", "mean", "resample")):
        for u, units in enumerate(["0+2", 1, "0", "2"]):  # groups before singles, mixed types
            for t, output in enumerate(("all", "K", "X")):
                delta = 0.01 * (m + 1) * (u - 1.5) + 0.001 * t
                rows.append(
                    {
                        "layer": 0,
                        "units": units,
                        "mode": mode,
                        "output": output,
                        "mse": 0.1 + delta,
                        "mse_base": 0.1,
                        "delta_mse": delta,
                        "rel_delta": delta / 0.1,
                    }
                )
    return _table("ablation", rows)


METHOD = "integrated_gradients"


@pytest.fixture
def input_lag() -> pd.DataFrame:
    rows = []
    for o, output in enumerate(("K", "X")):
        for f, feature in enumerate(("K", "X")):
            for lag in range(3):
                a = 1.0 / (1 + lag) + 0.1 * f + 0.01 * o
                rows.append(
                    {
                        "method": METHOD,
                        "output": output,
                        "feature": feature,
                        "lag": lag,
                        "attribution": a,
                        "attribution_signed": -a,
                    }
                )
    return _table("input_lag", rows)


@pytest.fixture
def unit_attribution() -> pd.DataFrame:
    rows = []
    for o, output in enumerate(("K", "X")):
        for unit in range(3):
            a = 0.1 * (unit + 1) + 0.05 * o
            rows.append(
                {
                    "method": "layer_integrated_gradients",
                    "output": output,
                    "layer": 0,
                    "unit": unit,
                    "attribution": a,
                    "attribution_signed": a,
                }
            )
    return _table("unit_attribution", rows)


@pytest.fixture
def receptive_fields() -> pd.DataFrame:
    rows = []
    for unit in range(3):
        for f, feature in enumerate(("K", "X")):
            for lag in range(3):
                s = (unit - 1) * 0.5 + 0.1 * lag - 0.2 * f
                rows.append(
                    {
                        "method": "gradient",
                        "state": "h",
                        "layer": 0,
                        "unit": unit,
                        "feature": feature,
                        "lag": lag,
                        "attribution": abs(s),
                        "attribution_signed": s,
                    }
                )
    return _table("receptive_fields", rows)


@pytest.fixture
def identifiability() -> pd.DataFrame:
    return _table(
        "identifiability",
        [
            {"target_a": "K[t]", "target_b": "X[t]", "r2": 0.995, "separable": False},
            {"target_a": "K[t]", "target_b": "X[t-1]", "r2": 0.40, "separable": True},
            {"target_a": "X[t]", "target_b": "X[t-1]", "r2": 0.60, "separable": True},
        ],
    )


@pytest.fixture
def vif() -> pd.DataFrame:
    return _table(
        "vif",
        [
            {"target": "K[t]", "vif": 210.0, "r2": 0.995, "separable": False},
            {"target": "X[t]", "vif": 199.5, "r2": 0.995, "separable": False},
            {"target": "X[t-1]", "vif": 1.7, "r2": 0.41, "separable": True},
        ],
    )


@pytest.fixture
def roles() -> pd.DataFrame:
    return _table(
        "roles",
        pd.DataFrame(
            {
                "layer": [0, 0, 0, 0],
                "unit": [2, 0, 1, 3],  # out of order on purpose
                "role": ["K[t]", "X[t-1]", "none", "K[t]"],
                "r2": [0.9, 0.95, 0.1, 0.8],
                "selectivity": [0.4, 0.5, 0.0, 0.3],
                "delta_mse": [0.02, 0.05, 0.001, 0.01],
                "confidence": [0.7, 0.9, 0.05, 0.6],
                "decided_by": ["probe", "receptive_field", "ablation", "probe"],
                "evidence": [
                    "probe R² 0.90",
                    "receptive field peaks at X lag 1 and the ablation of this unit hurts output X",
                    "no target explains it",
                    "probe R² 0.80",
                ],
            }
        ).to_dict("records"),
    )


@pytest.fixture
def traces() -> pd.DataFrame:
    rows = []
    spec = [(0, "K[t]"), (1, "none"), (2, "X[t-1]"), (3, "X[t]")]
    for unit, role in spec:
        for seq in (0, 1):
            for step in range(12):
                z = np.sin(0.5 * step + unit + 3 * seq)
                rows.append(
                    {
                        "layer": 0,
                        "unit": unit,
                        "role": role,
                        "sequence": seq,
                        "step": step,
                        "activation": 0.5 * z + 0.01 * step,
                        "target_value": z if role != "none" else np.nan,
                    }
                )
    return _table("traces", rows)


@pytest.fixture
def sweep_summary() -> pd.DataFrame:
    rows = []
    for t, task in enumerate(("fib", "delay")):
        for i, units in enumerate((1, 2, 4, 8)):
            mean = 0.5 / (1 + i) / (1 + t)
            rows.append(
                {
                    "task": task,
                    "units": units,
                    "mean": mean,
                    "lo": mean * 0.8,
                    "hi": mean * 1.2,
                    "knee": i == 2,
                    "specialization": 0.1 * i + 0.05 * t,
                    "redundancy": 0.3 - 0.05 * i,
                    "specialization_lo": 0.1 * i - 0.02,
                    "specialization_hi": 0.1 * i + 0.08,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture
def stability() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "role": ["K[t]", "X[t-1]", "X[t]"],
            "frequency": [1.0, 0.6, 0.2],
            "stability": [0.9, 0.5, 0.1],
        }
    )


# ---------------------------------------------------------------------------------------------
# read-back helpers
# ---------------------------------------------------------------------------------------------


def _panels(fig: Figure) -> list:
    """Axes that are plots (not colorbars, not twin axes)."""
    return [
        ax for ax in fig.axes if ax.get_label() != "<colorbar>" and not ax.get_label() == "twin"
    ]


def _mesh(ax) -> QuadMesh:
    meshes = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 1
    return meshes[0]


def _matrix(ax, shape) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(_mesh(ax).get_array(), dtype=float), np.nan).reshape(shape)


def _ticks(labels) -> list[str]:
    return [t.get_text() for t in labels]


def _all_text(fig: Figure) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(Text))


def _assert_layout(fig: Figure) -> None:
    """Nothing drawn outside the figure, and no text under 8 pt."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.get_tightbbox(renderer)  # inches
    width, height = fig.get_size_inches()
    tol = 0.02
    assert box.x0 >= -tol and box.y0 >= -tol, (box, fig.get_size_inches())
    assert box.x1 <= width + tol and box.y1 <= height + tol, (box, fig.get_size_inches())
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert min(sizes) >= 8


# ---------------------------------------------------------------------------------------------
# probes
# ---------------------------------------------------------------------------------------------


def _expected_probe(probes, population, value, state="h"):
    """``value`` as units (then the population) x targets, from the hand-made tables."""
    units = probes[probes["state"] == state]
    frame = units.assign(row=units["unit"].astype(str)).pivot(
        index="row", columns="target", values=value
    )
    if population is not None:
        pop = population[population["state"] == state].assign(row="population")
        frame = pd.concat([frame, pop.pivot(index="row", columns="target", values=value)])
    return frame.loc[:, TARGETS]


def test_probe_heatmap_matrix_annotations_and_labels(probes, population):
    fig = F.plot_probe_heatmap(probes, population, state="h", layer=0)
    assert isinstance(fig, Figure)
    (ax,) = _panels(fig)
    expected = _expected_probe(probes, population, "r2").loc[ROWS]
    np.testing.assert_allclose(_matrix(ax, (4, 2)), expected.to_numpy())
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2", "population"]
    assert _ticks(ax.get_xticklabels()) == TARGETS
    # cell (unit 0, K[t]) reads r2 over signed selectivity
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "0.93\n+0.41"
    sel = _expected_probe(probes, population, "selectivity")
    assert texts == [
        f"{expected.loc[u, t]:.2f}\n{sel.loc[u, t]:+.2f}" for u in ROWS for t in TARGETS
    ]
    # the population row is separated by a horizontal line at y = 3 (after 3 units)
    assert any(np.allclose(line.get_ydata(), 3) for line in ax.lines)
    assert ax.get_xlabel() == "probe target" and ax.get_ylabel() == "unit"
    assert "R²" in ax.get_title() and "layer 0" in ax.get_title() and "state h" in ax.get_title()
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert cbar.get_ylabel() == "held-out R²"
    assert _mesh(ax).norm.vmin == 0 and _mesh(ax).norm.vmax == 1


def test_probe_heatmap_without_population_shows_units_only(probes):
    fig = F.plot_probe_heatmap(probes)
    ax = fig.axes[0]
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2"]
    expected = _expected_probe(probes, None, "r2").loc[["0", "1", "2"]]
    np.testing.assert_allclose(_matrix(ax, (3, 2)), expected.to_numpy())
    assert not any(np.allclose(line.get_ydata(), 3) for line in ax.lines)


def test_probe_heatmap_from_tables_read_back_from_csv(probes, population, tmp_path):
    Tables({"probes": probes, "population_probes": population}).write(tmp_path)
    back = Tables.read(tmp_path)  # dtypes restored from the schemas
    fig_a = F.plot_probe_heatmap(back["probes"], back["population_probes"], state="c")
    fig_b = F.plot_probe_heatmap(probes, population, state="c")
    np.testing.assert_allclose(_matrix(fig_a.axes[0], (4, 2)), _matrix(fig_b.axes[0], (4, 2)))
    assert _matrix(fig_a.axes[0], (4, 2))[0, 0] == pytest.approx(0.94)


def test_probe_heatmap_all_layers_labels_rows_by_layer(probes, population):
    two = pd.concat([probes, probes.assign(layer=1, r2=probes["r2"] / 2)], ignore_index=True)
    pop = pd.concat(
        [population, population.assign(layer=1, r2=population["r2"] / 2)], ignore_index=True
    )
    fig = F.plot_probe_heatmap(two, pop, layer=None)
    ax = fig.axes[0]
    labels = _ticks(ax.get_yticklabels())
    assert labels == [
        "L0 u0",
        "L0 u1",
        "L0 u2",
        "L1 u0",
        "L1 u1",
        "L1 u2",
        "L0 population",
        "L1 population",
    ]
    m = _matrix(ax, (8, 2))
    np.testing.assert_allclose(m[3:6], m[0:3] / 2)
    np.testing.assert_allclose(m[7], m[6] / 2)


def test_probe_heatmap_rejects_absent_state_and_layer(probes):
    with pytest.raises(DataError, match=r"state == 'x'.*available: \['h', 'c'\]"):
        F.plot_probe_heatmap(probes, state="x")
    with pytest.raises(DataError, match=r"layer == 3 .*available layers: \[0\]"):
        F.plot_probe_heatmap(probes, layer=3)


def test_probe_heatmap_rejects_duplicate_cells(probes, population):
    dup = pd.concat([probes, probes.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="more than one row"):
        F.plot_probe_heatmap(dup)
    dup_pop = pd.concat([population, population.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="more than one row"):
        F.plot_probe_heatmap(probes, dup_pop)


def test_partial_r2_matrix(probes):
    fig = F.plot_partial_r2(probes)
    ax = fig.axes[0]
    expected = _expected_probe(probes, None, "partial_r2").loc[["0", "1", "2"]]
    np.testing.assert_allclose(_matrix(ax, (3, 2)), expected.to_numpy())
    assert [t.get_text() for t in ax.texts][:2] == ["0.47", "0.06"]
    assert "Partial R²" in ax.get_title()


def test_partial_r2_undefined_everywhere_says_why(probes):
    undefined = probes.assign(partial_r2=np.nan, note="target explained by controls")
    fig = F.plot_partial_r2(undefined)
    text = _all_text(fig)
    assert "partial R² undefined everywhere" in text
    assert "linear combination of the others" in text


# ---------------------------------------------------------------------------------------------
# ablation
# ---------------------------------------------------------------------------------------------


def test_ablation_one_panel_per_mode_singles_first(ablation):
    fig = F.plot_ablation(ablation)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == [
        "zero ablation",
        "mean ablation",
        "resample ablation",
    ]
    rows = ["0", "1", "2", "0+2"]
    assert _ticks(panels[0].get_yticklabels()) == rows
    assert _ticks(panels[0].get_xticklabels()) == ["K", "X", "all"]
    for ax, mode in zip(panels, ("zero", "mean", "resample"), strict=True):
        sub = ablation[ablation["mode"] == mode].assign(units=lambda d: d["units"].astype(str))
        expected = sub.pivot(index="units", columns="output", values="delta_mse").loc[
            rows, ["K", "X", "all"]
        ]
        np.testing.assert_allclose(_matrix(ax, (4, 3)), expected.to_numpy())
        # each mode on its own symmetric diverging scale (a shared one blanks small modes)
        norm = _mesh(ax).norm
        assert norm.vmin == pytest.approx(-sub["delta_mse"].abs().max())
        assert norm.vmax == pytest.approx(sub["delta_mse"].abs().max())
    bars = [a for a in fig.axes if a.get_label() == "<colorbar>"]
    assert len(bars) == 3  # one colour bar per panel
    cbar = bars[-1]
    assert "Δ MSE" in cbar.get_ylabel() and "(normalized units²)" in cbar.get_ylabel()
    assert panels[0].get_ylabel() == "ablated unit(s)"
    assert panels[0].get_xlabel() == "output"


def test_ablation_single_mode_and_rel_delta(ablation):
    fig = F.plot_ablation(ablation, mode="mean", value="rel_delta")
    (ax,) = _panels(fig)
    sub = ablation[(ablation["mode"] == "mean") & (ablation["units"].astype(str) == "0")]
    np.testing.assert_allclose(
        _matrix(ax, (4, 3))[0], sub.set_index("output").loc[["K", "X", "all"], "rel_delta"]
    )
    assert ax.texts[0].get_text() == f"{sub.set_index('output').loc['K', 'rel_delta']:.3f}"
    with pytest.raises(DataError, match="mode == 'drop'"):
        F.plot_ablation(ablation, mode="drop")
    with pytest.raises(DataError, match="value == 'mse'"):
        F.plot_ablation(ablation, value="mse")


# ---------------------------------------------------------------------------------------------
# attribution
# ---------------------------------------------------------------------------------------------


def test_input_lag_one_panel_per_output(input_lag):
    fig = F.plot_input_lag(input_lag)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["output K", "output X"]
    for ax, output in zip(panels, ("K", "X"), strict=True):
        expected = input_lag[input_lag["output"] == output].pivot(
            index="feature", columns="lag", values="attribution"
        )
        np.testing.assert_allclose(
            _matrix(ax, (2, 3)), expected.loc[["K", "X"], [0, 1, 2]].to_numpy()
        )
        assert ax.get_xlabel() == "lag (steps back)"
        assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"]
    assert panels[0].get_ylabel() == "input feature"
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert cbar.get_ylabel() == "mean |attribution|"
    assert "integrated_gradients" in fig.get_suptitle()
    assert _mesh(panels[0]).norm.vmin == 0


def test_input_lag_rejects_unknown_method(input_lag):
    with pytest.raises(DataError, match=r"method == 'saliency'.*integrated_gradients"):
        F.plot_input_lag(input_lag, method="saliency")
    with pytest.raises(DataError, match="value == 'mse'"):
        F.plot_input_lag(input_lag, value="mse")


def test_unit_attribution_bar_heights(unit_attribution):
    fig = F.plot_unit_attribution(unit_attribution)
    (ax,) = _panels(fig)
    ua = unit_attribution
    assert len(ax.containers) == 2  # one bar group per output
    for container, output in zip(ax.containers, ("K", "X"), strict=True):
        heights = [bar.get_height() for bar in container]
        expected = ua[ua["output"] == output].sort_values("unit")["attribution"].to_numpy()
        np.testing.assert_allclose(heights, expected)
    assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"]
    assert ax.get_ylabel() == "mean |attribution|" and ax.get_xlabel() == "unit"
    assert ax.get_legend().get_title().get_text() == "output"
    assert _ticks(ax.get_legend().get_texts()) == ["K", "X"]
    assert "layer_integrated_gradients" in ax.get_title()


def test_receptive_fields_signed_matrix(receptive_fields):
    fig = F.plot_receptive_fields(receptive_fields)
    ax = [a for a in _panels(fig) if a.collections][0]
    rf = receptive_fields
    expected = rf.pivot(index="unit", columns=["feature", "lag"], values="attribution_signed")
    expected = expected.loc[[0, 1, 2], [(f, lag) for f in ("K", "X") for lag in range(3)]]
    np.testing.assert_allclose(_matrix(ax, (3, 6)), expected.to_numpy())
    norm = _mesh(ax).norm
    assert norm.vmin == pytest.approx(-norm.vmax)  # centred at 0
    assert norm.vmax == pytest.approx(rf["attribution_signed"].abs().max())
    assert ax.get_xlabel() == "lag (steps back)"
    assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"] * 2
    assert "K" in _all_text(fig) and "input feature" in _all_text(fig)
    assert any(np.allclose(line.get_xdata(), 3) for line in ax.lines)  # feature separator


def test_receptive_fields_state_choice(receptive_fields):
    both = pd.concat(
        [receptive_fields.assign(state="c", attribution_signed=7.0), receptive_fields],
        ignore_index=True,
    )
    h = F.plot_receptive_fields(both)  # h preferred even though c comes first
    assert np.nanmax(_matrix(h.axes[0], (3, 6))) < 7.0
    c = F.plot_receptive_fields(both, state="c")
    np.testing.assert_allclose(_matrix(c.axes[0], (3, 6)), 7.0)
    with pytest.raises(DataError, match=r"state == 'x'.*available: \['c', 'h'\]"):
        F.plot_receptive_fields(both, state="x")


def test_attribution_figures_skip_when_table_empty():
    with pytest.raises(DataError, match="receptive_fields table has no rows"):
        F.plot_receptive_fields(SCHEMAS["receptive_fields"].empty())
    with pytest.raises(DataError, match="input_lag table has no rows"):
        F.plot_input_lag(SCHEMAS["input_lag"].empty())


# ---------------------------------------------------------------------------------------------
# traces, identifiability, roles
# ---------------------------------------------------------------------------------------------


def test_role_traces_one_panel_per_role_unit(traces):
    fig = F.plot_role_traces(traces)
    axes = [ax for ax in fig.axes if ax.get_ylabel() == "activation h"]
    assert len(axes) == 3  # unit 1 has role none
    assert [ax.get_title().split("\n")[0] for ax in axes] == [
        "unit 0 → K[t]",
        "unit 2 → X[t-1]",
        "unit 3 → X[t]",
    ]
    seq0 = traces[(traces["sequence"] == 0) & (traces["unit"] == 2)]
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), seq0["activation"])
    twins = [ax for ax in fig.axes if ax.get_ylabel() == "target (z-score)"]
    assert len(twins) == 3
    np.testing.assert_allclose(twins[1].lines[0].get_ydata(), seq0["target_value"])
    r = np.corrcoef(seq0["activation"], seq0["target_value"])[0, 1]
    assert f"r = {r:.2f}" in axes[1].get_title()
    legend = fig.legends[0]
    assert "z-scored" in " ".join(_ticks(legend.get_texts()))
    assert "sequence 0" in fig.get_suptitle()
    assert axes[-1].get_xlabel() == "time step"


def test_role_traces_sequence_and_max_units(traces):
    fig = F.plot_role_traces(traces, sequence=1, max_units=2)
    axes = [ax for ax in fig.axes if ax.get_ylabel() == "activation h"]
    assert len(axes) == 2
    seq1 = traces[(traces["sequence"] == 1) & (traces["unit"] == 0)]
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), seq1["activation"])
    with pytest.raises(DataError, match="max_units == 0"):
        F.plot_role_traces(traces, max_units=0)
    with pytest.raises(DataError, match="sequence == 7"):
        F.plot_role_traces(traces, sequence=7)


def test_identifiability_matrix_hatching_and_vif(identifiability, vif):
    fig = F.plot_identifiability(identifiability, vif)
    ax = [a for a in _panels(fig) if a.collections][0]
    m = _matrix(ax, (3, 3))
    expected = np.array([[1.0, 0.995, 0.40], [0.995, 1.0, 0.60], [0.40, 0.60, 1.0]])
    np.testing.assert_allclose(m, expected)
    hatched = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_hatch()]
    assert sorted((int(p.get_x()), int(p.get_y())) for p in hatched) == [(0, 1), (1, 0)]
    assert _ticks(ax.get_yticklabels()) == [
        "K[t]  (VIF 2.1e2)",
        "X[t]  (VIF 2e2)",
        "X[t-1]  (VIF 1.7)",
    ]
    assert "not separable by a probe" in _ticks(fig.legends[0].get_texts())[0]
    fig2 = F.plot_identifiability(identifiability, vif, threshold=0.95)
    assert _ticks(fig2.legends[0].get_texts()) == ["r² ≥ 0.95: not separable by a probe"]
    fig3 = F.plot_identifiability(identifiability.assign(threshold=0.99), vif)
    assert _ticks(fig3.legends[0].get_texts()) == ["r² ≥ 0.99: not separable by a probe"]


def test_identifiability_from_csv_and_without_vif(identifiability, vif, tmp_path):
    # tables read back from CSV text get their dtypes (bool separable) from the schemas
    Tables({"identifiability": identifiability, "vif": vif.assign(vif=[5.0, 6.0, 7.0])}).write(
        tmp_path
    )
    back = Tables.read(tmp_path)
    assert back["identifiability"]["separable"].dtype == bool
    fig = F.plot_identifiability(back["identifiability"], back["vif"])
    ax = fig.axes[0]
    assert _ticks(ax.get_yticklabels())[0] == "K[t]  (VIF 5.0)"
    assert len([p for p in ax.patches if p.get_hatch()]) == 2
    bare = F.plot_identifiability(identifiability)
    assert _ticks(bare.axes[0].get_yticklabels()) == ["K[t]", "X[t]", "X[t-1]"]
    with pytest.raises(DataError, match="vif table is missing columns vif"):
        F.plot_identifiability(identifiability, vif.drop(columns="vif"))


def test_roles_bars_colours_and_text(roles):
    fig = F.plot_roles(roles, max_evidence_chars=40)
    (ax,) = _panels(fig)
    bars = ax.patches
    ordered = roles.sort_values("unit")
    np.testing.assert_allclose([b.get_width() for b in bars], ordered["confidence"])
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2", "3"]
    colours = [b.get_facecolor() for b in bars]
    assert colours[2] == colours[3] or ordered["role"].iloc[2] != ordered["role"].iloc[3]
    k_rows = [i for i, r in enumerate(ordered["role"]) if r == "K[t]"]
    assert colours[k_rows[0]] == colours[k_rows[1]]
    assert len(set(colours)) == 3  # K[t], X[t-1], none
    texts = [t.get_text() for t in ax.texts]
    assert texts[0].startswith("X[t-1] · receptive_field: receptive")
    # the deciding evidence is wrapped at 40 characters, never cut
    assert "…" not in texts[0] and max(len(line) for line in texts[0].split("\n")) <= 40
    assert " ".join(texts[0].split()) == " ".join(
        f"X[t-1] · receptive_field: {ordered['evidence'].iloc[0]}".split()
    )
    assert texts[1] == "none · ablation: no target explains it"
    assert ax.get_xlabel() == "confidence (0–1)"
    assert _ticks(fig.legends[0].get_texts()) == ["X[t-1]", "K[t]", "none"]
    fig2 = F.plot_roles(roles, length="delta_mse")
    np.testing.assert_allclose([b.get_width() for b in fig2.axes[0].patches], ordered["delta_mse"])
    assert "normalized units²" in fig2.axes[0].get_xlabel()


def test_roles_of_a_large_layer_keep_every_role_unit_and_say_what_is_left_out(roles):
    fig = F.plot_roles(roles, max_units=3)  # 3 role units, 1 none: the none unit is left out
    (ax,) = _panels(fig)
    assert _ticks(ax.get_yticklabels()) == ["0", "2", "3"]
    assert "1 units without a role left out (roles.csv lists every unit)" in " ".join(
        fig._suptitle.get_text().split()
    )
    fig = F.plot_roles(roles, max_units=1)  # never drops a unit with a role
    assert _ticks(_panels(fig)[0].get_yticklabels()) == ["0", "2", "3"]
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------


def test_capacity_curve_lines_band_knee(sweep_summary):
    fig = F.plot_capacity_curve(sweep_summary)
    (ax,) = _panels(fig)
    assert ax.get_yscale() == "log"
    lines = [line for line in ax.lines if line.get_label() in ("fib", "delay")]
    assert [line.get_label() for line in lines] == ["fib", "delay"]
    fib = sweep_summary[sweep_summary["task"] == "fib"]
    np.testing.assert_allclose(lines[0].get_xdata(), fib["units"])
    np.testing.assert_allclose(lines[0].get_ydata(), fib["mean"])
    knees = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    assert sorted(tuple(c.get_offsets()[0]) for c in knees) == sorted(
        zip(
            sweep_summary[sweep_summary["knee"]]["units"],
            sweep_summary[sweep_summary["knee"]]["mean"],
            strict=True,
        )
    )
    assert ax.get_ylabel() == "validation MSE (normalized units²)"
    assert "knee" in " ".join(_ticks(ax.get_legend().get_texts()))
    bad = sweep_summary.assign(lo=0.0)
    with pytest.raises(DataError, match="must be > 0 for a log axis"):
        F.plot_capacity_curve(bad)


def test_specialization_two_panels(sweep_summary):
    fig = F.plot_specialization(sweep_summary)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["Specialization", "Redundancy"]
    delay = sweep_summary[sweep_summary["task"] == "delay"]
    np.testing.assert_allclose(panels[0].lines[1].get_ydata(), delay["specialization"])
    np.testing.assert_allclose(panels[1].lines[1].get_ydata(), delay["redundancy"])
    assert len(panels[0].collections) == 2 and len(panels[1].collections) == 0  # bands


def test_role_stability_bars(stability):
    fig = F.plot_role_stability(stability)
    panels = _panels(fig)
    assert len(panels) == 2
    np.testing.assert_allclose([b.get_width() for b in panels[0].patches], stability["frequency"])
    np.testing.assert_allclose([b.get_width() for b in panels[1].patches], stability["stability"])
    assert _ticks(panels[0].get_yticklabels()) == ["K[t]", "X[t-1]", "X[t]"]


# ---------------------------------------------------------------------------------------------
# every figure: layout, missing columns, determinism
# ---------------------------------------------------------------------------------------------

FIGURE_CASES = [
    (F.plot_probe_heatmap, "probes", "r2"),
    (F.plot_partial_r2, "probes", "partial_r2"),
    (F.plot_ablation, "ablation", "delta_mse"),
    (F.plot_input_lag, "input_lag", "lag"),
    (F.plot_unit_attribution, "unit_attribution", "unit"),
    (F.plot_receptive_fields, "receptive_fields", "attribution_signed"),
    (F.plot_identifiability, "identifiability", "separable"),
    (F.plot_roles, "roles", "evidence"),
    (F.plot_role_traces, "traces", "target_value"),
    (F.plot_capacity_curve, "sweep_summary", "hi"),
    (F.plot_specialization, "sweep_summary", "redundancy"),
    (F.plot_role_stability, "stability", "frequency"),
]


@pytest.mark.parametrize(
    ("function", "table", "column"), FIGURE_CASES, ids=lambda v: getattr(v, "__name__", v)
)
def test_every_figure_layout_and_missing_column(function, table, column, request):
    df = request.getfixturevalue(table)
    fig = function(df)
    assert isinstance(fig, Figure)
    assert fig.get_layout_engine() is not None
    _assert_layout(fig)
    with pytest.raises(DataError, match=re.escape(f"{table} table is missing columns {column}")):
        function(df.drop(columns=column))


def test_figures_are_deterministic(probes, tmp_path):
    a = F.save_figure(F.plot_probe_heatmap(probes), tmp_path / "a")
    b = F.save_figure(F.plot_probe_heatmap(probes), tmp_path / "b")
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()


def test_layout_holds_for_many_units_and_long_names():
    wide = []
    for u in range(48):
        for t in ("K[t-1] + 2*X[t]", "X[t-2]", "K[t]"):
            wide.append(
                {
                    "layer": 0,
                    "unit": u,
                    "state": "h",
                    "target": t,
                    "r2": u / 48,
                    "selectivity": 0.1,
                    "partial_r2": 0.1,
                }
            )
    fig = F.plot_probe_heatmap(_table("probes", wide))
    _assert_layout(fig)
    assert not fig.axes[0].texts  # too many rows to annotate


# ---------------------------------------------------------------------------------------------
# large layers: every value drawn, labels thinned, figures of bounded size
# ---------------------------------------------------------------------------------------------

N_LARGE = 256


def _large_probes() -> tuple[pd.DataFrame, pd.DataFrame]:
    r2 = np.random.default_rng(0).uniform(size=(N_LARGE, len(TARGETS)))
    rows = [
        {"layer": 0, "unit": u, "state": "h", "target": t, "r2": r2[u, j], "selectivity": 0.1}
        for u in range(N_LARGE)
        for j, t in enumerate(TARGETS)
    ]
    pop = [{"layer": 0, "state": "h", "target": t, "r2": 0.9, "selectivity": 0.2} for t in TARGETS]
    return _table("probes", rows), _table("population_probes", pop)


def _heatmap_axes(fig: Figure) -> list:
    return [a for a in _panels(fig) if any(isinstance(c, QuadMesh) for c in a.collections)]


def test_large_probe_heatmap_draws_every_unit_and_labels_every_4th():
    probes, population = _large_probes()
    fig = F.plot_probe_heatmap(probes, population)
    (ax,) = _heatmap_axes(fig)
    matrix = _matrix(ax, (N_LARGE + 1, len(TARGETS)))
    expected = probes.pivot(index="unit", columns="target", values="r2").loc[:, TARGETS]
    np.testing.assert_allclose(matrix[:N_LARGE], expected.to_numpy())
    np.testing.assert_allclose(matrix[N_LARGE], [0.9, 0.9])
    assert _ticks(ax.get_yticklabels()) == [str(u) for u in range(0, N_LARGE, 4)] + ["population"]
    # the population row is as tall as the gap between two unit labels, so its label fits
    assert ax.get_yticks()[-1] == pytest.approx(N_LARGE + 2)
    assert not ax.texts  # no per-cell annotations, and the caption does not promise them
    title = " ".join(ax.get_title().split())
    assert "cell:" not in title and "probes.csv lists every value" in title
    mesh = _mesh(ax)
    assert mesh.get_rasterized() and not np.any(mesh.get_linewidths())  # no lines between cells
    assert fig.get_size_inches()[1] <= 1.6 + 0.2 * 65 + 1e-9  # not 0.2 inches per unit
    _assert_layout(fig)


def test_small_heatmap_labels_every_row_and_parts_the_cells(probes, population):
    (ax,) = _heatmap_axes(F.plot_probe_heatmap(probes, population))
    assert _ticks(ax.get_yticklabels()) == ROWS
    assert "cell: held-out R² (top)" in " ".join(ax.get_title().split())
    mesh = _mesh(ax)
    assert not mesh.get_rasterized() and np.all(mesh.get_linewidths() == 0.5)


def test_large_ablation_thins_single_units_but_labels_every_group():
    n, groups = 100, ["0+1", "2+3"]
    rows = [
        {"layer": 0, "units": units, "mode": "zero", "output": o, "delta_mse": i + 0.1 * j}
        for i, units in enumerate([*map(str, range(n)), *groups])
        for j, o in enumerate(("K", "all"))
    ]
    fig = F.plot_ablation(_table("ablation", rows))
    (ax,) = _heatmap_axes(fig)
    assert _ticks(ax.get_yticklabels()) == [str(u) for u in range(0, n, 2)] + groups
    expected = np.arange(n + 2)[:, None] + np.array([0.0, 0.1])
    np.testing.assert_allclose(_matrix(ax, (n + 2, 2)), expected)
    _assert_layout(fig)


def test_large_unit_attribution_draws_every_bar_with_thinned_labels():
    rows = [
        {"method": "saliency", "output": o, "layer": 0, "unit": u, "attribution": u + j / 10}
        for j, o in enumerate(("K", "X"))
        for u in range(N_LARGE)
    ]
    fig = F.plot_unit_attribution(_table("unit_attribution", rows))
    (ax,) = _panels(fig)
    for j, container in enumerate(ax.containers):
        heights = [bar.get_height() for bar in container]
        np.testing.assert_allclose(heights, np.arange(N_LARGE) + j / 10)
    assert _ticks(ax.get_xticklabels()) == [str(u) for u in range(0, N_LARGE, 8)]
    assert fig.get_size_inches()[0] <= 1.4 + 16.0 + 1e-9  # not 0.69 inches per unit
    _assert_layout(fig)


def test_large_direction_loadings_thin_their_unit_labels():
    directions = table_of("directions", [DIRECTION_ROW])
    states = [(s, u) for s in ("h", "c") for u in range(N_LARGE)]
    loadings = table_of(
        "direction_loadings",
        [(0, "X[t-1]", 0, u, s, k / len(states)) for k, (s, u) in enumerate(states)],
    )
    fig = F.plot_directions(directions, loadings)
    (ax,) = _heatmap_axes(fig)
    np.testing.assert_allclose(_matrix(ax, (1, len(states)))[0], np.arange(len(states)) / 512)
    assert _ticks(ax.get_xticklabels()) == [f"{s}{u}" for s in "hc" for u in range(0, N_LARGE, 16)]
    assert fig.get_size_inches()[0] < 20  # not 0.42 inches per unit and state
    _assert_layout(fig)


def test_large_figures_are_deterministic_in_png_and_pdf(tmp_path):
    probes, population = _large_probes()
    a = F.save_figure(F.plot_probe_heatmap(probes, population), tmp_path / "a", ("png", "pdf"))
    b = F.save_figure(F.plot_probe_heatmap(probes, population), tmp_path / "b", ("png", "pdf"))
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name


# ---------------------------------------------------------------------------------------------
# saving and render_all
# ---------------------------------------------------------------------------------------------


def test_save_figure_png_pdf_fonts_and_close(probes, tmp_path):
    fig = F.plot_probe_heatmap(probes)
    width, height = fig.get_size_inches()
    paths = F.save_figure(fig, tmp_path / "sub" / "probe.r2", ("png", "pdf"))
    assert [p.name for p in paths] == ["probe.r2.png", "probe.r2.pdf"]
    png, pdf = (p.read_bytes() for p in paths)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w_px, h_px = struct.unpack(">II", png[16:24])
    assert (w_px, h_px) == (round(width * 200), round(height * 200))
    assert pdf[:5] == b"%PDF-" and b"/FontFile2" in pdf and b"/Type3" not in pdf
    # a pyplot-managed figure is closed after saving
    pfig = plt.figure()
    num = pfig.number
    F.save_figure(pfig, tmp_path / "plain", formats=("png",))
    assert not plt.fignum_exists(num)
    with pytest.raises(DataError, match="formats =="):
        F.save_figure(F.plot_probe_heatmap(probes), tmp_path / "x", formats=("jpg",))


@pytest.fixture
def tables(
    probes,
    population,
    ablation,
    input_lag,
    unit_attribution,
    receptive_fields,
    identifiability,
    vif,
    roles,
    traces,
) -> Tables:
    units = [str(u) for u in range(3)]
    interchange = table_of(
        "interchange",
        [
            (0, u, t, t[0], int(t[-2]) if "-" in t else 0, "model", v, v - 0.05, v + 0.05, 1.0,
             64, True, "")
            for u in units
            for t, v in (("K[t]", 0.9 if u == "0" else 0.05), ("X[t-1]", 0.5))
        ],
    )  # fmt: skip
    directions = table_of("directions", [DIRECTION_ROW])
    loadings = table_of(
        "direction_loadings",
        [(0, "X[t-1]", 0, u, s, 0.4) for u in range(3) for s in ("h", "c")],
    )
    return Tables(
        {
            "interchange": interchange,
            "directions": directions,
            "direction_loadings": loadings,
            "probes": probes,
            "population_probes": population,
            "identifiability": identifiability,
            "vif": vif,
            "ablation": ablation,
            "input_lag": input_lag,
            "unit_attribution": unit_attribution,
            "receptive_fields": receptive_fields,
            "roles": roles,
            "traces": traces,
        }
    )


ALL_FIGURES = [
    "probe_r2",
    "probe_partial_r2",
    "ablation",
    "input_lag",
    "unit_attribution",
    "receptive_fields",
    "identifiability",
    "roles",
    "role_traces",
    "interchange",
    "directions",
]


def test_render_all_writes_every_figure(tmp_path, tables):
    paths = F.render_all(tables, tmp_path / "figures", formats=("png",))
    assert paths == [tmp_path / "figures" / f"{n}.png" for n in ALL_FIGURES]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(p.name for p in paths)
    assert not list(tmp_path.glob("*.csv"))  # drawn from memory, nothing written but figures
    parallel = F.render_all(tables, tmp_path / "parallel", formats=("png",), jobs=2)
    assert [p.name for p in parallel] == [p.name for p in paths]
    for a, b in zip(paths, parallel, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name  # the same files, drawn at once


def test_render_all_optional_and_required_tables(
    tmp_path, probes, roles, input_lag, unit_attribution
):
    tables = Tables(
        {
            "probes": probes,
            "roles": roles,
            "input_lag": input_lag,
            "unit_attribution": unit_attribution,
            "receptive_fields": SCHEMAS["receptive_fields"].empty(),  # skipped: no rows
        }
    )
    out = tmp_path / "elsewhere"
    paths = F.render_all(tables, out, formats=("pdf",))
    stems = sorted({p.stem for p in paths})
    assert stems == sorted(
        ["probe_r2", "probe_partial_r2", "input_lag", "unit_attribution", "roles"]
    )
    assert len(paths) == 5 and all(p.parent == out and p.suffix == ".pdf" for p in paths)
    plain = {"probes": probes, "roles": roles}  # a plain mapping is turned into Tables
    assert [p.stem for p in F.render_all(plain, out, formats=("png",))] == [
        "probe_r2",
        "probe_partial_r2",
        "roles",
    ]
    with pytest.raises(DataError, match=r"no probes table; run `unitprobe analyze` first"):
        F.render_all(Tables({"roles": roles}), out)
    with pytest.raises(DataError, match=r"no roles table; run `unitprobe analyze` first"):
        F.render_all(Tables({"probes": probes}), out)
    with pytest.raises(DataError, match="formats =="):
        F.render_all(tables, out, formats=("gif",))


def test_render_all_names_figure_and_table_on_bad_table(tmp_path, probes, roles):
    dup = pd.concat([probes, probes.iloc[:1]], ignore_index=True)
    with pytest.raises(
        DataError, match=r"probe_r2 figure \(probes table\): probes table has more than one row"
    ):
        F.render_all(Tables({"probes": dup, "roles": roles}), tmp_path)
    with pytest.raises(DataError, match=r"probe_r2 figure \(probes table\): probes table has"):
        F.render_all(Tables({"probes": dup, "roles": roles}), tmp_path, jobs=2)
    # a table without a schema column cannot even enter a Tables
    with pytest.raises(DataError, match=r"probes table is missing columns.*selectivity"):
        Tables({"probes": probes.drop(columns="selectivity"), "roles": roles})


def test_report_from_tables_and_rendered_figures(tmp_path, tables, roles):
    paths = F.render_all(tables, tmp_path / "figures", formats=("png", "pdf"))
    summary = {"task": {"name": "fib", "inputs": ["K", "X"], "predict": ["K"]}, "seed": 3}
    report = write_report(tmp_path, tables, summary, paths)
    assert report == tmp_path / "report.html"
    html = report.read_text(encoding="utf-8")
    # every table is listed, the new ones included, though no CSV was written
    for name in (
        "probes",
        "population_probes",
        "identifiability",
        "vif",
        "ablation",
        "input_lag",
        "unit_attribution",
        "receptive_fields",
        "roles",
        "traces",
    ):
        assert f"<a href='{name}.csv'>{name}.csv</a>" in html
    assert "attribution.csv'" not in html.replace("unit_attribution.csv'", "")
    # each PNG is embedded once, in registry order, with its caption; PDFs are not
    ids = re.findall(r"<figure id='(\w+)'>", html)
    assert ids == ALL_FIGURES
    assert html.count("data:image/png;base64,") == len(ALL_FIGURES)
    captions = {spec.name: spec.caption for spec in F.FIGURES}
    assert f"<b>roles</b>: {captions['roles']}" in html.replace("&#x27;", "'")
    # the roles table comes from memory
    assert "receptive_field" in html and "Unit → role" in html
    assert html.count("<tr><td>0</td><td>") == len(roles)
    # a mapping of name -> PNG works too, and other files are ignored
    pngs = {p.stem: p for p in paths if p.suffix == ".png"}
    again = write_report(tmp_path, tables, summary, {"roles": pngs["roles"]})
    assert re.findall(r"<figure id='(\w+)'>", again.read_text()) == ["roles"]
    none = write_report(tmp_path, Tables({"roles": roles}), summary, [])
    text = none.read_text()
    assert "No figures were rendered." in text and "vif.csv" not in text


def test_registry_entries():
    names = [spec.name for spec in F.FIGURES]
    assert len(set(names)) == len(names)
    assert names == ALL_FIGURES
    for name, function, tables, caption in F.FIGURES:
        assert function.__name__ in F.__all__
        assert tables and name
        assert all(t in SCHEMAS for t in tables)
        assert caption[0].isupper() and caption.endswith(".")
        assert caption.count(". ") == 0  # one sentence


def test_the_report_says_where_each_term_lives_first():
    from unitprobe.views.report import _answer_section

    terms = pd.DataFrame({"layer": [0, 0, 0], "term": ["K[t]", "X[t]", "X[t-2]"],
                          "verdict": ["generic", "unit", "unused"],
                          "evidence": ["", "", ""]})  # fmt: skip
    roles = pd.DataFrame({"role": ["none", "X[t]", "none"]})
    nulls = {"unit_level": 0.01, "direction_specificity": 0.5, "direction_level": 0.025}
    text = _answer_section(terms, roles, nulls)
    assert text.startswith("<h2>Where each term lives</h2>")
    assert (
        "Of the 2 terms the output uses, the network holds <code>X[t]</code> (held by one unit)."
        in text
    )
    assert "1 of 3 units hold a term or a formula." in text
    assert "at least 2 times as much as any other term" in text and "at most 0.025" in text
    none = _answer_section(terms.assign(verdict=["generic", "generic", "unused"]), roles, nulls)
    said = "The output uses 2 terms, and none of them is held by a unit, a formula or a direction"
    assert f"{said} of its own" in none
    assert _answer_section(None, roles, nulls) == ""
