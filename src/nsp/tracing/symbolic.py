"""Ops mode through torch.fx: every operation on the input in the traced graph is a layer.

:func:`record_ops` traces the network symbolically, runs the traced graph on the real input (keeping every
node's value and, for in-place code, which node really wrote each tensor), and makes a layer of each node
whose value is a tensor computed from the input: modules, functions, tensor methods. Each layer's operation
carries an evaluator that recomputes it from new values of its parent layers. Where torch.fx cannot trace
the network, or its graph does not run as the network does, the calls of a real forward pass are recorded
instead (:mod:`nsp.tracing.functions`).
"""

from __future__ import annotations

import inspect
import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.func import functional_call

from nsp.errors import TraceError
from nsp.operations import OPERATIONS, Op, classify_function, classify_method, classify_module, function_name
from nsp.operations.base import FALLBACK, named_module
from nsp.tracing.checks import forward_failed
from nsp.tracing.functions import CONSTANT_MAKERS, SHAPE_ONLY, capture
from nsp.tracing.layer import Layer, kept_buffers, random_params, snapshot


def _contains_tensor(value) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_contains_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_tensor(v) for v in value.values())
    return False



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
        self.snap[n] = snapshot(out)
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


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping whole every module whose class an operation kind names (torch.fx keeps
    only torch.nn's own modules whole, so a kind written for a module of the user's would never see it)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return super().is_leaf_module(m, module_qualified_name) or named_module(m)


def record_ops(network: nn.Module, input: torch.Tensor) -> tuple[list[Layer], int | None, str]:
    """Layers, the returned layer, and how they were captured (torch.fx, or the calls of a real forward
    pass where torch.fx fails, with its reason)."""
    try:
        tracer = _Tracer()
        graph = tracer.trace(network, concrete_args=_optional_arguments(network))
        gm = fx.GraphModule(tracer.root, graph, type(network).__name__)
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
            raise forward_failed(network, input, real) from real
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
                        out = functional_call(module, random_params(module), tuple(args), kwargs)
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
