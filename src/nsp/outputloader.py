"""``OutputLoader``: save and load nsp objects as HDF5 files (no pickle)."""

from __future__ import annotations

import numpy as np
import torch

from nsp.errors import InputError, InputTypeError
from nsp import storage
from nsp.activations import Activations
from nsp.graph.core import GraphCore
from nsp.nngraph import NNGraph
from nsp.storage import SignalBatch
from nsp.storage.container import reading
from nsp.transformer import Spectrum
from nsp.transforms import TRANSFORMS, Transform

_SAVABLE = f"NNGraph, GraphCore, Activations, Spectrum, SignalBatch, {', '.join(c.__name__ for c in TRANSFORMS.values())}"


def to_batch(activations: Activations) -> SignalBatch:
    """One pattern (or spectrum) as a batch of one sample."""
    dtype = np.float64 if any(a.dtype == torch.float64 for a in activations.layeractivations) else np.float32
    spectrum = isinstance(activations, Spectrum)
    return SignalBatch(
        kind="spectra" if spectrum else "activations", values=activations.to_array(dtype)[None, :],
        layers=activations.table, transform_type=getattr(activations, "transform_type", None),
        eigenvalues=getattr(activations, "eigenvalues", None), trace=activations.trace,
        weights_sha256=activations.weights_sha256)


def from_batch(batch: SignalBatch, index: int = 0) -> Activations:
    """Sample ``index`` of a batch as an Activations (or Spectrum) in the layer layout."""
    if batch.kind == "spectra":
        return Spectrum.from_table(batch.layers, batch.values[index], batch.transform_type, batch.eigenvalues,
                                   batch.trace, batch.weights_sha256)
    return Activations.from_values(batch.layers, batch.values[index], batch.trace, batch.weights_sha256)


class OutputLoader:
    """Store and load graphs (with their fitted transformers), activations and spectra."""

    @staticmethod
    def save(obj, path, producer: dict | None = None, parameters: dict | None = None) -> None:
        """Write ``obj`` to the HDF5 file ``path`` (atomically; folders are created).

        ``producer`` and ``parameters`` (JSON-serialisable dicts) are stored as
        provenance, e.g. the config entries that produced the object.
        """
        if isinstance(obj, (NNGraph, GraphCore)):
            core = getattr(obj, "core", obj)
            if core is None:
                raise InputError("this NNGraph was not built from activations: nothing to save")
            storage.write_graph(path, core, getattr(obj, "transformers", {}), producer=producer,
                                parameters=parameters, obj=type(obj).__name__)
        elif isinstance(obj, Activations):
            storage.write_signals(path, to_batch(obj), producer=producer, parameters=parameters,
                                  obj=type(obj).__name__)
        elif isinstance(obj, SignalBatch):
            storage.write_signals(path, obj, producer=producer, parameters=parameters)
        elif isinstance(obj, Transform):
            storage.write_transformer(path, obj, producer=producer, parameters=parameters)
        else:
            raise InputTypeError(f"cannot save a {type(obj).__name__}; accepted: {_SAVABLE}")

    @staticmethod
    def load(path):
        """The object stored at ``path``, of the kind that was saved."""
        with reading(path) as f:
            kind, obj = str(f.attrs["kind"]), str(f.attrs["object"])
        if kind == "graph":
            core = storage.read_graph(path)
            return core if obj == "GraphCore" else NNGraph.from_core(core, storage.read_graph_transforms(path))
        if kind == "transformer":
            return storage.read_transformer(path)
        batch = storage.read_signals(path)
        return from_batch(batch) if obj in ("Activations", "Spectrum") else batch
