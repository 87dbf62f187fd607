"""Zeta and Möbius matrices of a DAG, generation by generation.

With ``x <= y`` iff there is a path from ``x`` to ``y`` (or ``x == y``), the
zeta matrix is ``Z[y, x] = 1`` iff ``x <= y`` and the Möbius matrix is
``M = Z^{-1}`` (``docs/math.md``). Both are built generation by generation:
a generation is an antichain (a layer of the neuron graph, or one level of
a general DAG), and its rows follow from the rows of earlier generations by
sparse products::

    Z[g, :] = I + bool(A[g, :] Z)              (A: adjacency, row = target)
    M[g, :] = E_g - Z[g, <g] M[<g, :]

No dense n x n array is formed. ``M`` holds exact integers (int64, with an
overflow check).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nsp.errors import InputError
from nsp.operations.mode_products import reduce_

#: Möbius entries at or above this magnitude are not exact in float64.
FLOAT64_EXACT = 2**53


def _structure(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """Boolean CSR copy of a square adjacency, stored zeros dropped."""
    a = sp.csr_matrix(adjacency, dtype=bool, copy=True)
    if a.shape[0] != a.shape[1]:
        raise InputError(f"adjacency must be square, got shape {a.shape}")
    a.eliminate_zeros()
    a.sum_duplicates()
    return a


def generations(adjacency: sp.spmatrix) -> np.ndarray:
    """Level of every node of a DAG: 0 for sources, else 1 + the largest parent level.

    ``adjacency`` is square with row = target, column = source. Raises
    ``ValueError`` if the graph has a cycle.
    """
    a = _structure(adjacency)
    n = a.shape[0]
    indegree = np.diff(a.indptr).astype(np.int64)
    out = sp.csr_matrix(a.T)                 # row = source
    level = np.zeros(n, dtype=np.int64)
    frontier = np.flatnonzero(indegree == 0)
    done = 0
    g = 0
    while frontier.size:
        level[frontier] = g
        done += frontier.size
        children = out[frontier].indices
        counts = np.bincount(children, minlength=n)
        indegree -= counts
        frontier = np.flatnonzero((indegree == 0) & (counts > 0))
        g += 1
    if done != n:
        raise InputError(f"the graph has a cycle: {n - done} of {n} nodes are on or behind one")
    return level


def _slab_eye(start: int, stop: int, n: int, dtype) -> sp.csr_matrix:
    size = stop - start
    return sp.csr_matrix((np.ones(size, dtype=dtype), np.arange(start, stop), np.arange(size + 1)),
                         shape=(size, n))


def level_order(adjacency: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """``(order, offsets)``: the nodes sorted by generation (stable), and where each generation starts."""
    level = generations(adjacency)
    order = np.argsort(level, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(level, minlength=int(level.max(initial=-1)) + 1))])
    return order, offsets.astype(np.int64)


def zeta_mobius(adjacency: sp.spmatrix, offsets=None, mobius: bool = True,
                check=None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Zeta matrix ``Z`` (int8) and Möbius matrix ``M = Z^{-1}`` (int64; None with ``mobius=False``) of a DAG.

    ``offsets`` splits the node order into contiguous generations (the
    layers of a neuron graph): every edge must go from an earlier generation
    to a later one. Without it, generations are computed and the nodes are
    reordered internally; the result is in the original node order. Only
    ``M`` can overflow int64 (``OverflowError``, raised before it happens).
    ``check(g, entries)``, where given, is called after each generation ``g`` with a lower bound on the
    entries the finished ``Z`` will have (those so far, plus the diagonal and the edges of the rows to
    come); it may raise to stop a closure that will not fit.
    """
    a = _structure(adjacency)
    n = a.shape[0]
    if offsets is None:
        order, offsets = level_order(a)
        if np.any(order != np.arange(n)):
            inverse = np.empty(n, dtype=np.int64)
            inverse[order] = np.arange(n)
            z, m = zeta_mobius(a[order][:, order], offsets, mobius, check)
            return _permute(z, inverse), None if m is None else _permute(m, inverse)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        raise InputError(f"offsets must rise from 0 to the node count {n}; got {offsets.tolist()}")
    z_done = sp.csr_matrix((0, n), dtype=bool)      # rows of the generations so far
    m_done = sp.csr_matrix((0, n), dtype=np.int64)
    for g in range(offsets.size - 1):
        start, stop = int(offsets[g]), int(offsets[g + 1])
        rows = a[start:stop]
        if rows.nnz and rows.indices.max() >= start:
            raise InputError(f"generation {g} (nodes {start}..{stop - 1}) has an edge from itself or a later "
                             f"generation; the node order must be topological with generations as antichains")
        z = sp.csr_matrix(_slab_eye(start, stop, n, bool) + rows[:, :start] @ z_done)   # bool: OR of ANDs
        z_done = sp.vstack([z_done, z], format="csr")
        if check is not None:
            check(g, z_done.nnz + (n - stop) + int(a.indptr[n] - a.indptr[stop]))
        if mobius:
            below = sp.csr_matrix(z[:, :start], dtype=np.int64)
            _check_overflow(below, m_done, g)
            m = sp.csr_matrix(_slab_eye(start, stop, n, np.int64) - below @ m_done)
            m.eliminate_zeros()
            m_done = sp.vstack([m_done, m], format="csr")
    z_done = sp.csr_matrix(z_done, dtype=np.int8)
    z_done.sum_duplicates()
    if not mobius:
        return z_done, None
    m_done.sum_duplicates()
    return z_done, m_done


