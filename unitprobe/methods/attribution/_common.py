"""What every attribution kind shares: data checks, target steps, (sequence, step) sampling,
baselines, the attribution context (cuDNN off, parameters frozen) and the network as Captum sees
it (:class:`CaptumNetwork`).

Names here carry no underscore because the module itself is private to the package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unitprobe.config import AttributionConfig
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.model.lstm import UnitLSTM, as_tensor
from unitprobe.schemas import BASELINES
from unitprobe.validation import check_choice, check_float, check_int, is_int

__all__ = [
    "BASELINES",
    "Baseline",
    "no_cudnn",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MEMORY_BUDGET_MB",
    "budget_batch_size",
]

#: Integrated-gradients baselines: 0 in normalized units, or the per-step mean input.
#: Largest lag reported by default (``max_lag=None`` means ``min(DEFAULT_MAX_LAG, T - 1)``).
DEFAULT_MAX_LAG = 10
#: Target steps of input-lag and unit attributions by default (the last ones).
DEFAULT_N_TARGET_STEPS = 10

#: Sequences per Captum call by default (each expanded ``n_steps_ig`` times); 64 instead of
#: 256 changes nothing but float rounding and cuts the peak memory of a 256-unit model ~3x.
DEFAULT_BATCH_SIZE = AttributionConfig.batch_size
#: Memory one Captum call may take (the autograd graph of its expanded batch), in MiB.
DEFAULT_MEMORY_BUDGET_MB = AttributionConfig.memory_budget_mb

Baseline = str | np.ndarray


def budget_batch_size(
    model: UnitLSTM, n_steps: int, n_points: int, batch_size: int, memory_budget_mb: float
) -> int:
    """Sequences per Captum call: at most ``batch_size``, and within ``memory_budget_mb``.

    One sequence of one call costs ``n_points`` (integration points) rows of the LSTM's
    autograd graph: per layer and step about 14 H floats (gates before and after their
    nonlinearity, ``c``, ``tanh(c)``, ``h`` and their gradients), plus the inputs.

    Parameters
    ----------
    model : UnitLSTM
    n_steps : int
        Steps each sequence runs.
    n_points : int
        Rows per sequence (quadrature points; 1 for gradient methods).
    batch_size : int
        Upper bound.
    memory_budget_mb : float
        > 0.

    Returns
    -------
    int
        >= 1 (a single sequence may exceed a tiny budget).
    """
    check_int(batch_size, "batch_size", minimum=1)
    check_float(memory_budget_mb, "memory_budget_mb", minimum=0, strict_minimum=True)
    cfg = model.config
    floats = n_steps * (14 * cfg.n_units * cfg.n_layers + 2 * cfg.n_inputs + cfg.n_outputs)
    per_sequence = 4 * floats * max(1, n_points)
    return max(1, min(batch_size, int(memory_budget_mb * 2**20) // per_sequence))


# ---------------------------------------------------------------------------------------------
# Context: cuDNN off, parameters frozen
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_cudnn() -> Iterator[None]:
    """Disable cuDNN inside a ``with`` block (restored afterwards, also on error).

    cuDNN refuses the backward pass of an RNN in eval mode, which every gradient-based
    attribution of an LSTM needs; PyTorch's native kernels have no such limit.
    """
    with torch.backends.cudnn.flags(enabled=False):
        yield


@contextlib.contextmanager
def attribution_mode(model: nn.Module) -> Iterator[None]:
    """cuDNN off and parameters frozen (no weight gradients computed); both restored."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        with no_cudnn():
            yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


# ---------------------------------------------------------------------------------------------
# The network handed to Captum
# ---------------------------------------------------------------------------------------------


