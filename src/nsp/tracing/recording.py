"""Recording a network's layers: values, parent layers and operations.

Two modes:

``children`` (the reference package's semantics)
    Layer 0 is the input; then one layer per output of each direct child
    module, in call order (a child called twice gives two layers). Functional
    operations between children (``F.relu``, ``x.view``) are not layers, so
    each layer's single parent is the layer recorded before it, reshaped to
    the shape the child actually received.

``ops`` (full dataflow, via :mod:`torch.fx`)
    Every operation whose output is a new tensor computed from the input is
    a layer: modules, functional activations, views, residual additions,
    concatenations. Each layer knows its parent layers.

Both produce a :class:`Recording`: the plain-data :class:`LayerTable` plus,
per layer, the recorded tensor (batch axis included) and the operation that
made it (which the graph builder needs). :func:`record` takes one sample or
a batch; :class:`nsp.Activations` is the one-sample facade over it.

This module holds the public API; the modes themselves live in :mod:`nsp.tracing.children` and
:mod:`nsp.tracing.symbolic` (with :mod:`nsp.tracing.functions` where torch.fx fails), the per-layer
record in :mod:`nsp.tracing.layer` and the checks and warnings in :mod:`nsp.tracing.checks`. The names
those modules define that callers use are importable from here too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from nsp.errors import InputError, InputTypeError, TraceError
from nsp.tracing import TRACE_MODES
from nsp.tracing.checks import check_network, training_modules, warn_non_finite, warn_training
from nsp.tracing.children import check_chain, record_children
from nsp.tracing.layer import Layer, kept_buffers
from nsp.tracing.symbolic import record_ops
from nsp.tracing.table import LayerTable, plain

__all__ = ["Recording", "record", "record_values", "BatchAxisError", "TraceError", "Layer", "check_network",
           "check_chain", "kept_buffers", "training_modules", "warn_training", "warn_non_finite"]


class Recording:
    """What one run of a network recorded: the layer table and, per layer, its values and operation.

    ``table`` is the :class:`LayerTable` (shapes without the batch axis);
    ``layers`` the runtime records (tensors with the batch axis, operations
    with their evaluators) that :meth:`nsp.GraphCore.from_recording` reads;
    ``batch`` the number of samples.
    """

    def __init__(self, layers: list, trace: str, batch: int, output: int | None = None, capture: str = "",
                 one: list | None = None):
        """``one``: for a batch of several samples, the layers recorded for its first sample alone; they say
        which axis of each layer holds the samples (a permute may have moved it off the front)."""
        self.layers = layers
        self.axes = [0] * len(layers) if one is None else _batch_axes(layers, one, batch)
        self.trace = trace
        self.batch = batch
        self.capture = capture          # how ops mode captured the layers (and why, where torch.fx failed)
        self.output = len(layers) - 1 if output is None else output     # the layer the network returns
        self.table = LayerTable.build(
            names=[l.name for l in layers],
            kinds=["input"] + [l.op.kind for l in layers[1:]],
            paths=[""] + [l.op.path for l in layers[1:]],
            descriptions=[str(l.description) for l in layers],
            shapes=[_sample_shape(l.value, batch) for l in layers] if one is None else
                   [_sample_shape(l.value, 1) for l in one],
            parents=[l.parents for l in layers],
            params=[{}] + [plain(l.op.params) for l in layers[1:]])

    def values(self, dtype=np.float32) -> np.ndarray:
        """The recorded activations as a (samples, nodes) array in node order."""
        return np.concatenate([l.value.detach().movedim(axis, 0).reshape(self.batch, -1).cpu().numpy()
                               .astype(dtype, copy=False) for l, axis in zip(self.layers, self.axes)], axis=1)


class BatchAxisError(TraceError):
    """A batch whose layers do not keep its samples along one axis: record one sample at a time."""


def record_values(network: nn.Module, inputs: torch.Tensor, trace: str = "children", dtype=np.float32) -> np.ndarray:
    """The (samples, nodes) activations of a batch, in node order: recorded in one run, or one sample at a
    time where the network's layers do not keep the samples along one axis (Swin's window partition folds
    them into the windows' axis)."""
    try:
        return record(network, inputs, trace).values(dtype)
    except BatchAxisError:
        return np.concatenate([record(network, inputs[i:i + 1], trace, warn=False).values(dtype)
                               for i in range(inputs.shape[0])])


def _batch_axes(layers: list, one: list, batch: int) -> list:
    """Per layer, the axis of its batch recording that holds the samples: where the first sample's own
    recording has size 1 and the batch's has ``batch``, every other axis the same."""
    if len(one) != len(layers):
        raise BatchAxisError(f"the network records {len(layers)} layers for {batch} samples but {len(one)} for one: "
                         f"it runs differently by batch size; record one sample at a time")
    axes = []
    for layer, single in zip(layers, one):
        many, alone = tuple(layer.value.shape), tuple(single.value.shape)
        found = [k for k in range(len(many)) if len(alone) == len(many) and many[k] == batch and alone[k] == 1
                 and many[:k] + many[k + 1:] == alone[:k] + alone[k + 1:]]
        if not found:
            raise BatchAxisError(f"layer {layer.name!r} has shape {many} for {batch} samples and {alone} for one: its "
                             f"samples are not along one axis (the batch axis is merged with another); record one "
                             f"sample at a time")
        axes.append(0 if 0 in found else found[0])
    return axes


def _sample_shape(value: torch.Tensor, batch: int) -> tuple:
    """Shape of one sample's part of a recorded tensor (the leading batch axis dropped)."""
    if value.dim() > 0 and value.shape[0] == batch:
        return tuple(value.shape[1:])
    return tuple(value.shape)


def record(network: nn.Module, inputs: torch.Tensor, trace: str = "children", *, warn: bool = True) -> Recording:
    """Run ``network`` on a batch ``inputs`` (leading batch axis) and record its layers in the given mode.

    The network runs as it is, in its current train/eval mode; a ``UserWarning`` names the modules that
    behave differently in training mode (dropout, batch norm) if any is in it, and another counts NaN and
    infinite input values (recorded as they are); ``warn=False`` (graph building recording a part of a
    network that was recorded before) omits both. The network's buffers (BatchNorm running statistics) are
    the same afterwards, bit for bit.
    """
    check_network(network)
    if isinstance(inputs, np.ndarray):
        inputs = torch.from_numpy(inputs)
    if not isinstance(inputs, torch.Tensor):
        raise InputTypeError(f"input must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] < 1:
        raise InputError(f"input must have a leading batch axis with at least one sample; got shape "
                         f"{tuple(inputs.shape)}")
    if trace not in TRACE_MODES:
        raise InputError(f"unknown trace mode {trace!r}; accepted: {', '.join(TRACE_MODES)}")
    if warn:
        warn_training(network)
        warn_non_finite(inputs)
    with kept_buffers(network):
        if trace == "children":
            check_chain(network, inputs if network.training else inputs[:1])
        with torch.no_grad():
            if trace == "children":
                layers, output, how = record_children(network, inputs), None, "module hooks"
            else:
                layers, output, how = record_ops(network, inputs)
    one = None
    if inputs.shape[0] > 1:             # the first sample alone says where each layer keeps its samples
        try:
            one = record(network, inputs[:1], trace, warn=False).layers
        except Exception:               # a network that cannot run on one sample (batch norm in training mode):
            one = None                  # the samples are taken along each layer's first axis
    return Recording(layers, trace, int(inputs.shape[0]), output, how, one)
