"""Connectivity blocks: which neurons of one parent layer feed which neurons of a layer.

A block is a boolean matrix with one row per output neuron and one column
per neuron of the parent, both in C order of the full tensor shapes (batch
axis included). Separable operations give a :class:`Kron` block, the
Kronecker product of one :class:`~nsp.operations.kronecker.Factor` per
tensor axis; the rest give an explicit :class:`Coo` block.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from nsp.operations.kronecker import Factor, KroneckerError, logical_or


@dataclass(frozen=True)
class Kron:
    """Block ``kron(factors[0], factors[1], ...)``; factors are :class:`Factor` (matrices are converted)."""

    factors: tuple

    def __post_init__(self):
        object.__setattr__(self, "factors", tuple(f if isinstance(f, Factor) else Factor.of(f) for f in self.factors))

    @property
    def shape(self) -> tuple[int, int]:
        return (prod(f.shape[0] for f in self.factors), prod(f.shape[1] for f in self.factors))

    @property
    def nnz(self) -> int:
        return prod(f.nnz for f in self.factors)

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of the block in canonical CSR order (rows, then sorted columns).

        Built factor by factor: row ``(r, r')`` of ``P kron F`` holds the
        columns ``c * n + c'`` for ``c`` in row ``r`` of ``P`` and ``c'`` in
        row ``r'`` of ``F``, in lexicographic order.
        """
        indptr = np.array([0, 1], dtype=np.int64)
        indices = np.zeros(1, dtype=np.int64)
        for factor in self.factors:
            matrix = factor.csr()
            f_ptr = matrix.indptr.astype(np.int64)
            f_idx = matrix.indices.astype(np.int64)
            n_f = matrix.shape[0]
            count_p, count_f = np.diff(indptr), np.diff(f_ptr)
            counts = np.outer(count_p, count_f).ravel()
            new_ptr = np.zeros(counts.size + 1, dtype=np.int64)
            np.cumsum(counts, out=new_ptr[1:])
            row = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
            within = np.arange(new_ptr[-1], dtype=np.int64) - new_ptr[row]
            r_p, r_f = np.divmod(row, n_f)
            del row
            a, b = np.divmod(within, count_f[r_f])
            del within
            indices = indices[indptr[r_p] + a] * matrix.shape[1] + f_idx[f_ptr[r_f] + b]
            indptr = new_ptr
        return indptr, indices

    @property
    def T(self) -> "Kron":
        """The transposed block (inputs as rows)."""
        return Kron(tuple(f.T for f in self.factors))

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        indptr, indices = self.csr()
        return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr)), indices


@dataclass(frozen=True)
class Coo:
    """Explicit block given by the coordinates of its nonzeros."""

    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rows, self.cols

    @classmethod
    def union(cls, rows: list, cols: list, shape: tuple) -> "Coo":
        """The block of the union of several coordinate lists (duplicates merged, sorted)."""
        if not rows:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), shape)
        key = np.concatenate(rows) * shape[1] + np.concatenate(cols)
        key.sort()                      # sort and drop repeats: NumPy 2.4's np.unique hashes, 70x slower here
        if key.size:
            key = key[np.concatenate([[True], key[1:] != key[:-1]])]
        return cls(key // shape[1], key % shape[1], shape)


@dataclass(frozen=True)
class Permutation(Coo):
    """An axis permutation, ``out = in.permute(order)`` (full shapes, batch axis included): explicit for
    everything that reads coordinates, and an identity on permuted axes for the factored closure."""

    order: tuple = ()
    in_shape: tuple = ()                # the permuted tensor's full shape


def union(blocks: list, shape: tuple):
    """One block for the union of several blocks of the same ``shape``: the block itself when there is one,
    a :class:`Kron` where :func:`kron_union` finds one, else explicit."""
    merged = kron_union(blocks)
    if merged is not None:
        return merged
    coo = [block.coo() for block in blocks]
    return Coo.union([r for r, _ in coo], [c for _, c in coo], shape)


def kron_union(blocks: list) -> "Kron | None":
    """The union of Kronecker blocks that differ in one factor at most, as one Kronecker block
    (``kron(A, C) | kron(B, C) = kron(A | B, C)``); None where the blocks are not such."""
    if len(blocks) == 1 and isinstance(blocks[0], Kron):
        return blocks[0]
    if not all(isinstance(b, Kron) and len(b.factors) == len(blocks[0].factors) for b in blocks):
        return None
    differ = [k for k in range(len(blocks[0].factors)) if any(b.factors[k] != blocks[0].factors[k] for b in blocks[1:])]
    if len(differ) > 1:
        return None
    factors = list(blocks[0].factors)
    try:
        for k in differ:
            for b in blocks[1:]:
                factors[k] = logical_or(factors[k], b.factors[k])
    except KroneckerError:
        return None                     # factors too large to combine densely
    return Kron(tuple(factors))


def eyes(shape) -> list:
    """Identity factors for the given axes (axes an operation leaves alone)."""
    return [Factor.eye(int(n)) for n in shape]
