"""Generate datasets from a :class:`~unitprobe.tasks.spec.TaskSpec`, and normalize them.

Generation runs in float64, vectorized over sequences and stepwise over time: at step ``t`` a
series takes its initial values while ``t`` is below the number it needs, and its relation
otherwise; series are evaluated in the system's topological order. ``burn_in + length +
horizon`` steps are generated and the first ``burn_in`` discarded.

Normalization is ONE affine map per series over the whole dataset (all sequences and all
kept steps, including the ``horizon`` extra steps): ``z = (x - shift) / scale`` with
``shift`` the mean and ``scale`` the standard deviation (1 when the series is constant). A
linear relation therefore stays exactly linear, with fixed coefficients, in normalized units:
``K[t] = K[t-1] + 2*X[t] + 1`` becomes
``zK[t] = zK[t-1] + 2*(sX/sK)*zX[t] + (2*mX + 1)/sK``.

A model trained on one dataset must see new data on the same scale: pass the training
data's ``norm`` (stored in the checkpoint) to :func:`generate` or :func:`dataset_from_raw`
and it is applied instead of being fitted again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from unitprobe.errors import DataError, TaskSpecError
from unitprobe.tasks.spec import TaskSpec
from unitprobe.validation import check_int

__all__ = [
    "MAX_GENERATED_STEPS",
    "MAX_GENERATED_VALUES",
    "Dataset",
    "baseline_mse",
    "dataset_from_raw",
    "fit_normalization",
    "generate",
]

#: Largest finite float32; raw values beyond it are refused.
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Most values :func:`generate` produces in one call (2**25 float64 values = 256 MiB; an
#: analysis keeps several copies of them).
MAX_GENERATED_VALUES = 2**25
#: Most steps per generated sequence, burn-in included (generation steps through time in
#: Python: 10**5 steps take about a second per relation).
MAX_GENERATED_STEPS = 10**5


@dataclass
class Dataset:
    """Sequences ready for training and analysis.

    Attributes
    ----------
    spec : TaskSpec or None
        The task (None for data loaded without a spec).
    inputs : ndarray of float32, shape (n_sequences, length, n_inputs)
        Normalized input series, in ``input_names`` order, with observation noise if the spec
        asks for it.
    targets : ndarray of float32, shape (n_sequences, length, n_outputs)
        Normalized clean values of the ``output_names`` series at step ``t + horizon``.
    series : dict of str to ndarray of float64, shape (n_sequences, length)
        Normalized clean values of every series, aligned with the input steps.
    raw : dict of str to ndarray of float64, shape (n_sequences, length)
        Raw (unnormalized) clean values, aligned with the input steps.
    norm : dict of str to (shift, scale)
        The affine map of each series: ``z = (x - shift) / scale``.
    sequence_ids : ndarray of int64, shape (n_sequences,)
    input_names, output_names : tuple of str
    horizon : int
    raw_future : dict of str to ndarray of float64, shape (n_sequences, horizon)
        Raw values of the ``horizon`` steps after the last input step (targets of the last
        steps).
    seed : int or None
        Seed the data were generated with.
    overlapping : bool
        Whether sequences share time points (windows cut ``stride < window`` apart from one
        long series): they are then not independent, so cross-validation folds and
        permutations over sequences are not valid as they stand.
    """

    spec: TaskSpec | None
    inputs: np.ndarray
    targets: np.ndarray
    series: dict[str, np.ndarray]
    raw: dict[str, np.ndarray]
    norm: dict[str, tuple[float, float]]
    sequence_ids: np.ndarray
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    horizon: int
    raw_future: dict[str, np.ndarray] = field(default_factory=dict)
    seed: int | None = None
    overlapping: bool = False

    @property
    def n_sequences(self) -> int:
        """Number of sequences N."""
        return int(self.inputs.shape[0])

    @property
    def length(self) -> int:
        """Number of input steps T per sequence."""
        return int(self.inputs.shape[1])

    def raw_full(self, name: str) -> np.ndarray:
        """Raw values of ``name`` including the horizon steps: shape (N, length + horizon)."""
        self._check_name(name)
        future = self.raw_future.get(name, np.empty((self.n_sequences, 0)))
        return np.concatenate([self.raw[name], future], axis=1)

    def normalize(self, name: str, x: np.ndarray) -> np.ndarray:
        """Map raw values of series ``name`` to normalized units."""
        shift, scale = self.norm[self._check_name(name)]
        return (np.asarray(x, dtype=np.float64) - shift) / scale

    def denormalize(self, name: str, z: np.ndarray) -> np.ndarray:
        """Map normalized values of series ``name`` back to raw units."""
        shift, scale = self.norm[self._check_name(name)]
        return np.asarray(z, dtype=np.float64) * scale + shift

    def subset(self, idx: int | slice | Sequence[int] | np.ndarray) -> Dataset:
        """The sequences ``idx`` (indices, slice or boolean mask over sequences).

        The normalization maps are kept unchanged, so subsets share units with the whole.
        """
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        if not isinstance(idx, slice):
            idx = np.asarray(idx)
            if idx.dtype != bool and not np.issubdtype(idx.dtype, np.integer):
                if idx.size:
                    raise DataError(f"subset index must be integers or a mask, got {idx.dtype}")
                idx = idx.astype(np.int64)
        pick = {k: v[idx] for k, v in self.raw_future.items()}
        return replace(
            self,
            inputs=self.inputs[idx],
            targets=self.targets[idx],
            series={k: v[idx] for k, v in self.series.items()},
            raw={k: v[idx] for k, v in self.raw.items()},
            sequence_ids=self.sequence_ids[idx],
            raw_future=pick,
        )

    def _check_name(self, name: str) -> str:
        if name not in self.norm:
            raise DataError(f"unknown series '{name}'; series: {', '.join(self.norm)}")
        return name

    def __repr__(self) -> str:
        return (
            f"Dataset(task={self.spec.name if self.spec else None!r}, "
            f"n_sequences={self.n_sequences}, length={self.length}, "
            f"inputs={list(self.input_names)}, outputs={list(self.output_names)}, "
            f"horizon={self.horizon})"
        )


def fit_normalization(x: np.ndarray) -> tuple[float, float]:
    """The affine map ``(shift, scale)`` of one series over all its values.

    Parameters
    ----------
    x : ndarray of any shape
        Raw values (all sequences and steps).

    Returns
    -------
    (shift, scale) : tuple of float
        Mean and standard deviation; scale is 1 when the standard deviation is 0 or below
        ``1e-12 * max(1, |mean|)`` (a constant series).
    """
    x = np.asarray(x, dtype=np.float64)
    shift = float(np.mean(x))
    scale = float(np.std(x))
    if not scale > 1e-12 * max(1.0, abs(shift)):
        scale = 1.0
    return shift, scale


def _check_range(name: str, values: np.ndarray, step: int, burn_in: int = 0) -> None:
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if not bad.any():
        return
    first = values[bad].flat[0]
    note = f" (counting {burn_in} burn-in steps)" if burn_in else ""
    if np.isnan(first):
        raise TaskSpecError(
            f"series '{name}' becomes NaN at step {step}{note} (e.g. log or sqrt of a negative "
            "number, or inf - inf); change the relation or its initial values"
        )
    raise TaskSpecError(
        f"series '{name}' overflows float32 at step {step}{note} "
        f"(|{name}| = {abs(first):.2g}); shorten length or damp the relation"
    )


def _simulate(spec: TaskSpec, n: int, n_steps: int, rng: np.random.Generator) -> dict:
    values = {name: np.zeros((n, n_steps)) for name in spec.series}
    need = spec.init_steps
    for name in spec.series:
        for i, expr in enumerate(spec.init_expressions(name)[:n_steps]):
            values[name][:, i] = expr.evaluate(None, rng, (n,))
            _check_range(name, values[name][:, i], i, spec.burn_in)
    system = spec.system
    for t in range(n_steps):

        def lookup(name: str, lag: int, t: int = t) -> np.ndarray:
            return values[name][:, t - lag]

        for rel in system:
            if t < need[rel.name]:
                continue
            col = rel.expr.evaluate(lookup, rng, (n,))
            _check_range(rel.name, col, t, spec.burn_in)
            values[rel.name][:, t] = col
    return values


def generate(
    spec: TaskSpec,
    n_sequences: int,
    seed: int,
    norm: Mapping[str, tuple[float, float]] | None = None,
) -> Dataset:
    """Generate ``n_sequences`` sequences of the task.

    Parameters
    ----------
    spec : TaskSpec
    n_sequences : int
        Number of sequences N (>= 1).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives identical arrays.
    norm : dict of str to (shift, scale), optional
        Apply this normalization (e.g. ``checkpoint.norm``, that of the training data)
        instead of fitting one on these sequences; series it lacks are fitted.

    Returns
    -------
    Dataset
        ``inputs`` of shape (N, spec.length, len(spec.inputs)), ``targets`` of shape
        (N, spec.length, len(spec.predict)); see :class:`Dataset`.

    Raises
    ------
    TaskSpecError
        A series leaves the float32 range or becomes NaN (the message names the series and the
        first step), or the request asks for more than :data:`MAX_GENERATED_VALUES` values.

    Examples
    --------
    >>> from unitprobe.tasks import get_preset
    >>> ds = generate(get_preset("seed"), n_sequences=8, seed=0)
    >>> ds.inputs.shape, ds.targets.shape
    ((8, 20, 2), (8, 20, 2))
    """
    if not isinstance(spec, TaskSpec):
        raise TaskSpecError(f"spec must be a TaskSpec, got {type(spec).__name__}")
    n_sequences = check_int(n_sequences, "n_sequences", minimum=1, error=TaskSpecError)
    seed = check_int(seed, "seed", minimum=0, error=TaskSpecError)
    _check_size(spec, n_sequences)
    rng = np.random.default_rng(seed)
    n_steps = spec.burn_in + spec.length + spec.horizon
    values = _simulate(spec, n_sequences, n_steps, rng)
    kept = {name: v[:, spec.burn_in :] for name, v in values.items()}
    return dataset_from_raw(
        kept,
        inputs=spec.inputs,
        predict=spec.predict,
        horizon=spec.horizon,
        spec=spec,
        noise=spec.noise,
        seed=seed,
        norm=norm,
    )


def _check_size(spec: TaskSpec, n_sequences: int) -> None:
    """Refuse to generate more than :data:`MAX_GENERATED_VALUES` values of ``spec``.

    Raises
    ------
    TaskSpecError
        ``"task 'long' asks for 512 sequences x 10000001 steps (burn_in + length + horizon)
        x 1 series = 5.12e+09 values, more than 2.15e+09; use fewer or shorter sequences"``.
    """
    steps = spec.burn_in + spec.length + spec.horizon
    values = n_sequences * steps * len(spec.series)
    if values > MAX_GENERATED_VALUES:
        raise TaskSpecError(
            f"task '{spec.name}' asks for {n_sequences} sequences x {steps} steps (burn_in + "
            f"length + horizon) x {len(spec.series)} series = {values:.3g} values, more than "
            f"{MAX_GENERATED_VALUES:.3g}; use fewer or shorter sequences"
        )
    if steps > MAX_GENERATED_STEPS:
        raise TaskSpecError(
            f"task '{spec.name}' asks for {steps} steps per sequence (burn_in {spec.burn_in} + "
            f"length {spec.length} + horizon {spec.horizon}), more than {MAX_GENERATED_STEPS}; "
            "shorten burn_in or length"
        )


def dataset_from_raw(
    raw: Mapping[str, np.ndarray],
    *,
    inputs: Sequence[str],
    predict: Sequence[str],
    horizon: int = 1,
    spec: TaskSpec | None = None,
    noise: Mapping[str, float] | None = None,
    seed: int | None = None,
    sequence_ids: np.ndarray | None = None,
    norm: Mapping[str, tuple[float, float]] | None = None,
    overlapping: bool = False,
) -> Dataset:
    """Build a :class:`Dataset` from raw series (normalizing them as :func:`generate` does).

    Parameters
    ----------
    raw : dict of str to ndarray of shape (n_sequences, length + horizon)
        Raw values of every series, including the ``horizon`` steps after the last input step.
    inputs, predict : sequence of str
        Series fed to the network and series to predict (names in ``raw``).
    horizon : int
        Steps ahead of the targets (>= 0).
    spec : TaskSpec or None
        Stored in the dataset.
    noise : dict of str to float or None
        Observation noise on inputs, std in normalized units (drawn from a generator seeded
        with ``(seed, 1)``).
    seed : int or None
    sequence_ids : ndarray of int, shape (n_sequences,) or None
        Defaults to ``0 .. n_sequences - 1``.
    norm : dict of str to (shift, scale), optional
        Apply this normalization instead of fitting it (series it lacks are fitted).
    overlapping : bool
        Stored in the dataset (:attr:`Dataset.overlapping`).

    Raises
    ------
    DataError
        Inconsistent shapes, unknown names, non-finite values, or values beyond float32.
    """
    if not raw:
        raise DataError("no series given")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in raw.items()}
    shapes = {k: v.shape for k, v in arrays.items()}
    first = next(iter(shapes.values()))
    if len(first) != 2 or any(s != first for s in shapes.values()):
        raise DataError(f"series must share one 2-D shape (N, T + horizon), got {shapes}")
    for key in (*inputs, *predict):
        if key not in arrays:
            raise DataError(f"unknown series '{key}'; series: {', '.join(arrays)}")
    n, total = first
    t_len = total - horizon
    if horizon < 0 or t_len < 1:
        raise DataError(f"sequences have {total} steps, need at least horizon + 1 = {horizon + 1}")
    for key, v in arrays.items():
        bad = ~np.isfinite(v) | (np.abs(v) > FLOAT32_MAX)
        if bad.any():
            seq, step = np.argwhere(bad)[0]
            raise DataError(
                f"series '{key}' has value {v[seq, step]!r} at sequence {seq}, step {step}; "
                f"values must be finite and within float32 (|x| <= {FLOAT32_MAX:.3g})"
            )
    given = _check_given_norm(norm)
    norm = {k: given[k] if k in given else fit_normalization(v) for k, v in arrays.items()}
    z = {k: (v - norm[k][0]) / norm[k][1] for k, v in arrays.items()}
    series = {k: v[:, :t_len] for k, v in z.items()}
    x = np.stack([series[k] for k in inputs], axis=-1)  # (N, T, F)
    if noise:
        noise_rng = np.random.default_rng([0 if seed is None else int(seed), 1])
        sd = np.array([float(noise.get(k, 0.0)) for k in inputs])
        x = x + noise_rng.standard_normal(x.shape) * sd
    y = np.stack([z[k][:, horizon : horizon + t_len] for k in predict], axis=-1)  # (N, T, O)
    _check_float32(x, inputs, "inputs", bool(noise))
    _check_float32(y, predict, "targets", False)
    if sequence_ids is None:
        sequence_ids = np.arange(n)
    return Dataset(
        spec=spec,
        inputs=x.astype(np.float32),
        targets=y.astype(np.float32),
        series=series,
        raw={k: v[:, :t_len].copy() for k, v in arrays.items()},
        norm=norm,
        sequence_ids=np.asarray(sequence_ids, dtype=np.int64),
        input_names=tuple(inputs),
        output_names=tuple(predict),
        horizon=int(horizon),
        raw_future={k: v[:, t_len:].copy() for k, v in arrays.items()},
        seed=seed,
        overlapping=bool(overlapping),
    )


def _check_given_norm(norm: Mapping[str, tuple[float, float]] | None) -> dict:
    """A given normalization as ``{name: (shift, scale)}`` with finite values, scale > 0."""
    if norm is None:
        return {}
    if not isinstance(norm, Mapping):
        raise DataError(f"norm must map series names to (shift, scale), got {type(norm).__name__}")
    out = {}
    for key, pair in norm.items():
        try:
            shift, scale = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise DataError(f"norm['{key}'] == {pair!r}, must be (shift, scale)") from None
        if not (np.isfinite(shift) and np.isfinite(scale) and scale > 0):
            raise DataError(f"norm['{key}'] == {pair!r}, must be finite with a scale > 0")
        out[key] = (shift, scale)
    return out


def baseline_mse(dataset: Dataset, per_output: bool = False) -> float | dict[str, float]:
    """MSE of the "repeat the last value" predictor, in normalized units.

    Series ``S`` at ``t + horizon`` is predicted by its current observed (normalized, noisy)
    input value ``S[t]`` if ``S`` is an input, and by its mean (0) otherwise. A trained model
    has to beat this number.

    Parameters
    ----------
    dataset : Dataset
    per_output : bool
        Return a dict output name -> MSE instead of the mean over all targets.

    Returns
    -------
    float or dict of str to float
    """
    y = dataset.targets.astype(np.float64)
    pred = np.zeros_like(y)
    for o, name in enumerate(dataset.output_names):
        if name in dataset.input_names:
            pred[..., o] = dataset.inputs[..., dataset.input_names.index(name)]
    err = (y - pred) ** 2
    if per_output:
        return {name: float(err[..., o].mean()) for o, name in enumerate(dataset.output_names)}
    return float(err.mean())


def _check_float32(values: np.ndarray, names: Sequence[str], what: str, noisy: bool) -> None:
    """Refuse normalized values that do not fit float32, naming the series."""
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(values.astype(np.float32)).all(axis=(0, 1))
    if not finite.all():
        bad = ", ".join(n for n, ok in zip(names, finite, strict=True) if not ok)
        cause = "its observation noise is too large" if noisy else "its normalization is off"
        raise DataError(
            f"the normalized {what} {bad} overflow float32 ({cause}); use smaller noise or "
            "another scaling"
        )
