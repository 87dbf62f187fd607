"""nsp: activation patterns of PyTorch networks as signals on their neuron-level DAG.

Importing nsp changes no global state (no matplotlib backend, no environment
variables); the architecture is described in ``docs/architecture.md``.
"""

from importlib.metadata import PackageNotFoundError, version

from nsp._lazy import exports

try:
    __version__ = version("nsp")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

# Public names load on first use: ``import nsp`` alone imports neither torch nor matplotlib.
__getattr__, __dir__ = exports(__name__, {
    **dict.fromkeys(["OPERATIONS", "ConnectivityError", "OperationKind"], "nsp.operations"),
    **dict.fromkeys(["TRACE_MODES", "LayerInfo", "LayerTable", "Recording", "TraceError", "record"], "nsp.tracing"),
    **dict.fromkeys(["EdgeWeightWarning", "GraphCore"], "nsp.graph.core"),
    **dict.fromkeys(["SignalBatch", "SignalWriter", "StorageError"], "nsp.storage"),
    **dict.fromkeys(["TRANSFORMS", "InfluenceTransform", "LaplacianTransform", "NotFittedError", "SemTransform",
                     "StandardTransform", "Transform", "make_transform", "register_transform"], "nsp.transforms"),
    "Activations": "nsp.activations", "NNGraph": "nsp.nngraph", "OutputLoader": "nsp.outputloader",
    **dict.fromkeys(["TRANSFORM_TYPES", "Spectrum", "Transformer"], "nsp.transformer"),
    "Visualizer": "nsp.visualizer", "NspError": "nsp.errors"})

__all__ = [
    "Activations", "NNGraph", "GraphCore", "LayerTable", "LayerInfo", "Recording", "record", "TraceError",
    "ConnectivityError", "EdgeWeightWarning", "TRACE_MODES", "OPERATIONS", "OperationKind",
    "Transform", "TRANSFORMS", "register_transform", "NotFittedError",
    "StandardTransform", "LaplacianTransform", "SemTransform", "InfluenceTransform", "Transformer", "Spectrum", "make_transform",
    "TRANSFORM_TYPES", "OutputLoader", "SignalBatch", "SignalWriter", "StorageError", "Visualizer", "NspError",
]