class CaptumNetwork(nn.Module):
    """The model as Captum sees it: ``forward(z, offset, step)`` -> outputs at one step each.

    The layers run as one-layer ``nn.LSTM`` modules that share the model's weights (no copies),
    each followed by ``taps[k]``, an ``nn.Identity`` whose output is layer ``k``'s hidden state
    (N, T, H), so Captum's layer methods can hook any layer. :meth:`sequence` computes the same
    function as ``model.forward``.

    Attributing to ``z = x - baseline`` from ``z = 0`` is attributing to ``x`` from the
    baseline; the per-example ``step`` picks the target step, so one Captum call covers many
    (sequence, step) pairs. Build it inside :func:`attribution_mode` (the readout is the
    model's own module).

    Parameters
    ----------
    model : UnitLSTM
    """

    def __init__(self, model: UnitLSTM) -> None:
        super().__init__()
        config = model.config
        self.lstms = nn.ModuleList()
        for k in range(config.n_layers):
            n_in = config.n_inputs if k == 0 else config.n_units
            lstm = nn.LSTM(n_in, config.n_units, 1, batch_first=True)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(lstm, f"{name}_l0").data = getattr(model.lstm, f"{name}_l{k}").data
                getattr(lstm, f"{name}_l0").requires_grad_(False)
            lstm.flatten_parameters()
            self.lstms.append(lstm)
        self.taps = nn.ModuleList(nn.Identity() for _ in range(config.n_layers))
        self.readout = model.readout
        self.to(next(model.parameters()).device)

    def sequence(self, x: Tensor) -> Tensor:
        """The model's outputs at every step: (N, T, F) -> (N, T, n_outputs)."""
        for lstm, tap in zip(self.lstms, self.taps, strict=True):
            x = tap(lstm(x)[0])
        return self.readout(x)

    def forward(self, z: Tensor, offset: Tensor, step: Tensor) -> Tensor:
        """Outputs of ``z + offset`` at ``step[n]`` for each sequence ``n``: (B, n_outputs)."""
        out = self.sequence(z + offset)  # (B, T, O)
        return out[torch.arange(out.shape[0], device=out.device), step]


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def resolve_data(
    model: UnitLSTM,
    inputs: Any,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
) -> tuple[Tensor, list[str], list[str]]:
    """Accept an array or a dataset-like object; return inputs on the model's device and names.

    A dataset is anything with an ``inputs`` attribute; its ``input_names`` and
    ``output_names`` are used unless names are given.
    """
    if not isinstance(model, UnitLSTM):
        raise UnitprobeError(f"model must be a UnitLSTM, got {type(model).__name__}")
    if hasattr(inputs, "inputs"):
        if input_names is None:
            input_names = getattr(inputs, "input_names", None)
        if output_names is None:
            output_names = getattr(inputs, "output_names", None)
        inputs = inputs.inputs
    x = as_tensor(inputs if isinstance(inputs, Tensor) else np.asarray(inputs, np.float32), model)
    if not torch.isfinite(x).all():
        raise DataError("inputs contain NaN or infinite values")
    n_in, n_out = model.config.n_inputs, model.config.n_outputs
    in_names = [f"x{k}" for k in range(n_in)] if input_names is None else list(input_names)
    out_names = [f"y{k}" for k in range(n_out)] if output_names is None else list(output_names)
    if len(in_names) != n_in:
        raise DataError(f"{len(in_names)} input_names {in_names} for a model with {n_in} inputs")
    if len(out_names) != n_out:
        raise DataError(
            f"{len(out_names)} output_names {out_names} for a model with {n_out} outputs"
        )
    return x, [str(s) for s in in_names], [str(s) for s in out_names]


def resolve_layer(layer: int | None, n_layers: int) -> int:
    """``layer`` checked against the model; None is the last layer."""
    if layer is None:
        return n_layers - 1
    check_int(layer, "layer", minimum=0)
    if layer >= n_layers:
        raise UnitprobeError(f"layer == {layer}, model has {n_layers} layer(s) (0-based)")
    return int(layer)


def resolve_units(units: int | Sequence[int] | None, n_units: int) -> list[int]:
    """Units checked against the model; None is every unit."""
    if units is None:
        return list(range(n_units))
    chosen = [units] if np.ndim(units) == 0 else list(units)
    bad = [u for u in chosen if not is_int(u)] or [u for u in chosen if not 0 <= u < n_units]
    if bad or not chosen:
        raise UnitprobeError(f"units {bad or chosen} invalid, model has {n_units} units (0-based)")
    return [int(u) for u in chosen]


def check_output(output: int, n_outputs: int) -> None:
    """Raise unless ``output`` is a 0-based output index of the model."""
    check_int(output, "output", minimum=0)
    if output >= n_outputs:
        raise UnitprobeError(f"output == {output}, model has {n_outputs} outputs (0-based)")


# ---------------------------------------------------------------------------------------------
# Lags, target steps, baselines
# ---------------------------------------------------------------------------------------------


def resolve_max_lag(max_lag: int | None, n_steps: int) -> int:
    """``max_lag`` checked against the sequence length; None is ``min(10, n_steps - 1)``."""
    check_int(max_lag, "max_lag", minimum=0, allow_none=True)
    if max_lag is None:
        return min(DEFAULT_MAX_LAG, n_steps - 1)
    if max_lag > n_steps - 1:
        raise UnitprobeError(f"max_lag == {max_lag}, must be <= n_steps - 1 == {n_steps - 1}")
    return int(max_lag)


