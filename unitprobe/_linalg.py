"""Numeric core of :mod:`unitprobe.methods.probes`: per-fold sufficient statistics and
closed-form ridge.

Everything here works on float64 arrays that the public functions have already validated.
The cross-validated probes read ``states`` in row chunks of :data:`CHUNK_BYTES`, so they make
no copy of it, and no array of shape (n_samples, n_units, n_targets) is ever formed.

Sums are taken of deviations from a reference point close to the global mean (``x_ref``,
``y_ref``); every later quantity is exact algebra on those sums, so the reference only
matters for rounding: with it near the mean, centring by the training-fold mean loses no
precision.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import linalg as sla
from sklearn.model_selection import GroupKFold

from unitprobe._utils import blas_limit

#: bytes of ``states`` read at a time.
CHUNK_BYTES = 16 * 2**20


def fold_rows(groups: np.ndarray, n_splits: int) -> list[np.ndarray]:
    """Test rows of each ``GroupKFold(n_splits)`` fold, exactly as sklearn splits them."""
    n = len(groups)
    splitter = GroupKFold(n_splits).split(np.zeros((n, 1)), groups=groups)
    return [np.sort(test) for _, test in splitter]


@dataclass(frozen=True)
class FoldSums:
    """Sums over the test rows of each fold, of deviations from the reference point.

    ``n`` (F,); ``x`` (F, U); ``xx`` (F, U) squares, or (F, U, U) when the Gram matrix was
    asked for; ``y`` (F, K); ``yy`` (F, K) squares or (F, K, K); ``xy`` (F, U, K).
    """

    n: np.ndarray
    x: np.ndarray
    xx: np.ndarray
    y: np.ndarray
    yy: np.ndarray
    xy: np.ndarray


def fold_sums(
    X: np.ndarray,
    Yd: np.ndarray,
    rows: list[np.ndarray],
    x_ref: np.ndarray,
    *,
    x_gram: bool = False,
    y_gram: bool = False,
) -> FoldSums:
    """Per-fold sums of ``X - x_ref`` and ``Yd`` (already deviations), one pass over ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_units)
    Yd : ndarray of shape (n_samples, n_targets)
    rows : list of int ndarrays, the rows of each fold
    x_ref : ndarray of shape (n_units,)
    x_gram, y_gram : bool
        Keep the full cross-product matrices instead of their diagonals.
    """
    n_folds, (_, n_units), n_targets = len(rows), X.shape, Yd.shape[1]
    xx_shape = (n_folds, n_units, n_units) if x_gram else (n_folds, n_units)
    yy_shape = (n_folds, n_targets, n_targets) if y_gram else (n_folds, n_targets)
    s = FoldSums(
        n=np.array([len(r) for r in rows], dtype=np.float64),
        x=np.zeros((n_folds, n_units)),
        xx=np.zeros(xx_shape),
        y=np.zeros((n_folds, n_targets)),
        yy=np.zeros(yy_shape),
        xy=np.zeros((n_folds, n_units, n_targets)),
    )
    step = max(1, CHUNK_BYTES // (8 * max(n_units, n_targets + 1)))
    buf = np.empty((min(step, X.shape[0]), n_units))
    yaug = np.ones((min(step, X.shape[0]), n_targets + 1))  # last column: ones, for sums of x
    for f, fold in enumerate(rows):
        for start in range(0, len(fold), step):
            idx = fold[start : start + step]
            xb = np.take(X, idx, axis=0, out=buf[: len(idx)])  # (chunk, U)
            xb -= x_ref
            yb = yaug[: len(idx)]
            np.take(Yd, idx, axis=0, out=yb[:, :n_targets])  # (chunk, K)
            prod = yb.T @ xb  # (K + 1, U)
            s.xy[f] += prod[:n_targets].T
            s.x[f] += prod[n_targets]
            s.y[f] += yb[:, :n_targets].sum(axis=0)
            s.xx[f] += xb.T @ xb if x_gram else np.einsum("ij,ij->j", xb, xb)
            yk = yb[:, :n_targets]
            s.yy[f] += yk.T @ yk if y_gram else np.einsum("ij,ij->j", yk, yk)
    return s


#: BLAS threads used by the probes. The work is many mid-sized products, where thread
#: synchronisation costs more than it saves, badly so when cores are shared (measured 10-20x
#: slower with 2 threads than with 1 on a busy 2-core machine). ``None`` leaves BLAS alone.
BLAS_THREADS: int | None = 1


def blas_threads():
    """Context that caps BLAS threads at :data:`BLAS_THREADS` (no-op for None)."""
    return blas_limit(BLAS_THREADS)


def with_blas_threads(func):
    """Decorator: run ``func`` under :func:`blas_threads`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with blas_threads():
            return func(*args, **kwargs)

    return wrapper


