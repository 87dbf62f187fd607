"""Data movement: operations whose every output element is a copy of one input element (kind ``gather``).

Permutes and transposes, slicing and indexing with constant indices,
``narrow``/``select``/``index_select``, flips and rolls, ``expand`` and
``repeat``, the pieces of ``chunk``/``split``/``unbind``, pixel and channel
shuffles, padding (constant, reflect, replicate, circular). The block is
read off the operation itself, exactly: evaluated on the tensor of its
input's flat indices (float64, exact below 2^52), the operation returns,
for every output element, the index of the input element it copies (or a
constant, for padding). Where each output axis copies from the same input
axis (slices with steps, flips, rolls, broadcasts, tiling, padding, and
indexing that drops or adds axes, with a size-1 axis standing for the
missing one) the block is a Kronecker product of one selection factor per
axis; a permute of axes is a :class:`Permutation`; anything else is
explicit. Linear part: 1 on every edge.
"""

from __future__ import annotations

import itertools
import operator
from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from nsp.operations.base import ConnectivityError, OperationKind
from nsp.operations.blocks import Coo, Kron, Permutation
from nsp.operations.kronecker import Factor, alignments

FUNCTIONS = {
    torch.nn.functional.pad, torch.permute, torch.transpose, torch.t, torch.movedim, torch.moveaxis, torch.swapaxes, torch.swapdims,
    torch.narrow, torch.select, torch.index_select, torch.flip, torch.roll, torch.tile, torch.chunk,
    torch.split, torch.unbind, torch.tensor_split, torch.take_along_dim, torch.gather, torch.diagonal,
    torch.pixel_shuffle, torch.pixel_unshuffle, torch.channel_shuffle, torch.native_channel_shuffle,
    operator.getitem,
}
METHODS = {
    "permute", "transpose", "t", "movedim", "moveaxis", "swapaxes", "swapdims", "narrow", "select",
    "index_select", "flip", "roll", "expand", "expand_as", "repeat", "tile", "chunk", "split", "unbind", "tensor_split",
    "unfold", "gather", "take_along_dim", "diagonal", "__getitem__", "T", "mT",
}
MODULES = (nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle, nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d,
           nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
           nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d, nn.CircularPad1d,
           nn.CircularPad2d, nn.CircularPad3d)


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
        return [gather_block(op, which) for which in range(len(op.in_shapes))]


def gather_block(op, which: int = 0) -> Kron | Coo:
    """The exact block from input ``which`` of a data-movement operation, from its evaluation on indices.

    Evaluated twice, on the flat indices plus 1 and plus 2 (other inputs zero): an output that copies an
    element of the input shows its index + 1 and + 2; an output that changes by neither (padding with a
    constant, or a copy from another input) reads no element of it.
    """
    in_shape, out_shape = tuple(op.in_shapes[which]), tuple(op.out_shape)
    n_in = prod(in_shape)
    if op.evaluate is None or n_in >= 1 << 52:
        raise ConnectivityError(f"operation {op.path!r} (data movement) cannot be re-evaluated on indices")
    index = torch.arange(n_in, dtype=torch.float64).reshape(in_shape)
    others = [torch.zeros(s, dtype=torch.float64) for s in op.in_shapes]
    with torch.no_grad():
        first, second = (op.evaluate(tuple(index + shift if i == which else others[i]
                                           for i in range(len(others))), False) for shift in (1.0, 2.0))
    if not isinstance(first, torch.Tensor) or tuple(first.shape) != out_shape:
        raise ConnectivityError(f"operation {op.path!r} (data movement) gave {type(first).__name__} "
                                f"{tuple(getattr(first, 'shape', ()))} on indices, not its output shape {out_shape}")
    a, b = first.reshape(-1).numpy(), second.reshape(-1).numpy()
    constant = (a == b) | (np.isnan(a) & np.isnan(b))
    copies = ~constant
    source = a[copies] - 1
    if not np.array_equal(b[copies] - a[copies], np.ones(source.size)) or not np.array_equal(source, np.round(source)) \
            or source.size and (source.min() < 0 or source.max() >= n_in):
        raise ConnectivityError(f"operation {op.path!r} is not pure data movement: evaluated on input indices it "
                                f"returned values that are neither indices nor constants")
    rows = np.flatnonzero(copies).astype(np.int64)
    cols = source.astype(np.int64)
    block = Coo(rows, cols, (a.size, n_in))
    return _separable(block, out_shape, in_shape) or _permutation(block, out_shape, in_shape) or block


def _permutation(block: Coo, out_shape: tuple, in_shape: tuple) -> Permutation | None:
    """The block as an axis permutation of the input, where it is one."""
    n = prod(in_shape)
    if len(out_shape) != len(in_shape) or sorted(out_shape) != sorted(in_shape) or block.rows.size != n \
            or not np.array_equal(block.rows, np.arange(n)):
        return None
    index = np.arange(n).reshape(in_shape)
    for order in itertools.permutations(range(len(in_shape))):
        if tuple(in_shape[k] for k in order) == out_shape \
                and np.array_equal(index.transpose(order).reshape(-1), block.cols):
            return Permutation(block.rows, block.cols, block.shape, tuple(order), tuple(in_shape))
    return None


def _separable(block: Coo, out_shape: tuple, in_shape: tuple) -> Kron | None:
    """The block as a Kronecker product of per-axis selection factors, where it is one. Where the operation
    drops or adds axes (``x[0]``, ``unbind``, ``select``, ``x[:, None]``), the shorter shape is tried with
    size-1 axes inserted at every place, fewest mismatched sizes first."""
    if block.rows.size == 0:
        return None
    for outs, ins in alignments(out_shape, in_shape):
        kron = _separable_aligned(block, outs, ins)
        if kron is not None:
            return kron
    return None


def _separable_aligned(block: Coo, out_shape: tuple, in_shape: tuple) -> Kron | None:
    outs, ins = np.unravel_index(block.rows, out_shape), np.unravel_index(block.cols, in_shape)
    factors = []
    for o, i, m, n in zip(outs, ins, out_shape, in_shape):
        matrix = sp.csr_matrix((np.ones(o.size, dtype=bool), (o, i)), shape=(m, n))
        matrix.sum_duplicates()
        factors.append(Factor.of(matrix))
    kron = Kron(tuple(factors))
    if kron.nnz != block.rows.size:
        return None
    rows, cols = kron.coo()
    order = np.lexsort((block.cols, block.rows))
    return kron if np.array_equal(rows, block.rows[order]) and np.array_equal(cols, block.cols[order]) else None
