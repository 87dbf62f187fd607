"""Per-operation connectivity rules: which input neurons feed which output neurons.

A rule maps an :class:`nsp.ops.Op` (and, for input-local graphs, the
recorded input tensors) to one block per parent layer: a boolean matrix
with one row per output neuron and one column per neuron of that parent,
both in C order of the full tensor shapes. Separable operations return a
:class:`Kron` block, the Kronecker product of one small factor per tensor
axis (``MATH.md`` section 5); the rest return explicit :class:`Coo` blocks.
Every rule is vectorised: the work is per axis, per kernel offset or per
layer, never per neuron or per edge in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from nsp.operations.ops import Op

#: Largest Jacobian (output neurons x input neurons) the fallback may form.
JACOBIAN_LIMIT = 1 << 24


class ConnectivityError(ValueError):
    """An operation whose connectivity nsp cannot determine."""


@dataclass(frozen=True)
class Kron:
    """Block ``kron(factors[0], factors[1], ...)`` with boolean sparse factors."""

    factors: tuple

    @property
    def shape(self) -> tuple[int, int]:
        return (prod(f.shape[0] for f in self.factors), prod(f.shape[1] for f in self.factors))

    @property
    def nnz(self) -> int:
        return prod(int(f.nnz) for f in self.factors)

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` of the block in canonical CSR order (rows, then sorted columns).

        Built factor by factor: row ``(r, r')`` of ``P kron F`` holds the
        columns ``c * n + c'`` for ``c`` in row ``r`` of ``P`` and ``c'`` in
        row ``r'`` of ``F``, in lexicographic order.
        """
        indptr = np.array([0, 1], dtype=np.int64)
        indices = np.zeros(1, dtype=np.int64)
        for factor in self.factors:
            factor = sp.csr_matrix(factor)
            factor.sum_duplicates()                      # canonical: sorted, no duplicates
            f_ptr = factor.indptr.astype(np.int64)
            f_idx = factor.indices.astype(np.int64)
            n_f = factor.shape[0]
            count_p, count_f = np.diff(indptr), np.diff(f_ptr)
            counts = np.outer(count_p, count_f).ravel()
            new_ptr = np.zeros(counts.size + 1, dtype=np.int64)
            np.cumsum(counts, out=new_ptr[1:])
            row = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
            within = np.arange(new_ptr[-1], dtype=np.int64) - new_ptr[row]
            r_p, r_f = np.divmod(row, n_f)
            del row
            a, b = np.divmod(within, count_f[r_f])
            del within
            indices = indices[indptr[r_p] + a] * factor.shape[1] + f_idx[f_ptr[r_f] + b]
            indptr = new_ptr
        return indptr, indices

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        indptr, indices = self.csr()
        return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr)), indices


@dataclass(frozen=True)
class Coo:
    """Explicit block given by the coordinates of its nonzeros."""

    rows: np.ndarray
    cols: np.ndarray
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.rows.size)

    def coo(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rows, self.cols


def _bool(dense: np.ndarray) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(dense, dtype=bool))


def eye(n: int) -> sp.csr_matrix:
    return sp.identity(n, dtype=bool, format="csr")


def ones(m: int, n: int) -> sp.csr_matrix:
    return _bool(np.ones((m, n), dtype=bool))


