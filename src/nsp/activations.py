"""``Activations``: the activation pattern one input produces in a network."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from nsp.tracing import recording as tracing
from nsp.storage.provenance import weights_sha256


def _drop_batch(value: torch.Tensor) -> torch.Tensor:
    return value.squeeze(0) if value.dim() > 0 else value


class Activations:
    """The activation pattern that a single input produces in ``network``.

    Parameters
    ----------
    network : torch.nn.Module
        The network; it is run once on ``input`` (without gradients, in its
        current train/eval mode).
    input : torch.Tensor
        One sample with a leading batch axis of size 1.
    trace : {'children', 'ops'}, default 'children'
        ``'children'`` records, after the input, the output of each direct
        child module in call order (the reference package's layers).
        ``'ops'`` traces the full dataflow with torch.fx: every tensor
        operation becomes a layer, functional ones included.

    Attributes
    ----------
    layernames : list of str
        ``'input'``, then the child module names (children mode) or the
        torch.fx node names (ops mode).
    layerdescriptions : list
        ``'Input[...]'`` with the input shape, then the module of each layer,
        or for functional operations a string such as ``'relu(conv1)'``.
    layeractivations : list of torch.Tensor
        The recorded values, batch axis removed.
    layerparents : list of tuple of int
        Indices of the layers each layer is computed from.
    weights_sha256 : str
        Checksum of the network's state dict (provenance of stored results).
    """

    _table = None        # the stored layer table of activations read from a file

    def __init__(self, network: nn.Module, input: torch.Tensor, trace: str = "children"):
        tracing.check_network(network)
        if isinstance(input, np.ndarray):
            input = torch.from_numpy(input)
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.dim() == 0 or input.shape[0] != 1:
            raise ValueError(
                f"input must be a single sample with a leading batch axis of size 1; got shape "
                f"{tuple(input.shape)}. Pass x[:1] (or x.unsqueeze(0) for an unbatched sample)")
        layers = tracing.record(network, input, trace)
        self.trace = trace
        self.weights_sha256 = weights_sha256(network)
        self.layernames = [layer.name for layer in layers]
        self.layerdescriptions = [layer.description for layer in layers]
        self.layeractivations = [_drop_batch(layer.value) for layer in layers]
        self.layerparents = [tuple(layer.parents) for layer in layers]
        self._layers = layers

    @property
    def layershapes(self) -> list[tuple]:
        return [tuple(a.shape) for a in self.layeractivations]

    @property
    def n_neurons(self) -> int:
        return sum(a.numel() for a in self.layeractivations)

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
        if isinstance(signal, torch.Tensor):
            flat = signal.detach().reshape(-1)
        elif isinstance(signal, np.ndarray):
            flat = torch.from_numpy(np.ascontiguousarray(signal).reshape(-1))
        else:
            flat = torch.tensor(list(signal))
        if flat.numel() != self.n_neurons:
            raise ValueError(f"signal has {flat.numel()} values; this pattern has {self.n_neurons} neurons "
                             f"in {len(self.layeractivations)} layers")
        cls = cls or Activations
        other = cls.__new__(cls)
        for name in ("trace", "weights_sha256", "layernames", "layerdescriptions", "layerparents", "_layers",
                     "_table"):
            setattr(other, name, getattr(self, name))
        other.layeractivations = []
        start = 0
        for layer in self.layeractivations:
            n = layer.numel()
            other.layeractivations.append(flat[start:start + n].clone().reshape(layer.shape))
            start += n
        return other
