"""Ops-mode capture for networks torch.fx cannot trace: the calls a real forward pass makes.

torch.fx runs ``forward`` on symbolic values, so Python code that branches
on a tensor's shape or values stops it. This capture runs ``forward`` on the
real input instead and records, through a ``TorchFunctionMode`` and global
module hooks, every torch function, tensor method and module call whose
result depends on the input: branches are taken as the input takes them
(the graph is the graph of that input's shapes). Modules with a rule are
recorded whole (their internals are not); other modules are traced
through. Each record carries an evaluator that repeats the call on new
inputs, so the rules, the data-movement index evaluation and the Jacobian
fallback work as for fx. :func:`capture` returns the same ``Layer`` list
as the fx path (:mod:`nsp.tracing.symbolic`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from nsp.operations import OPERATIONS, Op, classify_function, classify_method, classify_module
from nsp.operations.base import FALLBACK
from nsp.tracing.layer import Layer, module_op

#: tensor methods that are operators, as the functions the operation kinds know
_OPERATORS = {"__add__": "add", "__radd__": "add", "__sub__": "sub", "__mul__": "mul", "__rmul__": "mul",
              "__truediv__": "div", "__neg__": "neg", "__matmul__": "matmul", "__getitem__": "__getitem__",
              "__iadd__": "add_", "__isub__": "sub_", "__imul__": "mul_", "__itruediv__": "div_"}
#: methods whose second tensor gives only its shape or dtype (no dependence on its values; both captures)
SHAPE_ONLY = {"view_as", "reshape_as", "expand_as", "type_as"}
#: calls that make a new tensor from another one's shape, dtype and device only: constants (both captures)
CONSTANT_MAKERS = {"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "zeros_like", "ones_like",
                   "full_like", "empty_like", "rand_like", "randn_like", "randint_like"}
#: properties that compute a tensor from a tensor
_PROPERTIES = {"T": "T", "mT": "mT", "data": "detach"}


def _leaves(value) -> list:
    """The leaves of nested tuples, lists and dicts (call arguments), in order."""
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    return [value]


def _map(fn, value, key=None):
    """``value`` with every leaf ``v`` replaced by ``fn(v)`` (or ``fn(v, k)`` with the leaf of ``key`` at the
    same place), keeping tuples, lists and dicts."""
    if isinstance(value, (tuple, list)) and not hasattr(value, "_fields"):
        keys = key if key is not None else [None] * len(value)
        return type(value)(_map(fn, v, k) for v, k in zip(value, keys))
    if isinstance(value, dict):
        return {name: _map(fn, v, None if key is None else key[name]) for name, v in value.items()}
    return fn(value) if key is None else fn(value, key)


class _Node:
    def __init__(self, name, description, value, parents, op, op_inputs):
        self.name, self.description, self.value = name, description, value
        self.parents, self.op, self.op_inputs = parents, op, op_inputs


def _name(func) -> str:
    name = getattr(func, "__name__", repr(func))
    if name == "__get__":
        name = getattr(getattr(func, "__self__", None), "__name__", name)
    return name


class _Capture(TorchFunctionMode):
    def __init__(self, network: nn.Module, input: torch.Tensor):
        super().__init__()
        self.layers = []                # recorded nodes; layer 0 is the input
        self.owner = {}                 # id(tensor) -> layer index of its current value
        # every tensor seen, by its memory (kept alive, so that ids are never reused)
        self.memory = {input.untyped_storage().data_ptr(): [input]}
        self.names = {}
        self.paths = {id(m): n for n, m in network.named_modules()}
        self.inside = None              # the module with a rule being recorded whole

    # -- bookkeeping ------------------------------------------------------------------------------

    def layer(self, name, description, value, parents, op, op_inputs) -> int:
        count = self.names.get(name, 0)
        self.names[name] = count + 1
        self.layers.append(_Node(name if count == 0 else f"{name}_{count}", description, value.detach().clone(),
                                 tuple(parents), op, tuple(op_inputs)))
        return len(self.layers) - 1

    def keep(self, tensor: torch.Tensor) -> None:
        self.memory.setdefault(tensor.untyped_storage().data_ptr(), []).append(tensor)

    def tracked(self, value) -> list:
        """(tensor, layer) for the input-dependent tensors among ``value`` (nested), in order."""
        found = []
        for leaf in _leaves(value):
            if isinstance(leaf, torch.Tensor) and id(leaf) in self.owner:
                found.append((leaf, self.owner[id(leaf)]))
        return found

    # -- functions and methods --------------------------------------------------------------------

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.inside is not None or _name(func) in CONSTANT_MAKERS:
            return out
        inputs = self.tracked(args[:1] if _name(func) in SHAPE_ONLY else (args, kwargs))
        if not inputs:
            return out
        if _name(func) == "__setitem__" and isinstance(args[0], torch.Tensor):
            out, func = args[0], _setitem        # a write in place: the written tensor is a new layer
        if isinstance(out, torch.Tensor):
            pieces = [(None, out)]
        elif isinstance(out, (tuple, list)):
            pieces = [(i, o) for i, o in enumerate(out) if isinstance(o, torch.Tensor)]
        else:
            pieces = []
        if not pieces:
            return out                  # sizes, booleans, scalars: not layers
        kind, params = self.classify(func, args, kwargs)
        parents = list(dict.fromkeys(layer for _, layer in inputs))
        first = args[0] if args else None
        if OPERATIONS[kind].single_input and not (len(parents) == 1 and isinstance(first, torch.Tensor)
                                                  and self.owner.get(id(first)) == parents[0]):
            kind, params = FALLBACK, {}
        if func is _setitem and not self.tracked(args[1]):
            kind, params = "gather", {}     # values copied into a constant place: data movement from both
        if OPERATIONS[kind].positional:
            params = dict(params, roles=[[i for i, a in enumerate(args) if isinstance(a, torch.Tensor)
                                          and self.owner.get(id(a)) == p] for p in parents])
            if any(not r for r in params["roles"]):
                kind, params = FALLBACK, {}
        if OPERATIONS[kind].sequence_input:
            items = list(args[0]) if args else list(kwargs.get("tensors", []))
            layer_items = [i for i, t in enumerate(items) if id(t) in self.owner]
            params = dict(params, shapes=[list(t.shape) for t in items], items=layer_items)
            op_inputs = [self.owner[id(items[i])] for i in layer_items]
        else:
            op_inputs = parents
        for index, piece in pieces:
            evaluate = _evaluator(func, args, kwargs, self.owner, op_inputs, index)
            in_shapes = tuple(tuple(self.layers[p].value.shape) for p in op_inputs)
            if index is None or kind == "gather":
                op = Op(kind, _name(func), params, in_shapes, tuple(piece.shape), evaluate)
            elif index in OPERATIONS[kind].pieces:    # an item of the result a rule describes
                op = Op(kind, _name(func), dict(params, piece=index), in_shapes, tuple(piece.shape), evaluate)
            else:
                op = Op(FALLBACK, _name(func), {}, in_shapes, tuple(piece.shape), evaluate)
            description = f"{_name(func)}({', '.join(self.layers[p].name for p in parents)})"
            self.owner[id(piece)] = self.layer(_name(func), description, piece, parents, op, op_inputs)
            self.keep(piece)
        if isinstance(out, torch.Tensor) and args and out is args[0]:
            self.write_back(out)        # written in place: what shares its memory changed too
        return out

    def write_back(self, written: torch.Tensor) -> None:
        """Give every tracked tensor that shares memory with one just written in place (its base, other views
        of it) a new layer: its old values where the write did not reach, the written values where it did
        (data movement from both, kind ``gather``)."""
        seen = {id(written)}
        for t in list(self.memory.get(written.untyped_storage().data_ptr(), [])):
            if id(t) in seen or id(t) not in self.owner:
                continue
            seen.add(id(t))
            parents = [self.owner[id(t)], self.owner[id(written)]]
            op = Op("gather", "write", {}, (tuple(t.shape), tuple(written.shape)), tuple(t.shape),
                    _overlay(t, written))
            description = f"write({self.layers[parents[0]].name} <- {self.layers[parents[1]].name})"
            self.owner[id(t)] = self.layer("write", description, t, parents, op, parents)

    def classify(self, func, args, kwargs) -> tuple[str, dict]:
        name = _name(func)
        values, kwvalues = list(args), dict(kwargs)
        if name in _OPERATORS or name in _PROPERTIES or (hasattr(torch.Tensor, name) and
                                                         not hasattr(torch, name)):
            return classify_method(_OPERATORS.get(name, _PROPERTIES.get(name, name)), values, kwvalues)
        kind, params = classify_function(func, values, kwvalues)
        if kind == FALLBACK and hasattr(torch.Tensor, name):
            kind, params = classify_method(name, values, kwvalues)
        return kind, params

    # -- modules ----------------------------------------------------------------------------------

    def before(self, module, args):
        if self.inside is not None or classify_module(module)[0] == FALLBACK:
            return
        inputs = self.tracked(args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(inputs) == 1 and len(tensors) == 1 and inputs[0][0] is tensors[0]:
            self.inside = (module, inputs[0][1], tuple(tensors[0].shape))

    def after(self, module, args, output):
        if self.inside is None or self.inside[0] is not module:
            return
        _, parent, shape = self.inside
        self.inside = None
        if not isinstance(output, torch.Tensor):
            return
        path = self.paths.get(id(module), type(module).__name__)
        op = module_op(module, path, (shape,), tuple(output.shape))
        self.owner[id(output)] = self.layer(path.replace(".", "_") or "module", module, output, [parent], op,
                                            [parent])
        self.keep(output)


def _overlay(target: torch.Tensor, written: torch.Tensor):
    """Evaluator of a write through shared memory: ``target``'s new values from its old ones and the
    written tensor's, both placed by their strides into one buffer of the memory's size."""
    size = target.untyped_storage().nbytes() // target.element_size()
    places = [(tuple(t.shape), t.stride(), t.storage_offset()) for t in (target, written)]

    def evaluate(inputs, randomize):
        old, new = inputs
        buffer = torch.zeros(size, dtype=torch.promote_types(old.dtype, new.dtype), device=old.device)
        for value, (shape, stride, offset) in zip((old, new), places):
            buffer.as_strided(shape, stride, offset).copy_(value.reshape(shape))
        return buffer.as_strided(*places[0]).clone()

    return evaluate


def _setitem(x, index, value):
    x = x.clone()
    x[index] = value
    return x


def _evaluator(func, args, kwargs, owner, parents, piece):
    """Repeat the call with new values for the parent layers' tensors (clones: in-place calls are safe)."""
    where = {}
    for leaf in _leaves((args, kwargs)):
        if isinstance(leaf, torch.Tensor) and owner.get(id(leaf)) in parents:
            where[id(leaf)] = parents.index(owner[id(leaf)])
    frozen = _map(lambda v: v.detach().clone() if isinstance(v, torch.Tensor) and id(v) not in where else v,
                  (args, kwargs))
    keys = _map(lambda v: where.get(id(v), -1) if isinstance(v, torch.Tensor) else -1, (args, kwargs))

    def evaluate(inputs, randomize):
        gen = torch.Generator().manual_seed(1)

        def pick(value, key):
            if key >= 0:
                return inputs[key].clone()
            if randomize and isinstance(value, nn.Parameter):
                return torch.randn(value.shape, generator=gen, dtype=torch.float64).to(value.dtype)
            return value
        a, k = _map(pick, frozen, keys)
        out = func(*a, **k)
        return out if piece is None else out[piece]

    return evaluate


