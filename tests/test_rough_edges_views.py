"""Rough edges of the figures, the sweep's worker processes and the CSV reader: whole steps get
whole-number ticks, an undefined partial R² says why without a colour bar, local sweep workers
die with their parent, and CSV reading and windowing refuse what would not fit in memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from unitprobe import figures as F
from unitprobe.errors import DataError
from unitprobe.tasks import csvdata
from unitprobe.tasks.csvdata import load_csv

# ---------------------------------------------------------------------------------------------
# whole steps on the lag axes
# ---------------------------------------------------------------------------------------------


def _labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


@pytest.mark.parametrize("dtype", ["int64", "float64", "Int64"])
def test_input_lag_ticks_are_whole_steps(dtype):
    rows = [
        {"method": "ig", "output": "X", "feature": f, "lag": lag, "attribution": 0.1 * lag}
        for f in ("K", "X")
        for lag in range(4)
    ]
    table = pd.DataFrame(rows).assign(attribution_signed=0.0)
    table["lag"] = table["lag"].astype(dtype)
    fig = F.plot_input_lag(table)
    assert _labels(fig.axes[0]) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_receptive_field_ticks_are_whole_steps(dtype):
    rows = [
        {
            "method": "gradient",
            "state": "h",
            "layer": 0,
            "unit": u,
            "feature": f,
            "lag": lag,
            "attribution_signed": 0.1 * u - 0.05 * lag,
        }
        for u in range(2)
        for f in ("K", "X")
        for lag in range(3)
    ]
    table = pd.DataFrame(rows).assign(attribution=0.0)
    table["lag"] = table["lag"].astype(dtype)
    fig = F.plot_receptive_fields(table)
    assert _labels(fig.axes[0]) == ["0", "1", "2", "0", "1", "2"]


# ---------------------------------------------------------------------------------------------
# partial R² undefined everywhere
# ---------------------------------------------------------------------------------------------


def _probes(partial, note="") -> pd.DataFrame:
    rows = []
    for layer in (0, 1):
        for unit in range(3):
            for j, target in enumerate(("A[t]", "A[t-1]")):
                rows.append(
                    {
                        "layer": layer,
                        "unit": unit,
                        "state": "h",
                        "target": target,
                        "r2": 0.5,
                        "selectivity": 0.1,
                        "partial_r2": partial(layer, unit, j),
                        "note": note,
                    }
                )
    return pd.DataFrame(rows)


def _texts(fig) -> str:
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts)


def test_partial_r2_undefined_everywhere_has_a_note_and_no_colour_bar():
    probes = _probes(lambda *_: np.nan, note="target explained by controls")
    fig = F.plot_partial_r2(probes)
    assert len(fig.axes) == 1  # no colour bar: there is no value to read on it
    text = _texts(fig)
    assert "partial R² undefined everywhere" in text
    assert "each target is a linear combination of the others" in text
    # the units are still labelled
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["0", "1", "2"]


def test_partial_r2_undefined_in_the_shown_layer_only_says_so():
    probes = _probes(lambda layer, unit, j: np.nan if layer == 0 else 0.2, note="collinear")
    shown = F.plot_partial_r2(probes, layer=0)
    assert len(shown.axes) == 1
    assert "partial R² undefined everywhere:\ncollinear" in _texts(shown)
    other = F.plot_partial_r2(probes, layer=1)
    assert len(other.axes) == 2  # heatmap and colour bar
    assert "undefined" not in _texts(other)
    assert sorted({t.get_text() for t in other.axes[0].texts}) == ["0.20"]


def test_partial_r2_defined_somewhere_keeps_the_colour_bar():
    probes = _probes(lambda layer, unit, j: 0.3 if (unit, j) == (1, 0) else np.nan)
    fig = F.plot_partial_r2(probes, layer=None)
    assert len(fig.axes) == 2
    assert "undefined" not in _texts(fig)


# ---------------------------------------------------------------------------------------------
# sweep workers die with their parent
# ---------------------------------------------------------------------------------------------

_PARENT = textwrap.dedent(
    """
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from unitprobe.pipeline.executors import _init_worker

    if __name__ == "__main__":
        executor = ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )
        pid = executor.submit(os.getpid).result()
        executor.submit(time.sleep, 60)
        print(pid, flush=True)
        time.sleep(60)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_local_sweep_worker_dies_when_its_parent_is_killed():
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        worker = int(parent.stdout.readline())
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = _alive(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
        assert not alive, "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


# ---------------------------------------------------------------------------------------------
# CSV size caps
# ---------------------------------------------------------------------------------------------


def test_csv_with_too_many_cells_is_refused_before_parsing(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    # 1 header + 40 rows x 3 columns = 123 cells; the last row is malformed, which a parse
    # would report: the size refusal must come first
    path.write_text("a,b,c\n" + "1,2,3\n" * 39 + "1,2\n")
    monkeypatch.setattr(csvdata, "MAX_CSV_CELLS", 100)
    with pytest.raises(DataError) as err:
        load_csv(path)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"CSV file '{path}' has about 123 cells (41 lines x 3 columns), more than 100; "
        "load a shorter extract or fewer columns (parsing holds about 60 bytes per cell)"
    )
    monkeypatch.setattr(csvdata, "MAX_CSV_CELLS", 123)
    with pytest.raises(DataError, match="line 41 has 2 fields"):
        load_csv(path)  # at the cap: parsed (and the bad row reported)


def test_csv_over_the_byte_cap_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_text("a\n" + "1\n" * 50)
    monkeypatch.setattr(csvdata, "MAX_CSV_BYTES", 50)
    with pytest.raises(DataError, match=r"has 102 bytes, more than 50; load a shorter extract"):
        load_csv(path)


def test_windowing_over_the_generated_data_cap_is_refused_before_allocating(tmp_path, monkeypatch):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n" + "".join(f"{i},{2 * i}\n" for i in range(100)))
    # 100 steps, window 10, stride 1: 91 windows x 10 steps x 2 series = 1820 values
    monkeypatch.setattr(csvdata, "MAX_GENERATED_VALUES", 1819)
    allocated = []
    monkeypatch.setattr(csvdata.np, "stack", lambda *a, **k: allocated.append(a) or None)
    with pytest.raises(DataError) as err:
        load_csv(path, window=10, stride=1)
    assert str(err.value) == (
        "windows of 10 steps every 1 give 91 windows = 1.82e+03 values, more than 1.82e+03; "
        "use a larger --stride"
    )
    assert allocated == []
    monkeypatch.undo()
    monkeypatch.setattr(csvdata, "MAX_GENERATED_VALUES", 1820)
    assert load_csv(path, window=10, stride=1).inputs.shape == (91, 9, 2)


def test_csv_cell_estimate_takes_the_width_from_the_header_not_a_comment(tmp_path, monkeypatch):
    path = tmp_path / "noted.csv"
    path.write_text("# source: a, b, c, d, e, f, g\na\n" + "1\n" * 20)
    monkeypatch.setattr(csvdata, "MAX_CSV_CELLS", 22)  # 22 lines x 1 column
    assert load_csv(path, window=5).inputs.shape == (4, 4, 1)
    monkeypatch.setattr(csvdata, "MAX_CSV_CELLS", 21)
    with pytest.raises(DataError, match=r"about 22 cells \(22 lines x 1 columns\)"):
        load_csv(path, window=5)


def test_role_trace_time_axis_has_whole_steps():
    from unitprobe.schemas import frame
    from unitprobe.views.role_figures import plot_role_traces

    rows = [(0, 0, "K[t]", 0, t, 0.1 * t, 0.2 * t) for t in range(3)]
    fig = plot_role_traces(frame("traces", rows))
    fig.canvas.draw()
    ticks = [t for ax in fig.axes for t in ax.get_xticks() if ax.get_xlabel() == "time step"]
    assert ticks and all(float(t).is_integer() for t in ticks)
