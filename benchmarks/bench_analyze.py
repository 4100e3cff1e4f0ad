"""Speed of ``compute_analysis`` against a straightforward reference pipeline, and its scaling.

The reference does the same work the obvious way:

- probes: one scikit-learn ``cross_val_score(Ridge)`` per unit x target for the trained network,
  each untrained control and each permutation, and a residualize-then-probe loop per pair for
  the partial R²;
- ablation: one hooked stepwise forward per unit and mode;
- receptive fields: one Captum ``NeuronGradient`` call per unit and target step.

The reference is timed on a random subset of its calls and scaled to all of them (the output
says by how much); the attribution stages that both pipelines share (input x lag and unit
attributions with Captum) are counted once, with the time they take in ``compute_analysis``.
Run: ``python benchmarks/bench_analyze.py [--full]`` (default 400 sequences x 16 units; ``--full``
2000 x 64). Torch runs on ``--jobs`` threads (default 1).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import threadpoolctl
import torch
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import GroupKFold, cross_val_score

from unitprobe.methods.ablation import ablate
from unitprobe.methods.targets import default_targets, make_targets
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import ModelConfig, UnitLSTM, run
from unitprobe.pipeline.analyze import AnalyzeConfig, compute_analysis
from unitprobe.tasks import generate, get_preset


def checkpoint(n_units: int, seed: int = 0) -> Checkpoint:
    torch.manual_seed(seed)
    model = UnitLSTM(ModelConfig(n_inputs=1, n_units=n_units, n_outputs=1)).eval()
    return Checkpoint(model=model, task=get_preset("delay-3"), path="bench", source="bench")


def time_analysis(ckpt: Checkpoint, config: AnalyzeConfig) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    result = compute_analysis(ckpt, config, progress=False)
    return time.perf_counter() - start, result.timings


def reference_probes(ckpt, data, config, rng, n_sample: int) -> tuple[float, int]:
    """Seconds for all per-pair sklearn probe fits, from a timed sample of ``n_sample`` pairs."""
    targets = make_targets(data, default_targets(data.spec))
    with torch.no_grad():
        states = run(ckpt.model, data.inputs, record=("h",)).numpy("h")[targets.mask]
    y_all, groups = targets.values.to_numpy(), targets.groups
    n_units, n_targets = states.shape[1], y_all.shape[1]
    cv = GroupKFold(config.probes.n_splits)
    pairs = [(u, k) for u in range(n_units) for k in range(n_targets)]
    chosen = [
        pairs[i] for i in rng.choice(len(pairs), size=min(n_sample, len(pairs)), replace=False)
    ]
    start = time.perf_counter()
    for u, k in chosen:
        x, y = states[:, [u]], y_all[:, k]
        cross_val_score(Ridge(alpha=config.probes.alpha), x, y, groups=groups, cv=cv, scoring="r2")
        others = np.delete(y_all, k, axis=1)  # partial R²: residualize on the other targets
        ry = y - LinearRegression().fit(others, y).predict(others)
        rx = x - LinearRegression().fit(others, x).predict(others)
        ridge = Ridge(alpha=config.probes.alpha)
        cross_val_score(ridge, rx, ry, groups=groups, cv=cv, scoring="r2")
    per_pair = (time.perf_counter() - start) / len(chosen)
    # one unit probe per pair for the trained net, each control and each permutation, plus partial
    fits_per_pair = (1 + config.probes.n_controls + config.probes.n_permutations) + 1
    return per_pair / 2 * fits_per_pair * len(pairs), len(pairs)


def reference_ablation(ckpt, data, config, rng, n_sample: int) -> float:
    """Seconds for one hooked forward per unit and mode, from ``n_sample`` timed units."""
    n_units = ckpt.model.config.n_units
    units = rng.choice(n_units, size=min(n_sample, n_units), replace=False)
    targets = torch.as_tensor(data.targets)
    start = time.perf_counter()
    with torch.no_grad():
        reference = run(ckpt.model, data.inputs, record=("h",))
        for unit in units:
            for mode in config.ablation.modes:
                out = ablate(
                    ckpt.model, data.inputs, [int(unit)], mode=mode, reference=reference, record=()
                )
                ((out.outputs - targets) ** 2).mean()
    return (time.perf_counter() - start) / len(units) * n_units


def reference_receptive_fields(ckpt, data, config, rng, n_sample: int) -> float:
    """Seconds for one Captum NeuronGradient call per unit and step, from ``n_sample`` units."""
    from captum.attr import NeuronGradient

    model = ckpt.model
    inputs = torch.as_tensor(data.inputs[: config.attribution.max_sequences])
    n_steps = inputs.shape[1]
    max_lag = min(10, n_steps - 1)

    class Hidden(torch.nn.Module):  # exposes the LSTM's h as a layer output for Captum
        def __init__(self):
            super().__init__()
            self.lstm = model.lstm
            self.hidden = torch.nn.Identity()

        def forward(self, x):
            return self.hidden(self.lstm(x)[0])

    wrapper = Hidden()
    ng = NeuronGradient(wrapper, wrapper.hidden)
    n_units = model.config.n_units
    units = rng.choice(n_units, size=min(n_sample, n_units), replace=False)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    start = time.perf_counter()
    with torch.backends.cudnn.flags(enabled=False):
        for unit in units:
            for t in range(max_lag, n_steps):
                ng.attribute(inputs, neuron_selector=lambda out, t=t, u=int(unit): out[:, t, u])
    return (time.perf_counter() - start) / len(units) * n_units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="2000 sequences x 64 units.")
    parser.add_argument("--jobs", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    n_seq, n_units = (2000, 64) if args.full else (400, 16)
    torch.set_num_threads(args.jobs)
    threadpoolctl.threadpool_limits(limits=args.jobs, user_api="blas")  # numpy's BLAS too
    rng = np.random.default_rng(0)
    config = AnalyzeConfig(n_sequences=n_seq, seed=0)
    ckpt = checkpoint(n_units)
    data = generate(ckpt.task, n_seq, seed=0)
    print(
        f"analyze of a {n_units}-unit LSTM on {n_seq} sequences x {data.length} steps "
        "(delay-3 task)"
    )
    total, stages = time_analysis(ckpt, config)
    print(
        f"  compute_analysis: {total:.1f} s  "
        f"({', '.join(f'{k} {v:.1f}' for k, v in stages.items())})"
    )

    probes_s, n_pairs = reference_probes(ckpt, data, config, rng, n_sample=6)
    ablation_s = reference_ablation(ckpt, data, config, rng, n_sample=4)
    fields_s = reference_receptive_fields(ckpt, data, config, rng, n_sample=2)
    shared = stages["attribution"]  # input x lag and unit attributions: the same Captum calls
    reference = probes_s + ablation_s + fields_s + shared + stages["data"] + stages["roles"]
    print("  reference pipeline (timed on a subset and scaled to all calls):")
    print(
        f"    probes    {probes_s:8.1f} s  "
        f"({n_pairs} pairs x {2 + config.probes.n_controls + config.probes.n_permutations} fits)"
    )
    print(
        f"    ablation  {ablation_s:8.1f} s  ({n_units} units x {len(config.ablation.modes)} modes)"
    )
    print(f"    fields    {fields_s:8.1f} s  ({n_units} units x target steps, NeuronGradient)")
    print(f"    shared    {shared:8.1f} s  (attribution stage, counted as in compute_analysis)")
    print(
        f"  speed-up: {reference / total:.1f}x  "
        f"(reference {reference:.1f} s / analyze {total:.1f} s)"
    )

    print("scaling (compute_analysis wall time):")
    half, _ = time_analysis(ckpt, AnalyzeConfig(n_sequences=n_seq // 2, seed=0))
    print(
        f"  sequences {n_seq // 2} -> {n_seq}: {half:.1f} s -> {total:.1f} s  "
        f"(x{total / half:.2f} for x2)"
    )
    small, _ = time_analysis(checkpoint(n_units // 2), config)
    print(
        f"  units {n_units // 2} -> {n_units}: {small:.1f} s -> {total:.1f} s  "
        f"(x{total / small:.2f} for x2)"
    )


if __name__ == "__main__":
    main()
