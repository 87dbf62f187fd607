"""Statistics of many activation patterns or spectra, from (samples, nodes) arrays.

Every function takes plain arrays (and the layer offsets where layers
matter), so the pipeline can feed it from HDF5 shards and the plots in
:mod:`nsp.plotting` can draw the results.
"""

from __future__ import annotations

import numpy as np


def _rows(values) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    return x[None, :] if x.ndim == 1 else x


def energy_per_layer(values, offsets) -> np.ndarray:
    """Share of each sample's energy (sum of squares) in each layer: (samples, layers), rows sum to 1."""
    x = _rows(values) ** 2
    offsets = np.asarray(offsets, dtype=np.int64)
    per_layer = np.add.reduceat(x, offsets[:-1], axis=1) if x.shape[1] else np.zeros((x.shape[0], 0))
    per_layer[:, np.diff(offsets) == 0] = 0.0
    total = per_layer.sum(axis=1, keepdims=True)
    return np.divide(per_layer, total, out=np.zeros_like(per_layer), where=total > 0)


def compaction(values, ks=None) -> tuple[np.ndarray, np.ndarray]:
    """Energy compaction: share of the energy in the k largest-magnitude coefficients.

    Returns ``(ks, share)`` with ``share[i]`` the mean over samples for ``k = ks[i]``;
    by default ``ks`` is a logarithmic grid from 1 to the number of coefficients.
    """
    x = _rows(values) ** 2
    n = x.shape[1]
    if ks is None:
        ks = np.unique(np.round(np.logspace(0, np.log10(max(n, 1)), 60)).astype(np.int64))
    ks = np.asarray(ks, dtype=np.int64)
    ordered = -np.sort(-x, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    total = cumulative[:, -1:]
    share = np.divide(cumulative[:, np.clip(ks, 1, n) - 1], total, out=np.zeros((x.shape[0], ks.size)),
                      where=total > 0)
    return ks, share.mean(axis=0)


def sparsity_per_layer(values, offsets, threshold: float = 1e-3) -> np.ndarray:
    """Share of each layer's coefficients below ``threshold`` times the sample's largest magnitude,
    averaged over samples: (layers,)."""
    x = np.abs(_rows(values))
    scale = x.max(axis=1, keepdims=True)
    small = (x <= threshold * scale).astype(np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    per_layer = np.add.reduceat(small, offsets[:-1], axis=1) / np.maximum(counts, 1)
    return per_layer.mean(axis=0)


def class_means(values, labels) -> tuple[np.ndarray, np.ndarray]:
    """Mean pattern of each class: ``(classes, means)`` with means of shape (classes, nodes)."""
    x = _rows(values)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    return classes, np.stack([x[labels == c].mean(axis=0) for c in classes])
