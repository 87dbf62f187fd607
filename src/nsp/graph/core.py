"""The array graph core: layer table plus CSR adjacency of the neuron DAG.

Nodes are numbered layer by layer in execution order, C order inside each
layer, batch axis dropped (the order of ``Activations.to_vector()``). The
adjacency has one row per target and one column per source, so with this
order it is strictly lower triangular. The per-layer connectivity blocks are
kept, in Kronecker-factored form where the operation is separable, for
algorithms that must not form the CSR of large networks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from nsp.errors import InputError, NotInGraphError
from nsp.operations.base import FALLBACK, JACOBIAN_LIMIT, ConnectivityError, EdgeWeightError, unit_parts
from nsp.operations.blocks import Kron
from nsp.tracing.table import LayerTable


class EdgeWeightWarning(UserWarning):
    """Edge weights of a layer could not be derived; unit weights stand in (``GraphCore.weight_fallbacks``)."""


@dataclass(eq=False)
class GraphCore:
    """The neuron DAG of a network as arrays: its :class:`LayerTable`, one connectivity block per
    (layer, parent) pair, the edge weights of each block, and the CSR adjacency once assembled.

    Build it with :meth:`from_activations` (or :meth:`from_recording` for a recorded batch).
    """

    table: LayerTable
    blocks: list = field(repr=False)        # per layer: list of (parent layer, Kron | Coo)
    incl: bool = True
    csr: sp.csr_matrix | None = field(default=None, repr=False)     # the adjacency, once assembled
    weights_sha256: str | None = None                               # provenance of the network's weights
    linear: list | None = field(default=None, repr=False)   # per layer: [(LinearPart, in shape, out shape)]
    probed: tuple = ()      # layers whose blocks the Jacobian fallback's probes found (no rule, not traceable)

    @property
    def adjacency(self) -> sp.csr_matrix:
        """CSR adjacency (int8, row = target), assembled from the blocks on first use."""
        if self.csr is None:
            self.csr = self._assemble()
        return self.csr

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_activations(cls, activations, incl: bool = True, jacobian_limit: int = JACOBIAN_LIMIT) -> "GraphCore":
        """The graph of the network that recorded ``activations`` (an :class:`nsp.Activations`).

        ``incl=True``: every structural edge; ``False``: only edges with a nonzero weight for this input
        (see :class:`nsp.NNGraph`). ``jacobian_limit``: the largest Jacobian the fallback may form.
        """
        recording = getattr(activations, "recording", None)
        if recording is None:
            raise InputError("these activations carry no operations (loaded from a file or built from values): "
                             "build the graph from activations of the network, or load "
                             "the stored graph")
        core = cls.from_recording(recording, incl, jacobian_limit)
        core.weights_sha256 = activations.weights_sha256
        return core

    @classmethod
    def from_recording(cls, recording, incl: bool = True, jacobian_limit: int = JACOBIAN_LIMIT,
                       weights: bool = True) -> "GraphCore":
        """The graph from a :class:`nsp.tracing.Recording` of one sample (``weights=False``: connectivity
        only, no linear parts)."""
        from nsp.graph import collapse
        from nsp.operations import blocks_for, linear_parts        # registers every operation kind
        if recording.batch != 1:
            raise InputError(f"the graph is built from a recording of one sample; this one has {recording.batch} "
                             f"(record inputs[:1])")
        layers = recording.layers
        blocks, linear, probed = [[]], [[]], []
        for index, layer in enumerate(layers[1:], start=1):
            op = layer.op
            inputs = list(layer.received) or [layers[p].value.reshape(s) for p, s in zip(layer.op_inputs, op.in_shapes)]
            try:
                found = collapse.traced_blocks(cls, op, inputs, incl, jacobian_limit)
                if found is None:
                    found = blocks_for(op, inputs, incl, jacobian_limit)
                    if op.kind == FALLBACK:
                        probed.append(index)
            except ConnectivityError as err:
                raise ConnectivityError(f"layer {index} ({layer.name!r}): {err}") from None
            blocks.append(list(zip(layer.op_inputs, found)))
            if not weights:
                continue
            try:
                parts = linear_parts(op, inputs, found)
            except EdgeWeightError as err:
                reason = f"layer {index} ({layer.name!r}, operation {op.kind} {op.path!r}): edge weights could not " \
                         f"be derived ({err}); unit weights stand in for them"
                warnings.warn(reason, EdgeWeightWarning, stacklevel=2)
                parts = unit_parts(op, fallback=reason)
            linear.append([(part, tuple(shape), tuple(op.out_shape)) for part, shape in zip(parts, op.in_shapes)])
        return cls(table=recording.table, blocks=blocks, incl=incl, linear=linear if weights else None,
                   probed=tuple(probed))

    def weight_fallbacks(self) -> list[str]:
        """Why unit weights stand in for the linear part of some blocks (empty when all were derived)."""
        reasons = [part.params["fallback"] for parts in self.linear or [] for part, _, _ in parts
                   if "fallback" in part.params]
        return list(dict.fromkeys(reasons))

    # -- the layer table ----------------------------------------------------------

    @property
    def names(self) -> list:
        return self.table.names

    @property
    def kinds(self) -> list:
        return self.table.kinds

    @property
    def shapes(self) -> list:
        return self.table.shapes

    @property
    def parents(self) -> list:
        return self.table.parents

    @property
    def offsets(self) -> np.ndarray:
        return self.table.offsets

    @property
    def sizes(self) -> np.ndarray:
        return self.table.sizes

    def _assemble(self) -> sp.csr_matrix:
        """CSR of the whole graph, assembled one layer (block row) at a time.

        A layer with a single Kronecker block needs no sorting: the product of
        CSR-ordered factors enumerates its nonzeros in CSR order already.
        Other layers go through a per-layer COO -> CSR conversion. Peak memory
        is the final CSR plus the coordinates of one layer.
        """
        n = self.n_nodes
        bound = sum(block.nnz for blocks in self.blocks for _, block in blocks)
        index_dtype = np.int32 if max(n, bound) < 2**31 else np.int64
        slabs = []
        for layer, blocks in enumerate(self.blocks):
            size = int(self.sizes[layer])
            if len(blocks) == 1 and isinstance(blocks[0][1], Kron):
                parent, block = blocks[0]
                indptr, cols = block.csr()
                cols += self.offsets[parent]
                counts = np.diff(indptr)
            else:
                rows, cols = [], []
                for parent, block in blocks:
                    r, c = block.coo()
                    rows.append(r)
                    cols.append(c + self.offsets[parent])
                rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
                cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
                slab = sp.csr_matrix((np.ones(rows.size, np.int8), (rows, cols)), shape=(size, n))
                slab.sum_duplicates()
                cols, counts = slab.indices, np.diff(slab.indptr)
            slabs.append((counts, cols.astype(index_dtype)))
            del cols
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.concatenate([c for c, _ in slabs]), out=indptr[1:])
        indices = np.concatenate([c for _, c in slabs])
        del slabs
        return sp.csr_matrix((np.ones(indices.size, dtype=np.int8), indices, indptr.astype(index_dtype)),
                             shape=(n, n))

    # -- queries ----------------------------------------------------------------

    @property
    def n_nodes(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_edges(self) -> int:
        """Edge count; from the blocks without assembling the CSR where no layer reads one parent twice."""
        if self.csr is None and all(len({p for p, _ in b}) == len(b) for b in self.blocks):
            return int(sum(block.nnz for blocks in self.blocks for _, block in blocks))
        return int(self.adjacency.nnz)

    @property
    def n_layers(self) -> int:
        return len(self.table)

    def node_index(self, layer: int, index: Sequence[int] = ()) -> int:
        """Position of neuron ``index`` of ``layer`` in the node order."""
        shape = self.shapes[layer]
        if len(index) != len(shape):
            raise NotInGraphError(f"layer {layer} ({self.names[layer]!r}) has shape {shape}; got index {tuple(index)}")
        return int(self.offsets[layer] + (np.ravel_multi_index(tuple(index), shape) if shape else 0))

    def layer_of(self, node: int) -> int:
        """Layer that node number ``node`` belongs to."""
        return int(np.searchsorted(self.offsets, node, side="right") - 1)

    def is_factored(self, layer: int) -> bool:
        """Whether every incoming block of ``layer`` is Kronecker-factored."""
        return all(isinstance(b, Kron) for _, b in self.blocks[layer])

