"""The layer table: one immutable, plain-data record per layer of a traced network.

Every other part of nsp (the graph core, activations and spectra, signal
batches, the factored closure, the HDF5 files) refers to one
:class:`LayerTable` instead of keeping its own lists of names and shapes.
A record holds no tensors and no closures, so a table can be printed,
compared, stored and read back unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from math import prod
from typing import Iterator, Sequence

import numpy as np

from nsp.errors import InputError, NotInGraphError


def plain(params: dict) -> dict:
    """Operation parameters as JSON-compatible plain data: tuples become lists, tensors (weights) and
    other objects are left out."""
    def ok(value) -> bool:
        try:
            json.dumps(value)
            return True
        except TypeError:
            return False
    return json.loads(json.dumps({k: v for k, v in params.items() if ok(v)}))


@dataclass(frozen=True)
class LayerInfo:
    """One layer: where it sits in the node order and which operation made it.

    ``shape`` excludes the batch axis; ``offset`` is the node number of the
    layer's first neuron; ``parents`` are layer indices; ``kind`` is
    ``"input"`` for layer 0, else the operation kind (a key of
    :data:`nsp.operations.OPERATIONS`); ``params`` are the operation's
    parameters as plain data (strides, padding, axes — never weights).
    """

    index: int
    name: str
    kind: str
    path: str
    description: str
    shape: tuple
    offset: int
    parents: tuple = ()
    params: dict = field(default_factory=dict, compare=True, hash=False)

    @property
    def size(self) -> int:
        return prod(self.shape)

    def __str__(self) -> str:
        return (f"{self.index:>3}  {self.name:<14} {self.kind:<18} {str(self.shape):<16} "
                f"offset {self.offset:>8}  parents {self.parents}")


class LayerTable(Sequence):
    """The layers of a network in execution order (a read-only sequence of :class:`LayerInfo`)."""

    __slots__ = ("_layers", "_offsets")

    def __init__(self, layers: Sequence[LayerInfo]):
        self._layers = tuple(layers)
        offset = 0
        for i, layer in enumerate(self._layers):
            if layer.index != i or layer.offset != offset:
                raise InputError(f"layer table entry {i} ({layer.name!r}) has index {layer.index} and offset "
                                 f"{layer.offset}; expected {i} and {offset}")
            if any(not 0 <= p < i for p in layer.parents):
                raise InputError(f"layer {i} ({layer.name!r}) has parents {layer.parents}; parents must be "
                                 f"earlier layers")
            offset += layer.size
        self._offsets = np.array([l.offset for l in self._layers] + [offset], dtype=np.int64)
        self._offsets.setflags(write=False)

    @classmethod
    def build(cls, names, kinds, paths, descriptions, shapes, parents, params=None) -> "LayerTable":
        """A table from per-layer columns; offsets follow from the shapes."""
        params = params if params is not None else [{}] * len(names)
        rows, offset = [], 0
        for i, (name, kind, path, description, shape, parent, param) in enumerate(
                zip(names, kinds, paths, descriptions, shapes, parents, params, strict=True)):
            shape = tuple(int(n) for n in shape)
            rows.append(LayerInfo(i, str(name), str(kind), str(path), str(description), shape, offset,
                                  tuple(int(p) for p in parent), dict(param)))
            offset += prod(shape)
        return cls(rows)

    # -- sequence --------------------------------------------------------------------------

    def __getitem__(self, index):
        return self._layers[index]

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[LayerInfo]:
        return iter(self._layers)

    def __eq__(self, other) -> bool:
        return isinstance(other, LayerTable) and self._layers == other._layers

    def __hash__(self):
        return hash(tuple((l.name, l.kind, l.shape, l.parents) for l in self._layers))

    def __repr__(self) -> str:
        return f"LayerTable({len(self)} layers, {self.n_nodes:,} nodes)\n" + "\n".join(map(str, self._layers))

    # -- columns -----------------------------------------------------------------------------

    @property
    def names(self) -> list:
        return [l.name for l in self._layers]

    @property
    def kinds(self) -> list:
        return [l.kind for l in self._layers]

    @property
    def paths(self) -> list:
        return [l.path for l in self._layers]

    @property
    def descriptions(self) -> list:
        return [l.description for l in self._layers]

    @property
    def shapes(self) -> list:
        return [l.shape for l in self._layers]

    @property
    def parents(self) -> list:
        return [l.parents for l in self._layers]

    @property
    def offsets(self) -> np.ndarray:
        """Node number of each layer's first neuron, and the node count last (int64, read-only)."""
        return self._offsets

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self._offsets)

    @property
    def n_nodes(self) -> int:
        return int(self._offsets[-1])

    def index(self, name: str) -> int:
        """Index of the layer called ``name``."""
        for layer in self._layers:
            if layer.name == name:
                return layer.index
        raise NotInGraphError(f"no layer named {name!r}; layers: {', '.join(self.names)}")

    def matching(self, patterns: Sequence[str], what: str = "layers") -> tuple:
        """Indices, ascending, of the layers whose names match any of ``patterns`` (layer names or
        :mod:`fnmatch` patterns such as ``"layer1_*"``, case-sensitive). A pattern that matches no layer is a
        ValueError that starts with ``what`` (e.g. the config key) and lists some layer names."""
        if not patterns:
            raise InputError(f"{what}: a list of layer names or patterns (non-empty strings), got {patterns!r}")
        return match_layers(self.names, patterns, what)

    def subset(self, indices: Sequence[int]) -> "LayerTable":
        """The table of the layers ``indices`` (ascending) alone: renumbered from 0 with consecutive offsets
        (the layout of values that hold only these layers), each keeping the parents that are among them."""
        indices = [int(i) for i in indices]
        if any(not 0 <= i < len(self) for i in indices) or any(a >= b for a, b in zip(indices, indices[1:])):
            raise InputError(f"layer indices must be ascending, distinct and below {len(self)}; got {indices}")
        position = {old: new for new, old in enumerate(indices)}
        rows = [self._layers[i] for i in indices]
        return LayerTable.build([l.name for l in rows], [l.kind for l in rows], [l.path for l in rows],
                                [l.description for l in rows], [l.shape for l in rows],
                                [[position[p] for p in l.parents if p in position] for l in rows],
                                [l.params for l in rows])

    def split(self, flat) -> list:
        """A flat vector (or batch, last axis) in node order cut into one array per layer, in its shape."""
        lead = tuple(np.shape(flat)[:-1])
        return [flat[..., a:b].reshape(lead + l.shape) for l, a, b in
                zip(self._layers, self._offsets[:-1], self._offsets[1:])]


def match_layers(names: Sequence[str], patterns: Sequence[str], what: str = "layers") -> tuple:
    """Indices, ascending, of the ``names`` that match any of ``patterns`` (names or :mod:`fnmatch`
    patterns, case-sensitive); a ValueError starting with ``what`` for a pattern that matches none or for
    something that is not a list of non-empty strings."""
    if isinstance(patterns, str) or not all(isinstance(p, str) and p for p in patterns):
        raise InputError(f"{what}: a list of layer names or patterns (non-empty strings), got {patterns!r}")
    wanted = set()
    for pattern in patterns:
        hits = {i for i, name in enumerate(names) if fnmatchcase(name, pattern)}
        if not hits:
            shown = ", ".join(names[:12]) + (f", ... ({len(names)} layers)" if len(names) > 12 else "")
            raise InputError(f"{what}: {pattern!r} matches no layer; the layers are {shown}")
        wanted |= hits
    return tuple(sorted(wanted))
