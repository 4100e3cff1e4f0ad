"""Regenerate every number the README states about what the toolkit finds.

Trains and analyzes exactly what the README describes, with the library defaults, and writes
``docs/readme_claims.md``: the demo network beside its baselines and the collinearity of its
terms; the verdicts of the five ``seed-innov`` networks (8 units, seeds 0-4, as ``unitprobe
train --task seed-innov --units 8 --seed K`` trains them), term by term, with each learned
direction's transfer, specificity and p-value; and what the full analysis names in 20
untrained 8-unit networks with least-squares readouts on ``seed`` and ``seed-innov``.
The verdicts' error rates come from ``benchmarks/bench_verdicts.py``.

Run: ``python analyses/readme_claims.py [--jobs N]`` (about ten minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from unitprobe.config import AnalyzeConfig
from unitprobe.methods.interventions import default_terms
from unitprobe.model.checkpoint import Checkpoint
from unitprobe.model.lstm import ModelConfig, UnitLSTM
from unitprobe.model.train import TrainConfig, train_task
from unitprobe.pipeline.analyze import compute_analysis
from unitprobe.pipeline.nulls import fit_readout, untrained_network
from unitprobe.pipeline.verdicts import direction_options, direction_tests
from unitprobe.seeds import stream_seeds
from unitprobe.tasks import generate, get_preset

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "readme_claims.md"
#: The README's trained networks: the demo's (seed task, seed 0) and seed-innov's seeds.
INNOV_SEEDS = range(5)
#: Untrained networks per task, their first torch seed, and the tasks.
N_UNTRAINED, UNTRAINED_SEED, UNTRAINED_TASKS = 20, 9000, ("seed", "seed-innov")


def _trained(task: str, seed: int) -> Checkpoint:
    spec = get_preset(task)
    config = TrainConfig(n_units=8, seed=seed)
    dataset, result = train_task(spec, config)
    return Checkpoint.from_training(result, spec, Path(f"{task}-{seed}.pt"), config,
                                    norm=dataset.norm)  # fmt: skip


def _untrained(task: str, k: int) -> Checkpoint:
    spec = get_preset(task)
    data = generate(spec, n_sequences=512, seed=k)
    shape = UnitLSTM(ModelConfig(len(spec.inputs), 8, len(spec.predict)))
    model = fit_readout(untrained_network(shape, UNTRAINED_SEED + k), data)
    return Checkpoint(model=model, task=spec, path=Path(f"untrained-{task}-{k}.pt"),
                      source="state_dict", norm=data.norm)  # fmt: skip


def _analyze(job: tuple[str, str, int]) -> dict:
    """One network: its roles, terms, baselines and summary (plain data for the parent)."""
    torch.set_num_threads(1)
    kind, task, seed = job
    ckpt = _trained(task, seed) if kind == "trained" else _untrained(task, seed)
    config = AnalyzeConfig()
    result = compute_analysis(ckpt, config)
    out = {
        "kind": kind, "task": task, "seed": seed,
        "roles": result.tables["roles"], "terms": result.tables["terms"],
        "baselines": result.tables["baselines"], "probes": result.tables["identifiability"],
        "metrics": ckpt.metrics, "p_values": {},
    }  # fmt: skip
    if kind == "trained" and task == "seed-innov":
        out["p_values"] = _every_direction_tested(ckpt, config, result.tables["directions"])
    return out


def _every_direction_tested(ckpt: Checkpoint, config: AnalyzeConfig, directions) -> dict:
    """The sequential p-value of every learned direction's score, specific or not (the
    analysis tests only the specific ones, which alone can be ``distributed``)."""
    seeds = stream_seeds(config.seed)
    data = generate(ckpt.task, config.n_sequences, seeds["data"], norm=ckpt.norm)
    terms = default_terms(ckpt.task, data.input_names)
    scores = directions.set_index("term")["score"].dropna()
    tests, _ = direction_tests(
        ckpt.model, data, 0, scores.to_dict(), config, seeds,
        direction_options(config, seeds, terms), False,
    )  # fmt: skip
    return {term: test.p_value for term, test in tests.items()}


def _demo_section(run: dict) -> list[str]:
    base = run["baselines"].set_index("baseline")
    pairs = run["probes"]
    core = {"K[t]", "K[t-1]", "X[t]", "X[t-1]"}
    among = pairs[pairs["target_a"].isin(core) & pairs["target_b"].isin(core)]
    lines = [
        "## The demo network (`seed`, 8 units, seed 0)",
        "",
        f"- pooled normalized MSE: network {base.loc['network', 'mse']:.2g}, memoryless "
        f"linear map {base.loc['memoryless_linear', 'mse']:.2g}, repeat-last "
        f"{base.loc['repeat_last', 'mse']:.2g} (network / repeat-last "
        f"{base.loc['network', 'mse'] / base.loc['repeat_last', 'mse']:.2g})",
        f"- per step: the network's error is {base.loc['memoryless_linear', 'step_ratio']:.2g}x "
        f"the memoryless map's and {base.loc['training_mean', 'step_ratio']:.2g}x the "
        "training mean's",
        f"- r² between K[t], K[t-1], X[t], X[t-1] on the analyzed data: at least "
        f"{among['r2'].min():.4f}",
        f"- roles: {_role_text(run['roles'])}",
        "",
        "| term | verdict | direction transfer | specificity (lower bound) |",
        "|---|---|---|---|",
    ]
    for r in run["terms"].itertuples():
        lines.append(f"| {r.term} | {r.verdict} | {_pct(r.direction_transfer)} | "
                     f"{_num(r.direction_specificity)} |")  # fmt: skip
    return lines


def _innov_section(runs: list[dict]) -> list[str]:
    terms = pd.concat(
        [
            r["terms"].assign(seed=r["seed"], all_p=r["terms"]["term"].map(r["p_values"]))
            for r in runs
        ],
        ignore_index=True,
    )
    roles = pd.concat([r["roles"].assign(seed=r["seed"]) for r in runs], ignore_index=True)
    lines = [
        "## `seed-innov`, 8 units, seeds 0-4",
        "",
        f"- units with a role, over the 5 networks: {int((roles['role'] != 'none').sum())} of "
        f"{len(roles)} ({_role_text(roles)})",
        "",
        "| term | verdicts over seeds | direction transfer | best unit | leak into another term "
        "| specificity (lower bound) | p-value of the direction's score against null networks "
        "(every direction tested) |",
        "|---|---|---|---|---|---|---|",
    ]
    for term, g in terms.groupby("term", sort=False):
        counts = ", ".join(f"{v} {n}" for v, n in g["verdict"].value_counts().items())
        p = g["all_p"].dropna()
        lines.append(
            f"| {term} | {counts} | {_range(g['direction_transfer'], pct=True)} | "
            f"{_range(g['best_unit_transfer'], pct=True)} | "
            f"{_range(g['direction_leak'], pct=True)} | "
            f"{_range(g['direction_specificity'])} | "
            f"{_range(p, digits=3)} |"
        )
    lines += ["", "Per seed:", "", "| seed | term | verdict | evidence |", "|---|---|---|---|"]
    for r in terms.itertuples():
        lines.append(f"| {r.seed} | {r.term} | {r.verdict} | {r.evidence} |")
    return lines


def _untrained_section(runs: list[dict]) -> list[str]:
    lines = ["## Untrained networks (8 units, least-squares readout)", ""]
    for task in UNTRAINED_TASKS:
        mine = [r for r in runs if r["task"] == task]
        roles = pd.concat([r["roles"] for r in mine])
        terms = pd.concat([r["terms"] for r in mine])
        held = terms["verdict"].isin(["unit", "shared", "formula", "distributed"])
        lines.append(
            f"- `{task}`: {int((roles['role'] != 'none').sum())} of {len(roles)} units of "
            f"{len(mine)} networks get a role; {int(held.sum())} of "
            f"{int((terms['verdict'] != 'unused').sum())} material term verdicts say a unit, "
            f"a formula or a direction holds the term "
            f"({int((terms['verdict'] == 'distributed').sum())} distributed)"
        )
    return lines


def _role_text(roles: pd.DataFrame) -> str:
    named = roles[roles["role"] != "none"]["role"].value_counts()
    return ", ".join(f"{n}x {role}" for role, n in named.items()) or "every unit none"


def _pct(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.0%}"


def _num(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.2f}"


def _range(values: pd.Series, pct: bool = False, digits: int = 2) -> str:
    v = pd.to_numeric(values, errors="coerce").dropna()
    if v.empty:
        return ""
    fmt = _pct if pct else (lambda x: f"{x:.{digits}f}")
    lo, hi = v.min(), v.max()
    return fmt(lo) if np.isclose(lo, hi) else f"{fmt(lo)} to {fmt(hi)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--out", type=Path, default=OUT, help="the markdown file to write")
    args = parser.parse_args()
    start = time.perf_counter()
    jobs = [("trained", "seed", 0), *(("trained", "seed-innov", s) for s in INNOV_SEEDS)]
    jobs += [("untrained", t, k) for t in UNTRAINED_TASKS for k in range(N_UNTRAINED)]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(_analyze, jobs))
    trained = [r for r in runs if r["kind"] == "trained"]
    lines = [
        "# What the README's measured claims rest on",
        "",
        "Generated by `python analyses/readme_claims.py` (library defaults: "
        "`AnalyzeConfig()`); do not edit by hand.",
        "",
        *_demo_section(trained[0]),
        "",
        *_innov_section(trained[1:]),
        "",
        *_untrained_section([r for r in runs if r["kind"] == "untrained"]),
        "",
    ]
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
