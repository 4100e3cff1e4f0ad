"""One config tree for an analysis; its defaults are the library's defaults.

:class:`AnalyzeConfig` nests one dataclass per stage (:class:`ProbeConfig`,
:class:`AblationConfig`, :class:`AttributionConfig`, :class:`RoleConfig`). Every library
function that has the same parameter takes its default from here (``n_permutations:
int = ProbeConfig.n_permutations``), so a parameter has exactly one default, whichever way it
is reached: the command line, :func:`unitprobe.analyze`, or a method called on its own.

:meth:`AnalyzeConfig.from_options` builds the tree from flat option names (``n_permutations``,
``ablation_modes``, ...), as the command line and sweeps spell them; :meth:`AnalyzeConfig.to_dict`
is the plain-data form stored in ``summary.json`` and hashed into sweep keys.

Example
-------
>>> config = AnalyzeConfig.from_options(n_sequences=128, n_permutations=19)
>>> config.probes.n_permutations
19
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from unitprobe import schemas
from unitprobe.errors import UnitprobeError
from unitprobe.validation import check_choice, check_choices, check_float, check_int

__all__ = [
    "ProbeConfig",
    "AblationConfig",
    "AttributionConfig",
    "RoleConfig",
    "AnalyzeConfig",
    "CORRECTIONS",
]

#: Multiple-testing corrections of probe p-values: Benjamini-Hochberg, Holm, none.
CORRECTIONS = ("bh", "holm", "none")


@dataclass(frozen=True)
class ProbeConfig:
    """Probe settings.

    Parameters
    ----------
    targets : tuple of str, optional
        Probe targets in the relation language; default: the task's default target set.
    state : {"h", "c", "both"}
        Which unit states to probe.
    n_splits : int
        GroupKFold folds over sequences for every probe.
    alpha : float
        Ridge penalty of the per-unit probes.
    n_controls : int
        Untrained networks of the same configuration averaged into ``r2_control``.
    n_permutations : int
        Whole-sequence target permutations for ``p_value``.
    correction : {"bh", "holm", "none"}
        Correction of the p-values over units x targets: Benjamini-Hochberg (the default;
        Holm cannot reach 0.05 with a few hundred permutations and tens of tests), Holm, none.
    """

    targets: tuple[str, ...] | None = None
    state: str = "h"
    n_splits: int = 5
    alpha: float = 1e-3
    n_controls: int = 3
    n_permutations: int = 99
    correction: str = "bh"

    def __post_init__(self) -> None:
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(self.targets))
        check_choice(self.state, "state", schemas.STATE_CHOICES)
        check_int(self.n_splits, "n_splits", minimum=2)
        check_float(self.alpha, "alpha", minimum=0)
        check_int(self.n_controls, "n_controls", minimum=0)
        check_int(self.n_permutations, "n_permutations", minimum=1)
        check_choice(self.correction, "correction", CORRECTIONS)

    @property
    def states(self) -> tuple[str, ...]:
        """The states to probe, as a tuple of state names."""
        return schemas.STATES if self.state == "both" else (self.state,)


@dataclass(frozen=True)
class AblationConfig:
    """Ablation settings.

    Parameters
    ----------
    modes : tuple of str
        Any of ``zero``, ``mean``, ``resample``.
    max_sequences : int
        Sequences used by the ablation stage (the first ones). Every unit and mode costs a
        forward pass through the recurrence, so this stage grows with units x units; a few
        hundred sequences already pin the MSE changes down.
    memory_budget_mb : float
        Memory the batched ablation forward passes may take at once.
    engine : {"fused", "stepwise"}
        ``fused``: each ablated unit set runs through a modified fused ``nn.LSTM`` (exact, and
        several times faster); ``stepwise``: the hookable reference forward pass.
    exact : {"screen", "all"}
        ``screen``: an output-linearized screen estimates every unit's effect from a few
        backward passes, and only the units whose ``used`` flag (``usage > 0``) it cannot tell
        for sure, or among the ``screen_top_k``, are ablated exactly (the others' rows hold
        the screen's estimate, ``exact`` False in ``ablation.csv``); ``all``: every unit
        exactly.
    screen_margin : float
        How far the screen's estimate must be from a decision to be trusted: the sign of a
        unit's usage is trusted when its estimate exceeds ``1 - 1 / screen_margin`` times
        its quadratic part (see :func:`~unitprobe.methods.ablation.ablation_table`).
    screen_top_k : int
        The largest screened effects are always ablated exactly.
    """

    modes: tuple[str, ...] = schemas.ABLATION_MODES
    max_sequences: int = 512
    memory_budget_mb: float = 512.0
    engine: str = "fused"
    exact: str = "screen"
    screen_margin: float = 3.0
    screen_top_k: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "modes", check_choices(self.modes, "ablation mode", schemas.ABLATION_MODES)
        )
        check_int(self.max_sequences, "max_ablation_sequences", minimum=2)
        check_float(self.memory_budget_mb, "memory_budget_mb", minimum=0, strict_minimum=True)
        check_choice(self.engine, "ablation engine", ("fused", "stepwise"))
        check_choice(self.exact, "exact_ablation", ("screen", "all"))
        check_float(self.screen_margin, "screen_margin", minimum=1)
        check_int(self.screen_top_k, "screen_top_k", minimum=0)


@dataclass(frozen=True)
class AttributionConfig:
    """Attribution settings.

    Parameters
    ----------
    methods : tuple of str
        Input x lag methods: ``integrated_gradients``, ``saliency``, ``input_x_gradient``.
    unit_methods : tuple of str
        Unit attribution methods (Captum layer methods).
    field_methods : tuple of str
        Receptive-field methods: ``gradient`` (the data-averaged Jacobian) and/or
        ``integrated_gradients``.
    baseline : {"mean", "zero"}
        Integrated-gradients baseline: the per-step mean input (the input a sequence would
        have with no information) or zeros.
    n_steps_ig : int
        Quadrature points of integrated gradients for outputs and units.
    field_n_steps_ig : int
        Quadrature points of integrated-gradient receptive fields.
    max_sequences : int
        Sequences used by the attribution stage (gradients cost more than forward passes).
    max_examples : int
        (sequence, step) pairs sampled per attribution.
    batch_size : int
        Sequences per Captum call (memory grows with it; results do not, up to rounding).
    field_batch_size : int
        Sequences per forward-mode pass of the receptive fields (memory grows with it;
        results do not, up to rounding).
    memory_budget_mb : float
        Memory one attribution batch may take; batches shrink to fit it.
    """

    methods: tuple[str, ...] = ("integrated_gradients",)
    unit_methods: tuple[str, ...] = ("layer_integrated_gradients",)
    field_methods: tuple[str, ...] = ("gradient",)
    baseline: str = "mean"
    n_steps_ig: int = 32
    field_n_steps_ig: int = 16
    max_sequences: int = 128
    max_examples: int = 512
    batch_size: int = 64
    field_batch_size: int = 128
    memory_budget_mb: float = 256.0

    def __post_init__(self) -> None:
        for name, allowed in (
            ("methods", schemas.ATTRIBUTION_METHODS),
            ("unit_methods", schemas.UNIT_ATTRIBUTION_METHODS),
            ("field_methods", schemas.FIELD_METHODS),
        ):
            label = "attribution method" if name == "methods" else name[:-1].replace("_", " ")
            value = check_choices(getattr(self, name), label, allowed, allow_empty=True)
            object.__setattr__(self, name, value)
        check_choice(self.baseline, "baseline", schemas.BASELINES)
        check_int(self.n_steps_ig, "n_steps_ig", minimum=2)
        check_int(self.field_n_steps_ig, "field_n_steps_ig", minimum=2)
        check_int(self.max_sequences, "max_attribution_sequences", minimum=2)
        check_int(self.max_examples, "max_examples", minimum=1)
        check_int(self.batch_size, "batch_size", minimum=1)
        check_int(self.field_batch_size, "field_batch_size", minimum=1)
        check_float(self.memory_budget_mb, "memory_budget_mb", minimum=0, strict_minimum=True)


@dataclass(frozen=True)
class RoleConfig:
    """Settings of the role rules.

    The causal engine (:func:`unitprobe.methods.roles.assign_causal_roles`, used by
    :func:`unitprobe.analyze`) takes its thresholds from null networks, not from constants:

    Parameters
    ----------
    null_widths : tuple of int
        Widths of the untrained networks whose units give the receptive-field null (and the
        analyzed width where it is narrower than all of them). Each width's null calibrates
        every term and pair at ``unit_level``, and a test's threshold is the largest over
        the widths: untrained units of narrow layers read the current inputs more purely
        (PyTorch's initialization scales with the width), those of wide layers the old lags,
        so one fixed set of widths keeps every unit's verdict the same in a layer of 6 units
        or 64 and conservative at each.
    null_units : int
        Untrained units per null width (``ceil(null_units / width)`` networks each; cheap: the
        networks are joined block-diagonally and one forward-mode pass gives their fields).
    unit_level : float
        Per-unit false-positive level of the receptive-field match: a unit of an untrained
        network of a null width passes any term's or pair's test with probability at most
        this (:class:`~unitprobe.methods.roles.fieldnull.FieldNull`).
    null_field_sequences : int
        Sequences of each null network's receptive field (at most the network's own,
        ``AttributionConfig.max_sequences``). A null unit's field is a mean over sequences and
        steps; fewer sequences make the null fields noisier than the network's own and the
        thresholds higher.
    material_effect : float
        A term is a rival in the interchange (and a term a direction must not carry) only
        where its output effect (RMS of the model's own output change) is at least this
        share of the layer's largest term effect: a term whose only way to the output is the
        leak of gates shut by a bias of 4 or more (``sigmoid(-4) ≈ 0.018`` of the cell per
        step) has a smaller effect, and its transfer says nothing of what a unit holds.
    formula_share : float
        Smallest weight of a unit's runner-up term in its receptive field, relative to its
        best term's, that makes its role the formula over both (where that beats its own
        null): above what the leaks of gates shut by a bias of 4 or more add up to along a
        lag chain (``sigmoid(-4) ≈ 0.018`` per step and gate; about 0.05 three steps down a
        chain).
    n_null_interventions : int
        Null networks (at the analyzed width) for the reported nulls of interchange
        transfers, probes and ablation usage.
    n_pairs : int
        Counterfactual (base, source) pairs per term for the interchange interventions.
    exact_interchange : {"screen", "all"}
        ``screen``: a first-order screen (one backward pass per term) estimates every single
        unit's transfer, and only the units a role may read (their receptive field beats the
        null) and the ``interchange_top_k`` largest estimates per term are patched exactly
        (the others' rows hold the estimate, ``exact`` False); role tables are those of
        ``all``: every unit patched exactly.
    interchange_top_k : int
        Units per term and layer with the largest estimated transfer that are patched exactly.
    directions : bool
        Learn a direction per term that no unit holds (distributed alignment search) and
        decide whether it is held there (the ``terms`` table).
    n_null_directions : int
        Most null networks (untrained, at the analyzed width, least-squares readout) on which
        the same direction search runs. They are drawn one batch at a time until one of them
        scores as well as the network (a sequential Monte Carlo test), so a term that no null
        network matches costs all of them and the others far fewer.
    direction_specificity : float
        Smallest specificity of a direction that holds its term: ``1 - leak / transfer``
        (the largest share of another material term's effect it carries, per share of its
        own), at the lower end of its 95 % bootstrap interval. 0.5: the direction carries its
        term at least twice as much as any other term. Only such directions are tested
        against null networks.
    direction_level : float
        Largest p-value of a ``distributed`` verdict; it needs ``n_null_directions >=
        1 / direction_level - 1`` (the smallest p-value is ``1 / (n_null_directions + 1)``).
    direction_restarts : int
        Seeded random starts of each direction search; the best training loss is kept and the
        starts' agreement (subspace overlap) is reported.
    direction_epochs : int
        Most evaluations of the training loss (patched runs of the training pairs) in each
        direction search; the L-BFGS fit stops earlier once the loss stops falling
        (:func:`~unitprobe.methods.interventions.learn_direction`).

    The probe-first engine (:func:`unitprobe.methods.roles.assign_roles`, for evidence tables
    without interventions) uses fixed thresholds:

    alpha : float
        Largest corrected probe p-value that counts as significant.
    min_selectivity, min_r2, min_partial_r2 : float
        Probe evidence a role needs.
    min_field_similarity : float
        Cosine between a unit's receptive field and a target's field that names the target.
    min_usage : float
        Relative MSE increase on ablation that counts as "used by the output".
    """

    null_widths: tuple[int, ...] = (4, 16, 64)
    null_units: int = 1024
    unit_level: float = 0.01
    null_field_sequences: int = 64
    material_effect: float = 0.05
    formula_share: float = 0.1
    n_null_interventions: int = 3
    n_pairs: int = 256
    exact_interchange: str = "screen"
    interchange_top_k: int = 16
    directions: bool = True
    n_null_directions: int = 39
    direction_specificity: float = 0.5
    direction_level: float = 0.025
    direction_restarts: int = 2
    direction_epochs: int = 80
    alpha: float = 0.05
    min_selectivity: float = 0.1
    min_r2: float = 0.5
    min_partial_r2: float = 0.05
    min_field_similarity: float = 0.8
    min_usage: float = 0.05

    def __post_init__(self) -> None:
        if not isinstance(self.null_widths, tuple) or not self.null_widths:
            raise UnitprobeError(
                f"null_widths == {self.null_widths!r}, must be a non-empty tuple of widths"
            )
        for width in self.null_widths:
            check_int(width, "null width", minimum=1)
        check_int(self.null_units, "null_units", minimum=1)
        check_float(
            self.unit_level, "unit_level", minimum=0, maximum=1, strict_minimum=True,
            strict_maximum=True,
        )  # fmt: skip
        fewest = math.ceil(1 / self.unit_level - 1 - 1e-9)
        if self.null_units < fewest:
            raise UnitprobeError(
                f"null_units == {self.null_units} is too few for unit_level "
                f"{self.unit_level:g}: a unit can beat the null at that level only with at "
                f"least {fewest} null units"
            )
        check_float(self.material_effect, "material_effect", minimum=0, maximum=1)
        check_float(self.formula_share, "formula_share", minimum=0, maximum=1)
        check_int(self.null_field_sequences, "null_field_sequences", minimum=2)
        check_int(self.n_null_interventions, "n_null_interventions", minimum=0)
        check_int(self.n_pairs, "n_pairs", minimum=2)
        check_choice(self.exact_interchange, "exact_interchange", ("screen", "all"))
        check_int(self.interchange_top_k, "interchange_top_k", minimum=1)
        check_int(self.n_null_directions, "n_null_directions", minimum=0)
        check_float(self.direction_specificity, "direction_specificity", minimum=0, maximum=1)
        check_float(
            self.direction_level, "direction_level", minimum=0, maximum=1,
            strict_minimum=True, strict_maximum=True,
        )  # fmt: skip
        check_int(self.direction_restarts, "direction_restarts", minimum=1)
        check_int(self.direction_epochs, "direction_epochs", minimum=1)
        if not isinstance(self.directions, bool):
            raise UnitprobeError(f"directions == {self.directions!r}, must be True or False")
        fewest = math.ceil(1 / self.direction_level - 1 - 1e-9)
        if self.directions and self.n_null_directions < fewest:
            raise UnitprobeError(
                f"n_null_directions == {self.n_null_directions} is too few for direction_level "
                f"{self.direction_level:g}: a direction can beat the null at that level only "
                f"with at least {fewest} null networks"
            )
        check_float(self.alpha, "alpha", minimum=0, maximum=1, strict_minimum=True)
        check_float(self.min_selectivity, "min_selectivity", minimum=-1, maximum=1)
        for name in ("min_r2", "min_partial_r2", "min_field_similarity"):
            check_float(getattr(self, name), name, minimum=0, maximum=1)
        check_float(self.min_usage, "min_usage", minimum=0)


def material_terms(
    effects: Mapping[str, float], share: float = RoleConfig.material_effect
) -> set[str]:
    """The terms whose output effect is at least ``share`` times the largest one's.

    The rule behind ``RoleConfig.material_effect``: a term whose effect is far smaller (a
    forget gate that leaks ``sigmoid(-10)`` of an old input) has a transfer that is a ratio of
    float rounding, so it is no rival and no evidence. ``effects`` maps term -> RMS output
    change (NaN or 0 where the output ignores it).
    """
    finite = {t: e for t, e in effects.items() if math.isfinite(e) and e > 0}
    if not finite:
        return set()
    largest = max(finite.values())
    return {t for t, e in finite.items() if e >= share * largest}


@dataclass(frozen=True)
class AnalyzeConfig:
    """Options of :func:`unitprobe.analyze` (all shown by ``unitprobe analyze --help``).

    Parameters
    ----------
    n_sequences : int
        Sequences generated from the checkpoint's task (ignored when a dataset is given).
    seed : int
        The one seed of the analysis; every random stream (data, controls, permutations,
        ablation, attribution) is derived from it (:mod:`unitprobe.seeds`).
    formats : tuple of str
        Figure formats (``png``, ``pdf``, ``svg``).
    jobs : int
        CPU cores to use: torch threads, and processes drawing independent figures at once.
    probes, ablation, attribution, roles
        The stage settings.
    """

    n_sequences: int = 256
    seed: int = 0
    formats: tuple[str, ...] = ("png",)
    jobs: int = 1
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    roles: RoleConfig = field(default_factory=RoleConfig)

    def __post_init__(self) -> None:
        check_int(self.n_sequences, "n_sequences", minimum=2)
        check_int(self.seed, "seed", minimum=0, maximum=2**63 - 1)
        check_int(self.jobs, "jobs", minimum=1)
        object.__setattr__(
            self, "formats", check_choices(self.formats, "format", schemas.FIGURE_FORMATS)
        )

    # Flat option name -> (stage, field) for options that live in a stage.
    _FLAT = {
        "targets": ("probes", "targets"),
        "state": ("probes", "state"),
        "n_splits": ("probes", "n_splits"),
        "alpha": ("probes", "alpha"),
        "n_controls": ("probes", "n_controls"),
        "n_permutations": ("probes", "n_permutations"),
        "correction": ("probes", "correction"),
        "ablation_modes": ("ablation", "modes"),
        "max_ablation_sequences": ("ablation", "max_sequences"),
        "ablation_engine": ("ablation", "engine"),
        "exact_ablation": ("ablation", "exact"),
        "attribution_methods": ("attribution", "methods"),
        "max_attribution_sequences": ("attribution", "max_sequences"),
        "attribution_baseline": ("attribution", "baseline"),
        "null_units": ("roles", "null_units"),
        "n_null_interventions": ("roles", "n_null_interventions"),
        "n_pairs": ("roles", "n_pairs"),
        "exact_interchange": ("roles", "exact_interchange"),
        "directions": ("roles", "directions"),
    }

    @classmethod
    def options(cls) -> list[str]:
        """Every flat option name :meth:`from_options` and :meth:`replace` accept."""
        stages = ("probes", "ablation", "attribution", "roles")
        top = [f.name for f in fields(cls) if f.name not in stages]
        return sorted([*top, *cls._FLAT])

    @classmethod
    def from_options(cls, **options: Any) -> AnalyzeConfig:
        """Build the tree from flat option names (see :meth:`options`)."""
        return cls().replace(**options)

    def replace(self, **options: Any) -> AnalyzeConfig:
        """A copy with flat options changed (``config.replace(n_permutations=19)``)."""
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise UnitprobeError(
                f"unknown analysis option(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(self.options())}"
            )
        stages: dict[str, dict[str, Any]] = {}
        top = {}
        for name, value in options.items():
            if name in self._FLAT:
                stage, key = self._FLAT[name]
                stages.setdefault(stage, {})[key] = value
            else:
                top[name] = value
        for stage, values in stages.items():
            top[stage] = replace(getattr(self, stage), **values)
        return replace(self, **top)

    @property
    def states(self) -> tuple[str, ...]:
        """The states to probe."""
        return self.probes.states

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists), as stored in ``summary.json``."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalyzeConfig:
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        stages = {
            "probes": ProbeConfig,
            "ablation": AblationConfig,
            "attribution": AttributionConfig,
            "roles": RoleConfig,
        }
        for name, kind in stages.items():
            if name in data:
                data[name] = kind(**_tuples(data[name]))
        return cls(**_tuples(data))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
