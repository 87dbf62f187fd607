"""HDF5 building blocks and the registry of encodings.

Every group and dataset nsp writes carries two attributes, ``encoding-type``
and ``encoding-version``. Writers are registered per Python class (the first
class of an object's MRO that has one wins), readers per (type, version), so
that a new kind of object (a transform, say) brings its own encoding in its
own module (the built-in ones are in the modules of ``BUILT_IN``)::

    @h5.writer(MyTransform)
    def _write(parent, name, obj):
        group = h5.group(parent, name, "my-transform", version=1)
        ...

    @h5.reader("my-transform", 1)
    def _read(group):
        return MyTransform(...)

:func:`write` and :func:`read` dispatch on the registries; reading a
version this nsp does not know is a :class:`StorageError` naming the file,
the object and the versions that can be read. Everything is written without
timestamps and with tracked link order, so the same content gives the same
bytes.
"""

from __future__ import annotations

from typing import Callable

import h5py
import numpy as np

from nsp.errors import StorageError
from nsp.registry import Registry

#: default filters (bench/bench_storage.py): deflate, which every HDF5 tool reads (lzf is faster but
#: h5py-only); level 1 (higher levels gain 3 % for 20 % more time); the byte shuffle helps float64
#: spectra (ratio 2.37 vs 2.23) and hurts float32 activations (1.57 vs 1.76).
COMPRESSION = {"compression": "gzip", "compression_opts": 1, "shuffle": True}

_CHUNK_BYTES = 1 << 18
#: the modules holding the built-in encodings (their decorators register them)
BUILT_IN = ("nsp.storage.h5", "nsp.storage.layers", "nsp.storage.transformers")
#: class -> writer(parent, name, obj)
WRITERS = Registry("HDF5 writer", BUILT_IN, error=StorageError, keyed=True)
#: (encoding type, version) -> reader(group)
READERS = Registry("HDF5 reader", BUILT_IN, error=StorageError, keyed=True)


def check(ok, node, message: str) -> None:
    """Structural validation of what a file holds: StorageError naming the file and the object if not ``ok``."""
    if not ok:
        raise StorageError(f"{node.file.filename}: {node.name}: {message} (damaged, or not written by nsp)")


def integers(node, name: str, ndim: int = 1) -> np.ndarray:
    """Member ``name`` of ``node``: an integer array of ``ndim`` dimensions, checked."""
    check(name in node and isinstance(node[name], h5py.Dataset), node, f"no dataset {name!r}")
    values = node[name][()]
    check(values.ndim == ndim and values.dtype.kind in "iub", node[name],
          f"expected a {ndim}-D integer array, found {values.dtype} of shape {values.shape}")
    return values


def in_range(values: np.ndarray, low: int, high: int, node, what: str) -> None:
    """Every entry of ``values`` in ``low .. high - 1``."""
    if values.size:
        bad = values[(values < low) | (values >= high)]
        check(bad.size == 0, node, f"{what} {int(bad[0]) if bad.size else 0} outside {low}..{high - 1}")


# --- the registry ------------------------------------------------------------------------------

def writer(cls: type) -> Callable:
    """Register the decorated ``fn(parent, name, obj)`` as the writer of objects of ``cls``."""
    def register(fn):
        return WRITERS.add(fn, cls)
    return register


def reader(encoding: str, version: int) -> Callable:
    """Register the decorated ``fn(group)`` as the reader of ``encoding`` at ``version``."""
    def register(fn):
        return READERS.add(fn, (encoding, int(version)))
    return register


def write(parent: h5py.Group, name: str, obj):
    """Write ``obj`` under ``parent[name]`` with the writer registered for its class."""
    for cls in type(obj).__mro__:
        if cls in WRITERS:
            return WRITERS[cls](parent, name, obj)
    raise StorageError(f"no HDF5 encoding for a {type(obj).__name__}; encodable: "
                       f"{', '.join(sorted(c.__name__ for c in WRITERS))}")


def read(node: h5py.Group | h5py.Dataset):
    """Read an object with the reader registered for its encoding type and version."""
    encoding, version = encoding_of(node)
    fn = READERS.get((encoding, version))
    if fn is None:
        known = sorted(v for e, v in READERS if e == encoding)
        where = f"{node.file.filename}: {node.name}"
        if known:
            raise StorageError(f"{where}: encoding {encoding!r} version {version} cannot be read by this nsp "
                               f"(it reads version {', '.join(map(str, known))}); upgrade nsp")
        raise StorageError(f"{where}: unknown encoding {encoding!r}; readable: "
                           f"{', '.join(sorted({e for e, _ in READERS}))}")
    return fn(node)


