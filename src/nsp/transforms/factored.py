"""The causal closure of a neuron graph from Kronecker factors, and transforms with it.

Each layer has ``K`` closure axes and every connectivity block is one Kronecker term on them
(:mod:`nsp.graph.axes` finds the axes, :mod:`nsp.graph.terms` rewrites the blocks onto them). The closure
block between layers ``l < L`` is then a union of Kronecker terms, built layer by layer::

    Z[L, l] = OR over parents p of L of  bool(A[L, p] Z[p, l])     (Z[p, p] = I)

and the standard transform runs on the factors with mode products, never
forming the closure (``docs/math.md``)::

    forward:  c_L = s_L - sum over l < L of Z[L, l] c_l     (layer after layer)
    inverse:  s_L = c_L + sum over l < L of Z[L, l] c_l

A union is applied as its inclusion–exclusion sum of terms. All-ones factors
become sums over an axis (and a broadcast at the end), identities are
skipped, other factors are small matrix products. The array backend is NumPy
or torch (on any device). :class:`NotFactorable` is importable from here too.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nsp.errors import NotFactorable
from nsp.graph.terms import checked_axes, factored_blocks
from nsp.operations.blocks import Kron
from nsp.operations.kronecker import KroneckerError, signed_terms, term_dense, term_matmul, term_nnz, union_add
from nsp.operations.mode_products import Backend, Moduli, apply_term, fan_in

__all__ = ["TERM_LIMIT", "FactoredClosure", "closure_rows", "closure_unions", "run", "NotFactorable"]


#: Most signed terms one closure block may need after inclusion–exclusion.
TERM_LIMIT = 64


class FactoredClosure:
    """Closure blocks ``Z[L, l]`` of a graph core as signed sums of Kronecker terms.

    Attributes: ``table`` (the graph's :class:`~nsp.tracing.table.LayerTable`;
    ``offsets`` and ``names`` come from it), ``axes`` (per layer), ``orders``
    (per layer: the layer's node order is C order over its axes taken in the order ``orders[L]``;
    not the identity after a permute), ``signed[L]`` (``[(l, [(coefficient, term)])]`` for every strict
    ancestor layer ``l`` of ``L``: the inclusion–exclusion form of the union
    of terms, on the layers' axes, which the transforms apply). Build it with :meth:`of`, which
    raises :class:`NotFactorable` naming the first layer that breaks the
    structure.
    """

    def __init__(self, table, axes: list, signed: list, orders: list | None = None):
        self.table = table
        self.axes = [tuple(int(n) for n in a) for a in axes]
        rank = len(self.axes[0]) if self.axes else 0
        self.orders = [tuple(int(k) for k in o) for o in orders] if orders is not None else \
            [tuple(range(rank))] * len(self.axes)
        self.signed = signed

    def positions(self, layer: int) -> np.ndarray:
        """Node position (within the layer) of each entry of the layer on its axes, in C order."""
        size = int(self.offsets[layer + 1] - self.offsets[layer])
        order = self.orders[layer]
        shape = tuple(self.axes[layer][k] for k in order)     # the tensor's own (padded) axes
        return np.arange(size).reshape(shape).transpose(np.argsort(order)).reshape(-1)

    @property
    def offsets(self) -> np.ndarray:
        return self.table.offsets

    @property
    def names(self) -> list:
        return self.table.names

    @classmethod
    def of(cls, core, term_limit: int = TERM_LIMIT) -> "FactoredClosure":
        axes, orders, unions = closure_unions(core)
        signed = [[] for _ in range(core.n_layers)]
        for L in range(core.n_layers):
            for l, union in sorted(unions[L].items()):
                if not union:
                    continue
                try:
                    signed[L].append((l, signed_terms(union, term_limit)))
                except KroneckerError as err:
                    raise NotFactorable(f"closure block from layer {l} ({core.names[l]!r}) to layer {L} "
                                        f"({core.names[L]!r}): {err}") from None
        return cls(core.table, axes, signed, orders)

    @property
    def n_layers(self) -> int:
        return len(self.axes)

    @property
    def n_nodes(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_terms(self) -> int:
        return sum(len(terms) for pairs in self.signed for _, terms in pairs)

    @property
    def nnz(self) -> int:
        """Nonzeros of the zeta matrix (the closure with its diagonal)."""
        strict = sum(coef * term_nnz(term) for pairs in self.signed for _, terms in pairs for coef, term in terms)
        return int(self.n_nodes + strict)

    def row_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """log2 bounds, per layer, of ``|c_L| / max|s|`` (forward) and of ``|s_L| / max|c|`` (inverse).

        With ``w[L, l]`` a bound on the entries in a row of ``Z[L, l]`` (the positive terms' row counts,
        at most the size of ``l``): ``|c_L| <= max|s| (1 + sum_l w[L, l] R_l)`` and
        ``|s_L| <= max|c| (1 + sum_l w[L, l])``.
        """
        forward, inverse = [], []
        for L in range(self.n_layers):
            logs_f, logs_i = [0.0], [0.0]
            for l, terms in self.signed[L]:
                size = float(self.offsets[l + 1] - self.offsets[l])
                widest = min(size, float(sum(coef * fan_in(term) for coef, term in terms
                                             if coef > 0)))
                logs_f.append(np.log2(widest) + forward[l])
                logs_i.append(np.log2(widest))
            forward.append(float(np.logaddexp2.reduce(logs_f)))
            inverse.append(float(np.logaddexp2.reduce(logs_i)))
        return np.array(forward), np.array(inverse)

    def block(self, L: int, l: int) -> np.ndarray:
        """Dense block ``Z[L, l]`` (node order) summed from the signed terms (0/1 unless inclusion–exclusion
        is wrong)."""
        size = (int(self.offsets[L + 1] - self.offsets[L]), int(self.offsets[l + 1] - self.offsets[l]))
        out = np.eye(size[0], dtype=np.int64) if L == l else np.zeros(size, dtype=np.int64)
        rows, cols = np.ix_(self.positions(L), self.positions(l))
        for ancestor, terms in self.signed[L]:
            if ancestor == l:
                for coef, term in terms:
                    out[rows, cols] += coef * term_dense(term)
        return out

    def zeta(self) -> sp.csr_matrix:
        """The zeta matrix as an int8 CSR, expanded from the terms (memory grows with its nonzeros)."""
        n = self.n_nodes
        slabs = []
        for L in range(self.n_layers):
            start, stop = int(self.offsets[L]), int(self.offsets[L + 1])
            rows, cols, vals = [np.arange(stop - start)], [np.arange(start, stop)], [np.ones(stop - start, np.int64)]
            here = self.positions(L)
            for l, terms in self.signed[L]:
                there = self.positions(l)
                for coef, term in terms:
                    r, c = Kron(term).coo()
                    rows.append(here[r])
                    cols.append(there[c] + self.offsets[l])
                    vals.append(np.full(r.size, coef, dtype=np.int64))
            slab = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                 shape=(stop - start, n))
            slab.sum_duplicates()
            slabs.append(slab)
        out = sp.csr_matrix(sp.vstack(slabs, format="csr"), dtype=np.int8)
        out.eliminate_zeros()
        return out


def closure_rows(closure: FactoredClosure, targets: np.ndarray) -> np.ndarray:
    """Rows ``Z[targets, :]`` of the zeta matrix (targets, nodes), float64, from the factors: the row of a
    Kronecker term at the multi-index ``(i_1, ..., i_K)`` is the Kronecker product of its factors' rows
    ``i_k``, and a closure block's row is the signed sum of its terms' rows."""
    out = np.zeros((len(targets), closure.n_nodes))
    layers = np.searchsorted(closure.offsets, targets, side="right") - 1
    for row, (node, L) in enumerate(zip(targets, layers)):
        out[row, node] = 1.0
        if not closure.signed[L]:
            continue
        entry = int(np.flatnonzero(closure.positions(L) == node - closure.offsets[L])[0])
        index = np.unravel_index(entry, closure.axes[L])
        for l, terms in closure.signed[L]:
            total = 0
            for coef, term in terms:
                part = np.ones(1)
                for factor, i in zip(term, index):
                    part = np.kron(part, factor.csr()[int(i)].toarray().ravel())
                total = total + coef * part
            out[row, closure.offsets[l] + closure.positions(l)] = total
    return out


def closure_unions(core) -> tuple[list, list, list]:
    """Axes and axis orders per layer and, per layer ``L``, ``{ancestor l: union of Kronecker terms}`` whose
    union is the closure block ``Z[L, l]``; raises :class:`NotFactorable`."""
    blocks = factored_blocks(core)
    axes, orders = checked_axes(core, blocks)
    unions = [dict() for _ in range(core.n_layers)]          # per layer: ancestor -> union of terms
    for L in range(1, core.n_layers):
        for parent, term in blocks[L]:
            unions[L][parent] = union_add(unions[L].get(parent, []), term)
            for l, union in unions[parent].items():
                for t in union:
                    unions[L][l] = union_add(unions[L].get(l, []), term_matmul(term, t))
    return axes, orders, unions


def _broadcast_shape(term: tuple, batch: int) -> tuple:
    return (batch,) + tuple(1 if f.kind == "ones" else f.shape[0] for f in term)


def run(closure: FactoredClosure, x: np.ndarray, forward: bool, device=None, moduli=None,
        overwrite: bool = False) -> np.ndarray:
    """Forward (``c = M s``) or inverse (``s = Z c``) standard transform of a (samples, nodes) float64 batch,
    from the factors. With ``moduli`` (one prime below 2^26 per sample), ``x`` holds integer residues
    and the result is the transform's residues (magnitude below the prime), computed exactly.
    ``overwrite``: the result may take the place of ``x`` (saves a copy of the batch)."""
    backend = Backend(device)
    ring = None if moduli is None else Moduli(backend, np.asarray(moduli), len(closure.axes[0]))
    batch = x.shape[0]
    given = backend.asarray(x)
    out = given if overwrite else backend.empty(x.shape)
    source = out if forward else given

    def view(array, layer):             # the layer on its axes: a view (its own axes transposed after a permute)
        order = closure.orders[layer]
        part = array[:, closure.offsets[layer]:closure.offsets[layer + 1]]
        if order == tuple(range(len(order))):
            return part.reshape((batch,) + closure.axes[layer])
        part = part.reshape((batch,) + tuple(closure.axes[layer][k] for k in order))
        return backend.permute(part, (0,) + tuple(1 + int(k) for k in np.argsort(order)))

    layers = [view(source, i) for i in range(closure.n_layers)]
    reduced = [dict() for _ in range(closure.n_layers)]
    sign = -1 if forward else 1
    # in place, the inverse runs from the last layer down: a layer's input is read before it is replaced
    order = range(closure.n_layers) if forward or out is not given else range(closure.n_layers - 1, -1, -1)
    for L in order:
        target = view(out, L)
        if out is not given:
            target[...] = view(given, L)
        partial: dict = {}                  # broadcast shape -> sum of the terms of that shape
        load = {None: 1}                    # residues' worth of magnitude in each accumulator
        for l, terms in closure.signed[L]:
            for coef, term in terms:
                y = apply_term(backend, layers[l], term, reduced[l], ring)
                weight = sign * coef
                shape = _broadcast_shape(term, batch)
                key = None if shape == tuple(target.shape) else shape
                if key is None:
                    acc = target                # full size: straight into the result, no temporary
                elif shape in partial:
                    acc = partial[shape]
                else:
                    partial[shape] = y * weight
                    load[key] = abs(coef) * fan_in(term)
                    continue
                if ring is not None:        # reduce before a sum could leave the exact range
                    load[key] += abs(coef) * fan_in(term)
                    if load[key] > ring.limit:
                        ring.reduce_(acc)
                        load[key] = 1 + abs(coef) * fan_in(term)
                if weight == 1:
                    acc += y
                elif weight == -1:
                    acc -= y
                else:
                    acc += y * weight
        for shape, y in partial.items():
            if ring is not None and load[None] + load[shape] > ring.limit:
                ring.reduce_(target)
                ring.reduce_(y)
                load[None] = 1
            target += y
            if ring is not None:
                load[None] += load[shape]
        if ring is not None:
            ring.reduce_(target)
    return backend.tonumpy(out)
