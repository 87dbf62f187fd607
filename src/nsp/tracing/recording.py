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
"""

from __future__ import annotations

import inspect
import operator
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
from torch.func import functional_call

from nsp.operations import OPERATIONS, Op, classify_function, classify_method, classify_module, function_name
from nsp.operations.base import FALLBACK
from nsp.tracing import TRACE_MODES
from nsp.tracing.functions import CONSTANT_MAKERS, SHAPE_ONLY, capture
from nsp.tracing.table import LayerTable, plain
from nsp.errors import TraceError


@dataclass(eq=False)
class Layer:
    name: str
    description: Any
    value: torch.Tensor
    parents: tuple = ()
    op: Op | None = None
    op_inputs: tuple = ()   # layer index of each of op.in_shapes (parents may repeat, e.g. cat([x, x]))
    received: tuple = ()    # children mode: the tensor the child received (after functional ops)


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


def check_network(network) -> None:
    if not isinstance(network, nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")


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
        raise TypeError(f"input must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() == 0 or inputs.shape[0] < 1:
        raise ValueError(f"input must have a leading batch axis with at least one sample; got shape "
                         f"{tuple(inputs.shape)}")
    if trace not in TRACE_MODES:
        raise ValueError(f"unknown trace mode {trace!r}; accepted: {', '.join(TRACE_MODES)}")
    if warn:
        warn_training(network)
        warn_non_finite(inputs)
    with kept_buffers(network):
        if trace == "children":
            check_chain(network, inputs if network.training else inputs[:1])
        with torch.no_grad():
            if trace == "children":
                layers, output, how = _record_children(network, inputs), None, "module hooks"
            else:
                layers, output, how = _record_ops(network, inputs)
    one = None
    if inputs.shape[0] > 1:             # the first sample alone says where each layer keeps its samples
        try:
            one = record(network, inputs[:1], trace, warn=False).layers
        except Exception:               # a network that cannot run on one sample (batch norm in training mode):
            one = None                  # the samples are taken along each layer's first axis
    return Recording(layers, trace, int(inputs.shape[0]), output, how, one)


@contextmanager
def kept_buffers(module: nn.Module):
    """Run the body, then give every buffer of ``module`` its value from before, bit for bit (a forward pass
    in training mode updates BatchNorm's running statistics), also where the body replaced the tensor."""
    saved = [(name, b, b.detach().clone()) for name, b in module.named_buffers()
             if not isinstance(b, nn.parameter.UninitializedBuffer)]
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b, value in saved:
                b.copy_(value)
                owner, _, attribute = name.rpartition(".")
                holder = module.get_submodule(owner)
                if getattr(holder, attribute) is not b:     # the module replaced the tensor: put ours back
                    setattr(holder, attribute, b)


def training_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of each module of ``network`` in training mode whose output depends on that mode:
    dropout with p > 0 (also inside nn.MultiheadAttention and recurrent layers) and batch or instance
    norm with running statistics. Custom modules that read ``self.training`` cannot be told apart."""
    found = []
    for name, module in network.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd):
            depends = module.p > 0
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            depends = module.track_running_stats
        elif isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
            depends = module.dropout > 0
        else:
            depends = False
        if depends:
            found.append((name, module))
    return found


def warn_training(network: nn.Module) -> None:
    """A UserWarning naming the modules of ``network`` that run differently in training mode, if any."""
    found = training_modules(network)
    if not found:
        return
    named = [f"{name!r} ({type(m).__name__})" if name else f"the network itself ({type(m).__name__})"
             for name, m in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    _warn(f"{type(network).__name__} is in training mode; modules that run differently in training than in "
          f"evaluation: {', '.join(named)}{more} ({len(found)} in all). It is recorded as it is, in training "
          f"mode (dropout active, batch norm with the batch's own statistics); its buffers (running statistics) "
          f"are left unchanged. Call network.eval() first to record it as used for inference")


def warn_non_finite(inputs: torch.Tensor) -> None:
    """A UserWarning counting the NaN and infinite values of ``inputs``, if any."""
    if not (inputs.is_floating_point() or inputs.is_complex()):
        return
    nan = int(torch.isnan(inputs).sum())
    inf = int(torch.isinf(inputs).sum())
    if nan or inf:
        _warn(f"the input holds {nan} NaN and {inf} infinite values (of {inputs.numel()}); they are recorded "
              f"as they are, and activations computed from them may be NaN or infinite too")


def _warn(message: str) -> None:
    """``warnings.warn`` pointing at the first caller outside the nsp package."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("nsp."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _forward_failed(network, input, err) -> ValueError:
    training = "; it is in training mode: call network.eval() first if it should run as for inference" \
        if training_modules(network) else ""
    return ValueError(
        f"{type(network).__name__} failed on an input of shape {tuple(input.shape)} "
        f"({type(err).__name__}: {err}); pass samples in the shape the network expects, "
        f"after a leading batch axis{training}")


def _random_params(module: nn.Module, seed: int = 1) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            for name, p in module.named_parameters()}


