"""Sweep plans: every (task, units, seed) as plain data, keyed by a hash of its full config.

:func:`plan_sweep` expands tasks x layer sizes x seeds into :class:`RunConfig` objects; each
is keyed by :func:`config_key` (the first 12 hex digits of the SHA-256 of its canonical JSON),
so a finished configuration is recognized and skipped when a sweep is resumed
(:mod:`unitprobe.pipeline.sweep`). :func:`sweep_analysis_config` is the light analysis a sweep
runs on every network.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from unitprobe import __version__
from unitprobe._utils import to_plain
from unitprobe.config import AnalyzeConfig
from unitprobe.errors import UnitprobeError
from unitprobe.model.train import TrainConfig
from unitprobe.tasks import TaskSpec, get_preset
from unitprobe.validation import check_int, is_int

__all__ = [
    "ANALYSIS_SEED",
    "RunConfig",
    "canonical_json",
    "config_key",
    "plan_sweep",
    "quick_options",
    "sweep_analysis_config",
]

#: Seed of the analysis data in sweeps: distinct from every training seed's data, and the
#: same for every run, so all networks are probed on the same fresh sequences.
ANALYSIS_SEED = 1_000_003
_NOT_TRAIN_OVERRIDES = ("n_units", "seed")


def canonical_json(data: Any) -> str:
    """JSON with sorted keys, no whitespace, tuples as lists: equal data, equal text."""
    return json.dumps(
        to_plain(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def config_key(config: Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of ``config`` as canonical JSON.

    Examples
    --------
    >>> config_key({"b": 1, "a": (1, 2)}) == config_key({"a": [1, 2], "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(config).encode("ascii")).hexdigest()[:12]


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run of a sweep, as plain data.

    Attributes
    ----------
    task : dict
        ``TaskSpec.to_dict()``.
    units : int
        Units per layer.
    seed : int
        Training seed (data, initialization, minibatch order).
    train : dict
        ``TrainConfig.to_dict()`` (its ``n_units`` and ``seed`` equal ``units`` and ``seed``).
    n_sequences : int
        Sequences generated for training (and validation).
    analysis : dict
        ``AnalyzeConfig`` as plain data.
    version : str
        unitprobe version.
    """

    task: dict
    units: int
    seed: int
    train: dict
    n_sequences: int
    analysis: dict
    version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what :attr:`key` hashes)."""
        return to_plain(asdict(self))

    @property
    def key(self) -> str:
        """:func:`config_key` of :meth:`to_dict`."""
        return config_key(self.to_dict())

    @property
    def task_name(self) -> str:
        """The task's name."""
        return str(self.task["name"])

    @property
    def name(self) -> str:
        """Run directory name, ``<task>-u<units>-s<seed>-<key>``."""
        task = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.task_name)
        return f"{task}-u{self.units}-s{self.seed}-{self.key}"

    def train_config(self) -> TrainConfig:
        """The :class:`~unitprobe.model.train.TrainConfig` of this run."""
        return TrainConfig(**self.train)

    def analyze_config(self) -> AnalyzeConfig:
        """The :class:`~unitprobe.config.AnalyzeConfig` of this run."""
        return AnalyzeConfig.from_dict(self.analysis)


def sweep_analysis_config(**overrides: Any) -> AnalyzeConfig:
    """The light analysis a sweep runs on every network, with ``overrides`` applied.

    Defaults: 256 sequences, analysis seed :data:`ANALYSIS_SEED`, 1 untrained control, 999
    permutations (the smallest p-value is 1/1000 before the Benjamini-Hochberg correction over
    units x targets), ablation modes zero and mean, integrated gradients on 64 sequences, no
    learned directions (a sweep collects unit roles, not term verdicts), one torch thread.
    Everything else is the library default (:mod:`unitprobe.config`).

    Parameters
    ----------
    **overrides
        Any flat option of :meth:`unitprobe.config.AnalyzeConfig.options`.
    """
    base = dict(
        n_sequences=256,
        seed=ANALYSIS_SEED,
        n_controls=1,
        n_permutations=999,
        ablation_modes=("zero", "mean"),
        attribution_methods=("integrated_gradients",),
        max_attribution_sequences=64,
        directions=False,
        jobs=1,
    )
    return AnalyzeConfig().replace(**{**base, **overrides})


