"""Ablations through the recurrence: what happens to the outputs when units are knocked out?

- :mod:`~unitprobe.methods.ablation.values`: one ablation (zero / mean / resample replacement
  values, :func:`generic_ablation` and :func:`ablate`);
- :mod:`~unitprobe.methods.ablation.table`: :func:`ablation_table`, the change of the output
  MSE for many ablations in batched runs (the ``ablation`` table);
- :mod:`~unitprobe.methods.ablation.selection`: :func:`top_k_units`, :func:`all_but`.

How much an ablation lowers what a probe can read from the other units is a pipeline job
(:func:`unitprobe.pipeline.decodability.decodability_drop`): it combines ablation and probes.

Example
-------
>>> trace = ablate(model, inputs, [3], mode="mean", start=10)
>>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "resample"))
"""

from unitprobe.methods.ablation.selection import all_but, top_k_units
from unitprobe.methods.ablation.table import ablation_table, ablation_table_arrays
from unitprobe.methods.ablation.values import (
    ABLATION_SITES,
    MODES,
    ablate,
    derangement,
    generic_ablation,
    mean_ablation,
    mean_values,
    resample_ablation,
    resample_values,
    zero_ablation,
    zero_values,
)

__all__ = [
    "MODES",
    "ABLATION_SITES",
    "derangement",
    "zero_values",
    "mean_values",
    "resample_values",
    "generic_ablation",
    "zero_ablation",
    "mean_ablation",
    "resample_ablation",
    "ablate",
    "ablation_table",
    "ablation_table_arrays",
    "top_k_units",
    "all_but",
]
