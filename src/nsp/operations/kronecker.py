"""Boolean algebra of Kronecker-factored 0/1 matrices (applied to numbers in :mod:`.mode_products`).

A *term* is a tuple of :class:`Factor` objects, one per axis, standing for
the 0/1 matrix ``kron(f_1, ..., f_K)``. A *union* is a list of terms and
stands for their element-wise OR. These are the pieces of the factored
closure (``docs/math.md``):

- boolean product of two terms = term of the boolean products of the factors;
- element-wise AND of two terms = term of the factor-wise ANDs;
- OR of terms is kept as a union (pruned of terms contained in others, and
  terms differing in one factor only merged), and turned into a signed sum
  of terms by inclusion–exclusion when it has to be applied to numbers.

Factors know whether they are all-ones or an identity, so that products,
tests and mode products on them cost nothing; other factors are small dense
boolean arrays.
"""

from __future__ import annotations

import itertools
from math import prod

import numpy as np
import scipy.sparse as sp

from nsp.errors import KroneckerError

#: Largest dense factor (entries) that a split or merge may form.
DENSE_LIMIT = 1 << 26


class Factor:
    """A boolean matrix that is all ones, an identity, a small dense array, or a large sparse one.

    Connectivity blocks (:class:`nsp.operations.blocks.Kron`) and closure terms
    share this one representation. Large sparse factors (more than
    :data:`DENSE_LIMIT` entries, e.g. the window of a very long axis) can be
    assembled into a CSR but take no part in the closure algebra, which
    raises :class:`KroneckerError` on them.
    """

    __slots__ = ("kind", "shape", "array", "_key", "_row_max")

    def __init__(self, kind: str, shape: tuple, array=None):
        self.kind = kind
        self.shape = (int(shape[0]), int(shape[1]))
        self.array = array          # dense: bool ndarray; sparse: bool CSR; else None
        self._key = None
        self._row_max = None

    @classmethod
    def of(cls, matrix) -> "Factor":
        """Classify a boolean (sparse or dense) matrix."""
        m, n = matrix.shape
        if sp.issparse(matrix):
            matrix = sp.csr_matrix(matrix, dtype=bool)
            matrix.eliminate_zeros()
            if matrix.nnz == m * n:
                return cls("ones", (m, n))
            if m == n and matrix.nnz == n and matrix.diagonal().all():
                return cls("eye", (n, n))
            if m * n > DENSE_LIMIT:
                matrix.sort_indices()
                return cls("sparse", (m, n), matrix)
            matrix = matrix.toarray()
        array = np.asarray(matrix, dtype=bool)
        if array.all():
            return cls("ones", (m, n))
        if m == n and np.count_nonzero(array) == n and array.diagonal().all():
            return cls("eye", (n, n))
        return cls("dense", (m, n), np.ascontiguousarray(array))

    @classmethod
    def ones(cls, m: int, n: int) -> "Factor":
        return cls("ones", (m, n))

    @classmethod
    def eye(cls, n: int) -> "Factor":
        return cls("eye", (n, n))

    def dense(self) -> np.ndarray:
        if self.kind == "ones":
            return np.ones(self.shape, dtype=bool)
        if self.kind == "eye":
            return np.eye(self.shape[0], dtype=bool)
        if self.kind == "sparse":
            raise KroneckerError(f"a {self.shape[0]} x {self.shape[1]} factor is too large to handle densely")
        return self.array

    def csr(self) -> sp.csr_matrix:
        """The factor as a canonical boolean CSR matrix (sorted indices, no duplicates)."""
        if self.kind == "ones":
            m, n = self.shape
            return sp.csr_matrix((np.ones(m * n, dtype=bool), np.tile(np.arange(n), m), np.arange(0, m * n + 1, n)),
                                 shape=self.shape)
        if self.kind == "eye":
            return sp.identity(self.shape[0], dtype=bool, format="csr")
        if self.kind == "sparse":
            return self.array
        return sp.csr_matrix(self.array)

    @property
    def T(self) -> "Factor":
        """The transposed factor."""
        m, n = self.shape
        if self.kind == "ones":
            return Factor.ones(n, m)
        if self.kind == "eye":
            return self
        if self.kind == "sparse":
            matrix = self.array.T.tocsr()
            matrix.sort_indices()
            return Factor("sparse", (n, m), matrix)
        return Factor("dense", (n, m), np.ascontiguousarray(self.array.T))

    @property
    def nnz(self) -> int:
        if self.kind == "ones":
            return self.shape[0] * self.shape[1]
        if self.kind == "eye":
            return self.shape[0]
        if self.kind == "sparse":
            return int(self.array.nnz)
        return int(np.count_nonzero(self.array))

    @property
    def row_max(self) -> int:
        """Most entries in a row (computed once)."""
        if self._row_max is None:
            self._row_max = (self.shape[1] if self.kind == "ones" else 1 if self.kind == "eye" else
                             int(np.asarray(self.array.sum(axis=1)).max(initial=0)))
        return self._row_max

    @property
    def empty(self) -> bool:
        return self.kind in ("dense", "sparse") and self.nnz == 0

    @property
    def key(self) -> tuple:
        """Hashable identity (kind, shape, content)."""
        if self._key is None:
            content = np.packbits(self.dense()).tobytes() if self.kind == "dense" else b""
            self._key = (self.kind, self.shape, content)
        return self._key

    def __eq__(self, other) -> bool:
        return isinstance(other, Factor) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Factor({self.kind}, {self.shape[0]}x{self.shape[1]})"


