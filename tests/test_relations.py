"""Tests of the relation language: parsing, safety, evaluation."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unitprobe.errors import TaskSpecError
from unitprobe.tasks.relations import (
    BinOp,
    Const,
    Random,
    Ref,
    parse_expression,
    parse_relation,
    parse_system,
)

SERIES = ["K", "X"]

# (text, the offending part the message must quote)
HOSTILE_EXPRESSIONS = [
    ("__import__('os').system('ls')", "__import__('os').system"),
    ("K.__class__", "K.__class__"),
    ("K[t+1]", "K[t+1]"),
    ("K[t-1.5]", "K[t-1.5]"),
    ("K[2]", "K[2]"),
    ("K[t-n]", "K[t-n]"),
    ("Y[t-1]", "Y[t-1]"),
    ("K[t-1] +", "K[t-1] +"),
    ("(K[t-1]", "(K[t-1]"),
    ("lambda: 1", "lambda: 1"),
    ('"a"', '"a"'),
    ("K[t-1] if 1 else 2", "K[t-1] if 1 else 2"),
    ("open('x')", "open('x')"),
    ("2**10**10", "2**10**10"),
    ("K[t-1] < 2", "K[t-1] < 2"),
    ("tanh(x=K[t])", "tanh(x=K[t])"),
    ("K[t-1] // 2", "K[t-1] // 2"),
    ("normal(K[t-1])", "K[t-1]"),
    ("K[t-True]", "K[t-True]"),
    ("K", "'K'"),
    ("[K[t]]", "[K[t]]"),
    ("K[t-1] and X[t]", "K[t-1] and X[t]"),
    ("1e400", "1e400"),
    ("min(K[t])", "min(K[t])"),
    ("(1j)", "1j"),
    ("K[t-1][0]", "K[t-1][0]"),
    ("normal(-1)", "normal(-1)"),
]


@pytest.mark.parametrize(("text", "quoted"), HOSTILE_EXPRESSIONS)
def test_hostile_expressions_are_refused_with_the_text_quoted(text, quoted):
    start = time.perf_counter()
    with pytest.raises(TaskSpecError) as info:
        parse_expression(text, SERIES)
    assert time.perf_counter() - start < 1.0
    assert quoted in str(info.value)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("K[t] = K[t]", "K[t] -> K[t]"),
        ("", "empty"),
        ("K[t-1] + 1", "has no '='"),
        ("K[t-1] = K[t-2]", "K[t-1]"),
        ("K[t] = = 1", "more than one"),
        ("K[t] == K[t-1]", "K[t] == K[t-1]"),
        ("K.x[t] = 1", "K.x[t]"),
        ("Y[t] = K[t-1]", "unknown series 'Y'"),
        ("K[t] = K[t-1] +", "K[t-1] +"),
        ("tanh[t] = 1", "tanh[t]"),
    ],
)
def test_malformed_relations_are_refused(text, quoted):
    with pytest.raises(TaskSpecError) as info:
        parse_relation(text, SERIES)
    assert quoted in str(info.value)


def test_unknown_series_message_lists_known_series():
    with pytest.raises(
        TaskSpecError, match=r"unknown series 'Y' in 'Y\[t-1\]'; known series: K, X"
    ):
        parse_expression("K[t-1] + Y[t-1]", SERIES)


def test_deep_nesting_and_long_text_are_refused_quickly():
    for text in ["-" * 100_000 + "1", "(" * 5000 + "1" + ")" * 5000, "1+" * 4000 + "1"]:
        with pytest.raises(TaskSpecError):
            parse_expression(text, SERIES)
    with pytest.raises(TaskSpecError, match="nested deeper"):
        parse_expression("-" * 300 + "K[t]", SERIES)


def test_parse_structure_and_properties():
    expr = parse_expression("K[t-1] + 2*X[t] + 1", SERIES)
    assert expr == BinOp(
        "+", BinOp("+", Ref("K", 1), BinOp("*", Const(2.0), Ref("X", 0))), Const(1)
    )
    assert expr.references == {("K", 1), ("X", 0)}
    assert expr.max_lag == 1
    assert not expr.has_random
    assert expr.is_linear()
    assert expr.linear_terms() == ({("K", 1): 1.0, ("X", 0): 2.0}, 1.0)
    assert str(expr) == "K[t-1] + 2*X[t] + 1"

    noisy = parse_expression("0.5*X[t-1] - 0.3*X[t-2] + normal(2, 0.5)", SERIES)
    assert noisy.has_random and noisy.max_lag == 2
    assert noisy.linear_terms() == ({("X", 1): 0.5, ("X", 2): -0.3}, 2.0)
    assert str(noisy.without_random()) == "0.5*X[t-1] - 0.3*X[t-2]"
    assert parse_expression("normal(1)", SERIES).without_random() is None
    assert not parse_expression("K[t-1]*X[t]", SERIES).is_linear()
    assert not parse_expression("tanh(K[t-1])", SERIES).is_linear()
    rnd = parse_expression("uniform(-1, 3)", SERIES)
    assert isinstance(rnd, Random) and rnd.params == (-1.0, 3.0) and rnd.mean == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "K[t-1] + 2*X[t] + 1",
        "-(K[t-1] - X[t]) * (X[t-2] / 3)",
        "(K[t-1]**2)**0.5 - -X[t]",
        "2**-K[t-1]",
        "K[t-1] - (X[t] - 1)",
        "sigmoid(min(K[t-1], X[t]) + max(1, 2)) / (1 + abs(X[t-1]))",
        "normal(-0.5, 2) + uniform(-1, 1e-3)",
        "exp(-K[t-3]) * log(sqrt(1 + X[t]**2))",
    ],
)
def test_canonical_text_parses_back_to_the_same_tree(text):
    expr = parse_expression(text, SERIES)
    assert parse_expression(str(expr), SERIES) == expr


def test_evaluate_vectorized_and_random_terms():
    rng = np.random.default_rng(0)
    data = {"K": rng.normal(size=(3, 6)), "X": rng.normal(size=(3, 6))}
    expr = parse_expression("K[t-1] + 2*X[t] + tanh(X[t-2]) + max(K[t-1], 0)", SERIES)

    def lookup(name, lag):
        return data[name][:, 2 - lag : 6 - lag]

    got = expr.evaluate(lookup, None, (3, 4))
    K, X = data["K"], data["X"]
    want = K[:, 1:5] + 2 * X[:, 2:6] + np.tanh(X[:, 0:4]) + np.maximum(K[:, 1:5], 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)

    noise = parse_expression("normal(3, 2)", SERIES)
    a = noise.evaluate(None, np.random.default_rng(5), (20_000,))
    b = noise.evaluate(None, np.random.default_rng(5), (20_000,))
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 3) < 0.05 and abs(a.std() - 2) < 0.05
    assert noise.evaluate(None, None, (4,)).tolist() == [3.0] * 4  # mean without rng
    u = parse_expression("uniform(-1, 1)", SERIES).evaluate(None, np.random.default_rng(1), 1000)
    assert u.min() >= -1 and u.max() <= 1
    # overflow is returned as inf, silently, for the caller to handle
    big = parse_expression("exp(K[t])", SERIES).evaluate(lambda n, k: np.array([1e4]), None, (1,))
    assert np.isinf(big[0])


def test_parse_system_orders_same_step_dependencies_and_finds_cycles():
    system = parse_system(["K[t] = K[t-1] + 2*X[t] + 1", "X[t] = X[t-1] + X[t-2]"])
    assert [r.name for r in system] == ["X", "K"]
    assert [r.order for r in system] == [2, 1]
    as_dict = parse_system({"K": "K[t-1] + 2*X[t] + 1", "X": "X[t-1] + X[t-2]"})
    assert [str(r) for r in as_dict] == [str(r) for r in system]
    with pytest.raises(TaskSpecError, match=r"cycle: A\[t\] -> B\[t\] -> A\[t\]"):
        parse_system(["A[t] = B[t]", "B[t] = A[t]"])
    with pytest.raises(TaskSpecError, match=r"cycle: A\[t\] -> C\[t\] -> B\[t\] -> A\[t\]"):
        parse_system(["A[t] = C[t] + 1", "B[t] = A[t]", "C[t] = B[t] + A[t-1]"])
    with pytest.raises(TaskSpecError, match=r"K\[t\] -> K\[t\]"):
        parse_system(["K[t] = K[t]"])
    with pytest.raises(TaskSpecError, match="more than one relation"):
        parse_system(["K[t] = 1", "K[t] = 2"])
    with pytest.raises(TaskSpecError, match="unknown series 'Y'"):
        parse_system(["K[t] = Y[t-1]"])
    assert parse_system(["K[t] = Y[t-1]"], extra_series=["Y"])[0].expr == Ref("Y", 1)
    with pytest.raises(TaskSpecError, match="no relations"):
        parse_system([])


# ------------------------------------------------------------------------------------------
# fuzzing: arbitrary text never raises anything but TaskSpecError
# ------------------------------------------------------------------------------------------

TOKENS = [
    "K", "X", "Y", "t", "[", "]", "(", ")", "+", "-", "*", "/", "**", "=", "==", ",", ".",
    "1", "2", "0.5", "1e308", "10", "t-1", "t+1", "K[t]", "X[t-1]", "K[t-2]", "tanh", "min",
    "normal", "uniform", "__import__", "lambda", ":", "'s'", "if", "else", " ", "__class__",
    "log", "exp", "sqrt", "**10**10", "[t]", "[t-", "j", "@", "%", "not", "~",
]  # fmt: skip
grammarish = st.lists(st.sampled_from(TOKENS), min_size=0, max_size=25).map("".join)
ATOMS = ["K[t]", "X[t-1]", "K[t-2]", "1", "0.5", "2", "normal(1)", "uniform(0, 1)", "1e3"]
valid_exprs = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**"]), inner).map(
            lambda p: f"({p[0]} {p[1]} {p[2]})"
        ),
        inner.map(lambda s: f"-{s}"),
        st.tuples(st.sampled_from(["tanh", "abs", "sigmoid", "exp", "log"]), inner).map(
            lambda p: f"{p[0]}({p[1]})"
        ),
        st.tuples(st.sampled_from(["min", "max"]), inner, inner).map(
            lambda p: f"{p[0]}({p[1]}, {p[2]})"
        ),
    ),
    max_leaves=10,
)
mutated_exprs = st.tuples(valid_exprs, st.integers(0, 200), st.sampled_from(TOKENS)).map(
    lambda p: p[0][: p[1]] + p[2] + p[0][p[1] :]
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _only_taskspec_errors(fn, text):
    try:
        result = fn(text)
    except TaskSpecError:
        return None
    return result


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_text_parse_expression(text):
    _only_taskspec_errors(lambda s: parse_expression(s, SERIES), text)


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_text_parse_relation(text):
    _only_taskspec_errors(lambda s: parse_relation(s, SERIES), text)


@FUZZ
@given(grammarish)
def test_fuzz_grammar_parse_expression_roundtrip_and_evaluate(text):
    expr = _only_taskspec_errors(lambda s: parse_expression(s, SERIES), text)
    if expr is None:
        return
    assert parse_expression(str(expr), SERIES) == expr
    values = expr.evaluate(lambda name, lag: np.ones(3), np.random.default_rng(0), (3,))
    assert values.shape == (3,)


@FUZZ
@given(valid_exprs)
def test_fuzz_valid_expressions_parse_roundtrip_and_evaluate(text):
    try:
        expr = parse_expression(text, SERIES)
    except TaskSpecError as exc:  # the grammar is valid; only constant overflow is refused
        assert "constant power" in str(exc)
        return
    assert parse_expression(str(expr), SERIES) == expr
    rng = np.random.default_rng(0)
    values = expr.evaluate(lambda name, lag: np.full(4, 0.5 + lag), rng, (4,))
    assert values.shape == (4,) and values.dtype == np.float64
    if not expr.has_random:  # evaluation is a pure function of the lookup
        np.testing.assert_array_equal(
            values, expr.evaluate(lambda name, lag: np.full(4, 0.5 + lag), None, (4,))
        )


@FUZZ
@given(mutated_exprs)
def test_fuzz_mutated_expressions_raise_only_taskspec_errors(text):
    _only_taskspec_errors(lambda s: parse_expression(s, SERIES), text)
    _only_taskspec_errors(lambda s: parse_relation(s, SERIES), f"K[t] = {text}")


@FUZZ
@given(grammarish, grammarish)
def test_fuzz_grammar_parse_relation(lhs, rhs):
    _only_taskspec_errors(lambda s: parse_relation(s, SERIES), f"{lhs}={rhs}")
    _only_taskspec_errors(lambda s: parse_system([s, "X[t] = X[t-1]"]), f"K[t] = {rhs}")
