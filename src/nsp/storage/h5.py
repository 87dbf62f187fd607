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

import hashlib
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
#: numeric datasets of more than 256 KiB, and every compressed one, are chunked and carry HDF5's Fletcher-32
#: checksum of each chunk: a chunk changed after nsp wrote it fails to read (:func:`load`), even in a file
#: sealed again (``nsp.storage.seal``). The digest (:func:`metadata_digest`) covers the rest: the content of
#: smaller datasets (whole, not chunked) and of variable-length strings, which take no filter
CHECKSUM = {"fletcher32": True}
#: reads of less than this are not checked against the memory budget (which is at least 64 MiB)
_BUDGET_FROM = 64 << 20
#: the root attribute holding :func:`metadata_digest`
DIGEST = "nsp-digest"
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


def _selected(shape: tuple, key) -> int:
    """How many entries ``dataset[key]`` selects from a dataset of ``shape``, from the shape alone."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        key = ()
    count = 1
    for axis, n in enumerate(shape):
        k = key[axis] if axis < len(key) else slice(None)
        if isinstance(k, slice):
            count *= len(range(*k.indices(n)))
        elif not isinstance(k, (int, np.integer)):
            k = np.asarray(k)
            count *= int(k.sum()) if k.dtype == bool else k.size
    return count


def load(dataset: h5py.Dataset, key=()) -> np.ndarray:
    """``dataset[key]`` (all of it by default), refused before anything is read where what the dataset declares
    (its shape times its item size) exceeds the memory this process may use (:func:`nsp.memory.budget`). A
    read that fails, a chunk whose Fletcher-32 checksum does not match (changed after nsp wrote it) or that
    does not decompress, is a StorageError naming the file and the dataset."""
    where = f"{dataset.file.filename}: {dataset.name}"
    need = _selected(dataset.shape or (), key) * dataset.dtype.itemsize
    if need > _BUDGET_FROM:
        from nsp import memory
        limit = memory.budget()
        if need > limit:
            raise StorageError(f"{where}: declares {' x '.join(map(str, dataset.shape))} values of "
                               f"{dataset.dtype}, {memory.gb(need)} to read at once; this process may use "
                               f"{memory.gb(limit)} (NSP_MEMORY_MB, the cgroup/SLURM limit or the free memory): "
                               f"damaged, or too large to read whole here")
    try:
        return dataset[key]
    except OSError as err:
        raise StorageError(f"{where}: damaged: its data cannot be read (a chunk whose checksum does not "
                           f"match, or that does not decompress): {err}") from None


def integers(node, name: str, ndim: int = 1) -> np.ndarray:
    """Member ``name`` of ``node``: an integer array of ``ndim`` dimensions, checked."""
    check(name in node and isinstance(node[name], h5py.Dataset), node, f"no dataset {name!r}")
    check(node[name].ndim == ndim and node[name].dtype.kind in "iub", node[name],
          f"expected a {ndim}-D integer array, found {node[name].dtype} of shape {node[name].shape}")
    return load(node[name])


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
    """A dataset without timestamps; string arrays are stored as variable-length UTF-8. Numeric arrays
    of more than 256 KiB, or compressed, are chunked with :data:`CHECKSUM`; smaller ones are stored whole (a
    chunk index would cost more than they hold) and covered by :func:`metadata_digest`."""
    data = np.asarray(data)
    if data.dtype.kind == "U" or data.dtype == object:
        data = np.asarray(data, dtype=h5py.string_dtype())
        encoding = "string-array"
    elif data.ndim and data.size and ("chunks" in options or "compression" in options
                                      or data.nbytes > _CHUNK_BYTES):
        options = {"chunks": True, **options, **CHECKSUM}
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
    check(h5py.check_string_dtype(dataset.dtype) is not None and dataset.ndim == 1, dataset,
          f"expected a 1-D array of strings, found {dataset.dtype} of shape {dataset.shape}")
    return [s.decode() if isinstance(s, bytes) else str(s) for s in load(dataset)]


# --- the metadata digest -----------------------------------------------------------------------------

def metadata_digest(f: h5py.File) -> str:
    """SHA-256 over what no HDF5 filter covers: each group's and dataset's name, shape, type, chunks and
    filters, the names and values of its attributes (the root's :data:`DIGEST` excepted), and the content
    of the datasets that are not chunked (small arrays, :func:`array`) or hold variable-length strings (the
    layer tables' names). Objects are taken in the order of their names, attributes in the order of theirs.
    Chunked numeric data (the large arrays) are covered by their chunks' checksums instead."""
    digest = hashlib.sha256()

    def add(*parts) -> None:
        for part in parts:
            raw = part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogateescape")
            digest.update(len(raw).to_bytes(8, "little") + raw)

    names = []
    f.visit(names.append)
    for name in [""] + sorted(names):
        node = f[name] if name else f
        if isinstance(node, h5py.Dataset):
            add("dataset", name, node.shape, node.maxshape, node.dtype.str, h5py.check_string_dtype(node.dtype),
                node.chunks, node.fletcher32, node.compression, node.compression_opts, node.shuffle)
            if h5py.check_string_dtype(node.dtype) is not None:
                for value in np.ravel(load(node)):
                    add(value if isinstance(value, bytes) else str(value))
            elif node.chunks is None and node.size:
                add(np.ascontiguousarray(load(node)).tobytes())
        else:
            add("group", name)
        for key in sorted(node.attrs):
            if name or key != DIGEST:
                value = np.asarray(node.attrs[key])
                add(key, value.dtype.str, value.shape,
                    "\0".join(map(str, value.ravel())) if value.dtype == object else value.tobytes())
    return digest.hexdigest()


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
    check("data" in node and isinstance(node["data"], h5py.Dataset) and node["data"].shape == indices.shape, node,
          "data and indices differ in length")
    check(indptr.shape == (rows + 1,), node["indptr"], f"{indptr.size} row pointers for {rows} rows")
    check(indptr[0] == 0 and indptr[-1] == indices.size and (np.diff(indptr) >= 0).all(), node["indptr"],
          f"row pointers are not increasing from 0 to {indices.size}")
    in_range(indices, 0, cols, node["indices"], "column index")
    return sp.csr_matrix((load(node["data"]), indices, indptr), shape=(rows, cols))


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
