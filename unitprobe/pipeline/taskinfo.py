"""``unitprobe tasks info``: what a task demands, and which of its terms a probe can separate.

Composes the task layer (:func:`unitprobe.tasks.info.task_info`: state size and baselines) with
the probe layer (:func:`unitprobe.methods.probes.identifiability`, :func:`vif_table`: pairwise
r² and variance inflation of the task's default probe targets on generated data).

Example
-------
>>> from unitprobe.tasks import get_preset
>>> report = task_report(get_preset("seed-stationary"), n_sequences=256)
>>> report["state_size"], bool(report["identifiability"]["separable"].all())
(1, True)
"""

from __future__ import annotations

from typing import Any

from unitprobe.methods.probes import identifiability, vif_table
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.tasks.generate import generate
from unitprobe.tasks.info import task_info
from unitprobe.tasks.spec import TaskSpec

__all__ = ["format_report", "task_report"]


def task_report(spec: TaskSpec, *, n_sequences: int = 512, seed: int = 0) -> dict[str, Any]:
    """:func:`~unitprobe.tasks.info.task_info` plus the separability of the candidate terms.

    Returns
    -------
    dict
        The keys of ``task_info`` plus ``targets`` (the default probe targets),
        ``identifiability`` (pairs: ``target_a``, ``target_b``, ``r2``, ``separable``) and
        ``vif`` (``target``, ``vif``, ``r2``, ``separable``), on the generated sequences.
    """
    info = task_info(spec, n_sequences=n_sequences, seed=seed)
    exprs = default_targets(spec)
    values = make_targets(generate(spec, n_sequences=n_sequences, seed=seed), exprs).values
    return {
        **info,
        "targets": exprs,
        "identifiability": identifiability(values),
        "vif": vif_table(values),
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as the lines ``unitprobe tasks info`` prints."""
    size = report["state_size"]
    lines = [
        f"task {report['task']}",
        "state size: "
        + (f"{size} number(s) carried between steps; a layer needs at least "
           f"{report['min_units']} unit(s) (also one per independent output)"
           if size is not None else "not documented"),
        "baselines (fitted on half of the generated sequences, scored on the other half; "
        "step_nmse: per-step normalized error, 1 = per-step mean):",
        report["baselines"].to_string(index=False, float_format=lambda v: f"{v:.3g}"),
        f"memoryless linear map: pooled error {report['memoryless_ratio']:.2g} of the better of "
        f"repeat-last and training mean -> "
        + ("it already solves the task (no memory needed on these data)"
           if report["memoryless_solves"] else "memory is necessary"),
        f"per step: memoryless {report['memoryless_step_nmse']:.3g}, "
        f"best linear autoregression {report['linear_ar_step_nmse']:.3g}",
        "candidate terms (VIF; separable = a probe can tell the term from the others):",
        report["vif"].to_string(index=False, float_format=lambda v: f"{v:.3g}"),
    ]  # fmt: skip
    pairs = report["identifiability"]
    bad = pairs[~pairs["separable"].astype(bool)]
    lines.append(
        "inseparable pairs (r2 >= threshold): "
        + (", ".join(f"{a} ~ {b} ({r:.3f})" for a, b, r in bad[["target_a", "target_b", "r2"]]
                     .itertuples(index=False)) or "none")
    )  # fmt: skip
    return "\n".join(lines)
