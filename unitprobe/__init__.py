"""unitprobe: what does each unit of a recurrent network hold?

The public API, importable from the package root (loaded lazily, so ``import unitprobe`` and
the command line start fast) or from its module. The package is layered (see
``docs/architecture.md``): foundation modules at the root (``errors``, ``validation``,
``config``, ``schemas``, ``tables``, ``seeds``), then ``tasks``, ``model``, ``methods``,
``views``, ``pipeline`` and ``cli``.

- tasks: :class:`TaskSpec`, :func:`parse_relation`, :func:`parse_expression`,
  :func:`generate`, :func:`load_csv`, :data:`PRESETS`, :func:`get_preset`,
  :func:`relation_residuals`
- model: :class:`UnitLSTM`, :class:`ModelConfig`, :func:`run`, :class:`Trace`,
  :class:`Intervention`, :func:`interventions`, :func:`lstm_cell`, :func:`planted_lstm`,
  :func:`save`, :func:`load`, :func:`train`, :class:`TrainConfig`
- methods: targets (:func:`make_targets`, :func:`default_targets`); probes
  (:func:`unit_probes`, :func:`population_probe`, :func:`partial_r2`,
  :func:`unique_contribution`, :func:`identifiability`, :func:`vif_table`,
  :func:`permutation_pvalues`, :class:`UnitProbe`); ablation (:func:`ablate`,
  :func:`ablation_table`); attribution (:func:`input_lag_attribution`,
  :func:`receptive_fields`, :func:`unit_attribution`, :func:`attribution_tables`); roles
  (:func:`assign_causal_roles`, :func:`term_table`, :func:`assign_roles`,
  :func:`summarize_roles`, :func:`unit_formula`); interventions (:func:`interchange_table`,
  :func:`direction_table`, :func:`learn_direction`, :func:`counterfactual_pairs`); baselines
  (:func:`baseline_table`)
- pipeline: :func:`analyze`, :func:`compute_analysis`, :func:`analyze_runs`,
  :func:`probe_model`, :func:`null_networks`, :func:`null_statistics`, and the config
  tree :class:`AnalyzeConfig` (:class:`ProbeConfig`, :class:`AblationConfig`,
  :class:`AttributionConfig`, :class:`RoleConfig`); results: :class:`Tables`
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

from unitprobe import _compat
from unitprobe.errors import (
    CheckpointError,
    DataError,
    TaskSpecError,
    TrainingError,
    UnitprobeError,
)

__version__ = "0.1.0"

_LAZY = {
    "unitprobe.config": [
        "AnalyzeConfig", "ProbeConfig", "AblationConfig", "AttributionConfig", "RoleConfig",
    ],
    "unitprobe.tables": ["Tables"],
    "unitprobe.tasks": [
        "PRESETS", "Dataset", "TaskSpec", "generate", "get_preset", "load_csv", "parse_expression",
        "parse_relation", "parse_system", "relation_residuals", "check_summary", "baseline_mse",
    ],
    "unitprobe.model.lstm": [
        "Intervention", "ModelConfig", "Trace", "UnitLSTM", "interventions", "lstm_cell", "run",
    ],
    "unitprobe.model.planted": ["planted_lstm"],
    "unitprobe.model.checkpoint": ["Checkpoint", "load", "save"],
    "unitprobe.model.train": ["TrainConfig", "TrainResult", "train", "train_task"],
    "unitprobe.methods.targets": ["Targets", "default_targets", "make_targets"],
    "unitprobe.methods.probes": [
        "UnitProbe", "identifiability", "l1_path_ranking", "partial_r2", "permutation_pvalues",
        "population_probe", "unique_contribution", "unit_probes", "vif_table",
    ],
    "unitprobe.methods.ablation": ["ablate", "ablation_table"],
    "unitprobe.methods.attribution": [
        "attribution_tables", "input_lag_attribution", "receptive_fields", "unit_attribution",
    ],
    "unitprobe.methods.roles": [
        "assign_causal_roles", "assign_roles", "summarize_roles", "term_table", "unit_formula",
    ],
    "unitprobe.methods.interventions": [
        "counterfactual_pairs", "direction_table", "interchange_table", "learn_direction",
    ],
    "unitprobe.methods.baselines": ["baseline_table"],
    "unitprobe.pipeline.probing": ["probe_model"],
    "unitprobe.pipeline.analyze": ["Analysis", "analyze", "compute_analysis"],
    "unitprobe.pipeline.multiseed": ["analyze_runs"],
    "unitprobe.pipeline.nulls": ["null_networks", "null_statistics"],
}  # fmt: skip
_compat.install()
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = [
    "__version__",
    "CheckpointError",
    "DataError",
    "TaskSpecError",
    "TrainingError",
    "UnitprobeError",
    *sorted(_WHERE),
]


class _Package(ModuleType):
    """The package: a submodule never shadows the public name it shares.

    Importing the short path ``unitprobe.train`` (or ``unitprobe.analyze``) would bind the
    module as the package attribute, so that ``from unitprobe import train`` returned the
    module instead of the function. The function stays; the module is in ``sys.modules``
    (``from unitprobe.train import TrainConfig`` works as before).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _WHERE and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unitprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
