"""Recording a network's layers: the plain-data layer table plus values and operations.

The recording (and torch) is imported when one of its names is first used; the layer table alone is light.
"""

from nsp._lazy import exports

#: how a network is cut into layers: its child modules, or every operation torch.fx sees
TRACE_MODES = ("children", "ops")

__getattr__, __dir__ = exports(__name__, {
    "Recording": "nsp.tracing.recording", "TraceError": "nsp.tracing.recording", "record": "nsp.tracing.recording",
    "LayerInfo": "nsp.tracing.table", "LayerTable": "nsp.tracing.table"})

__all__ = ["TRACE_MODES", "Recording", "TraceError", "record", "LayerInfo", "LayerTable"]
