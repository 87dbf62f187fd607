"""Activations and spectra files: many samples as a (samples, width) array with their layer table."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from nsp.errors import InputError
from nsp.storage import h5
from nsp.storage.container import (_READ_FAILURES, _damaged, check_digest, create, open_file, provenance_attrs,
                                   reading)
from nsp.storage.layers import write_layer_table
from nsp.tracing.table import LayerTable

SAMPLE_COMPRESSION = {"activations": {"compression": "gzip", "compression_opts": 1}, "spectra": h5.COMPRESSION}
#: bytes of a band of chunks (the chunks of the same rows, across the whole width) at most. The writer keeps
#: appended rows until a band is whole and writes it at once, so that each chunk is compressed once: a write of
#: fewer rows than a chunk holds would read, decompress and compress again every chunk of the band (measured:
#: writing 4 rows at a time into 32-row chunks took 5 times as long as 32 at a time)
BAND_BYTES = 1 << 24


def sample_chunks(width: int, itemsize: int) -> tuple:
    """Chunks of a sample matrix: about 256 KiB, up to 32 rows by many columns (one sample or one neuron reads
    few), fewer rows for wide samples so that a band of chunks stays within :data:`BAND_BYTES`."""
    width = max(1, int(width))
    height = max(1, min(32, BAND_BYTES // (width * itemsize)))
    return height, min(width, max(256, (1 << 18) // (height * itemsize)))


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
    stored_layers: tuple | None = None   # activations of some layers only: their indices in ``layers``
    noise_floor: np.ndarray | None = None  # spectra: (samples, layers), the coefficients' rounding bound

    def __post_init__(self):
        if self.sample_ids is None:
            self.sample_ids = np.arange(self.values.shape[0], dtype=np.int64)
        if self.stored_layers is not None:
            self.stored_layers = tuple(int(i) for i in self.stored_layers)

    @property
    def stored_table(self) -> LayerTable:
        """The layout of the columns of ``values``: ``layers`` (the network's table), or where only some
        layers are stored (``stored_layers``) the table of those alone, renumbered (:meth:`LayerTable.subset`)."""
        return self.layers if self.stored_layers is None else self.layers.subset(self.stored_layers)


class SignalWriter:
    """Streams samples into an activations or spectra file; the file appears only on ``close()``.

    ``with SignalWriter(path, 'activations', layers, width) as w: w.append(values, ids, labels)``.
    An exception inside the block leaves no file at ``path``. Rows are written a band of chunks at a time
    (:func:`sample_chunks`): the rows of a band that is not whole yet (at most :data:`BAND_BYTES`) wait in
    memory for the next ``append`` or ``close()``. ``stored_layers`` (activations only): the
    indices, ascending, of the layers of ``layers`` (the network's whole table) whose values the file holds,
    one after the other; ``width`` is then their node count.

    Labels are class numbers from 0; the ``labels`` dataset's attribute ``label-max`` holds the largest
    written (-1 where none), and a reader refuses a label below 0 or above it. A spectra file's root
    attribute ``eigenvalue-count`` holds the number of eigenvalues it holds (0: none, as in class means or
    spectra of a transform without eigenvalues); a reader refuses a file without the ``eigenvalues`` it
    declares. A value of a wider type that does not fit ``dtype`` (1e300 in float32) is refused, not
    written as infinity. ``noise_floor`` (spectra): each ``append`` also gives each sample's noise floor per
    layer (samples, layers), stored as ``noise_floor`` (:meth:`nsp.SemTransform.noise_floor`).
    """

    def __init__(self, path, kind: str, layers: LayerTable, width: int, *, dtype=None,
                 transform_type=None, eigenvalues=None, trace: str = "children", with_labels: bool = False,
                 producer=None, parameters=None, weights=None, compression=None, obj: str = "SignalBatch",
                 stored_layers=None, noise_floor: bool = False):
        if kind not in ("activations", "spectra"):
            raise InputError(f"kind must be 'activations' or 'spectra', got {kind!r}")
        dtype = np.dtype(dtype or (np.float32 if kind == "activations" else np.float64))
        extra = {"trace": trace}
        if kind == "spectra":
            extra["transform-type"] = transform_type or ""
        if kind == "spectra":
            extra["eigenvalue-count"] = 0 if eigenvalues is None else int(np.size(eigenvalues))
        self.path = path
        self._label_max = -1
        self._context = create(path, kind, obj, provenance_attrs(producer, parameters, weights), **extra)
        self._file = self._context.__enter__()
        try:
            self._setup(layers, width, dtype, kind, compression, with_labels, eigenvalues)
            self._floor = None
            if noise_floor:
                self._floor = self._file.create_dataset("noise_floor", shape=(0, len(layers)), dtype=np.float64,
                                                        maxshape=(None, len(layers)), chunks=(256, len(layers)),
                                                        track_times=False, **h5.CHECKSUM)
                h5.tag(self._floor, "array")
            if stored_layers is not None:
                self._stored(layers, stored_layers, width, kind)
        except BaseException as err:
            self.discard(err)
            raise

    def _setup(self, layers, width, dtype, kind, compression, with_labels, eigenvalues) -> None:
        write_layer_table(self._file, "layers", layers)
        options = dict(SAMPLE_COMPRESSION[kind] if compression is None else compression)
        name = "values" if kind == "activations" else "coefficients"
        self._pending = []                      # rows of a band of chunks that is not whole yet: (values, ids, labels)
        self._values = self._file.create_dataset(name, shape=(0, width), maxshape=(None, width), dtype=dtype,
                                                 chunks=sample_chunks(width, dtype.itemsize), track_times=False,
                                                 **options, **h5.CHECKSUM)
        h5.tag(self._values, "array")
        self._ids = self._file.create_dataset("sample_ids", shape=(0,), maxshape=(None,), dtype=np.int64,
                                              chunks=(4096,), track_times=False, **h5.CHECKSUM)
        h5.tag(self._ids, "array")
        self._labels = None
        if with_labels:
            self._labels = self._file.create_dataset("labels", shape=(0,), maxshape=(None,), dtype=np.int64,
                                                     chunks=(4096,), track_times=False, **h5.CHECKSUM)
            h5.tag(self._labels, "array")
        if eigenvalues is not None:
            h5.array(self._file, "eigenvalues", np.asarray(eigenvalues, dtype=np.float64))

    def _stored(self, layers, stored_layers, width, kind) -> None:
        if kind != "activations":
            raise InputError("stored_layers: only an activations file may hold some layers only")
        nodes = layers.subset(stored_layers).n_nodes
        if width != nodes:
            raise InputError(f"stored_layers: {len(stored_layers)} layers of {nodes} nodes, but width {width}")
        h5.array(self._file, "stored_layers", np.asarray(stored_layers, dtype=np.int64))

    def append(self, values, sample_ids=None, labels=None, noise_floor=None) -> None:
        values = np.asarray(values)
        values = values[None, :] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[1] != self._values.shape[1]:
            raise InputError(f"values must have shape (samples, {self._values.shape[1]}); got {values.shape}")
        start, count = self._values.shape[0] + sum(len(p[1]) for p in self._pending), values.shape[0]
        ids = np.arange(start, start + count) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
        if labels is not None and self._labels is None:
            raise InputError("this file was opened without labels: pass with_labels=True to SignalWriter")
        if self._labels is not None and labels is None:
            raise InputError("this file stores labels: pass labels= with every append")
        for name, given in (("sample_ids", ids), ("labels", labels)):
            if given is not None and np.shape(given) != (count,):
                raise InputError(f"{name} must hold one value per sample ({count}); got shape {np.shape(given)}")
        labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if labels is not None and count:
            if labels.min() < 0:
                first = int(np.argmin(labels))
                raise InputError(f"labels must be class numbers from 0; got {labels[first]} for sample {ids[first]}")
            self._label_max = max(self._label_max, int(labels.max()))
        values = self._narrowed(values, ids)
        if (noise_floor is None) != (self._floor is None) or (noise_floor is not None and np.shape(noise_floor) != (
                count, self._floor.shape[1])):
            raise InputError(f"noise_floor: give one row of {self._floor.shape[1]} layers per sample with every "
                             f"append" if self._floor is not None else "noise_floor: this file was opened without "
                             f"it: pass noise_floor=True to SignalWriter")
        if self._floor is not None:                     # small: written at once, not in bands
            self._floor.resize(self._floor.shape[0] + count, axis=0)
            self._floor[-count:] = noise_floor
        band, done = self._values.chunks[0], 0
        if self._pending:                               # complete the band begun by earlier appends
            done = min(count, band - sum(len(p[1]) for p in self._pending))
            self._keep(values[:done], ids[:done], None if labels is None else labels[:done])
        whole = (count - done) // band * band
        if whole:                                       # whole bands straight from the caller's array
            self._write(values[done:done + whole], ids[done:done + whole],
                        None if labels is None else labels[done:done + whole])
        if done + whole < count:
            self._keep(values[done + whole:], ids[done + whole:], None if labels is None else labels[done + whole:])

    def _narrowed(self, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """``values`` in the file's type; StorageError where a finite value becomes infinite (1e300 in
        float32), naming the first such value, its sample and its column."""
        target = self._values.dtype
        if values.dtype.kind not in "fc" or values.dtype.itemsize <= target.itemsize:
            return values
        with np.errstate(over="ignore", invalid="ignore"):
            cast = values.astype(target)
        if not np.isfinite(cast).all():
            bad = np.argwhere(np.isinf(cast) & np.isfinite(values))
            if bad.size:
                row, column = (int(v) for v in bad[0])
                raise h5.StorageError(
                    f"{self.path}: {self._values.name}: value {values[row, column].item()!r} of sample {ids[row]} (column "
                    f"{column}) does not fit the file's {target} (largest {np.finfo(target).max:g}); "
                    f"{int(bad.shape[0])} such values in this append, nothing written")
        return cast

    def _keep(self, values, ids, labels) -> None:
        """Rows of a band not yet whole, copied (fewer than a band: at most :data:`BAND_BYTES`)."""
        self._pending.append((np.array(values, dtype=self._values.dtype), np.array(ids, dtype=np.int64),
                              None if labels is None else np.array(labels)))
        if sum(len(p[1]) for p in self._pending) == self._values.chunks[0]:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            parts, self._pending = self._pending, []
            self._write(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                        None if self._labels is None else np.concatenate([p[2] for p in parts]))

    def _write(self, values, ids, labels) -> None:
        start, count = self._values.shape[0], len(ids)
        self._values.resize(start + count, axis=0)
        self._values[start:] = values.astype(self._values.dtype, copy=False)
        self._ids.resize(start + count, axis=0)
        self._ids[start:] = ids
        if self._labels is not None:
            self._labels.resize(start + count, axis=0)
            self._labels[start:] = labels

    def close(self) -> None:
        if self._file is not None:
            try:
                self._flush()                           # the last rows (a band that is not whole)
                if self._labels is not None:
                    self._labels.attrs["label-max"] = np.int64(self._label_max)
            except BaseException as err:
                self.discard(err)
                raise
            self._file = None
            self._context.__exit__(None, None, None)

    def discard(self, exc) -> None:
        self._pending = []
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
                      weights=batch.weights_sha256, obj=obj, stored_layers=batch.stored_layers,
                      noise_floor=batch.noise_floor is not None) as writer:
        writer.append(batch.values, batch.sample_ids, batch.labels, batch.noise_floor)


def read_signals(path, kind: str | None = None, samples=slice(None)) -> SignalBatch:
    """A stored activations or spectra file (``samples`` selects rows)."""
    with reading(path, kind or ("activations", "spectra")) as f:
        return _batch(f, samples)


def iter_signals(path, kind: str | None = None, max_bytes: int = 1 << 28):
    """The samples of a stored file in consecutive batches of at most ``max_bytes`` of float64 values (at
    least one sample each), from one open file (its seal is checked once). The batches depend only on the
    file, so results computed batch by batch are the same on every machine."""
    with reading(path, kind or ("activations", "spectra")) as f:
        _batch(f, slice(0, 0))                          # structure checked, then the metadata digest
        check_digest(f, path)
        rows, width = f["values" if str(f.attrs["kind"]) == "activations" else "coefficients"].shape
        step = max(1, int(max_bytes) // (8 * max(width, 1)))
        for start in range(0, rows, step) if rows else [0]:
            yield _batch(f, slice(start, start + step))


class StoredValues:
    """The (samples, width) values of an open file, read only where indexed: ``values[i, a:b]`` reads
    columns a..b of sample i (the chunks that hold them). A failed read is a StorageError naming the file."""

    def __init__(self, dataset, path):
        self._dataset, self.path = dataset, path
        self.shape, self.dtype, self.ndim = dataset.shape, dataset.dtype, dataset.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        try:
            return h5.load(self._dataset, key)
        except RuntimeError as err:
            raise _damaged(self.path, err) from err

    def row_blocks(self, max_bytes: int) -> list[slice]:
        """Consecutive row ranges of at most ``max_bytes`` of float64 each (at least one row), whole bands
        of HDF5 chunks where they fit: reading them decompresses each chunk once. A chunk holds a few rows
        of many columns, so a range narrower than a band decompresses the band's chunks again."""
        rows, width = self.shape
        band = (self._dataset.chunks or (max(rows, 1),))[0]
        step = max(1, int(max_bytes) // (8 * max(width, 1)))
        step = step // band * band if step >= band else step
        return [slice(start, min(rows, start + step)) for start in range(0, rows, step)]

    def blocks(self, max_bytes: int):
        """``(rows, columns, values)`` over the whole matrix: bands of chunks, each in column blocks of at
        most ``max_bytes`` of float64 (at least one chunk), so each chunk is decompressed once and memory
        does not grow with the width; the blocks of one band come before the next band's."""
        rows, width = self.shape
        band, cols = self._dataset.chunks or (max(rows, 1), max(width, 1))
        step = max(1, int(max_bytes) // (8 * band * cols)) * cols
        for r in range(0, rows, band):
            for c in range(0, width, step) if width else [0]:
                yield slice(r, min(rows, r + band)), slice(c, min(width, c + step)), \
                    self[r:min(rows, r + band), c:min(width, c + step)]


@contextmanager
def open_signals(path, kind: str | None = None):
    """A stored activations or spectra file kept open to read parts of it: a SignalBatch with its layer
    table, sample ids, labels and eigenvalues, whose ``values`` (a :class:`StoredValues`) are read only
    where indexed. The seal is checked once, on opening; the values can be read until the block ends."""
    with open_file(path, kind or ("activations", "spectra")) as f:
        try:
            batch = _batch(f, slice(0, 0))
            batch.sample_ids = h5.load(f["sample_ids"])
            batch.labels = h5.load(f["labels"]) if "labels" in f else None
            batch.noise_floor = h5.load(f["noise_floor"]) if "noise_floor" in f else None
            _check_labels(f, batch.labels, batch.sample_ids)
            check_digest(f, path)
            batch.values = StoredValues(f["values" if batch.kind == "activations" else "coefficients"], path)
        except h5.StorageError:
            raise
        except _READ_FAILURES as err:
            raise _damaged(path, err) from err
        yield batch


def _batch(f, samples) -> SignalBatch:
    stored_kind = str(f.attrs["kind"])
    layers = h5.read(f["layers"])
    matrix = f["values" if stored_kind == "activations" else "coefficients"]
    stored = _check_shapes(f, matrix, layers)
    ids = h5.load(f["sample_ids"], samples)
    labels = h5.load(f["labels"], samples) if "labels" in f else None
    _check_labels(f, labels, ids)
    return SignalBatch(
        kind=stored_kind, values=h5.load(matrix, samples), layers=layers, sample_ids=ids, labels=labels,
        transform_type=str(f.attrs.get("transform-type", "")) or None,
        eigenvalues=h5.load(f["eigenvalues"]) if "eigenvalues" in f else None,
        trace=str(f.attrs.get("trace", "children")), weights_sha256=str(f.attrs["weights-sha256"]) or None,
        extra={"object": str(f.attrs["object"])}, stored_layers=stored,
        noise_floor=h5.load(f["noise_floor"], samples) if "noise_floor" in f else None)


def _check_shapes(f, matrix, layers) -> tuple | None:
    """The sample matrix, ids, labels and eigenvalues agree with each other and with the layer table (or
    the stored layers of it, which are returned: None where every layer is stored)."""
    h5.check(matrix.ndim == 2 and matrix.dtype.kind == "f", matrix, f"expected a (samples, width) float array, "
             f"found {matrix.dtype} of shape {matrix.shape}")
    rows, width = matrix.shape
    if "noise_floor" in f:
        h5.check(f["noise_floor"].shape == (rows, len(layers)) and f["noise_floor"].dtype.kind == "f", f,
                 f"noise_floor is not one row of {len(layers)} layers per sample ({rows})")
    for name in ("sample_ids", "labels"):
        if name in f or name == "sample_ids":
            h5.check(name in f and f[name].shape == (rows,) and f[name].dtype.kind in "iu", f,
                     f"{name} are not one integer per sample ({rows})")
    nodes, stored = layers.n_nodes, None
    if "stored_layers" in f:
        ids = f["stored_layers"]
        h5.check(str(f.attrs["kind"]) == "activations" and ids.ndim == 1 and ids.dtype.kind in "iu"
                 and ids.shape[0] >= 1, ids, "expected the indices of some layers (in an activations file)")
        stored = tuple(int(i) for i in h5.load(ids))
        h5.check(all(0 <= i < len(layers) for i in stored) and all(a < b for a, b in zip(stored, stored[1:])),
                 ids, f"layer indices {list(stored[:8])}... not ascending and below {len(layers)}")
        nodes = int(layers.sizes[list(stored)].sum())
    if str(f.attrs["kind"]) == "activations":
        h5.check(width == nodes, matrix, f"{width} columns for the {nodes} nodes of its layer table"
                 + (f" (its {len(stored)} stored layers)" if stored is not None else ""))
    else:                                   # a partial Laplacian basis has fewer coefficients than nodes
        h5.check(width <= nodes, matrix, f"{width} coefficients for the {nodes} nodes of its layer table")
    if "eigenvalues" in f:
        h5.check(f["eigenvalues"].shape == (width,), f["eigenvalues"],
                 f"{f['eigenvalues'].shape} eigenvalues for {width} coefficients")
        h5.check(f["eigenvalues"].dtype.kind == "f", f["eigenvalues"],
                 f"expected floating-point eigenvalues, found {f['eigenvalues'].dtype}")
    if "eigenvalue-count" in f.attrs:                 # written since the metadata digest; older files lack it
        count = f.attrs["eigenvalue-count"]
        held = f["eigenvalues"].shape[0] if "eigenvalues" in f else 0
        h5.check(isinstance(count, np.integer) and count == held, f, f"holds {held} eigenvalues where its "
                 f"eigenvalue-count attribute says {np.asarray(count).tolist()!r}" + ("" if "eigenvalues" in f else
                                                                  " (/eigenvalues missing)"))
    return stored


def _check_labels(f, labels, ids) -> None:
    """Labels read are class numbers from 0 up to the ``label-max`` attribute (where the file has one)."""
    if labels is None or not labels.size:
        return
    node = f["labels"]
    h5.check(labels.min() >= 0, node, f"label {labels.min()} of sample {ids[np.argmin(labels)]} is negative "
                                      f"(labels are class numbers from 0)")
    if "label-max" in node.attrs:
        top = node.attrs["label-max"]
        h5.check(isinstance(top, np.integer), node, f"label-max attribute {np.asarray(top).tolist()!r} is not an integer")
        h5.check(labels.max() <= top, node, f"label {labels.max()} of sample {ids[np.argmax(labels)]} is above "
                                            f"{top}, the largest label written (its label-max attribute)")
