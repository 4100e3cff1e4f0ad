"""The causal stages of an analysis: null networks, interchange, directions and their tests.

:func:`unitprobe.pipeline.analyze.compute_analysis` calls these in order:
:func:`analysis_nulls` (the receptive-field null of small untrained networks, and the
reported nulls of full-width ones), :func:`unit_interchange` (every unit's transfer of every
term), :func:`null_transfers`, then, after the roles, :func:`term_directions` (a direction
for every material term no unit holds, and for each specific one the sequential Monte Carlo
test against null networks, :func:`direction_tests`). :func:`null_summary` states what the
verdicts were compared with, for ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from unitprobe.config import AnalyzeConfig
from unitprobe.methods.interventions import direction_search, directions_frames, interchange_table
from unitprobe.methods.roles.terms import DirectionTest, unheld_terms
from unitprobe.pipeline.nulls import (
    NULLS,
    field_null_networks,
    fit_readout,
    null_networks,
    null_rows,
    null_statistics,
    null_thresholds,
    untrained_network,
)
from unitprobe.schemas import SCHEMAS

__all__ = [
    "NULL_BATCH_UNITS",
    "analysis_nulls",
    "direction_options",
    "direction_tests",
    "null_batches",
    "null_field_sequences",
    "null_summary",
    "null_transfers",
    "null_widths",
    "screen_options",
    "specific",
    "term_directions",
    "unit_interchange",
]

#: Most units (networks x units) of null networks whose direction searches run as one batch:
#: bounds the memory of a batched search's backward pass.
NULL_BATCH_UNITS = 256


def unit_interchange(
    model: Any,
    data: Any,
    terms: list[Any],
    config: AnalyzeConfig,
    seed: int,
    candidates: dict[int, list[int]],
) -> pd.DataFrame:
    """Single-unit interchange of every term: the model's own change (which roles read), and
    the change the task's relations predict where they give one, from the same patched runs.
    Under the screen, ``candidates`` (the units a role may read) are patched exactly."""
    table = interchange_table(
        model, data, terms, reference=("model", "auto"), **screen_options(config),
        exact_units=candidates, n_pairs=config.roles.n_pairs, seed=seed,
    )  # fmt: skip
    own = table[table["reference"] == "model"].drop_duplicates(["layer", "units", "term"])
    out = pd.concat([own, table[table["reference"] != "model"]], ignore_index=True)
    out.attrs = dict(table.attrs)
    return out


def screen_options(config: AnalyzeConfig) -> dict[str, Any]:
    """The interchange screen's arguments for the analysis settings."""
    top_k = config.roles.interchange_top_k
    return {"screen": top_k if config.roles.exact_interchange == "screen" else None}


def analysis_nulls(
    model: Any,
    data: Any,
    terms: list[Any],
    targets: Any,
    attribution: dict[str, pd.DataFrame],
    config: AnalyzeConfig,
    seeds: dict[str, int],
) -> pd.DataFrame:
    """Null statistics before any intervention: receptive-field matches of every unit of
    ``null_units`` untrained units at each of :func:`null_widths`
    (:func:`~unitprobe.pipeline.nulls.field_null_networks`, numbered on from one width to
    the next); probes and usage of the first ``n_null_interventions`` networks at the
    analyzed width."""
    fields = attribution["receptive_fields"]
    roles = config.roles
    kw = {
        "terms": [str(t) for t in terms], "seed": seeds["controls"],
        "max_lag": int(fields["lag"].max()) if len(fields) else None,
    }  # fmt: skip
    small = field_null_networks(
        model, null_widths(model, config), roles.null_units, seeds["controls"]
    )
    tables = [null_statistics(small, data, max_sequences=null_field_sequences(config),
                              n_costly=0, **kw)]  # fmt: skip
    if roles.n_null_interventions:
        wide = null_networks(model, data, roles.n_null_interventions, seeds["controls"])
        tables.append(null_statistics(
            wide, data, targets=targets, ablation_sequences=config.ablation.max_sequences,
            n_splits=config.probes.n_splits, alpha=config.probes.alpha,
            exact_ablation=config.ablation.exact, fields=False, **kw,
        ))  # fmt: skip
    return NULLS.coerce(pd.concat(tables, ignore_index=True))


