"""Recording a network's layers (values, parents, operations)."""

from nsp.tracing.recording import TRACE_MODES, TraceError, record
