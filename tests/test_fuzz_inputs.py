"""Fuzzing of user files: random task files and random CSV text.

Whatever the text, reading it (and, for a valid task, generating a few sequences; for a valid
CSV, the loaded arrays) either works or raises one of the package's own errors, never a
KeyError, IndexError, ZeroDivisionError, a pandas or numpy error, ...
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from unitprobe.errors import UnitprobeError
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.tasks import TaskSpec, generate, load_csv
from unitprobe.tasks.csvdata import read_task_file

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# ----------------------------------------------------------------------------- task files

NAMES = ["A", "B"]
numbers = st.one_of(
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0, 1e308, -1e-320, 1e400, 10**30, 2**63, -(10**400)]),
)
refs = st.builds(
    lambda n, k: f"{n}[t-{k}]" if k else f"{n}[t]", st.sampled_from(NAMES), st.integers(0, 3)
)
good_atoms = st.one_of(
    refs,
    refs,
    st.floats(-2, 2, allow_nan=False).map(lambda v: f"{v:.3g}"),
    st.sampled_from(["normal(1)", "normal(0, 0.5)", "uniform(0, 1)", "0.5", "1"]),
)
bad_atoms = st.one_of(
    numbers.map(lambda v: repr(v) if not isinstance(v, float) or math.isfinite(v) else "1e999"),
    st.sampled_from(
        [
            "uniform(1, 0)",
            "normal(-1)",
            "t",
            "A[t+1]",
            "A[2]",
            "A.real",
            "__import__('os')",
            "lambda: 0",
            "'text'",
            "[1, 2]",
            "A[t-k]",
            "Z[t]",
            "exp(1000)",
            "log(0)",
            "sqrt(-1)",
            "1/0",
            "0**-1",
            "(-8)**(1/3)",
            "10**400",
            "min(1)",
            "abs(A[t-1], 2)",
            "",
        ]
    ),
)
atoms = st.one_of(good_atoms, good_atoms, good_atoms, bad_atoms)


def _expr(children):
    ops = st.sampled_from([" + ", " - ", " * ", " / ", " ** ", " + ", " * ", " // ", " == "])
    funcs = st.sampled_from(["abs", "tanh", "sin", "exp", "log", "sqrt", "sigmoid", "eval"])
    return st.one_of(
        st.builds(lambda a, o, b: f"({a}{o}{b})", children, ops, children),
        st.builds(lambda f, a: f"{f}({a})", funcs, children),
        st.builds(lambda a: f"-{a}", children),
        st.builds(lambda a, b: f"max({a}, {b})", children, children),
    )


expressions = st.recursive(atoms, _expr, max_leaves=5)
junk = st.recursive(
    st.one_of(numbers, st.text(max_size=12), st.booleans(), expressions),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=5,
)
#: A valid two-series task file, as plain data: the starting point of every mutation.
BASE = {
    "name": "fuzz",
    "relations": ["A[t] = 0.5*A[t-1] + normal(1)", "B[t] = A[t] - 0.2*B[t-1]"],
    "inputs": ["A", "B"],
    "predict": ["B"],
    "length": 8,
    "init": {"A": "uniform(0, 1)", "B": 0.5},
}
MUTATIONS = {
    "name": st.one_of(st.text(max_size=8), st.integers()),
    "relations": st.one_of(
        st.lists(st.builds(lambda e: f"A[t] = {e}", expressions), min_size=1, max_size=1).map(
            lambda r: [*r, BASE["relations"][1]]
        ),
        st.lists(st.builds(lambda e: f"B[t] = {e}", expressions), min_size=1, max_size=1).map(
            lambda r: [BASE["relations"][0], *r]
        ),
        st.lists(
            st.builds(
                lambda n, e: f"{n} = {e}",
                st.sampled_from(["A[t]", "B[t]", "t", "C[t-1]"]),
                expressions,
            ),
            max_size=3,
        ),
        st.just([]),
        junk,
    ),
    "inputs": st.one_of(st.lists(st.sampled_from([*NAMES, "Z", ""]), max_size=3), junk),
    "predict": st.one_of(st.lists(st.sampled_from([*NAMES, "Z"]), max_size=3), junk),
    "horizon": st.one_of(st.integers(-2, 4), junk),
    "length": st.one_of(st.integers(-1, 30), st.just(10**12), junk),
    "burn_in": st.one_of(st.integers(-1, 10), junk),
    "description": junk,
    "init": st.one_of(
        st.dictionaries(st.sampled_from(NAMES), numbers, min_size=1, max_size=2),
        st.dictionaries(st.sampled_from([*NAMES, "Z"]), junk, max_size=3),
        junk,
    ),
    "noise": st.one_of(st.dictionaries(st.sampled_from([*NAMES, "Z"]), numbers, max_size=2), junk),
    "extra": junk,
}


@st.composite
def specs(draw):
    """BASE with one or two keys replaced (often by junk) and maybe one dropped."""
    spec = dict(BASE)
    keys = ["relations"] * 6 + sorted(MUTATIONS)  # relations most often: they reach generate
    for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True)):
        spec[key] = draw(MUTATIONS[key])
    if draw(st.integers(0, 5)) == 0:
        spec.pop(draw(st.sampled_from(sorted(BASE))), None)
    return spec


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(spec: dict) -> str:
    """A small TOML writer: top-level keys, then [init] and [noise] tables when dicts."""
    lines, tables = [], []
    for key, value in spec.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        lines.append(f"[{key}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _read_and_generate(path) -> None:
    try:
        spec = read_task_file(path)
    except UnitprobeError as err:
        event(f"task refused: {type(err).__name__}: {str(err).split(':')[-1][:30]}")
        return
    event("task accepted")
    assert isinstance(spec, TaskSpec)
    assert TaskSpec.from_dict(spec.to_dict()) == spec  # what was accepted round-trips
    if spec.burn_in + spec.length + spec.horizon <= 64 and not spec.description.startswith(
        "Series observed"
    ):
        try:
            data = generate(spec, 3, 0)
        except UnitprobeError:
            event("generation refused")
            return
        event("generated")
        assert np.isfinite(data.inputs).all() and np.isfinite(data.targets).all()
        try:
            make_targets(data, default_targets(spec))
        except UnitprobeError:
            pass


@settings(FUZZ, max_examples=300)
@given(spec=specs())
@example(spec={**BASE, "init": {"A": -(10**400), "B": 0.5}})  # beyond float: OverflowError
@example(spec={**BASE, "noise": {"A": 10**400}})
@example(spec={**BASE, "horizon": 10**40})  # numpy: "maximum allowed dimension exceeded"
@example(spec={**BASE, "relations": ["A[t] = 1e999", "B[t] = A[t]"]})
def test_random_task_files_raise_only_package_errors(tmp_path, spec):
    path = tmp_path / "task.toml"
    path.write_text(to_toml(spec))
    _read_and_generate(path)


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_as_a_task_file(tmp_path, text):
    path = tmp_path / "task.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _read_and_generate(path)


# ----------------------------------------------------------------------------- CSV files

bad_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "NA",
            "nan",
            "null",
            "inf",
            "-inf",
            "1e400",
            "abc",
            "1,5",
            '"2"',
            "2020-01-01",
            "2020-13-45",
            "01/02/2020",
            "0x10",
            "1_000",
            "#",
            "\t",
            "Ω",
            "1e-400",
            "-0",
            '"',
        ]
    ),
)
good_cells = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: f"{v:.6g}"),
)
#: Mostly good headers (distinct names; ``t``/``Date`` a time column, ``s`` a sequence id).
headers = st.one_of(
    st.sampled_from(
        [["A"], ["A", "B"], ["t", "A", "B"], ["s", "t", "A"], ["Date", "A"], ["s", "A"]]
    ),
    st.lists(st.sampled_from(["A", "B", "t", "s", "Date", "", " A", "#A"]), min_size=1, max_size=4),
)


def _cell(draw, column):
    if draw(st.integers(0, 29)) == 0:
        return draw(bad_cells)
    if column == "Date":
        return f"2020-01-{draw(st.integers(1, 28)):02d}"
    if column == "s":
        return str(draw(st.integers(0, 2)))
    if column == "t":
        return str(draw(st.integers(0, 30)))
    return draw(good_cells)


@st.composite
def csv_texts(draw):
    header = draw(headers)
    sep = draw(st.sampled_from([","] * 6 + [";", "\t"]))
    rows = []
    for _ in range(draw(st.integers(0, 14))):
        n = draw(st.sampled_from([0] * 30 + [-1, 1, 2]))  # now and then a field short or extra
        cells = [_cell(draw, column) for column in header]
        cells = cells[: len(cells) + n] if n < 0 else cells + [draw(good_cells)] * n
        rows.append(sep.join(cells))
    blank = draw(st.sampled_from(["", "", "# exported from somewhere\n", "\n", "\ufeff"]))
    text = blank + "\n".join([sep.join(header), *rows]) + draw(st.sampled_from(["", "\n"]))
    return text, header


BAD_OPTIONS = {
    "series": st.one_of(
        st.lists(st.sampled_from(["A", "Z", "t", "A"]), max_size=3), st.text(max_size=3)
    ),
    "sequence_col": st.sampled_from(["A", "nope", "t"]),
    "time_col": st.sampled_from(["A", "nope", "s"]),
    "window": st.sampled_from([-1, 0, 1, 2.5, True, "3"]),
    "stride": st.sampled_from([0, -2, 0.5, "1"]),
    "fill": st.sampled_from(["zero", "", 0]),
    "sep": st.sampled_from([";", "\t", "", ",,", '"', "\n", 44]),
}


@st.composite
def csv_cases(draw):
    """CSV text and mostly valid load_csv arguments for its header; now and then a bad one."""
    text, header = draw(csv_texts())
    good = {
        "window": st.integers(2, 5),
        "fill": st.sampled_from(["interpolate", "ffill", "drop"]),
    }
    if "s" in header:
        good["sequence_col"] = st.just("s")
    times = [c for c in ("t", "Date") if c in header]
    if times:
        good["time_col"] = st.sampled_from(times)
    series = [c for c in ("A", "B") if c in header]
    if series:
        good["series"] = st.lists(st.sampled_from(series), min_size=1, max_size=2, unique=True)
    keys = draw(st.lists(st.sampled_from(sorted(good)), max_size=3, unique=True))
    options = {key: draw(good[key]) for key in keys}
    if "window" in options and draw(st.booleans()):
        options["stride"] = draw(st.integers(1, 3))
    if draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(sorted(BAD_OPTIONS)))
        options[key] = draw(BAD_OPTIONS[key])
    return text, options


def _load(path, options) -> None:
    try:
        data = load_csv(path, **options)
    except UnitprobeError as err:
        event(f"CSV refused: {str(err).replace(str(path), 'PATH')[:50]}")
        return
    event("CSV loaded")
    assert data.inputs.ndim == 3 and data.inputs.shape[0] >= 1 and data.inputs.shape[1] >= 1
    assert np.isfinite(data.inputs).all() and np.isfinite(data.targets).all()
    assert data.inputs.shape[:2] == data.targets.shape[:2]
    assert len(data.sequence_ids) == data.n_sequences


@FUZZ
@given(case=csv_cases())
def test_random_csv_files_raise_only_package_errors(tmp_path, case):
    text, options = case
    path = tmp_path / "data.csv"
    path.write_text(text, encoding="utf-8")
    _load(path, options)


@FUZZ
@given(data=st.binary(max_size=200), options=csv_cases().map(lambda case: case[1]))
def test_random_bytes_as_a_csv_file(tmp_path, data, options):
    path = tmp_path / "data.csv"
    path.write_bytes(data)
    _load(path, options)


def test_generated_csv_cases_include_loadable_files(tmp_path):
    """The CSV grammar is not all garbage: a plain file of it loads."""
    path = tmp_path / "ok.csv"
    path.write_text("A,B\n1,2\n3,4\n5,6\n")
    assert load_csv(path).inputs.shape == (1, 2, 2)