def resolve_steps(
    steps: int | Sequence[int] | None, n_steps: int, max_lag: int, last: int | None
) -> np.ndarray:
    """Sorted unique target steps; None: the last ``last`` steps >= max_lag (all if None)."""
    if steps is None:
        first = max_lag if last is None else max(max_lag, n_steps - last)
        return np.arange(first, n_steps)
    raw = np.atleast_1d(np.asarray(steps))
    if raw.size == 0 or raw.ndim != 1 or not np.issubdtype(raw.dtype, np.integer):
        raise UnitprobeError(f"steps == {steps!r}, must be an int or a non-empty list of ints")
    bad = raw[(raw < -n_steps) | (raw >= n_steps)]
    if bad.size:
        raise UnitprobeError(f"steps {bad.tolist()} out of range for sequences of {n_steps} steps")
    return np.unique(raw % n_steps)


def as_steps(step: int | Sequence[int] | np.ndarray, n: int, n_steps: int) -> np.ndarray:
    """One target step per sequence, shape (n,), from an int or ``n`` ints."""
    s = np.asarray(step)
    if s.ndim == 0:
        s = np.full(n, int(s))
    if s.shape != (n,) or not np.issubdtype(s.dtype, np.integer):
        raise UnitprobeError(f"step must be an int or {n} ints (one per sequence), got {step!r}")
    if s.min() < 0 or s.max() >= n_steps:
        raise UnitprobeError(
            f"step values {s.min()}..{s.max()} out of range for sequences of {n_steps} steps"
        )
    return s.astype(np.int64)


def baseline_tensor(baseline: Baseline, x: Tensor) -> Tensor:
    """The baseline as a (T, F) or (N, T, F) tensor on x's device."""
    if isinstance(baseline, str):
        check_choice(baseline, "baseline", BASELINES)
        return torch.zeros_like(x[0]) if baseline == "zero" else x.mean(dim=0)
    b = torch.as_tensor(np.asarray(baseline), dtype=x.dtype, device=x.device)
    if b.shape not in (x.shape[1:], x.shape):
        raise DataError(
            f"baseline has shape {tuple(b.shape)}, expected (n_steps, n_features) == "
            f"{tuple(x.shape[1:])} or the inputs' shape {tuple(x.shape)}"
        )
    return b


def baseline_name(baseline: Baseline) -> str:
    """``baseline`` as recorded in a table's ``attrs``: its name, or ``"array"``."""
    return baseline if isinstance(baseline, str) else "array"


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def subsample(n: int, max_n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_n`` of ``n`` items, drawn without repetition."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def sampled_pairs(
    x: Tensor, baseline: Baseline, steps: np.ndarray, max_examples: int | None, seed: int
) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """The baseline tensor and :func:`pairs` for ``x`` (a baseline shared by the pairs)."""
    base = baseline_tensor(baseline, x)
    if base.ndim == 3:
        raise DataError("a per-sequence baseline cannot be used with pair sampling; pass (T, F)")
    return base, *pairs(x.shape[0], steps, max_examples, seed)


def pairs(
    n_sequences: int, steps: np.ndarray, max_examples: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sequence, step) pairs: no pair twice, steps balanced, sequences used evenly.

    Pair ``k`` has step ``steps[k % S]`` (so every step gets the same number of pairs, within
    one); each step takes its own run of consecutive positions in a random permutation of the
    sequences, the runs laid end to end (modulo N). Below ``N`` pairs no sequence repeats;
    ``max_examples=None`` gives all ``N * S`` pairs.

    Returns
    -------
    sequences, steps : ndarray of int, shape (n_pairs,)
    """
    n_steps = len(steps)
    total = n_sequences * n_steps
    m = total if max_examples is None else min(max_examples, total)
    perm = np.random.default_rng(seed).permutation(n_sequences)
    k = np.arange(m)
    s, r = k % n_steps, k // n_steps
    per_step = (m - np.arange(n_steps) + n_steps - 1) // n_steps  # pairs of each step
    offset = np.concatenate([[0], np.cumsum(per_step)[:-1]])
    return perm[(offset[s] + r) % n_sequences], steps[s]


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def delta_attrs(deltas: list[np.ndarray]) -> dict[str, float | None]:
    """``convergence_delta_max`` / ``convergence_delta_mean`` of absolute completeness errors."""
    if not deltas:
        return {"convergence_delta_max": None, "convergence_delta_mean": None}
    d = np.abs(np.concatenate(deltas))
    return {"convergence_delta_max": float(d.max()), "convergence_delta_mean": float(d.mean())}