def mobius_of_zeta(zeta: sp.spmatrix) -> sp.csr_matrix:
    """The Möbius matrix of a given zeta matrix, after checking that it is one.

    A zeta matrix has 0/1 entries, a unit diagonal, and is the reflexive
    transitive closure of its own off-diagonal part (in some topological
    order; it need not be triangular in the given node order).
    """
    z = sp.csr_matrix(zeta, copy=True)
    z.eliminate_zeros()
    if z.shape[0] != z.shape[1] or np.any(z.data != 1) or np.any(z.diagonal() != 1):
        raise InputError("not a zeta matrix: it must be square with 0/1 entries and a unit diagonal")
    strict = sp.csr_matrix(z, dtype=bool)
    strict.setdiag(False)
    closure, mobius = zeta_mobius(strict)
    if (closure != sp.csr_matrix(z, dtype=np.int8)).nnz:
        raise InputError("not a zeta matrix: it is not transitively closed (x <= y <= z without x <= z); "
                         "pass the closure, e.g. graph.inv_F")
    return mobius


def _permute(matrix: sp.csr_matrix, inverse: np.ndarray) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix[inverse][:, inverse])
    out.sort_indices()
    return out


def _check_overflow(below: sp.csr_matrix, m_done: sp.csr_matrix, g: int) -> None:
    """Raise before an int64 Möbius product could overflow: bound |Z| times the row maxima of |M|."""
    if not below.nnz:
        return
    row_max = np.zeros(m_done.shape[0])
    counts = np.diff(m_done.indptr)
    nonempty = counts > 0
    row_max[nonempty] = np.maximum.reduceat(np.abs(m_done.data).astype(np.float64), m_done.indptr[:-1][nonempty])
    bound = float(np.max(abs(below).astype(np.float64) @ row_max, initial=0.0))
    if bound >= 2.0**62:
        raise OverflowError(f"Möbius entries of generation {g} may exceed int64 (bound {bound:.3g}); "
                            f"the causal transform of this graph is too ill-conditioned to compute exactly")


def off_diagonal(matrix: sp.spmatrix, dtype=np.float64) -> sp.csr_matrix:
    """``matrix`` without its diagonal (CSR of ``dtype``), built in one pass over its entries."""
    coo = sp.coo_matrix(matrix)
    keep = coo.row != coo.col
    return sp.csr_matrix((coo.data[keep].astype(dtype), (coo.row[keep], coo.col[keep])), shape=coo.shape)


def generation_blocks(strict: sp.csr_matrix, offsets: np.ndarray) -> list:
    """``strict[g, <g]`` for every generation ``g`` (the rows forward substitution reads)."""
    return [strict[start:stop, :start] for start, stop in zip(offsets[:-1], offsets[1:])]


def substitute(strict: sp.csr_matrix, blocks: list, offsets: np.ndarray, x: np.ndarray, forward: bool,
               modulus: int) -> np.ndarray:
    """Residues of ``c = Z^{-1} s`` (forward) or ``s = Z c`` (inverse) modulo a prime below 2^26.

    ``strict``: the zeta matrix without its diagonal (float64), in a node order whose generations are the
    slices of ``offsets``; ``blocks``: its :func:`generation_blocks`; ``x``: (samples, nodes) residues below
    ``modulus`` in magnitude (so is the result). Forward substitution generation by generation:
    ``c_g = s_g - Z[g, <g] c_<g``.
    Every sparse row sum is an exact integer below 2^53 (rows of fewer than 2^27 entries).
    """
    inverse = 1.0 / modulus
    if not forward:
        return reduce_(x + np.asarray(strict @ x.T).T, modulus, inverse)
    out = np.array(x.T, dtype=np.float64)                 # (nodes, samples): rows are read by the products
    for block, start, stop in zip(blocks, offsets[:-1], offsets[1:]):
        if start < stop and block.nnz:
            out[start:stop] = reduce_(out[start:stop] - block @ out[:start], modulus, inverse)
    return np.ascontiguousarray(out.T)


def row_bounds(zeta: sp.csr_matrix, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log2 bounds, per generation, of ``|c_g| / max|s|`` (forward) and of ``|s_g| / max|c|`` (inverse).

    Forward: ``|c_g| <= |s_g| + (entries of the widest row of Z[g, <g]) * max over h < g of |c_h|``.
    Inverse: ``|s_g| <= (entries of the widest row of Z[g, :]) * max|c|``.
    """
    counts = np.diff(sp.csr_matrix(zeta).indptr).astype(np.float64)      # row entries, diagonal included
    forward, inverse, worst = [], [], 0.0
    for start, stop in zip(offsets[:-1], offsets[1:]):
        widest = float(counts[start:stop].max(initial=1.0))
        bound = np.logaddexp2(0.0, np.log2(max(widest - 1.0, 0.0)) + worst) if widest > 1 else 0.0
        forward.append(bound)
        inverse.append(np.log2(widest))
        worst = max(worst, bound)
    return np.array(forward), np.array(inverse)
