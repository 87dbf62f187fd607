"""Closure axes: one common set of ``K`` axes on which every block of a graph is a Kronecker product.

To write the causal closure of a graph as Kronecker terms (:mod:`nsp.transforms.factored`), every layer
is given ``K`` axes: its tensor shape padded with trailing 1s, or the axes of its parent where a reshape or
an elementwise operation keeps them, in the order a permute left them (so one tensor axis may span several
closure axes). Each connectivity block is then re-expressed with one factor per pair of axes
(:func:`nsp.operations.kronecker.regroup`, through :func:`reordered`). :func:`layer_axes` finds these axes
for the whole graph at once (:class:`_Unifier`): where a permute or a reshape splits an axis, or two paths
meet in different structures, the axes of an earlier layer are refined and the layers assigned again.

A layer's structure is the pair ``(axes, order)``: the size of each of the ``K`` axes, and the order in
which they make the layer's node order (C order over ``axes[order[0]], axes[order[1]], ...``).
"""

from __future__ import annotations

import itertools
from math import prod

from nsp.errors import NotFactorable
from nsp.operations.blocks import Permutation
from nsp.operations.kronecker import KroneckerError, alignments, regroup


def layer_axes(core) -> tuple[list, list]:
    """``K`` axis sizes per layer and the order in which they make the layer's node order (see the module
    docstring): the layer's nodes, in node order, are its axes ``orders[L][0], orders[L][1], ...`` in C
    order. A tensor axis of the layer is a run of consecutive axes of that order (size-1 axes skipped), so
    a permute may move groups of axes that a reshape made one tensor axis. Raises :class:`NotFactorable`.

    The structures are unified over the whole graph (:class:`_Unifier`): where two paths meet with
    different structures, or a permute or reshape splits an axis, the structure of an earlier layer is
    refined and the layers are assigned again; ``K`` grows by up to 3 axes where the refinement needs them.
    """
    rank = max(1, max(len(s) for s in core.shapes))
    for extra in range(4):
        try:
            structures = _Unifier(core, rank + extra).solve()
        except _NeedAxes:
            continue
        return [a for a, _ in structures], [o for _, o in structures]
    raise NotFactorable(f"the graph needs more than {rank + 3} closure axes to factor")


#: why paths may not agree on one structure (NotFactorable messages)
AGREE = ("for example attention scores formed as a product q @ kᵀ of two maps of the same tokens need the "
         "token axis twice; fused attention, F.scaled_dot_product_attention, factors")


class _NeedAxes(Exception):
    """A refinement needs more axes than ``K``."""


def _tensor_groups(axes: tuple, order: tuple, shape: tuple) -> list | None:
    """For each axis of a tensor of ``shape`` whose node order is C order over ``axes`` taken in ``order``:
    the axes it spans (consecutive in ``order``, size-1 axes left out); None where a tensor axis would
    split one of them."""
    common = _common_groups(axes, order, shape)
    return None if common is None or any(b - a != 1 for a, b in common[0]) else common[1]


def _common_groups(axes: tuple, order: tuple, shape: tuple) -> tuple[list, list] | None:
    """The coarsest common coarsening of a tensor of ``shape`` and the axes ``axes`` in ``order``:
    ``(ranges, groups)``, per run of tensor axes ``shape[a:b]`` (``ranges``) the axes it spans; a run
    holds one tensor axis wherever the axes do not cut across tensor axes. None where sizes differ."""
    sequence = [a for a in order if axes[a] > 1]
    ranges, groups, i, t = [], [], 0, 0
    while t < len(shape):
        first, group, have, need = t, [], 1, int(shape[t])
        t += 1
        while have != need:
            if have < need and i < len(sequence):
                group.append(sequence[i])
                have *= axes[sequence[i]]
                i += 1
            elif need < have and t < len(shape):
                need *= int(shape[t])
                t += 1
            else:
                return None
        ranges.append((first, t))
        groups.append(group)
    return (ranges, groups) if i == len(sequence) else None