def _module_evaluator(module: nn.Module, shapes: tuple):
    def evaluate(inputs, randomize):
        args = [x.reshape(s) for x, s in zip(inputs, shapes)]
        with kept_buffers(module):
            if randomize:
                return functional_call(module, _random_params(module), tuple(args))
            return module(*args)
    return evaluate


def _module_op(module: nn.Module, path: str, in_shapes: tuple, out_shape: tuple) -> Op:
    kind, params = classify_module(module)
    return Op(kind, path, params, in_shapes, out_shape, _module_evaluator(module, in_shapes),
              module if len(in_shapes) == 1 else None)


# --- children mode -----------------------------------------------------------

def check_chain(network: nn.Module, input: torch.Tensor) -> None:
    """Raise :class:`TraceError` unless each direct child reads the output of the child called before it
    (the input for the first) through elementwise code only (``F.relu``, reshapes, adding constants).

    Children mode wires exactly that, so anything else (a skip connection around a child, a transpose or
    permute between two children, a softmax between them) would give wrong edges. Decided by autograd on
    one sample: every child's output is cut from what came before, and the tensor the next child receives
    must have a diagonal Jacobian (in flat order) with respect to the previous output and none with
    respect to earlier ones. ``J`` is diagonal exactly when ``J^T v = (J^T 1) * v`` for a random ``v``.
    """
    if not input.is_floating_point():
        return                          # integer inputs (token ids): nothing to differentiate
    children = list(network.named_children()) or [(type(network).__name__, network)]
    finite = torch.nan_to_num(input.detach(), nan=0.0, posinf=0.0, neginf=0.0)    # NaN would fail the test
    start = finite.requires_grad_(True)
    cut = [("input", start)]            # (name, leaf) per recorded layer so far
    gen = torch.Generator().manual_seed(0)

    def before(name, module):
        def hook(mod, args):
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            if len(tensors) != 1 or not tensors[0].requires_grad:
                return None             # refused with its reason by the recording pass, or not a float tensor
            received, (previous, leaf) = tensors[0], cut[-1]
            if received.numel() != leaf.numel():
                return None
            v = torch.randn(received.shape, generator=gen, dtype=torch.float64).to(received.dtype)
            ones = torch.ones_like(received)
            grads = torch.autograd.grad([received], [l for _, l in cut], [ones], retain_graph=True,
                                        allow_unused=True)
            earlier = [n for (n, _), g in zip(cut[:-1], grads[:-1]) if g is not None and bool(g.ne(0).any())]
            if earlier:
                raise TraceError(
                    f"child module {name!r} ({type(module).__name__}) reads {earlier[0]!r}, not only the layer "
                    f"recorded before it ({previous!r}); children mode wires each child to the previous "
                    f"one, so this network needs trace='ops'")
            (weighted,) = torch.autograd.grad([received], [leaf], [v], retain_graph=True, allow_unused=True)
            plain = grads[-1]
            if plain is None or weighted is None:
                return None             # no dependence on the previous output at all: nothing to wire wrongly
            want = plain.reshape(-1).double() * v.reshape(-1).double()
            got = weighted.reshape(-1).double()
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()) + 1e-30):
                raise TraceError(
                    f"child module {name!r} ({type(module).__name__}) receives the output of {previous!r} "
                    f"rearranged or mixed by functional code between the two (a transpose, permute, "
                    f"softmax, ...), not elementwise; children mode would wire it neuron to neuron, so "
                    f"this network needs trace='ops'")
            return None
        return hook

    def after(name):
        def hook(mod, args, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                leaf = output.detach().requires_grad_(True)
                cut.append((name, leaf))
                return leaf.clone()     # a non-leaf: in-place code downstream stays legal
            return None
        return hook

    handles = []
    for name, module in children:
        handles.append(module.register_forward_pre_hook(before(name, module)))
        handles.append(module.register_forward_hook(after(name)))
    try:
        with torch.enable_grad(), kept_buffers(network):
            network(start.clone())
    except TraceError:
        raise
    except Exception as err:
        raise _forward_failed(network, input, err) from err
    finally:
        for h in handles:
            h.remove()


def _record_children(network: nn.Module, input: torch.Tensor) -> list[Layer]:
    layers = [Layer("input", f"Input{list(input.shape)}", input.detach().clone())]
    children = list(network.named_children()) or [(type(network).__name__, network)]
    calls = []

    def hook_for(name, module):
        def hook(mod, args, output):
            calls.append((name, module, [_snapshot(a) for a in args], _snapshot(output)))
        return hook

    handles = [m.register_forward_hook(hook_for(n, m)) for n, m in children]
    try:
        network(input)
    except Exception as err:
        raise _forward_failed(network, input, err) from err
    finally:
        for h in handles:
            h.remove()

    if not calls:
        raise TraceError(
            f"children mode recorded no layer: none of the direct children of {type(network).__name__} "
            f"({', '.join(n for n, _ in children)}) was called by its forward(); containers such as "
            f"nn.ModuleList are never called themselves. Use trace='ops'")
    for name, module, args, output in calls:
        if not isinstance(output, torch.Tensor):
            raise TraceError(
                f"child module {name!r} ({type(module).__name__}) returned {type(output).__name__}, "
                f"not a tensor; children mode records tensor outputs only, use trace='ops'")
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        previous = layers[-1]
        if len(tensors) != 1 or tensors[0].numel() != previous.value.numel():
            got = ", ".join(str(tuple(t.shape)) for t in tensors) or "no tensor"
            raise TraceError(
                f"children mode connects child module {name!r} ({type(module).__name__}) to the layer "
                f"recorded before it ({previous.name!r}, shape {tuple(previous.value.shape)}), but it "
                f"received {got}; the network's dataflow is not a chain of its children, use trace='ops'")
        in_shape = tuple(tensors[0].shape)
        op = _module_op(module, name, (in_shape,), tuple(output.shape))
        layers.append(Layer(name, module, output, (len(layers) - 1,), op, (len(layers) - 1,), (tensors[0],)))
    return layers


# --- ops mode ------------------------------------------------------------------

def _contains_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_contains_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_tensor(v) for v in value.values())
    return False


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_snapshot(v) for v in value) if not hasattr(value, "_fields") else value
    return value