def quick_options() -> dict[str, Any]:
    """Settings of a quick sweep (``--quick``): few sequences, few epochs, a light analysis.

    Returns
    -------
    dict
        Keyword arguments for :func:`run_sweep`: ``n_sequences``, ``train_overrides``,
        ``analysis``.
    """
    return {
        "n_sequences": 128,
        "train_overrides": {"epochs": 60, "patience": 15, "batch_size": 16, "lr": 2e-2},
        "analysis": sweep_analysis_config(
            n_sequences=64, n_permutations=199, max_attribution_sequences=16, n_splits=3
        ),
    }


def _task_specs(tasks: Sequence[Any]) -> list[Any]:
    if isinstance(tasks, (str, TaskSpec)):
        tasks = [tasks]
    if not tasks:
        raise UnitprobeError("no tasks given; name at least one (e.g. --task seed,delay-3)")
    specs = [t if isinstance(t, TaskSpec) else get_preset(str(t).strip()) for t in tasks]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UnitprobeError(f"task(s) {', '.join(dupes)} given more than once")
    return specs


def _int_list(values: Iterable[Any], name: str, minimum: int) -> list[int]:
    out = []
    for v in values:
        if not is_int(v) or v < minimum:
            raise UnitprobeError(f"{name} value {v!r} is not an integer >= {minimum}")
        out.append(int(v))
    if not out:
        raise UnitprobeError(f"no {name} given")
    if len(set(out)) != len(out):
        raise UnitprobeError(f"{name} == {out} has repeated values")
    return out


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    if is_int(seeds):
        if seeds < 1:
            raise UnitprobeError(f"seeds == {seeds}, must be >= 1 (a count) or a list of seeds")
        return list(range(int(seeds)))
    return _int_list(seeds, "seeds", 0)


def plan_sweep(
    tasks: Sequence[Any],
    units: Sequence[int],
    seeds: int | Sequence[int],
    *,
    n_sequences: int = 512,
    train_overrides: Mapping[str, Any] | None = None,
    analysis: AnalyzeConfig | None = None,
) -> list[RunConfig]:
    """Expand tasks × units × seeds into run configurations (in that nesting order).

    Parameters
    ----------
    tasks : sequence of str or TaskSpec
        Preset names (``seed``, ``fibonacci``, ``delay-3``, ...) or specs.
    units : sequence of int
        Layer sizes, each >= 1.
    seeds : int or sequence of int
        A count ``n`` (seeds ``0 .. n-1``) or explicit seeds (>= 0).
    n_sequences : int, default 512
        Sequences generated per training run (>= 2).
    train_overrides : mapping, optional
        :class:`~unitprobe.model.train.TrainConfig` fields other than ``n_units`` and ``seed``
        (e.g. ``{"epochs": 100}``).
    analysis : AnalyzeConfig, optional
        Default :func:`sweep_analysis_config`; its ``jobs`` is set to 1.

    Returns
    -------
    list of RunConfig
    """
    specs = _task_specs(tasks)
    unit_list = _int_list([units] if isinstance(units, int) else units, "units", 1)
    seed_list = _seed_list(seeds)
    check_int(n_sequences, "n_sequences", minimum=2)
    overrides = dict(train_overrides or {})
    allowed = sorted({f.name for f in fields(TrainConfig)} - set(_NOT_TRAIN_OVERRIDES))
    bad = sorted(set(overrides) - set(allowed))
    if bad:
        raise UnitprobeError(
            f"train option(s) {', '.join(bad)} cannot be overridden in a sweep; "
            f"allowed: {', '.join(allowed)} (units and seeds are the sweep's axes)"
        )
    analysis = replace(analysis or sweep_analysis_config(), jobs=1)
    analysis_dict = analysis.to_dict()
    configs = []
    for spec in specs:
        task = spec.to_dict()
        for u in unit_list:
            for s in seed_list:
                train = TrainConfig(**{**overrides, "n_units": u, "seed": s}).to_dict()
                configs.append(
                    RunConfig(
                        task=task,
                        units=u,
                        seed=s,
                        train=train,
                        n_sequences=int(n_sequences),
                        analysis=analysis_dict,
                    )
                )
    return configs
