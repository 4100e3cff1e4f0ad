"""How the interchange stage grows with the layer: screened + fused against every unit stepwise.

Seed-task networks (2 inputs, 2 outputs, 20 steps), random initialization, 256 sequences,
every default term (six), 256 counterfactual pairs per term, the model and relations
references. For each size it times, in CPU seconds of this process (``time.process_time``):

- ``screened``: :func:`~unitprobe.methods.interventions.interchange_table` as an analysis runs
  it (one set of patched runs for both references, the first-order screen, the top 16 units
  per term patched exactly, one-layer networks through the fused suffix);
- ``reference``: the same table with every unit patched exactly through the stepwise
  hookable forward pass, once per reference (the code before the screen). It is timed on
  ``--sample`` units and scaled to all units (the output says by how much);

then their ratio, the growth exponents ``log(t_b / t_a) / log(b / a)`` of each, and the
screen's agreement with exact patches (Spearman, largest absolute error) from the summary the
screened table carries.

Usage::

    python benchmarks/bench_interventions.py              # about 40 s, one thread
    python benchmarks/bench_interventions.py --sizes 64,128,256,512
"""

from __future__ import annotations

import argparse
import math
import time

import threadpoolctl
import torch

from unitprobe.methods.interventions import default_terms, interchange_table
from unitprobe.methods.interventions import interchange as interchange_module
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.tasks import generate, get_preset


def timed(fn, *args, **kwargs):
    start = time.process_time()
    out = fn(*args, **kwargs)
    return time.process_time() - start, out


def reference_seconds(model, data, terms, n_sample: int) -> float:
    """Every unit exactly and stepwise, once per reference: timed on ``n_sample`` units."""
    fused = interchange_module._suffix_ok
    interchange_module._suffix_ok = lambda model, patches_h: False
    try:
        seconds = 0.0
        for reference in ("model", "auto"):
            t, _ = timed(
                interchange_table, model, data, terms, reference=reference,
                units=list(range(n_sample)),
            )  # fmt: skip
            seconds += t
    finally:
        interchange_module._suffix_ok = fused
    return seconds * model.config.n_units / n_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,256", help="layer sizes, comma-separated")
    parser.add_argument("--sample", type=int, default=8, help="units timed for the reference")
    parser.add_argument("--jobs", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.jobs)
    threadpoolctl.threadpool_limits(limits=args.jobs, user_api="blas")  # numpy's BLAS too
    sizes = [int(s) for s in args.sizes.split(",")]
    spec = get_preset("seed")
    data = generate(spec, 256, seed=0)
    terms = default_terms(spec, tuple(data.input_names))
    rows = []
    print(f"{'units':>5} {'screened s':>10} {'reference s':>11} {'ratio':>6}  screen agreement")
    for n_units in sizes:
        torch.manual_seed(0)
        model = UnitLSTM(ModelConfig(n_inputs=2, n_units=n_units, n_outputs=2)).eval()
        t_screen, table = timed(
            interchange_table, model, data, terms, reference=("model", "auto"), screen=16
        )
        t_ref = reference_seconds(model, data, terms, min(args.sample, n_units))
        info = table.attrs["screen"]
        rows.append((n_units, t_screen, t_ref))
        print(
            f"{n_units:>5} {t_screen:>10.2f} {t_ref:>11.1f} {t_ref / t_screen:>6.1f}  "
            f"Spearman {info.get('spearman', math.nan):.3f}, largest |error| "
            f"{info.get('max_abs_error', math.nan):.2g} over {info['n_compared']} exact units",
            flush=True,
        )
    print(f"(reference timed on {args.sample} units per size and scaled to all)")
    for (a, ta, ra), (b, tb, rb) in zip(rows, rows[1:], strict=False):
        grow = math.log(b / a)
        print(
            f"growth {a}->{b}: screened H^{math.log(tb / ta) / grow:.2f}, "
            f"reference H^{math.log(rb / ra) / grow:.2f}"
        )
    if len(rows) > 2:
        (a, ta, ra), (b, tb, rb) = rows[0], rows[-1]
        grow = math.log(b / a)
        print(
            f"growth {a}->{b}: screened H^{math.log(tb / ta) / grow:.2f}, "
            f"reference H^{math.log(rb / ra) / grow:.2f}"
        )


if __name__ == "__main__":
    main()
