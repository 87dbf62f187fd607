"""The sum-product ("sem") causal transform: what each neuron adds to the linear propagation.

With the network's own weights on the edges (``A[y, x]``: the linear part of
the operation, :mod:`nsp.weights`), the sum-product closure is
``W = (I - A)^{-1}`` (the linear structural-equation model, ``MATH.md``
section 2) and the spectrum is

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

from nsp.transforms.signals import as_batch
from nsp.graph.weights import apply


class SemTransform:
    """The sum-product causal transform with the network's weights; type name ``'sem'``."""

    type = "sem"

    def __init__(self):
        self.core = None
        self.adjacency = None

    @property
    def options(self) -> dict:
        return {}

    def fit(self, graph) -> "SemTransform":
        from nsp.graph.core import GraphCore
        self.core, self.adjacency = None, None
        if isinstance(graph, GraphCore):
            if graph.linear is None:
                raise ValueError("the sem transform needs the graph's edge weights: build the graph from "
                                 "activations of the network (or read a graph file written with them)")
            self.core = graph
            return self
        a = sp.csr_matrix(graph, dtype=np.float64)
        if a.shape[0] != a.shape[1]:
            raise ValueError(f"adjacency must be square, got shape {a.shape}")
        if sp.triu(a).nnz:
            raise ValueError("the adjacency must be strictly lower triangular (row = target, nodes in "
                             "topological order)")
        self.adjacency = a
        return self

    @property
    def n(self) -> int:
        self._fitted()
        return self.core.n_nodes if self.core is not None else self.adjacency.shape[0]

    @property
    def n_coefficients(self) -> int:
        return self.n

    def transform(self, signals) -> np.ndarray:
        """Spectra ``c = (I - A) s`` of signals of shape (samples, nodes) or (nodes,)."""
        s, single = as_batch(signals, self.n, "signals")
        if self.adjacency is not None:
            c = s - np.asarray((self.adjacency @ s.T).T)
        else:
            c = s.copy()
            for layer in range(1, self.core.n_layers):
                c[:, self._slice(layer)] -= self._incoming(layer, s)
        return c[0] if single else c

    def inverse_transform(self, spectra) -> np.ndarray:
        """Signals ``s = (I - A)^{-1} c``, by forward substitution over the layers."""
        c, single = as_batch(spectra, self.n, "spectra")
        if self.adjacency is not None:
            system = sp.csr_matrix(sp.identity(self.n) - self.adjacency)
            s = np.asarray(spsolve_triangular(system, c.T, lower=True)).T.reshape(c.shape)
        else:
            s = c.copy()
            for layer in range(1, self.core.n_layers):
                s[:, self._slice(layer)] += self._incoming(layer, s)
        return s[0] if single else s

    def _slice(self, layer: int) -> slice:
        return slice(int(self.core.offsets[layer]), int(self.core.offsets[layer + 1]))

    def _incoming(self, layer: int, s: np.ndarray) -> np.ndarray:
        """``sum_p A[layer, p] s_p`` for the batch ``s``."""
        core = self.core
        total = np.zeros((s.shape[0], int(core.sizes[layer])))
        for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
            total += apply(part, block, s[:, self._slice(parent)], in_shape, out_shape)
        return total

    def _fitted(self) -> "SemTransform":
        if self.core is None and self.adjacency is None:
            raise RuntimeError("the transform is not fitted: call fit(graph) first")
        return self
