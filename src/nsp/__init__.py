"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG."""

from importlib.metadata import PackageNotFoundError, version

from .activations import Activations
from .causal import StandardTransform
from .connectivity import ConnectivityError
from .graph import GraphCore
from .laplacian import LaplacianTransform
from .sem import SemTransform
from .nngraph import NNGraph
from .outputloader import OutputLoader
from .storage import LayerTable, SignalBatch, SignalWriter, StorageError
from .tracing import TRACE_MODES, TraceError
from .transformer import TRANSFORM_TYPES, Spectrum, Transformer, make_transform
from .visualizer import Visualizer

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Activations", "NNGraph", "GraphCore", "TraceError", "ConnectivityError", "TRACE_MODES",
    "StandardTransform", "LaplacianTransform", "SemTransform", "Transformer", "Spectrum", "make_transform", "TRANSFORM_TYPES",
    "OutputLoader", "LayerTable", "SignalBatch", "SignalWriter", "StorageError", "Visualizer",
]
