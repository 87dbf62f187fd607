"""HDF5 files of nsp results: graphs, transformers, activations and spectra.

The schema is documented in ``docs/format.md``. Every file carries its
kind, a format version and provenance as root attributes; every group and
dataset is tagged with ``encoding-type`` and ``encoding-version``. Files are
written to a temporary name in the target folder and renamed when complete,
without object timestamps and with attributes in a fixed order, so the same
content gives the same bytes.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")   # cluster file systems (NFS, Lustre)

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from nsp.storage.files import atomic_output  # noqa: E402
from nsp.storage.provenance import versions  # noqa: E402

FORMAT = "nsp-hdf5"
FORMAT_VERSION = 1
FILE_KINDS = ("graph", "transformer", "activations", "spectra")
#: default filters (bench/bench_storage.py): deflate, which every HDF5 tool reads (lzf is faster but
#: h5py-only); level 1 (higher levels gain 3 % for 20 % more time); the byte shuffle helps float64
#: spectra (ratio 2.37 vs 2.23) and hurts float32 activations (1.57 vs 1.76).
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
SAMPLE_COMPRESSION = {"activations": {"compression": "gzip", "compression_opts": 1}, "spectra": COMPRESSION}
_CHUNK_BYTES = 1 << 18
#: graph files hold the assembled CSR adjacency up to this many edges; larger graphs are stored by their
#: connectivity blocks only (from which GraphCore assembles the CSR when something needs it)
ADJACENCY_IN_FILE = 1 << 25
_FACTOR_KINDS = ("ones", "eye", "dense")


class StorageError(ValueError):
    """A file that is not what was expected (kind, version, or not readable)."""


# --- encodings ---------------------------------------------------------------------------------

def _tag(obj, encoding: str, **attrs) -> None:
    obj.attrs["encoding-type"] = encoding
    obj.attrs["encoding-version"] = "1"
    for key, value in attrs.items():
        obj.attrs[key] = value


def _group(where: h5py.Group, name: str, encoding: str, **attrs) -> h5py.Group:
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
    group = h5py.Group(h5py.h5g.create(where.id, name.encode(), gcpl=gcpl))
    _tag(group, encoding, **attrs)
    return group


def _array(parent: h5py.Group, name: str, data, encoding: str = "array", **options) -> h5py.Dataset:
    data = np.asarray(data)
    if data.dtype.kind == "U" or (data.dtype == object):
        data = np.asarray(data, dtype=h5py.string_dtype())
        encoding = "string-array"
    dataset = parent.create_dataset(name, data=data, track_times=False, **options)
    _tag(dataset, encoding)
    return dataset


def _write_csr(parent: h5py.Group, name: str, matrix: sp.spmatrix) -> None:
    matrix = sp.csr_matrix(matrix)
    group = _group(parent, name, "csr_matrix", shape=np.asarray(matrix.shape, dtype=np.int64))
    for key in ("data", "indices", "indptr"):
        _array(group, key, getattr(matrix, key), **(COMPRESSION if getattr(matrix, key).size > 4096 else {}))


def _read_csr(group: h5py.Group) -> sp.csr_matrix:
    shape = tuple(int(v) for v in group.attrs["shape"])
    return sp.csr_matrix((group["data"][()], group["indices"][()], group["indptr"][()]), shape=shape)


def _write_ragged(parent: h5py.Group, name: str, rows) -> None:
    rows = [list(r) for r in rows]
    group = _group(parent, name, "ragged-array")
    _array(group, "values", np.asarray([v for r in rows for v in r], dtype=np.int64))
    _array(group, "offsets", np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64))


def _read_ragged(group: h5py.Group) -> list[tuple]:
    values, offsets = group["values"][()], group["offsets"][()]
    return [tuple(int(v) for v in values[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


# --- the layer table -----------------------------------------------------------------------------

@dataclass
class LayerTable:
    """Names, kinds, operation paths, descriptions, shapes and parents of the layers."""

    names: list
    kinds: list
    paths: list
    descriptions: list
    shapes: list
    parents: list

    @property
    def offsets(self) -> np.ndarray:
        sizes = [int(np.prod(s, dtype=np.int64)) for s in self.shapes]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @classmethod
    def of(cls, obj) -> "LayerTable":
        """The table of an Activations (or Spectrum) or a GraphCore."""
        if hasattr(obj, "blocks"):             # GraphCore
            return cls(list(obj.names), list(obj.kinds), list(obj.paths), [""] * obj.n_layers,
                       [tuple(s) for s in obj.shapes], [tuple(p) for p in obj.parents])
        stored = getattr(obj, "_table", None)
        if stored is not None:
            return stored
        layers = obj._layers
        return cls(list(obj.layernames), ["input"] + [l.op.kind for l in layers[1:]],
                   [""] + [l.op.path for l in layers[1:]], [str(d) for d in obj.layerdescriptions],
                   list(obj.layershapes), [tuple(p) for p in obj.layerparents])

    def write(self, parent: h5py.Group) -> None:
        group = _group(parent, "layers", "nsp.layer-table")
        _array(group, "name", np.asarray(self.names, dtype=object))
        _array(group, "kind", np.asarray(self.kinds, dtype=object))
        _array(group, "path", np.asarray(self.paths, dtype=object))
        _array(group, "description", np.asarray(self.descriptions, dtype=object))
        _array(group, "offset", self.offsets)
        _write_ragged(group, "shape", self.shapes)
        _write_ragged(group, "parents", self.parents)

    @classmethod
    def read(cls, group: h5py.Group) -> "LayerTable":
        return cls(_strings(group["name"]), _strings(group["kind"]), _strings(group["path"]),
                   _strings(group["description"]), _read_ragged(group["shape"]), _read_ragged(group["parents"]))


# --- files ---------------------------------------------------------------------------------------

def provenance_attrs(producer: dict | None, parameters: dict | None, weights: str | None) -> dict:
    """Root attributes saying what produced a file (no timestamps, no absolute paths)."""
    v = versions()
    return {
        "nsp-version": v["nsp"], "torch-version": v["torch"], "numpy-version": v["numpy"],
        "scipy-version": v["scipy"], "h5py-version": v["h5py"], "weights-sha256": weights or "",
        "producer": json.dumps(producer or {}, sort_keys=True),
        "parameters": json.dumps(parameters or {}, sort_keys=True),
    }


@contextmanager
def _create(path, kind: str, obj: str, provenance: dict, **extra):
    """An HDF5 file written under a temporary name and renamed when the block succeeds."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=True, locking=False) as f:
        f.attrs["nsp-format"] = FORMAT
        f.attrs["format-version"] = FORMAT_VERSION
        f.attrs["kind"] = kind
        f.attrs["object"] = obj
        _tag(f, f"nsp.{kind}")
        for key, value in {**provenance, **extra}.items():
            f.attrs[key] = value
        yield f


