"""The Laplacian graph Fourier transform (the seed's ``laplacian``).

Edge directions are dropped: ``L = D - W`` with ``W`` the symmetric 0/1
adjacency and ``D`` the degrees. ``L = V diag(lambda) V^T`` with ascending
eigenvalues and orthonormal ``V``; the spectrum of ``s`` is ``c = V^T s`` and
``s = V c`` (``docs/math.md``). Coefficient ``k`` belongs to the
eigenvalue ``lambda_k``, not to a node.

The full basis needs a dense eigensolver (memory n^2, time n^3). A partial
basis holds the ``k`` lowest eigenvectors (LAPACK's subset solver, or block
LOBPCG on the sparse ``L`` for graphs too big for dense memory); its inverse
transform is the projection onto their span, and
:attr:`LaplacianTransform.truncation` says where the basis was cut.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse.csgraph import laplacian as csgraph_laplacian
from scipy.sparse.linalg import LinearOperator, lobpcg, splu

from nsp.errors import InputError
from nsp.graph.core import GraphCore
from nsp.transforms.base import Transform
from nsp.graph.symmetry import SplitLaplacian, channel_groups

#: eigenvalues closer than this (relative to the largest) count as equal
EIGEN_TOL = 1e-9
#: largest graph (nodes) for which method='auto' uses the dense subset eigensolver (n^2 doubles: 3.2 GB)
DENSE_LIMIT = 20000


def laplacian(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """``L = D - W`` of the undirected, unweighted graph of ``adjacency`` (float64 CSR)."""
    a = sp.csr_matrix(adjacency, dtype=bool)
    w = sp.csr_matrix(a + a.T, dtype=np.float64)
    w.setdiag(0)
    w.eliminate_zeros()
    out = sp.csr_matrix(csgraph_laplacian(w), dtype=np.float64)
    out.eliminate_zeros()           # isolated nodes: no stored zero on the diagonal
    out.sort_indices()
    return out


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Make each eigenvector's entry of largest magnitude positive (deterministic output)."""
    pivot = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[pivot, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return vectors * signs


def laplacian_memory(nodes: int, edges: int, k: int | None, method: str = "auto", extra: int = 8,
                     solver: bool = True) -> int:
    """Bytes a Laplacian fit holds at least: the adjacency (int8) and the symmetric Laplacian (float64), then
    (``solver``) for a dense solve the n x n matrix twice (the array and the solver's copy), for the sparse
    one the LU of the shifted Laplacian (at least as many entries as the Laplacian) and LOBPCG's six blocks of
    vectors. A graph whose Laplacian splits by channel symmetry solves smaller blocks instead."""
    index = 4 if max(nodes, 2 * edges + nodes) < 2**31 else 8
    sparse = edges * (1 + index) + (2 * edges + nodes) * (8 + index)
    if not solver:
        return sparse
    if k is None:
        return sparse + 3 * 8 * nodes * nodes
    want = min(k + extra, nodes)
    if method == "dense" or method == "auto" and (nodes <= DENSE_LIMIT or 2 * want >= nodes):
        return sparse + 2 * 8 * nodes * nodes
    block = min(k + max(extra, k // 4), nodes)
    return 2 * sparse + 6 * 8 * nodes * block


def full_eigenbasis(lap: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """All eigenpairs of a Laplacian, ascending (dense solver)."""
    values, vectors = np.linalg.eigh(sp.csr_matrix(lap).toarray())
    return values, _fix_signs(vectors)


def partial_eigenbasis(lap: sp.spmatrix, k: int, extra: int = 8, method: str = "auto",
                       seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` lowest eigenpairs of a Laplacian, and the next ``extra`` eigenvalues.

    ``method='dense'``: LAPACK's subset solver (exact, handles any
    multiplicity; memory n^2). ``'sparse'``: block LOBPCG on the sparse ``L``
    preconditioned by a sparse LU of ``L + 0.01 I``; the block holds
    ``k + max(extra, k / 4)`` vectors, so eigenvalues repeated more often
    than that around the cut may be missed, and unconverged residuals raise a
    warning. ``'auto'``: dense up to :data:`DENSE_LIMIT` nodes. A single-vector
    Lanczos (ARPACK) is not used: it silently misses copies of repeated
    eigenvalues, which neuron graphs have in abundance.
    """
    n = lap.shape[0]
    want = min(k + extra, n)
    if method == "auto":
        method = "dense" if n <= DENSE_LIMIT or 2 * want >= n else "sparse"
    if method == "dense":
        values, vectors = la.eigh(sp.csr_matrix(lap).toarray(), subset_by_index=[0, want - 1],
                                  driver="evr", check_finite=False)
    elif method == "sparse":
        values, vectors = _lobpcg(sp.csr_matrix(lap), min(k + max(extra, k // 4), n), seed)
    else:
        raise InputError(f"unknown eigensolver method {method!r}; accepted: auto, dense, sparse")
    order = np.argsort(values, kind="stable")
    values, vectors = values[order][:want], vectors[:, order][:, :want]
    return values[:k], _fix_signs(vectors[:, :k]), values[k:]


def _lobpcg(lap: sp.csr_matrix, block: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = lap.shape[0]
    lu = splu(sp.csc_matrix(lap + 1e-2 * sp.identity(n, format="csc")), permc_spec="MMD_AT_PLUS_A",
              options={"SymmetricMode": True})
    pre = LinearOperator((n, n), matvec=lu.solve, matmat=lu.solve, dtype=np.float64)
    start = np.random.default_rng(seed).standard_normal((n, block))
    tol = 1e-9 * max(1.0, float(abs(lap).sum(axis=1).max()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        values, vectors = lobpcg(lap, start, M=pre, largest=False, tol=tol, maxiter=200)
    residual = np.linalg.norm(lap @ vectors - vectors * values, axis=0)
    if residual.max() > 1e3 * tol:
        warnings.warn(f"sparse Laplacian eigensolver: residuals up to {residual.max():.2e} after 200 "
                      f"iterations; use method='dense' where memory allows", RuntimeWarning, stacklevel=4)
    return values, vectors


class LaplacianTransform(Transform):
    """Laplacian GFT of a graph; ``k=None`` for the full basis, else the ``k`` lowest.

    Fit on a :class:`nsp.graph.GraphCore` or a square adjacency matrix. After
    ``fit``: ``eigenvalues`` (ascending), ``eigenvectors`` (nodes x k,
    orthonormal columns, each with its largest entry positive) and
    ``truncation`` (None for the full basis; else ``k``, ``n``, the largest
    kept eigenvalue, the next eigenvalue and whether the cut splits an
    eigenspace).
    """

    type = "laplacian"
    label = "Laplacian"
    coefficients_at_nodes = False
    options_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"k": {"type": ["integer", "null"], "minimum": 1, "default": None,
                             "description": "number of lowest eigenvectors; null = full basis"}}}
    description = ("Laplacian coefficients drawn in the layer layout (a convention: "
                   "coefficient k belongs to eigenvalue λ_k, not to a node)")

    def __init__(self, k: int | None = None, method: str = "auto", symmetry: bool = True):
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
            raise InputError(f"k must be a positive integer or None (full basis), got {k!r}")
        if method not in ("auto", "dense", "sparse"):
            raise InputError(f"unknown eigensolver method {method!r}; accepted: auto, dense, sparse")
        self.k = None if k is None else int(k)
        self.method = method
        self.symmetry = bool(symmetry)
        self.channel_groups = []
        self.eigenvalues = None
        self.eigenvectors = None
        self.truncation = None

    def fit(self, graph) -> "LaplacianTransform":
        self._check_memory(graph, solver=False)
        adjacency = graph.adjacency if isinstance(graph, GraphCore) else graph
        lap = laplacian(adjacency)
        n = lap.shape[0]
        if n == 0:
            raise InputError("the graph has no nodes")
        k = n if self.k is None else min(self.k, n)
        split = self._split(graph, lap)
        if split is None:
            self._check_memory(graph, solver=True)
        if split is not None:
            values, vectors, after = split.eigenpairs(k)
            vectors = _fix_signs(vectors)
        elif self.k is None:
            values, vectors = full_eigenbasis(lap)
        else:
            values, vectors, after = partial_eigenbasis(lap, k, method=self.method)
        self.eigenvalues, self.eigenvectors = values, vectors
        if self.k is None:
            self.truncation = None
            return self
        scale = max(1.0, abs(values[-1]))
        nxt = float(after[0]) if after.size else None
        self.truncation = {
            "k": int(k), "n": int(n), "largest_kept": float(values[-1]), "next": nxt,
            "splits_eigenspace": bool(nxt is not None and abs(nxt - values[-1]) <= EIGEN_TOL * scale),
        }
        return self

    def _check_memory(self, graph, solver: bool) -> None:
        """Refuse a fit that cannot fit in this process's memory (:mod:`nsp.memory`): before the Laplacian is
        formed, its sparse matrices; before a solver without the channel split starts, the solver too."""
        from nsp import memory
        if isinstance(graph, GraphCore):
            n, edges = graph.n_nodes, sum(block.nnz for blocks in graph.blocks for _, block in blocks)
        else:
            n, edges = graph.shape[0], sp.csr_matrix(graph).nnz
        k = n if self.k is None else min(self.k, n)
        what = (f"the Laplacian eigenbasis ({'all' if self.k is None else k} of {n:,} eigenvectors) of a graph "
                f"with {edges:,} edges")
        memory.check(laplacian_memory(n, edges, self.k, self.method, solver=solver), what,
                     "Alternatives: a smaller k (transforms.laplacian.k), a smaller input or model, the standard "
                     "or sem transform, or more memory (NSP_MEMORY_MB or a larger mem_mb).")

    def _split(self, graph, lap):
        """The Laplacian split by channel symmetry, where the graph has verified channel groups
        and the split blocks fit the dense solver; else None."""
        self.channel_groups = []
        if not self.symmetry or self.method == "sparse" or not isinstance(graph, GraphCore):
            return None
        groups = channel_groups(graph)
        if not groups:
            return None
        split = SplitLaplacian.of(lap, groups, limit=DENSE_LIMIT)
        if split is None:
            return None
        self.channel_groups = [(tuple(graph.names[l] for l in g.layers), g.channels) for g in groups]
        return split

    @classmethod
    def from_basis(cls, eigenvalues, eigenvectors, truncation=None) -> "LaplacianTransform":
        """Rebuild a fitted transform from a stored eigenbasis."""
        out = cls(None if truncation is None else int(truncation["k"]))
        out.eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
        out.eigenvectors = np.asarray(eigenvectors, dtype=np.float64)
        out.truncation = truncation
        return out

    @property
    def fitted(self) -> bool:
        return self.eigenvectors is not None

    @property
    def n(self) -> int:
        return self._checked().eigenvectors.shape[0]

    @property
    def n_coefficients(self) -> int:
        return self._checked().eigenvectors.shape[1]

    def summary(self) -> str:
        cut = "full basis" if self.truncation is None else f"{self.k} lowest of {self.truncation['n']:,}"
        return f"{self.n_coefficients:,} coefficients ({cut})"

    def _transform(self, x, device):
        """``c = V^T s`` per sample."""
        return _product(x, self.eigenvectors, device)

    def synthesis_rows(self, targets, device=None, at=None) -> np.ndarray:
        """Rows of the eigenvector matrix ``V`` (``s = V c``), shape (targets, k); the same for every signal."""
        rows = np.array(self._checked().eigenvectors[self._targets(targets)], dtype=np.float64)
        return rows if at is None else np.broadcast_to(rows, (len(at),) + rows.shape)

    def _inverse(self, c, device):
        """``s = V c``; for a partial basis, the projection onto its span."""
        return _product(c, self.eigenvectors.T, device)


def _product(x: np.ndarray, matrix: np.ndarray, device) -> np.ndarray:
    if device is None:
        return x @ matrix
    import torch
    return (torch.from_numpy(x).to(device) @ torch.from_numpy(np.ascontiguousarray(matrix)).to(device)).cpu().numpy()
