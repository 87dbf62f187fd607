"""Arrays of a dataset file (``.npz`` or HDF5), read as their headers declare them.

A file source names one array of inputs and, optionally, one of labels. Before any data are read, each is
checked from its header: a numeric dtype, a samples axis, data of the declared size (a truncated ``.npz``
member is caught), data stored in the file itself (an HDF5 external link, virtual dataset or external raw
storage is refused) and, with ``limit``, only the first rows are inflated, after their size was checked
against the memory budget. A ``.npz`` of a few kilobytes that would inflate to gigabytes is thus refused
or cut, never fully inflated.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from nsp import memory
from nsp.errors import DatasetError, NspError

#: the suffixes of a file source: ``.npz`` (numpy's archive) or HDF5
SUFFIXES = (".npz", ".h5", ".hdf5")
#: the kinds of array nsp reads from a file (numpy's dtype kinds): bool, signed and unsigned integers, floats
NUMERIC = "biuf"
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class _Stored:
    """One array of a dataset file as its header declares it (nothing read yet): ``rows(n)`` reads the
    first ``n`` rows, or, where ``prefix`` is False (a Fortran-order ``.npy``), the whole array and slices it;
    ``size``: the bytes of data the file holds for it, where the format tells (a ``.npz`` member)."""

    key: str
    shape: tuple
    dtype: np.dtype
    rows: Callable[[int], np.ndarray]
    prefix: bool = True
    size: int | None = None


def _kind(path: Path) -> str:
    return "a .npz" if path.suffix.lower() == ".npz" else "an HDF5"


@contextmanager
def _opened(path: Path, name: str):
    """While the file is open: a function ``key`` -> its array as a :class:`_Stored` (None where there is
    none), and the names of the arrays the file has (for messages)."""
    if path.suffix.lower() == ".npz":
        with zipfile.ZipFile(path) as archive:
            members = [m[:-4] for m in archive.namelist() if m.endswith(".npy")]
            yield (lambda key: _npz_array(archive, key, path, name) if key in members else None), members
    else:
        with h5py.File(path, "r", locking=False) as f:
            yield (lambda key: _h5_array(f, key, path, name)), list(f)


def _npz_array(archive: zipfile.ZipFile, key: str, path: Path, name: str) -> _Stored:
    """The member ``key.npy`` of a .npz archive, from its header: only the rows asked for are inflated."""
    info = archive.getinfo(f"{key}.npy")
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version not in _NPY_HEADERS:
            raise DatasetError(f"dataset {name}: {path} is not a .npz file of numeric arrays nsp can read: array "
                               f"{key!r} is in .npy format {version[0]}.{version[1]} (accepted: 1.0 and 2.0)")
        shape, fortran, dtype = _NPY_HEADERS[version](handle)
        offset = handle.tell()

    def rows(n: int) -> np.ndarray:
        nbytes = (math.prod(shape) if fortran else n * math.prod(shape[1:])) * dtype.itemsize
        with archive.open(info) as handle:
            handle.seek(offset)
            data = handle.read(nbytes)
        if len(data) != nbytes:
            raise DatasetError(f"dataset {name}: {path} array {key!r} ends after {len(data):,} of its "
                               f"{nbytes:,} bytes (a truncated or damaged file)")
        array = np.frombuffer(data, dtype)
        return array.reshape(shape, order="F")[:n] if fortran else array.reshape((n, *shape[1:]))

    return _Stored(key, tuple(shape), dtype, rows, prefix=not fortran, size=info.file_size - offset)


def _h5_array(f: h5py.File, key: str, path: Path, name: str) -> _Stored | None:
    """The HDF5 dataset ``key`` (None where there is none), refused where its data lie in another file
    (an external link, also behind a soft link; a virtual dataset; external raw storage)."""
    link = f.get(key, getlink=True)
    if link is None:
        return None
    outside = "a link into another file" if isinstance(link, h5py.ExternalLink) else None
    if outside is None:
        try:
            array = f[key]
        except KeyError:                                  # a soft link to nothing
            return None
        if not isinstance(array, h5py.Dataset):
            raise DatasetError(f"dataset {name}: {path} {key!r} is an HDF5 group, not an array")
        outside = ("a link into another file" if array.id.fileno != f.id.fileno else
                   "a virtual dataset (its data lie in other files)" if array.is_virtual else
                   "stored in an external raw file" if array.external else None)
    if outside:
        raise DatasetError(f"dataset {name}: {path} array {key!r} is {outside}; nsp reads arrays stored in the "
                           f"file itself")
    return _Stored(key, array.shape or (), array.dtype, lambda n: array[:n])


def _checked(stored: _Stored, path: Path, name: str) -> None:
    """Refuse an array that is not numeric, has no samples axis, or whose data are shorter or longer than
    its header declares."""
    where = f"dataset {name}: {path}"
    if stored.dtype.kind not in NUMERIC:
        raise DatasetError(f"{where} is not {_kind(path)} file of numeric arrays nsp can read: array "
                           f"{stored.key!r} has dtype {stored.dtype} (accepted: bool, integer or float arrays)")
    if not stored.shape:
        raise DatasetError(f"{where} array {stored.key!r} holds a single value; nsp takes an array of samples "
                           f"(samples first)")
    declared = math.prod(stored.shape) * stored.dtype.itemsize
    if stored.size is not None and stored.size != declared:
        raise DatasetError(f"{where} array {stored.key!r} declares shape {stored.shape} of {stored.dtype} "
                           f"({declared:,} bytes) but holds {stored.size:,} bytes (a truncated or damaged file)")


def _read(stored: _Stored, path: Path, name: str, limit: int | None) -> np.ndarray:
    """The first ``limit`` rows (all without it) of an array, after checking what they take (their bytes
    and a float32 copy) against the memory budget: nothing is read that would not fit."""
    n = stored.shape[0] if limit is None else min(limit, stored.shape[0])
    rows = n if stored.prefix else stored.shape[0]
    need = rows * math.prod(stored.shape[1:]) * (stored.dtype.itemsize + 4)
    memory.check(need, f"dataset {name}: {path} array {stored.key!r} (shape {(rows, *stored.shape[1:])}, "
                       f"{stored.dtype})",
                 "Set limit: in the dataset's config entry to read its first samples only" +
                 ("" if stored.prefix else " (save the array in C order, np.ascontiguousarray, so that only "
                                           "those are read)") + ".")
    return stored.rows(n)


_UNREADABLE = (OSError, ValueError, TypeError, EOFError, KeyError, NotImplementedError, zlib.error,
               zipfile.BadZipFile)


def read(path: Path, keys: tuple[str, str], limit: int | None, name: str):
    """The arrays ``keys[0]`` (inputs, required) and ``keys[1]`` (labels, None where the file has none) of
    the file at ``path``; with ``limit``, only their first rows. ``name`` is the dataset's (for messages)."""
    try:
        with _opened(path, name) as (array, names):
            inputs, labels = (array(key) for key in keys)
            if inputs is None:
                raise DatasetError(f"dataset {name}: {path} has no array {keys[0]!r} "
                                   f"(has {', '.join(names) or 'none'})")
            for stored in (inputs, labels):
                if stored is not None:
                    _checked(stored, path, name)
            if labels is not None and labels.shape[0] != inputs.shape[0]:
                raise DatasetError(f"dataset {name}: {inputs.shape[0]} inputs but {labels.shape[0]} labels; every "
                                   f"input needs its label (or give no labels): {path} arrays {keys[0]!r} and "
                                   f"{keys[1]!r}")
            return _read(inputs, path, name, limit), None if labels is None else _read(labels, path, name, limit)
    except NspError:
        raise
    except _UNREADABLE as err:
        raise DatasetError(f"dataset {name}: {path} is not {_kind(path)} file of numeric arrays nsp can read "
                           f"({type(err).__name__}: {err})") from None


def count(path: Path, key: str, name: str) -> int | None:
    """The number of samples of array ``key`` of the file at ``path``, from its header; None where the file
    cannot tell (:func:`read` then says what is wrong with it)."""
    try:
        with _opened(path, name) as (array, _):
            stored = array(key)
    except NspError:
        raise
    except _UNREADABLE:
        return None
    return int(stored.shape[0]) if stored is not None and stored.shape else None