def _about(s_uv, s_u, s_v, n, m_u, m_v, paired: bool):
    """Sum of (u - m_u)(v - m_v) from sums about a common reference, over a leading fold axis.

    ``paired``: ``s_uv[..., i]`` pairs ``u_i`` with ``v_i`` (a diagonal); else ``s_uv[..., i, j]``.
    """
    if paired:
        nn = n.reshape((-1,) + (1,) * (s_uv.ndim - 1))
        return s_uv - m_u * s_v - s_u * m_v + nn * m_u * m_v
    nn = n[:, None, None]
    mu, mv, su, sv = m_u[:, :, None], m_v[:, None, :], s_u[:, :, None], s_v[:, None, :]
    return s_uv - mu * sv - su * mv + nn * mu * mv


@dataclass(frozen=True)
class Split:
    """Train and test moments of every fold (leading axis F).

    ``train_*`` are centred at the training mean; ``test_*`` are sums over the test rows of
    deviations from the *training* mean (what a model fitted on train sees at test time).
    ``x_mean``/``y_mean`` are the training means as deviations from the reference point.
    """

    n_train: np.ndarray
    n_test: np.ndarray
    x_mean: np.ndarray
    y_mean: np.ndarray
    train_xx: np.ndarray
    train_xy: np.ndarray
    train_yy: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_xx: np.ndarray
    test_xy: np.ndarray
    test_yy: np.ndarray

    @property
    def test_sst(self) -> np.ndarray:
        """Total sum of squares of each target in each test fold, ndarray (F, K)."""
        yy = self.test_yy if self.test_yy.ndim == 2 else np.diagonal(self.test_yy, 0, 1, 2)
        return yy - self.test_y**2 / self.n_test[:, None]


def split_moments(s: FoldSums) -> Split:
    """Train/test moments of every fold from the per-fold sums."""
    xg, yg = s.xx.ndim == 3, s.yy.ndim == 3
    tot = {k: getattr(s, k).sum(axis=0, keepdims=True) for k in ("n", "x", "xx", "y", "yy", "xy")}
    n_tr = tot["n"] - s.n
    tr = {k: tot[k] - getattr(s, k) for k in ("x", "xx", "y", "yy", "xy")}
    mx, my = tr["x"] / n_tr[:, None], tr["y"] / n_tr[:, None]
    return Split(
        n_train=n_tr,
        n_test=s.n,
        x_mean=mx,
        y_mean=my,
        train_xx=_about(tr["xx"], tr["x"], tr["x"], n_tr, mx, mx, not xg),
        train_xy=_about(tr["xy"], tr["x"], tr["y"], n_tr, mx, my, False),
        train_yy=_about(tr["yy"], tr["y"], tr["y"], n_tr, my, my, not yg),
        test_x=s.x - s.n[:, None] * mx,
        test_y=s.y - s.n[:, None] * my,
        test_xx=_about(s.xx, s.x, s.x, s.n, mx, mx, not xg),
        test_xy=_about(s.xy, s.x, s.y, s.n, mx, my, False),
        test_yy=_about(s.yy, s.y, s.y, s.n, my, my, not yg),
    )


