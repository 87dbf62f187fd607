"""The fallback for operations without a rule: connectivity from the Jacobian's nonzero pattern.

Every operation no registered kind claims is recorded with kind
``"jacobian"``. Its blocks are explicit (:class:`Coo`), so a graph with one
is not Kronecker-factorable; its linear part is 1 on every edge.
"""

from __future__ import annotations

import time
from math import prod
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from nsp.operations.base import FALLBACK, JACOBIAN_LIMIT, OPERATIONS, ConnectivityError, Op, OperationKind
from nsp.operations.blocks import Coo


#: seconds one fallback may take before it gives up with an error naming the operation
JACOBIAN_SECONDS = 120


class Jacobian(OperationKind):
    name = FALLBACK

    def module_params(self, module):
        return None                     # claims nothing: what no kind claims lands here

    def function_params(self, target, args, kwargs):
        return None

    def method_params(self, name, args, kwargs):
        return None

    def blocks(self, op, inputs, incl, limit):
        return jacobian_blocks(op, inputs, incl, limit)


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
            f"Rules exist for the kinds {', '.join(k for k in OPERATIONS if k != FALLBACK)} (convolutions, "
            f"pooling, linear layers, reshapes, elementwise ops, norms, softmax, cat); raise the limit "
            f"with jacobian_limit=..., express the operation with supported ones, or, if this is a "
            f"container module recorded whole in trace='children', use trace='ops' to record its parts.")
    clock = _Budget(op)
    trials = [(list(inputs), False)]
    clock.estimate(lambda: op.evaluate(tuple(x.detach() for x in inputs), False), (3 if incl else 1) * n_out, n_in)
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
        clock.check()
    if incl:
        for p, pattern in enumerate(patterns):
            for sign in (1.0, -1.0):
                pattern |= _probe(op, trials[1][0], p, sign, clock)
    blocks = []
    for pattern in patterns:
        rows, cols = np.nonzero(pattern)
        blocks.append(Coo(rows.astype(np.int64), cols.astype(np.int64), pattern.shape))
    return blocks


class _Budget:
    """Wall-clock budget of one fallback (:data:`JACOBIAN_SECONDS`); a progress bar on a terminal."""

    def __init__(self, op: Op):
        self.op, self.start = op, time.perf_counter()

    def estimate(self, evaluate, rows: int, n_in: int) -> None:
        """Refuse at once where the Jacobians alone would pass the budget: each of their ``rows`` is a
        backward pass, at least as long as the operation's forward pass (timed here)."""
        start = time.perf_counter()
        with torch.no_grad():
            evaluate()
        forward = time.perf_counter() - start
        if forward * rows > JACOBIAN_SECONDS:
            raise ConnectivityError(
                f"operation {self.op.path!r} (output shape {tuple(self.op.out_shape)}) has no connectivity rule, "
                f"and its Jacobian fallback would take at least {forward * rows:.0f} s ({rows:,} backward passes "
                f"of an operation whose forward pass takes {forward * 1e3:.1f} ms, {n_in:,} inputs), more than its "
                f"budget of {JACOBIAN_SECONDS} s (nsp.operations.jacobian.JACOBIAN_SECONDS); express the "
                f"operation with supported ones, or record a smaller input")

    def check(self) -> None:
        spent = time.perf_counter() - self.start
        if spent > JACOBIAN_SECONDS:
            raise ConnectivityError(
                f"operation {self.op.path!r} (output shape {tuple(self.op.out_shape)}) has no connectivity rule "
                f"and its Jacobian fallback passed its time budget ({spent:.0f} s > {JACOBIAN_SECONDS} s, "
                f"nsp.operations.jacobian.JACOBIAN_SECONDS); express the operation with supported ones, or "
                f"record a smaller input")


def _probe(op: Op, inputs: Sequence[torch.Tensor], p: int, sign: float, clock: _Budget,
           chunk: int = 512) -> np.ndarray:
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
    steps = range(0, n, chunk)
    for start in tqdm(steps, desc=f"probing {op.path}", unit="chunk", leave=False, disable=None,
                      delay=2.0):
        clock.check()
        count = min(chunk, n - start)
        deltas = torch.zeros(count + 1, n, dtype=inputs[p].dtype)     # row 0: no shift, the same kernel's base
        deltas[torch.arange(1, count + 1), torch.arange(start, start + count)] = big
        try:
            outs = torch.func.vmap(shifted)(deltas)
        except Exception:            # operations vmap cannot batch: one probe at a time
            outs = torch.stack([shifted(d) for d in deltas])
        pattern[:, start:start + count] = (outs[1:] != outs[:1]).T.cpu().numpy()
    return pattern
