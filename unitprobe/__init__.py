"""unitprobe: what does each unit of a recurrent network hold?

The public API, importable from the package root (loaded lazily, so ``import unitprobe`` and
the command line start fast) or from its module:

- tasks: :class:`TaskSpec`, :func:`parse_relation`, :func:`parse_expression`,
  :func:`generate`, :func:`load_csv`, :data:`PRESETS`, :func:`get_preset`,
  :func:`relation_residuals`; targets: :func:`make_targets`, :func:`default_targets`
- models: :class:`UnitLSTM`, :class:`ModelConfig`, :func:`run`, :class:`Trace`,
  :class:`Intervention`, :func:`interventions`, :func:`planted_lstm`
- checkpoints and training: :func:`save`, :func:`load`, :func:`train`, :class:`TrainConfig`
- probes: :func:`unit_probes`, :func:`population_probe`, :func:`partial_r2`,
  :func:`unique_contribution`, :func:`identifiability`, :func:`permutation_pvalues`,
  :func:`probe_model`, :class:`UnitProbe`
- interventions: :func:`ablate`, :func:`ablation_table`; attributions:
  :func:`input_lag_attribution`, :func:`receptive_fields`, :func:`unit_attribution`,
  :func:`attribution_table`
- roles and analysis: :func:`assign_roles`, :func:`analyze`, :class:`AnalyzeConfig`
"""

from __future__ import annotations

import importlib
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
    "unitprobe.tasks": [
        "PRESETS", "Dataset", "TaskSpec", "generate", "get_preset", "load_csv", "parse_expression",
        "parse_relation", "parse_system", "relation_residuals", "check_summary", "baseline_mse",
    ],
    "unitprobe.methods.targets": ["Targets", "default_targets", "make_targets"],
    "unitprobe.model.lstm": [
        "Intervention", "ModelConfig", "Trace", "UnitLSTM", "interventions", "run",
    ],
    "unitprobe.model.planted": ["planted_lstm"],
    "unitprobe.model.checkpoint": ["Checkpoint", "load", "save"],
    "unitprobe.model.train": ["TrainConfig", "TrainResult", "train", "train_task"],
    "unitprobe.methods.probes": [
        "UnitProbe", "identifiability", "l1_path_ranking", "partial_r2", "permutation_pvalues",
        "population_probe", "probe_model", "unique_contribution", "unit_probes",
    ],
    "unitprobe.methods.ablation": ["ablate", "ablation_table"],
    "unitprobe.methods.attribution": [
        "attribution_table", "input_lag_attribution", "receptive_fields", "unit_attribution",
        "unit_formula",
    ],
    "unitprobe.methods.roles": ["assign_roles", "summarize_roles"],
    "unitprobe.pipeline.analyze": ["AnalyzeConfig", "analyze", "compute_analysis"],
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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'unitprobe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
