"""``Activations``: the activation pattern one input produces in a network (seed facade over tracing)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from nsp.errors import InputError, InputTypeError
from nsp.storage.provenance import weights_sha256
from nsp.tracing import recording as tracing
from nsp.tracing.table import LayerTable


class Activations:
    """The activation pattern that a single input produces in ``network``.

    Parameters
    ----------
    network : torch.nn.Module
        The network; it is run once on ``input`` (without gradients, in its
        current train/eval mode). A network in training mode is recorded as
        it is, with a ``UserWarning`` naming its dropout and batch norm
        modules; its buffers (running statistics) are left unchanged.
    input : torch.Tensor
        One sample with a leading batch axis of size 1. NaN and infinite
        values are recorded as they are, with a ``UserWarning`` counting them.
    trace : {'children', 'ops'}, default 'children'
        ``'children'`` records, after the input, the output of each direct
        child module in call order (the reference package's layers).
        ``'ops'`` traces the full dataflow with torch.fx: every tensor
        operation becomes a layer, functional ones included.

    Attributes
    ----------
    table : nsp.LayerTable
        The layers (names, operation kinds, shapes, offsets, parents).
    recording : nsp.tracing.Recording or None
        What the run recorded, from which :meth:`nsp.GraphCore.from_activations`
        builds the graph; None for patterns read from a file or built from values.
    layeractivations : list of torch.Tensor
        The recorded values, batch axis removed.
    layernames, layerdescriptions, layerparents
        The reference package's per-layer lists: ``'input'`` then the child
        module names (children mode) or torch.fx node names (ops mode); the
        module of each layer (or a string such as ``'relu(conv1)'``; strings
        only for stored patterns); the indices of each layer's parents.
    weights_sha256 : str
        Checksum of the network's state dict (provenance of stored results).
    """

    def __init__(self, network: nn.Module, input: torch.Tensor, trace: str = "children"):
        tracing.check_network(network)
        if isinstance(input, np.ndarray):
            input = torch.from_numpy(input)
        if not isinstance(input, torch.Tensor):
            raise InputTypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() == 0 or input.shape[0] != 1:
            raise InputError(
                f"input must be a single sample with a leading batch axis of size 1; got shape "
                f"{tuple(input.shape)}. Pass x[:1] (or x.unsqueeze(0) for an unbatched sample)")
        recorded = tracing.record(network, input, trace)
        self._init(recorded.table, [l.value.reshape(s) for l, s in zip(recorded.layers, recorded.table.shapes)],
                   trace, weights_sha256(network), recorded)

    @classmethod
    def from_values(cls, table: LayerTable, values, trace: str = "children", weights_sha256: str | None = None,
                    recording=None) -> "Activations":
        """A pattern (or spectrum, for subclasses) from its layer table and a flat vector in node order."""
        if isinstance(values, torch.Tensor):
            flat = values.detach().reshape(-1)
        elif isinstance(values, np.ndarray):
            flat = torch.from_numpy(np.ascontiguousarray(values).reshape(-1))
        else:
            flat = torch.tensor(list(values))
        if flat.numel() != table.n_nodes:
            raise InputError(f"signal has {flat.numel()} values; this pattern has {table.n_nodes} neurons "
                             f"in {len(table)} layers")
        out = cls.__new__(cls)
        out._init(table, [part.clone() for part in table.split(flat)], trace, weights_sha256, recording)
        return out

    def _init(self, table, layer_values, trace, sha, recording) -> None:
        self.table = table
        self.layeractivations = list(layer_values)
        self.trace = trace
        self.weights_sha256 = sha
        self.recording = recording

    @property
    def layernames(self) -> list:
        return self.table.names

    @property
    def layerdescriptions(self) -> list:
        if self.recording is not None:
            return [l.description for l in self.recording.layers]
        return self.table.descriptions

    @property
    def layerparents(self) -> list:
        return self.table.parents

    @property
    def layershapes(self) -> list[tuple]:
        return [tuple(a.shape) for a in self.layeractivations]

    @property
    def n_neurons(self) -> int:
        return self.table.n_nodes

    def to_array(self, dtype=np.float32) -> np.ndarray:
        """The pattern as one flat array in node order."""
        return np.concatenate([a.detach().reshape(-1).cpu().numpy() for a in self.layeractivations]).astype(dtype)

    def to_vector(self) -> list:
        """The pattern as one flat list of floats in node order (layer by layer, C order)."""
        return [v for a in self.layeractivations for v in a.detach().reshape(-1).tolist()]

    def to_activations(self, signal: Sequence | np.ndarray | torch.Tensor) -> "Activations":
        """A copy of this object whose layer values are taken from ``signal``.

        ``signal`` is a flat vector in node order (list, array or tensor);
        a list gives float32 layers, an array or tensor keeps its dtype.
        """
        return self.with_values(signal, type(self))

    def with_values(self, signal, cls: type | None = None) -> "Activations":
        """Like :meth:`to_activations`, returning an instance of ``cls`` (default: Activations)."""
        return (cls or Activations).from_values(self.table, signal, self.trace, self.weights_sha256, self.recording)
