"""Sliding blocks: ``F.unfold`` / ``nn.Unfold`` (kind ``unfold``, im2col) and ``F.fold`` / ``nn.Fold`` (kind
``fold``, col2im, its transpose); kernel size, dilation, padding and stride, ints or pairs.

Unfold maps (..., C, H, W) to (..., C * kh * kw, L), ``L = oh * ow`` blocks: output entry (c, i, j, o, p)
copies input (c, o * s - q + d * i, p * s' - q' + d' * j), or reads nothing where that falls in the zero
padding. Fold maps (..., C * kh * kw, L) back to (..., C, H, W) and sums what lands on a pixel: its block
is the transpose. Block: identity on the leading axes and on channels ⊗ one per-channel matrix, rows
(i, j, o, p) by columns (y, x), whose row block (i, j) is ``kron(window_y[i], window_x[j])`` (the
per-offset windows of a convolution): one channel's matrix is stored (dense while small, sparse beyond
``kronecker.DENSE_LIMIT`` entries), not the edges of every channel. The factored closure has no per-axis
form for it (the kernel offsets and the blocks share the rows): graphs with these layers take the explicit
standard transform. Linear part: 1 on every edge (unfold copies, fold sums).
"""

from __future__ import annotations

import scipy.sparse as sp
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import ConnectivityError, OperationKind, bind
from nsp.operations.blocks import Kron, eyes
from nsp.operations.kronecker import Factor
from nsp.operations.windows import as_tuple, window_offsets

UNFOLD_ARGS = ("input", "kernel_size", "dilation", "padding", "stride")
FOLD_ARGS = ("input", "output_size", "kernel_size", "dilation", "padding", "stride")


def _params(kernel_size, dilation, padding, stride) -> dict:
    return {"kernel": as_tuple(kernel_size, 2), "dilation": as_tuple(dilation, 2),
            "padding": as_tuple(padding, 2), "stride": as_tuple(stride, 2)}


def blocks_per_axis(params: dict, size: tuple) -> tuple:
    """Number of sliding blocks along each spatial axis of an image of ``size`` (as torch counts them)."""
    return tuple((n + 2 * q - d * (k - 1) - 1) // s + 1 for n, k, d, q, s in
                 zip(size, params["kernel"], params["dilation"], params["padding"], params["stride"]))


def im2col(params: dict, size: tuple) -> sp.csr_matrix:
    """The per-channel unfold matrix: rows (kernel offset i, j, block o, p), columns (y, x), one entry per
    row that does not read padding."""
    counts = blocks_per_axis(params, size)
    if min(counts) < 1:
        raise ConnectivityError(f"unfold/fold: no sliding block fits an image of size {tuple(size)} with "
                                f"{params}")
    axes = [window_offsets(size[a], counts[a], params["kernel"][a], params["stride"][a], params["padding"][a],
                           params["dilation"][a]) for a in range(2)]
    return sp.vstack([sp.kron(wy, wx, format="csr") for wy in axes[0] for wx in axes[1]], format="csr").astype(bool)


def _checked(op, channels: int, size: tuple, columns: tuple) -> Factor:
    """The per-channel factor, after checking that the recorded column shape (C * kh * kw, L) is the one
    the parameters give."""
    p = op.params
    kernel = p["kernel"][0] * p["kernel"][1]
    counts = blocks_per_axis(p, size)
    if tuple(columns) != (channels * kernel, counts[0] * counts[1]):
        raise ConnectivityError(
            f"{op.path}: {op.kind} with {p} on images of size {tuple(size)} gives columns of shape "
            f"{(channels * kernel, counts[0] * counts[1])}, not the recorded {tuple(columns)}")
    return Factor.of(im2col(p, size))


class Unfold(OperationKind):
    name = "unfold"
    modules = (nn.Unfold,)
    functions = {F.unfold}
    single_input = True

    def module_params(self, module):
        if not isinstance(module, nn.Unfold):
            return None
        return _params(module.kernel_size, module.dilation, module.padding, module.stride)

    def function_params(self, target, args, kwargs):
        if target is not F.unfold:
            return None
        b = bind(UNFOLD_ARGS, args, kwargs, dilation=1, padding=0, stride=1)
        return _params(b["kernel_size"], b["dilation"], b["padding"], b["stride"])

    def method_params(self, name, args, kwargs):
        """``F.unfold`` as the function capture meets it: by name, which is also that of the tensor method
        ``Tensor.unfold(dimension, size, step)`` (data movement, kind ``gather``). Torch hands it over as
        ``(input, kernel_size)`` with ``dilation``, ``padding`` and ``stride`` by keyword, which the method's
        three arguments never are."""
        if name != "unfold" or not (len(args) == 2 or set(kwargs) & set(UNFOLD_ARGS[1:])):
            return None
        return self.function_params(F.unfold, args, kwargs)

    def blocks(self, op, inputs, incl, limit):
        shape, out = tuple(op.in_shapes[0]), tuple(op.out_shape)
        if len(shape) < 3 or len(out) != len(shape) - 1 or out[:-2] != shape[:-3]:
            raise ConnectivityError(f"{op.path}: unfold needs an input (..., C, H, W) and gives (..., C * kh * kw, "
                                    f"L); recorded {shape} -> {out}")
        lead, channels, size = shape[:-3], shape[-3], shape[-2:]
        factor = _checked(op, channels, size, out[-2:])
        return [Kron(tuple(eyes(lead) + [Factor.eye(channels), factor]))]


class Fold(OperationKind):
    name = "fold"
    modules = (nn.Fold,)
    functions = {F.fold}
    single_input = True

    def module_params(self, module):
        if not isinstance(module, nn.Fold):
            return None
        return dict(_params(module.kernel_size, module.dilation, module.padding, module.stride),
                    output_size=as_tuple(module.output_size, 2))

    def function_params(self, target, args, kwargs):
        if target is not F.fold:
            return None
        b = bind(FOLD_ARGS, args, kwargs, dilation=1, padding=0, stride=1)
        return dict(_params(b["kernel_size"], b["dilation"], b["padding"], b["stride"]),
                    output_size=as_tuple(b["output_size"], 2))

    def blocks(self, op, inputs, incl, limit):
        shape, out = tuple(op.in_shapes[0]), tuple(op.out_shape)
        if len(shape) < 2 or len(out) != len(shape) + 1 or out[:-3] != shape[:-2]:
            raise ConnectivityError(f"{op.path}: fold needs an input (..., C * kh * kw, L) and gives (..., C, H, "
                                    f"W); recorded {shape} -> {out}")
        lead, channels, size = out[:-3], out[-3], out[-2:]
        if tuple(int(n) for n in op.params["output_size"]) != tuple(size):
            raise ConnectivityError(f"{op.path}: fold to {op.params['output_size']} recorded an output of shape {out}")
        factor = _checked(op, channels, size, shape[-2:])
        return [Kron(tuple(eyes(lead) + [Factor.eye(channels), factor.T]))]
