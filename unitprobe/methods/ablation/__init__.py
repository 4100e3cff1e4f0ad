"""Ablations through the recurrence: what happens to the outputs when units are knocked out?

- :mod:`~unitprobe.methods.ablation.values`: one ablation (zero / mean / resample replacement
  values, :func:`generic_ablation` and :func:`ablate`);
- :mod:`~unitprobe.methods.ablation.table`: :func:`ablation_table`, the change of the output
  MSE for many ablations in batched runs (the ``ablation`` table);
- :mod:`~unitprobe.methods.ablation.engines`: the stepwise (reference) and fused engines;
- :mod:`~unitprobe.methods.ablation.fused`: the exact fused-kernel construction;
- :mod:`~unitprobe.methods.ablation.screen`: the output-linearized screen
  (:func:`screen_delta_sse`, :func:`screen_agreement`);
- :mod:`~unitprobe.methods.ablation.selection`: :func:`top_k_units`, :func:`all_but`.

How much an ablation lowers what a probe can read from the other units is a pipeline job
(:func:`unitprobe.pipeline.decodability.decodability_drop`): it combines ablation and probes.

Example
-------
>>> trace = ablate(model, inputs, [3], mode="mean", start=10)
>>> table = ablation_table(model, dataset, groups=[[1, 4]], modes=("zero", "resample"))
"""

from unitprobe.methods.ablation.fused import clean_states, fused_layer, layer_params
from unitprobe.methods.ablation.screen import screen_agreement, screen_delta_sse
from unitprobe.methods.ablation.selection import all_but, top_k_units
from unitprobe.methods.ablation.table import (
    ENGINES,
    EXACT_CHOICES,
    ablation_table,
    ablation_table_arrays,
)
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
    "ENGINES",
    "EXACT_CHOICES",
    "screen_delta_sse",
    "screen_agreement",
    "clean_states",
    "fused_layer",
    "layer_params",
    "top_k_units",
    "all_but",
]
