"""Reductions: operations whose outputs read whole axes of the input (kind ``reduce``).

Batch norm with batch statistics (each channel over batch and space),
instance norm (each sample and channel over space), group norm (each
sample's group of channels over space), layer norm (the
trailing normalised axes), softmax-like functions and ``F.normalize`` (the given axis), and
reductions to one value over axes (sum, mean, amax, var, logsumexp, ...).
Connectivity: all-ones on the reduced axes ⊗ identity on the rest.
Linear part: 1 (not affine), except sums (1) and means (1 / count).
"""

from __future__ import annotations

from math import prod

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import LinearPart, OperationKind, bind
from nsp.operations.blocks import Kron
from nsp.operations.elementwise import batch_statistics
from nsp.operations.kronecker import Factor
from nsp.operations.windows import as_tuple

SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Softmin)
SOFTMAX_FUNCTIONS = {F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax}
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


#: reductions of axes to one value: output ``o`` reads the reduced axes whole (sum and mean are linear)
REDUCTIONS = {"sum", "mean", "amax", "amin", "prod", "logsumexp", "var", "std", "nansum", "nanmean", "norm"}
REDUCTION_FUNCTIONS = {getattr(torch, name): name for name in REDUCTIONS}
REDUCTION_FUNCTIONS[torch.linalg.vector_norm] = "norm"
#: where the reduced axes come when given by position (after the input): norms take the order first
_DIM_POSITION = {"norm": 2}


def _softmax(dim) -> dict | None:
    return {"dims": [dim]} if dim is not None else None      # no dim: the Jacobian fallback


def _reduction(name: str, args, kwargs) -> dict | None:
    """Parameters of ``torch.<name>(input, dim=None, ...)``: the reduced axes (all when none are given)."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return None
    position = _DIM_POSITION.get(name, 1)
    dim = kwargs.get("dim", kwargs.get("axis", args[position] if len(args) > position else None))
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        dims = list(range(x.dim()))
    elif isinstance(dim, int) or isinstance(dim, (tuple, list)) and all(isinstance(d, int) for d in dim):
        dims = sorted({d % x.dim() for d in as_tuple(dim, 1)})
    else:
        return None                     # named dimensions and the like: the fallback
    return {"dims": dims, "collapse": True, "reduction": name}


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
        if isinstance(module, nn.GroupNorm):
            return {"groups": int(module.num_groups)}
        if isinstance(module, SOFTMAX_MODULES):
            return _softmax(module.dim)
        return None

    def function_params(self, target, args, kwargs):
        if target is F.batch_norm:
            return {"keep": [1]} if batch_statistics(args, kwargs) else None
        if target in SOFTMAX_FUNCTIONS:
            return _softmax(bind(("input", "dim"), args, kwargs).get("dim"))
        if target is F.normalize:       # x / max(norm over dim, eps): every output of a vector reads it whole
            return {"dims": list(as_tuple(bind(("input", "p", "dim"), args, kwargs, dim=1)["dim"], 1))}
        if target is F.group_norm:
            return {"groups": int(bind(("input", "num_groups"), args, kwargs)["num_groups"])}
        if target is F.layer_norm:
            return {"last": len(as_tuple(bind(("input", "normalized_shape"), args, kwargs)["normalized_shape"], 1))}
        if target in REDUCTION_FUNCTIONS:
            return _reduction(REDUCTION_FUNCTIONS[target], args, kwargs)
        return None

    def method_params(self, name, args, kwargs):
        if name in ("softmax", "log_softmax"):
            return _softmax(kwargs.get("dim", args[1] if len(args) > 1 else None))
        if name in REDUCTIONS:
            return _reduction(name, args, kwargs)
        return None

    def blocks(self, op, inputs, incl, limit):
        shape = tuple(op.in_shapes[0])
        rank = len(shape)
        if "groups" in op.params:       # group norm: each sample's group of channels, over all positions
            groups, channels = op.params["groups"], shape[1]
            within = np.kron(np.eye(groups, dtype=bool), np.ones((channels // groups,) * 2, dtype=bool))
            return [Kron(tuple([Factor.eye(shape[0]), Factor.of(within)]
                               + [Factor.ones(n, n) for n in shape[2:]]))]
        if "last" in op.params:         # layer / instance norm: the trailing axes
            dims = set(range(rank - op.params["last"], rank))
        elif "keep" in op.params:       # batch norm with batch statistics: all axes but the channel axis
            dims = set(range(rank)) - {k % rank for k in op.params["keep"]}
        else:                           # softmax: the given axes
            dims = {d % rank for d in op.params["dims"]}
        reduced = 1 if op.params.get("collapse") else None
        return [Kron(tuple(Factor.ones(reduced or n, n) if a in dims else Factor.eye(n) for a, n in enumerate(shape)))]

    def linear_parts(self, op, inputs, blocks):
        how = op.params.get("reduction")
        if how == "sum":
            return [LinearPart.rows(1.0)]
        if how == "mean":
            shape = op.in_shapes[0]
            return [LinearPart.rows(1.0 / prod(shape[d] for d in op.params["dims"]))]
        return super().linear_parts(op, inputs, blocks)