def matmul(a: Factor, b: Factor) -> Factor:
    """Boolean product ``bool(a @ b)``."""
    if a.shape[1] != b.shape[0]:
        raise KroneckerError(f"factor shapes {a.shape} and {b.shape} do not chain")
    if a.kind == "eye":
        return b
    if b.kind == "eye":
        return a
    if a.kind == "ones" and b.kind == "ones":
        return Factor.ones(a.shape[0], b.shape[1])
    if a.kind == "ones":
        return Factor.of(np.broadcast_to(b.dense().any(axis=0), (a.shape[0], b.shape[1])))
    if b.kind == "ones":
        return Factor.of(np.broadcast_to(a.dense().any(axis=1)[:, None], (a.shape[0], b.shape[1])))
    counts = a.dense().astype(np.float32) @ b.dense().astype(np.float32)       # exact below 2^24
    return Factor.of(counts > 0)


def logical_and(a: Factor, b: Factor) -> Factor:
    if a.kind == "ones":
        return b
    if b.kind == "ones":
        return a
    if a.kind == "eye" and b.kind == "eye":
        return a
    return Factor.of(a.dense() & b.dense())


def logical_or(a: Factor, b: Factor) -> Factor:
    if a.kind == "ones" or b.kind == "eye" and a.kind == "eye":
        return a
    if b.kind == "ones":
        return b
    return Factor.of(a.dense() | b.dense())


def contains(big: Factor, small: Factor) -> bool:
    """Whether every nonzero of ``small`` is a nonzero of ``big``."""
    if big.kind == "ones" or big == small:
        return True
    if small.kind == "ones":
        return False
    if small.kind == "eye":
        return bool(big.dense().diagonal().all())
    return not (small.dense() & ~big.dense()).any()


def kron(a: Factor, b: Factor) -> Factor:
    shape = (a.shape[0] * b.shape[0], a.shape[1] * b.shape[1])
    if a.kind == b.kind and a.kind in ("ones", "eye"):
        return Factor(a.kind, shape)
    if shape[0] * shape[1] > DENSE_LIMIT:
        raise KroneckerError(f"merging factors {a.shape} and {b.shape} would form a dense {shape[0]} x {shape[1]} array")
    return Factor.of(np.kron(a.dense(), b.dense()))


def split(factor: Factor, pairs: list) -> list:
    """Write ``factor`` as the Kronecker product of factors of the given (rows, cols) shapes."""
    if len(pairs) == 1:
        return [factor]
    if factor.kind == "ones":
        return [Factor.ones(r, c) for r, c in pairs]
    if factor.kind == "eye" and all(r == c for r, c in pairs):
        return [Factor("eye", (r, r)) for r, _ in pairs]
    (r1, c1), rest = pairs[0], pairs[1:]
    r2, c2 = prod(r for r, _ in rest), prod(c for _, c in rest)
    if factor.shape[0] * factor.shape[1] > DENSE_LIMIT:
        raise KroneckerError(f"a {factor.shape[0]} x {factor.shape[1]} factor is too large to split densely")
    # kron(x, y)[i1*r2 + i2, j1*c2 + j2] = x[i1, j1] y[i2, j2]: after the rearrangement every
    # nonzero row must be the same pattern y.
    blocks = factor.dense().reshape(r1, r2, c1, c2).transpose(0, 2, 1, 3).reshape(r1 * c1, r2 * c2)
    nonzero = blocks.any(axis=1)
    if not nonzero.any():
        raise KroneckerError("an empty factor has no Kronecker split")
    pattern = blocks[np.argmax(nonzero)]
    if not (blocks[nonzero] == pattern).all():
        raise KroneckerError(f"a {factor.shape[0]} x {factor.shape[1]} factor is not the Kronecker product "
                             f"of factors of shapes {[tuple(p) for p in pairs]}")
    first = Factor.of(nonzero.reshape(r1, c1))
    return [first] + split(Factor.of(pattern.reshape(r2, c2)), rest)


