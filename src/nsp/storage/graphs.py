"""Encodings of the layer table, connectivity blocks, edge weights and graph cores; graph files."""

from __future__ import annotations

import json

import h5py
import numpy as np
import scipy.sparse as sp

from nsp.operations.blocks import Coo, Kron
from nsp.graph.core import GraphCore
from nsp.operations.kronecker import Factor
from nsp.operations import LinearPart
from nsp.storage import h5
from nsp.storage.container import create, open_file, provenance_attrs
from nsp.tracing.table import LayerTable

#: graph files hold the assembled CSR adjacency up to this many edges; larger graphs are stored by their
#: connectivity blocks only (from which GraphCore assembles the CSR when something needs it)
ADJACENCY_IN_FILE = 1 << 25


# --- the layer table ----------------------------------------------------------------------------

@h5.writer(LayerTable)
def write_layer_table(parent: h5py.Group, name: str, table: LayerTable) -> h5py.Group:
    group = h5.group(parent, name, "nsp.layer-table", version=2)
    h5.array(group, "name", np.asarray(table.names, dtype=object))
    h5.array(group, "kind", np.asarray(table.kinds, dtype=object))
    h5.array(group, "path", np.asarray(table.paths, dtype=object))
    h5.array(group, "description", np.asarray(table.descriptions, dtype=object))
    h5.array(group, "offset", table.offsets)
    h5.write_ragged(group, "shape", table.shapes)
    h5.write_ragged(group, "parents", table.parents)
    h5.array(group, "params", np.asarray([json.dumps(l.params, sort_keys=True) for l in table], dtype=object))
    return group


def _read_table(group: h5py.Group, params: list) -> LayerTable:
    table = LayerTable.build(h5.strings(group["name"]), h5.strings(group["kind"]), h5.strings(group["path"]),
                             h5.strings(group["description"]), h5.read_ragged(group["shape"]),
                             h5.read_ragged(group["parents"]), params)
    if not np.array_equal(table.offsets, group["offset"][()]):
        raise h5.StorageError(f"{group.file.filename}: {group.name}: stored offsets disagree with the shapes")
    return table


@h5.reader("nsp.layer-table", 1)
def _read_table_v1(group: h5py.Group) -> LayerTable:
    """Version 1: no operation parameters."""
    return _read_table(group, [{} for _ in range(len(group["name"]))])


@h5.reader("nsp.layer-table", 2)
def _read_table_v2(group: h5py.Group) -> LayerTable:
    return _read_table(group, [json.loads(p) for p in h5.strings(group["params"])])


# --- connectivity blocks and their edge weights --------------------------------------------------------

def _write_blocks(where: h5py.Group, core: GraphCore) -> None:
    blocks = h5.group(where, "blocks", "nsp.connectivity-blocks")
    for layer, items in enumerate(core.blocks):
        group = h5.group(blocks, str(layer), "list")
        for i, (parent, block) in enumerate(items):
            if isinstance(block, Kron):
                entry = h5.group(group, str(i), "kron", parent=parent, factors=len(block.factors))
                for j, factor in enumerate(block.factors):
                    h5.write_csr(entry, f"factor_{j}", factor.csr())
            else:
                entry = h5.group(group, str(i), "coo", parent=parent, shape=np.asarray(block.shape, dtype=np.int64))
                h5.array(entry, "rows", block.rows)
                h5.array(entry, "cols", block.cols)
            if core.linear is not None:
                part, in_shape, out_shape = core.linear[layer][i]
                linear = h5.group(entry, "linear", "nsp.linear-part", kind=part.kind, params=part.to_json(),
                                  **{"in-shape": np.asarray(in_shape, dtype=np.int64),
                                     "out-shape": np.asarray(out_shape, dtype=np.int64)})
                for name, values in sorted(part.arrays.items()):
                    h5.array(linear, name, values, **h5.compressed(values))


def _read_blocks(where: h5py.Group, layers: int) -> tuple[list, list | None]:
    h5.expect(where["blocks"], "nsp.connectivity-blocks", 1)
    blocks, linear = [], []
    for layer in range(layers):
        items, parts = [], []
        for entry in where["blocks"][str(layer)].values():
            h5.expect(entry, ("kron", "coo"), 1)
            parent = int(entry.attrs["parent"])
            if entry.attrs["encoding-type"] == "kron":
                factors = tuple(Factor.of(h5.read_csr(entry[f"factor_{j}"])) for j in range(int(entry.attrs["factors"])))
                items.append((parent, Kron(factors)))
            else:
                shape = tuple(int(v) for v in entry.attrs["shape"])
                items.append((parent, Coo(entry["rows"][()], entry["cols"][()], shape)))
            if "linear" in entry:
                g = entry["linear"]
                h5.expect(g, "nsp.linear-part", 1)
                part = LinearPart(str(g.attrs["kind"]), {name: g[name][()] for name in g},
                                  json.loads(g.attrs["params"]))
                parts.append((part, tuple(int(v) for v in g.attrs["in-shape"]),
                              tuple(int(v) for v in g.attrs["out-shape"])))
        blocks.append(items)
        linear.append(parts)
    complete = all(len(p) == len(b) for p, b in zip(linear, blocks))
    return blocks, linear if complete else None


# --- graph cores ------------------------------------------------------------------------------------

def write_core(parent: h5py.Group, name: str | None, core: GraphCore, encoding: str = "nsp.graph") -> h5py.Group:
    """A graph core as a group (``name=None``: into ``parent`` itself, e.g. a file's root)."""
    where = parent if name is None else h5.group(parent, name, encoding)
    where.attrs["INCL"] = bool(core.incl)
    h5.write(where, "layers", core.table)
    _write_blocks(where, core)
    return where


def read_core(where: h5py.Group, csr=None, weights=None) -> GraphCore:
    table = h5.read(where["layers"])
    blocks, linear = _read_blocks(where, len(table))
    return GraphCore(table=table, blocks=blocks, incl=bool(where.attrs["INCL"]), csr=csr,
                     weights_sha256=weights, linear=linear)


# --- graph files -------------------------------------------------------------------------------------

def write_graph(path, core: GraphCore, transformers: dict | None = None, *, producer=None, parameters=None,
                obj: str = "GraphCore") -> None:
    """A graph file: layer table, connectivity blocks with edge weights, fitted transforms, and the CSR
    adjacency where the graph has at most ``ADJACENCY_IN_FILE`` edges (bounded from the blocks)."""
    with create(path, "graph", obj, provenance_attrs(producer, parameters, core.weights_sha256),
                **{"edge-weight-fallbacks": json.dumps(core.weight_fallbacks())}) as f:
        write_core(f, None, core)
        if sum(block.nnz for blocks in core.blocks for _, block in blocks) <= ADJACENCY_IN_FILE:
            h5.write_csr(f, "adjacency", core.adjacency)
        group = h5.group(f, "transformers", "dict")
        for name, transform in (transformers or {}).items():
            h5.write(group, name, transform)


def read_graph(path) -> GraphCore:
    """The graph core stored at ``path`` (no networkx graph, no transforms: any size)."""
    with open_file(path, "graph") as f:
        csr = sp.csr_matrix(h5.read_csr(f["adjacency"]), dtype=np.int8) if "adjacency" in f else None
        return read_core(f, csr, str(f.attrs["weights-sha256"]) or None)


def read_graph_transforms(path) -> dict:
    """The fitted transforms stored with the graph at ``path``, by name."""
    with open_file(path, "graph") as f:
        return {name: h5.read(group) for name, group in f["transformers"].items()}
