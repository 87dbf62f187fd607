"""The causal ("standard") Fourier transform of a DAG: zeta and Möbius matrices.

With ``x <= y`` iff there is a path from ``x`` to ``y`` (or ``x == y``), the
zeta matrix is ``Z[y, x] = 1`` iff ``x <= y`` and the Möbius matrix is
``M = Z^{-1}``. A signal ``s`` has the spectrum ``c = M s`` and ``s = Z c``
(``MATH.md`` section 2).

Both matrices are built generation by generation: a generation is an
antichain (a layer of the neuron graph, or one level of a general DAG), and
its rows follow from the rows of earlier generations by sparse products::

    Z[g, :] = I + bool(A[g, :] Z)              (A: adjacency, row = target)
    M[g, :] = E_g - Z[g, <g] M[<g, :]

No dense n x n array is formed. ``M`` holds exact integers (int64, with an
overflow check); the transforms run in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from nsp.transforms.signals import as_batch

#: Möbius entries at or above this magnitude are not exact in float64.
FLOAT64_EXACT = 2**53


def _structure(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """Boolean CSR copy of a square adjacency, stored zeros dropped."""
    a = sp.csr_matrix(adjacency, dtype=bool, copy=True)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be square, got shape {a.shape}")
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
        raise ValueError(f"the graph has a cycle: {n - done} of {n} nodes are on or behind one")
    return level


def _slab_eye(start: int, stop: int, n: int, dtype) -> sp.csr_matrix:
    size = stop - start
    return sp.csr_matrix((np.ones(size, dtype=dtype), np.arange(start, stop), np.arange(size + 1)),
                         shape=(size, n))


def zeta_mobius(adjacency: sp.spmatrix, offsets=None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Zeta matrix ``Z`` (int8) and Möbius matrix ``M = Z^{-1}`` (int64) of a DAG.

    ``offsets`` splits the node order into contiguous generations (the
    layers of a neuron graph): every edge must go from an earlier generation
    to a later one. Without it, generations are computed and the nodes are
    reordered internally; the result is in the original node order.
    """
    a = _structure(adjacency)
    n = a.shape[0]
    if offsets is None:
        level = generations(a)
        order = np.argsort(level, kind="stable")
        offsets = np.concatenate([[0], np.cumsum(np.bincount(level, minlength=int(level.max(initial=-1)) + 1))])
        if np.any(order != np.arange(n)):
            inverse = np.empty(n, dtype=np.int64)
            inverse[order] = np.arange(n)
            z, m = zeta_mobius(a[order][:, order], offsets)
            return _permute(z, inverse), _permute(m, inverse)
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        raise ValueError(f"offsets must rise from 0 to the node count {n}; got {offsets.tolist()}")
    z_done = sp.csr_matrix((0, n), dtype=bool)      # rows of the generations so far
    m_done = sp.csr_matrix((0, n), dtype=np.int64)
    for g in range(offsets.size - 1):
        start, stop = int(offsets[g]), int(offsets[g + 1])
        rows = a[start:stop]
        if rows.nnz and rows.indices.max() >= start:
            raise ValueError(f"generation {g} (nodes {start}..{stop - 1}) has an edge from itself or a later "
                             f"generation; the node order must be topological with generations as antichains")
        z = sp.csr_matrix(_slab_eye(start, stop, n, bool) + rows[:, :start] @ z_done)   # bool: OR of ANDs
        below = sp.csr_matrix(z[:, :start], dtype=np.int64)
        _check_overflow(below, m_done, g)
        m = sp.csr_matrix(_slab_eye(start, stop, n, np.int64) - below @ m_done)
        m.eliminate_zeros()
        z_done = sp.vstack([z_done, z], format="csr")
        m_done = sp.vstack([m_done, m], format="csr")
    z_done = sp.csr_matrix(z_done, dtype=np.int8)
    for matrix in (z_done, m_done):
        matrix.sum_duplicates()
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
        raise ValueError("not a zeta matrix: it must be square with 0/1 entries and a unit diagonal")
    strict = sp.csr_matrix(z, dtype=bool)
    strict.setdiag(False)
    closure, mobius = zeta_mobius(strict)
    if (closure != sp.csr_matrix(z, dtype=np.int8)).nnz:
        raise ValueError("not a zeta matrix: it is not transitively closed (x <= y <= z without x <= z); "
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


#: Ways to fit the standard transform: the explicit zeta/Möbius matrices, the Kronecker factors, or
#: the factors where the graph has them and the matrices otherwise.
METHODS = ("auto", "explicit", "factored")


class StandardTransform:
    """The causal transform of a DAG with the unweighted closure (the seed's ``standard``).

    Fit it on a :class:`nsp.graph.GraphCore` (layers are the generations) or
    on any square adjacency matrix (row = target). Then ``transform`` maps
    signals to spectra and ``inverse_transform`` back, both on arrays of shape
    ``(samples, nodes)`` (or a single vector), in float64.

    ``method``: ``'explicit'`` builds the zeta and Möbius matrices (memory
    grows with the closure); ``'factored'`` builds the closure blocks from
    the Kronecker factors of the layers (:mod:`nsp.factored`; memory grows
    with the factors) and raises :class:`nsp.factored.NotFactorable` where
    the graph has none; ``'auto'`` (default) takes the factors where they
    exist and the matrices otherwise, with the reason in ``reason``.

    Attributes after ``fit``: ``factored`` (bool), ``closure`` (the
    :class:`nsp.factored.FactoredClosure` or None), ``reason`` (why the
    matrices were used, or None), ``zeta`` (CSR int8, lower triangular),
    ``mobius`` (CSR int64, exact) and ``max_abs_mobius`` (conditioning: the
    largest Möbius entry; it grows like (width - 1)^depth on dense layered
    graphs). On the factored path the last three are expanded from the
    factors on first access, which costs what the explicit fit costs.
    """

    type = "standard"

    def __init__(self, method: str = "auto"):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} for the standard transform; accepted: {', '.join(METHODS)}")
        self.method = method
        self.closure = None
        self.reason = None
        self._zeta = None
        self._mobius = None

    @property
    def options(self) -> dict:
        return {"method": self.method}

    @property
    def factored(self) -> bool:
        return self.closure is not None

    def fit(self, graph) -> "StandardTransform":
        from nsp.transforms.factored import FactoredClosure, NotFactorable
        from nsp.graph.core import GraphCore
        self.closure, self.reason, self._zeta, self._mobius = None, None, None, None
        if not isinstance(graph, GraphCore):
            if self.method == "factored":
                raise ValueError("method='factored' needs a graph core (layers with Kronecker-factored "
                                 "blocks); got a bare adjacency matrix")
            self.reason = "fitted on an adjacency matrix, which has no layers"
            self._set(*zeta_mobius(graph))
            return self
        if self.method == "explicit":
            self.reason = "method='explicit' was asked for"
        else:
            try:
                self.closure = FactoredClosure.of(graph)
                return self
            except NotFactorable as err:
                if self.method == "factored":
                    raise NotFactorable(f"{err}; method='auto' or 'explicit' use the explicit matrices") from None
                self.reason = str(err)
        self._set(*zeta_mobius(graph.adjacency, graph.offsets))
        return self

    @classmethod
    def from_matrices(cls, zeta: sp.spmatrix, mobius: sp.spmatrix, method: str = "explicit") -> "StandardTransform":
        """Rebuild a fitted transform from stored matrices."""
        out = cls(method)
        out._set(zeta, mobius)
        return out

    @classmethod
    def from_closure(cls, closure, method: str = "factored") -> "StandardTransform":
        """Rebuild a fitted transform from a stored factored closure."""
        out = cls(method)
        out.closure = closure
        return out

    def _set(self, zeta, mobius) -> None:
        self._zeta = sp.csr_matrix(zeta, dtype=np.int8)
        self._mobius = sp.csr_matrix(mobius, dtype=np.int64)
        self._max_abs_mobius = int(np.abs(self._mobius.data).max(initial=0))
        if self._max_abs_mobius >= FLOAT64_EXACT:
            warnings.warn(f"Möbius entries reach {self._max_abs_mobius:.3g} >= 2^53: float64 transforms of "
                          f"this graph are not exact", RuntimeWarning, stacklevel=3)
        self._mobius_f = self._mobius.astype(np.float64)
        self._zeta_f = self._zeta.astype(np.float64)

    def _matrices(self) -> None:
        if self._zeta is None:
            strict = sp.csr_matrix(self.closure.zeta(), dtype=bool)
            strict.setdiag(False)
            self._set(*zeta_mobius(strict, self.closure.offsets))

    @property
    def zeta(self) -> sp.csr_matrix | None:
        if self._zeta is None and self.closure is None:
            return None
        self._matrices()
        return self._zeta

    @property
    def mobius(self) -> sp.csr_matrix | None:
        if self._zeta is None and self.closure is None:
            return None
        self._matrices()
        return self._mobius

    @property
    def max_abs_mobius(self) -> int:
        self._fitted()._matrices()
        return self._max_abs_mobius

    @property
    def n(self) -> int:
        self._fitted()
        return self.closure.n_nodes if self.closure is not None else self._zeta.shape[0]

    @property
    def n_coefficients(self) -> int:
        return self.n

    def transform(self, signals, device=None) -> np.ndarray:
        """Spectra ``c = M s`` of signals of shape (samples, nodes) or (nodes,).

        ``device``: a torch device to compute on (e.g. ``'cuda'``); None = NumPy/SciPy on the CPU.
        """
        self._fitted()
        if self.closure is not None:
            from nsp.transforms.factored import run
            return run(self.closure, signals, True, device, "signals")
        return _apply(self._mobius_f, signals, "signals", device)

    def inverse_transform(self, spectra, device=None) -> np.ndarray:
        """Signals ``s = Z c`` from spectra of shape (samples, nodes) or (nodes,)."""
        self._fitted()
        if self.closure is not None:
            from nsp.transforms.factored import run
            return run(self.closure, spectra, False, device, "spectra")
        return _apply(self._zeta_f, spectra, "spectra", device)

    def _fitted(self) -> "StandardTransform":
        if self._zeta is None and self.closure is None:
            raise RuntimeError("the transform is not fitted: call fit(graph) first")
        return self


def _apply(matrix: sp.csr_matrix, values, what: str, device=None) -> np.ndarray:
    """``matrix`` applied to every row of ``values`` (samples x nodes), float64, optionally on a torch device."""
    x, single = as_batch(values, matrix.shape[1], what)
    if device is None:
        out = np.ascontiguousarray((matrix @ x.T).T)
    else:
        import torch
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)          # "sparse CSR support is in beta"
            m = torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                        torch.from_numpy(matrix.indices.astype(np.int64)),
                                        torch.from_numpy(matrix.data), size=matrix.shape, device=device)
            out = (m @ torch.from_numpy(x.T.copy()).to(device)).T.cpu().numpy()
    return out[0] if single else out