def regroup(factors: list, rows: tuple, cols: tuple) -> tuple | None:
    """Re-express ``kron(*factors)`` with one factor per (rows[i], cols[i]) axis pair.

    Adjacent factors are merged and merged factors split again where the
    two axis structures need it (all-ones and identity factors split any
    way; other factors when they are Kronecker products). Returns None for
    an empty matrix; raises :class:`KroneckerError` when no such form exists.
    """
    if prod(f.shape[0] for f in factors) != prod(rows) or prod(f.shape[1] for f in factors) != prod(cols):
        raise KroneckerError(f"a {prod(f.shape[0] for f in factors)} x {prod(f.shape[1] for f in factors)} "
                             f"block does not fit axes {tuple(rows)} x {tuple(cols)}")
    if any(f.empty or f.shape == (1, 1) and f.kind == "dense" for f in factors):
        return None
    todo = [f for f in factors if f.shape != (1, 1)]
    out, i, j = [], 0, 0
    while j < len(rows):
        group, pairs = [], []
        fr = fc = tr = tc = 1
        while True:
            if pairs and fr == tr and fc == tc and (group or (tr, tc) == (1, 1)):
                # close unless the next target axis is trivial and no factor is left for it
                break
            if i < len(todo) and (fr * fc <= tr * tc or j >= len(rows)):
                group.append(todo[i])
                fr, fc = fr * todo[i].shape[0], fc * todo[i].shape[1]
                i += 1
            elif j < len(rows):
                pairs.append((rows[j], cols[j]))
                tr, tc = tr * rows[j], tc * cols[j]
                j += 1
            else:
                raise KroneckerError(f"factors of shapes {[f.shape for f in factors]} do not align with axes "
                                     f"{tuple(rows)} x {tuple(cols)}")
        merged = Factor.ones(1, 1)
        for f in group:
            merged = kron(merged, f)
        out.extend(split(merged, pairs))
    if i < len(todo):
        raise KroneckerError(f"factors of shapes {[f.shape for f in factors]} do not align with axes "
                             f"{tuple(rows)} x {tuple(cols)}")
    return tuple(out)


def alignments(shape: tuple, target: tuple) -> list:
    """Pairs of shapes of equal rank: ``shape`` and ``target``, the shorter with size-1 axes inserted (every
    place, fewest mismatched sizes first; none where they differ by more than 3 axes). How an operation
    that drops or adds axes (``x[0]``, ``unbind``, a reduction) lines its input and output up."""
    shape, target = tuple(shape), tuple(target)
    if len(shape) == len(target):
        return [(shape, target)]
    short, long = sorted((shape, target), key=len)
    if len(long) - len(short) > 3:
        return []
    out = []
    for places in itertools.combinations(range(len(long)), len(long) - len(short)):
        rest = iter(short)
        padded = tuple(1 if k in places else next(rest) for k in range(len(long)))
        pair = (padded, long) if short is shape else (long, padded)
        out.append((sum(a != b for a, b in zip(*pair)), pair))
    return [pair for _, pair in sorted(out)]


# --- terms and unions ---------------------------------------------------------------------

def term_matmul(a: tuple, b: tuple) -> tuple | None:
    out = tuple(matmul(x, y) for x, y in zip(a, b))
    return None if any(f.empty for f in out) else out


def term_and(a: tuple, b: tuple) -> tuple | None:
    out = tuple(logical_and(x, y) for x, y in zip(a, b))
    return None if any(f.empty for f in out) else out


def term_contains(big: tuple, small: tuple) -> bool:
    return all(contains(x, y) for x, y in zip(big, small))


def term_nnz(term: tuple) -> int:
    return prod(f.nnz for f in term)


def union_add(union: list, term: tuple | None) -> list:
    """The union with one more term: dominated terms dropped, one-factor differences merged."""
    if term is None:
        return union
    while True:
        if any(term_contains(t, term) for t in union):
            return union
        union = [t for t in union if not term_contains(term, t)]
        for index, other in enumerate(union):
            differ = [a for a in range(len(term)) if term[a] != other[a]]
            if len(differ) == 1:
                a = differ[0]
                term = term[:a] + (logical_or(term[a], other[a]),) + term[a + 1:]
                union = union[:index] + union[index + 1:]
                break
        else:
            return union + [term]


def signed_terms(union: list, limit: int) -> list:
    """Inclusion–exclusion: ``[(coefficient, term)]`` whose weighted sum is the 0/1 matrix of the union."""
    signed: dict = {}
    for term in union:
        new = {term: 1}
        for other, coef in signed.items():
            both = term_and(other, term)
            if both is not None:
                new[both] = new.get(both, 0) - coef
        for key, coef in new.items():
            signed[key] = signed.get(key, 0) + coef
        signed = {k: c for k, c in signed.items() if c}
        if len(signed) > limit:
            raise KroneckerError(f"a union of {len(union)} Kronecker terms needs more than {limit} signed terms")
    return [(coef, term) for term, coef in signed.items()]


def term_dense(term: tuple) -> np.ndarray:
    out = np.ones((1, 1), dtype=bool)
    for f in term:
        out = np.kron(out, f.dense())
    return out
