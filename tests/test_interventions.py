"""Interchange interventions and learned directions on hand-wired networks with known contents."""

import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from unitprobe.cli.patch import patch
from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions import (
    DIRECTION_LOADINGS,
    DIRECTIONS,
    INTERCHANGE,
    Term,
    counterfactual_pairs,
    default_terms,
    direction_table,
    direction_transfer,
    interchange_table,
    learn_direction,
    output_fields,
    parse_term,
)
from unitprobe.model.checkpoint import save
from unitprobe.model.lstm import Intervention, ModelConfig, UnitLSTM, run
from unitprobe.model.planted import planted_lstm
from unitprobe.tasks import generate, get_preset
from unitprobe.tasks.presets import delay
from unitprobe.views.intervention_figures import plot_directions, plot_interchange

KX = ("K", "X")
TERMS = ["K[t]", "K[t-1]", "X[t]", "X[t-1]"]


def _data(n_seq=120, n_steps=10, outputs=("a", "b"), seed=0):
    x = np.random.default_rng(seed).standard_normal((n_seq, n_steps, 2)).astype(np.float32)
    return types.SimpleNamespace(inputs=x, input_names=KX, output_names=outputs, spec=None)


def _transfers(table, units=None):
    rows = table if units is None else table[table["units"] == units]
    return dict(zip(rows["term"], rows["transfer"], strict=True))


def _kx_model():
    """Units K[t], K[t-1], X[t], X[t-1], dead; output a reads K[t-1], output b reads X[t-1]."""
    readout = np.zeros((2, 5))
    readout[0, 1] = 10.0
    readout[1, 3] = 10.0
    return planted_lstm(2, [(0, 0), (0, 1), (1, 0), (1, 1), None], n_outputs=2, readout=readout)


# --------------------------------------------------------------------------- terms and pairs


def test_terms_parse_and_refuse_expressions():
    assert parse_term("X[t-1]", KX) == Term("X", 1)
    assert str(parse_term(" K[t] ", KX)) == "K[t]"
    with pytest.raises(UnitprobeError, match="one input series at a lag"):
        parse_term("X[t] + K[t]", KX)
    with pytest.raises(UnitprobeError, match="not an input feature; inputs: K, X"):
        parse_term("Z[t]", KX)
    with pytest.raises(
        UnitprobeError, match=r"look-ahead .* \(in term 'X\[t\+1\]'\); a term is NAME"
    ):
        parse_term("X[t+1]", KX)
    spec = get_preset("seed")
    assert [str(t) for t in default_terms(spec, KX)] == [
        "K[t]", "K[t-1]", "K[t-2]", "X[t]", "X[t-1]", "X[t-2]",
    ]  # fmt: skip


def test_output_fields_unroll_the_relations_in_normalized_units():
    ds = generate(get_preset("seed"), 64, 0)
    fields = output_fields(ds)
    assert fields["X"].weights == pytest.approx({("X", 0): 1.0, ("X", 1): 1.0})
    # K[t+1] = K[t] + 2 X[t+1] + 1 = K[t] + 2 X[t] + 2 X[t-1] + 1
    w = 2 * ds.norm["X"][1] / ds.norm["K"][1]
    assert fields["K"].weights == pytest.approx({("K", 0): 1.0, ("X", 0): w, ("X", 1): w})
    assert fields["K"].min_step == 1
    d2 = generate(delay(2, 12), 16, 0)
    field = output_fields(d2)["Y"]
    assert field.weights == pytest.approx({("U", 2): d2.norm["U"][1] / d2.norm["Y"][1]})
    assert field.min_step == 2
    # a series that is not an input and reads its own past has no finite field
    hidden = dataclasses.replace(ds, input_names=("X",))
    assert output_fields(hidden)["K"] is None


