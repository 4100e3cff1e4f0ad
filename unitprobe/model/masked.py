"""LSTMs trained inside a connectivity mask: learned weights, known contents.

A :class:`Connectivity` says what each unit's gates may read: some inputs at the current step,
some units' ``h`` one step back, and whether the unit keeps a memory (a learned forget gate).
Every other weight is held at exactly zero while the network trains, so what each unit can
hold is fixed by construction (:meth:`Connectivity.known_content`) while how it holds it is
learned: ground truth for the methods, less artificial than the hand-wired
:func:`~unitprobe.model.planted.planted_lstm`. The readout (from every unit) trains freely.

========================================  ==================================================
unit reads                                it holds (``known_content``)
========================================  ==================================================
input K, no memory                        a function of ``K[t]``
unit A (which holds ``K[t]``), no memory  ``K[t-1]``
inputs K and X, no memory                 a formula of ``K[t]`` and ``X[t]``
anything live, with memory or in a cycle  unbounded lags (``None``)
nothing at all (a dead unit)              nothing: its ``h`` is exactly 0
========================================  ==================================================

A memoryless unit's forget gate is pinned shut by a bias of ``forget_bias`` (its weights are
zero), so ``c[t]`` keeps ``sigmoid(forget_bias)`` of ``c[t-1]``: about 4.5e-5 at the default
-10, exactly 0 in float32 from about -90 down. A dead unit's gates have zero weights and
biases, so ``g = 0``, ``c = 0`` and ``h = 0`` at every step.

Example
-------
>>> from unitprobe.tasks import generate, get_preset
>>> data = generate(get_preset("seed"), n_sequences=256, seed=0)  # inputs K, X
>>> conn = Connectivity.from_sources(
...     data.input_names, [["K"], [("unit", 0)], ["X"], [("unit", 2)], ["K", "X"], []]
... )
>>> conn.known_content(data.input_names) == [
...     {"K[t]"}, {"K[t-1]"}, {"X[t]"}, {"X[t-1]"}, {"K[t]", "X[t]"}, set()
... ]
True
>>> result = train_masked(data, conn)  # TrainConfig(n_units=6): the default but for the width
>>> result.metrics["val_mse"] < 0.01 * result.metrics["baseline_mse"]
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unitprobe.devices import DEFAULT_DEVICE
from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.model.train import MAX_SEED, TrainConfig, TrainResult, init_model, train
from unitprobe.validation import check_float, check_int, is_int

__all__ = ["FORGET_BIAS", "Connectivity", "masked_lstm", "train_masked"]

#: Bias that pins a memoryless unit's forget gate shut (``sigmoid(-10) ≈ 4.5e-5``).
FORGET_BIAS = -10.0

#: What a unit reads: an input (name or 0-based index) at the current step, or
#: ``("unit", v)``, unit ``v``'s ``h`` one step back.
Source = str | int | tuple[str, int]

#: Per parameter of ``model.lstm``: (learned entries, value of the fixed entries).
Constraint = dict[str, tuple[Tensor, Tensor]]


@dataclass(frozen=True, eq=False)
class Connectivity:
    """What each unit of a one-layer LSTM may read; every other weight is zero.

    Parameters
    ----------
    inputs : ndarray of bool, shape (n_units, n_inputs)
        ``inputs[u, f]``: unit ``u``'s gates read input ``f`` at the current step.
    recurrent : ndarray of bool, shape (n_units, n_units)
        ``recurrent[u, v]``: unit ``u``'s gates read unit ``v``'s ``h`` from the previous step
        (``recurrent[u, u]`` is a self-loop).
    memory : ndarray of bool, shape (n_units,)
        Whether unit ``u``'s forget gate is learned; when False it is pinned shut, so ``c[t]``
        holds (almost) nothing of ``c[t-1]``.

    Notes
    -----
    The arrays are stored as read-only copies. Units that read no input and no unit are dead
    (:attr:`dead`). Two connectivities are equal when their three arrays are.

    Example
    -------
    >>> conn = Connectivity(
    ...     inputs=np.array([[True], [False]]),  # unit 0 reads input K
    ...     recurrent=np.array([[False, False], [True, False]]),  # unit 1 reads unit 0
    ...     memory=np.array([False, False]),
    ... )
    >>> conn.known_content(["K"]) == [{"K[t]"}, {"K[t-1]"}]
    True
    """

    inputs: np.ndarray
    recurrent: np.ndarray
    memory: np.ndarray

    def __post_init__(self) -> None:
        inputs = _bool_array(self.inputs, "inputs")
        if inputs.ndim != 2 or 0 in inputs.shape:
            raise UnitprobeError(
                f"inputs has shape {inputs.shape}, must be (n_units, n_inputs), both >= 1"
            )
        n = inputs.shape[0]
        recurrent = _bool_array(self.recurrent, "recurrent")
        if recurrent.shape != (n, n):
            raise UnitprobeError(
                f"recurrent has shape {recurrent.shape}, must be (n_units, n_units) == {(n, n)}"
            )
        memory = _bool_array(self.memory, "memory")
        if memory.shape != (n,):
            raise UnitprobeError(f"memory has shape {memory.shape}, must be (n_units,) == {(n,)}")
        for name, value in (("inputs", inputs), ("recurrent", recurrent), ("memory", memory)):
            object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connectivity):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, k), getattr(other, k))
            for k in ("inputs", "recurrent", "memory")
        )

    @property
    def n_units(self) -> int:
        """Units of the layer."""
        return int(self.inputs.shape[0])

    @property
    def n_inputs(self) -> int:
        """Input features."""
        return int(self.inputs.shape[1])

    @property
    def dead(self) -> np.ndarray:
        """ndarray of bool, shape (n_units,): units that read no input and no unit."""
        return ~self.inputs.any(axis=1) & ~self.recurrent.any(axis=1)

    @classmethod
    def from_sources(
        cls,
        inputs: int | Sequence[str],
        sources: Sequence[Sequence[Source]],
        *,
        memory: bool | Sequence[bool] = False,
    ) -> Connectivity:
        """Build a connectivity from a list, per unit, of what the unit reads.

        Parameters
        ----------
        inputs : int or sequence of str
            The number of input features, or their names (e.g. ``dataset.input_names``), which
            lets sources name inputs.
        sources : sequence, one per unit, of sequences of sources
            Each source is an input at the current step, by name (``"K"``) or 0-based index,
            or ``("unit", v)``: unit ``v``'s ``h`` one step back. ``[]`` makes a dead unit.
        memory : bool or sequence of bool, default False
            Whether each unit's forget gate is learned; one bool sets every unit.

        Returns
        -------
        Connectivity

        Example
        -------
        >>> conn = Connectivity.from_sources(["K", "X"], [["K"], [("unit", 0)], [0, "X"]])
        >>> conn.recurrent.astype(int).tolist()
        [[0, 0, 0], [1, 0, 0], [0, 0, 0]]
        """
        names = _input_names(inputs)
        if isinstance(sources, str) or not isinstance(sources, Sequence) or not sources:
            raise UnitprobeError(f"sources == {sources!r}, must be a list with one entry per unit")
        n_units = len(sources)
        read = np.zeros((n_units, len(names)), dtype=bool)
        recurrent = np.zeros((n_units, n_units), dtype=bool)
        for u, unit_sources in enumerate(sources):
            if isinstance(unit_sources, str) or not isinstance(unit_sources, Sequence):
                raise UnitprobeError(
                    f"sources of unit {u} == {unit_sources!r}, must be a list of sources"
                )
            for source in unit_sources:
                kind, index = _parse_source(source, u, names, n_units, named=not is_int(inputs))
                (read if kind == "input" else recurrent)[u, index] = True
        if isinstance(memory, (bool, np.bool_)):
            memory = [bool(memory)] * n_units
        return cls(read, recurrent, np.asarray(memory))

    def known_content(self, input_names: Sequence[str]) -> list[frozenset[str] | None]:
        """The input terms each unit's state can depend on.

        A unit holds ``NAME[t]`` for each input it reads and, for each unit ``v`` it reads,
        ``v``'s terms one lag further back. A unit that reaches a live unit with memory or on a
        recurrent cycle holds unboundedly many lags: ``None``. A unit that reaches no input
        (a dead unit, or one that reads only such units) holds nothing: an empty set.

        Parameters
        ----------
        input_names : sequence of str, length n_inputs

        Returns
        -------
        list of (frozenset of str or None), length n_units
            Terms ``NAME[t]`` or ``NAME[t-k]``, per unit.
        """
        names = [str(name) for name in input_names]
        if len(names) != self.n_inputs:
            raise UnitprobeError(
                f"input_names has {len(names)} names, connectivity has {self.n_inputs} inputs"
            )
        cells = _content_cells(self.inputs, self.recurrent, self.memory)
        return [
            None if unit is None else frozenset(_term(names[f], lag) for f, lag in unit)
            for unit in cells
        ]


def _content_cells(
    inputs: np.ndarray, recurrent: np.ndarray, memory: np.ndarray
) -> list[frozenset[tuple[int, int]] | None]:
    """Per unit, the ``(input index, lag)`` cells its state can depend on, or None (unbounded).

    The arrays of a :class:`Connectivity`. A memory is a self-loop (``c[t]`` reads
    ``c[t-1]``); a unit is *live* when some path of reads reaches an input, and unbounded when
    it reaches (or is) a live unit on a cycle. The rest form an acyclic graph, solved sources
    first.

    Parameters
    ----------
    inputs : ndarray of bool, shape (n_units, n_inputs)
    recurrent : ndarray of bool, shape (n_units, n_units)
    memory : ndarray of bool, shape (n_units,)

    Returns
    -------
    list of (frozenset of (int, int) or None), length n_units
    """
    edges = recurrent | np.diag(memory)  # (H, H): u reads v one step back
    reach = _transitive_closure(edges)  # (H, H): a path of >= 1 reads from u to v
    reads_input = inputs.any(axis=1)
    live = reads_input | (reach & reads_input).any(axis=1)
    looping = np.diag(reach) & live
    unbounded = looping | (reach & looping).any(axis=1)
    done: dict[int, frozenset[tuple[int, int]]] = {}
    pending = [u for u in range(len(edges)) if live[u] and not unbounded[u]]
    while pending:  # acyclic: every pass solves at least one unit
        waiting = []
        for u in pending:
            read = [int(v) for v in np.flatnonzero(edges[u] & live)]
            if any(v not in done for v in read):
                waiting.append(u)
                continue
            now = {(int(f), 0) for f in np.flatnonzero(inputs[u])}
            done[u] = frozenset(now.union(*({(f, k + 1) for f, k in done[v]} for v in read)))
        pending = waiting
    return [None if unbounded[u] else done.get(u, frozenset()) for u in range(len(edges))]


def masked_lstm(
    n_inputs: int,
    connectivity: Connectivity,
    n_outputs: int,
    *,
    seed: int,
    forget_bias: float = FORGET_BIAS,
) -> UnitLSTM:
    """A freshly initialized one-layer :class:`UnitLSTM` inside ``connectivity``'s mask.

    Initialized as :func:`~unitprobe.model.train.train` does (:func:`init_model`, torch seed
    ``seed``), then every weight the mask excludes is set to exactly zero in all four gates
    of ``weight_ih_l0`` and ``weight_hh_l0``. A memoryless unit's forget gate reads nothing
    and has ``bias_ih = forget_bias``, ``bias_hh = 0``; a dead unit's gates have zero weights
    and biases, so its ``h`` is exactly 0.

    Parameters
    ----------
    n_inputs : int
        Input features; must be ``connectivity.n_inputs``.
    connectivity : Connectivity
    n_outputs : int
        Readout outputs (the readout reads every unit and is initialized as usual).
    seed : int
    forget_bias : float, default FORGET_BIAS
        The pinned forget-gate bias of memoryless units; negative.

    Returns
    -------
    UnitLSTM
        Of ``ModelConfig(n_inputs, connectivity.n_units, n_outputs)``, in eval mode.
    """
    check_int(n_inputs, "n_inputs", minimum=1)
    if n_inputs != connectivity.n_inputs:
        raise UnitprobeError(
            f"n_inputs == {n_inputs}, connectivity has {connectivity.n_inputs} inputs"
        )
    check_int(seed, "seed", minimum=0, maximum=MAX_SEED)
    model = init_model(ModelConfig(n_inputs, connectivity.n_units, n_outputs), seed)
    with torch.no_grad():
        _project(model, _constraint(connectivity, forget_bias))
    return model.eval()


def train_masked(
    dataset: Any,
    connectivity: Connectivity,
    config: TrainConfig | None = None,
    *,
    forget_bias: float = FORGET_BIAS,
    progress: bool | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    validation: Any | None = None,
    device: str | torch.device = DEFAULT_DEVICE,
) -> TrainResult:
    """Train a one-layer LSTM on ``dataset`` with the weights outside the mask held at zero.

    :func:`~unitprobe.model.train.train` (the same seeded, deterministic training) from
    :func:`masked_lstm`: the gradients of the fixed entries are zeroed during backward (so
    clipping and Adam see only the learned ones), and the fixed entries are set again after
    every step (so they also stay put under weight decay). The readout trains freely.

    Parameters
    ----------
    dataset : Dataset
        As in :func:`~unitprobe.model.train.train`; ``connectivity.n_inputs`` input features.
    connectivity : Connectivity
    config : TrainConfig, optional
        Default ``TrainConfig(n_units=connectivity.n_units)``; one layer of
        ``connectivity.n_units`` units.
    forget_bias : float, default FORGET_BIAS
        As in :func:`masked_lstm`.
    progress, on_epoch, validation, device
        As in :func:`~unitprobe.model.train.train`.

    Returns
    -------
    TrainResult
        As :func:`~unitprobe.model.train.train`'s; its model keeps the mask exactly.
    """
    config = config or TrainConfig(n_units=connectivity.n_units)
    if config.n_units != connectivity.n_units or config.n_layers != 1:
        raise UnitprobeError(
            f"config has {config.n_layers} layer(s) of {config.n_units} units, connectivity "
            f"needs 1 layer of {connectivity.n_units}"
        )
    shape = np.shape(dataset.inputs)
    if len(shape) == 3 and shape[2] != connectivity.n_inputs:
        raise UnitprobeError(
            f"dataset has {shape[2]} input features, connectivity has {connectivity.n_inputs}"
        )
    targets = np.shape(dataset.targets)
    n_outputs = targets[2] if len(targets) == 3 else 1  # train() refuses other shapes
    model = masked_lstm(
        connectivity.n_inputs, connectivity, n_outputs, seed=config.seed, forget_bias=forget_bias
    )
    constraint = _constraint(connectivity, forget_bias)
    with _fixed_gradients_zeroed(model, constraint):
        return train(
            dataset, config, progress=progress, on_epoch=on_epoch, validation=validation,
            device=device, model=model, constrain=partial(_project, constraint=constraint),
        )  # fmt: skip


def _constraint(connectivity: Connectivity, forget_bias: float) -> Constraint:
    """The learned entries and fixed values of ``weight_ih_l0``, ``weight_hh_l0``,
    ``bias_ih_l0`` and ``bias_hh_l0`` (rows in gate order i, f, g, o)."""
    check_float(forget_bias, "forget_bias", maximum=0, strict_maximum=True)
    n = connectivity.n_units
    forget = slice(n, 2 * n)
    shut = ~connectivity.memory  # (H,)
    free_ih = np.tile(connectivity.inputs, (4, 1))  # (4H, F): every gate reads the same
    free_hh = np.tile(connectivity.recurrent, (4, 1))  # (4H, H)
    free_ih[forget][shut] = False
    free_hh[forget][shut] = False
    free_bias = np.ones(4 * n, dtype=bool)
    free_bias[forget][shut] = False
    free_bias[np.tile(connectivity.dead, 4)] = False  # dead: every bias 0, so g = 0
    pinned_ih = np.zeros(4 * n, dtype=np.float32)
    pinned_ih[forget][shut & ~connectivity.dead] = forget_bias
    cpu = partial(torch.as_tensor, device="cpu")  # moved to the parameters' device when used
    zero = torch.zeros((), device="cpu")
    return {
        "weight_ih_l0": (cpu(free_ih), zero),
        "weight_hh_l0": (cpu(free_hh), zero),
        "bias_ih_l0": (cpu(free_bias), cpu(pinned_ih)),
        "bias_hh_l0": (cpu(free_bias), zero),
    }


def _project(model: UnitLSTM, constraint: Constraint) -> None:
    """Set the fixed entries of ``model`` to their values (call under ``torch.no_grad()``)."""
    for name, (free, value) in constraint.items():
        param = getattr(model.lstm, name)
        param.copy_(torch.where(free.to(param.device), param, value.to(param)))


@contextlib.contextmanager
def _fixed_gradients_zeroed(model: UnitLSTM, constraint: Constraint) -> Iterator[None]:
    """Zero the gradient of every fixed entry during backward, inside a ``with`` block.

    The hooks are removed in ``finally``, so the trained model computes full gradients.
    """
    handles = [
        getattr(model.lstm, name).register_hook(partial(_zero_fixed, free))
        for name, (free, _) in constraint.items()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _zero_fixed(free: Tensor, grad: Tensor) -> Tensor:
    return grad.masked_fill(~free.to(grad.device), 0.0)


def _bool_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a read-only bool array, or a one-line error naming ``name``."""
    try:
        array = np.array(value)  # a copy: the caller's array may change later
    except ValueError as err:  # ragged nested lists
        raise UnitprobeError(f"{name} is not a rectangular array: {err}") from None
    if array.dtype != np.bool_:
        raise UnitprobeError(f"{name} has dtype {array.dtype}, must be bool")
    array.flags.writeable = False
    return array


