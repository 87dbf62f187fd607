"""Recurrent layers: ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` (kind ``recurrent``), their output sequence.

The hidden state carries every earlier step into the next through dense weight matrices, so output
``(t, h)`` of a one-directional stack reads every input feature of steps ``t' <= t`` (of the same sample);
a bidirectional layer's backward half reads the steps ``t' >= t``, and a bidirectional stack of two or more
layers reads every step in both halves (its second layer reads both directions of the first). Blocks:
identity on the batch axis, a triangular (or all-ones) factor on the time axis, all-ones on the features;
for one bidirectional layer the union of the two halves. Described for a call on a batched input without
an initial state (``h_0``/``c_0`` given are values of other layers: the fallback decides); the item recorded
is the output sequence (the final states have no rule). Linear part: 1 on every edge (not linear).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from nsp.operations.base import OperationKind
from nsp.operations.blocks import Kron, union
from nsp.operations.kronecker import Factor


class Recurrent(OperationKind):
    name = "recurrent"
    modules = (nn.RNN, nn.LSTM, nn.GRU)
    single_input = True
    pieces = (0,)

    def module_params(self, module):
        return None                     # only a call (with its arguments) is described

    def call_params(self, module, args, kwargs):
        if not isinstance(module, self.modules):
            return None
        x = args[0] if args else kwargs.get("input")
        state = args[1] if len(args) > 1 else kwargs.get("hx")
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or state is not None:
            return None
        return {"batch_first": bool(module.batch_first), "bidirectional": bool(module.bidirectional),
                "layers": int(module.num_layers)}

    def blocks(self, op, inputs, incl, limit):
        shape, out = tuple(op.in_shapes[0]), tuple(op.out_shape)
        time, batch = (1, 0) if op.params["batch_first"] else (0, 1)
        steps = shape[time]
        later = np.tril(np.ones((steps, steps), dtype=bool))          # output t reads inputs t' <= t

        def block(reads, directions=None):
            factors = [None, None]
            factors[time], factors[batch] = Factor.of(reads), Factor.eye(shape[batch])
            if directions is None:
                return Kron(tuple(factors) + (Factor.ones(out[2], shape[2]),))
            direction, half = directions                              # one half of the features: (2, 1) x (H, F)
            pick = np.zeros((2, 1), dtype=bool)
            pick[direction, 0] = True
            return Kron(tuple(factors) + (Factor.of(pick), Factor.ones(half, shape[2])))

        if not op.params["bidirectional"]:
            return [block(later)]
        if op.params["layers"] > 1:
            return [block(np.ones((steps, steps), dtype=bool))]
        halves = [block(later, (0, out[2] // 2)), block(later.T, (1, out[2] // 2))]
        return [union(halves, halves[0].shape)]
