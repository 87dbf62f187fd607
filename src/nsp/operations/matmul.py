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

import numpy as np
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


@register
class Attention(OperationKind):
    """``F.scaled_dot_product_attention(q, k, v)`` (kind ``attention``).

    ``out[..., i, :]`` reads the whole row ``i`` of ``q``, every key row ``j`` of ``k`` (all features) and
    feature ``d`` of every value row ``j``, for the rows ``j`` the mask lets ``i`` attend to (all, the
    causal ``j <= i``, or a constant boolean mask); a row that attends to a single key reads neither
    its query nor the keys (its softmax weight is 1). Leading axes: identity, or all-ones from a broadcast
    size-1 axis. Linear part: 1 (not linear).
    """

    name = "attention"
    positional = True
    functions = {torch.nn.functional.scaled_dot_product_attention}

    def function_params(self, target, args, kwargs):
        if target not in self.functions:
            return None
        bound = bind(("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"), args, kwargs)
        q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
        mask = bound.get("attn_mask")
        if not all(isinstance(t, torch.Tensor) and t.dim() >= 2 for t in (q, k, v)) or bound.get("enable_gqa"):
            return None
        if mask is not None and (mask.dtype != torch.bool or mask.dim() > 2):
            return None                 # additive or batched masks: the Jacobian fallback
        rows, cols = q.shape[-2], k.shape[-2]
        if mask is not None:
            allowed = torch.broadcast_to(mask, (rows, cols)).cpu().numpy()
        elif bound.get("is_causal"):
            allowed = np.tril(np.ones((rows, cols), dtype=bool))
        else:
            allowed = None
        return {"q": list(q.shape), "k": list(k.shape), "v": list(v.shape),
                "mask": None if allowed is None else allowed.astype(int).tolist()}

    def blocks(self, op, inputs, incl, limit):
        out = tuple(op.out_shape)
        shapes = [tuple(op.params[n]) for n in ("q", "k", "v")]
        rows, cols = shapes[0][-2], shapes[1][-2]
        mask = op.params.get("mask")
        allowed = np.ones((rows, cols), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        attend = Factor.of(allowed)
        # a row that attends to one key has softmax weight 1 whatever the scores: it reads neither q nor k
        scored = allowed.sum(axis=1) > 1
        keys = Factor.of(allowed & scored[:, None])
        queries = Factor.of(np.diag(scored))
        blocks = []
        for roles in op.params["roles"]:
            parts = []
            for r in roles:
                shape = shapes[r]
                padded = (1,) * (len(out) - len(shape)) + shape
                lead = [Factor.eye(n) if p == n else Factor.ones(n, p) for p, n in zip(padded[:-2], out[:-2])]
                if r == 0:
                    tail = [queries, Factor.ones(out[-1], shape[-1])]
                elif r == 1:
                    tail = [keys, Factor.ones(out[-1], shape[-1])]
                else:
                    tail = [attend, Factor.eye(out[-1])]
                parts.append(Kron(tuple(lead + tail)))
            blocks.append(union(parts, parts[0].shape))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        return [LinearPart.rows(1.0) for _ in op.in_shapes]
