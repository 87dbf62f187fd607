"""``NNGraph``: the networkx facade over the array graph core."""

from __future__ import annotations

from itertools import chain, repeat

import networkx as nx
import numpy as np

from .activations import Activations
from .connectivity import JACOBIAN_LIMIT
from .graph import GraphCore


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
        self.inv_F = None
        self.lu_piv = None
        self.core = None
        if activations is None:          # networkx builds empty graphs of this class
            return
        if not isinstance(activations, Activations):
            raise TypeError(f"activations must be an nsp.Activations, got {type(activations).__name__}")
        self.core = GraphCore.from_layers(activations._layers, activations.layershapes, bool(INCL), jacobian_limit)
        nodes = node_tuples(self.core)
        self.add_nodes_from(nodes)
        coo = self.core.adjacency.tocoo()
        self.add_edges_from(zip(nodes[coo.col], nodes[coo.row]))

    def node_id(self, node: tuple) -> int:
        """Position of ``node`` in the node order (O(1))."""
        if self.core is None:
            raise ValueError("this NNGraph was not built from activations")
        if not isinstance(node, tuple) or not node or not 0 <= node[0] < self.core.n_layers:
            raise KeyError(f"{node!r} is not a node: nodes are (layer_index, *tensor_index)")
        try:
            return self.core.node_index(node[0], node[1:])
        except ValueError as err:
            raise KeyError(f"{node!r} is not a node: {err}") from None


def node_tuples(core: GraphCore) -> np.ndarray:
    """All node tuples of ``core`` in node order, as an object array."""
    def layer_nodes(layer, shape):
        if not shape:
            return [(layer,)]
        return zip(repeat(layer), *np.indices(shape).reshape(len(shape), -1).tolist())

    nodes = chain.from_iterable(layer_nodes(l, s) for l, s in enumerate(core.shapes))
    return np.fromiter(nodes, dtype=object, count=core.n_nodes)