def _padded_index(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map positions of a padded axis (already shifted by -padding) to input positions; -1 = padding."""
    if mode == "zeros":
        return np.where((index >= 0) & (index < size), index, -1)
    if mode == "circular":
        return np.mod(index, size)
    if mode == "replicate":
        return np.clip(index, 0, size - 1)
    if mode == "reflect":
        period = 2 * (size - 1) if size > 1 else 1
        folded = np.mod(index, period)
        return np.where(folded < size, folded, period - folded)
    raise ConnectivityError(f"unknown padding mode {mode!r}; accepted: zeros, reflect, replicate, circular")


def window_offsets(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
                   dilation: int, mode: str = "zeros") -> list[sp.csr_matrix]:
    """One (n_out x n_in) 0/1 matrix per kernel offset k: output o reads input o*s - p + d*k."""
    out = np.arange(n_out)
    mats = []
    for k in range(kernel):
        idx = _padded_index(out * stride - padding + dilation * k, n_in, mode)
        keep = idx >= 0
        mats.append(sp.csr_matrix((np.ones(keep.sum(), dtype=bool), (out[keep], idx[keep])), shape=(n_out, n_in)))
    return mats


def window(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
           dilation: int, mode: str = "zeros") -> sp.csr_matrix:
    """Union over kernel offsets of :func:`window_offsets`: the per-axis window factor."""
    total = sp.csr_matrix((n_out, n_in), dtype=bool)
    for mat in window_offsets(n_in, n_out, kernel, stride, padding, dilation, mode):
        total = total + mat
    return total.astype(bool)


def adaptive_window(n_in: int, n_out: int) -> sp.csr_matrix:
    """Adaptive pooling: output o reads inputs floor(o*n/m) .. ceil((o+1)*n/m) - 1."""
    o = np.arange(n_out)
    start = (o * n_in) // n_out
    stop = -((-(o + 1) * n_in) // n_out)
    i = np.arange(n_in)
    return _bool((i[None, :] >= start[:, None]) & (i[None, :] < stop[:, None]))


def _resolved_padding(params: dict) -> tuple:
    padding = params["padding"]
    if padding == "valid":
        return (0,) * params["nd"]
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(params["kernel"], params["dilation"]))
    return padding


def _leading_eyes(shape: Sequence[int]) -> list:
    return [eye(n) for n in shape]


# --- the rules -------------------------------------------------------------

def _elementwise(op: Op, inputs, incl) -> list:
    out = op.out_shape
    blocks = []
    for shape in op.in_shapes:
        padded = (1,) * (len(out) - len(shape)) + tuple(shape)
        factors = [eye(n) if p == n else ones(n, 1) for p, n in zip(padded, out)]
        blocks.append(Kron(tuple(factors)))
    return blocks


def _reshape(op: Op, inputs, incl) -> list:
    return [Kron(tuple(eye(n) for n in op.in_shapes[0]))]


def _spatial_split(op: Op) -> tuple[tuple, tuple, int]:
    nd = op.params["nd"]
    shape = op.in_shapes[0]
    if len(shape) < nd + 1 or len(op.out_shape) != len(shape):
        raise ConnectivityError(
            f"{op.path}: a {nd}-d {op.kind} needs inputs of shape (..., C, {nd} spatial axes); got {tuple(shape)}")
    return tuple(shape[: -nd - 1]), tuple(shape[-nd - 1:]), nd


def _conv(op: Op, inputs, incl) -> list:
    lead, (c_in, *s_in), nd = _spatial_split(op)
    c_out, *s_out = op.out_shape[-nd - 1:]
    p = op.params
    groups = p["groups"]
    channel = _bool((np.arange(c_out)[:, None] // (c_out // groups)) == (np.arange(c_in)[None, :] // (c_in // groups)))
    padding = _resolved_padding(p)
    per_axis = [window_offsets(s_in[a], s_out[a], p["kernel"][a], p["stride"][a], padding[a],
                               p["dilation"][a], p["padding_mode"]) for a in range(nd)]
    if incl:
        spatial = [sum(mats[1:], mats[0]).astype(bool) for mats in per_axis]
        return [Kron(tuple(_leading_eyes(lead) + [channel] + spatial))]
    # Input-local: one block per kernel offset, channels masked by the nonzero weights.
    weight = p["weight"].detach().cpu().numpy() != 0          # (c_out, c_in / groups, *kernel)
    local = np.arange(c_in) % (c_in // groups)
    rows, cols = [], []
    for offset in np.ndindex(*p["kernel"]):
        mask = channel.toarray() & weight[(slice(None), local) + offset]
        if not mask.any():
            continue
        factors = _leading_eyes(lead) + [_bool(mask)] + [per_axis[a][k] for a, k in enumerate(offset)]
        r, c = Kron(tuple(factors)).coo()
        rows.append(r)
        cols.append(c)
    return [_coo_union(rows, cols, (prod(op.out_shape), prod(op.in_shapes[0])))]


def _pool(op: Op, inputs, incl) -> list:
    lead, (channels, *s_in), nd = _spatial_split(op)
    s_out = op.out_shape[-nd:]
    p = op.params
    if op.kind.startswith("adaptive"):
        spatial = [adaptive_window(s_in[a], s_out[a]) for a in range(nd)]
    else:
        padding = _resolved_padding(p)
        spatial = [window(s_in[a], s_out[a], p["kernel"][a], p["stride"][a], padding[a], p["dilation"][a])
                   for a in range(nd)]
    if incl or op.kind in ("avgpool", "adaptive_avgpool"):
        return [Kron(tuple(_leading_eyes(lead) + [eye(channels)] + spatial))]
    return [_max_winners(op, inputs[0])]


def _max_winners(op: Op, x: torch.Tensor) -> Coo:
    """Input-local max pooling: each output keeps the one input that won the max."""
    nd, p = op.params["nd"], op.params
    if op.kind == "adaptive_maxpool":
        fn = getattr(F, f"adaptive_max_pool{nd}d")
        _, idx = fn(x, op.out_shape[-nd:], return_indices=True)
    else:
        fn = getattr(F, f"max_pool{nd}d")
        _, idx = fn(x, p["kernel"], p["stride"], _resolved_padding(p), p["dilation"],
                    ceil_mode=_ceil_mode(op), return_indices=True)
    if tuple(idx.shape) != tuple(op.out_shape):
        raise ConnectivityError(f"{op.path}: could not reproduce the max-pooling output shape {op.out_shape}")
    in_spatial = prod(op.in_shapes[0][-nd:])
    out_spatial = prod(op.out_shape[-nd:])
    rows = np.arange(prod(op.out_shape), dtype=np.int64)
    cols = (rows // out_spatial) * in_spatial + idx.reshape(-1).cpu().numpy().astype(np.int64)
    return Coo(rows, cols, (rows.size, prod(op.in_shapes[0])))


def _ceil_mode(op: Op) -> bool:
    """Whether the recorded output size needs ceil_mode (inferred from the shapes)."""
    nd, p = op.params["nd"], op.params
    padding = _resolved_padding(p)
    for a in range(nd):
        n = op.in_shapes[0][-nd + a]
        span = n + 2 * padding[a] - p["dilation"][a] * (p["kernel"][a] - 1) - 1
        if op.out_shape[-nd + a] != span // p["stride"][a] + 1:
            return True
    return False


def _linear(op: Op, inputs, incl) -> list:
    shape = op.in_shapes[0]
    n_in, n_out = shape[-1], op.out_shape[-1]
    if incl:
        last = ones(n_out, n_in)
    else:
        last = _bool(op.params["weight"].detach().cpu().numpy() != 0)
    return [Kron(tuple(_leading_eyes(shape[:-1]) + [last]))]


def _reduce(op: Op, inputs, incl) -> list:
    shape = tuple(op.in_shapes[0])
    rank = len(shape)
    if "last" in op.params:         # layer norm: the trailing axes
        dims = set(range(rank - op.params["last"], rank))
    elif "keep" in op.params:       # batch norm with batch statistics: all axes but the channel axis
        dims = set(range(rank)) - {k % rank for k in op.params["keep"]}
    else:                           # softmax: the given axes
        dims = {d % rank for d in op.params["dims"]}
    return [Kron(tuple(ones(n, n) if a in dims else eye(n) for a, n in enumerate(shape)))]


def _cat(op: Op, inputs, incl) -> list:
    out = op.out_shape
    dim = op.params["dim"] % len(out)
    blocks, offset = [], 0
    for shape in op.in_shapes:
        n = shape[dim]
        select = sp.csr_matrix((np.ones(n, dtype=bool), (np.arange(offset, offset + n), np.arange(n))),
                               shape=(out[dim], n))
        blocks.append(Kron(tuple(select if a == dim else eye(m) for a, m in enumerate(shape))))
        offset += n
    return blocks


def jacobian_blocks(op: Op, inputs: Sequence[torch.Tensor], incl: bool,
                    limit: int = JACOBIAN_LIMIT) -> list:
    """Fallback: the nonzero pattern of the Jacobian of the operation.

    Input-local graphs use the Jacobian at the recorded inputs. Structural
    graphs take the union of that pattern, the patterns at two seeded random
    inputs with random parameters (so that zero weights or saturated units do
    not hide edges), and one-hot probes: output ``o`` reads input ``i`` if
    moving input ``i`` far above or far below all values changes ``o`` (so
    that max- and min-like operations show every input of their window, not
    only the winners, and steps such as ``x > 0`` show their input).
    """
    n_out = prod(op.out_shape)
    n_in = sum(prod(s) for s in op.in_shapes)
    if op.evaluate is None or n_out * n_in > limit:
        why = ("it cannot be re-evaluated" if op.evaluate is None else
               f"its Jacobian ({n_out} x {n_in} = {n_out * n_in:,} entries) exceeds the fallback limit of {limit:,}")
        raise ConnectivityError(
            f"operation {op.path!r} (output shape {tuple(op.out_shape)}) has no connectivity rule and {why}. "
            f"Rules exist for: convolutions, pooling, adaptive pooling, linear, flatten/view/reshape, "
            f"elementwise ops, batch norm, instance norm, layer norm, softmax and cat; raise the limit "
            f"with jacobian_limit=..., express the operation with supported ones, or, if this is a "
            f"container module recorded whole in trace='children', use trace='ops' to record its parts.")
    trials = [(list(inputs), False)]
    if incl:
        gen = torch.Generator().manual_seed(0)
        for _ in range(2):
            trials.append(([torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype)
                            for x in inputs], True))
    patterns = [np.zeros((n_out, prod(s)), dtype=bool) for s in op.in_shapes]
    for values, randomize in trials:
        values = tuple(v.detach().clone() for v in values)
        jac = torch.autograd.functional.jacobian(lambda *xs: op.evaluate(xs, randomize), values)
        if not isinstance(jac, tuple):
            jac = (jac,)
        for pattern, block in zip(patterns, jac):
            pattern |= (block.reshape(n_out, -1) != 0).cpu().numpy()
    if incl:
        for p, pattern in enumerate(patterns):
            for sign in (1.0, -1.0):
                pattern |= _probe(op, trials[1][0], p, sign)
    blocks = []
    for pattern in patterns:
        rows, cols = np.nonzero(pattern)
        blocks.append(Coo(rows.astype(np.int64), cols.astype(np.int64), pattern.shape))
    return blocks


def _probe(op: Op, inputs: Sequence[torch.Tensor], p: int, sign: float, chunk: int = 512) -> np.ndarray:
    """Which outputs change when one element of input ``p`` moves far beyond all values (in direction ``sign``)."""
    shape = inputs[p].shape
    n = inputs[p].numel()
    big = sign * 1e3 * (1.0 + max(float(v.abs().max()) for v in inputs))

    def shifted(delta):
        values = list(inputs)
        values[p] = values[p] + delta.reshape(shape)
        return op.evaluate(tuple(values), True).reshape(-1)

    base = shifted(torch.zeros(n, dtype=inputs[p].dtype))
    pattern = np.zeros((base.numel(), n), dtype=bool)
    for start in range(0, n, chunk):
        deltas = torch.zeros(min(chunk, n - start), n, dtype=inputs[p].dtype)
        deltas[torch.arange(deltas.shape[0]), torch.arange(start, start + deltas.shape[0])] = big
        try:
            outs = torch.func.vmap(shifted)(deltas)
        except Exception:            # operations vmap cannot batch: one probe at a time
            outs = torch.stack([shifted(d) for d in deltas])
        pattern[:, start:start + deltas.shape[0]] = (outs != base).T.cpu().numpy()
    return pattern


def _coo_union(rows: list, cols: list, shape: tuple) -> Coo:
    if not rows:
        return Coo(np.zeros(0, np.int64), np.zeros(0, np.int64), shape)
    key = np.unique(np.concatenate(rows) * shape[1] + np.concatenate(cols))
    return Coo(key // shape[1], key % shape[1], shape)


RULES = {
    "elementwise": _elementwise, "reshape": _reshape, "conv": _conv, "maxpool": _pool,
    "avgpool": _pool, "adaptive_avgpool": _pool, "adaptive_maxpool": _pool,
    "linear": _linear, "reduce": _reduce, "cat": _cat,
}


def blocks_for(op: Op, inputs: Sequence[torch.Tensor], incl: bool = True,
               jacobian_limit: int = JACOBIAN_LIMIT) -> list:
    """Connectivity blocks of ``op``, one per parent, in the order of ``op.in_shapes``."""
    rule = RULES.get(op.kind)
    if rule is None:
        return jacobian_blocks(op, inputs, incl, jacobian_limit)
    blocks = rule(op, inputs, incl)
    expected = prod(op.out_shape)
    for block, shape in zip(blocks, op.in_shapes):
        if block.shape != (expected, prod(shape)):
            raise ConnectivityError(
                f"operation {op.path!r} ({op.kind}): the rule gave a {block.shape} block for input shape "
                f"{tuple(shape)} and output shape {tuple(op.out_shape)}; the layer's parameters do not match "
                f"its recorded shapes")
    return blocks
