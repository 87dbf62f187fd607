"""Channel symmetry of a neuron graph, and the Laplacian eigenproblem it splits.

In a structural neuron graph the channels of a layer are usually wired
identically: a convolution reads every input channel with the same spatial
window, pooling and elementwise layers keep channels apart. Permuting the
channels of such a *channel group* (a set of layers that share the channel
count ``C`` and only connect channel c to channel c) is then an automorphism
of the graph. If ``N[c, :]`` lists the group's nodes of channel ``c``, and
every node outside the group is joined to each channel in the same way, the
undirected Laplacian splits exactly:

* vectors ``h ⊗ u`` with ``sum(h) = 0`` (one channel pattern ``u`` spread
  over the channels with zero sum) are invariant: ``L (h ⊗ u) = h ⊗ (L_c u)``
  with ``L_c = L[N[0], N[0]]`` (degrees included), so every eigenvalue of
  ``L_c`` is an eigenvalue of ``L`` with multiplicity ``C - 1``;
* the rest is the channel-symmetric part, where each group collapses to one
  channel with weights ``1 / sqrt(C)``: ``L_sym = Q^T L Q``.

The groups are found from the layer table and checked on the adjacency
itself; a candidate that fails the check is not used, so the split is exact
whenever it is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


@dataclass
class ChannelGroup:
    layers: tuple
    nodes: np.ndarray          # (C, m): the group's nodes of each channel, same position order

    @property
    def channels(self) -> int:
        return self.nodes.shape[0]


def _candidate_channels(core) -> list:
    """Channel count of each layer: its leading axis; a reshape of one parent keeps the parent's."""
    out = []
    for layer, shape in enumerate(core.shapes):
        c = shape[0] if len(shape) else 1
        parents = core.parents[layer]
        if core.kinds[layer] == "reshape" and len(parents) == 1:
            inherited = out[parents[0]]
            if inherited > 1 and core.sizes[layer] % inherited == 0:
                c = inherited
        out.append(c if core.sizes[layer] % max(c, 1) == 0 else 1)
    return out