def test_pairs_change_exactly_one_value_by_another_sequences_value():
    ds = _data()
    pairs = counterfactual_pairs(ds, Term("X", 2), 300, seed=3)
    diff = pairs.source != pairs.base
    rows = np.arange(300)
    assert (pairs.step >= 2).all()
    assert diff.sum(axis=(1, 2)).max() <= 1
    at = pairs.step - 2
    assert (diff[rows, at, 1] == (pairs.delta != 0)).all()
    donors = np.isin(pairs.source[rows, at, 1], ds.inputs[:, :, 1])
    assert donors.all()
    fixed = counterfactual_pairs(ds, Term("K", 0), 10, seed=3, delta=0.5)
    np.testing.assert_allclose(fixed.delta, 0.5, atol=1e-6)
    with pytest.raises(UnitprobeError, match="reaches back 10 steps"):
        counterfactual_pairs(ds, Term("K", 10), 4)


# --------------------------------------------------------------------------- sanity facts


def test_patching_every_unit_transfers_one_and_nothing_transfers_zero():
    torch.manual_seed(0)
    model = UnitLSTM(ModelConfig(2, 5, 2)).eval()
    table = interchange_table(
        model, _data(), TERMS, units=None, groups=[[], range(5)], reference="model"
    )
    everything, nothing = _transfers(table, "0+1+2+3+4"), _transfers(table, "none")
    assert list(everything.values()) == pytest.approx([1.0] * 4, abs=1e-6)
    assert list(nothing.values()) == [0.0] * 4
    assert (table["reference"] == "model").all() and (table["effect"] > 0).all()


def test_planted_units_transfer_exactly_their_own_term():
    table = interchange_table(_kx_model(), _data(), TERMS, reference="model")
    unit1, unit3, dead = (_transfers(table, u) for u in ("1", "3", "4"))
    assert unit1["K[t-1]"] == pytest.approx(1.0, abs=1e-6)
    assert unit1["K[t]"] == unit1["X[t]"] == unit1["X[t-1]"] == 0.0
    assert unit3["X[t-1]"] == pytest.approx(1.0, abs=1e-6)
    assert list(dead.values()) == [0.0] * 4  # a dead unit carries nothing
    # K[t] reaches the output through unit 0 at step s (unit 1 reads it one step later)
    assert _transfers(table, "0")["K[t]"] == pytest.approx(1.0, abs=1e-6)
    row = table[(table["units"] == "1") & (table["term"] == "K[t-1]")].iloc[0]
    assert row["transfer_lo"] <= row["transfer"] <= row["transfer_hi"]
    assert list(table.columns) == list(INTERCHANGE.columns) and row["n_pairs"] == 256


def test_a_term_the_output_ignores_has_no_transfer():
    readout = np.zeros((1, 2))
    readout[0, 0] = 10.0
    model = planted_lstm(2, [(0, 0), (1, 0)], readout=readout)
    table = interchange_table(model, _data(outputs=("a",)), ["X[t]"], reference="model")
    assert table["transfer"].isna().all() and (table["effect"] == 0).all()
    assert table["note"].str.contains("no output change").all()


def test_redundant_units_share_the_transfer():
    readout = np.zeros((1, 3))
    readout[0, 1:] = 5.0
    model = planted_lstm(2, [(1, 0), (1, 1), (1, 1)], readout=readout)
    table = interchange_table(
        model, _data(outputs=("a",)), ["X[t-1]"], groups=[[1, 2]], reference="model"
    )
    t = dict(zip(table["units"], table["transfer"], strict=True))
    assert t["1"] == pytest.approx(0.5, abs=1e-6) and t["2"] == pytest.approx(0.5, abs=1e-6)
    assert t["1+2"] == pytest.approx(1.0, abs=1e-6) and t["0"] == 0.0


def test_a_lag_chain_unit_transfers_its_lag_and_a_mixture_both_terms():
    readout = np.zeros((2, 5))
    readout[0, 2] = 10.0  # reads X[t-2]
    readout[1, 4] = 10.0  # reads 0.7 K[t] + 0.3 X[t]
    taps = [(1, 0), (1, 1), (1, 2), (0, 0), {(0, 0): 0.7, (1, 0): 0.3}]
    model = planted_lstm(2, taps, n_outputs=2, readout=readout)
    table = interchange_table(model, _data(), ["X[t-2]", "K[t]"], reference="model")
    assert _transfers(table, "2")["X[t-2]"] == pytest.approx(1.0, abs=1e-6)
    assert _transfers(table, "1")["X[t-2]"] == 0.0  # holds X[s-1], unchanged at step s
    mixture = interchange_table(model, _data(), ["K[t]", "X[t]"], units=[4], reference="model")
    assert _transfers(mixture)["K[t]"] == pytest.approx(1.0, abs=1e-6)
    # X[t] also moves output a through the chain; unit 4 carries the share of output b
    b_only = interchange_table(
        planted_lstm(2, taps, n_outputs=1, readout=readout[1:]),
        _data(outputs=("b",)),
        ["K[t]", "X[t]"],
        units=[4],
        reference="model",
    )
    assert list(_transfers(b_only).values()) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert 0.05 < _transfers(mixture)["X[t]"] < 0.15  # ~ 0.3² / (1 + 0.3²)


