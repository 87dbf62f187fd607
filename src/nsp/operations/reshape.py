"""Reshapes (flatten, unflatten, view, reshape, squeeze, unsqueeze): neuron ``i`` reads neuron ``i``."""

from __future__ import annotations

import torch
import torch.nn as nn

from nsp.operations.base import OperationKind
from nsp.operations.blocks import Kron, eyes


class Reshape(OperationKind):
    name = "reshape"
    modules = (nn.Flatten, nn.Unflatten)
    functions = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
    methods = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
    single_input = True

    def blocks(self, op, inputs, incl, limit):
        # written on the input's axes: C order makes the reshape an identity on the flat index
        return [Kron(tuple(eyes(op.in_shapes[0])))]