def _block_is_channel_diagonal(block: sp.csr_matrix, channels: int) -> bool:
    rows, cols = block.nonzero()
    m_out, m_in = block.shape[0] // channels, block.shape[1] // channels
    return bool(np.all(rows // m_out == cols // m_in))


def channel_groups(core) -> list[ChannelGroup]:
    """The verified channel groups of a graph core (possibly none)."""
    channels = _candidate_channels(core)
    adjacency = core.adjacency
    off = core.offsets
    # layer-level graph: an edge where a layer reads its parent channel by channel
    edges = []
    for layer in range(core.n_layers):
        for parent in core.parents[layer]:
            c = channels[layer]
            if c > 1 and channels[parent] == c:
                block = adjacency[off[layer]:off[layer + 1], off[parent]:off[parent + 1]]
                if _block_is_channel_diagonal(block, c):
                    edges.append((layer, parent))
    edges = np.array(edges, dtype=np.int64).reshape(-1, 2)
    links = sp.csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(core.n_layers, core.n_layers))
    _, component = connected_components(links, directed=False)
    # groups in the order of their smallest multi-channel layer, layers ascending
    members = {}
    for layer in range(core.n_layers):
        if channels[layer] > 1:
            members.setdefault(int(component[layer]), []).append(layer)
    symmetric = sp.csr_matrix(adjacency + adjacency.T, dtype=bool)
    groups = []
    for layers in members.values():
        c = channels[layers[0]]
        nodes = np.hstack([np.arange(off[l], off[l + 1]).reshape(c, -1) for l in layers])
        if _verify(symmetric, nodes):
            groups.append(ChannelGroup(tuple(layers), nodes))
    return groups


def _verify(symmetric: sp.csr_matrix, nodes: np.ndarray) -> bool:
    """No edges between channels, and every channel's rows identical after relabelling."""
    c, m = nodes.shape
    n = symmetric.shape[0]
    chan = np.full(n, -1)
    pos = np.zeros(n, dtype=np.int64)
    chan[nodes.ravel()] = np.repeat(np.arange(c), m)
    pos[nodes.ravel()] = np.tile(np.arange(m), c)
    rows = symmetric[nodes.ravel()].tocoo()
    row_chan, row_pos = rows.row // m, rows.row % m
    inside = chan[rows.col] >= 0
    if np.any(chan[rows.col][inside] != row_chan[inside]):
        return False
    column = np.where(inside, n + pos[rows.col], rows.col)     # same-channel neighbours by position
    counts = np.bincount(row_chan, minlength=c)
    if np.any(counts != counts[0]):
        return False
    order = np.lexsort((column, row_pos, row_chan))
    keys = np.stack([row_pos[order], column[order]]).reshape(2, c, -1)
    return bool(np.all(keys == keys[:, :1, :]))


def helmert(c: int) -> np.ndarray:
    """(c, c - 1) orthonormal columns orthogonal to the all-ones vector.

    Column ``j - 1`` is ``(1, ..., 1, -j, 0, ..., 0) / sqrt(j (j + 1))`` (``j``
    ones): the transpose of scipy's (c - 1, c) Helmert matrix.
    """
    return np.ascontiguousarray(la.helmert(c).T)


@dataclass
class SplitLaplacian:
    """The Laplacian of a graph with channel groups, as independent dense blocks."""

    n: int
    symmetric_basis: sp.csr_matrix      # Q: n x n_sym, orthonormal columns
    symmetric_block: np.ndarray         # Q^T L Q
    groups: list
    channel_blocks: list                # L_c of each group

    @classmethod
    def of(cls, lap: sp.csr_matrix, groups: list, limit: int | None = None) -> "SplitLaplacian | None":
        """The split of ``lap`` by ``groups``; None where a block would have more than ``limit`` rows (checked
        before any block is made dense)."""
        n = lap.shape[0]
        grouped = np.zeros(n, dtype=bool)
        for g in groups:
            grouped[g.nodes.ravel()] = True
        free = np.flatnonzero(~grouped)
        rows, cols, vals = [free], [np.arange(free.size)], [np.ones(free.size)]
        next_col = free.size
        for g in groups:
            c, m = g.nodes.shape
            rows.append(g.nodes.ravel())
            cols.append(np.tile(np.arange(next_col, next_col + m), c))
            vals.append(np.full(c * m, 1.0 / np.sqrt(c)))
            next_col += m
        if limit is not None and max([next_col] + [g.nodes.shape[1] for g in groups]) > limit:
            return None
        q = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, next_col))
        symmetric_block = (q.T @ lap @ q).toarray()
        channel_blocks = [lap[g.nodes[0]][:, g.nodes[0]].toarray() for g in groups]
        return cls(n, q, symmetric_block, groups, channel_blocks)

    def eigenpairs(self, count: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ``count`` lowest eigenpairs of L (all with None), plus the next eigenvalue (or none).

        Eigenvalues ascending; ties ordered by block, then by index. The
        eigenvectors are assembled only for the selected pairs.
        """
        values_sym, vectors_sym = np.linalg.eigh(self.symmetric_block)
        parts = [values_sym]
        labels = [np.stack([np.zeros(values_sym.size, np.int64), np.arange(values_sym.size),
                            np.zeros(values_sym.size, np.int64)], axis=1)]
        blocks = []
        for b, (g, block) in enumerate(zip(self.groups, self.channel_blocks), start=1):
            values, vectors = np.linalg.eigh(block)
            blocks.append(vectors)
            copies = g.channels - 1
            parts.append(np.repeat(values, copies))
            labels.append(np.stack([np.full(values.size * copies, b), np.repeat(np.arange(values.size), copies),
                                    np.tile(np.arange(copies), values.size)], axis=1))
        values = np.concatenate(parts)
        labels = np.concatenate(labels)
        order = np.lexsort((labels[:, 2], labels[:, 1], labels[:, 0], values))
        count = values.size if count is None else min(count, values.size)
        chosen, after = order[:count], values[order[count:count + 1]]
        vectors = np.zeros((self.n, count))
        sym = labels[chosen, 0] == 0
        cols = np.flatnonzero(sym)
        vectors[:, cols] = self.symmetric_basis @ vectors_sym[:, labels[chosen[cols], 1]]
        for b, (g, u) in enumerate(zip(self.groups, blocks), start=1):
            cols = np.flatnonzero(labels[chosen, 0] == b)
            if cols.size == 0:
                continue
            h = helmert(g.channels)[:, labels[chosen[cols], 2]]        # (C, k_b)
            w = u[:, labels[chosen[cols], 1]]                          # (m, k_b)
            vectors[g.nodes.ravel()[:, None], cols[None, :]] = (h[:, None, :] * w[None, :, :]).reshape(-1, cols.size)
        return values[chosen], vectors, after
