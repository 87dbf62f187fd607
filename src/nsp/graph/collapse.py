"""Wiring a module without a rule from its internals: the module traced in ops mode, its graph collapsed.

The block from the module's input to the layer it returns is the reachability through its internal
graph: from the Kronecker closure terms where the internals are factorable, otherwise over bitsets (one
bit per neuron of the smaller side, OR-reduced along the blocks). Exact; nothing is probed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nsp.operations.base import FALLBACK
from nsp.operations.blocks import Coo, Kron, union
from nsp.tracing.recording import TraceError, record


def traced_blocks(graph_core, op, inputs: Sequence, incl: bool, jacobian_limit: int) -> list | None:
    """The block of a call of a module that has no rule, from its internals traced in ops mode.

    The module is recorded on the input it received, its internal graph built with the same rules, and
    the block is the reachability from its input to the layer it returns: the union over internal paths
    of the products of their blocks, exact (no probing). None where the op is no such call or torch.fx
    cannot trace the module (then the Jacobian fallback decides). ``graph_core``: the class that builds the
    internal graph (:class:`nsp.graph.core.GraphCore`).
    """
    if op.kind != FALLBACK or op.module is None or len(inputs) != 1:
        return None
    try:
        recording = record(op.module, inputs[0].reshape(op.in_shapes[0]).detach(), "ops")
    except (TraceError, ValueError, TypeError):
        return None
    if recording.output is None or recording.layers[recording.output].value.numel() != int(np.prod(op.out_shape)):
        return None
    core = graph_core.from_recording(recording, incl, jacobian_limit, weights=False)
    from nsp.transforms.factored import NotFactorable, reach_terms    # transforms import the graph
    try:                                # Kronecker-factored internals: the closure block from the factors
        return [union([Kron(t) for t in reach_terms(core, recording.output)],
                      (int(core.sizes[recording.output]), int(core.sizes[0])))]
    except NotFactorable:
        pass
    return [_bitset_reach(core, recording.output)]


def _bitset_reach(core, output: int) -> Coo:
    """The block input -> layer ``output`` by reachability over bitsets, one bit per neuron of the input
    (propagated forward) or of the output (propagated backward), whichever is smaller."""
    n_in, n_out = int(core.sizes[0]), int(core.sizes[output])
    forward = n_in <= n_out
    width = n_in if forward else n_out
    words = (width + 63) // 64
    unit = np.zeros((width, words), dtype=np.uint64)
    columns = np.arange(width)
    unit[columns, columns // 64] = np.left_shift(np.uint64(1), (columns % 64).astype(np.uint64))
    bits = {0 if forward else output: unit}
    if forward:
        for layer in range(1, output + 1):
            bits[layer] = np.zeros((int(core.sizes[layer]), words), dtype=np.uint64)
            for parent, block in core.blocks[layer]:
                if parent in bits:
                    _or_rows(bits[layer], bits[parent], *block.coo())
        last = bits[output]
    else:
        for layer in range(output, 0, -1):
            mine = bits.pop(layer, None)
            if mine is None:
                continue                    # reaches no neuron of the output
            for parent, block in core.blocks[layer]:
                if parent not in bits:
                    bits[parent] = np.zeros((int(core.sizes[parent]), words), dtype=np.uint64)
                rows, cols = block.coo()
                _or_rows(bits[parent], mine, cols, rows)
        last = bits.get(0, np.zeros((n_in, words), dtype=np.uint64))
    rows, word = np.nonzero(last)
    values = last[rows, word]
    hits = (values[:, None] >> np.arange(64, dtype=np.uint64)[None, :]) & np.uint64(1)
    which, position = np.nonzero(hits)
    other = word[which] * 64 + position
    rows = rows[which]
    if not forward:
        rows, other = other, rows           # bits were outputs: the rows of ``last`` are inputs
    return Coo.union([rows.astype(np.int64)], [other.astype(np.int64)], (n_out, n_in))


def _or_rows(bits: np.ndarray, source: np.ndarray, rows: np.ndarray, cols: np.ndarray, budget: int = 1 << 24) -> None:
    """``bits[r] |= source[c]`` for every edge ``(r, c)``, in slices of about ``budget`` gathered words."""
    if not rows.size:
        return
    order = np.argsort(rows, kind="stable")
    rows, cols = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    step = max(1, budget // max(1, source.shape[1]))
    bounds = np.r_[starts, rows.size]
    group = 0
    while group < starts.size:
        last = int(np.searchsorted(bounds, bounds[group] + step, side="right")) - 1
        last = max(last, group + 1)
        a, b = bounds[group], bounds[last]
        bits[rows[starts[group:last]]] |= np.bitwise_or.reduceat(source[cols[a:b]], starts[group:last] - a, axis=0)
        group = last