def open_file(path, kinds=None) -> h5py.File:
    """Open an nsp file for reading, checking that it is one, of an accepted kind and version."""
    path = Path(path)
    accepted = (kinds,) if isinstance(kinds, str) else tuple(kinds or FILE_KINDS)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as err:
        raise StorageError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from None
    try:
        if f.attrs.get("nsp-format") != FORMAT:
            raise StorageError(f"{path}: an HDF5 file but not an nsp file (no nsp-format attribute); "
                               f"expected one of: {', '.join(accepted)}")
        if "format-version" not in f.attrs:
            raise StorageError(f"{path}: an nsp file without a format-version attribute (damaged?)")
        version = int(f.attrs["format-version"])
        if version > FORMAT_VERSION:
            raise StorageError(f"{path}: format version {version} is newer than this nsp reads "
                               f"({FORMAT_VERSION}); upgrade nsp")
        kind = f.attrs.get("kind")
        if kind not in accepted:
            raise StorageError(f"{path}: holds nsp {kind!r} data; expected {' or '.join(map(repr, accepted))}")
    except BaseException:
        f.close()
        raise
    return f


# --- transforms ------------------------------------------------------------------------------------

def write_transform(parent: h5py.Group, name: str, transform) -> None:
    """A fitted transform as a group (standard: CSR Z and M, or the factored closure; laplacian: eigenbasis)."""
    if transform.type == "standard" and transform.factored:
        _write_closure(_group(parent, name, "nsp.factored-transform", method=transform.method), transform.closure)
    elif transform.type == "standard":
        group = _group(parent, name, "nsp.standard-transform", method=transform.method)
        _write_csr(group, "zeta", transform.zeta)
        _write_csr(group, "mobius", transform.mobius)
    elif transform.type == "sem" and transform.core is not None:
        _write_core(_group(parent, name, "nsp.sem-transform"), transform.core)
    elif transform.type == "laplacian":
        group = _group(parent, name, "nsp.laplacian-transform", k=-1 if transform.k is None else transform.k,
                       method=transform.method, symmetry=transform.symmetry,
                       truncation=json.dumps(transform.truncation, sort_keys=True),
                       **{"channel-groups": json.dumps(transform.channel_groups)})
        _array(group, "eigenvalues", transform.eigenvalues)
        _array(group, "eigenvectors", transform.eigenvectors, **COMPRESSION,
               chunks=_chunks(transform.eigenvectors.shape[1], 8, transform.eigenvectors.shape[0]))
    else:
        raise TypeError(f"cannot store a transform of type {transform.type!r}")


