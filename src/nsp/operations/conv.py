"""Convolutions (1-, 2- and 3-d; stride, padding incl. 'same'/'valid' and padding modes, dilation, groups).

Connectivity: channel matrix (same group) ⊗ one window factor per spatial
axis; input-local graphs keep, per kernel offset, only channel pairs with a
nonzero weight. Linear part: the kernel without bias.
"""

from __future__ import annotations

from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import ConnectivityError, LinearPart, OperationKind, bind
from nsp.operations.blocks import Coo, Kron, eyes
from nsp.operations.kronecker import Factor
from nsp.operations.windows import resolved_padding, window_offsets, window_params

FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


def spatial_split(op) -> tuple[tuple, tuple, int]:
    """(leading axes, (channels, *spatial), nd) of the input of a window operation."""
    nd = op.params["nd"]
    shape = op.in_shapes[0]
    if len(shape) < nd + 1 or len(op.out_shape) != len(shape):
        raise ConnectivityError(
            f"{op.path}: a {nd}-d {op.kind} needs inputs of shape (..., C, {nd} spatial axes); got {tuple(shape)}")
    return tuple(shape[: -nd - 1]), tuple(shape[-nd - 1:]), nd


def same_group(c_out: int, c_in: int, groups: int) -> np.ndarray:
    """(c_out, c_in) boolean: output channel and input channel in the same group."""
    return (np.arange(c_out)[:, None] // (c_out // groups)) == (np.arange(c_in)[None, :] // (c_in // groups))


def axis_windows(params: dict, in_shape: tuple, out_shape: tuple) -> list:
    """Per spatial axis, one 0/1 matrix per kernel offset."""
    nd = params["nd"]
    padding = resolved_padding(params)
    return [window_offsets(in_shape[-nd + a], out_shape[-nd + a], params["kernel"][a], params["stride"][a],
                           padding[a], params["dilation"][a], params["padding_mode"]) for a in range(nd)]


class Conv(OperationKind):
    name = "conv"
    single_input = True
    part_kinds = ("conv",)

    def module_params(self, module):
        if not isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return None
        params = window_params(len(module.kernel_size), module.kernel_size, module.stride, module.padding,
                               module.dilation)
        params.update(groups=module.groups, padding_mode=module.padding_mode, weight=module.weight)
        return params

    def function_params(self, target, args, kwargs):
        if target not in FUNCTIONS:
            return None
        b = bind(ARGS, args, kwargs, stride=1, padding=0, dilation=1, groups=1)
        params = window_params(FUNCTIONS[target], tuple(b["weight"].shape[2:]), b["stride"] or 1, b["padding"],
                               b["dilation"])
        params.update(groups=b["groups"], padding_mode="zeros", weight=b["weight"])
        return params

    def blocks(self, op, inputs, incl, limit):
        lead, (c_in, *_), nd = spatial_split(op)
        c_out = op.out_shape[-nd - 1]
        p = op.params
        channel = same_group(c_out, c_in, p["groups"])
        per_axis = axis_windows(p, op.in_shapes[0], op.out_shape)
        if incl:
            spatial = [Factor.of(sum(mats[1:], mats[0]).astype(bool)) for mats in per_axis]
            return [Kron(tuple(eyes(lead) + [Factor.of(channel)] + spatial))]
        # Input-local: one block per kernel offset, channels masked by the nonzero weights.
        weight = p["weight"].detach().cpu().numpy() != 0          # (c_out, c_in / groups, *kernel)
        local = np.arange(c_in) % (c_in // p["groups"])
        rows, cols = [], []
        for offset in np.ndindex(*p["kernel"]):
            mask = channel & weight[(slice(None), local) + offset]
            if not mask.any():
                continue
            r, c = Kron(tuple(eyes(lead) + [Factor.of(mask)] + [per_axis[a][k] for a, k in enumerate(offset)])).coo()
            rows.append(r)
            cols.append(c)
        return [Coo.union(rows, cols, (prod(op.out_shape), prod(op.in_shapes[0])))]

    def linear_parts(self, op, inputs, blocks):
        p = op.params
        padding = p["padding"] if isinstance(p["padding"], str) else list(p["padding"])
        return [LinearPart("conv", {"weight": p["weight"].detach().cpu().double().numpy().copy()},
                           {"nd": p["nd"], "stride": list(p["stride"]), "padding": padding,
                            "dilation": list(p["dilation"]), "groups": p["groups"],
                            "padding_mode": p["padding_mode"], "kernel": list(p["kernel"])})]

    def apply_part(self, part, x):
        p = part.params
        padding = p["padding"]
        if p["padding_mode"] != "zeros":
            if padding == "same":
                pairs = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(p["kernel"], p["dilation"])]
            elif padding == "valid":
                pairs = [(0, 0)] * p["nd"]
            else:
                pairs = [(q, q) for q in padding]
            x = F.pad(x, [v for pair in reversed(pairs) for v in pair], mode=p["padding_mode"])
            padding = 0
        weight = torch.from_numpy(part.arrays["weight"]).to(x.device)
        return getattr(F, f"conv{p['nd']}d")(x, weight, None, p["stride"], padding, p["dilation"], p["groups"])

    def part_edges(self, part, in_shape, out_shape):
        """Kernel entries as edge weights, one Kronecker product per kernel offset."""
        p, weight = part.params, part.arrays["weight"]
        nd = p["nd"]
        lead = prod(in_shape[:-nd - 1])
        c_in, c_out = in_shape[-nd - 1], out_shape[-nd - 1]
        per_axis = axis_windows(p, in_shape, out_shape)
        group = same_group(c_out, c_in, p["groups"])
        local = np.arange(c_in) % (c_in // p["groups"])
        total = None
        for offset in np.ndindex(*p["kernel"]):
            channel = np.where(group, weight[(slice(None), local) + offset], 0.0)
            term = sp.kron(sp.identity(lead), sp.csr_matrix(channel))
            for a, k in enumerate(offset):
                term = sp.kron(term, per_axis[a][k].astype(np.float64))
            total = term if total is None else total + term
        total = total.tocoo()
        return total.row.astype(np.int64), total.col.astype(np.int64), total.data