def test_batched_table_equals_one_intervention_per_pair():
    torch.manual_seed(1)
    model = UnitLSTM(ModelConfig(2, 4, 2, n_layers=2)).eval()
    ds = _data(n_seq=30, n_steps=8)
    table = interchange_table(
        model, ds, ["X[t-1]"], layers=1, units=[2], groups=[[0, 3]], n_pairs=20,
        reference="model", seed=5,
    )  # fmt: skip
    pairs = counterfactual_pairs(ds, Term("X", 1), 20, seed=5)
    for units in ([2], [0, 3]):
        num = den = 0.0
        for i in range(20):
            s = int(pairs.step[i])
            with torch.no_grad():
                base = run(model, pairs.base[i : i + 1])
                source = run(model, pairs.source[i : i + 1])
                edits = [
                    Intervention(st, layer=1, units=units, start=s, stop=s + 1,
                                 setter=lambda v, t, new=source.sites[st][1]: new[:, t])
                    for st in ("c", "h")
                ]  # fmt: skip
                patched = run(model, pairs.base[i : i + 1], edits)
            ref = (source.outputs - base.outputs)[0, s:].double()
            got = (patched.outputs - base.outputs)[0, s:].double()
            num, den = num + float((got * ref).sum()), den + float((ref**2).sum())
        label = "+".join(map(str, units))
        assert _transfers(table, label)["X[t-1]"] == pytest.approx(num / den, abs=1e-5)


# --------------------------------------------------------------------------- references


def _planted_delay(ds):
    readout = np.zeros((1, 2))
    readout[0, 1] = ds.norm["U"][1] / ds.norm["Y"][1] / 0.1
    return planted_lstm(1, [(0, 0), (0, 1)], readout=readout, gain=0.1)


def test_relations_reference_reads_the_task_and_falls_back_without_one():
    ds = generate(delay(1, 10), 150, 0)
    model = _planted_delay(ds)
    table = interchange_table(model, ds, ["U[t-1]", "U[t]"], n_pairs=128)
    assert (table["reference"] == "relations").all()
    t = _transfers(table, "1")
    assert t["U[t-1]"] == pytest.approx(1.0, abs=0.05)  # the tanh squash costs a few percent
    assert _transfers(table, "0")["U[t-1]"] == 0.0
    assert (table["note"] == "").all()
    no_task = dataclasses.replace(ds, spec=None)
    fallback = interchange_table(model, no_task, ["U[t-1]"], units=[1], reference="relations")
    assert (fallback["reference"] == "model").all()
    assert fallback["note"].str.contains("model reference").all()
    assert _transfers(fallback)["U[t-1]"] == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- directions


def test_das_finds_a_rotated_direction_the_single_units_miss(rotated_kx):
    model, ds = rotated_kx, _data(n_steps=6)
    # learned on X[t-1] pairs, scored on K[t-1] pairs: the illusion guard
    d = learn_direction(model, ds, "X[t-1]", n_pairs=128, epochs=60, reference="model",
                        counterfactual_term="K[t-1]")  # fmt: skip
    assert abs(d.transfer_test) < 0.02 and "K[t-1]" in d.note
    assert d.transfer_train == pytest.approx(1.0, abs=0.02)
    held_out = direction_transfer(model, ds, d, n_pairs=64, reference="model", seed=9)
    assert held_out == pytest.approx(1.0, abs=0.02)
    assert d.best_unit_transfer == pytest.approx(0.5, abs=0.02)  # each of units 2, 3
    h = d.basis[:4, 0]
    assert abs(h[2]) > 0.3 and h[2] == pytest.approx(h[3], abs=0.05)  # along h2 + h3
    assert abs(h[0]) < 0.05 and abs(h[1]) < 0.05
    np.testing.assert_allclose(d.basis.T @ d.basis, np.eye(1), atol=1e-5)


