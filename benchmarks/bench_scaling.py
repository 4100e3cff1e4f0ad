"""How the ablation and attribution stages grow with the layer: 64, 128, 256 units.

Seed-task models (2 inputs, 2 outputs, 20 steps), 256 sequences, random initialization (or,
with ``--train-epochs E``, quickly trained). For each size it times

- ablation: ``ablation_table`` (all units, zero / mean / resample, site h) with the screen
  as ``unitprobe analyze`` runs it (``exact="screen"``, ``threshold=0``, fused engine), and
  with ``--exact-all`` also every unit exactly (fused);
- attribution: ``attribution_tables`` with the default quadrature, ``batch_size=64`` and the
  256 MiB budget;

and prints their CPU seconds (``time.process_time``, every thread of the process, so other
load on the machine does not count), the growth exponents ``log(t_b / t_a) / log(b / a)`` of
each stage (target <= 1.3 from 64 to 256 units), the growth of the stage's floor (the
``screen_top_k`` units the screen always ablates exactly, on their own: no stage that runs
them exactly can grow more slowly than they do) and the peak resident memory after the
256-unit stages (target < 1.2 GB; ``resource.getrusage``, the whole process, measured before
any reference run). Then, in
the same process, the reference at 64 units (today's settings: the stepwise engine on every
unit; batches of 256) and the ratios against it. With
``--exact-all`` it also prints the screen's agreement with the exact table at each size.

Usage::

    python benchmarks/bench_scaling.py               # about 40 s, one thread
    python benchmarks/bench_scaling.py --exact-all   # + every unit exactly, and agreement
    python benchmarks/bench_scaling.py --train-epochs 40 --exact-all
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time

import numpy as np
import threadpoolctl
import torch

from unitprobe.config import AblationConfig, AttributionConfig
from unitprobe.methods.ablation import ablation_table, screen_agreement
from unitprobe.methods.attribution import attribution_tables
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.model.train import TrainConfig, train
from unitprobe.tasks import generate, get_preset

SIZES = (64, 128, 256)
#: Quadrature points of the new settings: the library default (16 changed seed-restart's
#: input x lag attributions by 1 %, so the default stays 32).
N_STEPS_IG = AttributionConfig.n_steps_ig


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def make_model(n_units: int, data, epochs: int, seed: int) -> UnitLSTM:
    if epochs > 0:
        config = TrainConfig(n_units=n_units, epochs=epochs, patience=epochs, seed=seed)
        return train(data, config, progress=False).model.eval()
    torch.manual_seed(seed)
    return UnitLSTM(ModelConfig(n_inputs=2, n_units=n_units, n_outputs=2)).eval()


def timed(fn, *args, **kwargs):
    """CPU seconds of the call (all threads of this process: robust to a loaded machine)."""
    start = time.process_time()
    out = fn(*args, **kwargs)
    return time.process_time() - start, out


def attribution(model, data, n_steps_ig: int, batch_size: int):
    config = AttributionConfig(n_steps_ig=n_steps_ig)
    return attribution_tables(model, data, config=config, batch_size=batch_size)


def usage(table) -> np.ndarray:
    """Per unit: the largest relative MSE increase of the pooled output over modes."""
    rows = table[table.output == "all"]
    return rows.groupby(rows.units.astype(int)).rel_delta.max().sort_index().to_numpy()


def exponents(times: dict[int, float]) -> str:
    sizes = sorted(times)
    pairs = [(a, b) for a, b in zip(sizes, sizes[1:], strict=False)] + [(sizes[0], sizes[-1])]
    return ", ".join(
        f"{a}->{b}: H^{math.log(times[b] / times[a]) / math.log(b / a):.2f}" for a, b in pairs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=int, default=1, help="torch threads (1: CPU times free of spin-waiting)"
    )
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--train-epochs", type=int, default=0, help="0: random initialization")
    parser.add_argument("--exact-all", action="store_true", help="also every unit exactly")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.jobs)
    threadpoolctl.threadpool_limits(limits=args.jobs, user_api="blas")  # numpy's BLAS too
    torch.set_num_interop_threads(1)
    data = generate(get_preset("seed"), args.sequences, args.seed)
    print(f"seed task, {args.sequences} sequences, {args.jobs} torch threads")
    abl, att, models, floor = {}, {}, {}, {}
    top_k = list(range(AblationConfig.screen_top_k))
    for n_units in SIZES:
        models[n_units] = make_model(n_units, data, args.train_epochs, args.seed)
        abl[n_units], screened = timed(
            ablation_table, models[n_units], data, exact="screen", threshold=0.0
        )  # as analyze runs it: the screen guards used = usage > 0
        att[n_units], _ = timed(attribution, models[n_units], data, N_STEPS_IG, 64)
        floor[n_units] = min(
            timed(ablation_table, models[n_units], data, units=top_k, exact="all")[0]
            for _ in range(3)
        )  # the top k alone, exactly: best of 3
        a = screened.attrs
        print(
            f"{n_units:4d} units: ablation {abl[n_units]:6.2f} s ({a['n_exact']} exact), "
            f"attribution {att[n_units]:6.2f} s; {len(top_k)} units exactly, alone: "
            f"{floor[n_units]:5.2f} s"
        )
        if args.exact_all:
            t_all, exact = timed(ablation_table, models[n_units], data, exact="all")
            agree = screen_agreement(usage(screened), usage(exact), k=8)
            print(
                f"      every unit exactly {t_all:6.2f} s ({t_all / abl[n_units]:.1f}x the screen);"
                f" screen vs exact usage: Spearman {agree['spearman']:.3f}, median rel. error "
                f"{agree['median_rel_error']:.3f}, top-8 recall {agree['topk_recall']:.2f}"
            )
    print(f"peak RSS after the 256-unit stages: {peak_rss_gb():.2f} GB (target < 1.2)")
    print(f"ablation growth:    {exponents(abl)} (target <= 1.3 for 64->256)")
    print(f"its floor's growth: {exponents(floor)} ({len(top_k)} units exactly, every mode)")
    print(f"attribution growth: {exponents(att)} (target <= 1.3 for 64->256)")
    base = SIZES[0]
    ref_abl, _ = timed(ablation_table, models[base], data, engine="stepwise", exact="all")
    ref_att, _ = timed(attribution, models[base], data, N_STEPS_IG, 256)
    print(
        f"reference at {base} units (stepwise engine, every unit; IG batches of 256): "
        f"ablation {ref_abl:.2f} s = {ref_abl / abl[base]:.1f}x, "
        f"attribution {ref_att:.2f} s = {ref_att / att[base]:.1f}x the new settings"
    )


if __name__ == "__main__":
    main()