class _StaleView(RuntimeError):
    """A node read a tensor whose memory was written in place through another one (a view, or its base)."""


class _Recorder(fx.Interpreter):
    """Runs the traced graph, keeping a snapshot of every node's value and,
    for in-place operations, which node last wrote each tensor object."""

    def __init__(self, gm):
        super().__init__(gm, garbage_collect_values=False)
        self.snap = {}
        self.sources = {}    # node -> {arg node: node that last wrote that tensor}
        self._writer = {}    # id(tensor) -> node
        self._stale = {}     # id(tensor) -> name of the node that wrote its memory through another tensor

    def run_node(self, n):
        for a in n.all_input_nodes:
            if id(self.env[a]) in self._stale:
                raise _StaleView(f"{n.name!r} reads {a.name!r}, which {self._stale[id(self.env[a])]!r} changed by "
                                 f"writing in place to a tensor that shares its memory")
        self.sources[n] = {a: self._writer.get(id(self.env[a]), a) if isinstance(self.env[a], torch.Tensor) else a
                           for a in n.all_input_nodes}
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            if any(out is self.env[a] for a in n.all_input_nodes):      # written in place
                self._mark_aliases(n, out)
            self._writer[id(out)] = n
        self.snap[n] = _snapshot(out)
        return out

    def _mark_aliases(self, n, written: torch.Tensor) -> None:
        """Every other tensor sharing the written one's memory (a view of it, or its base) is stale now."""
        memory = written.untyped_storage().data_ptr()
        for node, value in self.env.items():
            if isinstance(value, torch.Tensor) and value is not written and node.op != "get_attr" \
                    and value.untyped_storage().data_ptr() == memory:
                self._stale[id(value)] = n.name

    def source(self, user, arg):
        """The node whose value ``user`` really read through argument ``arg``."""
        return self.sources[user][arg]