def _input_names(inputs: int | Sequence[str]) -> list[str]:
    """Input names, or ``["0", "1", ...]`` for a count of inputs."""
    if is_int(inputs):
        return [str(f) for f in range(check_int(inputs, "inputs", minimum=1))]
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise UnitprobeError(f"inputs == {inputs!r}, must be a count or a list of names")
    names = list(inputs)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise UnitprobeError(f"inputs == {inputs!r}, must be distinct names, at least one")
    return names


def _parse_source(
    source: Any, u: int, names: list[str], n_units: int, *, named: bool
) -> tuple[str, int]:
    """``("input", f)`` or ``("unit", v)`` for one source of unit ``u``."""
    if isinstance(source, tuple) and len(source) == 2 and source[0] == "unit":
        v = source[1]
        if not is_int(v) or not 0 <= v < n_units:
            raise UnitprobeError(f"source {source!r} of unit {u}: unit must be in 0..{n_units - 1}")
        return "unit", int(v)
    if is_int(source):
        if not 0 <= source < len(names):
            raise UnitprobeError(
                f"source {source!r} of unit {u}: input index must be in 0..{len(names) - 1}"
            )
        return "input", int(source)
    if isinstance(source, str) and named:
        if source not in names:
            raise UnitprobeError(
                f"source {source!r} of unit {u} is not an input; inputs are {', '.join(names)}"
            )
        return "input", names.index(source)
    what = "an input name or index" if named else "an input index (inputs has no names)"
    raise UnitprobeError(f"source {source!r} of unit {u}: must be {what} or ('unit', v)")


def _transitive_closure(edges: np.ndarray) -> np.ndarray:
    """``reach[u, v]``: a path of one or more edges leads from ``u`` to ``v``."""
    reach = edges.copy()
    while True:  # doubling: paths up to twice as long each pass
        longer = reach | ((reach.astype(np.float32) @ reach.astype(np.float32)) > 0)
        if np.array_equal(longer, reach):
            return reach
        reach = longer


def _term(name: str, lag: int) -> str:
    """``NAME[t]`` or ``NAME[t-lag]``."""
    return f"{name}[t]" if lag == 0 else f"{name}[t-{lag}]"
