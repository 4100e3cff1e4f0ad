"""Tests of unitprobe.views.figures: every figure is drawn from a small hand-made table in the
DESIGN.md schema and its data, labels and layout are read back from the matplotlib objects."""

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

TARGETS = ["K[t]", "X[t-1]"]

# ---------------------------------------------------------------------------------------------
# hand-made tables
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def probes() -> pd.DataFrame:
    rows = []
    r2 = {0: (0.93, 0.12), 1: (0.20, 0.88), 2: (-0.05, 0.31), "all": (0.97, 0.95)}
    for unit, values in r2.items():
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
    return pd.DataFrame(rows)


@pytest.fixture
def ablation() -> pd.DataFrame:
    rows = []
    for m, mode in enumerate(("zero", "mean", "resample")):
        for u, units in enumerate(["0+2", 1, "0", "2"]):  # groups before singles, mixed types
            for t, target in enumerate(("all", "K", "X")):
                delta = 0.01 * (m + 1) * (u - 1.5) + 0.001 * t
                rows.append(
                    {
                        "layer": 0,
                        "units": units,
                        "mode": mode,
                        "target": target,
                        "mse": 0.1 + delta,
                        "mse_base": 0.1,
                        "delta_mse": delta,
                        "rel_delta": delta / 0.1,
                    }
                )
    return pd.DataFrame(rows)


def _attr_row(**kw) -> dict:
    base = {
        "method": "integrated_gradients",
        "target": np.nan,
        "kind": np.nan,
        "feature": np.nan,
        "lag": np.nan,
        "layer": np.nan,
        "unit": np.nan,
        "attribution": np.nan,
        "attribution_signed": np.nan,
    }
    return base | kw


@pytest.fixture
def attribution() -> pd.DataFrame:
    rows = []
    for o, output in enumerate(("K", "X")):
        for f, feature in enumerate(("K", "X")):
            for lag in range(3):
                a = 1.0 / (1 + lag) + 0.1 * f + 0.01 * o
                rows.append(
                    _attr_row(
                        target=output,
                        kind="input_lag",
                        feature=feature,
                        lag=lag,
                        attribution=a,
                        attribution_signed=-a,
                    )
                )
        for unit in range(3):
            a = 0.1 * (unit + 1) + 0.05 * o
            rows.append(
                _attr_row(
                    target=output,
                    kind="unit",
                    layer=0,
                    unit=unit,
                    attribution=a,
                    attribution_signed=a,
                )
            )
    for unit in range(3):
        for f, feature in enumerate(("K", "X")):
            for lag in range(3):
                s = (unit - 1) * 0.5 + 0.1 * lag - 0.2 * f
                rows.append(
                    _attr_row(
                        target="h",
                        kind="unit_input_lag",
                        feature=feature,
                        lag=lag,
                        layer=0,
                        unit=unit,
                        attribution=abs(s),
                        attribution_signed=s,
                    )
                )
    return pd.DataFrame(rows)


@pytest.fixture
def identifiability() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "target_a": "K[t]",
                "target_b": "X[t]",
                "r2": 0.995,
                "separable": False,
                "vif": np.nan,
            },
            {
                "target_a": "K[t]",
                "target_b": "X[t-1]",
                "r2": 0.40,
                "separable": True,
                "vif": np.nan,
            },
            {
                "target_a": "X[t]",
                "target_b": "X[t-1]",
                "r2": 0.60,
                "separable": True,
                "vif": np.nan,
            },
            {
                "target_a": "K[t]",
                "target_b": "VIF",
                "r2": np.nan,
                "separable": np.nan,
                "vif": 210.0,
            },
            {
                "target_a": "X[t]",
                "target_b": "VIF",
                "r2": np.nan,
                "separable": np.nan,
                "vif": 199.5,
            },
            {
                "target_a": "X[t-1]",
                "target_b": "VIF",
                "r2": np.nan,
                "separable": np.nan,
                "vif": 1.7,
            },
        ]
    )


