"""The influence transform: the max-product closure of the network's absolute weights.

With the weights taken by magnitude and scaled into ``(0, 1]`` (``a = |A| / max|A|``, or each neuron's
incoming weights by their own largest: ``scale='target'``), the influence of ``x`` on ``y`` is the weight
of the most influential path from ``x`` to ``y``, the largest product of the edge weights along it::

    W[y, y] = 1,    W[y, x] = max over parents p of y of  a[y, p] W[p, x]

(the closure of the DAG in the (max, x) semiring; ``docs/math.md``). ``W`` is lower unitriangular in
node order, so it has an inverse and the spectrum is ``c = W^-1 s`` (forward substitution), the
synthesis ``s = W c``: a signal as a sum of the coefficients' influence profiles. Unlike the sum-product
closure of ``sem``, ``W`` is not a product of layer maps, so it is formed explicitly, generation by
generation: memory grows with the closure (as for the explicit standard transform), checked before each
generation with the figure (a clear refusal where it does not fit).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

from nsp import memory
from nsp.errors import InputError
from nsp.graph.weights import weighted_adjacency
from nsp.transforms.base import Transform
from nsp.transforms.sem import weighted_graph
from nsp.transforms.zeta import level_order

#: How the absolute weights are scaled into (0, 1].
SCALES = ("global", "target")
#: bytes per closure entry while a generation's rows are formed (candidates, keys, sort, CSR copies)
ENTRY_BYTES = 48


class InfluenceTransform(Transform):
    """The causal transform with the max-product ("most influential path") closure; type ``'influence'``.

    Fit on a :class:`nsp.GraphCore` with edge weights or on a square weighted adjacency (row = target,
    strictly lower triangular). ``scale``: ``'global'`` divides every |weight| by the largest one,
    ``'target'`` each neuron's incoming |weights| by their largest (its strongest input has influence 1).
    Edges of weight 0 carry no influence. Attributes after ``fit``: ``closure`` (CSR float64, ``W``).
    """

    type = "influence"
    description = "influence spectrum: c = W^-1 s, W the strongest-path products of the scaled |weights|"
    options_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"scale": {"enum": list(SCALES), "default": "global", "description":
                                 "global: |weights| / the largest |weight|; target: each neuron's incoming "
                                 "|weights| / their largest"}}}

    def __init__(self, scale: str = "global"):
        if scale not in SCALES:
            raise InputError(f"unknown scale {scale!r} for the influence transform; accepted: {', '.join(SCALES)}")
        self.scale = scale
        self.closure = None
        self._layers = None

    @property
    def fitted(self) -> bool:
        return self.closure is not None

    @property
    def n(self) -> int:
        return self._checked().closure.shape[0]

    def fit(self, graph) -> "InfluenceTransform":
        self.closure, self._layers = None, None
        core, adjacency = weighted_graph(graph, self.type)
        if core is not None:
            adjacency = weighted_adjacency(core)
        layers = None if core is None else (list(core.names), [int(o) for o in core.offsets])
        self.closure = max_product_closure(scaled(adjacency, self.scale))
        self._layers = layers
        return self

    @classmethod
    def from_closure(cls, closure: sp.csr_matrix, scale: str = "global", layers=None) -> "InfluenceTransform":
        """Rebuild a fitted transform from a stored closure (and the graph's layer names and offsets)."""
        out = cls(scale)
        out.closure = sp.csr_matrix(closure, dtype=np.float64)
        out._layers = layers
        return out

    def layer_offsets(self):
        return self._layers

    def summary(self) -> str:
        return f"{self.n_coefficients:,} coefficients, explicit closure of {self.closure.nnz:,} entries"

    def synthesis_rows(self, targets, device=None, at=None) -> np.ndarray:
        rows = self.closure[self._targets(targets)].toarray()
        return rows if at is None else np.broadcast_to(rows, (len(at),) + rows.shape)

    def _transform(self, s, device):
        return np.asarray(spsolve_triangular(self.closure, s.T, lower=True, unit_diagonal=True)).T.reshape(s.shape)

    def _inverse(self, c, device):
        return np.ascontiguousarray((self.closure @ c.T).T)


def scaled(adjacency: sp.csr_matrix, scale: str) -> sp.csr_matrix:
    """``|A|`` without its zeros, scaled into (0, 1] as ``scale`` says."""
    a = abs(sp.csr_matrix(adjacency, dtype=np.float64))
    a.eliminate_zeros()
    if not np.all(np.isfinite(a.data)):
        raise InputError("the weighted adjacency holds non-finite weights")
    if a.nnz == 0:
        return a
    if scale == "global":
        a.data = a.data / a.data.max()
    else:
        counts = np.diff(a.indptr)
        full = counts > 0
        a.data = a.data / np.repeat(np.maximum.reduceat(a.data, a.indptr[:-1][full]), counts[full])
    return a


def max_product_closure(a: sp.csr_matrix) -> sp.csr_matrix:
    """``W`` with ``W[y, y] = 1`` and ``W[y, x] = max_p a[y, p] W[p, x]`` for a strictly lower triangular
    ``a`` with entries in (0, 1]: one generation of nodes at a time (their parents' rows are done), each
    row the entrywise maximum of its parents' rows scaled by the edge weights."""
    n = a.shape[0]
    order, offsets = level_order(a.astype(bool))
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    p = sp.csr_matrix(a[order][:, order])                       # generation order: parents come first
    done_ptr, done_idx, done_val = np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0)
    for g, (lo, hi) in enumerate(zip(offsets[:-1], offsets[1:])):
        block = p[lo:hi].tocoo()
        counts = np.diff(done_ptr)[block.col]                   # entries each edge brings from its parent's row
        memory.check(ENTRY_BYTES * (int(counts.sum()) + done_idx.size + hi - lo),
                     f"the influence closure (generation {g} of {len(offsets) - 1}: {int(counts.sum()):,} candidate "
                     f"entries on top of {done_idx.size:,})",
                     "The influence closure is formed explicitly; use a smaller input or model, or the sem "
                     "transform (memory grows with the edges).")
        starts = np.repeat(done_ptr[block.col] - np.cumsum(counts) + counts, counts)
        take = starts + np.arange(int(counts.sum()))
        rows = np.repeat(block.row, counts)
        cols = done_idx[take]
        vals = np.repeat(block.data, counts) * done_val[take]
        rows = np.concatenate([rows, np.arange(hi - lo)])
        cols = np.concatenate([cols, np.arange(lo, hi)])
        vals = np.concatenate([vals, np.ones(hi - lo)])
        key = rows * n + cols
        sort = np.lexsort((-vals, key))                        # per (row, col): the largest product first
        key, vals = key[sort], vals[sort]
        first = np.concatenate([[True], key[1:] != key[:-1]]) if key.size else np.zeros(0, bool)
        key, vals = key[first], vals[first]
        row_counts = np.bincount(key // n, minlength=hi - lo)
        done_ptr = np.concatenate([done_ptr, done_ptr[-1] + np.cumsum(row_counts)])
        done_idx = np.concatenate([done_idx, key % n])
        done_val = np.concatenate([done_val, vals])
    w = sp.csr_matrix((done_val, done_idx, done_ptr), shape=(n, n))
    return sp.csr_matrix(w[position][:, position])