def _write_closure(group: h5py.Group, closure) -> None:
    """Layer offsets, names and axes; the distinct factors once each; one row per signed term."""
    factors: dict = {}
    rows = []
    for target, pairs in enumerate(closure.signed):
        for source, terms in pairs:
            for coef, term in terms:
                rows.append([target, source, coef] + [factors.setdefault(f.key, (len(factors), f))[0] for f in term])
    ordered = [f for _, f in sorted(factors.values(), key=lambda item: item[0])]
    rank = len(closure.axes[0])
    terms = np.asarray(rows, dtype=np.int64).reshape(-1, 3 + rank)
    _array(group, "offsets", closure.offsets)
    _array(group, "names", np.asarray(closure.names, dtype=object))
    _array(group, "axes", np.asarray(closure.axes, dtype=np.int64))
    _array(group, "factor_kind", np.asarray([_FACTOR_KINDS.index(f.kind) for f in ordered], dtype=np.uint8))
    _array(group, "factor_shape", np.asarray([f.shape for f in ordered], dtype=np.int64).reshape(-1, 2))
    dense = [f.array.ravel() for f in ordered if f.kind == "dense"]
    _array(group, "factor_data", np.concatenate(dense or [np.zeros(0, bool)]).astype(np.uint8), **COMPRESSION)
    _array(group, "term_target", terms[:, 0])
    _array(group, "term_source", terms[:, 1])
    _array(group, "term_coefficient", terms[:, 2])
    _array(group, "term_factors", terms[:, 3:])


def _read_closure(group: h5py.Group):
    from nsp.transforms.factored import FactoredClosure
    from nsp.graph.kronecker import Factor
    kinds, shapes, data = group["factor_kind"][()], group["factor_shape"][()], group["factor_data"][()]
    factors, position = [], 0
    for kind, (m, n) in zip(kinds, shapes):
        kind = _FACTOR_KINDS[int(kind)]
        if kind == "dense":
            factors.append(Factor("dense", (m, n), data[position:position + m * n].astype(bool).reshape(m, n)))
            position += m * n
        else:
            factors.append(Factor(kind, (m, n)))
    names = _strings(group["names"])
    signed = [[] for _ in names]
    target, source = group["term_target"][()], group["term_source"][()]
    coefficient, indices = group["term_coefficient"][()], group["term_factors"][()]
    for L, l, coef, row in zip(target, source, coefficient, indices):
        pairs = signed[int(L)]
        if not pairs or pairs[-1][0] != int(l):
            pairs.append((int(l), []))
        pairs[-1][1].append((int(coef), tuple(factors[int(i)] for i in row)))
    return FactoredClosure(group["offsets"][()], names, group["axes"][()], signed)