@pytest.fixture
def roles() -> pd.DataFrame:
    return pd.DataFrame(
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
    return pd.DataFrame(rows)


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


def test_probe_heatmap_matrix_annotations_and_labels(probes):
    fig = F.plot_probe_heatmap(probes, state="h", layer=0)
    assert isinstance(fig, Figure)
    (ax,) = _panels(fig)
    h = probes[probes["state"] == "h"]
    expected = (
        h.assign(unit=h["unit"].astype(str)).pivot(index="unit", columns="target", values="r2")
    ).loc[["0", "1", "2", "all"], TARGETS]
    np.testing.assert_allclose(_matrix(ax, (4, 2)), expected.to_numpy())
    assert _ticks(ax.get_yticklabels()) == ["0", "1", "2", "population"]
    assert _ticks(ax.get_xticklabels()) == TARGETS
    # cell (unit 0, K[t]) reads r2 over signed selectivity
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "0.93\n+0.41"
    sel = h.assign(unit=h["unit"].astype(str)).pivot(
        index="unit", columns="target", values="selectivity"
    )
    assert texts == [
        f"{expected.loc[u, t]:.2f}\n{sel.loc[u, t]:+.2f}"
        for u in ["0", "1", "2", "all"]
        for t in TARGETS
    ]
    # the population row is separated by a horizontal line at y = 3 (after 3 units)
    assert any(np.allclose(line.get_ydata(), 3) for line in ax.lines)
    assert ax.get_xlabel() == "probe target" and ax.get_ylabel() == "unit"
    assert "R²" in ax.get_title() and "layer 0" in ax.get_title() and "state h" in ax.get_title()
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert cbar.get_ylabel() == "held-out R²"
    assert _mesh(ax).norm.vmin == 0 and _mesh(ax).norm.vmax == 1


def test_probe_heatmap_reads_csv_with_mixed_unit_column(probes, tmp_path):
    probes.to_csv(tmp_path / "probes.csv", index=False)
    back = pd.read_csv(tmp_path / "probes.csv")  # 'unit' comes back as strings
    fig_a = F.plot_probe_heatmap(back, state="c")
    fig_b = F.plot_probe_heatmap(probes, state="c")
    np.testing.assert_allclose(_matrix(fig_a.axes[0], (4, 2)), _matrix(fig_b.axes[0], (4, 2)))
    assert _matrix(fig_a.axes[0], (4, 2))[0, 0] == pytest.approx(0.94)


def test_probe_heatmap_all_layers_labels_rows_by_layer(probes):
    two = pd.concat([probes, probes.assign(layer=1, r2=probes["r2"] / 2)], ignore_index=True)
    fig = F.plot_probe_heatmap(two, layer=None)
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


def test_probe_heatmap_rejects_absent_state_and_layer(probes):
    with pytest.raises(DataError, match=r"state == 'x'.*available: \['h', 'c'\]"):
        F.plot_probe_heatmap(probes, state="x")
    with pytest.raises(DataError, match=r"layer == 3 .*available layers: \[0\]"):
        F.plot_probe_heatmap(probes, layer=3)


def test_probe_heatmap_rejects_duplicate_cells(probes):
    dup = pd.concat([probes, probes.iloc[:1]], ignore_index=True)
    with pytest.raises(DataError, match="more than one row"):
        F.plot_probe_heatmap(dup)


def test_partial_r2_matrix(probes):
    fig = F.plot_partial_r2(probes)
    ax = fig.axes[0]
    h = probes[probes["state"] == "h"]
    expected = (
        h.assign(unit=h["unit"].astype(str))
        .pivot(index="unit", columns="target", values="partial_r2")
        .loc[["0", "1", "2", "all"], TARGETS]
    )
    np.testing.assert_allclose(_matrix(ax, (4, 2)), expected.to_numpy())
    assert [t.get_text() for t in ax.texts][:2] == ["0.47", "0.06"]
    assert "Partial R²" in ax.get_title()


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
        expected = sub.pivot(index="units", columns="target", values="delta_mse").loc[
            rows, ["K", "X", "all"]
        ]
        np.testing.assert_allclose(_matrix(ax, (4, 3)), expected.to_numpy())
        # shared symmetric diverging scale
        norm = _mesh(ax).norm
        assert norm.vmin == pytest.approx(-ablation["delta_mse"].abs().max())
        assert norm.vmax == pytest.approx(ablation["delta_mse"].abs().max())
    cbar = [a for a in fig.axes if a.get_label() == "<colorbar>"][0]
    assert "Δ MSE" in cbar.get_ylabel() and "(normalized units²)" in cbar.get_ylabel()
    assert panels[0].get_ylabel() == "ablated unit(s)"
    assert panels[0].get_xlabel() == "output"


def test_ablation_single_mode_and_rel_delta(ablation):
    fig = F.plot_ablation(ablation, mode="mean", value="rel_delta")
    (ax,) = _panels(fig)
    sub = ablation[(ablation["mode"] == "mean") & (ablation["units"].astype(str) == "0")]
    np.testing.assert_allclose(
        _matrix(ax, (4, 3))[0], sub.set_index("target").loc[["K", "X", "all"], "rel_delta"]
    )
    assert ax.texts[0].get_text() == f"{sub.set_index('target').loc['K', 'rel_delta']:.3f}"
    with pytest.raises(DataError, match="mode == 'drop'"):
        F.plot_ablation(ablation, mode="drop")
    with pytest.raises(DataError, match="value == 'mse'"):
        F.plot_ablation(ablation, value="mse")


# ---------------------------------------------------------------------------------------------
# attribution
# ---------------------------------------------------------------------------------------------


def test_input_lag_one_panel_per_output(attribution):
    fig = F.plot_input_lag(attribution)
    panels = _panels(fig)
    assert [ax.get_title() for ax in panels] == ["output K", "output X"]
    il = attribution[attribution["kind"] == "input_lag"]
    for ax, output in zip(panels, ("K", "X"), strict=True):
        expected = il[il["target"] == output].pivot(
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


def test_input_lag_rejects_unknown_method(attribution):
    with pytest.raises(DataError, match=r"method == 'saliency'.*integrated_gradients"):
        F.plot_input_lag(attribution, method="saliency")


def test_unit_attribution_bar_heights(attribution):
    fig = F.plot_unit_attribution(attribution)
    (ax,) = _panels(fig)
    ua = attribution[attribution["kind"] == "unit"]
    assert len(ax.containers) == 2  # one bar group per output
    for container, output in zip(ax.containers, ("K", "X"), strict=True):
        heights = [bar.get_height() for bar in container]
        expected = ua[ua["target"] == output].sort_values("unit")["attribution"].to_numpy()
        np.testing.assert_allclose(heights, expected)
    assert _ticks(ax.get_xticklabels()) == ["0", "1", "2"]
    assert ax.get_ylabel() == "mean |attribution|" and ax.get_xlabel() == "unit"
    assert ax.get_legend().get_title().get_text() == "output"
    assert _ticks(ax.get_legend().get_texts()) == ["K", "X"]


def test_receptive_fields_signed_matrix(attribution):
    fig = F.plot_receptive_fields(attribution)
    ax = [a for a in _panels(fig) if a.collections][0]
    rf = attribution[attribution["kind"] == "unit_input_lag"]
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


def test_attribution_figures_skip_when_kind_absent(attribution):
    only_lag = attribution[attribution["kind"] == "input_lag"]
    with pytest.raises(DataError, match="kind == 'unit_input_lag'"):
        F.plot_receptive_fields(only_lag)


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


def test_identifiability_matrix_hatching_and_vif(identifiability):
    fig = F.plot_identifiability(identifiability)
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
    fig2 = F.plot_identifiability(identifiability, threshold=0.95)
    assert _ticks(fig2.legends[0].get_texts()) == ["r² ≥ 0.95: not separable by a probe"]
    fig3 = F.plot_identifiability(identifiability.assign(threshold=0.99))
    assert _ticks(fig3.legends[0].get_texts()) == ["r² ≥ 0.99: not separable by a probe"]


def test_identifiability_vif_in_r2_column_and_string_bools(identifiability):
    alt = identifiability.drop(columns="vif")
    alt.loc[alt["target_b"] == "VIF", "r2"] = [5.0, 6.0, 7.0]
    alt["separable"] = alt["separable"].map({True: "True", False: "False"})
    fig = F.plot_identifiability(alt)
    ax = fig.axes[0]
    assert _ticks(ax.get_yticklabels())[0] == "K[t]  (VIF 5.0)"
    assert len([p for p in ax.patches if p.get_hatch()]) == 2


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
    assert texts[0].endswith("…") and len(texts[0]) == 40
    assert texts[1] == "none · ablation: no target explains it"
    assert ax.get_xlabel() == "confidence (0–1)"
    assert _ticks(fig.legends[0].get_texts()) == ["X[t-1]", "K[t]", "none"]
    fig2 = F.plot_roles(roles, length="delta_mse")
    np.testing.assert_allclose([b.get_width() for b in fig2.axes[0].patches], ordered["delta_mse"])
    assert "normalized units²" in fig2.axes[0].get_xlabel()


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
    (F.plot_input_lag, "attribution", "lag"),
    (F.plot_unit_attribution, "attribution", "unit"),
    (F.plot_receptive_fields, "attribution", "attribution_signed"),
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
    with pytest.raises(DataError, match=re.escape(f"missing column(s) '{column}'")):
        function(df.drop(columns=column))


def test_figures_are_deterministic(probes, tmp_path):
    a = F.save_figure(F.plot_probe_heatmap(probes), tmp_path / "a")
    b = F.save_figure(F.plot_probe_heatmap(probes), tmp_path / "b")
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()


def test_layout_holds_for_many_units_and_long_names(probes):
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
    fig = F.plot_probe_heatmap(pd.DataFrame(wide))
    _assert_layout(fig)
    assert not fig.axes[0].texts  # too many rows to annotate


# ---------------------------------------------------------------------------------------------
# saving and render_all
# ---------------------------------------------------------------------------------------------


def test_save_figure_png_pdf_fonts_and_close(probes, tmp_path):
    fig = F.plot_probe_heatmap(probes)
    width, height = fig.get_size_inches()
    paths = F.save_figure(fig, tmp_path / "sub" / "probe.r2")
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


def _write_results(tmp_path, probes, ablation, attribution, identifiability, roles, traces):
    for name, df in {
        "probes": probes,
        "ablation": ablation,
        "attribution": attribution,
        "identifiability": identifiability,
        "roles": roles,
        "traces": traces,
    }.items():
        df.to_csv(tmp_path / f"{name}.csv", index=False)


def test_render_all_writes_every_figure(
    tmp_path, probes, ablation, attribution, identifiability, roles, traces
):
    _write_results(tmp_path, probes, ablation, attribution, identifiability, roles, traces)
    paths = F.render_all(tmp_path, formats=("png",))
    names = [
        "probe_r2",
        "probe_partial_r2",
        "ablation",
        "input_lag",
        "unit_attribution",
        "receptive_fields",
        "identifiability",
        "roles",
        "role_traces",
    ]
    assert paths == [tmp_path / "figures" / f"{n}.png" for n in names]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_render_all_optional_and_required_tables(tmp_path, probes, roles, attribution):
    probes.to_csv(tmp_path / "probes.csv", index=False)
    roles.to_csv(tmp_path / "roles.csv", index=False)
    attribution[attribution["kind"] != "unit_input_lag"].to_csv(
        tmp_path / "attribution.csv", index=False
    )
    out = tmp_path / "elsewhere"
    paths = F.render_all(tmp_path, out_dir=out, formats=("pdf",))
    stems = sorted({p.stem for p in paths})
    assert stems == sorted(
        ["probe_r2", "probe_partial_r2", "input_lag", "unit_attribution", "roles"]
    )
    assert len(paths) == 5 and all(p.parent == out and p.suffix == ".pdf" for p in paths)
    (tmp_path / "probes.csv").unlink()
    with pytest.raises(DataError, match=r"has no probes.csv; run `unitprobe analyze` first"):
        F.render_all(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        F.render_all(tmp_path / "nope")


def test_render_all_names_file_and_column_on_bad_table(tmp_path, probes, roles):
    probes.drop(columns="selectivity").to_csv(tmp_path / "probes.csv", index=False)
    roles.to_csv(tmp_path / "roles.csv", index=False)
    with pytest.raises(
        DataError, match=r"probes.csv: probes table is missing column\(s\) 'selectivity'"
    ):
        F.render_all(tmp_path)


def test_registry_entries():
    names = [spec.name for spec in F.FIGURES]
    assert len(set(names)) == len(names)
    for name, function, table, caption in F.FIGURES:
        assert function.__name__ in F.__all__
        assert table and name
        assert caption[0].isupper() and caption.endswith(".")
        assert caption.count(". ") == 0  # one sentence
