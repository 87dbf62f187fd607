"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG."""

from importlib.metadata import PackageNotFoundError, version

from nsp.activations import Activations
from nsp.transforms.standard import StandardTransform
from nsp.operations.connectivity import ConnectivityError
from nsp.graph.core import GraphCore
from nsp.transforms.laplacian import LaplacianTransform
from nsp.transforms.sem import SemTransform
from nsp.nngraph import NNGraph
from nsp.outputloader import OutputLoader
from nsp.storage.hdf5 import LayerTable, SignalBatch, SignalWriter, StorageError
from nsp.tracing.recording import TRACE_MODES, TraceError
from nsp.transformer import TRANSFORM_TYPES, Spectrum, Transformer, make_transform
from nsp.visualizer import Visualizer

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Activations", "NNGraph", "GraphCore", "TraceError", "ConnectivityError", "TRACE_MODES",
    "StandardTransform", "LaplacianTransform", "SemTransform", "Transformer", "Spectrum", "make_transform", "TRANSFORM_TYPES",
    "OutputLoader", "LayerTable", "SignalBatch", "SignalWriter", "StorageError", "Visualizer",
]
