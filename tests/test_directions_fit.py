"""The fit behind learned directions: L-BFGS from a seeded start and its stopping rule."""

import types

import numpy as np
import pytest

from unitprobe.methods.interventions import direction_table, learn_direction
from unitprobe.methods.interventions.das import DAS_ATOL, DAS_PATIENCE, DAS_RTOL

R = 1 / np.sqrt(2)


def _data(n_seq=120, n_steps=6, seed=0):
    x = np.random.default_rng(seed).standard_normal((n_seq, n_steps, 2)).astype(np.float32)
    return types.SimpleNamespace(inputs=x, input_names=("K", "X"), output_names=("a", "b"),
                                 spec=None)  # fmt: skip


def _stalled(losses):
    """Per step: whether it lowered the loss by no more than the stopping rule's tolerance."""
    return [
        a - b <= max(DAS_RTOL * a, DAS_ATOL) for a, b in zip(losses[:-1], losses[1:], strict=True)
    ]


@pytest.mark.parametrize(("term", "known"), [("X[t-1]", (0, 0, R, R)), ("K[t-1]", (0, 0, R, -R))])
def test_the_fit_recovers_a_planted_direction_and_stops_early(term, known, rotated_kx):
    model, ds = rotated_kx, _data()
    budget = 100
    d = learn_direction(model, ds, term, states=["h"], n_pairs=128, epochs=budget,
                        reference="model")  # fmt: skip
    assert abs(float(d.basis[:, 0] @ np.array(known))) > 0.99
    assert d.transfer_test == pytest.approx(1.0, abs=0.01)
    # it ends by its own rule, before the budget: how many evaluations that takes depends on
    # the machine's float rounding near the optimum, so no count is asserted
    assert d.stopped in ("converged", "stalled") and d.evaluations < budget
    assert d.note == ""


def test_the_fit_stops_when_the_loss_stops_falling_whatever_the_budget(rotated_kx):
    model, ds = rotated_kx, _data()
    kw = dict(n_pairs=96, reference="model", seed=3)
    d = learn_direction(model, ds, "X[t-1]", epochs=200, **kw)
    assert d.stopped == "converged"
    assert all(np.diff(d.losses) <= 0)  # Armijo steps: the loss never rises
    stalled = _stalled(d.losses)
    assert all(stalled[-DAS_PATIENCE:])  # the last steps all stalled ...
    runs = "".join("s" if s else "." for s in stalled[:-1])
    assert "s" * DAS_PATIENCE not in runs  # ... and no earlier run of them was long enough
    more = learn_direction(model, ds, "X[t-1]", epochs=1000, **kw)
    assert more.evaluations == d.evaluations < 200
    np.testing.assert_array_equal(more.basis, d.basis)


def test_a_budget_that_runs_out_says_so(rotated_kx):
    model, ds = rotated_kx, _data()
    kw = dict(n_pairs=96, reference="model", seed=1)  # this start takes a few steps
    short = learn_direction(model, ds, "X[t-1]", epochs=3, **kw)
    assert short.evaluations == 3 and short.stopped == "budget"
    assert "spent all 3 loss evaluations" in short.note
    assert short.losses[-1] > 10 * learn_direction(model, ds, "X[t-1]", **kw).losses[-1]
    start = learn_direction(model, ds, "X[t-1]", epochs=0, **kw)
    assert start.evaluations == 0 and start.losses == [] and start.stopped == ""
    np.testing.assert_allclose(start.basis.T @ start.basis, np.eye(1), atol=1e-6)


def test_the_fit_is_deterministic_and_reported_in_the_table(rotated_kx):
    model, ds = rotated_kx, _data(n_seq=60)
    kw = dict(n_pairs=64, epochs=60, reference="model", seed=2)
    a = learn_direction(model, ds, "K[t-1]", **kw)
    b = learn_direction(model, ds, "K[t-1]", **kw)
    np.testing.assert_array_equal(a.basis, b.basis)
    assert a.losses == b.losses and a.evaluations == b.evaluations
    other = learn_direction(model, ds, "K[t-1]", **{**kw, "seed": 5})
    assert other.losses[0] != a.losses[0]  # another seeded start ...
    h, h_other = (v.basis[:4, 0] / np.linalg.norm(v.basis[:4, 0]) for v in (a, other))
    assert abs(float(h @ h_other)) > 0.99  # ... the same direction over the h of the units
    table, loadings = direction_table(model, ds, ["K[t-1]", "X[t-1]"], **kw)
    again, _ = direction_table(model, ds, ["K[t-1]", "X[t-1]"], **kw)
    assert table.attrs["fits"] == again.attrs["fits"]
    # searched beside X[t-1] (one batched run), K[t-1]'s search follows the same path up to
    # the float rounding of the larger batch
    fit = table.attrs["fits"][0]
    assert (fit["term"], fit["stopped"]) == ("K[t-1]", a.stopped)
    assert fit["loss"] == pytest.approx(a.losses[-1], rel=1e-3, abs=1e-6)
    basis = loadings[loadings["term"] == "K[t-1]"]["loading"].to_numpy()
    assert abs(float(basis @ a.basis[:, 0])) > 0.999


def test_a_term_the_output_ignores_fits_nothing(rotated_kx):
    model, ds = rotated_kx, _data(n_seq=40)
    # K[t] reaches the readout one step later: the output at its own step ignores it
    d = learn_direction(model, ds, "K[t]", n_pairs=32, horizon=0, reference="model")
    assert np.isnan(d.transfer_test) and np.isnan(d.best_unit_transfer)
    assert "nothing to learn" in d.note and d.evaluations == 0
    table, _ = direction_table(model, ds, ["K[t]"], n_pairs=32, horizon=0, reference="model")
    assert table.attrs["fits"][0]["stopped"] == "" and np.isnan(table.attrs["fits"][0]["loss"])
