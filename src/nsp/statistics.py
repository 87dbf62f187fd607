"""Summary statistics of many activation patterns or spectra, from (samples, nodes) arrays.

Every function takes plain arrays (and the layer offsets where layers matter): the pipeline feeds them
from HDF5 shards, a script from arrays it holds, and :mod:`nsp.plotting` draws what they return. Each
statistic is a mean over samples of something computed sample by sample; :class:`Summary` and
:class:`ClassMeans` take the samples in chunks (shard after shard, a few rows at a time) and give the same
numbers, bit for bit, however they are chunked. Nothing here imports torch or matplotlib.
"""

from __future__ import annotations

import numpy as np

from nsp.errors import InputError


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


def compaction_ks(n: int) -> np.ndarray:
    """The default k of :func:`compaction`: a logarithmic grid from 1 to ``n`` coefficients."""
    return np.unique(np.round(np.logspace(0, np.log10(max(n, 1)), 60)).astype(np.int64))


def compaction_per_sample(values, ks) -> np.ndarray:
    """Share of each sample's energy in its ``k`` largest-magnitude coefficients: (samples, len(ks))."""
    x = _rows(values) ** 2
    n = x.shape[1]
    ks = np.asarray(ks, dtype=np.int64)
    ordered = -np.sort(-x, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    total = cumulative[:, -1:]
    return np.divide(cumulative[:, np.clip(ks, 1, n) - 1], total, out=np.zeros((x.shape[0], ks.size)),
                     where=total > 0)


def compaction(values, ks=None) -> tuple[np.ndarray, np.ndarray]:
    """Energy compaction: share of the energy in the k largest-magnitude coefficients.

    Returns ``(ks, share)`` with ``share[i]`` the mean over samples for ``k = ks[i]``;
    by default ``ks`` is a logarithmic grid from 1 to the number of coefficients.
    """
    ks = compaction_ks(np.shape(_rows(values))[1]) if ks is None else np.asarray(ks, dtype=np.int64)
    return ks, compaction_per_sample(values, ks).mean(axis=0)


def sparsity_per_sample(values, offsets, threshold: float = 1e-3) -> np.ndarray:
    """Share of each layer's coefficients below ``threshold`` times the sample's largest magnitude:
    (samples, layers)."""
    x = np.abs(_rows(values))
    scale = x.max(axis=1, keepdims=True)
    small = (x <= threshold * scale).astype(np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    counts = np.diff(offsets)
    return np.add.reduceat(small, offsets[:-1], axis=1) / np.maximum(counts, 1)


def sparsity_per_layer(values, offsets, threshold: float = 1e-3) -> np.ndarray:
    """Share of each layer's coefficients below ``threshold`` times the sample's largest magnitude,
    averaged over samples: (layers,)."""
    return sparsity_per_sample(values, offsets, threshold).mean(axis=0)


#: the per-layer statistics of a :class:`Summary` with offsets: share of the sample's energy; share below
#: ``threshold`` x the sample's largest magnitude; quantiles of |value|; share of zeros (|value| <= ``floor``);
#: share below ``threshold`` x the layer's own largest magnitude; share of the layer's energy in its largest 1%
PER_LAYER = ("energy_per_layer", "sparsity_per_layer", "magnitude_quantiles", "zeros_per_layer", "layer_sparsity",
             "layer_compaction")


class Summary:
    """Compaction (and, with ``offsets``, the statistics of :data:`PER_LAYER`) of samples given in chunks:
    ``add(values)`` for each chunk of rows, then ``result()``. Only the per-sample numbers (a few per
    sample and layer) are kept, and their mean is taken at the end, so the result is that of the whole
    array. ``floor``: values at or below it count as zeros (a scalar, or one per layer: a noise floor)."""

    def __init__(self, width: int, offsets=None, threshold: float = 1e-3, floor=0.0):
        self.width, self.threshold, self.floor = int(width), threshold, floor
        self.floored = False                 # whether some samples came with their own noise floor
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int64)
        self.ks = compaction_ks(self.width)
        self._parts = {name: [] for name in ("compaction", *PER_LAYER)}

    def add(self, values, floor=None) -> None:
        """Add a chunk of rows; ``floor``: their own noise floor per layer, (rows, layers), in place of the
        summary's."""
        x = _rows(values)
        if x.shape[1] != self.width:
            raise InputError(f"values of {x.shape[1]} columns for a summary of {self.width}")
        self._parts["compaction"].append(compaction_per_sample(x, self.ks))
        if self.offsets is not None:
            o, parts = self.offsets, self._parts
            self.floored |= floor is not None
            floor = self.floor if floor is None else np.asarray(floor, dtype=np.float64)
            parts["energy_per_layer"].append(energy_per_layer(x, o))
            parts["sparsity_per_layer"].append(sparsity_per_sample(x, o, self.threshold))
            parts["magnitude_quantiles"].append(magnitude_quantiles_per_sample(x, o))
            parts["zeros_per_layer"].append(zeros_per_sample(x, o, floor))
            parts["layer_sparsity"].append(layer_sparsity_per_sample(x, o, self.threshold, floor))
            parts["layer_compaction"].append(layer_compaction_per_sample(x, o))

    @property
    def samples(self) -> int:
        return int(sum(len(p) for p in self._parts["compaction"]))

    def result(self) -> dict:
        """``ks``, ``compaction`` (mean share per k) and, with offsets, each statistic of
        :data:`PER_LAYER` (means over the samples: one value per layer, ``magnitude_quantiles`` one row of
        :data:`QUANTILES` per layer)."""
        def mean(name, shape):
            parts = self._parts[name]
            return (np.concatenate(parts) if parts else np.zeros((0, *shape))).mean(axis=0)
        out = {"ks": self.ks, "compaction": mean("compaction", (self.ks.size,))}
        if self.offsets is not None:
            layers = self.offsets.size - 1
            for name in PER_LAYER:
                out[name] = mean(name, (layers, len(QUANTILES)) if name == "magnitude_quantiles" else (layers,))
        return out


class ClassMeans:
    """The mean of each class over ``width`` columns, of samples given in blocks: ``add(values, labels)``
    for each chunk of rows (``start``: a block of columns from there, for all of its rows), then
    ``result()``. Each class's sum is kept in float64 and each of its columns grows one sample at a time in
    the order the samples come, so any chunking of the same samples gives the same means, bit for bit;
    memory is one row per class besides the block. Samples are counted in the blocks at column 0."""

    def __init__(self, width: int):
        self.width = int(width)
        self._sums, self._counts = {}, {}

    def add(self, values, labels, start: int = 0) -> None:
        x = _rows(values)
        labels = np.asarray(labels).reshape(-1)
        if labels.size != x.shape[0]:
            raise InputError(f"{labels.size} labels for {x.shape[0]} samples")
        if not 0 <= start <= start + x.shape[1] <= self.width:
            raise InputError(f"columns {start}..{start + x.shape[1] - 1} of class means over {self.width}")
        stop = start + x.shape[1]
        for row, label in zip(x, labels.tolist()):
            total = self._sums.get(label)
            if total is None:
                total = self._sums[label] = np.zeros(self.width, dtype=np.float64)
                self._counts[label] = 0
            total[start:stop] += row
            if start == 0:
                self._counts[label] += 1

    @property
    def samples(self) -> int:
        return int(sum(self._counts.values()))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(classes, means)``: the classes in ascending order and their means, (classes, width) float64
        (no samples: no classes, a (0, width) array). Each sum is released as its mean is written, so
        this is called once, after the last ``add``."""
        classes = sorted(self._sums)
        if not classes:
            return np.zeros(0, np.int64), np.zeros((0, self.width))
        means = np.empty((len(classes), self.width))
        for i, c in enumerate(classes):
            np.divide(self._sums.pop(c), self._counts[c], out=means[i])
        return np.asarray(classes), means


def class_means(values, labels) -> tuple[np.ndarray, np.ndarray]:
    """Mean pattern of each class: ``(classes, means)`` with means of shape (classes, nodes)."""
    x = _rows(values)
    accumulator = ClassMeans(x.shape[1])
    accumulator.add(x, labels)
    return accumulator.result()


# --- per-layer statistics: each layer on its own scale ----------------------------------------------

#: the quantiles of |value| per layer that :func:`magnitude_quantiles_per_sample` takes by default
QUANTILES = (0.5, 0.9, 0.99, 1.0)


def _layers(x: np.ndarray, offsets) -> list[np.ndarray]:
    offsets = np.asarray(offsets, dtype=np.int64)
    return [x[:, offsets[i]:offsets[i + 1]] for i in range(offsets.size - 1)]


def magnitude_quantiles_per_sample(values, offsets, quantiles=QUANTILES) -> np.ndarray:
    """Quantiles of |value| within each layer of each sample: (samples, layers, quantiles), the largest
    magnitude for quantile 1 (an empty layer: 0). Quantiles are numpy's default (linear interpolation)."""
    x = np.abs(_rows(values))
    out = np.zeros((x.shape[0], np.size(offsets) - 1, len(quantiles)))
    for i, layer in enumerate(_layers(x, offsets)):
        if layer.shape[1]:
            out[:, i, :] = np.quantile(layer, quantiles, axis=1).T
    return out


def zeros_per_sample(values, offsets, floor=0.0) -> np.ndarray:
    """Share of each layer's values that are zero, |value| <= ``floor`` (0: exact zeros; a scalar, or one
    floor per layer, or per sample and layer): (samples, layers)."""
    return layer_sparsity_per_sample(values, offsets, 0.0, floor)       # no share of the layer's max: the floor


def layer_sparsity_per_sample(values, offsets, threshold: float = 1e-3, floor=0.0) -> np.ndarray:
    """Share of each layer's values at or below ``threshold`` times the largest magnitude in that layer of
    that sample (each layer on its own scale; a layer whose values are all zero, or at or below ``floor``,
    counts as wholly sparse): (samples, layers)."""
    x = np.abs(_rows(values))
    floor = np.broadcast_to(np.asarray(floor, dtype=np.float64), (x.shape[0], np.size(offsets) - 1))
    out = np.zeros(floor.shape)
    for i, layer in enumerate(_layers(x, offsets)):
        if layer.shape[1]:
            cut = np.maximum(threshold * layer.max(axis=1, keepdims=True), floor[:, i:i + 1])
            out[:, i] = (layer <= cut).mean(axis=1)
    return out


def layer_compaction_per_sample(values, offsets, fraction: float = 0.01) -> np.ndarray:
    """Share of each layer's energy in its ``ceil(fraction * size)`` largest-magnitude values (at least one),
    per sample: (samples, layers); a layer without energy: 0."""
    x = _rows(values) ** 2
    out = np.zeros((x.shape[0], np.size(offsets) - 1))
    for i, layer in enumerate(_layers(x, offsets)):
        n = layer.shape[1]
        if n:
            k = max(1, int(np.ceil(fraction * n - 1e-9)))
            top = -np.partition(-layer, k - 1, axis=1)[:, :k] if k < n else layer
            total = layer.sum(axis=1)
            np.divide(top.sum(axis=1), total, out=out[:, i], where=total > 0)
    return out


def class_spread(means, offsets) -> np.ndarray:
    """How much the classes differ in each layer, on the layer's own scale: the mean over the layer's nodes
    of the standard deviation of the class means, divided by the mean over its nodes and classes of
    |class mean| (0 for a layer whose means are all 0). ``means``: (classes, nodes). Returns (layers,)."""
    m = np.asarray(means, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    out = np.zeros(offsets.size - 1)
    for i, layer in enumerate(_layers(m, offsets)):
        if layer.size:
            scale = np.abs(layer).mean()
            out[i] = layer.std(axis=0).mean() / scale if scale > 0 else 0.0
    return out
