"""Relation-defined sequence tasks: the relation language, specs, presets, data.

Public entry points: :class:`TaskSpec`, :func:`parse_relation`, :func:`parse_expression`,
:func:`parse_system`, :func:`generate`, :class:`Dataset`, :func:`baseline_mse`,
:func:`load_csv`, :data:`PRESETS`, :func:`get_preset`, :func:`relation_residuals`,
:func:`check_summary`, :class:`DataSource`, :func:`dataset_for`, :func:`training_dataset`,
:func:`require_sequences`.
"""

from unitprobe.tasks.check import check_summary, parse_series_arg, relation_residuals
from unitprobe.tasks.csvdata import data_task, is_data_task, load_csv, read_task_file
from unitprobe.tasks.datasets import (
    DataSource,
    dataset_for,
    require_sequences,
    training_dataset,
)
from unitprobe.tasks.generate import (
    MAX_GENERATED_VALUES,
    Dataset,
    baseline_mse,
    dataset_from_raw,
    fit_normalization,
    generate,
)
from unitprobe.tasks.presets import PRESETS, SEED_ANSWER, SEED_ANSWER_NOTE, get_preset
from unitprobe.tasks.relations import (
    Expression,
    Relation,
    parse_expression,
    parse_relation,
    parse_system,
)
from unitprobe.tasks.spec import TaskSpec

__all__ = [
    "MAX_GENERATED_VALUES",
    "PRESETS",
    "SEED_ANSWER",
    "SEED_ANSWER_NOTE",
    "DataSource",
    "Dataset",
    "Expression",
    "Relation",
    "TaskSpec",
    "baseline_mse",
    "check_summary",
    "data_task",
    "dataset_for",
    "dataset_from_raw",
    "fit_normalization",
    "generate",
    "get_preset",
    "is_data_task",
    "load_csv",
    "parse_expression",
    "parse_relation",
    "parse_series_arg",
    "parse_system",
    "read_task_file",
    "relation_residuals",
    "require_sequences",
    "training_dataset",
]
