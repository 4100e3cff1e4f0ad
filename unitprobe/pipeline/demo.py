"""``unitprobe demo``: train the answer's ``seed`` task and analyze it, end to end.

Example
-------
>>> print(run_demo("unitprobe-demo"))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from unitprobe._utils import staged_output_dir
from unitprobe.config import AnalyzeConfig
from unitprobe.methods.roles import summarize_roles, summarize_terms
from unitprobe.model.checkpoint import Checkpoint, save_trained
from unitprobe.model.train import TrainConfig, train_task
from unitprobe.pipeline.analyze import compute_analysis, write_results
from unitprobe.tasks import get_preset

__all__ = ["run_demo"]


def run_demo(
    out: str | Path = "unitprobe-demo",
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    n_units: int = 8,
    n_sequences: int = 512,
) -> str:
    """Train the ``seed`` task and analyze it into ``out``; return the printed summary.

    Writes ``model.pt``, every result table, ``figures/`` and ``report.html`` into ``out``;
    an existing ``out`` is replaced only with ``overwrite`` and only if it holds a previous
    unitprobe result.
    Training and analysis both use seed 0 (the analysis derives its own streams from it).
    """
    echo = echo or (lambda s: None)
    out = Path(out)
    spec = get_preset("seed")
    start = time.perf_counter()
    with staged_output_dir(out, overwrite=overwrite) as stage:
        echo(f"training a {n_units}-unit LSTM on the 'seed' task: {'; '.join(spec.relations)}")
        config = TrainConfig(n_units=n_units, seed=0)
        dataset, result = train_task(spec, config, n_sequences=n_sequences, progress=progress)
        m = result.metrics
        echo(
            f"  validation MSE {m['val_mse']:.3g} = {100 * m['mse_ratio']:.2g}% of the "
            f"repeat-last-value baseline, {m['train_seconds']:.0f} s"
        )
        save_trained(stage / "model.pt", result, spec, config, norm=dataset.norm)
        ckpt = Checkpoint.from_training(result, spec, out / "model.pt", config, norm=dataset.norm)
        echo("analyzing: probes, ablations, attributions, roles")
        analysis = compute_analysis(ckpt, AnalyzeConfig(), progress=progress, echo=echo)
        write_results(analysis, stage, AnalyzeConfig(), progress=progress, echo=echo)
    return (
        f"{summarize_roles(analysis.tables['roles'])}\n\n"
        f"where each term lives:\n{summarize_terms(analysis.tables['terms'])}\n\n"
        f"done in {time.perf_counter() - start:.0f} s; report: {out / 'report.html'}"
    )