def read_transform(group: h5py.Group):
    from nsp.transforms.standard import StandardTransform
    from nsp.transforms.laplacian import LaplacianTransform
    encoding = group.attrs["encoding-type"]
    if encoding == "nsp.sem-transform":
        from nsp.transforms.sem import SemTransform
        return SemTransform().fit(_read_core(group))
    if encoding == "nsp.factored-transform":
        return StandardTransform.from_closure(_read_closure(group), str(group.attrs["method"]))
    if encoding == "nsp.standard-transform":
        return StandardTransform.from_matrices(_read_csr(group["zeta"]), _read_csr(group["mobius"]),
                                               str(group.attrs["method"]))
    if encoding == "nsp.laplacian-transform":
        truncation = json.loads(group.attrs["truncation"])
        out = LaplacianTransform.from_basis(group["eigenvalues"][()], group["eigenvectors"][()], truncation)
        k = int(group.attrs["k"])
        out.k = None if k < 0 else k
        out.method = str(group.attrs["method"])
        out.symmetry = bool(group.attrs["symmetry"])
        out.channel_groups = [(tuple(names), c) for names, c in json.loads(group.attrs["channel-groups"])]
        return out
    raise StorageError(f"{group.file.filename}: unknown transform encoding {encoding!r}")


def write_transformer(path, transform, *, producer=None, parameters=None, weights=None) -> None:
    with _create(path, "transformer", type(transform).__name__,
                 provenance_attrs(producer, parameters, weights), **{"transform-type": transform.type}) as f:
        write_transform(f, "transform", transform)


def read_transformer(path):
    with open_file(path, "transformer") as f:
        return read_transform(f["transform"])


# --- graphs -------------------------------------------------------------------------------------------

def write_graph(path, graph, *, producer=None, parameters=None) -> None:
    """An NNGraph (or GraphCore): layer table, connectivity blocks with edge weights, fitted transforms,
    and the CSR adjacency where the graph has at most ``ADJACENCY_IN_FILE`` edges (bounded from the blocks)."""
    core = getattr(graph, "core", graph)
    transformers = getattr(graph, "transformers", {})
    weights = getattr(graph, "weights_sha256", None) or core.weights_sha256
    with _create(path, "graph", type(graph).__name__, provenance_attrs(producer, parameters, weights),
                 INCL=bool(core.incl)) as f:
        LayerTable.of(core).write(f)
        if sum(block.nnz for blocks in core.blocks for _, block in blocks) <= ADJACENCY_IN_FILE:
            _write_csr(f, "adjacency", core.adjacency)
        _write_blocks(f, core)
        group = _group(f, "transformers", "dict")
        for name, transform in transformers.items():
            write_transform(group, name, transform)


def _write_blocks(where: h5py.Group, core) -> None:
    """The connectivity blocks, each with its linear part (edge weights) where the core has them."""
    from nsp.operations.connectivity import Kron
    blocks = _group(where, "blocks", "nsp.connectivity-blocks")
    for layer, items in enumerate(core.blocks):
        group = _group(blocks, str(layer), "list")
        for i, (parent, block) in enumerate(items):
            if isinstance(block, Kron):
                entry = _group(group, str(i), "kron", parent=parent, factors=len(block.factors))
                for j, factor in enumerate(block.factors):
                    _write_csr(entry, f"factor_{j}", factor)
            else:
                entry = _group(group, str(i), "coo", parent=parent, shape=np.asarray(block.shape, dtype=np.int64))
                _array(entry, "rows", block.rows)
                _array(entry, "cols", block.cols)
            if core.linear is not None:
                part, in_shape, out_shape = core.linear[layer][i]
                linear = _group(entry, "linear", "nsp.linear-part", kind=part.kind, params=part.to_json(),
                                **{"in-shape": np.asarray(in_shape, dtype=np.int64),
                                   "out-shape": np.asarray(out_shape, dtype=np.int64)})
                for name, values in sorted(part.arrays.items()):
                    _array(linear, name, values, **(COMPRESSION if values.size > 4096 else {}))


