"""The linearized interchange screen: every unit's transfer from one backward pass per term.

Patching unit ``u``'s states at step ``s`` by ``δ_u = state_source - state_base`` changes the
outputs by ``Δ_patch ≈ J_u δ_u`` to first order, with ``J_u`` the Jacobian of the later outputs
with respect to that unit's state at step ``s``. The transfer's numerator ``Σ Δ_ref·Δ_patch``
(pooled over pairs, counted steps and outputs) is then ``Σ_pairs δ_u · (J_u^T Δ_ref)``, and
``J^T Δ_ref`` for *every* unit at once is one vector-Jacobian product: the gradient of
``Σ mask·Δ_ref·y`` with respect to the states at each pair's step. So one forward and one
backward pass per term, layer and reference estimate the transfer of all units, where exact
patching costs one run per unit. :func:`~unitprobe.methods.interventions.interchange_table`
patches exactly only the units the screen ranks highest (and any the caller names); the rest
keep the estimate, marked ``exact = False``.

The estimate is a linearization of the network around the base run: it is exact for a linear
network and degrades with gate saturation along the patched path. Ranking needs less than
values, and the exact set is chosen with a margin (the top ``k`` per term, under every
reference); ``summary.json`` of an analysis reports how well the two agree on the units
patched exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from unitprobe.methods.interventions.pairs import ReferenceChange

__all__ = ["linear_transfers", "screen_units"]


#: ``patch(new, masks) -> outputs``: the base run with states replaced at each pair's step
#: (:func:`~unitprobe.methods.interventions.interchange.patched_outputs` with the model, base
#: inputs and steps bound).
Patch = Callable[[dict, dict], torch.Tensor]


def linear_transfers(
    patch: Patch,
    states_base: dict[str, torch.Tensor],
    states_source: dict[str, torch.Tensor],
    refs: Sequence[ReferenceChange],
    layer: int,
    states: Sequence[str],
) -> np.ndarray:
    """First-order transfer of patching each single unit of ``layer``, per reference.

    Parameters
    ----------
    patch : callable ``(new, masks) -> Tensor (n_pairs, n_steps, n_outputs)``
        The base run (cut to the counted steps) with states replaced at each pair's step.
    states_base, states_source : dict of state to Tensor of shape (n_layers, n_pairs, n_units)
        States right after each pair's step (:class:`~.interchange.PairRuns`).
    refs : sequence of ReferenceChange
        The references' expected output changes (``delta`` and ``mask`` of shape
        (n_pairs, n_steps, n_outputs)).
    layer : int
    states : sequence of {"h", "c"}
        The patched states.

    Returns
    -------
    ndarray of float64, shape (len(refs), n_units)
        ``Σ δ·J^T Δ_ref / Σ Δ_ref²`` per reference and unit; NaN where the reference expects
        no change (its transfer is undefined).
    """
    n_pairs, n_units = states_base[states[0]][layer].shape
    new = {(s, layer): states_base[s][layer].detach().clone().requires_grad_(True) for s in states}
    device = states_base[states[0]].device
    mask = {layer: torch.ones(n_pairs, n_units, dtype=torch.bool, device=device)}
    with torch.enable_grad():
        y = patch(new, mask).double()
        out = np.full((len(refs), n_units), np.nan)
        deltas = [(states_source[s][layer] - states_base[s][layer]).double() for s, _ in new]
        for r, ref in enumerate(refs):
            weight = torch.as_tensor(np.where(ref.mask, ref.delta, 0.0), device=y.device)
            den = float((weight**2).sum())
            grads = torch.autograd.grad(
                (weight * y).sum(), list(new.values()), retain_graph=r < len(refs) - 1
            )
            num = sum((g.double() * d).sum(0) for g, d in zip(grads, deltas, strict=True))
            if den > 0:
                out[r] = num.cpu().numpy() / den
    return out


def screen_units(estimates: np.ndarray, k: int, always: Sequence[int] = ()) -> list[int]:
    """The units to patch exactly: the ``k`` largest ``|estimate|`` under any reference, and
    ``always``; sorted. ``estimates`` has shape (n_references, n_units); NaN ranks last."""
    score = np.nan_to_num(np.abs(estimates), nan=-1.0).max(axis=0)
    top = np.argsort(-score, kind="stable")[:k]
    return sorted({int(u) for u in top} | {int(u) for u in always})
