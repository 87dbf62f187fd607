"""Matrix products of tensors (``matmul``, ``bmm``, ``@``; kind ``matmul``), as in attention.

``out[..., i, j] = sum_k a[..., i, k] b[..., k, j]`` with broadcast leading
axes: output ``(i, j)`` reads row ``i`` of ``a`` and column ``j`` of ``b``
whole. Each layer operand gets a Kronecker block: identity (or all-ones
from a broadcast size-1 axis) on the leading axes, identity on the axis it
shares with the output, all-ones on the contracted axis. A layer that is
both operands (``x @ x``) gets the union of the two. Operands of fewer than
two axes go to the Jacobian fallback. Linear part: 1 on every edge (a
product of two layers is not linear; with a constant operand the weights
are not derived, which the part records as a fallback).
"""

from __future__ import annotations

import operator

import torch

from nsp.operations.base import LinearPart, OperationKind, bind, register
from nsp.operations.blocks import Kron, union
from nsp.operations.kronecker import Factor


@register
class Matmul(OperationKind):
    name = "matmul"
    positional = True
    functions = {torch.matmul, torch.bmm, operator.matmul}
    methods = {"matmul", "bmm", "__matmul__"}

    def function_params(self, target, args, kwargs):
        if target not in self.functions:
            return None
        bound = bind(("input", "mat2" if target is torch.bmm else "other"), args, kwargs)
        return _operands(bound.get("input"), bound.get("mat2", bound.get("other")))

    def method_params(self, name, args, kwargs):
        if name not in self.methods or len(args) < 2:
            return None
        return _operands(args[0], args[1])

    def blocks(self, op, inputs, incl, limit):
        a, b = tuple(op.params["a"]), tuple(op.params["b"])
        out = tuple(op.out_shape)
        blocks = []
        for roles in op.params["roles"]:        # per parent: the operand positions it fills (0: a, 1: b)
            parts = [_block(a if r == 0 else b, out, r == 0) for r in roles]
            blocks.append(union(parts, parts[0].shape))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        if sum(len(r) for r in op.params["roles"]) == 2:
            return [LinearPart.rows(1.0) for _ in op.in_shapes]       # a product of layers: not linear
        return [LinearPart.rows(1.0, fallback=f"matmul {op.path!r} with a constant operand: unit weights")]


def _operands(a, b) -> dict | None:
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() < 2 or b.dim() < 2:
        return None
    return {"a": list(a.shape), "b": list(b.shape)}


def _block(shape: tuple, out: tuple, first: bool) -> Kron:
    """The block of operand ``a`` (``first``) or ``b`` of the given shape."""
    padded = (1,) * (len(out) - len(shape)) + shape
    factors = [Factor.eye(n) if p == n else Factor.ones(n, p) for p, n in zip(padded[:-2], out[:-2])]
    if first:
        factors += [Factor.eye(out[-2]), Factor.ones(out[-1], padded[-1])]
    else:
        factors += [Factor.ones(out[-2], padded[-2]), Factor.eye(out[-1])]
    return Kron(tuple(factors))
