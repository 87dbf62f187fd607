"""Encodings of connectivity blocks, edge weights and graph cores; graph files."""

from __future__ import annotations

import json
from math import prod

import h5py
import numpy as np
import scipy.sparse as sp

from nsp.operations.blocks import Coo, Kron, Permutation
from nsp.graph.core import GraphCore
from nsp.operations.kronecker import Factor
from nsp.operations.base import LinearPart
from nsp.storage import h5
from nsp.storage.container import create, provenance_attrs, reading
from nsp.storage.layers import write_layer_table

#: graph files hold the assembled CSR adjacency up to this many edges; larger graphs are stored by their
#: connectivity blocks only (from which GraphCore assembles the CSR when something needs it)
ADJACENCY_IN_FILE = 1 << 25


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
                if isinstance(block, Permutation):        # the factored closure takes it as permuted axes
                    entry.attrs["permutation"] = np.asarray(block.order, dtype=np.int64)
                    entry.attrs["permuted-shape"] = np.asarray(block.in_shape, dtype=np.int64)
            if core.linear is not None:
                part, in_shape, out_shape = core.linear[layer][i]
                linear = h5.group(entry, "linear", "nsp.linear-part", kind=part.kind, params=part.to_json(),
                                  **{"in-shape": np.asarray(in_shape, dtype=np.int64),
                                     "out-shape": np.asarray(out_shape, dtype=np.int64)})
                for name, values in sorted(part.arrays.items()):
                    h5.array(linear, name, values, **h5.compressed(values))


def _permutation(entry, block: Coo) -> Permutation:
    """A coordinate block stored as an axis permutation, checked: its rows and columns must be those of
    ``permute(order)`` of a tensor of ``permuted-shape``."""
    order = tuple(int(k) for k in np.atleast_1d(entry.attrs["permutation"]))
    shape = tuple(int(n) for n in np.atleast_1d(entry.attrs.get("permuted-shape", ())))
    h5.check(sorted(order) == list(range(len(shape))) and prod(shape) == block.shape[1] == block.shape[0], entry,
             f"permutation {order} of a tensor of shape {shape} does not fit a {block.shape} block")
    n = block.shape[0]
    h5.check(np.array_equal(block.rows, np.arange(n)) and np.array_equal(
        block.cols, np.arange(n).reshape(shape).transpose(order).reshape(-1)), entry,
        f"rows and columns are not the permutation {order} of shape {shape}")
    return Permutation(block.rows, block.cols, block.shape, order, shape)


def _read_blocks(where: h5py.Group, table) -> tuple[list, list | None]:
    """The connectivity blocks (and edge weights) of every layer, each checked against the layer sizes."""
    h5.expect(where["blocks"], "nsp.connectivity-blocks", 1)
    sizes = table.sizes
    h5.check(len(where["blocks"]) == len(sizes), where["blocks"], f"{len(where['blocks'])} layers of blocks for "
             f"{len(sizes)} layers")
    blocks, linear = [], []
    for layer in range(len(sizes)):
        items, parts = [], []
        for entry in where["blocks"][str(layer)].values():
            h5.expect(entry, ("kron", "coo"), 1)
            parent = int(entry.attrs["parent"])
            h5.check(0 <= parent < layer, entry, f"parent layer {parent} of layer {layer} does not come before it")
            if entry.attrs["encoding-type"] == "kron":
                factors = tuple(Factor.of(h5.read_csr(entry[f"factor_{j}"])) for j in range(int(entry.attrs["factors"])))
                h5.check(len(factors) == len(entry) - ("linear" in entry), entry, "factors missing or extra")
                block = Kron(factors)
            else:
                rows, cols = h5.integers(entry, "rows"), h5.integers(entry, "cols")
                shape = tuple(int(v) for v in entry.attrs["shape"])
                h5.check(rows.shape == cols.shape and len(shape) == 2, entry, "rows and cols differ in length")
                h5.in_range(rows, 0, shape[0], entry["rows"], "row")
                h5.in_range(cols, 0, shape[1], entry["cols"], "column")
                block = Coo(rows, cols, shape)
                if "permutation" in entry.attrs:
                    block = _permutation(entry, block)
            h5.check(block.shape == (sizes[layer], sizes[parent]), entry, f"a {block.shape[0]} x {block.shape[1]} "
                     f"block between layers of {sizes[layer]} and {sizes[parent]} nodes")
            items.append((parent, block))
            if "linear" in entry:
                g = entry["linear"]
                h5.expect(g, "nsp.linear-part", 1)
                part = LinearPart(str(g.attrs["kind"]), {name: h5.load(g[name]) for name in g},
                                  json.loads(g.attrs["params"]))
                parts.append((part, tuple(int(v) for v in g.attrs["in-shape"]),
                              tuple(int(v) for v in g.attrs["out-shape"])))
                h5.check(prod(parts[-1][1]) == sizes[parent] and prod(parts[-1][2]) == sizes[layer], g,
                         f"in-shape {parts[-1][1]} or out-shape {parts[-1][2]} do not fit layers of "
                         f"{sizes[parent]} and {sizes[layer]} nodes")
        blocks.append(items)
        linear.append(parts)
    complete = all(len(p) == len(b) for p, b in zip(linear, blocks))
    return blocks, linear if complete else None


# --- graph cores ------------------------------------------------------------------------------------

def write_core(parent: h5py.Group, name: str | None, core: GraphCore, encoding: str = "nsp.graph") -> h5py.Group:
    """A graph core as a group (``name=None``: into ``parent`` itself, e.g. a file's root)."""
    where = parent if name is None else h5.group(parent, name, encoding)
    where.attrs["INCL"] = bool(core.incl)
    write_layer_table(where, "layers", core.table)
    _write_blocks(where, core)
    return where


def read_core(where: h5py.Group, csr=None, weights=None) -> GraphCore:
    table = h5.read(where["layers"])
    blocks, linear = _read_blocks(where, table)
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
    with reading(path, "graph") as f:
        csr = sp.csr_matrix(h5.read_csr(f["adjacency"]), dtype=np.int8) if "adjacency" in f else None
        core = read_core(f, csr, str(f.attrs["weights-sha256"]) or None)
        if csr is not None:
            h5.check(csr.shape == (core.n_nodes, core.n_nodes), f["adjacency"],
                     f"a {csr.shape[0]} x {csr.shape[1]} adjacency for {core.n_nodes} nodes")
        return core


def read_graph_transforms(path) -> dict:
    """The fitted transforms stored with the graph at ``path``, by name."""
    with reading(path, "graph") as f:
        return {name: h5.read(group) for name, group in f["transformers"].items()}
