"""nsp files: an HDF5 file with a kind, a format version and provenance, written atomically.

A file is created under a temporary name in the target folder and renamed
when complete; opening checks that it is an nsp file of an accepted kind
and of a format version this nsp reads.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from nsp.storage import h5
from nsp.storage.files import atomic_output
from nsp.storage.h5 import StorageError
from nsp.storage.provenance import versions

FORMAT = "nsp-hdf5"
FORMAT_VERSION = 1
FILE_KINDS = ("graph", "transformer", "activations", "spectra")


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
def create(path, kind: str, obj: str, provenance: dict, **extra):
    """An nsp file written under a temporary name and renamed when the block succeeds."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w", track_order=True, locking=False) as f:
        f.attrs["nsp-format"] = FORMAT
        f.attrs["format-version"] = FORMAT_VERSION
        f.attrs["kind"] = kind
        f.attrs["object"] = obj
        h5.tag(f, f"nsp.{kind}")
        for key, value in {**provenance, **extra}.items():
            f.attrs[key] = value
        yield f


def open_file(path, kinds=None) -> h5py.File:
    """Open an nsp file for reading, checking that it is one, of an accepted kind and version."""
    path = Path(path)
    accepted = (kinds,) if isinstance(kinds, str) else tuple(kinds or FILE_KINDS)
    if path.is_dir():
        raise StorageError(f"{path}: a folder, not an nsp file")
    if path.exists() and not path.is_file():
        raise StorageError(f"{path}: not a regular file (a device or a pipe?), not an nsp file")
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
        version = f.attrs["format-version"]
        if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) or version < 1:
            raise StorageError(f"{path}: format-version {version!r} is not a version number (a whole number "
                               f"from 1; this nsp writes {FORMAT_VERSION})")
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