def encoding_of(node) -> tuple[str, int]:
    """``(encoding-type, encoding-version)`` of a group or dataset; StorageError if missing or malformed."""
    where = f"{node.file.filename}: {node.name}"
    if "encoding-type" not in node.attrs:
        raise StorageError(f"{where} has no encoding-type attribute (not written by nsp, or damaged)")
    raw = node.attrs.get("encoding-version", "1")
    try:
        version = int(raw.decode() if isinstance(raw, bytes) else raw)
    except (TypeError, ValueError):
        raise StorageError(f"{where}: encoding-version {raw!r} is not an integer") from None
    return str(node.attrs["encoding-type"]), version


def expect(node, encodings, version: int) -> None:
    """Check that ``node`` holds one of ``encodings`` (a name or a tuple) at ``version``; StorageError if not."""
    encodings = (encodings,) if isinstance(encodings, str) else tuple(encodings)
    encoding, found = encoding_of(node)
    if encoding not in encodings or found != version:
        raise StorageError(f"{node.file.filename}: {node.name} holds {encoding!r} version {found}; this nsp reads "
                           f"{' or '.join(map(repr, encodings))} version {version} here")


# --- groups and datasets ---------------------------------------------------------------------------

def tag(obj, encoding: str, version: int = 1, **attrs) -> None:
    obj.attrs["encoding-type"] = encoding
    obj.attrs["encoding-version"] = str(int(version))
    for key, value in attrs.items():
        obj.attrs[key] = value


def group(where: h5py.Group, name: str, encoding: str, version: int = 1, **attrs) -> h5py.Group:
    """A new group without timestamps, links in creation order, tagged with its encoding."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
    out = h5py.Group(h5py.h5g.create(where.id, name.encode(), gcpl=gcpl))
    tag(out, encoding, version, **attrs)
    return out


def array(parent: h5py.Group, name: str, data, encoding: str = "array", **options) -> h5py.Dataset:
    """A dataset without timestamps; string arrays are stored as variable-length UTF-8."""
    data = np.asarray(data)
    if data.dtype.kind == "U" or data.dtype == object:
        data = np.asarray(data, dtype=h5py.string_dtype())
        encoding = "string-array"
    dataset = parent.create_dataset(name, data=data, track_times=False, **options)
    tag(dataset, encoding)
    return dataset


def compressed(data) -> dict:
    """The default filters for arrays worth compressing (more than 4096 entries)."""
    return COMPRESSION if np.asarray(data).size > 4096 else {}


def chunks(width: int, itemsize: int, rows: int | None = None) -> tuple:
    """Chunks of about 256 KiB, a few rows by many columns: one sample or one neuron reads few.
    ``rows`` caps the chunk height for datasets of fixed size."""
    cols = min(max(1, int(width)), max(256, _CHUNK_BYTES // (32 * itemsize)))
    height = max(1, min(_CHUNK_BYTES // (cols * itemsize), 32))
    return (height if rows is None else max(1, min(height, int(rows))), cols)


def strings(dataset: h5py.Dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def write_csr(parent: h5py.Group, name: str, matrix) -> None:
    import scipy.sparse as sp
    matrix = sp.csr_matrix(matrix)
    out = group(parent, name, "csr_matrix", shape=np.asarray(matrix.shape, dtype=np.int64))
    for key in ("data", "indices", "indptr"):
        array(out, key, getattr(matrix, key), **compressed(getattr(matrix, key)))


@reader("csr_matrix", 1)
def read_csr(node: h5py.Group):
    """A CSR matrix, its structure checked first: scipy trusts indices, and a bad one crashes the process."""
    import scipy.sparse as sp
    shape = np.asarray(node.attrs.get("shape", []))
    check(shape.shape == (2,) and shape.dtype.kind in "iu" and (shape >= 0).all(), node,
          f"shape attribute {shape.tolist()} is not two sizes")
    rows, cols = (int(v) for v in shape)
    indptr, indices = integers(node, "indptr"), integers(node, "indices")
    check("data" in node and node["data"].shape == indices.shape, node, "data and indices differ in length")
    check(indptr.shape == (rows + 1,), node["indptr"], f"{indptr.size} row pointers for {rows} rows")
    check(indptr[0] == 0 and indptr[-1] == indices.size and (np.diff(indptr) >= 0).all(), node["indptr"],
          f"row pointers are not increasing from 0 to {indices.size}")
    in_range(indices, 0, cols, node["indices"], "column index")
    return sp.csr_matrix((node["data"][()], indices, indptr), shape=(rows, cols))


def write_ragged(parent: h5py.Group, name: str, rows) -> None:
    rows = [list(r) for r in rows]
    out = group(parent, name, "ragged-array")
    array(out, "values", np.asarray([v for r in rows for v in r], dtype=np.int64))
    array(out, "offsets", np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64))


@reader("ragged-array", 1)
def read_ragged(node: h5py.Group) -> list[tuple]:
    values, offsets = integers(node, "values"), integers(node, "offsets")
    check(offsets.size >= 1 and offsets[0] == 0 and offsets[-1] == values.size and (np.diff(offsets) >= 0).all(),
          node["offsets"], f"offsets are not increasing from 0 to {values.size}")
    return [tuple(int(v) for v in values[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
