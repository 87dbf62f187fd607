"""Data movement: operations whose every output element is a copy of one input element (kind ``gather``).

Permutes and transposes, slicing and indexing with constant indices,
``narrow``/``select``/``index_select``, flips and rolls, ``expand`` and
``repeat``, the pieces of ``chunk``/``split``/``unbind``, pixel and channel
shuffles. The block is read off the operation itself, exactly: evaluated on
the tensor of its input's flat indices (float64, exact below 2^53), the
operation returns, for every output element, the index of the input element
it copies. Where each output axis copies from the same input axis (slices
with steps, flips, rolls, broadcasts, tiling) the block is a Kronecker
product of one selection factor per axis; otherwise (permutes, indexing
that drops or adds axes) it is explicit. Linear part: 1 on every edge.
"""

from __future__ import annotations

import operator
from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from nsp.operations.base import ConnectivityError, OperationKind, register
from nsp.operations.blocks import Coo, Kron
from nsp.operations.kronecker import Factor

FUNCTIONS = {
    torch.permute, torch.transpose, torch.t, torch.movedim, torch.moveaxis, torch.swapaxes, torch.swapdims,
    torch.narrow, torch.select, torch.index_select, torch.flip, torch.roll, torch.tile, torch.chunk,
    torch.split, torch.unbind, torch.tensor_split, torch.take_along_dim, torch.gather, torch.diagonal,
    torch.pixel_shuffle, torch.pixel_unshuffle, torch.channel_shuffle, torch.native_channel_shuffle,
    operator.getitem,
}
METHODS = {
    "permute", "transpose", "t", "movedim", "moveaxis", "swapaxes", "swapdims", "narrow", "select",
    "index_select", "flip", "roll", "expand", "repeat", "tile", "chunk", "split", "unbind", "tensor_split",
    "unfold", "gather", "take_along_dim", "diagonal", "__getitem__",
}
MODULES = (nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle)


@register
class Gather(OperationKind):
    name = "gather"
    modules = MODULES
    functions = FUNCTIONS
    methods = METHODS
    single_input = True

    def function_params(self, target, args, kwargs):
        if target is operator.getitem and not (args and isinstance(args[0], torch.Tensor)):
            return None                 # an item of a tuple or list: not an operation on a tensor
        return super().function_params(target, args, kwargs)

    def blocks(self, op, inputs, incl, limit):
        return [gather_block(op)]


def gather_block(op) -> Kron | Coo:
    """The exact block of a data-movement operation, from its evaluation on input indices."""
    in_shape, out_shape = tuple(op.in_shapes[0]), tuple(op.out_shape)
    n_in = prod(in_shape)
    if op.evaluate is None or n_in >= 1 << 53:
        raise ConnectivityError(f"operation {op.path!r} (data movement) cannot be re-evaluated on indices")
    index = torch.arange(n_in, dtype=torch.float64).reshape(in_shape)
    with torch.no_grad():
        source = op.evaluate((index,), False)
    if not isinstance(source, torch.Tensor) or tuple(source.shape) != out_shape:
        raise ConnectivityError(f"operation {op.path!r} (data movement) gave {type(source).__name__} "
                                f"{tuple(getattr(source, 'shape', ()))} on indices, not its output shape {out_shape}")
    cols = source.reshape(-1).numpy()
    if not np.array_equal(cols, np.round(cols)) or cols.size and (cols.min() < 0 or cols.max() >= n_in):
        raise ConnectivityError(f"operation {op.path!r} is not pure data movement: evaluated on input indices it "
                                f"returned values that are not indices")
    cols = cols.astype(np.int64)
    factors = _separable(cols.reshape(out_shape), in_shape)
    if factors is not None:
        return Kron(factors)
    return Coo(np.arange(cols.size, dtype=np.int64), cols, (cols.size, n_in))


def _separable(source: np.ndarray, in_shape: tuple) -> tuple | None:
    """Per-axis selection factors when every input axis ``k`` is indexed by output axis ``k`` alone."""
    if source.ndim != len(in_shape):
        return None
    factors = []
    for axis, index in enumerate(np.unravel_index(source, in_shape)):
        picks = index[tuple(slice(None) if a == axis else 0 for a in range(source.ndim))]
        shape = [1] * source.ndim
        shape[axis] = -1
        if not (index == picks.reshape(shape)).all():
            return None
        n_out, n_in = source.shape[axis], in_shape[axis]
        matrix = sp.csr_matrix((np.ones(n_out, dtype=bool), (np.arange(n_out), picks)), shape=(n_out, n_in))
        factors.append(Factor.of(matrix))
    return tuple(factors)
