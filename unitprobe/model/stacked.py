"""Several networks of one shape run as one: stacked weights and the batched recurrence
after an edit, or one block-diagonal network.

Null networks are many untrained networks of the analyzed network's shape, run on the same
counterfactual pairs. :func:`stacked_weights` stacks their parameters along a first axis, and
:func:`stacked_suffix_outputs` runs all of them from edited states through one stepwise
recurrence (:func:`~unitprobe.model.lstm.lstm_step` with a network axis), at the cost of the
steps after each row's edit only: what :func:`~unitprobe.model.lstm.suffix_outputs` does for
one network, equal to it to float rounding (tested).

:func:`block_diagonal` joins networks into one wider network whose units are theirs (block
diagonal weights: no unit reads a unit of another network), so anything computed per unit of
the joined network, such as a receptive field, is each network's, in one pass.

Example
-------
>>> weights = stacked_weights([net_a, net_b])
>>> y = stacked_suffix_outputs(weights, inputs, steps, h, c, y_prefix)  # (2, R, T, O)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unitprobe.errors import UnitprobeError
from unitprobe.model.lstm import ModelConfig, UnitLSTM, lstm_step

__all__ = ["block_diagonal", "stacked_suffix_outputs", "stacked_weights"]


def stacked_weights(models: Sequence[UnitLSTM]) -> dict[str, Tensor]:
    """The weights of one-layer networks of one shape, stacked along a first axis.

    Returns ``w_ih`` (N, 4H, F), ``w_hh`` (N, 4H, H), ``bias`` (N, 4H; ``bias_ih +
    bias_hh``), ``w_out`` (N, O, H) and ``b_out`` (N, O), detached.
    """
    configs = {m.config for m in models}
    if len(configs) != 1 or next(iter(configs)).n_layers != 1:
        raise UnitprobeError("stacked networks must be one-layer networks of one shape")
    return {
        "w_ih": torch.stack([m.lstm.weight_ih_l0.detach() for m in models]),
        "w_hh": torch.stack([m.lstm.weight_hh_l0.detach() for m in models]),
        "bias": torch.stack([(m.lstm.bias_ih_l0 + m.lstm.bias_hh_l0).detach() for m in models]),
        "w_out": torch.stack([m.readout.weight.detach() for m in models]),
        "b_out": torch.stack([m.readout.bias.detach() for m in models]),
    }


def stacked_suffix_outputs(
    weights: dict[str, Tensor], inputs: Tensor, steps: Tensor, h: Tensor, c: Tensor,
    y_prefix: Tensor,
) -> Tensor:  # fmt: skip
    """:func:`suffix_outputs` for ``N`` one-layer networks of one shape at once.

    Every network runs the same rows (the same inputs and steps) from its own states. The
    rows are stepped in order of their step, so at step ``t`` only the rows already set run
    (the work of the steps after each edit, as :func:`suffix_outputs`), and each step of all
    networks is one batched matrix product (:func:`lstm_step` with a network axis).

    Parameters
    ----------
    weights : dict
        :func:`stacked_weights` of the networks.
    inputs : Tensor of shape (n_rows, n_steps, n_inputs)
    steps : Tensor of int64, shape (n_rows,)
    h, c : Tensor of shape (N, n_rows, n_units)
        Each network's states right after each row's step (may require grad).
    y_prefix : Tensor of shape (N, n_rows, n_steps, n_outputs)
        Each network's outputs before each row's step.

    Returns
    -------
    Tensor of shape (N, n_rows, n_steps, n_outputs)
        Equal to :func:`suffix_outputs` of each network to float rounding (tested);
        differentiable in ``h`` and ``c``.
    """
    n_rows, n_steps = inputs.shape[:2]
    order = torch.argsort(steps, stable=True)
    x, start = inputs[order], steps[order]
    h0, c0, prefix = h[:, order], c[:, order], y_prefix[:, order]
    # rows set by step t: a prefix of the ordered rows, growing with t
    ready = torch.bincount(start, minlength=n_steps).cumsum(0).tolist()
    w_ih, w_hh, bias = weights["w_ih"], weights["w_hh"], weights["bias"]
    w_out, b_out = weights["w_out"], weights["b_out"]
    hh = cc = None
    outputs = []
    for t in range(n_steps):
        k = ready[t]
        running = 0 if hh is None else hh.shape[1]
        parts = []
        if running:  # rows set before t take one step
            projected = x[:running, t] @ w_ih.mT + bias[:, None]  # (N, running, 4H)
            cell = lstm_step(projected, hh, cc, w_hh)
            parts.append((cell.h, cell.c))
        if k > running:  # rows set at t start from their given states
            parts.append((h0[:, running:k], c0[:, running:k]))
        if parts:
            hh = torch.cat([p[0] for p in parts], 1) if len(parts) > 1 else parts[0][0]
            cc = torch.cat([p[1] for p in parts], 1) if len(parts) > 1 else parts[0][1]
            y = hh @ w_out.mT + b_out[:, None]  # (N, k, O)
            outputs.append(torch.cat([y, prefix[:, k:, t]], 1) if k < n_rows else y)
        else:
            outputs.append(prefix[:, :, t])
    y = torch.stack(outputs, 2)  # (N, n_rows, n_steps, O), rows in step order
    return y[:, torch.argsort(order)]


def block_diagonal(models: Sequence[UnitLSTM]) -> UnitLSTM:
    """One network whose units are the units of ``models``, in order, each reading only its
    own network's units (block-diagonal weights, every gate and layer).

    Parameters
    ----------
    models : sequence of UnitLSTM
        Networks with the same inputs and layers (widths may differ).

    Returns
    -------
    UnitLSTM
        Of width ``sum(widths)``, on the first network's device and dtype, in eval mode; unit
        ``offset_j + u`` of every layer is unit ``u`` of ``models[j]``, with the same states
        at every step. Its readout is zero (it has the first network's outputs): the joined
        network is for per-unit quantities, not for its output.
    """
    first = models[0].config
    if any(m.config.n_inputs != first.n_inputs or m.config.n_layers != first.n_layers
           for m in models):  # fmt: skip
        raise UnitprobeError("joined networks must have the same inputs and layers")
    widths = [m.config.n_units for m in models]
    total = sum(widths)
    with torch.random.fork_rng(devices=[]):  # its default init is overwritten below
        joined = UnitLSTM(ModelConfig(first.n_inputs, total, first.n_outputs, first.n_layers))
    param = next(models[0].parameters())
    joined = joined.to(device=param.device, dtype=param.dtype)
    starts = [sum(widths[:j]) for j in range(len(models))]
    with torch.no_grad():
        for name, target in joined.lstm.named_parameters():
            target.zero_()
            for model, start, width in zip(models, starts, widths, strict=True):
                source = getattr(model.lstm, name).detach()
                gates = source.reshape(4, width, *source.shape[1:])  # gate order i, f, g, o
                rows = target.view(4, total, *target.shape[1:])[:, start : start + width]
                if name.startswith("weight_hh") or (name.startswith("weight_ih") and
                                                    not name.endswith("_l0")):  # fmt: skip
                    rows[..., start : start + width] = gates  # reads its own units only
                else:
                    rows[...] = gates
        joined.readout.weight.zero_()
        joined.readout.bias.zero_()
    return joined.eval()