def null_widths(model: Any, config: AnalyzeConfig) -> list[int]:
    """The widths of the receptive-field null: ``RoleConfig.null_widths``, then the analyzed
    width where it is narrower than all of them (a narrower layer's units read their inputs
    more purely). Listed last, it leaves the other widths' null networks as they are in any
    layer."""
    widths = sorted(set(config.roles.null_widths))
    n_units = model.config.n_units
    return [*widths, n_units] if n_units < widths[0] else widths


def null_field_sequences(config: AnalyzeConfig) -> int:
    """Sequences of each null network's receptive field: never more than the network's own."""
    return min(config.attribution.max_sequences, config.roles.null_field_sequences)


def null_transfers(
    model: Any,
    data: Any,
    terms: list[Any],
    config: AnalyzeConfig,
    seeds: dict[str, int],
    nulls: pd.DataFrame,
) -> pd.DataFrame:
    """``nulls`` with the interchange transfers of the first ``n_null_interventions`` null
    networks at the analyzed width (screened as the network's own, without role candidates)."""
    rows = [nulls]
    for k in range(config.roles.n_null_interventions):
        net = fit_readout(untrained_network(model, seeds["controls"] + k), data)
        inter = interchange_table(
            net, data, terms, reference="model", n_pairs=config.roles.n_pairs,
            seed=seeds["interventions"], **screen_options(config),
        )  # fmt: skip
        rows.append(null_rows(k, inter, "transfer", "transfer"))
    return NULLS.coerce(pd.concat(rows, ignore_index=True))


def term_directions(
    model: Any,
    data: Any,
    terms: list[Any],
    roles: pd.DataFrame,
    interchange: pd.DataFrame,
    config: AnalyzeConfig,
    seeds: dict[str, int],
    nulls: pd.DataFrame,
    progress: bool | None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[tuple[int, str], DirectionTest], pd.DataFrame]:
    """Directions for the material terms no unit holds, and the test of the specific ones
    (:func:`specific`) against null networks.

    Returns the ``directions`` and ``direction_loadings`` tables, each direction's
    :class:`~unitprobe.methods.roles.terms.DirectionTest` by (layer, term), and ``nulls``
    with the null networks' direction scores added (statistic ``direction_score``).
    """
    roles_cfg = config.roles
    empty = SCHEMAS["directions"].empty(), SCHEMAS["direction_loadings"].empty(), {}, nulls
    if not roles_cfg.directions:
        return empty
    kw = direction_options(config, seeds, terms)
    found, tests, rows = [], {}, [nulls]
    for layer in range(model.config.n_layers):
        pending = unheld_terms(roles, interchange, layer, roles_cfg.material_effect)
        if not pending:
            continue
        (mine,) = direction_search(
            [model], data, pending, layer=layer, **kw, **screen_options(config)
        )
        found += mine
        bar = roles_cfg.direction_specificity
        observed = {str(d.term): d.score for d in mine if specific(d, bar)}
        test, null_rows_ = direction_tests(model, data, layer, observed, config, seeds, kw,
                                            progress)  # fmt: skip
        tests.update({(layer, t): v for t, v in test.items()})
        rows.append(null_rows_)
    if not found:
        return empty
    table, loadings = directions_frames(found)
    return table, loadings, tests, NULLS.coerce(pd.concat(rows, ignore_index=True))


def direction_options(
    config: AnalyzeConfig, seeds: dict[str, int], terms: list[Any]
) -> dict[str, Any]:
    """The keyword arguments of every direction search of an analysis, the network's and the
    null networks' alike (:func:`~unitprobe.methods.interventions.direction_search`)."""
    roles = config.roles
    return {
        "scored_terms": terms, "reference": "model", "n_pairs": roles.n_pairs,
        "seed": seeds["interventions"], "epochs": roles.direction_epochs,
        "restarts": roles.direction_restarts, "material": roles.material_effect,
    }  # fmt: skip


def specific(d: Any, specificity: float) -> bool:
    """Whether a direction is worth testing against null networks: it beats the best single
    unit on its held-out pairs and its specificity is at least ``specificity`` at the lower
    end of its interval (it carries its term clearly more than any other material term).
    Only such a direction can be ``distributed``."""
    unit = d.best_unit_transfer if np.isfinite(d.best_unit_transfer) else -np.inf
    return bool(d.transfer_test > unit and d.specificity_lo >= specificity)