def _read_blocks(where: h5py.Group, layers: int) -> tuple[list, list | None]:
    from nsp.operations.connectivity import Coo, Kron
    from nsp.graph.weights import LinearPart
    blocks, linear = [], []
    for layer in range(layers):
        items, parts = [], []
        for entry in where["blocks"][str(layer)].values():
            parent = int(entry.attrs["parent"])
            if entry.attrs["encoding-type"] == "kron":
                factors = tuple(_read_csr(entry[f"factor_{j}"]) for j in range(int(entry.attrs["factors"])))
                items.append((parent, Kron(factors)))
            else:
                shape = tuple(int(v) for v in entry.attrs["shape"])
                items.append((parent, Coo(entry["rows"][()], entry["cols"][()], shape)))
            if "linear" in entry:
                g = entry["linear"]
                part = LinearPart(str(g.attrs["kind"]), {name: g[name][()] for name in g},
                                  json.loads(g.attrs["params"]))
                parts.append((part, tuple(int(v) for v in g.attrs["in-shape"]),
                              tuple(int(v) for v in g.attrs["out-shape"])))
        blocks.append(items)
        linear.append(parts)
    complete = all(len(p) == len(b) for p, b in zip(linear, blocks))
    return blocks, linear if complete else None


def _write_core(where: h5py.Group, core) -> None:
    """A graph core inside a group (the sem transformer carries its graph)."""
    where.attrs["INCL"] = bool(core.incl)
    LayerTable.of(core).write(where)
    _write_blocks(where, core)


def _read_core(where: h5py.Group, csr=None, weights=None):
    from nsp.graph.core import GraphCore
    table = LayerTable.read(where["layers"])
    blocks, linear = _read_blocks(where, len(table.names))
    return GraphCore(names=table.names, kinds=table.kinds, paths=table.paths, shapes=table.shapes,
                     parents=table.parents, blocks=blocks, incl=bool(where.attrs["INCL"]), csr=csr,
                     weights_sha256=weights, linear=linear)


def read_graph(path, networkx: bool = True):
    """The NNGraph stored at ``path`` (with its fitted transforms); ``networkx=False``: its GraphCore only
    (no networkx graph, no transforms), for graphs too large for networkx."""
    from nsp.nngraph import NNGraph
    with open_file(path, "graph") as f:
        csr = sp.csr_matrix(_read_csr(f["adjacency"]), dtype=np.int8) if "adjacency" in f else None
        core = _read_core(f, csr, str(f.attrs["weights-sha256"]) or None)
        if not networkx:
            return core
        graph = NNGraph.from_core(core)
        graph.weights_sha256 = core.weights_sha256
        for name, group in f["transformers"].items():
            graph.transformers[name] = read_transform(group)
    return graph


# --- activations and spectra ------------------------------------------------------------------

@dataclass
class SignalBatch:
    """Many samples of activations or spectra: a (samples, width) array with its layer table."""

    kind: str                        # "activations" or "spectra"
    values: np.ndarray
    layers: LayerTable
    sample_ids: np.ndarray = None
    labels: np.ndarray | None = None
    transform_type: str | None = None
    eigenvalues: np.ndarray | None = None
    trace: str = "children"
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.sample_ids is None:
            self.sample_ids = np.arange(self.values.shape[0], dtype=np.int64)


