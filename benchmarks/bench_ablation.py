"""Batched ablation table versus one hooked forward per unit and mode.

Every single-unit ablation (zero, mean, resample; site h) of a randomly initialized one-layer
UnitLSTM (2 inputs, 2 outputs) on i.i.d. inputs whose targets are the inputs one step back:

- batched: ``ablation_table_arrays`` with every unit exact (``exact="all"``: the fused
  engine; ``benchmarks/bench_scaling.py`` times the screen);
- loop: one clean run for the mean / resample values, then one ``models.run`` with one
  ``Intervention`` per unit and mode.

Both include their clean run.
Prints both wall times, the ratio and the largest absolute difference between the two tables.
With ``--loop-units K`` the loop runs only the first K units and its time is scaled (said in
the output); ``--units K`` restricts both sides to the first K units; ``--repeat R`` keeps the
best of R interleaved runs (for a machine shared with other work).

Usage::

    python benchmarks/bench_ablation.py            # 32 units, 200 sequences x 20 steps
    python benchmarks/bench_ablation.py --full     # 64 units, 2000 sequences x 30 steps

Torch runs on ``--jobs`` threads (default 1: CPU times free of spin-waiting on a shared
machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import threadpoolctl
import torch

from unitprobe.methods.ablation import (
    MODES,
    ablation_table_arrays,
    mean_values,
    resample_values,
    zero_values,
)
from unitprobe.model.lstm import Intervention, ModelConfig, UnitLSTM, run

VALUES = {"zero": zero_values, "mean": mean_values, "resample": resample_values}


def make_problem(n_units: int, n_sequences: int, n_steps: int, seed: int):
    torch.manual_seed(seed)
    model = UnitLSTM(ModelConfig(n_inputs=2, n_units=n_units, n_outputs=2)).eval()
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((n_sequences, n_steps, 2)).astype(np.float32)
    targets = np.zeros_like(inputs)
    targets[:, 1:] = inputs[:, :-1]
    return model, inputs, targets


def loop_table(model, inputs, targets, units, seed: int) -> dict[tuple[int, str], np.ndarray]:
    """MSE per output and overall, {(unit, mode): array of shape (n_outputs + 1,)}."""
    x = torch.as_tensor(inputs)
    y = torch.as_tensor(targets, dtype=torch.float64)
    out = {}
    with torch.no_grad():
        clean = run(model, x, record=("h",)).h[0]  # (N, T, H)
        for mode in MODES:
            values = VALUES[mode](clean, len(x), seed)  # (T, N or 1, H)
            for u in units:
                edit = Intervention("h", units=[u], setter=lambda v, t, vals=values: vals[t])
                pred = run(model, x, [edit], record=()).outputs.double()
                err = (pred - y) ** 2
                out[(u, mode)] = np.append(err.mean(dim=(0, 1)).numpy(), err.mean().item())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="64 units, 2000 sequences x 30 steps")
    parser.add_argument("--jobs", type=int, default=1, help="torch threads")
    parser.add_argument("--n-units", type=int, default=None)
    parser.add_argument("--n-sequences", type=int, default=None)
    parser.add_argument("--n-steps", type=int, default=None)
    parser.add_argument("--units", type=int, default=None, help="ablate only the first K units")
    parser.add_argument("--loop-units", type=int, default=None, help="time the loop on K units")
    parser.add_argument("--memory-budget-mb", type=float, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="best of R interleaved runs")
    args = parser.parse_args()
    torch.set_num_threads(args.jobs)
    threadpoolctl.threadpool_limits(limits=args.jobs, user_api="blas")  # numpy's BLAS too
    n_units = args.n_units or (64 if args.full else 32)
    n_seq = args.n_sequences or (2000 if args.full else 200)
    n_steps = args.n_steps or (30 if args.full else 20)
    units = list(range(min(args.units or n_units, n_units)))
    loop_units = units[: args.loop_units or len(units)]

    model, inputs, targets = make_problem(n_units, n_seq, n_steps, args.seed)
    with torch.no_grad():  # warm-up
        run(model, inputs[:8], record=())
    subset = f" (ablating units 0-{len(units) - 1} only)" if len(units) < n_units else ""
    print(
        f"{n_units} units{subset}, {n_seq} sequences x {n_steps} steps, {len(MODES)} modes; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.2f}"
    )

    t_batched = t_loop = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        table = ablation_table_arrays(
            model,
            inputs,
            targets,
            ["a", "b"],
            units=units,
            memory_budget_mb=args.memory_budget_mb,
            seed=args.seed,
            exact="all",  # every unit exactly, as the loop; the screen is bench_scaling's
        )
        t_batched = min(t_batched, time.perf_counter() - t0)
        t0 = time.perf_counter()
        looped = loop_table(model, inputs, targets, loop_units, args.seed)
        t_loop = min(t_loop, time.perf_counter() - t0)
    scale = len(units) / len(loop_units)

    rows = table.set_index(["units", "mode", "output"])["mse"]
    diff = max(
        abs(rows[(str(u), mode, name)] - value)
        for (u, mode), mse in looped.items()
        for name, value in zip(["a", "b", "all"], mse, strict=True)
    )
    n_forwards = len(loop_units) * len(MODES)
    best = f" (best of {args.repeat})" if args.repeat > 1 else ""
    per = t_batched / (len(units) * len(MODES)) * 1e3
    print(f"batched table: {t_batched:8.2f} s  ({per:.1f} ms per ablation){best}")
    note = f" (timed on {len(loop_units)} units, scaled x{scale:.2f})" if scale != 1 else ""
    print(
        f"per-unit loop: {t_loop * scale:8.2f} s  ({t_loop / n_forwards * 1e3:.1f} ms per "
        f"ablation){note}"
    )
    print(f"speed-up:      {t_loop * scale / t_batched:8.2f} x")
    print(f"max |mse difference| batched vs loop: {diff:.3g}")


if __name__ == "__main__":
    main()
