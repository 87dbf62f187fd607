"""Sparse reconstruction of a whole activation pattern from the values at some neurons.

A pattern with few non-zero coefficients is a combination of few columns of the synthesis matrix
(``s = W c``); its values at the observed nodes ``O`` are ``y = W[O, :] c``. With at most ``k`` non-zero
coefficients, ``c`` is found from ``y`` by a sparse solver on the rows ``Phi = W[O, :]`` (one backward
pass per observed node, :meth:`~nsp.transforms.base.Transform.synthesis_rows`), and the pattern is the
synthesis ``W c`` (:meth:`~nsp.transforms.base.Transform.synthesize`) (``docs/math.md``, "Sampling and reconstruction"):

- ``'omp'`` (orthogonal matching pursuit): ``k`` times, the column most correlated with the residual
  (columns normalised) joins the support, and the coefficients are refitted by least squares on it;
- ``'lasso'``: the l1-penalised least-squares fit, followed along its path of penalties (scikit-learn's
  LARS homotopy on the normalised columns) down to ``alpha`` (default 0) or to the last solution with at
  most ``k`` non-zero coefficients, whose support is refitted by least squares;
- ``'lowpass'``: no sparsity search: least squares on the first ``k`` coefficients (for the Laplacian
  transform, band-limited interpolation on its ``k`` lowest frequencies).

Nothing is promised where the observed rows do not determine the coefficients: a coefficient whose column
is zero on the observed rows (no observed node depends on it) cannot be seen; a column outside the found
support that is a combination of the support's columns gives another pattern as sparse that fits as well;
and a pattern that is not ``k``-sparse has no exact fit. :class:`ReconstructionWarning` says which, with
the counts, instead of returning a confident answer silently. Where the support ``T`` of the true
coefficients satisfies Tropp's exact recovery condition on the observed rows (``max over j not in T of
||pinv(Phi_T) phi_j||_1 < 1``), greedy pursuit finds it.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.linalg import solve_triangular

from nsp import memory
from nsp.errors import InputError

METHODS = ("omp", "lasso", "lowpass")
#: relative residual below which the observations count as fitted
FIT_TOL = 1e-9
#: condition number of the observed rows of the band beyond which low-pass interpolation is not trusted
CONDITION_LIMIT = 1e8
#: eigenvalues closer than this (relative, at least absolute) are one eigenspace
EIGEN_TOL = 1e-9
#: entries of the orthogonalised bases greedy pursuit holds at once (samples are taken in blocks)
CHUNK = 1 << 25


class ReconstructionWarning(UserWarning):
    """The observed rows do not determine the reconstruction (invisible coefficients, no k-sparse fit)."""


def observed_index(observed, n: int) -> np.ndarray:
    """The observed nodes as sorted unique indices: from a boolean mask of length ``n`` or indices."""
    index = np.asarray(observed)
    if index.size == 0:
        raise InputError("observed: no node is observed")
    if index.dtype == bool:
        if index.shape != (n,):
            raise InputError(f"observed: a boolean mask must have shape ({n},); got {index.shape}")
        index = np.flatnonzero(index)
    elif index.ndim != 1 or index.dtype.kind not in "iu":
        raise InputError(f"observed must be a boolean mask over the {n} nodes or a list of node indices; got "
                         f"{index.dtype} of shape {index.shape}")
    if index.size == 0:
        raise InputError("observed: no node is observed (the mask is all False)")
    if index.min() < 0 or index.max() >= n:
        raise InputError(f"observed: node {int(index.min() if index.min() < 0 else index.max())} outside 0..{n - 1}")
    if np.unique(index).size != index.size:
        raise InputError("observed: a node is listed twice")
    return index.astype(np.int64)


def reconstruct(transform, values, observed, sparsity: int, method: str = "omp", alpha: float | None = None,
                device=None):
    """``(patterns, coefficients)`` of shape (samples, nodes) and (samples, coefficients); see the module
    docstring and :meth:`nsp.transforms.base.Transform.reconstruct`."""
    n, width = transform.n, transform.n_coefficients
    index = observed_index(observed, n)
    y = np.asarray(values, dtype=np.float64)
    single = y.ndim == 1
    y = y[None] if single else y
    if y.ndim != 2 or y.shape[1] not in (index.size, n):
        raise InputError(f"values must have shape (samples, {index.size}) (the observed nodes' values) or "
                         f"(samples, {n}); got {np.shape(values)}")
    if not np.all(np.isfinite(y)):
        raise InputError("values hold NaN or infinite entries")
    y = y[:, index] if y.shape[1] != index.size else y
    if method not in METHODS:
        raise InputError(f"unknown method {method!r} for reconstruct; accepted: {', '.join(METHODS)}")
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, np.integer)) or not 1 <= sparsity <= width:
        raise InputError(f"sparsity={sparsity!r}: the number of non-zero coefficients is an integer in 1..{width}")
    if alpha is not None and (method != "lasso" or not alpha > 0):
        raise InputError(f"alpha={alpha!r}: the l1 penalty is a positive number, for method='lasso' only")
    memory.check(8 * index.size * width * 3 + 8 * y.shape[0] * (n + width),
                 f"reconstruction from {index.size:,} observed nodes over {width:,} coefficients",
                 "Observe fewer nodes, or reconstruct a smaller graph (the observed rows of W are held densely).")
    phi = transform.synthesis_rows(index, device)                 # (observed, coefficients)
    norms = np.linalg.norm(phi, axis=0)
    invisible = int(np.count_nonzero(norms == 0))
    if method == "lowpass":
        singular = np.linalg.svd(phi[:, :sparsity], compute_uv=False)
        condition = singular[0] / singular[-1] if singular.size == sparsity and singular[-1] > 0 else np.inf
        if condition > CONDITION_LIMIT:
            warnings.warn(f"the observed nodes hardly determine the first {sparsity} coefficients (condition number "
                          f"{condition:.3g}): the interpolation amplifies the observations' variation off the band",
                          ReconstructionWarning, stacklevel=3)
        invisible = int(np.count_nonzero(norms[:sparsity] == 0))
        _split_band(transform, sparsity)
    if method == "omp":
        coefficients = _omp(phi, norms, y, int(sparsity))
    elif method == "lowpass":
        coefficients = np.zeros((y.shape[0], width))
        coefficients[:, :sparsity] = np.linalg.lstsq(phi[:, :sparsity], y.T, rcond=None)[0].T
    else:
        coefficients = np.stack([_lasso(phi, norms, row, int(sparsity), alpha) for row in y])
    unfit, ambiguous = [], 0
    for b in range(y.shape[0]):
        scale = np.linalg.norm(y[b])
        residual = np.linalg.norm(y[b] - phi @ coefficients[b])
        if residual > FIT_TOL * max(scale, 1e-300):
            unfit.append(residual / scale if scale else np.inf)
        elif method != "lowpass":
            ambiguous += _ambiguous(phi, norms, np.flatnonzero(coefficients[b]))
    if invisible:
        considered = sparsity if method == "lowpass" else width
        warnings.warn(f"{invisible:,} of {considered:,} coefficients have no observed node that depends on them: the "
                      f"observations say nothing about them (reconstructed as 0)", ReconstructionWarning, stacklevel=3)
    if unfit and method != "lowpass":
        warnings.warn(f"{len(unfit)} of {y.shape[0]} samples have no {sparsity}-sparse fit to the observations "
                      f"(relative residual up to {max(unfit):.3g}): their patterns are not {sparsity}-sparse in "
                      f"this transform, or too few nodes are observed", ReconstructionWarning, stacklevel=3)
    if ambiguous:
        warnings.warn(f"{ambiguous} of {y.shape[0]} samples fit other patterns as sparse as the one returned: a "
                      f"column outside the support is a combination of the support's columns on the observed "
                      f"nodes, so the observations do not determine the pattern", ReconstructionWarning,
                      stacklevel=3)
    patterns = transform.synthesize(coefficients, device=device)
    return (patterns[0], coefficients[0]) if single else (patterns, coefficients)


def _ambiguous(phi: np.ndarray, norms: np.ndarray, support: np.ndarray) -> bool:
    """Whether a visible column outside ``support`` lies in the span of the support's columns (then a
    column can be swapped for it and the observations are fitted by another pattern as sparse)."""
    if support.size == 0:
        return False
    basis, _ = np.linalg.qr(phi[:, support])
    outside = np.setdiff1d(np.flatnonzero(norms > 0), support)
    rest = phi[:, outside] - basis @ (basis.T @ phi[:, outside])
    return bool(np.any(np.linalg.norm(rest, axis=0) <= 1e-9 * norms[outside]))


def _refit(phi: np.ndarray, y: np.ndarray, support: np.ndarray) -> np.ndarray:
    out = np.zeros(phi.shape[1])
    if support.size:
        out[support] = np.linalg.lstsq(phi[:, support], y, rcond=None)[0]
    return out


def _omp(phi: np.ndarray, norms: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Orthogonal matching pursuit of every row of ``y`` (samples, observed) at once: at each step one product
    ``R Phi`` scores every column for every sample (columns normalised), and each sample's chosen column is
    orthogonalised against its earlier ones (Gram-Schmidt, twice), so that the residual is updated by one
    projection and the least-squares coefficients come from one triangular solve at the end."""
    samples, m = y.shape
    out = np.zeros((samples, phi.shape[1]))
    step = max(1, CHUNK // max(1, k * m))
    for first in range(0, samples, step):
        rows = y[first:first + step]
        out[first:first + step] = _omp_block(phi, norms, rows, k)
    return out


def _omp_block(phi, norms, y, k):
    samples, m = y.shape
    safe = np.where(norms > 0, norms, np.inf)
    residual, scale = y.copy(), np.linalg.norm(y, axis=1)
    basis, upper = np.zeros((samples, k, m)), np.zeros((samples, k, k))
    chosen, size = np.zeros((samples, k), np.int64), np.zeros(samples, np.int64)
    active = np.ones(samples, bool)
    for _ in range(k):
        active &= np.linalg.norm(residual, axis=1) > FIT_TOL * scale
        if not active.any():
            break
        scores = np.abs(residual[active] @ phi) / safe
        for score, b in zip(scores, np.flatnonzero(active)):
            t = size[b]
            score[chosen[b, :t]] = -1.0
            j = int(np.argmax(score))
            q = basis[b, :t]
            v = phi[:, j].copy()
            first = q @ v
            v -= q.T @ first
            second = q @ v
            v -= q.T @ second
            length = np.linalg.norm(v)
            if score[j] <= 0 or length <= 1e-10 * norms[j]:      # nothing left that the columns can explain
                active[b] = False
                continue
            basis[b, t], upper[b, :t, t], upper[b, t, t] = v / length, first + second, length
            chosen[b, t], size[b] = j, t + 1
            residual[b] -= basis[b, t] * (basis[b, t] @ residual[b])
    out = np.zeros((samples, phi.shape[1]))
    for b in range(samples):
        t = size[b]
        if t:
            out[b, chosen[b, :t]] = solve_triangular(upper[b, :t, :t], basis[b, :t] @ y[b])
    return out


def _lasso(phi, norms, y, k, alpha):
    from sklearn.linear_model import lars_path
    visible = np.flatnonzero(norms > 0)
    x = phi[:, visible] / norms[visible]
    _, _, path = lars_path(x, y, method="lasso", alpha_min=0.0 if alpha is None else alpha, max_iter=8 * k + 8)
    sizes = np.count_nonzero(path, axis=0)
    step = int(np.flatnonzero(sizes <= k)[-1])         # the smallest penalty whose solution has at most k causes
    return _refit(phi, y, visible[np.flatnonzero(path[:, step])])


def _split_band(transform, k: int) -> None:
    """Warn where the band of the first ``k`` coefficients ends inside an eigenspace (an eigenvalue that
    continues past it): which of that space's vectors the band holds is then arbitrary."""
    values = getattr(transform, "eigenvalues", None)
    if values is None:
        return
    values = np.asarray(values, dtype=np.float64)
    following = values[k] if k < values.size else (getattr(transform, "truncation", None) or {}).get("next")
    last = values[k - 1]
    if following is None or abs(following - last) > EIGEN_TOL * max(1.0, abs(last)):
        return
    gaps = [i for i in range(1, k) if abs(values[i] - values[i - 1]) > EIGEN_TOL * max(1.0, abs(values[i - 1]))]
    advice = f"; the largest band below it that ends at a gap keeps {gaps[-1]}" if gaps else ""
    warnings.warn(f"the band of the first {k} coefficients ends inside the eigenspace of eigenvalue {last:.6g}, "
                  f"which continues past it: which of its vectors the band holds is arbitrary, and so is the "
                  f"interpolation{advice}", ReconstructionWarning, stacklevel=4)
