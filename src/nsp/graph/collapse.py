"""Wiring a module (or a wrapped function) without a rule from its internals: traced in ops mode, collapsed.

The block from the module's input to the layer it returns is the reachability through its internal
graph: from the Kronecker closure terms where the internals are factorable, otherwise over bitsets (one
bit per neuron of the smaller side, OR-reduced along the blocks, in passes of bounded memory). Exact;
nothing is probed. A collapsed block can be dense (a stage of a network reads its whole input in every
output), so the size of an explicit one is bounded: :data:`COLLAPSE_LIMIT` edges, or ``jacobian_limit``
where that is larger (a single Kronecker block costs no more than any other and is not bounded).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from nsp.errors import NotFactorable
from nsp.graph.terms import reach_terms
from nsp.operations.base import FALLBACK, ConnectivityError
from nsp.operations.blocks import Coo, Kron, kron_union, union
from nsp.tracing.recording import TraceError, record

#: most edges a collapsed block may have (``jacobian_limit`` raises it where larger)
COLLAPSE_LIMIT = 1 << 26
#: most bytes of bitsets one reachability pass holds
BITSET_BYTES = 1 << 28
#: outputs (or inputs) sampled to estimate a collapsed block's size before it is formed
SAMPLES = 64


def traced_blocks(graph_core, op, inputs: Sequence, incl: bool, jacobian_limit: int) -> list | None:
    """The block of a call of a module that has no rule (or of a Python function torch.fx kept whole,
    wrapped as a module), from its internals traced in ops mode.

    The module is recorded on the input it received, its internal graph built with the same rules, and
    the block is the reachability from its input to the layer it returns: the union over internal paths
    of the products of their blocks, exact (no probing). None where the op is no such call, or where a
    leaf module (one without child modules) cannot be traced (then the Jacobian fallback decides); a
    container that cannot be traced, or whose block would exceed the size limit, raises
    :class:`ConnectivityError`. ``graph_core``: the class that builds the internal graph
    (:class:`nsp.graph.core.GraphCore`).
    """
    if op.kind != FALLBACK or op.module is None or len(inputs) != 1:
        return None
    module = op.module
    container = next(module.children(), None) is not None
    what = f"module {type(module).__name__}"
    try:
        recording = record(module, inputs[0].reshape(op.in_shapes[0]).detach(), "ops", warn=False)
        if recording.output is None or \
                recording.layers[recording.output].value.numel() != int(np.prod(op.out_shape)):
            raise TraceError("its forward() does not return one tensor computed from its input")
    except (TraceError, ValueError, TypeError) as err:
        if not container:
            return None
        raise ConnectivityError(
            f"{what} has no connectivity rule and its internals could not be traced ({err}); its block "
            f"is only ever taken from its traced internals, never guessed, so use trace='ops'") from None
    core = graph_core.from_recording(recording, incl, jacobian_limit, weights=False)
    limit = max(int(jacobian_limit), COLLAPSE_LIMIT)
    shape = (int(core.sizes[recording.output]), int(core.sizes[0]))
    try:                                # Kronecker-factored internals: the closure block from the factors
        terms = [Kron(t) for t in reach_terms(core, recording.output)]
    except NotFactorable:
        return [_bitset_reach(core, recording.output, limit, what)]
    block = kron_union(terms)
    if block is not None:
        return [block]                  # one Kronecker block: no explicit edges to form, whatever its size
    if sum(t.nnz for t in terms) > limit:
        _check_size(_bitset_reach(core, recording.output, limit, what, estimate_only=True), limit, what, shape,
                    estimated=True)
    block = union(terms, shape)
    _check_size(block.nnz, limit, what, shape)
    return [block]


def _check_size(nnz: int, limit: int, what: str, shape: tuple, estimated: bool = False) -> None:
    if nnz > limit:
        size = f"about {nnz:,} edges (estimated from {SAMPLES} sampled neurons)" if estimated else f"{nnz:,} edges"
        raise ConnectivityError(
            f"{what} has no connectivity rule; collapsed from its traced internals, its block "
            f"({shape[0]:,} outputs x {shape[1]:,} inputs) would have {size}, more than the limit of "
            f"{limit:,}. Use trace='ops', which keeps its internal layers, or raise jacobian_limit")


def _bitset_reach(core, output: int, limit: int, what: str, estimate_only: bool = False):
    """The block input -> layer ``output`` by reachability over bitsets, one bit per neuron of the input
    (propagated forward) or of the output (propagated backward), whichever is smaller. Where more than one
    pass is needed, the size is first estimated from :data:`SAMPLES` evenly spaced bits and refused above
    ``limit``; ``estimate_only``: return that estimate (an edge count) instead of the block."""
    n_in, n_out = int(core.sizes[0]), int(core.sizes[output])
    shape = (n_out, n_in)
    forward = n_in <= n_out
    width = n_in if forward else n_out
    steps, live = _steps(core, output, forward)
    words = max(1, BITSET_BYTES // (8 * max(1, live))) if not estimate_only else 1
    if estimate_only or (width + 63) // 64 > words:
        columns = np.unique(np.linspace(0, width - 1, min(SAMPLES, width)).astype(np.int64))
        reached = int(np.bitwise_count(_pass(core, steps, forward, output, columns)).sum())
        estimate = reached * width // columns.size
        if estimate_only:
            return estimate
        if estimate > 2 * limit:        # refused without forming it; nearer the limit the count decides
            _check_size(estimate, limit, what, shape, estimated=True)
    rows, cols, total = [], [], 0
    for first in range(0, width, 64 * words):
        columns = np.arange(first, min(width, first + 64 * words))
        last = _pass(core, steps, forward, output, columns)
        total += int(np.bitwise_count(last).sum())
        _check_size(total, limit, what, shape)
        r, c = _unpack(last, columns.size)
        rows.append(r)
        cols.append(c + first)
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return Coo(rows, cols, shape) if forward else Coo(cols, rows, shape)


def _steps(core, output: int, forward: bool) -> tuple[list, int]:
    """The propagation as ``(target layer, source layer, block)`` steps (``target[r] |= source[c]`` for
    every edge ``(r, c)`` of the block, oriented target x source), in order, and the most neurons whose
    bits are held at once."""
    steps = []
    if forward:
        for layer in range(1, output + 1):
            for parent, block in core.blocks[layer]:
                steps.append((layer, parent, _oriented(block, False)))
    else:
        reach = {output}
        for layer in range(output, 0, -1):
            if layer not in reach:
                continue
            for parent, block in core.blocks[layer]:
                reach.add(parent)
                steps.append((parent, layer, _oriented(block, True)))
    live = sum(int(core.sizes[layer]) for layer in {s[0] for s in steps} | {s[1] for s in steps})
    return steps, live


def _oriented(block, transposed: bool):
    """A Kronecker block as a :class:`Kron` (applied factor by factor), any other as CSR arrays."""
    if isinstance(block, Kron):
        return block.T if transposed else block
    rows, cols = block.coo()
    shape = block.shape
    if transposed:
        rows, cols, shape = cols, rows, shape[::-1]
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=bool), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    return matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64)


def _pass(core, steps: list, forward: bool, output: int, columns: np.ndarray) -> np.ndarray:
    """One propagation with one bit per entry of ``columns`` (neurons of the start layer); the bits of the
    end layer's neurons."""
    start, end = (0, output) if forward else (output, 0)
    words = (columns.size + 63) // 64
    unit = np.zeros((int(core.sizes[start]), words), dtype=np.uint64)
    position = np.arange(columns.size)
    unit[columns, position // 64] = np.left_shift(np.uint64(1), (position % 64).astype(np.uint64))
    bits = {start: unit}
    remaining = {}
    for _, source, _ in steps:
        remaining[source] = remaining.get(source, 0) + 1
    for target, source, block in steps:
        if target not in bits:
            bits[target] = np.zeros((int(core.sizes[target]), words), dtype=np.uint64)
        if source in bits:
            if isinstance(block, Kron):
                _or_kron(bits[target], bits[source], block)
            else:
                _or_rows(bits[target], bits[source], *block)
        remaining[source] -= 1
        if not remaining[source] and source != end:
            bits.pop(source, None)         # read by no later step
    return bits.get(end, np.zeros((int(core.sizes[end]), words), dtype=np.uint64))


def _unpack(bits: np.ndarray, width: int, budget: int = 1 << 26) -> tuple[np.ndarray, np.ndarray]:
    """Row and bit positions of the set bits of a (rows, words) bitset, in row-major order."""
    rows, cols = [], []
    step = max(1, budget // max(1, bits.shape[1] * 64))
    little = bits.astype("<u8", copy=False)
    for first in range(0, bits.shape[0], step):
        flags = np.unpackbits(little[first:first + step].view(np.uint8), axis=1, bitorder="little")[:, :width]
        r, c = np.nonzero(flags)
        r += first
        rows.append(r)
        cols.append(c)
    return np.concatenate(rows), np.concatenate(cols)


def _or_rows(target: np.ndarray, source: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
             budget: int = 1 << 24) -> None:
    """``target[r] |= source[c]`` for every ``c`` in CSR row ``r``, in slices of about ``budget`` gathered words."""
    nonempty = np.flatnonzero(np.diff(indptr))
    if not nonempty.size:
        return
    starts, ends = indptr[nonempty], indptr[nonempty + 1]
    step = max(1, budget // source.shape[1])
    i = 0
    while i < nonempty.size:
        j = max(i + 1, int(np.searchsorted(ends, starts[i] + step, side="right")))
        a, b = starts[i], ends[j - 1]
        target[nonempty[i:j]] |= np.bitwise_or.reduceat(source[indices[a:b]], starts[i:j] - a, axis=0)
        i = j


def _or_kron(target: np.ndarray, source: np.ndarray, block: Kron) -> None:
    """``target[r] |= source[c]`` for every edge of a Kronecker block, one axis factor at a time (an OR over
    the axis for an all-ones factor, a gather and OR-reduction for a selection or window, nothing for an
    identity): the cost grows with the layer sizes, not with the edge count."""
    factors = block.factors
    words = source.shape[1]
    x = source.reshape(tuple(f.shape[1] for f in factors) + (words,))
    for k in sorted(range(len(factors)), key=lambda k: factors[k].shape[0] / max(1, factors[k].shape[1])):
        factor = factors[k]
        if factor.kind == "eye":
            continue
        if factor.kind == "ones":
            x = np.bitwise_or.reduce(x, axis=k, keepdims=True)
            x = np.broadcast_to(x, x.shape[:k] + (factor.shape[0],) + x.shape[k + 1:])
            continue
        matrix = factor.csr()
        counts = np.diff(matrix.indptr)
        nonempty = np.flatnonzero(counts)
        shape = x.shape[:k] + (factor.shape[0],) + x.shape[k + 1:]
        if not nonempty.size:
            x = np.zeros(shape, dtype=np.uint64)
            continue
        reduced = np.bitwise_or.reduceat(np.take(x, matrix.indices, axis=k), matrix.indptr[nonempty], axis=k)
        if nonempty.size == factor.shape[0]:
            x = reduced
        else:
            x = np.zeros(shape, dtype=np.uint64)
            x[(slice(None),) * k + (nonempty,)] = reduced
    target |= x.reshape(target.shape)
