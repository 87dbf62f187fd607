"""Concatenation along one axis: each input is a selection factor on that axis ⊗ identities."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from nsp.operations.base import OperationKind, bind, register
from nsp.operations.blocks import Kron
from nsp.operations.kronecker import Factor


@register
class Cat(OperationKind):
    name = "cat"
    functions = {torch.cat, torch.concat, torch.concatenate}
    sequence_input = True

    def function_params(self, target, args, kwargs):
        return {"dim": bind(("tensors", "dim"), args, kwargs, dim=0)["dim"]} if target in self.functions else None

    def blocks(self, op, inputs, incl, limit):
        out = op.out_shape
        dim = op.params["dim"] % len(out)
        blocks, offset = [], 0
        for shape in op.in_shapes:
            n = shape[dim]
            select = sp.csr_matrix((np.ones(n, dtype=bool), (np.arange(offset, offset + n), np.arange(n))),
                                   shape=(out[dim], n))
            blocks.append(Kron(tuple(Factor.of(select) if a == dim else Factor.eye(m) for a, m in enumerate(shape))))
            offset += n
        return blocks
