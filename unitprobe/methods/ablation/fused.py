"""Exact ablations through the fused ``nn.LSTM`` kernel.

The stepwise :func:`~unitprobe.model.lstm.run` can overwrite any site at any step, but it
steps the recurrence in Python. An ablation of the hidden state ``h`` of a unit set ``S`` of
layer ``l`` from step ``s0`` on is also an *ordinary* LSTM with other weights, so it can run
in the fused kernel (``torch.lstm``, the kernel behind ``nn.LSTM``) instead.

The construction
----------------
Let ``v_t`` (for ``t >= s0``) be the replacement values of the units in ``S`` and ``e_t`` the
state the rest of the network sees: ``e_t = h_t`` (clean) for ``t < s0`` and ``e_t = v_t``
from ``s0`` on. In the ablated network the units of ``S`` reach the rest of the network
only through ``e``:

1. **Recurrence.** The gate pre-activations of step ``t`` are
   ``W_ih x_t + W_hh[:, ~S] h_{t-1}[~S] + W_hh[:, S] e_{t-1} + b``. The modified layer has
   ``W_hh' = W_hh`` with the columns of ``S`` set to 0, and one extra input per unit of ``S``,
   ``z_t = e_{t-1}`` (``z_{s0} = h_{s0-1}`` clean, ``z_t = v_{t-1}`` after), with input weights
   ``W_hh[:, S]``: ``W_ih' = [W_ih | W_hh[:, S]]``. The products are the same sums of the same
   terms, so the gates equal the stepwise ones up to float summation order.
2. **Layers above and readout.** The modified layer's output has its ``S`` columns replaced
   by ``v`` (a copy, exact) before it feeds the next layer (the unmodified fused layers) or
   the readout.
3. **Steps before s0** are the clean run's: the modified layers start from the clean
   ``(h, c)`` after step ``s0 - 1`` (the units of ``S`` keep their own clean ``c``, which only
   feeds their own, unread ``h``).

``v`` is any tensor known before the run, so zero, per-step mean and resample ablation are all
exact. ``site="both"`` replaces ``c`` and then ``h`` at every step: the replaced ``c`` only
reaches the rest of the network through ``h`` of the same step, which is replaced too, so it
is the ``h`` ablation with the ``h`` values. ``site="c"`` with zeros is the zero ``h``
ablation (``h = o * tanh(0) = 0``). ``site="c"`` with mean or resample values has no such
form: the unit's ``h = o_t * tanh(v_t)`` multiplies a known value by a gate of the ablated run
itself, which no fixed input can supply; :func:`fused_supports` says so and the table runs
those through the stepwise engine.

Example
-------
>>> clean = clean_states(model, x, start=0)
>>> hidden = ablated_hidden(model, clean, layer=0, units=(3,), values=v, seqs=rows)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unitprobe.model.lstm import UnitLSTM, fused_layer, layer_params

__all__ = [
    "CleanStates",
    "fused_supports",
    "layer_params",
    "fused_layer",
    "clean_states",
    "ablated_hidden",
    "readout_sse",
    "fused_bytes_per_row",
]


def fused_supports(site: str, mode: str) -> bool:
    """Whether the fused construction is exact: every site and mode but c + mean/resample."""
    return site != "c" or mode == "zero"


@dataclass
class CleanStates:
    """A clean fused run, split at ``start``.

    Attributes
    ----------
    start : int
    inputs : list of Tensor of shape (N, T, n_in_l)
        What each layer reads (the model inputs, then the layer below's ``h``).
    h : list of Tensor of shape (N, T, H)
        Each layer's hidden state at every step.
    h0, c0 : list of Tensor of shape (N, H)
        Each layer's state after step ``start - 1`` (zeros for ``start == 0``).
    """

    start: int
    inputs: list[Tensor]
    h: list[Tensor]
    h0: list[Tensor]
    c0: list[Tensor]


def clean_states(model: UnitLSTM, x: Tensor, start: int) -> CleanStates:
    """The clean run of ``x`` (N, T, n_inputs) through every layer, in the fused kernel.

    With ``start > 0`` each layer runs ``[0, start)`` and then ``[start, T)`` from the state
    the first part ends in (the same arithmetic as one call).
    """
    inputs, hs, h0s, c0s = [], [], [], []
    layer_in = x
    for layer in range(model.config.n_layers):
        params = layer_params(model, layer)
        if start > 0:
            head, h0, c0 = fused_layer(layer_in[:, :start], params)
            tail, _, _ = fused_layer(layer_in[:, start:], params, h0, c0)
            hidden = torch.cat([head, tail], dim=1)
        else:
            hidden, _, _ = fused_layer(layer_in, params)
            h0 = c0 = x.new_zeros(x.shape[0], model.config.n_units)
        inputs.append(layer_in)
        hs.append(hidden)
        h0s.append(h0)
        c0s.append(c0)
        layer_in = hidden
    return CleanStates(start, inputs, hs, h0s, c0s)


def ablated_hidden(
    model: UnitLSTM,
    clean: CleanStates,
    layer: int,
    units: Sequence[int],
    values: Tensor,
    seqs: Tensor,
) -> Tensor:
    """Last layer's ``h`` from ``clean.start`` on with ``h[units]`` of ``layer`` set to ``values``.

    Parameters
    ----------
    model : UnitLSTM
    clean : CleanStates
        The clean run of the same inputs.
    layer : int
    units : sequence of int
        The ablated unit set ``S`` (sorted, distinct).
    values : Tensor of shape (rows, T - start, len(units))
        Replacement ``h`` of the units at steps ``start, ..., T - 1``, row by row.
    seqs : Tensor of int of shape (rows,)
        The sequence of every row.

    Returns
    -------
    Tensor of shape (rows, T - start, n_units)
        The last layer's hidden state at steps ``>= start`` (the readout's input).
    """
    start = clean.start
    idx = torch.as_tensor(list(units), device=values.device)
    w_ih, w_hh, b_ih, b_hh = layer_params(model, layer)
    w_hh_cut = w_hh.clone()
    w_hh_cut[:, idx] = 0
    w_ih_ext = torch.cat([w_ih, w_hh[:, idx]], dim=1)  # (4H, n_in + |S|)
    h_prev = clean.h0[layer][seqs]  # (rows, H): clean h after step start - 1
    extra = torch.cat([h_prev[:, idx][:, None], values[:, :-1]], dim=1)  # (rows, T', |S|)
    layer_in = torch.cat([clean.inputs[layer][seqs, start:], extra], dim=2)
    hidden, _, _ = fused_layer(
        layer_in, [w_ih_ext, w_hh_cut, b_ih, b_hh], h_prev, clean.c0[layer][seqs]
    )
    hidden[:, :, idx] = values  # what the layers above and the readout see
    for upper in range(layer + 1, model.config.n_layers):
        hidden, _, _ = fused_layer(
            hidden, layer_params(model, upper), clean.h0[upper][seqs], clean.c0[upper][seqs]
        )
    return hidden


def readout_sse(hidden: Tensor, model: UnitLSTM, targets: Tensor) -> Tensor:
    """Squared readout error summed over steps, float64 of shape (rows, n_outputs).

    hidden : (rows, T', n_units), the last layer's h; targets : (rows, T', n_outputs).
    """
    weight = model.readout.weight.detach().double()
    bias = model.readout.bias.detach().double()
    pred = hidden.double() @ weight.T + bias  # (rows, T', O)
    return ((pred - targets) ** 2).sum(dim=1)


def fused_bytes_per_row(model: UnitLSTM, n_steps: int, n_set: int, itemsize: int) -> int:
    """Approximate peak memory of one row of a fused ablated run.

    The kernel holds the input projection of every step (4 H) and the output (H) of a layer;
    the row also carries its extended input, its replacement values and a float64 readout.
    """
    cfg = model.config
    floats = n_steps * (2 * (5 * cfg.n_units) + cfg.n_units + cfg.n_inputs + 2 * n_set)
    doubles = n_steps * (cfg.n_units + 3 * cfg.n_outputs)
    return itemsize * floats + 8 * doubles
