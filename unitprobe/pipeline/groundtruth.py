"""Ground truth for the verdicts: networks with known contents, scored, as error rates.

Every verdict of :func:`~unitprobe.pipeline.analyze.compute_analysis` is measured on networks
whose contents are known by construction, built in different ways so that no rule is tuned to
one way of wiring:

==============  ==============================================================================
``hand-wired``  :func:`~unitprobe.model.planted.planted_lstm`: lag chains, 2-term mixtures,
                redundant copies, dead units and untrained filler in random order, widths 4 to
                256, leaky to saturated gates, one or two layers, hand-set or fitted readouts
``rotated``     hand-wired, two terms held only by a 45° rotation of two units and read
                through the inverse rotation: each unit a formula, each term ``distributed``
``masked``      trained inside a connectivity mask (:meth:`Connectivity.known_content`)
``untrained``   default initialization and a least-squares readout: learned nothing
``one-epoch``   trained for one epoch: learned nothing
``shuffled``    trained on targets permuted across sequences: learned nothing
==============  ==============================================================================

A network is a small picklable :class:`NetworkSpec` (a worker process builds it with
:func:`build_network`); :func:`evaluate_network` builds, analyzes (:func:`run_analysis`, the
one call of ``compute_analysis``) and scores one, :func:`run_benchmark` many in worker
processes; :mod:`unitprobe.pipeline.verdict_rates` scores them and gives rates with 95 %
Clopper–Pearson intervals.

What a unit must be named (``expected_kind``): ``term`` that term; ``formula`` a formula over
exactly the planted terms; ``subset`` (a masked unit reading several terms) any role whose
terms are among them (training may leave an input unused); ``none`` (a dead unit) no role;
``nothing`` (first-layer filler, every unit of a learned-nothing network) no role, any role
is a false positive. Not scored: ``unbounded`` (a masked unit with memory) and ``unknown``
(filler above the first layer, which reads what the planted units below hold).

Example
-------
>>> result = run_benchmark(benchmark_specs(quick=True), benchmark_config(), jobs=2)
>>> print(rates_markdown(result.rates))
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from unitprobe.config import AnalyzeConfig
from unitprobe.errors import UnitprobeError
from unitprobe.methods.interventions import default_terms
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import ModelConfig
from unitprobe.model.masked import Connectivity, train_masked
from unitprobe.model.planted import planted_lstm, planted_term_sets, planted_terms
from unitprobe.model.threads import torch_threads
from unitprobe.model.train import TrainConfig, init_model, train
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.pipeline.executors import one_line, run_local
from unitprobe.pipeline.nulls import fit_readout
from unitprobe.pipeline.verdict_rates import (
    LEARNED_NOTHING,
    score_terms,
    score_units,
    verdict_rates,
)
from unitprobe.tasks import TaskSpec, generate, get_preset

__all__ = [
    "FAMILIES", "BenchmarkResult", "GroundTruth", "NetworkSpec", "benchmark_config",
    "benchmark_specs", "build_network", "evaluate_network", "family_specs", "run_analysis",
    "run_benchmark", "task_spec",
]  # fmt: skip

FAMILIES = ("hand-wired", "rotated", "masked", "untrained", "one-epoch", "shuffled")
#: Networks per family: the full benchmark and ``quick``.
SIZES = {
    "full": {"hand-wired": 150, "rotated": 20, "masked": 50, "untrained": 50,
             "one-epoch": 25, "shuffled": 25},
    "quick": {"hand-wired": 8, "rotated": 2, "masked": 4, "untrained": 4,
              "one-epoch": 2, "shuffled": 2},
}  # fmt: skip
#: Sequences that fit a readout or train a network.
FIT_SEQUENCES = 256
#: Epochs of a masked network's training.
MASKED_EPOCHS = 30
#: A task with two inputs whose relations reach 3 steps back (the presets reach 2 at most).
LAG3_TASK = TaskSpec(
    name="kx-lag3",
    relations=["X[t] = 0.4*X[t-1] + 0.2*X[t-3] + normal(1)",
               "K[t] = 0.5*K[t-2] + 0.3*X[t] + normal(1)"],
    init={"X": 0.0, "K": 0.0}, inputs=["K", "X"], predict=["K", "X"], length=30, burn_in=20,
    description="Two inputs, lags up to 3: candidate terms K and X at lags 0 to 3.",
)  # fmt: skip
_LEARNED_NOTHING_TASKS = ("seed", "seed-innov", "ar2", "delay-2", "fibonacci")


@dataclass(frozen=True)
class NetworkSpec:
    """One network, as plain data: ``name``, ``family`` (:data:`FAMILIES`), ``task`` (a
    preset or ``"kx-lag3"``), ``seed`` (of its data and weights); hand-wired families: the
    ``taps`` per layer, ``readout`` (hand-set weights of shape (n_outputs, n_units); None:
    fitted), ``gain`` and ``saturation`` of :func:`~unitprobe.model.planted.planted_lstm`;
    ``masked``: ``sources`` and ``memory`` of :meth:`Connectivity.from_sources`; learned
    nothing: ``width``; trained families: ``epochs``."""

    name: str
    family: str
    task: str
    seed: int
    taps: tuple = ()
    readout: tuple | None = None
    gain: float = 0.1
    saturation: float = 30.0
    sources: tuple = ()
    memory: tuple = ()
    width: int = 0
    epochs: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """(layers, units per layer)."""
        if self.taps:
            return len(self.taps), len(self.taps[0])
        return 1, len(self.sources) or self.width


@dataclass(frozen=True)
class GroundTruth:
    """A built network (``checkpoint``: task, model, input normalization) and what it holds.

    ``units``: one row per layer x unit with ``family``, ``network``, ``layer``, ``unit``,
    ``expected_kind``, ``expected`` (the role text), ``expected_terms`` and ``redundant_with``
    (other units of the layer planted with the same term), comma-separated. ``terms``: one row
    per layer x candidate term with ``expected_verdict`` (``unit``, ``shared``,
    ``distributed``, ``nothing``: no held verdict, or ``""``: not known).
    """

    spec: NetworkSpec
    checkpoint: Checkpoint
    units: pd.DataFrame
    terms: pd.DataFrame


# ----------------------------------------------------------------------------- families


def task_spec(name: str) -> TaskSpec:
    """The task of a network: :data:`LAG3_TASK` or a preset."""
    return LAG3_TASK if name == LAG3_TASK.name else get_preset(name)


def _max_lag(task: TaskSpec) -> int:
    return max(t.lag for t in default_terms(task, task.inputs))


def family_specs(family: str, n: int, seed: int = 0) -> list[NetworkSpec]:
    """``n`` networks of one family; network ``i`` depends only on ``(seed, family, i)``."""
    if family not in FAMILIES:
        raise ValueError(f"family == {family!r}, must be one of {', '.join(FAMILIES)}")
    make = _GENERATORS.get(family, _learned_nothing)
    code = FAMILIES.index(family)
    return [make(np.random.default_rng([seed, code, i]), family, i, n) for i in range(n)]


def benchmark_specs(*, quick: bool = False, seed: int = 0) -> list[NetworkSpec]:
    """Every network of the benchmark (:data:`SIZES`), family by family."""
    sizes = SIZES["quick" if quick else "full"]
    return [s for family in FAMILIES for s in family_specs(family, sizes[family], seed)]


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _hand_wired(rng: np.random.Generator, family: str, i: int, n: int) -> NetworkSpec:
    """Random planted contents: lag chains, mixtures, copies, dead units, filler."""
    tasks = ["seed-innov", LAG3_TASK.name, "delay-3", "ar2"]
    task = str(rng.choice(tasks, p=[0.4, 0.3, 0.15, 0.15]))
    spec = task_spec(task)
    n_in, top = len(spec.inputs), _max_lag(spec)
    depth = rng.integers(0, top + 2, size=n_in)  # plain taps (f, 0) .. (f, depth - 1)
    if not depth.any():
        depth[rng.integers(n_in)] = rng.integers(1, top + 2)
    plain = [(f, lag) for f in range(n_in) for lag in range(int(depth[f]))]
    cells = [(f, 0) for f in range(n_in)] + [(f, k + 1) for f, k in plain if k < top]
    cells = sorted(set(cells))
    n_mix = int(rng.choice([0, 1, 2], p=[0.35, 0.4, 0.25])) if len(cells) >= 2 else 0
    layer = plain + [_mixture(rng, cells) for _ in range(n_mix)]
    n_copies = min(int(rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1])), len(plain))
    layer += [plain[j] for j in rng.choice(len(plain), n_copies, replace=False)]
    layer += [None] * int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
    layers = [layer]
    wide = i % 75 == 74  # two networks of 256 units in the full benchmark
    if i % 12 == 5 and not wide:  # two layers: the upper copies units below, chains them on
        layers.append(_upper_layer(rng, plain, top))
    width = int(rng.choice([4, 6, 6, 8, 8, 10, 12, 12, 16, 16]))
    if wide:
        width = 256
    elif i % 25 == 20:
        width = 64
    width = max(width, *(len(lay) + int(rng.integers(0, 3)) for lay in layers))
    taps = tuple(_shuffled(rng, lay + ["random"] * (width - len(lay))) for lay in layers)
    readout = None
    if rng.random() < 0.5:  # hand-set: random ±0.5..2 on every planted unit of the last layer
        weights = rng.choice([-1, 1], (len(spec.predict), width)) * rng.uniform(0.5, 2, width)
        live = [isinstance(t, (tuple, dict)) for t in taps[-1]]
        readout = tuple(map(tuple, np.where(live, np.round(weights, 2), 0.0).tolist()))
    gain = float(np.round(np.exp(rng.uniform(np.log(0.05), 0.0)), 2))
    saturation = 30.0 if rng.random() < 0.5 else float(np.round(rng.uniform(4, 20), 1))
    if i % 10 == 3:
        saturation = 4.0  # leaky: sigmoid(-4) of the cell carries over
    return NetworkSpec(f"{family}-{i:03d}", family, task, _seed(rng), taps=taps,
                       readout=readout, gain=gain, saturation=saturation)  # fmt: skip


def _mixture(rng: np.random.Generator, cells: list) -> dict:
    """A 2-term mixture over two of ``cells``: weights 0.6/0.4 .. 0.8/0.2, random signs."""
    a, b = (cells[j] for j in rng.choice(len(cells), 2, replace=False))
    w = float(rng.choice([0.6, 0.65, 0.7, 0.75, 0.8]))
    sa, sb = (float(s) for s in rng.choice([-1, 1], 2))
    return {a: sa * w, b: round(sb * (1 - w), 2)}


def _upper_layer(rng: np.random.Generator, plain: list, top: int) -> list:
    """Copies of some plain taps of the layer below, a lag chain on one, maybe a dead unit."""
    k = int(rng.integers(1, min(4, len(plain)) + 1))
    layer = [plain[j] for j in sorted(rng.choice(len(plain), k, replace=False))]
    f, lag = layer[int(rng.integers(k))]
    if lag < top and (f, lag + 1) not in layer and rng.random() < 0.6:
        layer.append((f, lag + 1))
    return layer + [None] * int(rng.integers(0, 2))


def _shuffled(rng: np.random.Generator, units: list) -> tuple:
    return tuple(units[j] for j in rng.permutation(len(units)))


def _rotated(rng: np.random.Generator, family: str, i: int, n: int) -> NetworkSpec:
    """K and X at one lag held only by a 45° rotation of two units, read back through its
    inverse (``tests/conftest.py``'s ``rotated_kx``, with random signs, order and filler)."""
    task = str(rng.choice(["seed-innov", LAG3_TASK.name]))
    lag, r = int(rng.integers(0, 2)), 1 / math.sqrt(2)
    s1, s2 = (float(s) for s in rng.choice([-1, 1], 2))
    plus, minus = {(1, lag): s1 * r, (0, lag): s1 * r}, {(1, lag): s2 * r, (0, lag): -s2 * r}
    units = [(0, 0), (1, 0)] * (lag == 1) + [plus, minus]
    units += [None] * int(rng.integers(0, 2))
    width = max(len(units), int(rng.choice([4, 6, 8])))
    taps = _shuffled(rng, units + ["random"] * (width - len(units)))
    a, b = rng.choice([-1, 1], 2) * rng.uniform(0.5, 2, 2)
    weights = np.zeros((2, width))
    p, m = taps.index(plus), taps.index(minus)
    weights[0, [p, m]] = a * r * s1, a * r * s2  # output 0 reads X through the inverse
    weights[1, [p, m]] = b * r * s1, -b * r * s2  # output 1 reads K
    if lag == 1 and rng.random() < 0.5:  # the lag-0 units are read too
        for f in (0, 1):
            weights[int(rng.integers(2)), taps.index((f, 0))] = rng.choice([-1, 1])
    gain = float(np.round(np.exp(rng.uniform(np.log(0.05), np.log(0.5))), 2))
    return NetworkSpec(f"{family}-{i:03d}", family, task, _seed(rng), taps=(taps,),
                       readout=tuple(map(tuple, weights.tolist())), gain=gain)  # fmt: skip


def _masked(rng: np.random.Generator, family: str, i: int, n: int) -> NetworkSpec:
    """Units reading inputs and units one step back: chains, pairs, copies, dead units, and
    sometimes a unit with memory (unbounded lags, not scored) that no unit reads."""
    if rng.random() < 0.75:
        task = str(rng.choice(["seed-innov", LAG3_TASK.name]))
        units = [["K"], [("unit", 0)], ["X"], [("unit", 2)], ["K", "X"]]
        extra = [[("unit", 1)], [("unit", 3)], [("unit", 0), "X"], ["K"], ["X"]]
        readers = [["K"], ["X"], ["K", "X"]]
    else:
        task = str(rng.choice(["delay-2", "delay-3"]))
        units = [["U"], [("unit", 0)], [("unit", 1)], ["U", ("unit", 0)]]
        units += [[("unit", 2)]] * (task == "delay-3")
        extra = [["U"], [("unit", 1), "U"]]
        readers = [["U"]]
    units += [extra[j] for j in range(len(extra)) if rng.random() < 0.3]
    units += [[]] * int(rng.choice([0, 1, 2], p=[0.5, 0.3, 0.2]))  # dead units
    width = int(rng.integers(5, 11))
    while len(units) < width:  # more readers of the current inputs
        units.append(readers[int(rng.integers(len(readers)))])
    memory = [False] * len(units)
    if rng.random() < 0.2:
        units.append(readers[0])
        memory.append(True)
    order = rng.permutation(len(units))
    where = np.argsort(order)  # old index -> new index
    sources = tuple(
        tuple(("unit", int(where[s[1]])) if isinstance(s, tuple) else s for s in units[j])
        for j in order
    )
    return NetworkSpec(f"{family}-{i:03d}", family, task, _seed(rng), sources=sources,
                       memory=tuple(memory[j] for j in order), epochs=MASKED_EPOCHS)  # fmt: skip


def _learned_nothing(rng: np.random.Generator, family: str, i: int, n: int) -> NetworkSpec:
    """A grid of tasks x widths: untrained, one epoch, or shuffled targets."""
    widths = (4, 6, 8, 16, 32) if family == "untrained" else (4, 6, 8, 16)
    task = _LEARNED_NOTHING_TASKS[i % len(_LEARNED_NOTHING_TASKS)]
    width = widths[(i // len(_LEARNED_NOTHING_TASKS)) % len(widths)]
    epochs = {"untrained": 0, "one-epoch": 1, "shuffled": TrainConfig.epochs}[family]
    return NetworkSpec(f"{family}-{i:03d}", family, task, _seed(rng), width=width,
                       epochs=epochs)  # fmt: skip


_GENERATORS: dict[str, Callable[..., NetworkSpec]] = {
    "hand-wired": _hand_wired, "rotated": _rotated, "masked": _masked,
}  # fmt: skip


# ----------------------------------------------------------------------------- building


def build_network(spec: NetworkSpec) -> GroundTruth:
    """Build the network of ``spec`` and what it holds (deterministic in ``spec``)."""
    task = task_spec(spec.task)
    data = generate(task, FIT_SEQUENCES, seed=spec.seed)
    if spec.taps:
        model = _planted(spec, data)
    elif spec.family == "masked":
        conn = _connectivity(spec, data.input_names)
        config = TrainConfig(n_units=conn.n_units, epochs=spec.epochs, seed=spec.seed)
        model = train_masked(data, conn, config, progress=False).model
    else:
        model = _learned_nothing_model(spec, data)
    checkpoint = Checkpoint(model=model.eval(), task=task, path=Path(f"{spec.name}.pt"),
                            source="state_dict", norm=data.norm)  # fmt: skip
    names = list(data.input_names)
    terms = [str(t) for t in default_terms(task, names)]
    units = _expected_units(spec, names)
    return GroundTruth(spec, checkpoint, units, _expected_terms(spec, units, terms))


def _planted(spec: NetworkSpec, data: Any) -> Any:
    readout = None if spec.readout is None else np.asarray(spec.readout)
    model = planted_lstm(
        len(data.input_names), [list(layer) for layer in spec.taps],
        n_outputs=len(data.output_names), readout=readout, gain=spec.gain,
        saturation=spec.saturation, seed=spec.seed,
    )  # fmt: skip
    return model if readout is not None else fit_readout(model, data)


def _connectivity(spec: NetworkSpec, input_names: Sequence[str]) -> Connectivity:
    sources = [list(s) for s in spec.sources]
    return Connectivity.from_sources(list(input_names), sources, memory=list(spec.memory))


def _learned_nothing_model(spec: NetworkSpec, data: Any) -> Any:
    n_in, n_out = len(data.input_names), len(data.output_names)
    if spec.family == "untrained":
        return fit_readout(init_model(ModelConfig(n_in, spec.width, n_out), spec.seed), data)
    if spec.family == "shuffled":  # nothing relates a sequence's inputs to its targets
        order = np.random.default_rng(spec.seed).permutation(data.n_sequences)
        data = dataclasses.replace(data, targets=data.targets[order])
    config = TrainConfig(n_units=spec.width, epochs=spec.epochs, seed=spec.seed)
    return train(data, config, progress=False).model


def _expected_units(spec: NetworkSpec, names: list[str]) -> pd.DataFrame:
    """One row per unit: what it must be named (module docstring)."""
    n_layers, width = spec.shape
    if spec.taps:
        taps = [list(layer) for layer in spec.taps]
        texts, sets = planted_terms(taps, names), planted_term_sets(taps, names)
        kinds = [[_planted_kind(t, s, k) for t, s in zip(lt, ls, strict=True)]
                 for k, (lt, ls) in enumerate(zip(texts, sets, strict=True))]  # fmt: skip
    elif spec.family == "masked":
        content = _connectivity(spec, names).known_content(names)
        sets = [[s or frozenset() for s in content]]
        kinds = [[_masked_kind(s) for s in content]]
        texts = [[min(s) if len(s) == 1 else None for s in sets[0]]]
    else:
        sets, kinds, texts = [[frozenset()] * width], [["nothing"] * width], [[None] * width]
    rows = []
    for k, u in np.ndindex(n_layers, width):
        kind = kinds[k][u]
        text = texts[k][u] if kind in ("term", "formula") else "none" * (kind == "none")
        twins = [v for v in range(width) if v != u and kind == kinds[k][v] == "term"
                 and texts[k][v] == text]  # fmt: skip
        rows.append({"family": spec.family, "network": spec.name, "layer": k, "unit": u,
                     "expected_kind": kind, "expected": text,
                     "expected_terms": ",".join(sorted(sets[k][u])),
                     "redundant_with": ",".join(map(str, twins))})  # fmt: skip
    return pd.DataFrame(rows)


def _planted_kind(text: str | None, terms: frozenset, layer: int) -> str:
    if text is None or text == "random":  # above the first layer, filler reads planted units
        return "none" if text is None else ("nothing" if layer == 0 else "unknown")
    return "term" if len(terms) == 1 else "formula"


def _masked_kind(terms: frozenset | None) -> str:
    return "unbounded" if terms is None else {0: "none", 1: "term"}.get(len(terms), "subset")


def _expected_terms(spec: NetworkSpec, units: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """One row per layer x candidate term: its expected verdict, where it is known.

    Known: every term of a learned-nothing network (``nothing``), the rotated terms of a
    ``rotated`` network (``distributed``), and, in a one-layer hand-wired network with a
    hand-set readout, a term that plain units hold and no mixture reads (``unit`` or
    ``shared``).
    """
    n_layers = spec.shape[0]
    expected = {(k, t): "" for k in range(n_layers) for t in terms}
    if spec.family in LEARNED_NOTHING:
        expected = dict.fromkeys(expected, "nothing")
    elif spec.family == "rotated":
        pair = units.loc[units["expected_kind"] == "formula", "expected_terms"].iloc[0]
        for t in pair.split(","):
            expected[(0, t)] = "distributed"
    elif spec.family == "hand-wired" and spec.readout is not None and n_layers == 1:
        mixed = set(",".join(units.loc[units["expected_kind"] == "formula", "expected_terms"])
                    .split(","))  # fmt: skip
        held = units.loc[units["expected_kind"] == "term", "expected"].value_counts()
        for t, count in held.items():
            if t not in mixed and (0, t) in expected:
                expected[(0, t)] = "unit" if count == 1 else "shared"
    return pd.DataFrame(
        [{"family": spec.family, "network": spec.name, "layer": k, "term": t,
          "expected_verdict": v} for (k, t), v in expected.items()]
    )  # fmt: skip


# ----------------------------------------------------------------------------- running


def benchmark_config(
    *, n_sequences: int = AnalyzeConfig.n_sequences, seed: int = 0
) -> AnalyzeConfig:
    """The analysis of the benchmark: the library defaults for every setting that decides a
    role or a verdict; fewer permutations and probe controls, which decide nothing."""
    return AnalyzeConfig.from_options(
        n_sequences=n_sequences, seed=seed, n_permutations=19, n_controls=1
    )


def run_analysis(checkpoint: Checkpoint, config: AnalyzeConfig) -> Any:
    """The analysis users run (``compute_analysis``), on one network."""
    return compute_analysis(checkpoint, config, progress=False)


def evaluate_network(
    spec: NetworkSpec, config: AnalyzeConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Build, analyze and score one network on one torch thread: its :func:`score_units` and
    :func:`score_terms` rows and a row of ``networks`` (``seconds``: build and analysis)."""
    start = time.perf_counter()
    with torch_threads(1):
        truth = build_network(spec)
        analysis = run_analysis(truth.checkpoint, config)
    units = score_units(truth.units, analysis.tables["roles"])
    terms = score_terms(truth.terms, analysis.tables["terms"])
    return units, terms, _network_row(spec, round(time.perf_counter() - start, 2), "")


def _network_row(spec: NetworkSpec, seconds: float, error: str) -> dict[str, Any]:
    n_layers, width = spec.shape
    return {"network": spec.name, "family": spec.family, "task": spec.task,
            "layers": n_layers, "units": width, "seconds": seconds, "error": error}  # fmt: skip


def _run_one(spec: NetworkSpec, runs_dir: str, *, figures: bool, config: AnalyzeConfig) -> Any:
    """:func:`evaluate_network` in the calling convention of
    :func:`~unitprobe.pipeline.executors.run_local`; a failure is returned, not raised."""
    try:
        return evaluate_network(spec, config)
    except Exception as err:  # one network's failure is reported, the others go on
        return None, None, _network_row(spec, math.nan, one_line(err))


@dataclass(frozen=True)
class BenchmarkResult:
    """Scored rows of every network (``units``, ``terms``), one row per network
    (``networks``, with the error of any that failed), the ``rates`` and the wall time."""

    units: pd.DataFrame
    terms: pd.DataFrame
    networks: pd.DataFrame
    rates: pd.DataFrame
    seconds: float


def run_benchmark(
    specs: Sequence[NetworkSpec],
    config: AnalyzeConfig,
    *,
    jobs: int = 1,
    progress: bool | None = None,
) -> BenchmarkResult:
    """Evaluate every network in ``jobs`` worker processes (one torch thread each), the
    costliest first; a network that raises is reported in ``networks.error``, not fatal."""
    if not specs:
        raise UnitprobeError("no networks to evaluate")
    start = time.perf_counter()
    order = sorted(specs, key=_cost, reverse=True)
    done: dict[str, Any] = {}
    bar = tqdm(total=len(order), unit="net", disable=progress is False, desc="networks")

    def on_result(spec: NetworkSpec, result: Any, error: BaseException | None) -> None:
        if error is not None:
            result = (None, None, _network_row(spec, math.nan, one_line(error)))
        done[spec.name] = result
        bar.update()

    with bar:
        run_local(partial(_run_one, config=config), order, ".", jobs, False, on_result)
    results = [done[s.name] for s in specs if s.name in done]
    if all(r[0] is None for r in results):
        raise UnitprobeError(f"every network failed; {results[0][2]['error']}")
    units = pd.concat([r[0] for r in results if r[0] is not None], ignore_index=True)
    terms = pd.concat([r[1] for r in results if r[1] is not None], ignore_index=True)
    networks = pd.DataFrame([r[2] for r in results])
    return BenchmarkResult(units, terms, networks, verdict_rates(units, terms),
                           time.perf_counter() - start)  # fmt: skip


def _cost(spec: NetworkSpec) -> float:
    """Rough seconds of one network (wide layers and second layers cost most)."""
    n_layers, width = spec.shape
    return 8.0 * n_layers**3 + 0.2 * width
