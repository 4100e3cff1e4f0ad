"""The multi-unit LSTM and its stepwise, hookable forward pass.

:class:`UnitLSTM` is an ``nn.LSTM`` (one or more layers) with a linear readout from the last
layer's hidden state. Training uses the fused ``nn.LSTM``; analysis uses :func:`run`, an explicit
loop over time steps with named *sites* for every layer:

====  ==========================================  =====================
site  meaning                                     shape at one step
====  ==========================================  =====================
i     input gate, after the sigmoid               (batch, n_units)
f     forget gate, after the sigmoid              (batch, n_units)
g     cell candidate, after the tanh              (batch, n_units)
o     output gate, after the sigmoid              (batch, n_units)
c     cell state  ``c = f * c_prev + i * g``      (batch, n_units)
h     hidden state ``h = o * tanh(c)``            (batch, n_units)
====  ==========================================  =====================

One step of the recurrence is :func:`lstm_cell`; :func:`run` and the receptive-field Jacobians
of :mod:`unitprobe.methods.attribution` both step through it, so the cell equations live here
only.

Any site of any layer can be read (every run returns a :class:`Trace`) or overwritten at chosen
steps by an :class:`Intervention`; an edit at step ``s`` propagates through the recurrence to
every later step and to the layers above. :func:`run` without interventions equals the fused
``nn.LSTM`` forward to float rounding (tested to 1e-6).

Example
-------
>>> model = UnitLSTM(ModelConfig(n_inputs=2, n_units=4, n_outputs=2))
>>> x = torch.randn(3, 10, 2)
>>> zero_unit_1 = Intervention("h", units=[1], setter=lambda value, step: torch.zeros_like(value))
>>> trace = run(model, x, [zero_unit_1])
>>> trace.h.shape  # (n_layers, n_sequences, n_steps, n_units)
torch.Size([1, 3, 10, 4])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from unitprobe.devices import full_float32
from unitprobe.errors import DataError, UnitprobeError
from unitprobe.validation import check_choice, check_int

__all__ = [
    "SITES",
    "GATES",
    "ModelConfig",
    "UnitLSTM",
    "Intervention",
    "Trace",
    "CellSites",
    "lstm_cell",
    "lstm_step",
    "run",
    "interventions",
    "as_tensor",
    "fused_layer",
    "fused_trace",
    "layer_params",
    "states_at_steps",
    "suffix_outputs",
]

GATES = ("i", "f", "g", "o")
SITES = (*GATES, "c", "h")

Setter = Callable[[Tensor, int], Tensor]
SiteEdit = Callable[[str, Tensor], Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a :class:`UnitLSTM`; stored in every checkpoint as plain data.

    Parameters
    ----------
    n_inputs : int
        Features per time step (the task's input series).
    n_units : int
        Hidden units per LSTM layer.
    n_outputs : int
        Readout outputs per time step (the task's predicted series).
    n_layers : int, default 1
        Stacked LSTM layers; the readout reads the last one.
    """

    n_inputs: int
    n_units: int
    n_outputs: int
    n_layers: int = 1

    def __post_init__(self) -> None:
        for name in ("n_inputs", "n_units", "n_outputs", "n_layers"):
            check_int(getattr(self, name), name, minimum=1)

    def to_dict(self) -> dict[str, int]:
        """Plain-data form, as stored in a checkpoint."""
        return {k: int(v) for k, v in asdict(self).items()}


