"""Concatenation along one axis (and stacking along a new one): each input is a selection factor on that axis ⊗
identities.

Items that are constants (a class token) are output rows without parents."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from nsp.operations.base import OperationKind, bind
from nsp.operations.blocks import Kron
from nsp.operations.kronecker import Factor


class Cat(OperationKind):
    name = "cat"
    functions = {torch.cat, torch.concat, torch.concatenate}
    sequence_input = True

    def function_params(self, target, args, kwargs):
        return {"dim": bind(("tensors", "dim"), args, kwargs, dim=0)["dim"]} if target in self.functions else None

    def blocks(self, op, inputs, incl, limit):
        out = op.out_shape
        dim = op.params["dim"] % len(out)
        shapes = op.params.get("shapes", op.in_shapes)          # every item, constants included
        items = op.params.get("items", range(len(shapes)))      # the items that are layers
        offsets = np.cumsum([0] + [s[dim] for s in shapes])
        blocks = []
        for i in items:
            shape, n = shapes[i], shapes[i][dim]
            select = sp.csr_matrix((np.ones(n, dtype=bool), (np.arange(offsets[i], offsets[i] + n), np.arange(n))),
                                   shape=(out[dim], n))
            blocks.append(Kron(tuple(Factor.of(select) if a == dim else Factor.eye(m) for a, m in enumerate(shape))))
        return blocks


class Stack(Cat):
    """``torch.stack`` (kind ``stack``): item ``i`` fills index ``i`` of a new axis, identity on the others."""

    name = "stack"
    functions = {torch.stack}

    def blocks(self, op, inputs, incl, limit):
        out = op.out_shape
        dim = op.params["dim"] % len(out)
        shapes = op.params.get("shapes", op.in_shapes)
        blocks = []
        for i in op.params.get("items", range(len(shapes))):
            select = np.zeros((out[dim], 1), dtype=bool)
            select[i, 0] = True
            factors = [Factor.eye(m) for m in shapes[i]]
            factors.insert(dim, Factor.of(select))
            blocks.append(Kron(tuple(factors)))
        return blocks