def drop_fold(s: FoldSums, f: int) -> FoldSums:
    """The sums of every fold but ``f`` (leading axis F - 1), for cross-validation inside it."""
    keep = np.arange(len(s.n)) != f
    return FoldSums(**{k: getattr(s, k)[keep] for k in ("n", "x", "xx", "y", "yy", "xy")})


def ridge_fold_sse(sp: Split, alphas: np.ndarray) -> np.ndarray:
    """Test SSE of ridge fitted on each fold's training rows, every alpha and target, (F, A, K).

    The ridge has an unpenalized intercept (it works on the training-centred moments) and needs
    ``sp.train_xx`` as full Gram matrices. One eigendecomposition ``V diag(s) V^T`` of each
    fold's training Gram serves every alpha: ``b = V diag(1/(s + alpha)) V^T Xc^T yc``, and the
    test SSE is the quadratic form ``yy - 2 b^T xy + b^T xx b`` in the test moments. The cost,
    ``F * (U^3 + 2 U^2 * A * K)``, does not depend on the number of rows.
    """
    n_folds, n_units, n_targets, n_alphas = len(sp.n_test), *sp.train_xy.shape[1:], len(alphas)
    out = np.empty((n_folds, n_alphas, n_targets))
    for g in range(n_folds):
        eigvals, eigvecs = np.linalg.eigh(sp.train_xx[g])
        eigvals = np.clip(eigvals, 0.0, None)
        proj = eigvecs.T @ sp.train_xy[g]  # (U, K)
        w = proj[:, None, :] / (eigvals[:, None, None] + alphas[None, :, None])  # (U, A, K)
        B = (eigvecs @ w.reshape(n_units, -1)).reshape(w.shape)  # (U, A, K): every alpha's b
        xx_B = (sp.test_xx[g] @ B.reshape(n_units, -1)).reshape(w.shape)  # (U, A, K)
        yy = np.diagonal(sp.test_yy[g]) if sp.test_yy.ndim == 3 else sp.test_yy[g]  # (K,)
        xy_B = np.einsum("uak,uk->ak", B, sp.test_xy[g])
        out[g] = yy - 2.0 * xy_B + np.einsum("uak,uak->ak", B, xx_B)
    return out


def inner_fold_sse(s: FoldSums, alphas: np.ndarray) -> np.ndarray:
    """Grouped cross-validation SSE inside every outer fold, ndarray (F, A, K).

    Entry ``[f, a, k]``: over the inner folds ``g != f``, the SSE on fold ``g`` of target ``k``
    by ridge(``alphas[a]``) fitted on the folds other than ``f`` and ``g``, summed over ``g``.
    Exact algebra on the per-fold sums ``s`` (full Gram matrices, at least 3 folds).
    """
    inner = [split_moments(drop_fold(s, f)) for f in range(len(s.n))]  # F - 1 folds each
    return np.stack([ridge_fold_sse(sp, alphas).sum(axis=0) for sp in inner])