def _full_shape(core, layer: int, parent: int, order: tuple) -> tuple:
    """The parent's full shape (the batch axis of size 1 where the permutation ``order`` finds it) for a
    permute from ``parent`` to ``layer`` (the layer table's shapes drop a leading batch axis)."""
    shape, out = tuple(core.shapes[parent]), tuple(core.shapes[layer])
    if len(shape) == len(order):
        return shape
    for b in range(len(order)):
        full = shape[:b] + (1,) + shape[b:]
        moved = [full[k] for k in order]
        del moved[list(order).index(b)]
        if len(out) == len(order) and tuple(full[k] for k in order) == out or tuple(moved) == out:
            return full
    raise NotFactorable(f"layer {layer} ({core.names[layer]!r}): a permutation {tuple(order)} of shape {shape} "
                        f"that does not give {out}")


def _structure(K: int, groups: list) -> tuple:
    """(axes, order) from the axes each tensor axis spans, in node order: ``groups`` lists ``(axis, size)``
    pairs; the axes not listed have size 1 and come last."""
    axes, sequence = [1] * K, []
    for a, n in groups:
        axes[a] = int(n)
        sequence.append(a)
    return tuple(axes), tuple(sequence + [a for a in range(K) if a not in sequence])


def _refine(structure: tuple, shape: tuple) -> tuple:
    """The coarsest refinement of ``structure`` in which every axis of a tensor of ``shape`` (of the same
    size) is a run of axes: an axis that a tensor axis boundary cuts is split, its first piece keeping the
    axis, the others taking axes of size 1. NotFactorable where the two mixed radices do not nest."""
    axes, order = structure
    sequence = [(a, axes[a]) for a in order if axes[a] > 1]
    cuts = set()
    for sizes in ([n for _, n in sequence], [int(n) for n in shape]):
        product = 1
        for n in sizes:
            product *= n
            cuts.add(product)
    cuts = sorted(cuts)
    if any(b % a for a, b in zip(cuts, cuts[1:])):
        raise NotFactorable(f"axes {tuple(n for _, n in sequence)} and a tensor shape {tuple(shape)} have no "
                            f"common refinement")
    free = [a for a in range(len(axes)) if axes[a] == 1]
    groups, product = [], 1
    for a, n in sequence:
        pieces, end, first = [], product * n, True
        for cut in cuts:
            if product < cut <= end:
                pieces.append(cut // product)
                product = cut
        for piece in pieces:
            if first:
                groups.append((a, piece))
                first = False
            elif free:
                groups.append((free.pop(0), piece))
            else:
                raise _NeedAxes()
    return _structure(len(axes), groups)


def _adapt(structure: tuple, shape: tuple, target: tuple) -> list:
    """Candidate structures for a tensor of shape ``target`` next to one of ``shape`` with ``structure``:
    the same axes where it has the same size (and their refinement where they split a tensor axis); else,
    per tensor axis, the same axes where the size is kept; where it changed, the first of them with the
    new size (the rest 1), or the same split with the last or the first axis scaled; a free axis where an
    axis of size 1 grew."""
    axes, order = structure
    out = []
    if prod(shape) == prod(target):
        out.append(structure)
        if _tensor_groups(axes, order, target) is None:
            try:
                out.append(_refine(structure, target))
            except (NotFactorable, _NeedAxes):
                pass
        if tuple(shape) == tuple(target):
            return out
    for mine, theirs in alignments(shape, target):
        common = _common_groups(axes, order, mine)
        if common is None:
            continue
        ranges, groups = common
        mine, theirs = ([prod(x[a:b]) for a, b in ranges] for x in (mine, theirs))
        free = [a for a in range(len(axes)) if axes[a] == 1]
        choices = []
        for group, n, m in zip(groups, mine, theirs):
            sizes = [axes[a] for a in group]
            if n == m:
                choices.append([list(zip(group, sizes))])
            elif m == 1:
                choices.append([[]])
            elif not group:
                if not free:
                    break
                choices.append([[(free.pop(0), m)]])
            else:
                ways = [[(group[0], m)]]
                lead, rest = prod(sizes[:-1]), prod(sizes[1:])
                if len(group) > 1 and m % lead == 0:
                    ways.append(list(zip(group, sizes[:-1] + [m // lead])))
                if len(group) > 1 and m % rest == 0:
                    ways.append(list(zip(group, [m // rest] + sizes[1:])))
                choices.append(ways)
        else:
            for k, pick in enumerate(itertools.product(*choices)):
                if k == 8:
                    break
                out.append(_structure(len(axes), [pair for part in pick for pair in part if pair[1] > 1]))
    return list(dict.fromkeys(out))


def _merged_order(rows: tuple, row_order: tuple, cols: tuple, col_order: tuple) -> tuple:
    """One order of the axes that keeps both layers' node orders: the order of the axes of size > 1 of
    each layer as in its own order (KroneckerError where the two disagree)."""
    a = [k for k in row_order if rows[k] > 1]
    b = [k for k in col_order if cols[k] > 1]
    in_a, in_b, out = set(a), set(b), []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and j < len(b) and a[i] == b[j]:
            out.append(a[i])
            i, j = i + 1, j + 1
        elif i < len(a) and a[i] not in in_b:
            out.append(a[i])
            i += 1
        elif j < len(b) and b[j] not in in_a:
            out.append(b[j])
            j += 1
        else:
            raise KroneckerError(f"axes in orders {tuple(row_order)} and {tuple(col_order)} that disagree")
    return tuple(out + [k for k in range(len(rows)) if k not in out])


def reordered(factors: list, rows: tuple, row_order: tuple, cols: tuple, col_order: tuple) -> tuple | None:
    """A block between two layers written on their axes (``rows``, ``cols``) with their orders: the
    factors (of the tensors' axes, in node order) regrouped onto the axes taken in an order that keeps
    both node orders, then put back in axis order. None for an empty block."""
    order = _merged_order(rows, row_order, cols, col_order)
    term = regroup(list(factors), tuple(rows[a] for a in order), tuple(cols[a] for a in order))
    if term is None:
        return None
    out = [None] * len(order)
    for position, a in enumerate(order):
        out[a] = term[position]
    return tuple(out)


def _fits(factors, structure: tuple, parent: tuple) -> bool:
    if isinstance(factors, Permutation):
        return False
    try:
        reordered(factors.factors, structure[0], structure[1], parent[0], parent[1])
    except KroneckerError:
        return False
    return True


class _Unifier:
    """Structures (axes, order) for every layer of a graph with ``K`` closure axes.

    A forward pass gives each layer the first candidate on which every incoming block can be written: a
    hint, its parents' structures adapted to its shape (:func:`_adapt`), its own padded shape; a permute
    carries its parent's axes in the moved order. Where no candidate fits (two paths meet with different
    structures, a permute or reshape splits an axis), a parent gets a hint (the structure it would need:
    the layer's best candidate pulled back, or its own refinement) and the pass starts again. A hint on a
    permute goes to the layer it permutes. The same hint twice, or too many passes: NotFactorable."""

    def __init__(self, core, K: int):
        self.core, self.K = core, K
        self.permutes = {L: core.blocks[L][0] for L in range(1, core.n_layers)
                         if len(core.blocks[L]) == 1 and isinstance(core.blocks[L][0][1], Permutation)}
        self.fits: dict = {}

    def _fits(self, layer: int, k: int, structure: tuple, parent: tuple) -> bool:
        """Whether block ``k`` into ``layer`` can be written on the two structures (remembered: the passes
        ask the same again and again)."""
        key = (layer, k, structure, parent)
        if key not in self.fits:
            self.fits[key] = _fits(self.core.blocks[layer][k][1], structure, parent)
        return self.fits[key]

    def solve(self) -> list:
        hints: dict = {}
        for _ in range(4 * self.core.n_layers + 8):
            conflict = self._forward(hints)
            if isinstance(conflict, list):
                return conflict
            layer, structure, why = conflict
            while layer in self.permutes:           # a permute's structure is its parent's, moved
                layer, structure = self._pull_through(layer, structure)
            if hints.get(layer) == structure:
                raise NotFactorable(f"{why}; the paths through layer {layer} ({self.core.names[layer]!r}) need "
                                    f"its axes in two arrangements at once ({AGREE})")
            hints[layer] = structure
        raise NotFactorable(f"{why} ({AGREE})")

    def _pull_through(self, layer: int, structure: tuple) -> tuple:
        """The structure the parent of the permute ``layer`` needs for ``layer`` to have ``structure``."""
        parent, block = self.permutes[layer]
        full = _full_shape(self.core, layer, parent, block.order)
        out_full = tuple(full[k] for k in block.order)
        groups = _tensor_groups(structure[0], structure[1], out_full)
        if groups is None:                      # axes that cut across the permuted tensor axes: split them
            structure = _refine(structure, out_full)
            groups = _tensor_groups(structure[0], structure[1], out_full)
        mine = [None] * len(full)
        for t, k in enumerate(block.order):
            mine[k] = groups[t]
        return parent, _structure(self.K, [(a, structure[0][a]) for g in mine for a in g])

    def _forward(self, hints: dict):
        core, K = self.core, self.K
        done: list = []
        for L in range(core.n_layers):
            shape = tuple(core.shapes[L])
            if L in self.permutes:
                parent, block = self.permutes[L]
                full = _full_shape(core, L, parent, block.order)
                axes, order = done[parent]
                groups = _tensor_groups(axes, order, full)
                if groups is None:
                    return (parent, _refine(done[parent], full),
                            f"layer {L} ({core.names[L]!r}) permutes axes of layer {parent} that split its axes "
                            f"{axes}")
                moved = [a for t in block.order for a in groups[t]]
                done.append((axes, tuple(moved + [a for a in order if a not in moved])))
                continue
            padded = _structure(K, [(k, n) for k, n in enumerate(shape) if n > 1]) if len(shape) <= K else None
            candidates = [hints[L]] if L in hints else []
            same = [p for p, _ in core.blocks[L] if core.sizes[p] == core.sizes[L]]
            for parent in same:                     # a parent's axes where the size is kept
                candidates.extend(_adapt(done[parent], tuple(core.shapes[parent]), shape))
            if padded and all(done[p][1] == tuple(range(K)) for p, _ in core.blocks[L]):
                candidates.append(padded)           # its own shape, where no parent is permuted
            for parent, _ in core.blocks[L]:
                if parent not in same:
                    candidates.extend(_adapt(done[parent], tuple(core.shapes[parent]), shape))
            candidates = [c for c in dict.fromkeys(candidates + ([padded] if padded else []))
                          if prod(c[0]) == core.sizes[L]]
            if not candidates:
                raise NotFactorable(f"layer {L} ({core.names[L]!r}) of shape {shape} has no form on {K} axes")
            if L == 0:
                done.append(candidates[0])
                continue
            fitting = next((c for c in candidates[:1 if L in hints else None]
                            if all(self._fits(L, k, c, done[p]) for k, (p, _) in enumerate(core.blocks[L]))), None)
            if fitting is not None:
                done.append(fitting)
                continue
            scores = [sum(self._fits(L, k, c, done[p]) for k, (p, _) in enumerate(core.blocks[L]))
                      for c in candidates]
            best = 0 if L in hints else max(range(len(candidates)), key=lambda i: (
                scores[i], sum(n > 1 for n in candidates[i][0]), -i))
            target = candidates[best]
            for k, (parent, block) in enumerate(core.blocks[L]):
                if self._fits(L, k, target, done[parent]):
                    continue
                why = (f"layer {L} ({core.names[L]!r}, operation {core.kinds[L]}): its block from layer {parent} "
                       f"({core.names[parent]!r}) has no form on axes {target[0]} x {done[parent][0]}")
                for pulled in _adapt(target, shape, tuple(core.shapes[parent])):
                    if self._fits(L, k, target, pulled):
                        return parent, pulled, why
                raise NotFactorable(why)
        return done
