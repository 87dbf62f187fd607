"""``OutputLoader``: save and load nsp objects as HDF5 files (no pickle)."""

from __future__ import annotations

import numpy as np
import torch

from nsp.storage import hdf5 as storage
from nsp.activations import Activations
from nsp.transforms.standard import StandardTransform
from nsp.graph.core import GraphCore
from nsp.transforms.laplacian import LaplacianTransform
from nsp.transforms.sem import SemTransform
from nsp.nngraph import NNGraph
from nsp.storage.hdf5 import LayerTable, SignalBatch
from nsp.transformer import Spectrum

_SAVABLE = "NNGraph, GraphCore, Activations, Spectrum, SignalBatch, StandardTransform, LaplacianTransform, SemTransform"


def to_batch(activations: Activations) -> SignalBatch:
    """One pattern (or spectrum) as a batch of one sample."""
    dtype = np.float64 if any(a.dtype == torch.float64 for a in activations.layeractivations) else np.float32
    spectrum = isinstance(activations, Spectrum)
    return SignalBatch(
        kind="spectra" if spectrum else "activations", values=activations.to_array(dtype)[None, :],
        layers=LayerTable.of(activations), transform_type=getattr(activations, "transform_type", None),
        eigenvalues=getattr(activations, "eigenvalues", None), trace=activations.trace,
        weights_sha256=activations.weights_sha256)


def from_batch(batch: SignalBatch, index: int = 0) -> Activations:
    """Sample ``index`` of a batch as an Activations (or Spectrum) in the layer layout."""
    cls = Spectrum if batch.kind == "spectra" else Activations
    out = cls.__new__(cls)
    table = batch.layers
    out.trace, out.weights_sha256 = batch.trace, batch.weights_sha256
    out.layernames, out.layerdescriptions = list(table.names), list(table.descriptions)
    out.layerparents = list(table.parents)
    out._layers, out._table = None, table
    flat = torch.from_numpy(np.ascontiguousarray(batch.values[index]))
    offsets = table.offsets
    out.layeractivations = [flat[a:b].clone().reshape(shape) for a, b, shape in
                            zip(offsets[:-1], offsets[1:], table.shapes)]
    if cls is Spectrum:
        out.transform_type, out.eigenvalues = batch.transform_type, batch.eigenvalues
    return out


class OutputLoader:
    """Store and load graphs (with their fitted transformers), activations and spectra."""

    @staticmethod
    def save(obj, path, producer: dict | None = None, parameters: dict | None = None) -> None:
        """Write ``obj`` to the HDF5 file ``path`` (atomically; folders are created).

        ``producer`` and ``parameters`` (JSON-serialisable dicts) are stored as
        provenance, e.g. the config entries that produced the object.
        """
        if isinstance(obj, (NNGraph, GraphCore)):
            if getattr(obj, "core", obj) is None:
                raise ValueError("this NNGraph was not built from activations: nothing to save")
            storage.write_graph(path, obj, producer=producer, parameters=parameters)
        elif isinstance(obj, Activations):
            storage.write_signals(path, to_batch(obj), producer=producer, parameters=parameters,
                                  obj=type(obj).__name__)
        elif isinstance(obj, SignalBatch):
            storage.write_signals(path, obj, producer=producer, parameters=parameters)
        elif isinstance(obj, (StandardTransform, LaplacianTransform, SemTransform)):
            storage.write_transformer(path, obj, producer=producer, parameters=parameters)
        else:
            raise TypeError(f"cannot save a {type(obj).__name__}; accepted: {_SAVABLE}")

    @staticmethod
    def load(path):
        """The object stored at ``path``, of the kind that was saved."""
        with storage.open_file(path) as f:
            kind, obj = str(f.attrs["kind"]), str(f.attrs["object"])
        if kind == "graph":
            graph = storage.read_graph(path)
            return graph.core if obj == "GraphCore" else graph
        if kind == "transformer":
            return storage.read_transformer(path)
        batch = storage.read_signals(path)
        return from_batch(batch) if obj in ("Activations", "Spectrum") else batch
