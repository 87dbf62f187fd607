"""A graph's connectivity blocks as Kronecker terms on its closure axes, and what the input reaches.

:func:`factored_blocks` takes each block in its own Kronecker factors (refusing explicit blocks) and
:func:`checked_axes` rewrites them onto the closure axes of :mod:`nsp.graph.axes`, one factor per axis.
The causal closure is built from these terms (:mod:`nsp.transforms.factored`); :func:`reach_terms`
propagates them from the input alone, which is what collapsing a module's traced internals into one block
needs (:mod:`nsp.graph.collapse`).
"""

from __future__ import annotations

from nsp.errors import NotFactorable
from nsp.graph.axes import layer_axes, reordered
from nsp.operations.blocks import Kron, Permutation
from nsp.operations.kronecker import Factor, KroneckerError, term_matmul, union_add


def factored_blocks(core) -> list:
    """Per layer ``[(parent, Factor list or Permutation)]`` in the blocks' own axes; NotFactorable for other
    explicit blocks."""
    if not core.incl:
        raise NotFactorable("the graph is input-local (INCL=False): max-pooling winners and zero weights "
                            "are not Kronecker-structured")
    out = [[]]
    for layer in range(1, core.n_layers):
        row = []
        for parent, block in core.blocks[layer]:
            if isinstance(block, Permutation):
                row.append((parent, block))
                continue
            if not isinstance(block, Kron):
                raise NotFactorable(f"layer {layer} ({core.names[layer]!r}, operation {core.kinds[layer]}) "
                                    f"has an explicit connectivity block (no Kronecker rule)")
            factors = block.factors
            if any(f.kind == "sparse" for f in factors):
                raise NotFactorable(f"layer {layer} ({core.names[layer]!r}): a factor of its block from layer "
                                    f"{parent} is too large to handle densely")
            row.append((parent, list(factors)))
        out.append(row)
    return out


def checked_axes(core, blocks: list) -> tuple[list, list]:
    """Axes and axis orders per layer, and the blocks regrouped onto the axes (in place)."""
    axes, orders = layer_axes(core)
    for layer in range(1, core.n_layers):
        regrouped = []
        for parent, factors in blocks[layer]:
            if isinstance(factors, Permutation):        # the same axes, in another order: an identity
                regrouped.append((parent, tuple(Factor.eye(n) for n in axes[layer])))
                continue
            try:
                term = reordered(factors, axes[layer], orders[layer], axes[parent], orders[parent])
            except KroneckerError as err:
                raise NotFactorable(f"layer {layer} ({core.names[layer]!r}, operation {core.kinds[layer]}): "
                                    f"its block from layer {parent} ({core.names[parent]!r}) has no form on "
                                    f"axes {axes[layer]} x {axes[parent]}: {err}") from None
            if term is not None:
                regrouped.append((parent, term))
        blocks[layer] = regrouped
    return axes, orders


def reach_terms(core, last: int) -> list:
    """The closure block ``Z[last, 0]`` (which input neurons reach layer ``last``) as a union of
    Kronecker terms, propagated from the input only; raises :class:`NotFactorable`."""
    blocks = factored_blocks(core)
    axes, orders = checked_axes(core, blocks)
    if orders[last] != orders[0]:
        raise NotFactorable(f"the axes of layer {last} ({core.names[last]!r}) are permuted")
    reach = [[tuple(Factor.eye(n) for n in axes[0])]] + [[] for _ in range(last)]
    for L in range(1, last + 1):
        for parent, term in blocks[L]:
            for t in reach[parent]:
                reach[L] = union_add(reach[L], term_matmul(term, t))
    return reach[last]
