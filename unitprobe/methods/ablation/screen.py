"""The output-linearized screen: every unit's ablation effect from a few backward passes.

An ablation of unit ``u`` changes its state by ``delta_t = v_t - h_t`` from step ``s0`` on.
The screen linearizes the *outputs*, not the loss: the change of output ``o`` at step ``s``
of sequence ``n`` is taken as

    dy[n, s, o] = sum_t  d y[n, s, o] / d h[n, t, u]  *  delta[n, t, u]

(``d/dh`` the derivative of the clean run with respect to an additive change of ``h_t``, through
the recurrence), and the squared loss is kept: the estimated squared error is
``sum (r + dy)²`` with ``r`` the clean residual. Keeping ``dy²`` matters: at a trained minimum
the loss gradient ``2 r`` is near 0 and first-order patching ranks units badly.

One backward pass per (output, step) gives ``d y[., s, o] / d h`` for *every* unit, layer and
earlier step at once, so the whole screen costs ``(n_steps - s0) * n_outputs`` backward passes
(batched with ``is_grads_batched``), whatever the number of units, and every mode (zero, mean,
resample) is only another ``delta``. ``site="c"`` differentiates with respect to ``c``;
``site="both"`` with respect to ``h`` (its ``c`` replacement never reaches the outputs).

:func:`screen_agreement` compares the screen with exact values (Spearman rho, median relative
error, top-k recall).

Example
-------
>>> dsse = screen_delta_sse(model, x, y, ("mean",), site="h", start=0, seed=0, layers=[0])
>>> dsse.shape  # (n_layers screened, n_units, n_modes, n_outputs)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from unitprobe.methods.ablation.values import VALUE_MAKERS
from unitprobe.model.lstm import UnitLSTM, fused_trace

__all__ = [
    "ScreenParts",
    "clean_sites",
    "output_adjoints",
    "screen_agreement",
    "screen_delta_sse",
    "screen_parts",
]


class ScreenParts(NamedTuple):
    """The parts of the screened change of the summed squared error (:func:`screen_parts`)."""

    linear: Tensor
    quadratic: Tensor


def _deltas(clean: Tensor, modes, start: int, seed: int, layers) -> list[Tensor]:
    """Per screened layer, the state change of every mode, Tensor of shape (n_modes, N, T, H).

    clean : (L, N, T, H), the clean values of the ablated site.
    """
    out = []
    for layer in layers:
        ref = clean[layer]
        stack = torch.stack(
            [(VALUE_MAKERS[m](ref, len(ref), seed).transpose(0, 1) - ref) for m in modes]
        )  # (M, N, T, H)
        stack[:, :, :start] = 0
        out.append(stack)
    return out


def clean_sites(model: UnitLSTM, x: Tensor) -> dict[str, Tensor]:
    """Every site of the clean run, each of shape (L, N, T, H), from the fused kernel
    (:func:`~unitprobe.model.lstm.fused_trace`)."""
    return fused_trace(model, x).sites


def output_adjoints(
    model: UnitLSTM,
    sites: dict[str, Tensor],
    pairs: Sequence[tuple[int, int]],
    start: int,
    grad_site: str,
    visit,
) -> None:
    """Backpropagate every output ``(step s, output o)`` of ``pairs`` through the recurrence.

    A hand-written adjoint of the LSTM (the equations of :func:`~unitprobe.model.lstm.lstm_step`),
    batched over the pairs, each pair only over steps ``<= s``. At every step ``t >= start``
    and layer ``l`` it calls ``visit(l, t, grad, active)`` with ``grad`` of shape
    (active, n, H): ``d y[., s, o] / d site_t`` of the first ``active`` pairs (in the order of
    ``pairs``, which must be sorted by decreasing ``s``), where ``site`` is ``h`` or ``c``
    (``grad_site``) and the derivative is with respect to an additive change of that site.

    Parameters
    ----------
    model : UnitLSTM
    sites : dict of site name to Tensor of shape (L, n, T, H)
        Every site (``i, f, g, o, c, h``) of the clean run.
    pairs : sequence of (step, output)
    start : int
    grad_site : {"h", "c"}
    visit : callable ``(layer, step, grad, active) -> None``
    """
    n_layers = model.config.n_layers
    _, n, n_steps, n_units = sites["h"].shape
    steps = torch.tensor([s for s, _ in pairs], device=sites["h"].device)
    w_out = model.readout.weight.detach()  # (O, H)
    w_hh = [model.layer_weights(l)[1].detach() for l in range(n_layers)]
    w_ih = [model.layer_weights(l)[0].detach() for l in range(n_layers)]
    lam_h = sites["h"].new_zeros(n_layers, len(pairs), n, n_units)
    lam_c = torch.zeros_like(lam_h)
    # the adjoint of the gate pre-activations, written in place: (pairs, n, gate, H)
    dpre_all = sites["h"].new_empty(len(pairs), n, 4, n_units)
    for t in range(n_steps - 1, start - 1, -1):
        active = int((steps >= t).sum())
        if active == 0:
            continue
        for b in range(active):
            if pairs[b][0] == t:
                lam_h[-1, b] += w_out[pairs[b][1]]
        for l in range(n_layers - 1, -1, -1):
            i, f, g, o, c = (sites[k][l, :, t] for k in "ifgoc")
            c_prev = sites["c"][l, :, t - 1] if t > 0 else torch.zeros_like(c)
            lh, lc = lam_h[l, :active], lam_c[l, :active]
            if grad_site == "h":
                visit(l, t, lh, active)
            tc = torch.tanh(c)
            lc = lc + lh * (o * (1 - tc * tc))
            if grad_site == "c":
                visit(l, t, lc, active)
            # d pre-activation of the gates i, f, g (through c) and o (through h)
            factors = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=1)
            dpre4 = dpre_all[:active]
            torch.mul(lc[:, :, None], factors, out=dpre4[:, :, :3])
            torch.mul(lh, tc * o * (1 - o), out=dpre4[:, :, 3])
            dpre = dpre4.view(active, n, 4 * n_units)  # (active, n, 4H)
            lam_c[l, :active] = lc * f
            lam_h[l, :active] = dpre @ w_hh[l]  # to step t - 1
            if l > 0:
                lam_h[l - 1, :active] += dpre @ w_ih[l]  # to the layer below, same step


def screen_delta_sse(
    model: UnitLSTM,
    x: Tensor,
    targets: Tensor,
    modes: Sequence[str],
    *,
    site: str,
    start: int,
    seed: int,
    layers: Sequence[int],
    memory_budget_mb: float = 512.0,
) -> Tensor:
    """Estimated change of the summed squared error when each single unit is ablated.

    The sum of the two parts of :func:`screen_parts` (see there for the parameters).

    Returns
    -------
    Tensor of float64, shape (len(layers), n_units, n_modes, n_outputs)
        ``sum over sequences and steps >= start of (r + dy)² - r²`` for every unit and mode.
    """
    parts = screen_parts(
        model, x, targets, modes, site=site, start=start, seed=seed, layers=layers,
        memory_budget_mb=memory_budget_mb,
    )  # fmt: skip
    return parts.linear + parts.quadratic


def screen_parts(
    model: UnitLSTM,
    x: Tensor,
    targets: Tensor,
    modes: Sequence[str],
    *,
    site: str,
    start: int,
    seed: int,
    layers: Sequence[int],
    memory_budget_mb: float = 512.0,
) -> ScreenParts:
    """The two parts of the screened change of the summed squared error of every unit.

    ``(r + dy)² - r² = 2 r dy + dy²``: the linear part ``sum 2 r dy`` (of either sign) and the
    quadratic part ``sum dy²`` (>= 0). Their ratio says how far the estimate's sign can be
    trusted: where the two nearly cancel, a small error of ``dy`` flips it.

    Parameters
    ----------
    model : UnitLSTM
    x : Tensor of shape (N, T, n_inputs)
    targets : Tensor of float64, shape (N, T, n_outputs)
    modes : sequence of {"zero", "mean", "resample"}
    site : {"h", "c", "both"}
    start : int
        First ablated step; the error is summed over steps >= start.
    seed : int
        The resample derangement's seed (the same as the exact table's).
    layers : sequence of int
        Layers whose units are screened.
    memory_budget_mb : float, default 512
        Bounds the sequences and (output, step) pairs of one batched adjoint pass.

    Returns
    -------
    ScreenParts
        ``linear`` (``sum 2 r dy``) and ``quadratic`` (``sum dy²``), sums over sequences and
        steps >= start; each a Tensor of float64 of shape
        (len(layers), n_units, n_modes, n_outputs).
    """
    grad_site = "c" if site == "c" else "h"
    n_seq, n_steps = x.shape[:2]
    cfg = model.config
    layers = list(layers)
    with torch.no_grad():
        all_sites = clean_sites(model, x)
        deltas = _deltas(all_sites[grad_site], modes, start, seed, layers)
        pred = model.readout(all_sites["h"][-1])
        resid_all = pred.double() - targets  # (N, T, O)
    pairs = sorted(
        ((s, o) for s in range(start, n_steps) for o in range(cfg.n_outputs)), key=lambda p: -p[0]
    )
    shape = (len(layers), cfg.n_units, len(modes), cfg.n_outputs)
    linear = torch.zeros(shape, dtype=torch.float64, device=x.device)
    quadratic = torch.zeros_like(linear)
    # floats per (pair, sequence): dy of every screened layer and mode, two adjoints per layer,
    # the gate adjoints and temporaries
    per = x.element_size() * cfg.n_units * (len(layers) * len(modes) + 2 * cfg.n_layers + 12)
    budget = int(memory_budget_mb * 2**20)
    n_chunk = max(1, min(n_seq, budget // (per * len(pairs))))
    b_chunk = max(1, min(len(pairs), budget // (per * n_chunk)))
    for s0 in range(0, n_seq, n_chunk):
        rows = slice(s0, min(s0 + n_chunk, n_seq))
        sites = {k: v[:, rows] for k, v in all_sites.items()}
        for b0 in range(0, len(pairs), b_chunk):
            chunk = pairs[b0 : b0 + b_chunk]
            dy = [x.new_zeros(len(chunk), len(modes), rows.stop - s0, cfg.n_units) for _ in layers]

            def visit(layer, t, grad, active, dy=dy, rows=rows):
                if layer in layers:
                    li = layers.index(layer)
                    dy[li][:active] += grad[:, None] * deltas[li][None, :, rows, t]

            with torch.no_grad():
                output_adjoints(model, sites, chunk, start, grad_site, visit)
            steps = torch.tensor([s for s, _ in chunk], device=x.device)
            outs = torch.tensor([o for _, o in chunk], device=x.device)
            r = resid_all[rows][:, steps, outs].T  # (B, n)
            for li in range(len(layers)):
                d = dy[li].double()
                lin = 2 * torch.einsum("bn,bmnh->bmh", r, d)  # (B, M, H)
                linear[li].index_add_(2, outs, lin.permute(2, 1, 0))
                quadratic[li].index_add_(2, outs, (d * d).sum(dim=2).permute(2, 1, 0))
    return ScreenParts(linear, quadratic)


def screen_agreement(estimate: np.ndarray, exact: np.ndarray, k: int) -> dict[str, float]:
    """How well screened effects match exact ones, over the same units.

    Parameters
    ----------
    estimate, exact : ndarray of shape (n,)
        One effect per unit (e.g. the relative MSE increase), screen and exact.
    k : int
        Size of the top set compared.

    Returns
    -------
    dict
        ``spearman`` (rank correlation; NaN for fewer than 3 units or a constant side),
        ``median_rel_error`` (median of ``|estimate - exact| / |exact|`` over units with
        ``exact != 0``), ``topk_recall`` (share of the exact top ``k`` that the screen's top
        ``k`` holds; ties broken by position) and ``n`` (units compared).

    Example
    -------
    >>> screen_agreement(np.array([1.0, 2, 3]), np.array([1.1, 2, 2.9]), k=1)["topk_recall"]
    1.0
    """
    est, ex = np.asarray(estimate, float), np.asarray(exact, float)
    ok = np.isfinite(est) & np.isfinite(ex)
    est, ex = est[ok], ex[ok]
    n = len(ex)
    rho = np.nan
    if n >= 3 and np.ptp(est) > 0 and np.ptp(ex) > 0:
        rho = float(spearmanr(est, ex).statistic)
    nz = ex != 0
    med = float(np.median(np.abs(est[nz] - ex[nz]) / np.abs(ex[nz]))) if nz.any() else np.nan
    kk = min(k, n)
    recall = np.nan
    if kk > 0:
        top_ex = set(np.argsort(-ex, kind="stable")[:kk].tolist())
        top_est = set(np.argsort(-est, kind="stable")[:kk].tolist())
        recall = len(top_ex & top_est) / kk
    return {"spearman": rho, "median_rel_error": med, "topk_recall": recall, "n": n}
