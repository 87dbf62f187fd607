"""Pooling: max and average, fixed windows (stride, padding, dilation, ceil_mode) and adaptive.

Connectivity: identity on channels ⊗ one window factor per spatial axis;
input-local graphs keep, for max pooling, only the input that won. Linear
part: ``1 / divisor`` for average pooling (torch's own divisor: padding,
ceil_mode and divisor_override included); for max pooling 1 on the winner
(the graph records the winners of its own input; the sem transform takes
each sample's winners).
"""

from __future__ import annotations

from math import prod

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import ConnectivityError, LinearPart, OperationKind, bind
from nsp.operations.blocks import Coo, Kron, eyes
from nsp.operations.conv import spatial_split
from nsp.operations.kronecker import Factor
from nsp.operations.windows import adaptive_window, ceil_mode, resolved_padding, window, window_params

MAXPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
AVGPOOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
ADAPTIVE_ARGS = ("input", "output_size", "return_indices")


def _dims(module) -> int:
    return int(type(module).__name__[-2])


class _Pool(OperationKind):
    """Shared rule: identity on channels, a window factor per spatial axis."""

    single_input = True
    module_types: tuple = ()
    function_dims: dict = {}

    def module_params(self, module):
        return self.params_of_module(module) if isinstance(module, self.module_types) else None

    def function_params(self, target, args, kwargs):
        return self.params_of_call(self.function_dims[target], args, kwargs) if target in self.function_dims else None

    def spatial(self, op) -> list:
        lead, (channels, *s_in), nd = spatial_split(op)
        p = op.params
        padding = resolved_padding(p)
        return [window(s_in[a], op.out_shape[-nd + a], p["kernel"][a], p["stride"][a], padding[a], p["dilation"][a])
                for a in range(nd)]

    def blocks(self, op, inputs, incl, limit):
        lead, (channels, *_), nd = spatial_split(op)
        return [Kron(tuple(eyes(lead) + [Factor.eye(channels)] + self.spatial(op)))]


class _Max(_Pool):
    part_kinds = ("max",)
    piecewise = True
    adaptive = False

    def blocks(self, op, inputs, incl, limit):
        if incl:
            return super().blocks(op, inputs, incl, limit)
        winners = self.pool(inputs[0], self.part_params(op), indices=True)[1]
        if tuple(winners.shape) != tuple(op.out_shape):
            raise ConnectivityError(f"{op.path}: could not reproduce the max-pooling output shape {op.out_shape}")
        nd = op.params["nd"]
        in_spatial, out_spatial = prod(op.in_shapes[0][-nd:]), prod(op.out_shape[-nd:])
        rows = np.arange(prod(op.out_shape), dtype=np.int64)
        cols = (rows // out_spatial) * in_spatial + winners.reshape(-1).cpu().numpy().astype(np.int64)
        return [Coo(rows, cols, (rows.size, prod(op.in_shapes[0])))]

    def part_params(self, op) -> dict:
        nd, p = op.params["nd"], op.params
        params = {"nd": nd, "adaptive": self.adaptive, "out": list(op.out_shape[-nd:])}
        if not self.adaptive:
            params.update(kernel=list(p["kernel"]), stride=list(p["stride"]), padding=list(resolved_padding(p)),
                          dilation=list(p["dilation"]), ceil_mode=ceil_mode(p, op.in_shapes[0], op.out_shape))
        return params

    @staticmethod
    def pool(x: torch.Tensor, params: dict, indices: bool = False):
        nd = params["nd"]
        if params["adaptive"]:
            return getattr(F, f"adaptive_max_pool{nd}d")(x, params["out"], return_indices=indices)
        return getattr(F, f"max_pool{nd}d")(x, params["kernel"], params["stride"], params["padding"],
                                            params["dilation"], ceil_mode=params["ceil_mode"], return_indices=indices)

    def linear_parts(self, op, inputs, blocks):
        params = self.part_params(op)
        _, idx = self.pool(torch.as_tensor(inputs[0]).reshape(tuple(op.in_shapes[0])), params, indices=True)
        return [LinearPart("max", {"winners": idx.reshape(-1).cpu().numpy().astype(np.int64)}, params)]

    def apply_part(self, part, x):
        return self.pool(x, part.params)

    def part_edges(self, part, in_shape, out_shape):
        nd = part.params["nd"]
        in_spatial, out_spatial = prod(in_shape[-nd:]), prod(out_shape[-nd:])
        rows = np.arange(prod(out_shape), dtype=np.int64)
        cols = (rows // out_spatial) * in_spatial + part.arrays["winners"]
        return rows, cols, np.ones(rows.size)


class _Average(_Pool):
    def linear_parts(self, op, inputs, blocks):
        if op.evaluate is None:
            return super().linear_parts(op, inputs, blocks)
        ones = torch.ones(tuple(op.in_shapes[0]), dtype=torch.float64)
        with torch.no_grad():
            total = op.evaluate((ones,), False).double().numpy().reshape(-1)
        counts = np.bincount(blocks[0].coo()[0], minlength=total.size)
        r = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)
        return [LinearPart.rows(r.reshape(op.out_shape))]


class MaxPool(_Max):
    name = "maxpool"
    module_types = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
    function_dims = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}

    def params_of_module(self, m):
        return window_params(_dims(m), m.kernel_size, m.stride, m.padding, m.dilation)

    def params_of_call(self, nd, args, kwargs):
        b = bind(MAXPOOL_ARGS, args, kwargs, stride=None, padding=0, dilation=1)
        if b.get("return_indices"):
            return None                 # a tuple output: the Jacobian fallback
        return window_params(nd, b["kernel_size"], b["stride"], b["padding"], b["dilation"])

    def function_label(self, target):
        return f"max_pool{self.function_dims[target]}d" if target in self.function_dims else None


class AvgPool(_Average):
    name = "avgpool"
    module_types = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
    function_dims = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}

    def params_of_module(self, m):
        return window_params(_dims(m), m.kernel_size, m.stride, m.padding)

    def params_of_call(self, nd, args, kwargs):
        b = bind(AVGPOOL_ARGS, args, kwargs, stride=None, padding=0)
        return window_params(nd, b["kernel_size"], b["stride"], b["padding"])


class _Adaptive:
    """Adaptive windows: output o reads inputs floor(o n / m) .. ceil((o + 1) n / m) - 1."""

    def params_of_module(self, m):
        return {"nd": _dims(m)}

    def params_of_call(self, nd, args, kwargs):
        return None if bind(ADAPTIVE_ARGS, args, kwargs).get("return_indices") else {"nd": nd}

    def spatial(self, op):
        lead, (channels, *s_in), nd = spatial_split(op)
        return [adaptive_window(s_in[a], op.out_shape[-nd + a]) for a in range(nd)]


class AdaptiveAvgPool(_Adaptive, _Average):
    name = "adaptive_avgpool"
    module_types = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    function_dims = {F.adaptive_avg_pool1d: 1, F.adaptive_avg_pool2d: 2, F.adaptive_avg_pool3d: 3}


class AdaptiveMaxPool(_Adaptive, _Max):
    name = "adaptive_maxpool"
    adaptive = True
    module_types = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
    function_dims = {F.adaptive_max_pool1d: 1, F.adaptive_max_pool2d: 2, F.adaptive_max_pool3d: 3}

    def function_label(self, target):
        return f"adaptive_max_pool{self.function_dims[target]}d" if target in self.function_dims else None
