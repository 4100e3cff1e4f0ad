"""Linear probes of recurrent units: what does each unit (or the whole layer) hold?

Every function here works on plain arrays: ``states`` of shape (n_samples, n_units) (one row
per sequence x time step), ``targets`` of shape (n_samples, n_targets) (an ndarray, or a
DataFrame whose column names become the ``target`` labels; ndarray columns are labelled
``"0"``, ``"1"``, ...), and ``groups`` of shape (n_samples,), the sequence each row comes
from. Cross-validation is always ``GroupKFold(n_splits)`` over ``groups`` -- exactly sklearn's
folds -- so no sequence is split between training and test rows.

The bulk probes are computed at once from per-fold sufficient statistics (counts, sums and
cross-products of the rows of each fold, read in chunks), never by one fit per unit x target
pair:

- :func:`unit_probes` -- held-out R² of a one-unit ridge probe for every unit x target; equals
  the ``cross_val_score(Ridge(alpha), states[:, [u]], targets[:, k], groups=groups,
  cv=GroupKFold(n_splits))`` loop to 1e-8.
- :func:`population_probe` -- all units together, ridge alpha chosen inside each training fold
  by exact leave-one-out (sklearn ``RidgeCV``'s default) from one eigendecomposition per fold.
- :func:`unique_contribution` -- the drop in the population R² when one unit is left out, for
  every unit from one Cholesky factorization per fold (block-inverse downdate).
- :func:`partial_r2` -- what a unit explains of a target once the other targets are regressed
  out (separates units that hold collinear terms such as ``K[t]`` and ``K[t-1]``).
- :func:`l1_path_ranking` -- the order in which units enter the lasso / elastic-net path.
- :func:`identifiability`, :func:`vif_table`, :func:`correlation_matrix` -- how separable the
  targets are at all.
- :func:`permutation_pvalues`, :func:`adjust_pvalues`, :func:`selectivity` -- controls
  (p-values corrected by Benjamini–Hochberg by default).
- :class:`UnitProbe` -- a scikit-learn ridge probe estimator for hand-made probes.

Conventions for degenerate data (each flagged in a ``note`` column):

- a constant unit (all values equal) has ``r2`` NaN, ``note`` "constant unit": its probe is
  undefined, and sklearn's number for it (a small negative R²) would read as "tested, holds
  nothing";
- a constant target column has ``r2`` NaN, ``note`` "constant target" (sklearn's loop gives
  an artefact of rounding there: 1.0 when the mean is exact, other values such as 0.889 or
  0.75 when it is not);
- a target that is constant within one test fold only scores 0.0 on that fold, as sklearn's
  ``r2_score`` does (``force_finite=True``), and the ``note`` says in how many folds.

Precision: sums are taken about a point near the mean of each column and every model is
centred at its own training mean, in float64. Speed: BLAS runs on one thread inside these
functions (``unitprobe._linalg.BLAS_THREADS``; set it to None to leave BLAS alone), since the
work is many mid-sized products where threads cost more than they save.

Modules: :mod:`~unitprobe.methods.probes.units` (unit, population and leave-one-unit-out
probes), :mod:`~unitprobe.methods.probes.partial` (partial R², L1 path),
:mod:`~unitprobe.methods.probes.identifiability` (targets against each other),
:mod:`~unitprobe.methods.probes.permutation` (controls), :mod:`~unitprobe.methods.probes.estimator`
(:class:`UnitProbe`). Running a model and its untrained controls through all of them is
:func:`unitprobe.pipeline.probing.probe_model`.
"""

from __future__ import annotations

from unitprobe.methods.probes.estimator import UnitProbe
from unitprobe.methods.probes.identifiability import (
    SEPARABLE_R2,
    VIF_TOL,
    correlation_matrix,
    identifiability,
    vif_table,
)
from unitprobe.methods.probes.partial import EXPLAINED_TOL, l1_path_ranking, partial_r2
from unitprobe.methods.probes.permutation import adjust_pvalues, permutation_pvalues, selectivity
from unitprobe.methods.probes.units import (
    DEFAULT_ALPHAS,
    population_probe,
    population_select,
    unique_contribution,
    unit_probes,
)

__all__ = [
    "DEFAULT_ALPHAS",
    "EXPLAINED_TOL",
    "SEPARABLE_R2",
    "VIF_TOL",
    "UnitProbe",
    "adjust_pvalues",
    "correlation_matrix",
    "identifiability",
    "l1_path_ranking",
    "partial_r2",
    "permutation_pvalues",
    "population_probe",
    "population_select",
    "selectivity",
    "unique_contribution",
    "unit_probes",
    "vif_table",
]
