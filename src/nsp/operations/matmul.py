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

from nsp.operations.base import LinearPart, OperationKind, bind
from nsp.operations.blocks import Coo, Kron, union
from nsp.operations.kronecker import Factor


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


class Einsum(OperationKind):
    """``torch.einsum(equation, *operands)`` (kind ``einsum``): output element ``o`` reads the elements of
    an operand whose indices agree with ``o`` on every letter the two share (letters only in the operand
    are summed over: all of them; a letter repeated in the operand takes its diagonal). A Kronecker block
    where operand and output have the same rank and each axis pairs the same letter (identity) or a
    summed letter with a broadcast one (all-ones); explicit otherwise. Linear part as for ``matmul``.
    """

    name = "einsum"
    positional = True
    functions = {torch.einsum}

    def function_params(self, target, args, kwargs):
        if target not in self.functions or not args or not isinstance(args[0], str):
            return None
        operands = args[1:]
        if not operands or not all(isinstance(t, torch.Tensor) for t in operands):
            return None                 # operands as one list: the Jacobian fallback
        subscripts = _subscripts(args[0], [t.dim() for t in operands])
        return None if subscripts is None else {"inputs": subscripts[0], "output": subscripts[1],
                                                "shapes": [list(t.shape) for t in operands]}

    def blocks(self, op, inputs, incl, limit):
        out = tuple(op.out_shape)
        blocks = []
        for roles in op.params["roles"]:        # argument positions: operand r - 1
            parts = [_einsum_block(op.params["inputs"][r - 1], op.params["output"],
                                   tuple(op.params["shapes"][r - 1]), out) for r in roles]
            blocks.append(union(parts, parts[0].shape))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        if sum(len(r) for r in op.params["roles"]) > 1:
            return [LinearPart.rows(1.0) for _ in op.in_shapes]
        return [LinearPart.rows(1.0, fallback=f"einsum {op.path!r} with constant operands: unit weights")]


def _subscripts(equation: str, ranks: list) -> tuple | None:
    """Per operand and for the output, one letter per axis (an ellipsis expanded to letters of its own)."""
    equation = equation.replace(" ", "")
    left, arrow, right = equation.partition("->")
    terms = left.split(",")
    if len(terms) != len(ranks):
        return None
    spare = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation]
    ellipsis = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    if ellipsis > len(spare):
        return None
    dots = "".join(spare[:ellipsis])
    expanded = []
    for term, rank in zip(terms, ranks):
        width = rank - len(term.replace("...", ""))
        expanded.append(term.replace("...", dots[ellipsis - width:] if width else ""))
        if len(expanded[-1]) != rank:
            return None
    if arrow:
        output = right.replace("...", dots)
    else:                               # implicit output: the ellipsis, then letters used once, sorted
        counts = "".join(expanded)
        output = dots + "".join(sorted(c for c in set(counts) if counts.count(c) == 1 and c not in dots))
    return expanded, output


def _einsum_block(letters: str, output: str, shape: tuple, out: tuple):
    """The block of one operand with subscripts ``letters`` (sizes ``shape``) for output subscripts ``output``."""
    if len(letters) == len(output) and len(set(letters)) == len(letters):
        factors = []
        for a, o, n, m in zip(letters, output, shape, out):
            if a == o:
                factors.append(Factor.eye(n) if n == m else Factor.ones(m, n))      # a broadcast size-1 axis
            elif a not in output and o not in letters:
                factors.append(Factor.ones(m, n))
            else:
                break
        else:
            return Kron(tuple(factors))
    size = dict(zip(output, out))
    size.update((a, n) for a, n in zip(letters, shape) if a not in size)
    free = [a for a in dict.fromkeys(letters) if a not in output]
    axes = list(output) + free                  # one broadcast axis per output letter, then per summed letter
    grid = np.indices([size[a] for a in axes], sparse=True)
    where = dict(zip(axes, grid))
    rows = np.ravel_multi_index([where[o] for o in output], out) if output else np.zeros(1, np.int64)
    index = [where[a] if size[a] == n else np.zeros(1, np.int64) for a, n in zip(letters, shape)]
    cols = np.ravel_multi_index(index, shape) if letters else np.zeros(1, np.int64)
    rows, cols = np.broadcast_arrays(rows, cols)
    return Coo.union([rows.reshape(-1)], [cols.reshape(-1)], (int(np.prod(out)), int(np.prod(shape))))
