"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG."""

from importlib.metadata import PackageNotFoundError, version

from .activations import Activations
from .causal import StandardTransform
from .laplacian import LaplacianTransform
from .connectivity import ConnectivityError
from .graph import GraphCore
from .nngraph import NNGraph
from .outputloader import OutputLoader
from .visualizer import Visualizer
from .storage import LayerTable, SignalBatch, SignalWriter, StorageError
from .tracing import TRACE_MODES, TraceError
from .transformer import TRANSFORM_TYPES, Spectrum, Transformer, make_transform

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Activations", "NNGraph", "GraphCore", "TraceError", "ConnectivityError", "TRACE_MODES",
    "StandardTransform", "LaplacianTransform", "Transformer", "Spectrum", "make_transform", "TRANSFORM_TYPES",
    "OutputLoader", "LayerTable", "SignalBatch", "SignalWriter", "StorageError", "Visualizer",
]