def direction_tests(
    model: Any,
    data: Any,
    layer: int,
    observed: dict[str, float],
    config: AnalyzeConfig,
    seeds: dict[str, int],
    kw: dict[str, Any],
    progress: bool | None,
) -> tuple[dict[str, DirectionTest], pd.DataFrame]:
    """The sequential Monte Carlo test of each direction's score (Besag and Clifford, 1991).

    Null network ``k`` (untrained, the analyzed shape, least-squares readout, seeded
    ``controls + k``) runs the same search for every term still open; a term closes at the
    first null network that scores at least as well as the network, the ``m``-th drawn, with
    p-value ``1 / m``; a term that none of the ``n_null_directions`` networks matches has
    p-value ``1 / (n_null_directions + 1)``, the smallest the test can give. Networks are
    searched in batches (:func:`null_batches`); a term's results are read in network order
    and stop at its closing network, so batching changes no p-value.
    """
    open_terms = dict(observed)
    scores: dict[str, list[float]] = {t: [] for t in observed}
    closed: dict[str, int] = {}
    records = []
    quiet = None if progress is None else not progress
    bar = tqdm(total=config.roles.n_null_directions, desc="null directions", disable=quiet,
               leave=False)  # fmt: skip
    for first, size in null_batches(config.roles.n_null_directions, model.config.n_units):
        if not open_terms:
            break
        nets = [fit_readout(untrained_network(model, seeds["controls"] + first + i), data)
                for i in range(size)]  # fmt: skip
        found = direction_search(nets, data, list(open_terms), layer=layer, best_unit=False,
                                 **kw)  # fmt: skip
        for i, directions in enumerate(found):
            for d in directions:
                term, value = str(d.term), d.score
                if term not in open_terms:
                    continue  # closed at an earlier network of this batch
                records.append((first + i, layer, pd.NA, "direction_score", term, value))
                scores[term].append(value if np.isfinite(value) else -np.inf)
                if np.isfinite(value) and value >= open_terms[term]:
                    closed[term] = first + i + 1
                    del open_terms[term]
        bar.update(size)
    bar.close()
    tests = {}
    for term, values in scores.items():
        p = 1.0 / closed[term] if term in closed else 1.0 / (len(values) + 1)
        finite = [v for v in values if np.isfinite(v)]
        tests[term] = DirectionTest(p, len(values), max(finite) if finite else np.nan)
    table = pd.DataFrame(records, columns=list(NULLS.columns))
    return tests, NULLS.coerce(table)


def null_batches(n: int, n_units: int) -> list[tuple[int, int]]:
    """``(first, size)`` of the batches of null networks searched together: 1, 2, 4, ...
    networks (most terms of a network that learned nothing close at the first few), at most
    :data:`NULL_BATCH_UNITS` units in all."""
    cap = max(1, NULL_BATCH_UNITS // n_units)
    out, first, size = [], 0, 1
    while first < n:
        take = min(size, cap, n - first)
        out.append((first, take))
        first, size = first + take, size * 2
    return out


def null_summary(model: Any, config: AnalyzeConfig, nulls: pd.DataFrame) -> dict[str, Any]:
    """What the verdicts were compared with, and at which levels (``summary.json``)."""
    roles = config.roles
    widths = null_widths(model, config)
    return {
        "field_widths": widths,
        "field_units_per_width": roles.null_units,
        "field_sequences": null_field_sequences(config),
        "unit_level": roles.unit_level,
        "thresholds": null_thresholds(nulls, roles.unit_level),
        "material_effect": roles.material_effect,
        "networks_for_interventions": roles.n_null_interventions,
        "direction_specificity": roles.direction_specificity,
        "direction_level": roles.direction_level,
        "direction_networks": roles.n_null_directions,
        "direction_restarts": roles.direction_restarts,
        "rule": (
            "a unit reads a term (or formula) when its receptive-field cosine exceeds that "
            "term's (or pair's) threshold at every null width (untrained networks of "
            f"{', '.join(map(str, widths))} units), every term and pair "
            f"calibrated together so that at most {roles.unit_level:g} of a width's null units "
            "pass any test (the conformal quantile of each null unit's most extreme test), "
            "the same whatever the layer's width; a term is "
            "distributed when its learned direction beats the best unit, carries it at least "
            f"{1 / max(1e-12, 1 - roles.direction_specificity):.3g} times as much as any other "
            "material term (lower 95 % bound), and its score has a sequential Monte Carlo "
            f"p-value <= {roles.direction_level:g} against untrained networks of the analyzed "
            "shape"
        ),
    }
