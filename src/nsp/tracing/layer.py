"""What a recording is made of: one record per layer, and the operation of a module call.

A :class:`Layer` holds a layer's name, the tensor recorded for it (batch axis included), the layers it
reads and the :class:`~nsp.operations.Op` that computed it. Every way of recording (child modules, the
torch.fx graph, the calls of a real forward pass) builds these records, and all of them describe a
module called on one tensor the same way, through :func:`module_op`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.func import functional_call

from nsp.operations import Op, classify_module


@dataclass(eq=False)
class Layer:
    """One recorded layer: its name, a description (the module, or the call as text), the recorded tensor
    with its batch axis, the indices of the layers it reads, and the operation that made it."""

    name: str
    description: Any
    value: torch.Tensor
    parents: tuple = ()
    op: Op | None = None
    op_inputs: tuple = ()   # layer index of each of op.in_shapes (parents may repeat, e.g. cat([x, x]))
    received: tuple = ()    # children mode: the tensor the child received (after functional ops)


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


def random_params(module: nn.Module, seed: int = 1) -> dict:
    """Standard normal values, from a fixed seed, in place of each parameter of ``module`` (to run it with
    weights that cannot cancel by chance)."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            for name, p in module.named_parameters()}


def _module_evaluator(module: nn.Module, shapes: tuple):
    """A function that runs ``module`` again on new inputs (reshaped to ``shapes``), with its own weights
    or random ones, leaving its buffers as they were."""
    def evaluate(inputs, randomize):
        args = [x.reshape(s) for x, s in zip(inputs, shapes)]
        with kept_buffers(module):
            if randomize:
                return functional_call(module, random_params(module), tuple(args))
            return module(*args)
    return evaluate


def module_op(module: nn.Module, path: str, in_shapes: tuple, out_shape: tuple) -> Op:
    """The operation of a call of ``module`` (at ``path``) on inputs of ``in_shapes``, classified by the
    operation kinds, with an evaluator that repeats the call."""
    kind, params = classify_module(module)
    return Op(kind, path, params, in_shapes, out_shape, _module_evaluator(module, in_shapes),
              module if len(in_shapes) == 1 else None)


def snapshot(value):
    """A detached copy of a recorded value: tensors cloned, inside tuples and lists too (named tuples kept
    as they are)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(snapshot(v) for v in value) if not hasattr(value, "_fields") else value
    return value