def test_das_on_an_untrained_network_transfers_less_than_on_the_planted_one():
    ds = generate(delay(1, 8), 100, 0)
    planted = learn_direction(_planted_delay(ds), ds, "U[t-1]", n_pairs=96, epochs=40)
    torch.manual_seed(0)
    untrained = UnitLSTM(ModelConfig(1, 2, 1)).eval()
    control = learn_direction(untrained, ds, "U[t-1]", n_pairs=96, epochs=40)
    assert planted.reference == control.reference == "relations"
    assert planted.transfer_test > 0.9
    assert control.transfer_test < 0.2


def test_direction_table_is_deterministic_and_well_formed(rotated_kx):
    model, ds = rotated_kx, _data(n_seq=40, n_steps=5)
    kwargs = dict(n_pairs=48, epochs=10, reference="model", seed=4)
    first = direction_table(model, ds, ["X[t-1]", "K[t-1]"], **kwargs)
    second = direction_table(model, ds, ["X[t-1]", "K[t-1]"], **kwargs)
    for a, b in zip(first, second, strict=True):
        pd.testing.assert_frame_equal(a, b)
    directions, loadings = first
    assert list(directions.columns) == list(DIRECTIONS.columns)
    assert list(loadings.columns) == list(DIRECTION_LOADINGS.columns)
    assert len(loadings) == 2 * 8 and set(loadings["state"]) == {"h", "c"}
    t1 = interchange_table(model, ds, TERMS, n_pairs=32, reference="model", seed=2)
    t2 = interchange_table(model, ds, TERMS, n_pairs=32, reference="model", seed=2)
    pd.testing.assert_frame_equal(t1, t2)


def test_bad_arguments_are_clear_errors():
    model, ds = _kx_model(), _data()
    with pytest.raises(UnitprobeError, match="reference == 'bogus'"):
        interchange_table(model, ds, ["X[t]"], reference="bogus")
    with pytest.raises(UnitprobeError, match="unit in units == 7"):
        interchange_table(model, ds, ["X[t]"], units=[7])
    with pytest.raises(UnitprobeError, match="nothing to patch"):
        interchange_table(model, ds, ["X[t]"], units=None)
    with pytest.raises(UnitprobeError, match="k == 11"):
        learn_direction(model, ds, "X[t]", k=11)


# --------------------------------------------------------------------------- figures and CLI


def test_figures_draw_the_tables(rotated_kx):
    model, ds = rotated_kx, _data(n_seq=40, n_steps=5)
    table = interchange_table(model, ds, TERMS, groups=[[2, 3]], n_pairs=32, reference="model")
    fig = plot_interchange(table)
    assert len(fig.axes[0].texts) > 0
    directions, loadings = direction_table(
        model, ds, ["X[t-1]"], n_pairs=32, epochs=5, reference="model"
    )
    fig = plot_directions(directions, loadings)
    assert len(fig.axes) >= 2


def test_patch_command_writes_the_tables(tmp_path):
    ds = generate(delay(1, 8), 30, 0)
    path = save(tmp_path / "model.pt", _planted_delay(ds), delay(1, 8), norm=ds.norm)
    out = tmp_path / "out"
    args = [str(path), "--n-sequences", "30", "--n-pairs", "24", "--out", str(out), "-q"]
    result = CliRunner().invoke(patch, [*args, "--terms", "U[t-1]", "--no-directions"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "interchange.csv")
    assert set(table["units"].astype(str)) == {"0", "1"} and set(table["term"]) == {"U[t-1]"}
    refused = CliRunner().invoke(patch, [*args, "--terms", "U[t-1]"])
    assert refused.exit_code != 0 and "not empty" in str(refused.exception or refused.output)
    result = CliRunner().invoke(patch, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["direction_loadings.csv", "directions.csv", "interchange.csv"]
    assert set(pd.read_csv(out / "interchange.csv")["term"]) == {"U[t]", "U[t-1]"}
