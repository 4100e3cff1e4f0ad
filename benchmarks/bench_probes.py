"""Benchmark: vectorized ``unit_probes`` against the scikit-learn ``cross_val_score`` loop, and
``population_probe``'s two penalty selections against each other.

Usage::

    python benchmarks/bench_probes.py [--full] [--pairs 40] [--seed 0]

For each size (units x targets x folds x samples; sequences of 30 steps, random states with
planted signal) it prints the time of ``unit_probes`` (best of 3 runs), the time of the
scikit-learn loop ``cross_val_score(Ridge(alpha), states[:, [u]], targets[:, k],
groups=groups, cv=GroupKFold(5))`` measured on a random subset of unit x target pairs and
scaled up to all pairs (both with BLAS on one thread, as ``unit_probes`` runs it), their
ratio, and the largest |R² difference| over the subset. Then the tracemalloc peak of
``unit_probes`` on the largest case, with the input size beside it.
By default the data are a tenth of these sizes; ``--full`` runs them whole.

Then ``population_probe`` with ``select="folds"`` (penalty by grouped cross-validation over the
other folds, from the per-fold sums) and ``select="loo"`` (row-level leave-one-out, RidgeCV's
closed form, a pass over the training rows per fold), best of 3 each in the same process, and
their ratio; by default on 64 units x 8 targets x 60,000 samples, with ``--full`` also on 256
units x 12 targets x 100,000 samples. Both run BLAS on one thread
(``unitprobe._linalg.BLAS_THREADS``). Torch is pinned to one thread (``--jobs``).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import threadpoolctl
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold, cross_val_score
from threadpoolctl import threadpool_limits

from unitprobe.methods.probes import population_probe, unit_probes

SIZES = [(64, 8, 60_000), (256, 12, 100_000)]  # (units, targets, samples)
POPULATION_SIZES = [(64, 8, 60_000), (256, 12, 100_000)]  # the first by default, both --full
N_SPLITS, STEPS, ALPHA = 5, 30, 1e-3


def make_data(n_units: int, n_targets: int, n_samples: int, seed: int):
    """States (n, U) and targets (n, K): target k = unit k + 0.5 unit k+1 + noise."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(n_samples, n_units))
    targets = np.empty((n_samples, n_targets))
    for k in range(n_targets):
        signal = states[:, k % n_units] + 0.5 * states[:, (k + 1) % n_units]
        targets[:, k] = signal + rng.normal(size=n_samples)
    groups = np.arange(n_samples) // STEPS
    return states, targets, groups


def best_time(func, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def bench(n_units: int, n_targets: int, n_samples: int, n_pairs: int, seed: int) -> None:
    states, targets, groups = make_data(n_units, n_targets, n_samples, seed)
    table = unit_probes(states, targets, groups, n_splits=N_SPLITS, alpha=ALPHA)
    t_fast = best_time(lambda: unit_probes(states, targets, groups, n_splits=N_SPLITS, alpha=ALPHA))

    rng = np.random.default_rng(seed + 1)
    all_pairs = n_units * n_targets
    picked = rng.choice(all_pairs, size=min(n_pairs, all_pairs), replace=False)
    r2 = table["r2"].to_numpy()  # unit-major: row = unit * n_targets + target
    max_diff = 0.0
    start = time.perf_counter()
    with threadpool_limits(1):  # the BLAS setting unit_probes runs with
        for pair in picked:
            u, k = divmod(int(pair), n_targets)
            scores = cross_val_score(
                Ridge(alpha=ALPHA), states[:, [u]], targets[:, k], groups=groups,
                cv=GroupKFold(N_SPLITS), scoring="r2",
            )  # fmt: skip
            max_diff = max(max_diff, abs(scores.mean() - r2[pair]))
    t_loop_subset = time.perf_counter() - start
    t_loop = t_loop_subset / len(picked) * all_pairs

    print(
        f"{n_units} units x {n_targets} targets x {N_SPLITS} folds x {n_samples:,} samples "
        f"({all_pairs} pairs)"
    )
    print(f"  unit_probes (best of 3)       {t_fast:9.3f} s")
    print(
        f"  sklearn loop, all pairs       {t_loop:9.1f} s  (measured {t_loop_subset:.2f} s on "
        f"{len(picked)} random pairs, scaled x{all_pairs / len(picked):.1f})"
    )
    print(f"  speed ratio                   {t_loop / t_fast:9.0f} x")
    print(f"  max |delta R2| over subset    {max_diff:9.1e}")


def bench_population(n_units: int, n_targets: int, n_samples: int, seed: int) -> None:
    states, targets, groups = make_data(n_units, n_targets, n_samples, seed)
    times, tables = {}, {}
    for select in ("folds", "loo"):

        def probe(select=select):
            return population_probe(states, targets, groups, n_splits=N_SPLITS, select=select)

        tables[select] = probe()  # warm-up
        times[select] = best_time(probe)
    r2_gap = (tables["folds"].r2 - tables["loo"].r2).abs().max()
    same = (tables["folds"].alpha_folds == tables["loo"].alpha_folds).mean()
    print(
        f"population_probe, {n_units} units x {n_targets} targets x {N_SPLITS} folds x "
        f"{n_samples:,} samples"
    )
    print(f'  select="folds" (best of 3)    {times["folds"]:9.3f} s')
    print(f'  select="loo"   (best of 3)    {times["loo"]:9.3f} s')
    print(f"  speed ratio loo / folds       {times['loo'] / times['folds']:9.1f} x")
    print(f"  max |delta R2| folds - loo    {r2_gap:9.1e}  (same alphas in {same:.0%} of targets)")


def peak_memory(n_units: int, n_targets: int, n_samples: int, seed: int) -> None:
    states, targets, groups = make_data(n_units, n_targets, n_samples, seed)
    tracemalloc.start()
    unit_probes(states, targets, groups, n_splits=N_SPLITS, alpha=ALPHA)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"peak memory of unit_probes at {n_samples:,} x {n_units} float64, {n_targets} targets: "
        f"{peak / 2**20:.1f} MiB (tracemalloc; input states {states.nbytes / 2**20:.1f} MiB, "
        f"limit 1024 MiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size data (default: a tenth)")
    parser.add_argument("--jobs", type=int, default=1, help="torch threads")
    parser.add_argument("--pairs", type=int, default=40, help="sklearn pairs to time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.jobs)
    threadpoolctl.threadpool_limits(limits=args.jobs, user_api="blas")  # numpy's BLAS too
    quick = not args.full
    scale = 10 if quick else 1
    sizes = [(u, k, n // scale) for u, k, n in SIZES]
    for n_units, n_targets, n_samples in sizes:
        bench(n_units, n_targets, n_samples, args.pairs // (4 if quick else 1), args.seed)
    peak_memory(*sizes[-1], args.seed)
    for size in POPULATION_SIZES if args.full else POPULATION_SIZES[:1]:
        bench_population(*size, args.seed)


if __name__ == "__main__":
    main()