class UnitLSTM(nn.Module):
    """``nn.LSTM`` plus a linear readout of the last layer's hidden state at every step.

    Parameters
    ----------
    config : ModelConfig
        The architecture. ``UnitLSTM(ModelConfig(**ckpt["config"]))`` rebuilds a saved model.

    Notes
    -----
    Parameter names follow PyTorch (``lstm.weight_ih_l0`` ..., gate order i, f, g, o) plus
    ``readout.weight`` of shape (n_outputs, n_units) and ``readout.bias``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(config.n_inputs, config.n_units, config.n_layers, batch_first=True)
        self.readout = nn.Linear(config.n_units, config.n_outputs)
        self._interventions: list[Intervention] = []

    def forward(self, inputs: Tensor) -> Tensor:
        """Fused forward.

        Parameters
        ----------
        inputs : Tensor of shape (n_sequences, n_steps, n_inputs)

        Returns
        -------
        Tensor of shape (n_sequences, n_steps, n_outputs)
            The prediction at every step.
        """
        hidden, _ = self.lstm(inputs)  # (N, T, H)
        return self.readout(hidden)

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(weight_ih, weight_hh, bias)`` of one layer; bias is ``bias_ih + bias_hh``."""
        w_ih = getattr(self.lstm, f"weight_ih_l{layer}")
        w_hh = getattr(self.lstm, f"weight_hh_l{layer}")
        bias = getattr(self.lstm, f"bias_ih_l{layer}") + getattr(self.lstm, f"bias_hh_l{layer}")
        return w_ih, w_hh, bias


@dataclass
class Intervention:
    """Overwrite some units of one site of one layer at chosen steps.

    Parameters
    ----------
    site : {"i", "f", "g", "o", "c", "h"}
        Which activation to edit (gates after their nonlinearity).
    layer : int, default 0
        0-based layer.
    units : sequence of int, optional
        Units to edit in every row. ``None`` (with no ``mask``) edits every unit.
    setter : callable ``(value, step) -> Tensor``
        Receives the current value, shape (batch, n_units), and the 0-based step; returns the
        replacement, same shape (only the selected units are used). Default: the value itself
        (a no-op edit, useful to read a site).
    start, stop : int
        Steps ``start <= step < stop`` are edited (``stop=None``: to the end).
    mask : Tensor of bool, shape (batch, n_units) or (n_units,), optional
        Per-row unit selection; overrides ``units``. Lets one batched run apply a different
        ablation to each block of rows.

    Example
    -------
    >>> Intervention("c", layer=0, units=[3], setter=lambda v, t: torch.zeros_like(v), start=5)
    """

    site: str
    layer: int = 0
    units: Sequence[int] | None = None
    setter: Setter | None = None
    start: int = 0
    stop: int | None = None
    mask: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_choice(self.site, "site", SITES)
        check_int(self.start, "start", minimum=0)

    def _validate(self, config: ModelConfig) -> None:
        if not 0 <= self.layer < config.n_layers:
            raise UnitprobeError(
                f"layer == {self.layer}, model has {config.n_layers} layer(s) (0-based)"
            )
        for u in self.units or ():
            if not 0 <= int(u) < config.n_units:
                raise UnitprobeError(f"unit {u} out of range, model has {config.n_units} units")

    def active(self, step: int) -> bool:
        """Whether this intervention edits ``step``."""
        return self.start <= step and (self.stop is None or step < self.stop)

    def apply(self, value: Tensor, step: int) -> Tensor:
        """Return ``value`` (batch, n_units) with the selected units replaced at ``step``."""
        if not self.active(step):
            return value
        new = value if self.setter is None else self.setter(value, step)
        if self.mask is not None:
            return torch.where(self.mask.to(value.device), new, value)
        if self.units is None:
            return new
        out = value.clone()
        idx = list(self.units)
        out[:, idx] = new[:, idx]
        return out


@dataclass
class Trace:
    """Everything one stepwise run computed.

    Attributes
    ----------
    outputs : Tensor of shape (n_sequences, n_steps, n_outputs)
    sites : dict of str to Tensor of shape (n_layers, n_sequences, n_steps, n_units)
        Recorded activations by site name (``"h"``, ``"c"``, ``"i"``, ...), after any edit.
    """

    outputs: Tensor
    sites: dict[str, Tensor]

    def __getattr__(self, name: str) -> Tensor:
        sites = self.__dict__.get("sites", {})
        if name in sites:
            return sites[name]
        raise AttributeError(f"trace has no {name!r}; recorded sites: {', '.join(sites) or 'none'}")

    def numpy(self, site: str, layer: int = 0) -> np.ndarray:
        """One site of one layer as a float64 array of shape (n_sequences, n_steps, n_units)."""
        return self.sites[site][layer].detach().cpu().double().numpy()


