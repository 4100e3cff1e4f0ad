"""Run (or resume) the capacity sweep and regenerate every figure of the paper.

Usage::

    python analyses/make_figures.py [--quick] [--out figures/] [--jobs N]
                                    [--sweep-dir DIR] [--scheduler tcp://HOST:8786]

The sweep goes into ``--sweep-dir`` (default ``analyses/.sweep-quick/`` or
``analyses/.sweep-full/``, not tracked by git); a finished configuration is never trained
again, so rerunning after an interruption, or only to redraw the figures, costs little.
Figures go to ``--out`` as PNG and PDF, with the tables behind them in ``<out>/tables/``.

``--quick``: tasks delay-2 and seed, 1, 2 and 4 units, 2 seeds, 128 sequences, at most 60
epochs and a light analysis (about a minute on 2 cores). Full: the memory tasks delay-2,
delay-3, seed-integrate, seed-restart with 1, 2, 3, 4 units and 5 seeds, and seed with 4 units
and 1 seed; 384 sequences, at most 1000 epochs (early stopping after 40 without improvement);
see figures/README.md for its runtime.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fig_ablation  # noqa: E402
import fig_attribution  # noqa: E402
import fig_capacity  # noqa: E402
import fig_role_stability  # noqa: E402
import fig_seed_roles  # noqa: E402
import fig_specialization  # noqa: E402
from _common import DEFAULT_SWEEP, FORMATS, HERE, sweep_groups, sweep_settings  # noqa: E402

from unitprobe._utils import write_csv_atomic  # noqa: E402
from unitprobe.pipeline.sweep import SWEEP_FILE, collect_results, plan_sweep, run_sweep  # noqa: E402

#: The figure scripts, in the order they run.
SCRIPTS = (
    fig_capacity,
    fig_seed_roles,
    fig_ablation,
    fig_attribution,
    fig_specialization,
    fig_role_stability,
)


def expected_files(quick: bool) -> list[str]:
    """Every figure file (relative to ``--out``) that a run of this mode writes."""
    tasks = sweep_settings(quick)["tasks"]
    stems = ["capacity_curve", "seed_probe_r2", "seed_roles", "seed_ablation"]
    stems += [f"input_lag_{t}" for t in fig_attribution.tasks_of(tasks)]
    stems += ["specialization", "role_stability"]
    return [f"{stem}.{fmt}" for stem in stems for fmt in FORMATS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sweep (about a minute)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "figures")
    parser.add_argument("--jobs", type=int, default=2, help="local worker processes")
    parser.add_argument("--sweep-dir", type=Path, default=None)
    parser.add_argument("--scheduler", default=None, help="dask scheduler address")
    parser.add_argument("--no-sweep", action="store_true", help="only redraw from the sweep")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir or DEFAULT_SWEEP[args.quick]
    start = time.perf_counter()
    if not args.no_sweep:
        configs = []
        for group in sweep_groups(args.quick):
            run_sweep(**group, out=sweep_dir, jobs=args.jobs, scheduler=args.scheduler, echo=print)
            plan = {k: v for k, v in group.items() if k not in ("tasks", "units", "seeds")}
            configs += plan_sweep(group["tasks"], group["units"], group["seeds"], **plan)
        table = collect_results(sweep_dir, configs)
        write_csv_atomic(table, Path(sweep_dir) / SWEEP_FILE)
        print(f"sweep done in {time.perf_counter() - start:.0f} s ({len(table)} runs)")
    for script in SCRIPTS:
        for path in script.make(sweep_dir, args.out):
            print(path)
    print(f"all done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
