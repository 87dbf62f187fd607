"""Recording a network's layers: the plain-data layer table plus values and operations."""

from nsp.tracing.recording import TRACE_MODES, Recording, TraceError, record
from nsp.tracing.table import LayerInfo, LayerTable

__all__ = ["TRACE_MODES", "Recording", "TraceError", "record", "LayerInfo", "LayerTable"]
