"""The encoding of the layer table (``nsp.layer-table``), shared by graph and signals files."""

from __future__ import annotations

import json

import h5py
import numpy as np

from nsp.storage import h5
from nsp.tracing.table import LayerTable


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
    shapes, parents = h5.read_ragged(group["shape"]), h5.read_ragged(group["parents"])
    count = len(shapes)
    for name in ("name", "kind", "path", "description"):
        h5.check(len(group[name]) == count, group[name], f"{len(group[name])} entries for {count} layers")
    h5.check(len(params) == count and len(parents) == count, group, f"parameters or parents of {count} layers "
             f"missing")
    h5.check(count >= 1 and not parents[0], group, "the first layer is not an input")
    for index, (shape, of) in enumerate(zip(shapes, parents)):
        h5.check(all(v >= 0 for v in shape), group["shape"], f"layer {index} has a negative size {shape}")
        h5.check(all(0 <= p < index for p in of), group["parents"],
                 f"layer {index} has parents {list(of)}; each layer's parents come before it")
    table = LayerTable.build(h5.strings(group["name"]), h5.strings(group["kind"]), h5.strings(group["path"]),
                             h5.strings(group["description"]), shapes, parents, params)
    if not np.array_equal(table.offsets, h5.integers(group, "offset")):
        raise h5.StorageError(f"{group.file.filename}: {group.name}: stored offsets disagree with the shapes")
    return table


@h5.reader("nsp.layer-table", 1)
def _read_table_v1(group: h5py.Group) -> LayerTable:
    """Version 1: no operation parameters."""
    return _read_table(group, [{} for _ in range(len(group["name"]))])


@h5.reader("nsp.layer-table", 2)
def _read_table_v2(group: h5py.Group) -> LayerTable:
    return _read_table(group, [json.loads(p) for p in h5.strings(group["params"])])
