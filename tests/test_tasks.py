"""Tests of task specs, generation, normalization, presets, residual checks and CSV loading."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pandas as pd
import pytest

from unitprobe.errors import DataError, TaskSpecError
from unitprobe.tasks import (
    MAX_GENERATED_VALUES,
    PRESETS,
    SEED_ANSWER,
    SEED_ANSWER_NOTE,
    DataSource,
    TaskSpec,
    baseline_mse,
    check_summary,
    data_task,
    dataset_for,
    dataset_from_raw,
    generate,
    get_preset,
    load_csv,
    parse_series_arg,
    relation_residuals,
    require_sequences,
    training_dataset,
)


def seed_spec(**changes) -> TaskSpec:
    return dataclasses.replace(get_preset("seed"), **changes)


def r2_matrix(columns: list[np.ndarray]) -> np.ndarray:
    return np.corrcoef(np.stack([c.ravel() for c in columns])) ** 2


# ------------------------------------------------------------------------------------------
# TaskSpec
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"length": 0}, "length == 0, must be an integer in [1, 10,000,000]"),
        ({"horizon": -1}, "horizon == -1, must be an integer in [0, 10,000,000]"),
        ({"burn_in": 1.5}, "burn_in == 1.5"),
        ({"inputs": ["K", "Z"]}, "inputs names unknown series ['Z']; known series: X, K"),
        ({"predict": []}, "predict is empty"),
        ({"inputs": ["K", "K"]}, "inputs lists ['K'] more than once"),
        (
            {"init": {"X": [0.0, 1.0]}},
            "series 'K' needs 1 initial value (its relation reaches back to t-1), got 0",
        ),
        ({"init": {"X": [0, 1, 2], "K": 0}}, "series 'X' needs 2 initial values"),
        ({"init": {"X": 0, "K": 0, "Q": 1}}, "init names unknown series ['Q']"),
        ({"init": {"X": "uniform(0, K[t])", "K": 0}}, "init['X'][0]"),
        ({"init": {"X": "log(-1)", "K": 0}}, "is not finite"),
        ({"init": {"X": float("nan"), "K": 0}}, "must be finite"),
        ({"noise": {"K": -0.1}}, "noise['K'] == -0.1, must be a finite number >= 0"),
        ({"noise": {"Q": 0.1}}, "observation noise applies to inputs only"),
        ({"relations": ["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + Y[t]"]}, "unknown series 'Y'"),
        ({"name": ""}, "name == ''"),
    ],
)
def test_spec_validation_messages(changes, message):
    with pytest.raises(TaskSpecError) as info:
        seed_spec(**changes)
    assert message in str(info.value)


def test_spec_normalizes_init_and_derives_steps():
    spec = seed_spec(init={"X": 0.5, "K": ["uniform(0, 1)"]})
    assert spec.init == {"X": [0.5, 0.5], "K": ["uniform(0, 1)"]}
    assert spec.init_steps == {"X": 2, "K": 1}
    assert spec.series == ("X", "K")
    assert [r.name for r in dataclasses.replace(spec, relations=spec.relations[::-1]).system] == [
        "X",
        "K",
    ]


@pytest.mark.parametrize("name", [*PRESETS, "delay-9"])
def test_spec_round_trips_through_plain_data_and_toml(name, tmp_path):
    spec = get_preset(name)
    data = spec.to_dict()
    assert json.loads(json.dumps(data)) == data  # plain data only
    assert TaskSpec.from_dict(data) == spec
    path = tmp_path / "spec.toml"
    path.write_text(spec.to_toml())
    assert TaskSpec.from_toml(path) == spec


def test_from_toml_example_and_errors(tmp_path):
    good = tmp_path / "task.toml"
    good.write_text(
        'name = "my-task"\n'
        'relations = ["X[t] = X[t-1] + X[t-2]", "K[t] = K[t-1] + 2*X[t] + 1"]\n'
        'inputs = ["K", "X"]\npredict = ["K", "X"]\nlength = 20\n'
        '[init]\nX = ["uniform(0, 1)", "uniform(0, 1)"]\nK = ["uniform(0, 1)"]\n'
    )
    spec = TaskSpec.from_toml(good)
    assert spec.horizon == 1 and spec.length == 20 and spec.inputs == ["K", "X"]
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nlength = = 3\n')
    with pytest.raises(TaskSpecError, match=r"bad\.toml' is not valid TOML.*line 2"):
        TaskSpec.from_toml(bad)
    with pytest.raises(TaskSpecError, match="nope.toml' not found"):
        TaskSpec.from_toml(tmp_path / "nope.toml")
    invalid = tmp_path / "invalid.toml"
    invalid.write_text(good.read_text().replace("length = 20", "length = 0"))
    with pytest.raises(TaskSpecError, match=r"invalid\.toml': length == 0"):
        TaskSpec.from_toml(invalid)
    with pytest.raises(TaskSpecError, match=r"unknown task spec keys \['lenght'\]"):
        TaskSpec.from_dict({**spec.to_dict(), "lenght": 3})
    with pytest.raises(TaskSpecError, match=r"missing required keys \['length'\]"):
        TaskSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "length"})


# ------------------------------------------------------------------------------------------
# generation and normalization
# ------------------------------------------------------------------------------------------


def test_generate_shapes_types_and_determinism():
    spec = get_preset("seed")
    ds = generate(spec, n_sequences=16, seed=3)
    assert ds.inputs.shape == (16, 20, 2) and ds.inputs.dtype == np.float32
    assert ds.targets.shape == (16, 20, 2) and ds.targets.dtype == np.float32
    assert ds.raw["K"].shape == (16, 20) and ds.raw["K"].dtype == np.float64
    assert ds.raw_future["K"].shape == (16, 1)
    assert ds.sequence_ids.tolist() == list(range(16)) and ds.sequence_ids.dtype == np.int64
    assert ds.input_names == ("K", "X") and ds.output_names == ("K", "X")
    assert (ds.n_sequences, ds.length, ds.horizon) == (16, 20, 1)
    again = generate(spec, n_sequences=16, seed=3)
    other = generate(spec, n_sequences=16, seed=4)
    for a, b in [
        (ds.inputs, again.inputs),
        (ds.targets, again.targets),
        (ds.raw["K"], again.raw["K"]),
    ]:
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(ds.raw["X"], other.raw["X"])
    with pytest.raises(TaskSpecError, match="n_sequences == 0"):
        generate(spec, 0, 0)


def test_generate_refuses_a_request_over_the_size_cap_before_allocating():
    spec = seed_spec(length=1000)  # 1001 steps x 2 series
    huge = MAX_GENERATED_VALUES // 2000 + 1
    with pytest.raises(TaskSpecError) as err:
        generate(spec, huge, 0)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"task 'seed' asks for {huge} sequences x 1001 steps (burn_in + length + horizon) x 2 "
        f"series = {huge * 2002:.3g} values, more than {MAX_GENERATED_VALUES:.3g}; "
        "use fewer or shorter sequences"
    )
    with pytest.raises(
        TaskSpecError, match=f"more than {MAX_GENERATED_VALUES:.3g}".replace("+", "\\+")
    ):
        generate(seed_spec(), 10**9, 0)
    assert generate(seed_spec(length=100), 2, 0).n_sequences == 2


def test_dataset_for_generates_or_reads_and_refuses_a_data_task_without_data(tmp_path):
    spec = get_preset("fibonacci")
    generated = dataset_for(spec, None, 4, 3)
    np.testing.assert_array_equal(generated.inputs, generate(spec, 4, 3).inputs)
    (tmp_path / "k.csv").write_text("K\n" + "".join(f"{k}\n" for k in range(30)))
    source = DataSource(tmp_path / "k.csv", window=10, stride=10)
    read = dataset_for(spec, source, 4, 3)
    assert read.n_sequences == 3 and read.raw_full("K")[1, 0] == 10
    observed = data_task("obs", ["K"])
    with pytest.raises(DataError, match="'obs' is a data task: its series \\(K\\) are observed"):
        dataset_for(observed, None, 4, 0)
    learned = training_dataset(None, source, 4, 0)
    assert learned.spec.name == "k" and learned.input_names == ("K",)


def test_require_sequences_says_how_to_get_more():
    data = generate(seed_spec(), 3, 0)
    require_sequences(data, 3, "probes", from_csv=False)
    with pytest.raises(DataError, match="the data have 3 sequences; probes need at least 5: use"):
        require_sequences(data, 5, "probes", from_csv=False)
    with pytest.raises(DataError, match="cut the CSV's series into windows with --window"):
        require_sequences(data.subset([0]), 2, "training", from_csv=True)


@pytest.mark.parametrize("name", ["seed", "fibonacci", "delay-3"])
def test_generated_sequences_satisfy_their_relations_exactly(name):
    spec = get_preset(name)
    ds = generate(spec, n_sequences=50, seed=0)
    table = check_summary(relation_residuals(spec, ds)).set_index("series")
    for rel in spec.system:
        if rel.expr.has_random:
            continue
        row = table.loc[rel.name]
        assert row["ok"], row
        assert row["n_steps"] == 50 * (spec.length + spec.horizon - rel.order)
    # inits: the first values are the uniform(0, 1) draws
    if name != "delay-3":
        first = ds.raw[spec.series[0]][:, 0]
        assert 0 <= first.min() and first.max() <= 1


def test_random_relation_residuals_are_the_innovations():
    spec = get_preset("ar2")
    ds = generate(spec, n_sequences=400, seed=1)
    res = relation_residuals(spec, ds)["residual"].to_numpy()
    assert res.size == 400 * 29  # 31 kept steps (30 + horizon), the first 2 lack lags
    assert abs(res.mean()) < 0.02 and abs(res.std() - 1) < 0.02
    # stationary AR(2) variance, a1 = 0.6, a2 = -0.3: (1 - a2) / ((1 + a2)((1 - a2)^2 - a1^2))
    var = 1.3 / (0.7 * (1.3**2 - 0.6**2))
    assert abs(ds.raw["X"].var() / var - 1) < 0.05


def test_normalized_relation_has_the_coefficients_predicted_by_the_maps():
    ds = generate(get_preset("seed"), n_sequences=64, seed=2)
    mk, sk = ds.norm["K"]
    mx, sx = ds.norm["X"]
    zk, zx = ds.series["K"], ds.series["X"]
    design = np.column_stack([zk[:, :-1].ravel(), zx[:, 1:].ravel(), np.ones(zk[:, 1:].size)])
    coef, *_ = np.linalg.lstsq(design, zk[:, 1:].ravel(), rcond=None)
    predicted = np.array([1.0, 2 * sx / sk, (2 * mx + 1) / sk])
    np.testing.assert_allclose(coef, predicted, rtol=1e-7, atol=1e-9)
    # and X: zX[t] = zX[t-1] + zX[t-2] + mX / sX
    design = np.column_stack([zx[:, 1:-1].ravel(), zx[:, :-2].ravel(), np.ones(zx[:, 2:].size)])
    coef, *_ = np.linalg.lstsq(design, zx[:, 2:].ravel(), rcond=None)
    np.testing.assert_allclose(coef, [1.0, 1.0, mx / sx], rtol=1e-7, atol=1e-9)


def test_normalization_is_one_affine_map_per_series_and_targets_align():
    ds = generate(get_preset("seed"), n_sequences=32, seed=5)
    for name in ("K", "X"):
        full = ds.normalize(name, ds.raw_full(name))
        assert abs(full.mean()) < 1e-12 and abs(full.std() - 1) < 1e-12
        np.testing.assert_allclose(
            ds.denormalize(name, ds.series[name]), ds.raw[name], rtol=1e-12, atol=1e-9
        )
        o = ds.output_names.index(name)
        np.testing.assert_allclose(ds.targets[:, :-1, o], ds.series[name][:, 1:], atol=1e-6)
        np.testing.assert_allclose(ds.targets[:, -1, o], full[:, -1], atol=1e-6)
        np.testing.assert_allclose(
            ds.inputs[..., ds.input_names.index(name)], ds.series[name], atol=1e-6
        )
    const = dataset_from_raw({"C": np.full((2, 4), 7.0)}, inputs=["C"], predict=["C"])
    assert const.norm["C"] == (7.0, 1.0) and np.all(const.series["C"] == 0)


def test_observation_noise_applies_to_inputs_only():
    ds = generate(get_preset("seed-noisy"), n_sequences=200, seed=0)
    for f, name in enumerate(ds.input_names):
        diff = ds.inputs[..., f] - ds.series[name]
        assert abs(diff.std() - 0.05) < 0.002
    o = ds.output_names.index("K")
    np.testing.assert_allclose(ds.targets[:, :-1, o], ds.series["K"][:, 1:], atol=1e-6)


def test_burn_in_discards_the_first_steps_of_the_same_stream():
    spec = get_preset("ar2")
    no_burn = dataclasses.replace(spec, burn_in=0, length=spec.length + spec.burn_in)
    a, b = generate(spec, 10, seed=7), generate(no_burn, 10, seed=7)
    np.testing.assert_array_equal(a.raw["X"], b.raw["X"][:, spec.burn_in :])


def test_overflow_and_nan_raise_taskspec_errors():
    spec = TaskSpec(
        name="blowup",
        relations=["K[t] = K[t-1]**2 + K[t-1]"],
        init={"K": 1.0},
        inputs=["K"],
        predict=["K"],
        length=200,
    )
    with pytest.raises(TaskSpecError, match=r"series 'K' overflows float32 at step 8 \(\|K\| = "):
        generate(spec, 4, seed=0)
    nan_spec = dataclasses.replace(spec, relations=["K[t] = log(K[t-1] - 3)"])
    with pytest.raises(TaskSpecError, match="series 'K' becomes NaN at step 1"):
        generate(nan_spec, 4, seed=0)


def test_subset_and_baseline_mse():
    ds = generate(get_preset("seed"), n_sequences=20, seed=0)
    sub = ds.subset([3, 5])
    np.testing.assert_array_equal(sub.inputs, ds.inputs[[3, 5]])
    assert sub.sequence_ids.tolist() == [3, 5] and sub.norm == ds.norm
    assert ds.subset(np.arange(20) < 4).n_sequences == 4
    per = baseline_mse(ds, per_output=True)
    for name in ("K", "X"):
        z = ds.series[name].astype(np.float32)
        y = ds.targets[..., ds.output_names.index(name)]
        want = np.mean((y.astype(float) - z.astype(float)) ** 2)
        assert per[name] == pytest.approx(want, rel=1e-9)
    assert baseline_mse(ds) == pytest.approx(np.mean(list(per.values())), rel=1e-9)
    # a delay task's target is not an input: the baseline predicts the mean, MSE = var = 1
    assert baseline_mse(generate(get_preset("delay-2"), 50, 0)) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------------------
# presets and the seed answer
# ------------------------------------------------------------------------------------------


def test_presets_registry():
    assert {"fibonacci", "seed", "seed-noisy", "seed-innov", "ar2", "delay-1", "delay-4"} <= set(
        PRESETS
    )
    d7 = get_preset("delay-7")
    assert d7.relations == ["U[t] = normal(1)", "Y[t] = U[t-7]"] and d7.horizon == 0
    assert d7.init_steps == {"U": 0, "Y": 7}
    with pytest.raises(TaskSpecError, match="unknown task 'nope'; available: fibonacci, seed"):
        get_preset("nope")
    with pytest.raises(TaskSpecError):
        get_preset("delay-0")
    ds = generate(get_preset("delay-3"), 5, 0)
    np.testing.assert_array_equal(ds.raw["Y"][:, 3:], ds.raw["U"][:, :-3])
    assert np.all(ds.raw["Y"][:, :3] == 0)


def test_seed_relations_make_their_terms_collinear():
    ds = generate(get_preset("seed"), n_sequences=500, seed=0)
    K, X = ds.raw["K"], ds.raw["X"]
    r2 = r2_matrix([K[:, 2:], K[:, 1:-1], X[:, 2:], X[:, 1:-1]])
    assert r2.min() > 0.999  # measured: min r^2 = 0.99998 (seed 0, 500 sequences)


def test_seed_innov_terms_are_separable_and_stable():
    ds = generate(get_preset("seed-innov"), n_sequences=500, seed=0)
    K, X = ds.raw["K"], ds.raw["X"]
    r2 = r2_matrix([K[:, 1:], K[:, :-1], X[:, 1:], X[:, :-1]])
    off = r2[~np.eye(4, dtype=bool)]
    assert off.max() < 0.8  # measured: max pairwise r^2 = 0.54
    assert np.abs(K).max() < 20 and np.abs(X).max() < 20


def test_seed_answer_numbers_fail_their_own_relations():
    df = relation_residuals(get_preset("seed"), SEED_ANSWER)
    summary = check_summary(df).set_index("series")
    assert not summary.loc["X", "ok"] and summary.loc["X", "first_failing_step"] == 2
    assert not summary.loc["K", "ok"] and summary.loc["K", "first_failing_step"] == 1
    x2 = df[(df.series == "X") & (df.step == 2)].iloc[0]
    assert (x2.expected, x2.observed, x2.residual) == (5.0, 7.0, 2.0)
    k1 = df[(df.series == "K") & (df.step == 1)].iloc[0]
    assert (k1.expected, k1.observed, k1.residual) == (9.0, 1.0, -8.0)
    assert df[df.series == "K"].step.tolist() == [1, 2, 3, 4]  # K[5] needs the missing X[5]
    assert df[df.series == "X"].residual.tolist() == [2.0, 1.0, 11.0]
    fib = check_summary(relation_residuals(["K[t] = K[t-1] + K[t-2]"], SEED_ANSWER))
    assert fib.ok.all() and fib.n_steps.tolist() == [4]
    assert "5, not 7" in SEED_ANSWER_NOTE and "9, not 1" in SEED_ANSWER_NOTE


def test_residual_check_inputs_and_series_args():
    assert parse_series_arg("K=0,1,1,2")[0] == "K"
    np.testing.assert_array_equal(parse_series_arg(" X = 1, 4,7 ")[1], [1.0, 4.0, 7.0])
    for bad, msg in [
        ("K", "must look like"),
        ("1K=1", "identifier"),
        ("K=1,a", "'a'"),
        ("K=", "no values"),
    ]:
        with pytest.raises(DataError, match=msg):
            parse_series_arg(bad)
    with pytest.raises(DataError, match=r"needs series \['X'\]"):
        relation_residuals(["K[t] = K[t-1] + X[t]"], {"K": [1, 2, 3]})
    two_d = relation_residuals("K[t] = K[t-1] + 1", {"K": np.array([[0, 1, 2], [5, 6, 8]])})
    assert two_d.sequence.tolist() == [0, 0, 1, 1] and two_d.residual.tolist() == [0, 0, 0, 1]
    noisy = relation_residuals("K[t] = K[t-1] + normal(2, 1)", {"K": [0.0, 2.0, 5.0]})
    assert noisy.expected.tolist() == [2.0, 4.0]  # random terms at their mean


# ------------------------------------------------------------------------------------------
# CSV
# ------------------------------------------------------------------------------------------


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_csv_round_trips_generated_data(tmp_path):
    spec = get_preset("seed")
    ds = generate(spec, n_sequences=6, seed=0)
    rows = []
    for i in range(6):
        for t in range(21):
            rows.append(
                {"seq": 10 + i, "time": t, "K": ds.raw_full("K")[i, t], "X": ds.raw_full("X")[i, t]}
            )
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # shuffled rows
    frame = frame.sort_values("seq", kind="stable")  # sequences in order, times shuffled
    path = tmp_path / "seed.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    loaded = load_csv(path, spec, sequence_col="seq", time_col="time")
    assert loaded.sequence_ids.tolist() == list(range(10, 16))
    assert loaded.spec.length == 20
    np.testing.assert_array_equal(loaded.raw["K"], ds.raw["K"])
    np.testing.assert_array_equal(loaded.targets, ds.targets)
    assert loaded.norm.keys() == ds.norm.keys()
    for name, (shift, scale) in ds.norm.items():
        assert loaded.norm[name] == pytest.approx((shift, scale))
    summary = check_summary(relation_residuals(spec, loaded))
    assert summary.ok.all()


def test_load_csv_without_spec_windows_and_stride(tmp_path):
    path = write(tmp_path, "A,B\n" + "".join(f"{i},{2 * i}\n" for i in range(10)))
    one = load_csv(path)
    assert one.inputs.shape == (1, 9, 2) and one.spec is None and one.horizon == 1
    assert one.input_names == ("A", "B") and one.output_names == ("A", "B")
    win = load_csv(path, window=4)
    assert win.n_sequences == 2 and win.raw["A"].tolist() == [[0, 1, 2], [4, 5, 6]]
    over = load_csv(path, series=["B"], window=4, stride=2)
    assert over.n_sequences == 4 and over.raw_full("B")[:, 0].tolist() == [0, 4, 8, 12]
    assert over.input_names == ("B",)
    with pytest.raises(DataError, match="window == 1, must be an integer >= horizon \\+ 1 = 2"):
        load_csv(path, window=1)
    with pytest.raises(DataError, match="sequence 0 has 10 steps, shorter than window == 11"):
        load_csv(path, window=11)


def test_load_csv_fills_gaps(tmp_path):
    path = write(tmp_path, "s,A\n1,1\n1,\n1,NA\n1,7\n2,\n2,5\n2,6\n2,\n")
    with pytest.raises(DataError, match="missing value in column 'A' at line 3 .*fill="):
        load_csv(path, sequence_col="s")
    interp = load_csv(path, sequence_col="s", fill="interpolate")
    assert interp.raw_full("A").tolist() == [[1, 3, 5, 7], [5, 5, 6, 6]]
    with pytest.raises(
        DataError, match=r"column 'A' of sequence 2: it starts with a missing value \(line 6\)"
    ):
        load_csv(path, sequence_col="s", fill="ffill")
    ok = write(tmp_path, "s,A\n1,1\n1,\n1,NA\n1,7\n2,4\n2,5\n2,\n2,\n", "ok.csv")
    assert load_csv(ok, sequence_col="s", fill="ffill").raw_full("A").tolist() == [
        [1, 1, 1, 7],
        [4, 5, 5, 5],
    ]


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, "is empty"),
        ("K;X\n1;2\n3;4\n", {}, "looks ';'-delimited"),
        ("K\tX\n1\t2\n", {}, "looks '\\\\t'-delimited"),
        ("K,K\n1,2\n3,4\n", {}, r"duplicate column names \['K'\]"),
        ("K,X\n1,2\n3,abc\n", {}, "non-numeric value 'abc' in column 'X' at line 3"),
        ("K,X\n", {}, "no data rows"),
        ("K,X\n1,2\n", {}, "sequence 0 has 1 step, needs at least horizon \\+ 1 = 2"),
        ("K,X\n1,2\n2,3\n", {"series": ["K", "Z"]}, r"lacks columns \['Z'\]; available"),
        ("s,K\n1,1\n1,2\n2,1\n2,2\n2,3\n", {"sequence_col": "s"}, "different lengths"),
        ("s,K\n1,1\n1,2\n3,1\n", {"sequence_col": "s"}, "sequence 3 has 1 step, needs at least"),
        ("s,K\n1,1\n1,2\n", {"time_col": "time"}, "time_col 'time' is not a column"),
        ("t,K\n1,1\n1,2\n", {"time_col": "t"}, "appears twice"),
        ("K,X\n1,2\n", {"fill": "zero"}, "fill == 'zero'"),
    ],
)
def test_load_csv_errors(tmp_path, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=message):
        load_csv(path, **kwargs)


def test_load_csv_spec_needs_its_columns_and_missing_file(tmp_path):
    path = write(tmp_path, "K,Z\n1,2\n2,3\n")
    with pytest.raises(
        DataError, match=r"lacks the columns \['X'\] .* available columns: \['K', 'Z'\]"
    ):
        load_csv(path, get_preset("seed"))
    with pytest.raises(DataError, match="not found"):
        load_csv(tmp_path / "missing.csv")


def test_load_csv_is_fast_on_many_rows(tmp_path):
    rng = np.random.default_rng(0)
    n_seq, n_steps = 500, 40
    frame = pd.DataFrame(
        {
            "id": np.repeat(np.arange(n_seq), n_steps),
            "t": np.tile(np.arange(n_steps), n_seq),
            "U": rng.normal(size=n_seq * n_steps),
        }
    )
    frame["Y"] = frame.groupby("id")["U"].shift(2).fillna(0.0)
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    start = time.perf_counter()
    ds = load_csv(path, get_preset("delay-2"), sequence_col="id", time_col="t")
    assert time.perf_counter() - start < 3.0
    assert ds.inputs.shape == (500, 40, 1) and ds.horizon == 0
    assert check_summary(relation_residuals(["Y[t] = U[t-2]"], ds)).ok.all()


def test_rows_of_one_sequence_id_form_one_sequence_wherever_they_sit(tmp_path):
    # blocks a, b, a, b: two sequences of 6 steps, each in file order, not four of 3
    rows = [("a", 0), ("a", 1), ("a", 2), ("b", 10), ("b", 11), ("b", 12),
            ("a", 3), ("a", 4), ("a", 5), ("b", 13), ("b", 14), ("b", 15)]  # fmt: skip
    path = write(tmp_path, "s,A\n" + "".join(f"{s},{v}\n" for s, v in rows))
    loaded = load_csv(path, sequence_col="s")
    assert loaded.n_sequences == 2 and loaded.inputs.shape[1] == 5  # 6 values, horizon 1
    assert loaded.raw_full("A").tolist() == [[0, 1, 2, 3, 4, 5], [10, 11, 12, 13, 14, 15]]
