"""Reductions: operations whose outputs read whole axes of the input (kind ``reduce``).

Batch norm with batch statistics (each channel over batch and space),
instance norm (each sample and channel over space), layer norm (the
trailing normalised axes) and softmax-like functions (the given axis).
Connectivity: all-ones on the reduced axes ⊗ identity on the rest.
Linear part: 1 (not affine).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import OperationKind, bind, register
from nsp.operations.blocks import Kron
from nsp.operations.elementwise import batch_statistics
from nsp.operations.kronecker import Factor
from nsp.operations.windows import as_tuple

SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
SOFTMAX_FUNCTIONS = {F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax}
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


def _softmax(dim) -> dict | None:
    return {"dims": [dim]} if dim is not None else None      # no dim: the Jacobian fallback


@register
class Reduce(OperationKind):
    name = "reduce"
    single_input = True

    def module_params(self, module):
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None):
            return {"keep": [1]}
        if isinstance(module, INSTANCE_NORMS):
            return {"last": int(type(module).__name__[-2])}
        if isinstance(module, nn.LayerNorm):
            return {"last": len(module.normalized_shape)}
        if isinstance(module, SOFTMAX_MODULES):
            return _softmax(module.dim)
        return None

    def function_params(self, target, args, kwargs):
        if target is F.batch_norm:
            return {"keep": [1]} if batch_statistics(args, kwargs) else None
        if target in SOFTMAX_FUNCTIONS:
            return _softmax(bind(("input", "dim"), args, kwargs).get("dim"))
        if target is F.layer_norm:
            return {"last": len(as_tuple(bind(("input", "normalized_shape"), args, kwargs)["normalized_shape"], 1))}
        return None

    def method_params(self, name, args, kwargs):
        if name in ("softmax", "log_softmax"):
            return _softmax(kwargs.get("dim", args[1] if len(args) > 1 else None))
        return None

    def blocks(self, op, inputs, incl, limit):
        shape = tuple(op.in_shapes[0])
        rank = len(shape)
        if "last" in op.params:         # layer / instance norm: the trailing axes
            dims = set(range(rank - op.params["last"], rank))
        elif "keep" in op.params:       # batch norm with batch statistics: all axes but the channel axis
            dims = set(range(rank)) - {k % rank for k in op.params["keep"]}
        else:                           # softmax: the given axes
            dims = {d % rank for d in op.params["dims"]}
        return [Kron(tuple(Factor.ones(n, n) if a in dims else Factor.eye(n) for a, n in enumerate(shape)))]
