"""Edge weights of a graph core: the linear part of every block (``docs/graph.md``, "Edge weights").

Each operation kind derives its linear part (:mod:`nsp.operations`); here
they are put together: :func:`incoming` applies a layer's parts to a batch
of signals (the sem transform), :func:`outgoing` their transposes (backward
passes), :func:`weighted_adjacency` lists them as one float64 CSR matrix.
"""

from __future__ import annotations

from nsp.errors import InputError
from nsp.operations.blocks import Kron

import numpy as np
import scipy.sparse as sp



def incoming(core, layer: int, s: np.ndarray, device=None, absolute: bool = False,
             recorded: bool = False) -> np.ndarray:
    """``sum over parents p of A[layer, p] s_p`` for a batch ``s`` of shape (B, nodes); with ``absolute``,
    the parts' floating-point arrays (kernels, matrices, scales) are taken by magnitude, which gives
    ``|A| s`` wherever a part's weights are its arrays' entries (convolutions, linear maps, pooling,
    element-wise scales; an upper bound where a weight sums several entries)."""
    from nsp.operations import apply_part             # the operation kinds own the linear parts (torch)
    total = np.zeros((s.shape[0], int(core.sizes[layer])))
    offsets = core.offsets
    for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
        if absolute:
            part = type(part)(part.kind, {k: np.abs(v) if np.asarray(v).dtype.kind in "fc" else v
                                          for k, v in part.arrays.items()}, part.params)
        total += apply_part(part, block, s[:, offsets[parent]:offsets[parent + 1]], in_shape, out_shape, device,
                            recorded)
    return total


def outgoing(core, layer: int, y: np.ndarray, device=None, at: np.ndarray | None = None) -> list:
    """The transposed layer: ``[(p, A[layer, p]^T y)]`` for each parent layer ``p`` of ``layer`` and a batch
    ``y`` of shape (B, size of the layer): what the layer's weights pass back to each parent (a backward
    pass through ``W = (I - A)^-1`` runs it from the last layer down). ``at``: signals (B, nodes) at which
    max pooling picks its winners (default: the recorded ones)."""
    from nsp.operations import apply_part_transposed
    offsets = core.offsets
    return [(parent, apply_part_transposed(part, block, y, in_shape, out_shape, device,
                                           None if at is None else at[:, offsets[parent]:offsets[parent + 1]]))
            for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer])]


def fan_in(core, layer: int) -> int:
    """The most parent nodes any node of ``layer`` is connected to (summed over its parent layers): the
    number of terms of the largest sum that computes the layer."""
    total = 0
    for _, block in core.blocks[layer]:
        if isinstance(block, Kron):
            total += int(np.prod([np.diff(f.csr().indptr).max(initial=0) for f in block.factors]))
        else:
            rows = block.coo()[0]
            total += int(np.bincount(rows).max()) if rows.size else 0
    return total


def weighted_adjacency(core) -> sp.csr_matrix:
    """The weighted adjacency ``A`` (float64 CSR, row = target): the linear part of every edge."""
    from nsp.operations import part_edges
    if core.linear is None:
        raise InputError("this graph has no edge weights (it was read from a file written without them)")
    n = core.n_nodes
    rows, cols, vals = [], [], []
    for layer in range(1, core.n_layers):
        for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
            r, c, v = part_edges(part, block, in_shape, out_shape)
            rows.append(r + core.offsets[layer])
            cols.append(c + core.offsets[parent])
            vals.append(v)
    if not rows:
        return sp.csr_matrix((n, n))
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out.sum_duplicates()
    return out