def r2_from_sse(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    """``1 - sse / sst`` with the zero-``sst`` cases left as NaN (the caller decides them)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / np.where(sst > 0, sst, 1.0), np.nan)


def ridge1d_fold_r2(sp: Split, alpha: float, degenerate_xx: np.ndarray) -> np.ndarray:
    """Held-out R² of every one-unit ridge (with intercept), ndarray (F, U, K).

    ``degenerate_xx`` (U,): at or below it a unit's training sum of squares counts as zero
    and its slope as 0 (matters only for ``alpha == 0``).
    """
    den = sp.train_xx + alpha  # (F, U)
    ok = (sp.train_xx > degenerate_xx) | (alpha > 0)
    b = np.where(ok[..., None], sp.train_xy / np.where(ok, den, 1.0)[..., None], 0.0)  # (F,U,K)
    yy = sp.test_yy[:, None, :]
    sse = yy - 2.0 * b * sp.test_xy + b**2 * sp.test_xx[..., None]
    return r2_from_sse(sse, sp.test_sst[:, None, :])


def ridge_loo_sq_errors(
    X: np.ndarray,
    Yd: np.ndarray,
    train_rows: list[np.ndarray],
    x_center: np.ndarray,
    y_center: np.ndarray,
    eigvals: np.ndarray,
    eigvecs: np.ndarray,
    proj: np.ndarray,
    alphas: np.ndarray,
) -> np.ndarray:
    """Sum of squared leave-one-out errors of ridge for every alpha and target, (A, K).

    Exact LOO of ridge with an unpenalized intercept on the training rows (the closed form
    behind sklearn's ``RidgeCV`` default, ``gcv_mode`` 'auto' -> 'cov'):
    ``e_i / (1 - 1/n - h_i)`` with ``h = diag(Xc V diag(1/(s + alpha)) V^T Xc^T)``.

    Parameters
    ----------
    X : ndarray (n_samples, U); Yd : ndarray (n_samples, K), deviations from the reference
    train_rows : list of int ndarrays, the training rows (in pieces)
    x_center, y_center : training means, in the coordinates of ``X`` and ``Yd``
    eigvals, eigvecs : eigendecomposition of the centred training Gram matrix
    proj : ndarray (U, K), ``eigvecs.T @ Xc.T @ Yc``
    alphas : ndarray (A,)
    """
    n_units, n_targets, n_alphas = X.shape[1], Yd.shape[1], len(alphas)
    n_train = sum(len(r) for r in train_rows)
    inv = 1.0 / (eigvals[:, None] + alphas[None, :])  # (U, A)
    w = (inv[:, :, None] * proj[:, None, :]).reshape(n_units, n_alphas * n_targets)
    acc = np.zeros((n_alphas, n_targets))
    step = max(1, CHUNK_BYTES // (8 * max(n_units, n_alphas * n_targets, 1)))
    for rows in train_rows:
        for start in range(0, len(rows), step):
            idx = rows[start : start + step]
            z = (X[idx] - x_center) @ eigvecs  # (chunk, U)
            h = (z * z) @ inv  # (chunk, A)
            fit = (z @ w).reshape(len(idx), n_alphas, n_targets)
            err = (Yd[idx] - y_center)[:, None, :] - fit
            err /= (1.0 - 1.0 / n_train - h)[:, :, None]
            acc += np.einsum("iak,iak->ak", err, err)
    return acc


def quad_sse(test_yy: np.ndarray, test_xy: np.ndarray, test_xx: np.ndarray, B: np.ndarray):
    """Test SSE of the linear predictions ``Xd @ B`` of every target, ndarray (K,).

    ``test_yy`` (K, K) or (K,), ``test_xy`` (U, K), ``test_xx`` (U, U), ``B`` (U, K).
    """
    yy = np.diagonal(test_yy) if test_yy.ndim == 2 else test_yy
    return yy - 2.0 * np.einsum("uk,uk->k", B, test_xy) + np.einsum("uk,uk->k", B, test_xx @ B)


def inv_spd(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix via one Cholesky factorization."""
    factor = sla.cho_factor(A, lower=True, check_finite=False)
    return sla.cho_solve(factor, np.eye(A.shape[0]), check_finite=False)


def solve_lstsq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Minimum-norm solution of ``A X = B`` for a small symmetric PSD ``A`` (scaled SVD)."""
    if A.shape[0] == 0:
        return np.zeros((0,) + B.shape[1:])
    d = np.sqrt(np.clip(np.diagonal(A), 0.0, None))
    d = np.where(d > 0, d, 1.0)
    As = A / d[:, None] / d[None, :]
    sol = np.linalg.lstsq(As, (B.T / d).T, rcond=1e-12)[0]
    return (sol.T / d).T


def adjust_holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values of a 1-D array without NaN."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def adjust_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) of a 1-D array without NaN."""
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out = np.empty(m)
    out[order] = adj
    return out
