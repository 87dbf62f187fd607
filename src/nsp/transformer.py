"""The seed package's ``Transformer`` facade and ``Spectrum``.

The transforms themselves live in :mod:`nsp.transforms` (registered by type
name, each with ``fit(graph)``, ``transform`` and ``inverse_transform`` on
(samples, nodes) arrays). This module wraps them in the reference package's
API, which speaks in ``Activations`` and matrices.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve_triangular

from nsp.errors import InputError, InputTypeError
from nsp.activations import Activations
from nsp.transforms import TRANSFORMS, make_transform, transform_class
from nsp.transforms.laplacian import laplacian
from nsp.transforms.zeta import mobius_of_zeta

#: transform type name -> class (the registry of :mod:`nsp.transforms`)
TRANSFORM_TYPES = TRANSFORMS

__all__ = ["Spectrum", "Transformer", "TRANSFORM_TYPES", "make_transform"]


class Spectrum(Activations):
    """Fourier coefficients in the layer layout of the activations they came from.

    ``transform_type`` names the transform; ``eigenvalues`` holds, for the
    Laplacian transform, the eigenvalue of each coefficient (coefficient k
    belongs to eigenvalue k, not to the node it is drawn at).
    """

    transform_type = None
    eigenvalues = None

    @classmethod
    def from_coefficients(cls, activations: Activations, coefficients, transform_type: str,
                          eigenvalues=None) -> "Spectrum":
        """The spectrum of ``activations`` (same layer table and provenance)."""
        return cls.from_table(activations.table, coefficients, transform_type, eigenvalues, activations.trace,
                              activations.weights_sha256)

    @classmethod
    def from_table(cls, table, coefficients, transform_type: str, eigenvalues=None, trace: str = "children",
                   weights_sha256: str | None = None) -> "Spectrum":
        """A spectrum from its layer table and a flat coefficient vector in node order (float64)."""
        spectrum = cls.from_values(table, np.asarray(coefficients, dtype=np.float64), trace, weights_sha256)
        spectrum.transform_type = transform_type
        spectrum.eigenvalues = None if eigenvalues is None else np.asarray(eigenvalues)
        return spectrum


def _core(graph):
    core = getattr(graph, "core", None)
    if core is None:
        raise InputTypeError(f"graph must be an nsp.NNGraph built from activations, got {type(graph).__name__}")
    return core


class Transformer:
    """The reference package's functions over matrices, kept for compatibility."""

    @staticmethod
    def get_laplacian(graph, dense: bool = False):
        """``L = D - W`` of the undirected graph: sparse CSR, or a dense array with ``dense=True``."""
        lap = laplacian(_core(graph).adjacency)
        return lap.toarray() if dense else lap

    @staticmethod
    def get_inv_fourier_matrix(graph, type: str = "standard"):
        """``standard``: the zeta matrix (sparse CSR, lower triangular); ``laplacian``: the LU
        factorisation ``(lu, piv)`` of the eigenvector matrix, as the reference returned. The fit is
        the graph's own (fitted once, kept in ``graph.transformers``)."""
        transform_class(type)
        _core(graph)
        return graph.get_transformer(type)

    @staticmethod
    def get_fourier_matrix(graph, inv_F):
        """The forward transform matrix belonging to ``inv_F``.

        For a zeta matrix (sparse or dense 0/1 closure), the Möbius matrix as
        sparse CSR with exact integers (the reference's version of this
        function was broken). For an orthonormal eigenvector matrix (dense),
        its transpose. Anything else is a ``ValueError``.
        """
        if isinstance(inv_F, tuple):
            raise InputTypeError("inv_F is a tuple (an LU factorisation?); pass the eigenvector matrix "
                            "graph.transformers['laplacian'].eigenvectors or a zeta matrix")
        dense = None if sp.issparse(inv_F) else np.asarray(inv_F, dtype=np.float64)
        if dense is not None and not np.all((dense == 0) | (dense == 1)):
            if dense.ndim != 2 or dense.shape[0] != dense.shape[1] or \
                    np.abs(dense.T @ dense - np.eye(dense.shape[0])).max() > 1e-8:
                raise InputError("inv_F is neither a zeta matrix (0/1 closure) nor an orthonormal eigenvector matrix")
            return dense.T
        return mobius_of_zeta(inv_F if dense is None else sp.csr_matrix(dense))

    @staticmethod
    def get_fourier_coefficients(activations: Activations, inv_F=None, type: str = "standard",
                                 lu_piv=None) -> Spectrum:
        """Spectrum of ``activations`` by solving with ``inv_F`` (standard) or ``lu_piv`` (laplacian)."""
        if type not in ("standard", "laplacian"):
            transform_class(type)
            raise InputError(f"get_fourier_coefficients solves with the matrices of the reference package's "
                             f"standard and laplacian transforms; for {type!r} use graph.transform(activations, "
                             f"type={type!r})")
        signal = activations.to_array(np.float64)
        if type == "standard":
            if inv_F is None:
                raise InputError("type='standard' needs inv_F, the zeta matrix (graph.get_transformer('standard'))")
            coefficients = spsolve_triangular(sp.csr_matrix(inv_F, dtype=np.float64), signal,
                                              lower=True, unit_diagonal=True)
            return Spectrum.from_coefficients(activations, coefficients, "standard")
        if lu_piv is None:
            raise InputError("type='laplacian' needs lu_piv (graph.get_transformer('laplacian'))")
        return Spectrum.from_coefficients(activations, la.lu_solve(lu_piv, signal), "laplacian")
