"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG.

Importing nsp changes no global state (no matplotlib backend, no environment
variables); the architecture is described in ``docs/architecture.md``.
"""

from importlib.metadata import PackageNotFoundError, version

from nsp.operations import OPERATIONS, ConnectivityError, OperationKind
from nsp.tracing import TRACE_MODES, LayerInfo, LayerTable, Recording, TraceError, record
from nsp.graph.core import EdgeWeightWarning, GraphCore
from nsp.storage import SignalBatch, SignalWriter, StorageError
from nsp.transforms import (TRANSFORMS, LaplacianTransform, NotFittedError, SemTransform, StandardTransform,
                            Transform, make_transform, register_transform)
from nsp.activations import Activations
from nsp.nngraph import NNGraph
from nsp.transformer import TRANSFORM_TYPES, Spectrum, Transformer
from nsp.outputloader import OutputLoader
from nsp.visualizer import Visualizer

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Activations", "NNGraph", "GraphCore", "LayerTable", "LayerInfo", "Recording", "record", "TraceError",
    "ConnectivityError", "EdgeWeightWarning", "TRACE_MODES", "OPERATIONS", "OperationKind",
    "Transform", "TRANSFORMS", "register_transform", "NotFittedError",
    "StandardTransform", "LaplacianTransform", "SemTransform", "Transformer", "Spectrum", "make_transform",
    "TRANSFORM_TYPES", "OutputLoader", "SignalBatch", "SignalWriter", "StorageError", "Visualizer",
]
