"""Relation-defined sequence tasks: the relation language, specs, presets, data.

Public entry points: :class:`TaskSpec`, :func:`parse_relation`, :func:`parse_expression`,
:func:`parse_system`, :func:`generate`, :class:`Dataset`, :func:`baseline_mse`,
:func:`load_csv`, :data:`PRESETS`, :func:`get_preset`, :func:`relation_residuals`,
:func:`check_summary`, :class:`DataSource`, :func:`dataset_for`, :func:`training_dataset`,
:func:`require_sequences`, :func:`split_in_time`, :func:`split_in_time_validated`,
:func:`scaling_norm`, :func:`load_csv_split`, :func:`load_csv_split_validation`. Task files
are read by :mod:`unitprobe.tasks.taskfile`.
"""

from unitprobe.tasks.check import check_summary, parse_series_arg, relation_residuals
from unitprobe.tasks.csvdata import load_csv
from unitprobe.tasks.datasets import (
    SCALINGS,
    DataSource,
    dataset_for,
    require_sequences,
    scaling_norm,
    split_in_time,
    split_in_time_validated,
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
from unitprobe.tasks.taskfile import data_task, is_data_task, read_task_file

__all__ = [
    "MAX_GENERATED_VALUES",
    "PRESETS",
    "SEED_ANSWER",
    "SEED_ANSWER_NOTE",
    "SCALINGS",
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
    "load_csv_split",
    "load_csv_split_validation",
    "parse_expression",
    "parse_relation",
    "parse_series_arg",
    "parse_system",
    "read_task_file",
    "relation_residuals",
    "require_sequences",
    "scaling_norm",
    "split_in_time",
    "split_in_time_validated",
    "training_dataset",
]
