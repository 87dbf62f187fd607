"""Resampling: ``F.interpolate`` and ``nn.Upsample`` (kind ``interpolate``), any mode whose weights act on
each spatial axis separately (nearest, nearest-exact, linear, bilinear, bicubic, trilinear; with or without
``align_corners``, ``scale_factor`` or ``size``, antialiasing).

The weights are read off the operation itself, exactly as it computes them: for each spatial axis, the
call evaluated on inputs that are one along one index of that axis and zero elsewhere gives that index's
column of the axis's weight matrix (the other axes' weights sum to one). The product of the axis matrices
is checked against the call on a random input; a mode that is not such a product (``area`` on uneven
windows is) goes to the Jacobian fallback. Block: identity on batch and channels ⊗ the nonzero pattern of
each axis's matrix. Linear part: the matrices themselves (part kind ``interpolate``).
"""

from __future__ import annotations

from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import LinearPart, OperationKind
from nsp.operations.blocks import Kron
from nsp.operations.jacobian import jacobian_blocks
from nsp.operations.kronecker import Factor


class Interpolate(OperationKind):
    name = "interpolate"
    modules = (nn.Upsample,)            # UpsamplingNearest2d and UpsamplingBilinear2d are subclasses
    functions = {F.interpolate}
    single_input = True
    part_kinds = ("interpolate",)

    def blocks(self, op, inputs, incl, limit):
        matrices = axis_matrices(op)
        if matrices is None:
            return jacobian_blocks(op, inputs, incl, limit)
        shape = op.in_shapes[0]
        return [Kron((Factor.eye(shape[0]), Factor.eye(shape[1])) + tuple(Factor.of(m != 0) for m in matrices))]

    def linear_parts(self, op, inputs, blocks):
        matrices = axis_matrices(op)
        if matrices is None:
            return super().linear_parts(op, inputs, blocks)
        return [LinearPart("interpolate", {f"axis{a}": m for a, m in enumerate(matrices)})]

    def apply_part(self, part, x):
        for a in range(x.dim() - 2):
            w = torch.from_numpy(part.arrays[f"axis{a}"]).to(x.device)
            x = torch.movedim(torch.movedim(x, 2 + a, -1) @ w.T, -1, 2 + a)
        return x

    def part_edges(self, part, in_shape, out_shape):
        matrix = sp.identity(prod(in_shape[:2]), format="csr")
        for a in range(len(in_shape) - 2):
            matrix = sp.kron(matrix, sp.csr_matrix(part.arrays[f"axis{a}"]), format="csr")
        coo = matrix.tocoo()
        return coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data


def axis_matrices(op) -> list | None:
    """One (output, input) float64 weight matrix per spatial axis, or None where the operation is not their
    product (checked on a random input)."""
    if op.evaluate is None:
        return None
    shape, out = tuple(op.in_shapes[0]), tuple(op.out_shape)
    if len(shape) < 3 or len(out) != len(shape) or out[:2] != shape[:2]:
        return None
    run = lambda x: op.evaluate((x,), False).double()          # noqa: E731
    matrices = []
    with torch.no_grad():
        for a in range(len(shape) - 2):
            columns = []
            for i in range(shape[2 + a]):
                x = torch.zeros(shape, dtype=torch.float64)
                x.select(2 + a, i).fill_(1.0)
                y = run(x)[0, 0]
                columns.append(y[tuple(slice(None) if b == a else 0 for b in range(len(shape) - 2))].numpy())
            matrices.append(np.stack(columns, axis=1))
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        want = run(x)
        got = x
        for a, m in enumerate(matrices):
            got = torch.movedim(torch.movedim(got, 2 + a, -1) @ torch.from_numpy(m).T, -1, 2 + a)
    scale = 1.0 + float(want.abs().max())
    return matrices if tuple(got.shape) == out and float((got - want).abs().max()) <= 1e-12 * scale else None
