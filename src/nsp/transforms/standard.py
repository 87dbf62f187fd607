"""The causal ("standard") Fourier transform of a DAG: ``c = M s`` and ``s = Z c``.

``Z`` is the zeta matrix of the DAG (its reflexive transitive closure) and
``M = Z^{-1}`` the Möbius matrix (:mod:`nsp.transforms.zeta`); on layered
graphs with Kronecker-factored blocks the closure is kept in factored form
instead (:mod:`nsp.transforms.factored`). The HDF5 encodings of both forms
are at the end of this module.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from nsp.errors import InputError
from nsp.graph.core import GraphCore
from nsp.transforms.base import Transform
from nsp.transforms.factored import FactoredClosure, NotFactorable, closure_rows, run
from nsp.transforms import exact
from nsp.transforms.zeta import (FLOAT64_EXACT, generation_blocks, level_order, off_diagonal, row_bounds, substitute,
                                zeta_mobius)

#: Ways to fit the standard transform: the explicit zeta/Möbius matrices, the Kronecker factors, or
#: the factors where the graph has them and the matrices otherwise.
METHODS = ("auto", "explicit", "factored")


#: Arithmetic of the transform: exact integers (correctly rounded results) or plain float64.
PRECISIONS = ("exact", "float")
#: residues held at once by the exact path (bytes); larger batches are cut into chunks of samples
EXACT_MEMORY = 1 << 30


class StandardTransform(Transform):
    """The causal transform of a DAG with the unweighted closure (the seed's ``standard``).

    Fit it on a :class:`nsp.GraphCore` (layers are the generations) or on
    any square adjacency matrix (row = target). ``transform`` gives
    ``c = M s`` and ``inverse_transform`` ``s = Z c``.

    ``method``: ``'explicit'`` builds the zeta matrix (memory grows with the
    closure); ``'factored'`` builds the closure blocks from the Kronecker
    factors of the layers (:mod:`nsp.transforms.factored`; memory grows with
    the factors) and raises :class:`~nsp.transforms.factored.NotFactorable`
    where the graph has none; ``'auto'`` (default) takes the factors where
    they exist and the matrix otherwise, with the reason in ``reason``.

    ``precision``: ``'exact'`` (default) computes every coefficient from the
    exact integers behind the float input, modulo enough primes for a proven
    bound, and rounds it once to the nearest float64
    (:mod:`nsp.transforms.exact`): the result is the correctly rounded exact
    value, the same bits on every backend. ``'float'`` runs the same
    recurrences in float64: faster, but on deep graphs a coefficient is a
    difference of ancestors' sums many orders of magnitude larger, and small
    coefficients lose every digit.

    Attributes after ``fit``: ``factored`` (bool), ``closure`` (the
    :class:`~nsp.transforms.factored.FactoredClosure` or None), ``reason``
    (why the matrix was used, or None), ``zeta`` (CSR int8, lower
    triangular), ``mobius`` (CSR int64, exact; OverflowError where entries
    exceed int64) and ``max_abs_mobius`` (conditioning: the largest Möbius
    entry; it grows like (width - 1)^depth on dense layered graphs). On the
    factored path these are expanded from the factors on first access, which
    costs what the explicit fit costs; the exact path never needs ``mobius``.
    """

    type = "standard"
    description = "standard spectrum: coefficient at its node (c = M s, M the Möbius matrix)"
    options_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "method": {"enum": list(METHODS), "default": "auto", "description":
                       "explicit zeta/Möbius matrices, the Kronecker factors of the layers, or auto: "
                       "the factors where the graph has them"},
            "precision": {"enum": list(PRECISIONS), "default": "exact", "description":
                          "exact: correctly rounded coefficients from exact integer arithmetic; float: float64 "
                          "recurrences (faster, small coefficients of deep graphs lose their digits)"}}}

    def __init__(self, method: str = "auto", precision: str = "exact"):
        if method not in METHODS:
            raise InputError(f"unknown method {method!r} for the standard transform; accepted: {', '.join(METHODS)}")
        if precision not in PRECISIONS:
            raise InputError(f"unknown precision {precision!r} for the standard transform; accepted: "
                             f"{', '.join(PRECISIONS)}")
        self.method = method
        self.precision = precision
        self.closure = None
        self.reason = None
        self._zeta = None
        self._mobius = None
        self._levels = None
        self._layers = None

    @property
    def factored(self) -> bool:
        return self.closure is not None

    def layer_offsets(self):
        """The graph's layers where it was fitted on a graph core (a bare adjacency has none: None)."""
        if self.closure is not None:
            return list(self.closure.names), [int(o) for o in self.closure.offsets]
        return self._layers

    def synthesis_rows(self, targets, device=None, at=None) -> np.ndarray:
        """Rows ``Z[targets, :]`` of the zeta matrix (1 at each target's ancestors and itself), float64: from
        the Kronecker factors' rows on the factored path, else from the explicit matrix. They do not depend
        on the signal: with ``at`` (samples, nodes) the rows are repeated per sample (a read-only view)."""
        index = self._targets(targets)
        if self.closure is not None:
            rows = closure_rows(self.closure, index)
        else:
            rows = self.zeta[index].toarray().astype(np.float64)
        return rows if at is None else np.broadcast_to(rows, (len(at),) + rows.shape)

    @property
    def fitted(self) -> bool:
        return self._zeta is not None or self.closure is not None

    def fit(self, graph) -> "StandardTransform":
        self.closure, self.reason, self._zeta, self._mobius, self._levels = None, None, None, None, None
        self._layers = None
        mobius = self.precision == "float"
        if not isinstance(graph, GraphCore):
            if self.method == "factored":
                raise InputError("method='factored' needs a graph core (layers with Kronecker-factored "
                                 "blocks); got a bare adjacency matrix")
            self.reason = "fitted on an adjacency matrix, which has no layers"
            self._set(*zeta_mobius(graph, mobius=mobius))
            return self
        self._layers = (list(graph.names), [int(o) for o in graph.offsets])
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
        self._set(*explicit_closure(graph, self.reason, mobius))
        return self

    @classmethod
    def from_matrices(cls, zeta: sp.spmatrix, mobius: sp.spmatrix | None = None, method: str = "explicit",
                      precision: str = "exact") -> "StandardTransform":
        """Rebuild a fitted transform from stored matrices (``mobius`` is computed when needed)."""
        out = cls(method, precision)
        out._set(zeta, mobius)
        return out

    @classmethod
    def from_closure(cls, closure, method: str = "factored", precision: str = "exact") -> "StandardTransform":
        """Rebuild a fitted transform from a stored factored closure."""
        out = cls(method, precision)
        out.closure = closure
        return out

    def _set(self, zeta, mobius=None) -> None:
        self._zeta = sp.csr_matrix(zeta, dtype=np.int8)
        self._zeta_f = self._zeta.astype(np.float64)
        if mobius is not None:
            self._mobius = sp.csr_matrix(mobius, dtype=np.int64)
            self._max_abs_mobius = int(np.abs(self._mobius.data).max(initial=0))
            if self._max_abs_mobius >= FLOAT64_EXACT and self.precision == "float":
                warnings.warn(f"Möbius entries reach {self._max_abs_mobius:.3g} >= 2^53: float64 transforms of "
                              f"this graph are not exact (precision='exact' is)", RuntimeWarning, stacklevel=3)
            self._mobius_f = self._mobius.astype(np.float64)

    def _matrices(self, mobius: bool = True) -> None:
        """Expand the zeta matrix from the factors, and the Möbius matrix where asked for."""
        if self._zeta is None:
            strict = off_diagonal(self.closure.zeta(), bool)
            self._set(*zeta_mobius(strict, self.closure.offsets, mobius=mobius))
        elif mobius and self._mobius is None:
            self._set(self._zeta, zeta_mobius(off_diagonal(self._zeta, bool))[1])

    @property
    def zeta(self) -> sp.csr_matrix | None:
        if not self.fitted:
            return None
        self._matrices(mobius=False)
        return self._zeta

    @property
    def mobius(self) -> sp.csr_matrix | None:
        if not self.fitted:
            return None
        self._matrices()
        return self._mobius

    @property
    def max_abs_mobius(self) -> int:
        self._checked()._matrices()
        return self._max_abs_mobius

    @property
    def n(self) -> int:
        self._checked()
        return self.closure.n_nodes if self.closure is not None else self._zeta.shape[0]

    def summary(self) -> str:
        how = (f"factored: {self.closure.n_terms:,} Kronecker terms" if self.factored
               else f"explicit: {self.reason}")
        return f"{self.n_coefficients:,} coefficients, {how}, {self.precision} arithmetic"

    def _transform(self, x, device):
        if self.precision == "exact":
            return self._exact(x, True, device)
        if self.closure is not None:
            return run(self.closure, x, True, device)
        self._matrices()
        return _apply(self._mobius_f, x, device)

    def _inverse(self, c, device):
        if self.precision == "exact":
            return self._exact(c, False, device)
        if self.closure is not None:
            return run(self.closure, c, False, device)
        return _apply(self._zeta_f, c, device)

    # -- exact arithmetic ----------------------------------------------------------------------

    def exact_primes(self, signals, forward: bool = True) -> int:
        """How many primes exact arithmetic takes for these signals (forward) or spectra (inverse)."""
        order, _, _, (bound_forward, bound_inverse) = self._checked()._generations()
        mantissa, shift, _ = exact.to_integers(np.atleast_2d(signals))
        bits = exact.signal_bits(mantissa, shift)
        return max(exact.primes_per_layer(bits, bound_forward if forward else bound_inverse), default=1)

    def _generations(self):
        """(node order or None, generation offsets in that order, (strict zeta, its generation blocks) in
        that order or None on the factored path, log2 bounds forward and inverse per generation)."""
        if self._levels is None:
            if self.closure is not None:
                self._levels = (None, self.closure.offsets, None, self.closure.row_bounds())
            else:
                order, offsets = level_order(off_diagonal(self._zeta, bool))
                ordered = None if np.array_equal(order, np.arange(order.size)) else order
                zeta = self._zeta if ordered is None else sp.csr_matrix(self._zeta[order][:, order])
                if max(np.diff(zeta.indptr), default=0) >= exact.MAX_TERMS:
                    raise exact.ExactnessError("a row of the zeta matrix has too many entries for exact float64 "
                                               "sums; use precision='float'")
                strict = off_diagonal(zeta)
                self._levels = (ordered, offsets, (strict, generation_blocks(strict, offsets)),
                                row_bounds(zeta, offsets))
        return self._levels

    def _exact(self, x: np.ndarray, forward: bool, device) -> np.ndarray:
        """The transform of ``x`` from exact integers, correctly rounded (module docstring of ``exact``)."""
        order, offsets, zeta, (bound_forward, bound_inverse) = self._generations()
        if self.closure is not None and int(np.diff(offsets).max(initial=0)) >= exact.MAX_TERMS:
            raise exact.ExactnessError("a layer has too many neurons for exact float64 sums; use precision='float'")
        if order is not None:
            x = x[:, order]
        mantissa, shift, exponent = exact.to_integers(x)
        bits = exact.signal_bits(mantissa, shift)
        counts = exact.primes_per_layer(bits, bound_forward if forward else bound_inverse)
        primes = exact.PRIMES[:max(counts, default=1)]
        chunk = max(1, EXACT_MEMORY // max(1, 8 * len(primes) * x.shape[1]))
        out = np.empty(x.shape)
        for first in range(0, x.shape[0], chunk):
            rows = slice(first, first + chunk)
            stacked = exact.residues(mantissa[rows], shift[rows], primes)       # (primes, samples, nodes)
            if zeta is None:                 # every prime at once: the primes are more samples
                flat = stacked.reshape(-1, x.shape[1])
                moduli = np.repeat(np.asarray(primes, dtype=np.float64), stacked.shape[1])
                stacked = run(self.closure, flat, forward, device, moduli, overwrite=True).reshape(stacked.shape)
            else:
                for i, p in enumerate(primes):
                    stacked[i] = substitute(*zeta, offsets, stacked[i], forward, p)
            for g, (a, b) in enumerate(zip(offsets[:-1], offsets[1:])):
                if b > a:
                    out[rows, a:b] = exact.reconstruct(stacked[:counts[g], :, a:b], exponent[rows])
        if order is not None:
            back = np.empty_like(out)
            back[:, order] = out
            out = back
        return out


def explicit_memory(nodes: int, edges: int, closure: int) -> int:
    """Bytes the explicit path holds at least, for a graph of ``nodes`` and ``edges`` whose closure has at
    least ``closure`` entries: the adjacency and its boolean copy, the closure while it grows (twice, as
    rows are stacked), its int8 and float64 forms, and the two float64 copies substitution reads."""
    index = 4 if max(nodes, edges, closure) < 2**31 else 8
    return 2 * edges * (1 + index) + closure * (2 * (1 + index) + 3 * (8 + index)) + 8 * nodes


def explicit_closure(graph: GraphCore, reason: str, mobius: bool):
    """``zeta_mobius`` of the graph, refused up front (and stopped on the way) where it cannot fit in memory."""
    from nsp import memory
    nodes, edges = graph.n_nodes, sum(block.nnz for blocks in graph.blocks for _, block in blocks)
    limit = memory.budget()
    advice = ("The standard transform of this graph cannot take the factored path: " + reason + ". "
              "Alternatives: a smaller input (input_shape, img_size) or model, the sem transform (memory "
              "grows with the edges), the laplacian transform with a small k, or more memory (NSP_MEMORY_MB "
              "or a larger mem_mb).")
    memory.check(explicit_memory(nodes, edges, nodes + edges),
                 f"the explicit standard transform of a graph of {nodes:,} nodes and {edges:,} edges", advice, limit)

    def check(g, entries):
        memory.check(explicit_memory(nodes, edges, entries),
                     f"the explicit standard transform (closure of {entries:,}+ entries after layer {g} "
                     f"{graph.names[g]!r})", advice, limit)
    return zeta_mobius(graph.adjacency, graph.offsets, mobius=mobius, check=check)


def _apply(matrix: sp.csr_matrix, x: np.ndarray, device=None) -> np.ndarray:
    """``matrix`` applied to every row of ``x`` (samples x nodes), float64, optionally on a torch device."""
    if device is None:
        return np.ascontiguousarray((matrix @ x.T).T)
    import torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # "sparse CSR support is in beta"
        m = torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                    torch.from_numpy(matrix.indices.astype(np.int64)),
                                    torch.from_numpy(matrix.data), size=matrix.shape, device=device)
        return (m @ torch.from_numpy(x.T.copy()).to(device)).T.cpu().numpy()
