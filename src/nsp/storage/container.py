"""nsp files: an HDF5 file with a kind, a format version and provenance, sealed and written atomically.

A file is created under a temporary name in the target folder, sealed (the
SHA-256 of its HDF5 bytes goes into the HDF5 user block at its start) and
renamed when complete. Opening checks the seal before HDF5 reads a byte of
the file, so a damaged or truncated file is refused instead of being parsed,
then that it is an nsp file of an accepted kind and of a format version this
nsp reads.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from nsp.errors import MissingFileError
from nsp.storage import h5
from nsp.storage.files import WriteGuard, atomic_output
from nsp.storage.h5 import StorageError
from nsp.storage.provenance import versions

FORMAT = "nsp-hdf5"
FORMAT_VERSION = 2
#: files of this format version and later carry the seal; version 1 files are read without a check
SEALED_FROM = 2
#: the HDF5 user block: HDF5 skips it, nsp keeps the seal in it
USERBLOCK = 512
SEAL = b"nsp-hdf5 sha256 "
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
    with atomic_output(path) as tmp:
        with WriteGuard(tmp, "w+") as sink, \
                h5py.File(sink, "w", track_order=True, locking=False, userblock_size=USERBLOCK) as f:
            f.attrs["nsp-format"] = FORMAT
            f.attrs["format-version"] = FORMAT_VERSION
            f.attrs["kind"] = kind
            f.attrs["object"] = obj
            h5.tag(f, f"nsp.{kind}")
            for key, value in {**provenance, **extra}.items():
                f.attrs[key] = value
            yield f
        seal(tmp)


def _digest(handle) -> tuple[str, int]:
    """SHA-256 and length of the bytes after the user block."""
    handle.seek(USERBLOCK)
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def seal(path) -> None:
    """Write the SHA-256 of an nsp file's HDF5 bytes into its user block.

    nsp seals every file it writes; call this after changing an nsp file with
    another program (h5py, say), or reading it refuses it as damaged.
    """
    with open(path, "r+b") as handle:
        head = handle.read(USERBLOCK)
        if len(head) < USERBLOCK or head[:8] == b"\x89HDF\r\n\x1a\n":
            raise StorageError(f"{path}: has no user block to hold the seal (not written by nsp {FORMAT_VERSION} "
                               f"or later)")
        digest, size = _digest(handle)
        handle.seek(0)
        handle.write(SEAL + f"{digest} {size}\n".encode().ljust(USERBLOCK - len(SEAL), b"\0"))


def _check_seal(path) -> bool:
    """True if ``path`` carries a seal that matches its bytes; False if it has none; StorageError if it does
    not match."""
    with open(path, "rb") as handle:
        head = handle.read(USERBLOCK)
        if not head.startswith(SEAL):
            return False
        try:
            expected, length = head[len(SEAL):].split(b"\n", 1)[0].decode().split(" ")
            length = int(length)
        except ValueError:
            raise StorageError(f"{path}: damaged (its seal is unreadable)") from None
        digest, size = _digest(handle)
    if size != length:
        how = "truncated?" if size < length else "changed by another program? nsp.storage.seal(path) accepts that"
        raise StorageError(f"{path}: damaged: {USERBLOCK + size} bytes where nsp wrote {USERBLOCK + length} ({how})")
    if digest != expected:
        raise StorageError(f"{path}: damaged: its content does not match the SHA-256 nsp sealed it with (a "
                           f"disk or copy error, or changed by another program; nsp.storage.seal(path) accepts "
                           f"such a change)")
    return True


def open_file(path, kinds=None) -> h5py.File:
    """Open an nsp file for reading, checking that it is one, of an accepted kind and version."""
    path = Path(path)
    accepted = (kinds,) if isinstance(kinds, str) else tuple(kinds or FILE_KINDS)
    if path.is_dir():
        raise StorageError(f"{path}: a folder, not an nsp file")
    if path.exists() and not path.is_file():
        raise StorageError(f"{path}: not a regular file (a device or a pipe?), not an nsp file")
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    sealed = _check_seal(path)
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
        if version >= SEALED_FROM and not sealed:
            raise StorageError(f"{path}: damaged: an nsp file of format version {version} without its seal")
        kind = f.attrs.get("kind")
        if kind not in accepted:
            raise StorageError(f"{path}: holds nsp {kind!r} data; expected {' or '.join(map(repr, accepted))}")
        _no_links(f, path)
    except BaseException as err:
        f.close()
        if isinstance(err, _READ_FAILURES) and not isinstance(err, StorageError):
            raise _damaged(path, err) from err
        raise
    return f


def _no_links(f: h5py.File, path) -> None:
    """nsp writes plain groups and datasets only: a soft or external link (to another file, which HDF5 would
    follow) is refused."""
    found = f.visititems_links(lambda name, link: None if isinstance(link, h5py.HardLink) else (name, link))
    if found:
        name, link = found
        target = getattr(link, "filename", None) or getattr(link, "path", "")
        raise StorageError(f"{path}: /{name} links to {target!r} ({type(link).__name__}); nsp files hold no links "
                           f"to other objects or files")


#: what reading a damaged or foreign file can raise from h5py, numpy or json, beyond the checks (h5py
#: raises RuntimeError, and SystemError from a failed link visit, for some HDF5 failures)
_READ_FAILURES = (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError,
                  RuntimeError, SystemError)


def _damaged(path, err) -> StorageError:
    return StorageError(f"{path}: damaged, or not as nsp writes it: {type(err).__name__}: {err}")


@contextmanager
def reading(path, kinds=None):
    """:func:`open_file` for readers: whatever goes wrong while reading is a StorageError naming the file."""
    with open_file(path, kinds) as f:
        try:
            yield f
        except StorageError:
            raise
        except _READ_FAILURES as err:
            raise _damaged(path, err) from err
