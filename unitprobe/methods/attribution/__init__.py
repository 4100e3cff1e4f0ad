"""Attributions for a :class:`~unitprobe.model.lstm.UnitLSTM`: what drives an output, what a
unit reads.

Three kinds of attribution, one table each (``docs/architecture.md`` documents the tables;
:data:`unitprobe.schemas.SCHEMAS` has their columns), one module each:

* ``input_lag`` (:mod:`.inputs`) — output ``o`` at step ``t`` <- input feature ``f`` at step
  ``t - lag`` (:func:`input_lag_attribution`; Captum ``IntegratedGradients``, ``Saliency``,
  ``InputXGradient``);
* ``unit_attribution`` (:mod:`.units`) — output ``o`` <- hidden unit ``u`` of a layer, its
  states at all steps summed (:func:`unit_attribution`; Captum ``LayerIntegratedGradients``,
  ``LayerConductance``, ``LayerGradientXActivation`` on that layer's hidden state);
* ``receptive_fields`` (:mod:`.fields`) — unit ``u`` at step ``t`` <- input ``f`` at step
  ``t - lag``, the unit's receptive field (:func:`receptive_fields`; the Jacobian or integrated
  gradients of every unit at once by forward-mode differentiation, checked against Captum's
  ``NeuronGradient`` and ``NeuronIntegratedGradients``).

:func:`attribution_tables` (:mod:`.tables`) computes all three with the settings of an
:class:`~unitprobe.config.AttributionConfig`. In every table ``attribution`` is the mean of the
absolute per-example attribution and ``attribution_signed`` the mean of the signed one; means
run over sequences and target steps; ``lag`` 0 is the same step.

Conventions
-----------
* Inputs are in the model's normalized units. The ``"zero"`` baseline is 0 in those units, which
  for standardized data is the dataset mean of every feature; the ``"mean"`` baseline is the
  per-feature, per-step mean over the sequences passed in, shape (n_steps, n_features).
  Input x lag and unit attributions default to ``"mean"``: Fibonacci-type series grow with t,
  so an early input sits far from the overall mean (0) while carrying little information, and
  a zero baseline credits old lags for merely being early (on a trained ``fibonacci`` model,
  lags 0 and 1 get 29% of the mass from 0 and 70% from the per-step mean). For stationary
  tasks the two baselines coincide. The per-sequence functions and integrated-gradients
  receptive fields default to ``"zero"``, which does not depend on the other sequences.
* Target steps: ``steps=None`` picks the last ``min(10, T - max_lag)`` steps, so every lag up to
  ``max_lag`` exists at every target step (receptive fields, which cost the same for any number
  of steps, use every step ``t >= max_lag``). ``max_lag=None`` means ``min(10, T - 1)``. If
  explicit steps are earlier than a lag, that lag is averaged over the steps where it exists.
* Sampling: input-lag and unit attributions evaluate at most ``max_examples`` (sequence, target
  step) pairs, spread evenly over the target steps and drawn without repetition with
  ``seed``; receptive fields use at most ``max_sequences`` sequences.
* Integrated gradients use Gauss-Legendre quadrature (Captum's default). Their completeness
  error (``sum of attributions - (F(x) - F(baseline))``) is reported in ``df.attrs``:
  ``convergence_delta_max`` (largest absolute error) and ``convergence_delta_mean``.
* All computations run with cuDNN disabled (cuDNN refuses the backward pass of an RNN in eval
  mode) and with the model's parameters temporarily frozen; they run on the model's device.

Example
-------
>>> from unitprobe.model.planted import planted_lstm
>>> model = planted_lstm(2, [(0, 0), (0, 1)], n_outputs=1, readout=np.array([[0.0, 1.0]]))
>>> x = np.random.default_rng(0).normal(size=(64, 12, 2)).astype(np.float32)
>>> tables = attribution_tables(model, x, ["K", "X"], ["y"])
>>> rf = tables["receptive_fields"]
>>> rf.loc[rf["attribution"].groupby(rf["unit"]).idxmax(), ["unit", "feature", "lag"]]
"""

from unitprobe.methods.attribution._common import BASELINES, no_cudnn
from unitprobe.methods.attribution.fields import receptive_fields
from unitprobe.methods.attribution.inputs import input_lag_attribution, input_lag_per_sequence
from unitprobe.methods.attribution.tables import attribution_tables
from unitprobe.methods.attribution.units import unit_attribution, unit_attribution_per_sequence

__all__ = [
    "BASELINES",
    "input_lag_attribution",
    "input_lag_per_sequence",
    "unit_attribution",
    "unit_attribution_per_sequence",
    "receptive_fields",
    "attribution_tables",
    "no_cudnn",
]
