"""The sum-product ("sem") causal transform: what each neuron adds to the linear propagation.

With the network's own weights on the edges (``A[y, x]``: the linear part of
the operation, :mod:`nsp.graph.weights`), the sum-product closure is
``W = (I - A)^{-1}`` (the linear structural-equation model, ``docs/math.md``) and the spectrum is

    c = (I - A) s,      i.e.  c_L = s_L - sum over parents p of A[L, p] s_p,

computed layer by layer from the recorded activations (for a convolution,
its kernel applied to the input activations, without bias). ``c`` is the
input on the input layer, the bias on a convolution or linear output,
``f(z) - z`` on a nonlinearity, the shift of a batch norm, and 0 on max
pooling, average pooling, additions, reshapes and concatenations. The
inverse ``s = (I - A)^{-1} c`` is forward substitution over the layers:
``s_L = c_L + sum_p A[L, p] s_p``. No closure is ever formed.

Fit on a :class:`nsp.graph.GraphCore` (built from activations, so that it
has edge weights) or on a square weighted adjacency (row = target, nodes in
topological order).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

from nsp.errors import InputError
from nsp.graph.core import GraphCore
from nsp.devices import torch_device
from nsp.graph.weights import fan_in, incoming, outgoing
from nsp.transforms.base import Transform, as_batch

#: float32's unit roundoff, 2^-24: the largest relative error of one rounding to float32
FLOAT32_ROUNDOFF = 2.0 ** -24


def weighted_graph(graph, transform: str) -> tuple:
    """``(core, None)`` for a graph core with edge weights, ``(None, adjacency)`` for a square, strictly lower
    triangular weighted adjacency (float64 CSR, row = target); InputError naming ``transform`` otherwise."""
    if isinstance(graph, GraphCore):
        if graph.linear is None:
            raise InputError(f"the {transform} transform needs the graph's edge weights: build the graph from "
                             f"activations of the network (or read a graph file written with them)")
        return graph, None
    a = sp.csr_matrix(graph, dtype=np.float64)
    if a.shape[0] != a.shape[1]:
        raise InputError(f"adjacency must be square, got shape {a.shape}")
    if sp.triu(a).nnz:
        raise InputError("the adjacency must be strictly lower triangular (row = target, nodes in "
                         "topological order)")
    return None, a


class SemTransform(Transform):
    """The sum-product causal transform with the network's weights; type name ``'sem'``.

    Fit on a :class:`nsp.GraphCore` with edge weights (the layer-by-layer form above) or on a square
    weighted adjacency (``c = s - A s`` and a triangular solve). ``device``: the convolutions, linear
    maps, max pools and Kronecker mode products of the layer-by-layer form run there (each layer's sum
    is gathered on the CPU).
    """

    type = "sem"
    description = "sem spectrum: what each neuron adds to the weighted sum of its inputs (c = s - A s)"
    options_schema = {"type": "object", "additionalProperties": False, "properties": {},
                      "description": "the sum-product transform with the network's weights: c = (I - A) s"}

    def __init__(self):
        self.core = None
        self.adjacency = None

    @property
    def fitted(self) -> bool:
        return self.core is not None or self.adjacency is not None

    def fit(self, graph) -> "SemTransform":
        self.core, self.adjacency = weighted_graph(graph, self.type)
        return self

    @property
    def n(self) -> int:
        self._checked()
        return self.core.n_nodes if self.core is not None else self.adjacency.shape[0]

    def _transform(self, s, device):
        if self.adjacency is not None:
            return s - np.asarray((self.adjacency @ s.T).T)
        c = s.copy()
        for layer in range(1, self.core.n_layers):
            c[:, self._slice(layer)] -= incoming(self.core, layer, s, device)
        return c

    def _inverse(self, c, device, recorded: bool = False):
        if self.adjacency is not None:
            system = sp.csr_matrix(sp.identity(self.n) - self.adjacency)
            return np.asarray(spsolve_triangular(system, c.T, lower=True)).T.reshape(c.shape)
        s = c.copy()
        for layer in range(1, self.core.n_layers):
            s[:, self._slice(layer)] += incoming(self.core, layer, s, device, recorded=recorded)
        return s

    def _synthesize(self, c, device):
        return self._inverse(c, device, recorded=True)

    def synthesis_rows(self, targets, device=None, at=None) -> np.ndarray:
        """Rows ``W[targets, :]`` of ``W = (I - A)^-1``: ``w = e_y + A^T w`` solved from the last layer down,
        each layer's transposed linear parts applied once for all targets (:func:`nsp.graph.weights.outgoing`).
        ``at``: signals (samples, nodes); max pooling then passes back to each sample's own winners, as the
        transform takes them, and the rows are per sample, (samples, targets, nodes)."""
        index = self._targets(targets)
        if self.adjacency is not None:
            system = sp.csr_matrix((sp.identity(self.n) - self.adjacency).T)
            unit = np.zeros((self.n, index.size))
            unit[index, np.arange(index.size)] = 1.0
            rows = np.asarray(spsolve_triangular(system, unit, lower=False)).T.reshape(index.size, self.n)
            return rows if at is None else np.broadcast_to(rows, (len(at),) + rows.shape)
        device = torch_device(device)
        batch = 1 if at is None else len(at)
        w = np.zeros((batch, index.size, self.n))
        w[:, np.arange(index.size), index] = 1.0
        w = w.reshape(batch * index.size, self.n)
        points = None if at is None else np.repeat(as_batch(at, self.n, "at")[0], index.size, axis=0)
        for layer in range(self.core.n_layers - 1, 0, -1):
            y = w[:, self._slice(layer)]
            if not y.any():                 # no target at or after this layer reads it
                continue
            for parent, back in outgoing(self.core, layer, y, device, points):
                w[:, self._slice(parent)] += back
        return w if at is None else w.reshape(batch, index.size, self.n)

    def noise_floor(self, s, device=None, spectrum=None) -> np.ndarray:
        """The rounding bound of each layer's coefficients computed from float32 activations ``s``
        (samples, nodes): (samples, layers), 0 for the input layer.

        The network computed each activation in float32 as a sum of ``m`` terms (its parents' weighted
        values and its bias), then possibly a rounding of the result; the coefficient ``c = s - A s`` of a
        node that adds nothing (a convolution without bias, a pooling) is then that rounding error, not 0.
        With ``u = 2^-24`` (float32's unit roundoff) and ``gamma_k = k u / (1 - k u)``, it is at most
        ``u |s_y| + gamma_(m+1) ((|A| |s|)_y + |c_y|)``, where ``m`` is the layer's fan-in
        (:func:`nsp.graph.weights.fan_in`). The floor of a layer is the largest bound of its nodes; a
        coefficient at or below it cannot be told from 0. Needs the layer-by-layer form (a graph core).
        ``spectrum``: ``transform(s)`` where already computed (else it is computed again, layer by layer).
        """
        self._checked()
        if self.core is None:
            raise InputError("the noise floor is per layer: fit the sem transform on a graph core, not on a bare "
                             "adjacency matrix")
        s, single = as_batch(s, self.n, "signals")
        device = torch_device(device)
        spectrum = self._transform(s, device) if spectrum is None else as_batch(spectrum, self.n, "spectrum")[0]
        magnitude = np.abs(s)
        out = np.zeros((s.shape[0], self.core.n_layers))
        for layer in range(1, self.core.n_layers):
            k = fan_in(self.core, layer) + 1
            gamma = k * FLOAT32_ROUNDOFF / (1 - k * FLOAT32_ROUNDOFF)
            part = self._slice(layer)
            spread = incoming(self.core, layer, magnitude, device, absolute=True)
            added = np.abs(spectrum[:, part])
            bound = FLOAT32_ROUNDOFF * magnitude[:, part] + gamma * (spread + added)
            out[:, layer] = bound.max(axis=1) if bound.shape[1] else 0.0
        return out[0] if single else out

    def layer_offsets(self):
        return None if self.core is None else (list(self.core.names), [int(o) for o in self.core.offsets])

    def _slice(self, layer: int) -> slice:
        return slice(int(self.core.offsets[layer]), int(self.core.offsets[layer + 1]))
