"""``NNGraph``: the networkx facade over the array graph core."""

from __future__ import annotations

from itertools import chain, repeat

import networkx as nx
import numpy as np
import scipy.linalg as la

from nsp.errors import InputError, InputTypeError, NotInGraphError
from nsp.activations import Activations
from nsp.transforms.standard import StandardTransform
from nsp.transforms.zeta import mobius_of_zeta
from nsp.operations import JACOBIAN_LIMIT
from nsp.graph.core import GraphCore
from nsp.transformer import Spectrum, make_transform


class NNGraph(nx.DiGraph):
    """The neuron-level DAG of a network, as a ``networkx.DiGraph``.

    Nodes are ``(layer_index, *tensor_index)`` in node order; an edge
    ``x -> y`` means neuron ``y`` is computed from neuron ``x``. The graph is
    built from :class:`nsp.graph.GraphCore` (``self.core``), which heavy
    algorithms use directly.

    Parameters
    ----------
    activations : Activations
        Any pattern recorded from the network. With ``INCL=True`` the graph
        depends only on the architecture and the input shape.
    INCL : bool, default True
        True: every structural edge, whatever the weights. False: only edges
        whose weight is nonzero (convolution and linear weights), and a max
        pooling output keeps only the input that won the max for this input.
    jacobian_limit : int
        Largest Jacobian (outputs x inputs) the fallback for operations
        without a connectivity rule may form.
    """

    def __init__(self, activations: Activations | None = None, INCL: bool = True, *,
                 jacobian_limit: int = JACOBIAN_LIMIT, **attr):
        super().__init__(**attr)
        self.INCL = INCL
        self.core = None
        self.transformers = {}           # type -> fitted transform object
        self._lu_piv = None
        if activations is None:          # networkx builds empty graphs of this class
            return
        if not isinstance(activations, Activations):
            raise InputTypeError(f"activations must be an nsp.Activations, got {type(activations).__name__}")
        self._build(GraphCore.from_activations(activations, bool(INCL), jacobian_limit))

    @classmethod
    def from_core(cls, core: GraphCore, transformers: dict | None = None) -> "NNGraph":
        """The networkx facade over an existing graph core (e.g. one read from a file) and its fitted
        transforms by type."""
        graph = cls(INCL=core.incl)
        graph._build(core)
        graph.transformers.update(transformers or {})
        return graph

    @property
    def weights_sha256(self) -> str | None:
        """Checksum of the network's weights the graph was built from."""
        return None if self.core is None else self.core.weights_sha256

    def _build(self, core: GraphCore) -> None:
        self.core = core
        nodes = node_tuples(self.core)
        self.add_nodes_from(nodes)
        coo = self.core.adjacency.tocoo()
        self.add_edges_from(zip(nodes[coo.col], nodes[coo.row]))

    # -- transforms ---------------------------------------------------------------

    def get_transformer(self, type: str = "standard", **options):
        """Fit (once per set of options) the transform of the given type on this graph.

        Returns what the reference returned: the zeta matrix ``inv_F`` for
        ``'standard'``, the LU factorisation ``lu_piv`` of the eigenvector
        matrix for ``'laplacian'``. The fitted transform object itself is
        ``self.transformers[type]``, and what other types return. ``options`` go to the transform class
        (``k=...`` for a partial Laplacian basis, which has no ``lu_piv``:
        then the call fits it and raises).
        """
        transform = self._transform(type, **options)
        if transform.type == "standard":
            return self.inv_F
        if transform.type != "laplacian":
            return transform
        if transform.truncation is not None:
            raise InputError(f"the Laplacian basis was fitted with k={transform.k}: a partial basis has no "
                             f"lu_piv; use graph.transformers['laplacian'] on arrays")
        return self.lu_piv

    compute_transformer = get_transformer

    def _transform(self, type: str, **options):
        wanted = make_transform(type, **options)
        if self.core is None:
            raise InputError("this NNGraph was not built from activations")
        current = self.transformers.get(type)
        if current is None or current.options != wanted.options:
            self.transformers[type] = wanted.fit(self.core)
            if type == "laplacian":
                self._lu_piv = None
        return self.transformers[type]

    @property
    def inv_F(self):
        """The zeta matrix (CSR, lower triangular), once the standard transform is fitted; else None.
        Assigning a zeta matrix (e.g. a stored one) installs it as the standard transform."""
        transform = self.transformers.get("standard")
        return None if transform is None else transform.zeta

    @inv_F.setter
    def inv_F(self, zeta):
        if zeta is None:
            self.transformers.pop("standard", None)
            return
        if self.core is not None and zeta.shape != (self.core.n_nodes,) * 2:
            raise InputError(f"inv_F has shape {zeta.shape}; this graph has {self.core.n_nodes} nodes")
        self.transformers["standard"] = StandardTransform.from_matrices(zeta, mobius_of_zeta(zeta))

    @property
    def lu_piv(self):
        """LU factorisation of the Laplacian eigenvector matrix (computed on first access after the
        full Laplacian basis is fitted; dense, O(n^3)); None before."""
        transform = self.transformers.get("laplacian")
        if transform is None or transform.truncation is not None:
            return None
        if self._lu_piv is None:
            self._lu_piv = la.lu_factor(transform.eigenvectors)
        return self._lu_piv

    def transform(self, activations: Activations, type: str = "standard") -> Spectrum:
        """The spectrum of ``activations``, in their layer layout (float64)."""
        transform = self._transform(type)
        self._check_size(activations, "activations")
        coefficients = transform.transform(activations.to_array(np.float64))
        return Spectrum.from_coefficients(activations, coefficients, type, getattr(transform, "eigenvalues", None))

    def inverse_transform(self, spectrum: Activations, type: str | None = None) -> Activations:
        """Activations (float64) from a spectrum; ``type`` defaults to the spectrum's own, and must be it
        where the spectrum records one."""
        own = getattr(spectrum, "transform_type", None)
        if type is not None and own is not None and type != own:
            raise InputError(f"inverse_transform: the spectrum was made by the {own!r} transform, not {type!r}; "
                             f"give type={own!r} or type=None")
        type = type or own or "standard"
        transform = self._transform(type)
        self._check_size(spectrum, "spectrum")
        return spectrum.with_values(transform.inverse_transform(spectrum.to_array(np.float64)))

    def _check_size(self, activations, what: str) -> None:
        if not isinstance(activations, Activations):
            raise InputTypeError(f"{what} must be an nsp.Activations, got {type(activations).__name__}")
        if activations.n_neurons != self.core.n_nodes:
            raise InputError(f"{what} have {activations.n_neurons} values; this graph has {self.core.n_nodes} nodes")

    def node_id(self, node: tuple) -> int:
        """Position of ``node`` in the node order (O(1))."""
        if self.core is None:
            raise InputError("this NNGraph was not built from activations")
        if not isinstance(node, tuple) or not node or not 0 <= node[0] < self.core.n_layers:
            raise NotInGraphError(f"{node!r} is not a node: nodes are (layer_index, *tensor_index)")
        try:
            return self.core.node_index(node[0], node[1:])
        except ValueError as err:
            raise NotInGraphError(f"{node!r} is not a node: {err}") from None


def node_tuples(core: GraphCore) -> np.ndarray:
    """All node tuples of ``core`` in node order, as an object array."""
    def layer_nodes(layer, shape):
        if not shape:
            return [(layer,)]
        return zip(repeat(layer), *np.indices(shape).reshape(len(shape), -1).tolist())

    nodes = chain.from_iterable(layer_nodes(l, s) for l, s in enumerate(core.shapes))
    return np.fromiter(nodes, dtype=object, count=core.n_nodes)
