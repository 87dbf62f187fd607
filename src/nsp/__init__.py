"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG."""

from importlib.metadata import PackageNotFoundError, version

from .activations import Activations
from .connectivity import ConnectivityError
from .graph import GraphCore
from .nngraph import NNGraph
from .tracing import TRACE_MODES, TraceError

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["Activations", "NNGraph", "GraphCore", "TraceError", "ConnectivityError", "TRACE_MODES"]
