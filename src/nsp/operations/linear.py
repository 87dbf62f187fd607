"""Linear layers on the last axis (any leading axes): a weight-matrix factor on the last axis.

Connectivity: identity on the leading axes ⊗ all-ones (or, input-local, the
nonzero pattern of the weights). Linear part: the weight matrix, no bias.
"""

from __future__ import annotations

from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import LinearPart, OperationKind, bind
from nsp.operations.blocks import Kron, eyes
from nsp.operations.kronecker import Factor


class Linear(OperationKind):
    name = "linear"
    single_input = True
    part_kinds = ("linear",)

    def module_params(self, module):
        return {"weight": module.weight} if isinstance(module, nn.Linear) else None

    def function_params(self, target, args, kwargs):
        return {"weight": bind(("input", "weight", "bias"), args, kwargs)["weight"]} if target is F.linear else None

    def blocks(self, op, inputs, incl, limit):
        shape = op.in_shapes[0]
        if incl:
            last = Factor.ones(op.out_shape[-1], shape[-1])
        else:
            last = Factor.of(op.params["weight"].detach().cpu().numpy() != 0)
        return [Kron(tuple(eyes(shape[:-1]) + [last]))]

    def linear_parts(self, op, inputs, blocks):
        return [LinearPart("linear", {"weight": op.params["weight"].detach().cpu().double().numpy().copy()})]

    def apply_part(self, part, x):
        return F.linear(x, torch.from_numpy(part.arrays["weight"]).to(x.device))

    def part_edges(self, part, in_shape, out_shape):
        matrix = sp.kron(sp.identity(prod(in_shape[:-1])), sp.csr_matrix(part.arrays["weight"])).tocoo()
        return matrix.row.astype(np.int64), matrix.col.astype(np.int64), matrix.data