def as_tensor(inputs: Tensor | np.ndarray, model: UnitLSTM) -> Tensor:
    """Check ``inputs`` against ``model`` and return them as a tensor of the model's dtype.

    Parameters
    ----------
    inputs : array-like of shape (n_sequences, n_steps, n_inputs)
    """
    x = torch.as_tensor(inputs)
    param = next(model.parameters())
    if x.ndim != 3:
        raise DataError(
            f"inputs must have shape (n_sequences, n_steps, n_inputs), got {tuple(x.shape)}"
        )
    if x.shape[2] != model.config.n_inputs:
        raise DataError(
            f"inputs have {x.shape[2]} features per step, model expects {model.config.n_inputs}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"inputs of shape {tuple(x.shape)} are empty")
    return x.to(dtype=param.dtype, device=param.device)


@contextlib.contextmanager
def interventions(model: UnitLSTM, edits: Sequence[Intervention]) -> Iterator[UnitLSTM]:
    """Attach ``edits`` to ``model`` for the duration of a ``with`` block.

    Every :func:`run` inside the block applies them (after any passed explicitly). They are
    removed in ``finally``, so nothing stays attached after an exception.

    Example
    -------
    >>> with interventions(model, [Intervention("h", units=[0], setter=zero)]):
    ...     trace = run(model, x)
    """
    edits = list(edits)
    for edit in edits:
        edit._validate(model.config)
    model._interventions.extend(edits)
    try:
        yield model
    finally:
        for edit in edits:
            for k, attached in enumerate(model._interventions):
                if attached is edit:
                    del model._interventions[k]
                    break


class CellSites(NamedTuple):
    """The sites of one LSTM step, each of shape (batch, n_units) (see the module docstring)."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Tensor,
    *,
    edit: SiteEdit | None = None,
) -> CellSites:
    """One step of an LSTM layer: PyTorch's ``nn.LSTMCell`` equations, gate order i, f, g, o.

    ``i, f, o = sigmoid(.)``, ``g = tanh(.)`` of ``x @ weight_ih.T + h @ weight_hh.T + bias``
    (split in four along the last axis), then ``c' = f * c + i * g`` and ``h' = o * tanh(c')``.

    Parameters
    ----------
    x : Tensor of shape (batch, n_in)
        The layer's input at this step.
    h, c : Tensor of shape (batch, n_units)
        Hidden and cell state after the previous step (zeros at step 0).
    weight_ih : Tensor of shape (4 * n_units, n_in)
    weight_hh : Tensor of shape (4 * n_units, n_units)
    bias : Tensor of shape (4 * n_units,)
        ``bias_ih + bias_hh`` (see :meth:`UnitLSTM.layer_weights`).
    edit : callable ``(site, value) -> Tensor``, optional
        Called on each site as soon as it is computed, in the order i, f, g, o, c, h; what it
        returns replaces the value, so ``c`` and ``h`` are computed from edited gates and ``h``
        from an edited ``c``. :func:`run` applies its interventions here.

    Returns
    -------
    CellSites
        ``(i, f, g, o, c, h)`` after any edit, each of shape (batch, n_units).
    """
    return lstm_step(x @ weight_ih.T + bias, h, c, weight_hh, edit=edit)


def lstm_step(
    projected: Tensor,
    h: Tensor,
    c: Tensor,
    weight_hh: Tensor,
    *,
    edit: SiteEdit | None = None,
) -> CellSites:
    """:func:`lstm_cell` from the input's share of the gates, ``x @ weight_ih.T + bias``.

    :func:`run` projects the inputs of every step at once (one large matrix product) and
    steps the recurrence with this function.

    Parameters
    ----------
    projected : Tensor of shape (batch, 4 * n_units)
        ``x @ weight_ih.T + bias`` at this step.
    h, c, weight_hh, edit
        As in :func:`lstm_cell`. A leading dimension of ``n_networks`` on ``projected``,
        ``h``, ``c`` and ``weight_hh`` (shape (n_networks, 4 * n_units, n_units)) steps that
        many networks of the same shape at once (:func:`stacked_suffix_outputs`).
    """
    pre = projected + h @ weight_hh.mT  # (batch, 4 * n_units)
    i_pre, f_pre, g_pre, o_pre = pre.chunk(4, dim=-1)
    site = edit if edit is not None else _unedited
    i = site("i", torch.sigmoid(i_pre))
    f = site("f", torch.sigmoid(f_pre))
    g = site("g", torch.tanh(g_pre))
    o = site("o", torch.sigmoid(o_pre))
    c = site("c", f * c + i * g)
    h = site("h", o * torch.tanh(c))
    return CellSites(i, f, g, o, c, h)


def _unedited(name: str, value: Tensor) -> Tensor:
    return value


def run(
    model: UnitLSTM,
    inputs: Tensor | np.ndarray,
    edits: Sequence[Intervention] = (),
    *,
    record: Sequence[str] = SITES,
) -> Trace:
    """Stepwise forward pass with named sites, optionally editing some of them.

    Parameters
    ----------
    model : UnitLSTM
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
        In the model's (normalized) units.
    edits : sequence of Intervention
        Applied in order at each step, after those attached with :func:`interventions`.
    record : sequence of site names, default all
        Sites to keep in the trace (recording fewer saves memory on large batched runs).

    Returns
    -------
    Trace
        ``outputs`` of shape (n_sequences, n_steps, n_outputs) and, for each recorded site, a
        tensor of shape (n_layers, n_sequences, n_steps, n_units).

    Notes
    -----
    Differentiable: call under ``torch.no_grad()`` when gradients are not needed.
    """
    x = as_tensor(inputs, model)
    edits = [*model._interventions, *edits]
    for edit in edits:
        edit._validate(model.config)
    unknown = [s for s in record if s not in SITES]
    if unknown:
        raise UnitprobeError(f"cannot record {unknown}; sites are {', '.join(SITES)}")
    recorded: dict[str, list[Tensor]] = {s: [] for s in record}
    layer_input = x
    for layer in range(model.config.n_layers):
        layer_edits = {s: [e for e in edits if e.layer == layer and e.site == s] for s in SITES}
        steps = _run_layer(model, layer, layer_input, layer_edits, keep={"h", *record})
        for site in record:
            recorded[site].append(torch.stack(steps[site], dim=1))  # (N, T, H)
        layer_input = torch.stack(steps["h"], dim=1)
    outputs = model.readout(layer_input)
    sites = {s: torch.stack(v, dim=0) for s, v in recorded.items()}  # (L, N, T, H)
    return Trace(outputs=outputs, sites=sites)


def _run_layer(
    model: UnitLSTM,
    layer: int,
    x: Tensor,
    edits: dict[str, list[Intervention]],
    keep: set[str],
) -> dict[str, list[Tensor]]:
    """One layer over all steps; per-site lists of (N, H) tensors, one per step, for ``keep``."""
    w_ih, w_hh, bias = model.layer_weights(layer)
    n, n_steps, _ = x.shape
    h = x.new_zeros(n, model.config.n_units)
    c = x.new_zeros(n, model.config.n_units)
    out: dict[str, list[Tensor]] = {s: [] for s in SITES}

    def site(name: str, value: Tensor, step: int) -> Tensor:
        for edit in edits[name]:
            value = edit.apply(value, step)
        if name in keep:
            out[name].append(value)
        return value

    projected = x @ w_ih.T + bias  # (N, T, 4H): the input part of every gate at once
    for t in range(n_steps):
        step = lstm_step(projected[:, t], h, c, w_hh, edit=partial(site, step=t))
        h, c = step.h, step.c
    return out


def layer_params(model: UnitLSTM, layer: int) -> list[Tensor]:
    """``[weight_ih, weight_hh, bias_ih, bias_hh]`` of one layer, detached."""
    return [
        getattr(model.lstm, f"{name}_l{layer}").detach()
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]


def fused_layer(
    x: Tensor, params: Sequence[Tensor], h0: Tensor | None = None, c0: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer over all steps in the fused kernel.

    Parameters
    ----------
    x : Tensor of shape (n, n_steps, n_in)
    params : [weight_ih (4H, n_in), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)]
    h0, c0 : Tensor of shape (n, H), optional
        State before the first step (zeros by default).

    Returns
    -------
    (out, h_n, c_n)
        ``out`` of shape (n, n_steps, H); ``h_n``, ``c_n`` of shape (n, H) after the last step.
        Differentiable on any device: on a GPU with gradients enabled the kernel runs in
        training mode, since cuDNN's RNN backward refuses eval mode (without dropout the
        two modes compute the same values). On a GPU it computes in full float32
        (:func:`~unitprobe.devices.full_float32`).
    """
    n_units = params[1].shape[1]
    if h0 is None:
        h0 = x.new_zeros(x.shape[0], n_units)
    if c0 is None:
        c0 = x.new_zeros(x.shape[0], n_units)
    train = x.is_cuda and torch.is_grad_enabled()
    with full_float32() if x.is_cuda else contextlib.nullcontext():
        out, h_n, c_n = torch.lstm(
            x.contiguous(), (h0[None].contiguous(), c0[None].contiguous()), list(params),
            True, 1, 0.0, train, False, True,
        )  # fmt: skip
    return out, h_n[0], c_n[0]


def fused_trace(
    model: UnitLSTM, inputs: Tensor | np.ndarray, *, record: Sequence[str] = SITES
) -> Trace:
    """:func:`run` without edits, from the fused kernel: the same :class:`Trace` to float
    rounding (tested to 1e-6), several times faster.

    Each layer's ``h`` comes from :func:`fused_layer`; its gates then follow from
    :func:`lstm_step` applied to every step at once (``h_{t-1}`` is known), and ``c`` from the
    elementwise recurrence ``c_t = f_t c_{t-1} + i_t g_t``.

    Parameters
    ----------
    model : UnitLSTM
        Without attached interventions (:func:`run` applies those).
    inputs : Tensor or ndarray of shape (n_sequences, n_steps, n_inputs)
    record : sequence of site names, default all

    Returns
    -------
    Trace
        As :func:`run`'s.
    """
    if model._interventions:
        raise UnitprobeError("fused_trace runs a model without attached interventions; use run")
    unknown = [s for s in record if s not in SITES]
    if unknown:
        raise UnitprobeError(f"cannot record {unknown}; sites are {', '.join(SITES)}")
    x = as_tensor(inputs, model)
    recorded: dict[str, list[Tensor]] = {s: [] for s in record}
    layer_in = x
    for layer in range(model.config.n_layers):
        params = layer_params(model, layer)
        h, _, _ = fused_layer(layer_in, params)
        values = {"h": h}
        if set(record) - {"h"}:
            w_ih, w_hh, b_ih, b_hh = params
            h_prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
            # the gates of every step at once; the c and h it also returns are not the run's
            # (they start from c = 0 at every step) and are left unused
            i, f, g, o, _, _ = lstm_step(
                layer_in @ w_ih.T + (b_ih + b_hh), h_prev, torch.zeros_like(h), w_hh
            )
            c = torch.empty_like(h)
            c_t = torch.zeros_like(h[:, 0])
            for t in range(h.shape[1]):
                c_t = f[:, t] * c_t + i[:, t] * g[:, t]
                c[:, t] = c_t
            values.update(i=i, f=f, g=g, o=o, c=c)
        for site in record:
            recorded[site].append(values[site])
        layer_in = h
    sites = {k: torch.stack(v) for k, v in recorded.items()}  # (L, N, T, H)
    return Trace(outputs=model.readout(layer_in), sites=sites)


def suffix_outputs(
    model: UnitLSTM, inputs: Tensor, steps: Tensor, h: Tensor, c: Tensor, y_prefix: Tensor
) -> Tensor:
    """Outputs of a one-layer model whose state right after step ``steps[r]`` is set.

    Row ``r`` keeps ``y_prefix[r]`` before its step, reads its output at the step from
    ``h[r]``, and runs on from ``(h[r], c[r])`` through the fused kernel (one call per
    distinct step). This is :func:`run` with the layer's ``h`` and ``c`` replaced at each row's
    step (equal to float rounding, tested), at the cost of the steps after the edit only.

    Parameters
    ----------
    model : UnitLSTM
        One layer, no attached interventions.
    inputs : Tensor of shape (n_rows, n_steps, n_inputs)
    steps : Tensor of int64, shape (n_rows,)
    h, c : Tensor of shape (n_rows, n_units)
        The states after each row's step (may require grad).
    y_prefix : Tensor of shape (n_rows, n_steps, n_outputs)
        Outputs before each row's step (the unedited run's).

    Returns
    -------
    Tensor of shape (n_rows, n_steps, n_outputs), differentiable in ``h`` and ``c``.
    """
    if model.config.n_layers != 1 or model._interventions:
        raise UnitprobeError("suffix_outputs needs a one-layer model without interventions")
    params = layer_params(model, 0)
    pieces, order = [], []
    for step in torch.unique(steps).tolist():
        rows = torch.nonzero(steps == step).flatten()
        hidden = h[rows, None]
        if step + 1 < inputs.shape[1]:
            later, _, _ = fused_layer(inputs[rows, step + 1 :], params, h[rows], c[rows])
            hidden = torch.cat([hidden, later], dim=1)
        pieces.append(torch.cat([y_prefix[rows, :step], model.readout(hidden)], dim=1))
        order.append(rows)
    return torch.cat(pieces)[torch.argsort(torch.cat(order))]


def states_at_steps(
    model: UnitLSTM, inputs: Tensor, steps: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Outputs of a one-layer model, and its ``h`` and ``c`` right after step ``steps[r]`` of
    each row, from one fused forward per row.

    Rows of one step run through the fused kernel up to that step (whose final state is the
    state wanted), then on from it to the end: :func:`run`'s values to float rounding
    (tested), without recomputing every step's gates as :func:`fused_trace` does for ``c``.

    Parameters
    ----------
    model : UnitLSTM
        One layer, no attached interventions.
    inputs : Tensor of shape (n_rows, n_steps, n_inputs)
    steps : Tensor of int64, shape (n_rows,)

    Returns
    -------
    (outputs, h, c)
        ``outputs`` of shape (n_rows, n_steps, n_outputs); ``h`` and ``c`` of shape
        (n_rows, n_units).
    """
    if model.config.n_layers != 1 or model._interventions:
        raise UnitprobeError("states_at_steps needs a one-layer model without interventions")
    params = layer_params(model, 0)
    n_rows, n_steps = inputs.shape[:2]
    if steps.shape != (n_rows,) or (
        n_rows and not 0 <= int(steps.min()) <= int(steps.max()) < n_steps
    ):
        raise UnitprobeError(f"steps must be {n_rows} step indices in 0..{n_steps - 1}")
    h_at = inputs.new_empty(n_rows, model.config.n_units)
    c_at = torch.empty_like(h_at)
    outputs = inputs.new_empty(n_rows, n_steps, model.config.n_outputs)
    for step in torch.unique(steps).tolist():
        rows = torch.nonzero(steps == step).flatten()
        hidden, h_n, c_n = fused_layer(inputs[rows, : step + 1], params)
        if step + 1 < n_steps:
            later, _, _ = fused_layer(inputs[rows, step + 1 :], params, h_n, c_n)
            hidden = torch.cat([hidden, later], dim=1)
        outputs[rows] = model.readout(hidden)
        h_at[rows], c_at[rows] = h_n, c_n
    return outputs, h_at, c_at