def _chunks(width: int, itemsize: int, rows: int | None = None) -> tuple:
    """Chunks of about 256 KiB, a few rows by many columns: one sample or one neuron reads few.
    ``rows`` caps the chunk height for datasets of fixed size."""
    cols = min(max(1, int(width)), max(256, _CHUNK_BYTES // (32 * itemsize)))
    height = max(1, min(_CHUNK_BYTES // (cols * itemsize), 32))
    return (height if rows is None else max(1, min(height, int(rows))), cols)


class SignalWriter:
    """Streams samples into an activations or spectra file; the file appears only on ``close()``.

    ``with SignalWriter(path, 'activations', layers, width) as w: w.append(values, ids, labels)``.
    An exception inside the block leaves no file at ``path``.
    """

    def __init__(self, path, kind: str, layers: LayerTable, width: int, *, dtype=None,
                 transform_type=None, eigenvalues=None, trace: str = "children", with_labels: bool = False,
                 producer=None, parameters=None, weights=None, compression=None, obj: str = "SignalBatch"):
        if kind not in ("activations", "spectra"):
            raise ValueError(f"kind must be 'activations' or 'spectra', got {kind!r}")
        dtype = np.dtype(dtype or (np.float32 if kind == "activations" else np.float64))
        extra = {"trace": trace}
        if kind == "spectra":
            extra["transform-type"] = transform_type or ""
        self._context = _create(path, kind, obj, provenance_attrs(producer, parameters, weights), **extra)
        self._file = self._context.__enter__()
        try:
            self._setup(layers, width, dtype, kind, compression, with_labels, eigenvalues)
        except BaseException as err:
            self.discard(err)
            raise

    def _setup(self, layers, width, dtype, kind, compression, with_labels, eigenvalues) -> None:
        layers.write(self._file)
        options = dict(SAMPLE_COMPRESSION[kind] if compression is None else compression)
        name = "values" if kind == "activations" else "coefficients"
        self._values = self._file.create_dataset(name, shape=(0, width), maxshape=(None, width), dtype=dtype,
                                                 chunks=_chunks(width, dtype.itemsize), track_times=False,
                                                 **options)
        _tag(self._values, "array")
        self._ids = self._file.create_dataset("sample_ids", shape=(0,), maxshape=(None,), dtype=np.int64,
                                              chunks=(4096,), track_times=False)
        _tag(self._ids, "array")
        self._labels = None
        if with_labels:
            self._labels = self._file.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int64,
                                                     chunks=(4096,), track_times=False)
            _tag(self._labels, "array")
        if eigenvalues is not None:
            _array(self._file, "eigenvalues", np.asarray(eigenvalues, dtype=np.float64))

    def append(self, values, sample_ids=None, labels=None) -> None:
        values = np.asarray(values)
        values = values[None, :] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[1] != self._values.shape[1]:
            raise ValueError(f"values must have shape (samples, {self._values.shape[1]}); got {values.shape}")
        start, count = self._values.shape[0], values.shape[0]
        ids = np.arange(start, start + count) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        self._values.resize(start + count, axis=0)
        self._values[start:] = values.astype(self._values.dtype, copy=False)
        self._ids.resize(start + count, axis=0)
        self._ids[start:] = ids
        if labels is not None and self._labels is None:
            raise ValueError("this file was opened without labels: pass with_labels=True to SignalWriter")
        if self._labels is not None:
            if labels is None:
                raise ValueError("this file stores labels: pass labels= with every append")
            self._labels.resize(start + count, axis=0)
            self._labels[start:] = np.asarray(labels, dtype=np.int64)

    def close(self) -> None:
        if self._file is not None:
            self._file = None
            self._context.__exit__(None, None, None)

    def discard(self, exc) -> None:
        if self._file is not None:
            self._file = None
            self._context.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.close()
        else:
            try:
                self.discard(exc)
            except BaseException:
                pass
        return False


def write_signals(path, batch: SignalBatch, *, producer=None, parameters=None, obj: str = "SignalBatch") -> None:
    with SignalWriter(path, batch.kind, batch.layers, batch.values.shape[1], dtype=batch.values.dtype,
                      transform_type=batch.transform_type, eigenvalues=batch.eigenvalues, trace=batch.trace,
                      with_labels=batch.labels is not None, producer=producer, parameters=parameters,
                      weights=batch.weights_sha256, obj=obj) as writer:
        writer.append(batch.values, batch.sample_ids, batch.labels)


def read_signals(path, kind: str | None = None, samples=slice(None)) -> SignalBatch:
    """A stored activations or spectra file (``samples`` selects rows)."""
    with open_file(path, kind or ("activations", "spectra")) as f:
        stored_kind = str(f.attrs["kind"])
        values = f["values" if stored_kind == "activations" else "coefficients"][samples]
        return SignalBatch(
            kind=stored_kind, values=values, layers=LayerTable.read(f["layers"]),
            sample_ids=f["sample_ids"][samples], labels=f["labels"][samples] if "labels" in f else None,
            transform_type=str(f.attrs.get("transform-type", "")) or None,
            eigenvalues=f["eigenvalues"][()] if "eigenvalues" in f else None,
            trace=str(f.attrs.get("trace", "children")), weights_sha256=str(f.attrs["weights-sha256"]) or None,
            extra={"object": str(f.attrs["object"])})
