"""Null networks: what each kind of evidence looks like in a network that learned nothing.

A statistic means something only beside its value in networks that hold no term by
training. :func:`null_networks` builds them: untrained networks of the analyzed network's
shape (seeded from the ``controls`` stream; optionally at another width), each with a
**least-squares readout** fitted to the same data (so, like the trained network, their output
does predict the targets as well as their random units allow). :func:`null_statistics` then
measures, on the same sequences and over *all* their units (unit indices mean nothing across
networks):

==================  ==========================================================================
statistic           per null unit (or per layer x term)
==================  ==========================================================================
``field_cosine``    ``|cosine|`` of its receptive field with each candidate term
``formula_cosine``  match of its receptive field with each pair of candidate terms
``probe_r2``        held-out probe R² of each target (one value per unit x target)
``usage``           largest relative MSE increase under mean / resample ablation
==================  ==========================================================================

Interchange transfers and direction scores of null networks are added by the pipeline
(:mod:`unitprobe.pipeline.verdicts`) from the intervention methods. The receptive-field
thresholds are per-unit levels of the null (:func:`null_thresholds`, from
:class:`unitprobe.methods.roles.fieldnull.FieldNull`), per layer, and the percentile of a
unit's statistic among the null values is reported.

Example
-------
>>> nets = null_networks(model, dataset, n=512, seed=stream_seed(0, "controls"), width=4)
>>> nulls = null_statistics(nets, dataset, terms=["K[t]", "X[t-1]"], max_lag=5, n_costly=0)
>>> null_thresholds(nulls, level=0.01)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from unitprobe.config import AblationConfig, ProbeConfig
from unitprobe.methods.ablation import ablation_table
from unitprobe.methods.attribution.fields import receptive_field_arrays
from unitprobe.methods.probes import unit_probes
from unitprobe.methods.roles.causal import usage_from_ablation
from unitprobe.methods.roles.fieldnull import field_nulls, field_test_names, field_tests, term_cell
from unitprobe.model.lstm import ModelConfig, UnitLSTM, as_tensor, run
from unitprobe.model.stacked import block_diagonal
from unitprobe.schemas import SCHEMAS
from unitprobe.validation import check_int

__all__ = [
    "NULLS",
    "WIDTH_SEED",
    "field_null_networks",
    "fit_readout",
    "null_networks",
    "null_rows",
    "null_statistics",
    "null_thresholds",
    "untrained_network",
]

#: The ``nulls`` table: one row per null network x layer x unit x statistic (x term).
NULLS = SCHEMAS["nulls"]
#: Apart from one another, the seeds of each width of a receptive-field null
#: (:func:`field_null_networks`).
WIDTH_SEED = 100_000
#: Most units of null networks joined into one for their receptive fields (the joined
#: network's dense weights cost its width squared: small blocks of many small networks).
FIELD_BLOCK_UNITS = 64


def fit_readout(model: UnitLSTM, dataset: Any) -> UnitLSTM:
    """Set ``model``'s readout to the least-squares fit of the dataset's targets; returns it.

    Runs the forward on the model's device and the fit on the CPU (numpy, float64).

    The fit maps the last layer's h at every step (with an intercept) to the targets, pooled
    over sequences and steps, in float64. The states come from the fused ``nn.LSTM`` forward
    (equal to :func:`~unitprobe.model.lstm.run` to float rounding).
    """
    with torch.no_grad():
        h, _ = model.lstm(as_tensor(dataset.inputs, model))  # (N, T, H), last layer
    states = h.reshape(-1, model.config.n_units).double().cpu().numpy()
    targets = np.asarray(dataset.targets, dtype=np.float64).reshape(len(states), -1)
    design = np.c_[states, np.ones(len(states))]
    weights, *_ = np.linalg.lstsq(design, targets, rcond=None)  # (H + 1, O)
    with torch.no_grad():  # copy_ casts to the readout's dtype and device
        model.readout.weight.copy_(torch.as_tensor(weights[:-1].T))
        model.readout.bias.copy_(torch.as_tensor(weights[-1]))
    return model.eval()


def untrained_network(model: UnitLSTM, seed: int, width: int | None = None) -> UnitLSTM:
    """A freshly initialized network of ``model``'s shape (``width`` units per layer where
    given), dtype and device (torch seed ``seed``, drawn on the CPU so every device gets the
    same weights), in eval mode; the global random state is left as it was."""
    config = model.config
    if width is not None:
        width = check_int(width, "width", minimum=1)
        config = ModelConfig(config.n_inputs, width, config.n_outputs, config.n_layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UnitLSTM(config)
    param = next(model.parameters())
    return net.to(device=param.device, dtype=param.dtype).eval()


def null_networks(
    model: UnitLSTM,
    dataset: Any,
    n: int,
    seed: int,
    *,
    width: int | None = None,
    readout: bool = True,
) -> list[UnitLSTM]:
    """``n`` untrained networks of ``model``'s shape (``width`` units per layer where given),
    torch seeds ``seed .. seed + n - 1``, each with a least-squares readout on ``dataset``
    (:func:`fit_readout`; ``readout=False`` keeps the initial one, for statistics that never
    read the output, such as receptive fields)."""
    check_int(n, "n", minimum=1)
    nets = [untrained_network(model, seed + k, width) for k in range(n)]
    return [fit_readout(net, dataset) for net in nets] if readout else nets


def field_null_networks(
    model: UnitLSTM, widths: Sequence[int], n_units: int, seed: int
) -> list[UnitLSTM]:
    """The untrained networks of a receptive-field null: ``ceil(n_units / width)`` networks of
    ``model``'s inputs and layers at each width (no readout fit: a field never reads it).
    The ``j``-th width (from 0) draws torch seeds ``seed + (j + 1) * WIDTH_SEED + k``, apart
    from the full-width null networks (``seed + k``): give the widths in a fixed order (the
    pipeline lists ``RoleConfig.null_widths`` first) so that a width's networks do not depend
    on the others."""
    check_int(n_units, "null_units", minimum=1)
    nets = []
    for j, width in enumerate(widths):
        first = seed + (j + 1) * WIDTH_SEED
        nets += [untrained_network(model, first + k, width) for k in range(-(-n_units // width))]
    return nets


def null_rows(network: int, table: pd.DataFrame, statistic: str, value: str) -> pd.DataFrame:
    """Rows of the ``nulls`` table for one statistic of one null network, read from a method's
    table (its ``layer``, ``term``, the column ``value``, and ``units`` when it has one)."""
    unit = table["units"].astype(int) if "units" in table.columns else pd.NA
    frame = pd.DataFrame(
        {
            "network": network, "layer": table["layer"], "unit": unit, "statistic": statistic,
            "term": table["term"], "value": table[value],
        }
    )  # fmt: skip
    return NULLS.coerce(frame)


def null_statistics(
    networks: Sequence[UnitLSTM],
    dataset: Any,
    *,
    terms: Sequence[str],
    targets: Any = None,
    max_lag: int | None = None,
    max_sequences: int = 128,
    ablation_sequences: int = AblationConfig.max_sequences,
    n_splits: int = ProbeConfig.n_splits,
    alpha: float = ProbeConfig.alpha,
    n_costly: int | None = None,
    seed: int = 0,
    exact_ablation: str = AblationConfig.exact,
    fields: bool = True,
) -> pd.DataFrame:
    """Every statistic of the module table, on every unit of every null network.

    Parameters
    ----------
    networks : sequence of UnitLSTM
        From :func:`null_networks`.
    dataset : Dataset
        The analyzed sequences (``inputs``, ``targets``, ``input_names``, ``output_names``).
    terms : sequence of str
        Candidate terms (``NAME[t-lag]``) for the receptive-field matches.
    targets : Targets, optional
        Probe targets (:func:`unitprobe.methods.targets.make_targets`); no ``probe_r2`` rows
        without them.
    max_lag : int, optional
        Lags of the receptive fields; use the analyzed network's.
    max_sequences, ablation_sequences : int
        Sequences for the receptive fields and for the ablations.
    n_splits, alpha : probe settings.
    n_costly : int, optional
        Only the first ``n_costly`` networks get the costly statistics (``usage``,
        ``probe_r2``); default all. The receptive-field statistics are cheap and come from
        every network.
    seed : int
        Sampling seed of the receptive fields and resample ablations.
    exact_ablation : {"screen", "all"}
        The ``usage`` ablations: screened as the analyzed network's (exact where the screen
        cannot tell whether ``usage > 0``, and for the largest effects), or every unit exactly.
    fields : bool, default True
        Measure the receptive-field statistics (False: only the costly ones).

    Returns
    -------
    DataFrame
        The ``nulls`` table (:data:`NULLS`).
    """
    rows: list[tuple] = []
    if fields:
        rows += _field_rows(networks, dataset, terms, max_lag, max_sequences, seed)
    for k, net in enumerate(networks):
        if n_costly is not None and k >= n_costly:
            break
        rows += _usage_rows(k, net, dataset, ablation_sequences, seed, exact_ablation)
        if targets is not None:
            rows += _probe_rows(k, net, dataset, targets, n_splits, alpha)
    table = pd.DataFrame(rows, columns=list(NULLS.columns))
    return NULLS.coerce(table)


def _field_rows(
    networks: Sequence[UnitLSTM],
    dataset: Any,
    terms: Sequence[str],
    max_lag: int | None,
    max_sequences: int,
    seed: int,
) -> list[tuple]:
    """Every null unit's cosine with each term (``field_cosine``) and each pair of terms
    (``formula_cosine``; the term column holds the pair's test name). Networks are joined
    block-diagonally (:func:`~unitprobe.model.stacked.block_diagonal`, at most
    :data:`FIELD_BLOCK_UNITS` units) so that one forward-mode pass gives the fields of many."""
    cells = [term_cell(t) for t in terms]
    names = field_test_names(terms)
    kinds = ["field_cosine"] * len(cells) + ["formula_cosine"] * (len(names) - len(cells))
    inputs = np.asarray(dataset.inputs)
    rows = []
    for block in _blocks(networks):
        joined = block_diagonal([networks[k] for k in block])
        for layer in range(joined.config.n_layers):
            arrays = receptive_field_arrays(
                joined, inputs, dataset.input_names, layer=layer, max_lag=max_lag,
                max_sequences=max_sequences, seed=seed, with_absolute=False,
            )  # fmt: skip
            tests = field_tests(arrays.signed, arrays.input_names, cells)  # (units, tests)
            first = 0
            for k in block:
                width = networks[k].config.n_units
                for unit, values in enumerate(tests[first : first + width].tolist()):
                    labelled = zip(kinds, names, values, strict=True)
                    rows += [(k, layer, unit, kind, name, v) for kind, name, v in labelled]
                first += width
    return rows


def _blocks(networks: Sequence[UnitLSTM]) -> list[list[int]]:
    """Consecutive networks of at most :data:`FIELD_BLOCK_UNITS` units in all (one at least)."""
    blocks: list[list[int]] = []
    units = 0
    for k, net in enumerate(networks):
        width = net.config.n_units
        if not blocks or units + width > FIELD_BLOCK_UNITS:
            blocks.append([])
            units = 0
        blocks[-1].append(k)
        units += width
    return blocks


def _usage_rows(k: int, net: UnitLSTM, dataset: Any, n: int, seed: int, exact: str) -> list[tuple]:
    subset = dataset.subset(np.arange(min(n, dataset.n_sequences)))
    table = ablation_table(
        net, subset, modes=("mean", "resample"), seed=seed, exact=exact, threshold=0.0
    )
    return [
        (k, layer, unit, "usage", None, value)
        for (layer, unit), (value, _, _) in usage_from_ablation(table).items()
    ]


def _probe_rows(
    k: int, net: UnitLSTM, dataset: Any, targets: Any, n_splits: int, alpha: float
) -> list[tuple]:
    with torch.no_grad():
        trace = run(net, dataset.inputs, record=("h",))
    rows = []
    for layer in range(net.config.n_layers):
        states = trace.numpy("h", layer)[targets.mask]
        table = unit_probes(states, targets.values, targets.groups, n_splits=n_splits, alpha=alpha)
        rows += [(k, layer, int(r.unit), "probe_r2", str(r.target), float(r.r2)) for r in
                 table.itertuples()]  # fmt: skip
    return rows


def null_thresholds(nulls: pd.DataFrame, level: float) -> dict[str, Any]:
    """The receptive-field thresholds of each layer at the per-unit ``level`` (plain data).

    Returns ``{layer: {"n_units": null units, "shares": {width: the share of a test's null
    values a cosine must exceed}, "tests": {test name: cosine threshold}}}`` with string keys,
    as ``summary.json`` stores them; empty without receptive-field rows.
    """
    if not nulls["statistic"].isin(("field_cosine", "formula_cosine")).any():
        return {}
    return {
        str(layer): {
            "n_units": null.n_units,
            "shares": {str(w): s for w, s in null.shares.items()},
            "tests": null.thresholds,
        }
        for layer, null in field_nulls(nulls, level).items()
    }