def capture(network: nn.Module, input: torch.Tensor) -> tuple[list, int | None]:
    """The recorded layers (:class:`~nsp.tracing.layer.Layer` records, layer 0 the input) and the index of the
    returned layer."""
    start = input.detach().clone()
    state = _Capture(network, start)
    state.layers.append(_Node("input", f"Input{list(input.shape)}", start.clone(), (), None, ()))
    state.owner[id(start)] = 0
    hooks = [nn.modules.module.register_module_forward_pre_hook(state.before),
             nn.modules.module.register_module_forward_hook(state.after)]
    try:
        with state:
            output = network(start)
    finally:
        for h in hooks:
            h.remove()
    returned = state.owner.get(id(output)) if isinstance(output, torch.Tensor) else None
    nodes, returned = _unread_writes_dropped(state.layers, returned)
    layers = [Layer(n.name, n.description, n.value, n.parents, n.op, n.op_inputs) for n in nodes]
    return layers, returned


def _unread_writes_dropped(nodes: list, returned: int | None) -> tuple[list, int | None]:
    """The nodes without the write-back layers nothing reads (views changed through their base after their
    last use), renumbered."""
    keep = list(range(len(nodes)))
    while True:                         # a write read only by a dropped write goes too
        read = {p for i in keep for p in nodes[i].parents} | {returned}
        fewer = [i for i in keep if i in read or nodes[i].op is None or nodes[i].op.path != "write"]
        if len(fewer) == len(keep):
            break
        keep = fewer
    if len(keep) == len(nodes):
        return nodes, returned
    new = {old: i for i, old in enumerate(keep)}
    kept = []
    for i in keep:
        n = nodes[i]
        n.parents, n.op_inputs = tuple(new[p] for p in n.parents), tuple(new[p] for p in n.op_inputs)
        kept.append(n)
    return kept, None if returned is None else new[returned]