def _record_ops(network: nn.Module, input: torch.Tensor) -> tuple[list[Layer], int | None, str]:
    """Layers, the returned layer, and how they were captured (torch.fx, or the calls of a real forward
    pass where torch.fx fails, with its reason)."""
    try:
        gm = fx.symbolic_trace(network, concrete_args=_optional_arguments(network))
    except Exception as err:
        return _captured(network, input, f"torch.fx could not trace {type(network).__name__} "
                                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    extra = [n.name for n in placeholders[1:] if not n.args]
    if extra:
        raise TraceError(f"{type(network).__name__}.forward takes more inputs than one ({', '.join(extra)}); "
                         f"nsp records networks with a single input tensor")
    rec = _Recorder(gm)
    try:
        rec.run(input.detach().clone())     # in-place code on the input leaves the caller's tensor alone
    except _StaleView as err:
        return _captured(network, input, f"the torch.fx graph does not show in-place writes through views: {err}")
    except Exception as err:
        try:                            # the real forward pass may still run where the traced graph cannot
            network(input.detach().clone())
        except Exception as real:
            raise _forward_failed(network, input, real) from real
        return _captured(network, input, f"the torch.fx graph of {type(network).__name__} failed where its "
                                         f"forward() runs ({type(err).__name__}: {str(err).splitlines()[0]})")

    depends = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            depends[n] = n is placeholders[0]
        elif n.op in ("get_attr", "output"):
            depends[n] = False
        elif (n.op == "call_method" and n.target in CONSTANT_MAKERS) or getattr(n.target, "__name__", None) in \
                CONSTANT_MAKERS and n.op == "call_function":
            depends[n] = False              # zeros_like(x), x.new_zeros(...): constants
        else:
            depends[n] = _contains_tensor(rec.snap[n]) and any(depends[s] for s in rec.sources[n].values())

    index = {}
    layers = []
    for n in gm.graph.nodes:
        if not depends[n] or not isinstance(rec.snap[n], torch.Tensor):
            continue
        if n.op == "placeholder":
            index[n] = 0
            layers.append(Layer("input", f"Input{list(input.shape)}", rec.snap[n]))
            continue
        parents = _parents(n, rec, depends, index)
        if n.op == "call_method" and n.target in SHAPE_ONLY:
            parents = [_first_arg(n, rec)]  # the other tensor gives only its shape or dtype
        op, op_inputs = _fx_op(gm, n, rec, depends, index, parents)
        index[n] = len(layers)
        layers.append(Layer(n.name, _describe(gm, n), rec.snap[n], tuple(index[p] for p in parents), op,
                            tuple(index[p] for p in op_inputs)))
    returned = [n for n in gm.graph.nodes if n.op == "output"][0].args[0]
    output = index.get(rec.source([n for n in gm.graph.nodes if n.op == "output"][0], returned)) \
        if isinstance(returned, fx.Node) else None
    return layers, output, "torch.fx"


def _optional_arguments(network: nn.Module) -> dict:
    """The arguments of ``forward`` after the first that have defaults, at their defaults (torch.fx would
    otherwise trace them as inputs and take ``if arg is None`` the wrong way)."""
    try:
        parameters = list(inspect.signature(network.forward).parameters.values())
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters[1:]
            if p.default is not inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _captured(network: nn.Module, input: torch.Tensor, reason: str) -> tuple[list[Layer], int | None, str]:
    """The layers recorded from the calls of a real forward pass (where torch.fx fails, for ``reason``)."""
    try:
        layers, output = capture(network, input)
    except Exception as second:
        raise TraceError(
            f"{reason}. torch.fx runs forward() on symbolic tensors, so Python control flow on a tensor's "
            f"values or shape (for example 'if x.shape[-1] != size:') or a call it cannot follow stops "
            f"it; recording the calls of a real forward pass failed too ({type(second).__name__}: "
            f"{second}); use trace='children', which records the outputs of the child modules "
            f"instead") from second
    return layers, output, f"functions ({reason})"


def _parents(n, rec, depends, index) -> list:
    """Layer nodes feeding ``n``, through intermediate non-layer nodes (tuples)."""
    found = []
    for a in n.all_input_nodes:
        src = rec.source(n, a)
        if not depends.get(src):
            continue
        if src in index:
            if src not in found:
                found.append(src)
        else:
            for p in _parents(src, rec, depends, index):
                if p not in found:
                    found.append(p)
    return found


def _tensor_args(n, rec, depends):
    """The argument nodes of ``n`` that are input-dependent, in argument order."""
    nodes = []
    fx.node.map_arg((n.args, n.kwargs), lambda a: nodes.append(a))
    return [rec.source(n, a) for a in nodes if depends.get(rec.source(n, a))]


def _fx_op(gm, node, rec, depends, index, parents) -> tuple[Op, list]:
    n = node
    values = fx.node.map_arg(n.args, lambda a: rec.snap[a])
    kwvalues = fx.node.map_arg(n.kwargs, lambda a: rec.snap[a])
    if n.op == "call_module":
        kind, params = classify_module(gm.get_submodule(n.target), values, kwvalues)
        path = n.target
    elif n.op == "call_function":
        kind, params = classify_function(n.target, values, kwvalues)
        path = function_name(n.target)
    else:
        kind, params = classify_method(n.target, values, kwvalues)
        path = n.target
    direct = _tensor_args(n, rec, depends)
    if n.op == "call_method" and n.target in SHAPE_ONLY:
        direct = direct[:1]
    if any(a not in index for a in direct):
        # reads a tuple-valued node: a piece of chunk/split/unbind is data movement, an item a rule
        # describes (the output of nn.MultiheadAttention) is that rule's, the rest has no rule
        if _piece_of_data_movement(gm, n, rec, depends, index):
            kind, params = "gather", {}
        else:
            n, kind, params, path = _described_piece(gm, n, rec) or (n, FALLBACK, {}, path)
    elif OPERATIONS[kind].single_input and (len(set(direct)) != 1 or direct[0] is not _first_arg(n, rec)):
        kind, params = "jacobian", {}       # e.g. weights computed from the input
    elif OPERATIONS[kind].sequence_input:
        seq = values[0] if values else kwvalues.get("tensors")
        items = n.args[0] if n.args else n.kwargs["tensors"]
        layer_items = [i for i, a in enumerate(items) if isinstance(a, fx.Node) and depends.get(rec.source(n, a))]
        if all(rec.source(n, items[i]) in index for i in layer_items):
            # constants concatenated with layers (a class token) are rows without parents
            params = dict(params, shapes=[list(t.shape) for t in seq], items=layer_items)
            in_shapes = tuple(tuple(seq[i].shape) for i in layer_items)
            op_inputs = [rec.source(n, items[i]) for i in layer_items]
            return Op(kind, path, params, in_shapes, tuple(rec.snap[n].shape)), op_inputs
        kind, params = "jacobian", {}
    if OPERATIONS[kind].positional:
        params = dict(params, roles=[[i for i, a in enumerate(n.args) if isinstance(a, fx.Node)
                                      and rec.source(n, a) is p] for p in parents])
        if any(not r for r in params["roles"]):
            kind, params = "jacobian", {}   # a parent reached through keyword arguments or containers
    in_shapes = tuple(tuple(rec.snap[p].shape) for p in parents)
    evaluate = _fx_evaluator(gm, node, rec, depends, index, parents)
    module = None
    if n is node and n.op == "call_module" and not n.kwargs and len(n.args) == 1 and len(parents) == 1 \
            and _first_arg(n, rec) is parents[0]:
        module = gm.get_submodule(n.target)
    elif kind == FALLBACK and n.op == "call_function" and len(parents) == 1 and inspect.isfunction(n.target) \
            and n.target.__module__.split(".")[0] != "torch":
        module = _Call(path, evaluate)          # a Python function torch.fx kept whole (torch.fx.wrap)
    op = Op(kind, path, params, in_shapes, tuple(rec.snap[node].shape), evaluate, module)
    return op, parents


class _Call(nn.Module):
    """A call of a Python function on one layer, as a module whose internals can be traced."""

    def __init__(self, name: str, evaluate):
        super().__init__()
        self.name = name
        self.evaluate = evaluate

    def forward(self, x):
        return self.evaluate((x,), False)

    def extra_repr(self) -> str:
        return self.name


def _described_piece(gm, n, rec) -> tuple | None:
    """For ``call(...)[i]`` where a rule describes item ``i`` of the call's result: the call's node, kind,
    parameters (with ``piece``) and path; else None."""
    if n.op != "call_function" or n.target is not operator.getitem or not isinstance(n.args[0], fx.Node) \
            or not isinstance(n.args[1], int):
        return None
    producer = rec.source(n, n.args[0])
    values = fx.node.map_arg(producer.args, lambda a: rec.snap[a])
    kwvalues = fx.node.map_arg(producer.kwargs, lambda a: rec.snap[a])
    if producer.op == "call_module":
        (kind, params), path = classify_module(gm.get_submodule(producer.target), values, kwvalues), producer.target
    elif producer.op == "call_function":
        (kind, params), path = classify_function(producer.target, values, kwvalues), function_name(producer.target)
    else:
        return None
    if kind == FALLBACK or n.args[1] not in OPERATIONS[kind].pieces:
        return None
    return producer, kind, dict(params, piece=n.args[1]), path


def _piece_of_data_movement(gm, n, rec, depends, index) -> bool:
    """``n`` is ``tuple[i]`` of a data-movement call (chunk, split, unbind, ...) on one layer."""
    if n.op != "call_function" or n.target is not operator.getitem or not isinstance(n.args[0], fx.Node):
        return False
    producer = rec.source(n, n.args[0])
    if producer.op not in ("call_function", "call_method"):
        return False
    values = fx.node.map_arg(producer.args, lambda a: rec.snap[a])
    kwvalues = fx.node.map_arg(producer.kwargs, lambda a: rec.snap[a])
    classify = classify_function if producer.op == "call_function" else classify_method
    kind, _ = classify(producer.target, values, kwvalues)
    direct = _tensor_args(producer, rec, depends)
    return kind == "gather" and len(set(direct)) == 1 and direct[0] in index and direct[0] is _first_arg(producer, rec)


def _first_arg(n, rec):
    a = n.args[0] if n.args else next(iter(n.kwargs.values()), None)
    return rec.source(n, a) if isinstance(a, fx.Node) else None


def _fx_evaluator(gm, target, rec, depends, index, parents):
    """Recompute ``target`` from new values of its parent layers."""

    def evaluate(inputs, randomize):
        given = {p: x.clone() for p, x in zip(parents, inputs)}
        cache = {}
        gen = torch.Generator().manual_seed(1)

        def value(node, user):
            src = rec.source(user, node)
            if src in given:
                return given[src]
            if depends.get(src) and src not in index:
                return compute(src)
            v = rec.snap[src]
            if randomize and src.op == "get_attr" and isinstance(v, torch.Tensor) and v.is_floating_point():
                return torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v.dtype)
            return v

        def compute(node):
            if node in cache:
                return cache[node]
            args = fx.node.map_arg(node.args, lambda a: value(a, node))
            kwargs = fx.node.map_arg(node.kwargs, lambda a: value(a, node))
            if node.op == "call_function":
                out = node.target(*args, **kwargs)
            elif node.op == "call_method":
                out = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                module = gm.get_submodule(node.target)
                with kept_buffers(module):
                    if randomize:
                        out = functional_call(module, _random_params(module), tuple(args), kwargs)
                    else:
                        out = module(*args, **kwargs)
            cache[node] = out
            return out

        return compute(target)

    return evaluate


def _describe(gm, n) -> Any:
    if n.op == "call_module":
        return gm.get_submodule(n.target)
    name = function_name(n.target) if n.op == "call_function" else n.target
    args = []
    for a in n.args:
        args.append(a.name if isinstance(a, fx.Node) else repr(a))
    args += [f"{k}={v.name if isinstance(v, fx.Node) else repr(v)}" for k, v in n.kwargs.items()]
    return f"{name}({', '.join(args)})"
