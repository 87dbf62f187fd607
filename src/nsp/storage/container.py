"""nsp files: an HDF5 file with a kind, a format version and provenance, sealed and written atomically.

A file is created under a temporary name in the target folder, sealed (the
SHA-256 of its HDF5 bytes goes into the HDF5 user block at its start) and
renamed when complete. Opening checks the seal before HDF5 reads a byte of
the file, so a damaged or truncated file is refused instead of being parsed,
then that it is an nsp file of an accepted kind and of a format version this
nsp reads.

A file changed by another program and sealed again (:func:`seal`) is parsed
by HDF5, so what nsp reads is checked besides: every numeric dataset carries
HDF5's Fletcher-32 checksum of each chunk (:data:`h5.CHECKSUM`), the rest
(names, shapes, types, attributes, strings) a SHA-256 in the root attribute
``nsp-digest`` (:func:`h5.metadata_digest`), written last by the writer and
checked by :func:`reading` once the readers' own structural checks have
passed. Files written before the digest (without the attribute) are read
without that check.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from nsp.errors import InputTypeError, MissingFileError
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
#: the HDF5 format of the HDF5 1.10 library (read by HDF5 1.10 from 2017 and later): its object headers,
#: chunk indexes and superblock carry checksums, so HDF5 refuses damaged metadata (of a file sealed again
#: after the damage) instead of parsing it; the oldest format ("earliest") has none
LIBVER = ("v110", "v110")


def provenance_attrs(producer: dict | None, parameters: dict | None, weights: str | None) -> dict:
    """Root attributes saying what produced a file (no timestamps, no absolute paths)."""
    v = versions()
    return {
        "nsp-version": v["nsp"], "torch-version": v["torch"], "numpy-version": v["numpy"],
        "scipy-version": v["scipy"], "h5py-version": v["h5py"], "weights-sha256": weights or "",
        "producer": _json(producer, "producer"), "parameters": _json(parameters, "parameters"),
    }


def _json(value: dict | None, name: str) -> str:
    """``value`` as JSON text with sorted keys; an InputTypeError naming ``name`` where it is not a dict of
    JSON values (strings, numbers, booleans, None, lists and dicts of them) or holds NaN or infinity."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise InputTypeError(f"{name}= takes a dict of JSON values; got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"{name}= takes a dict of JSON values (strings, numbers, booleans, None, lists and "
                             f"dicts with string keys; finite numbers only): {err}") from None


@contextmanager
def create(path, kind: str, obj: str, provenance: dict, **extra):
    """An nsp file written under a temporary name and renamed when the block succeeds."""
    with atomic_output(path) as tmp:
        with WriteGuard(tmp, "w+") as sink:
            f = None
            try:
                f = h5py.File(sink, "w", track_order=True, locking=False, userblock_size=USERBLOCK, libver=LIBVER)
                f.attrs["nsp-format"] = FORMAT
                f.attrs["format-version"] = FORMAT_VERSION
                f.attrs["kind"] = kind
                f.attrs["object"] = obj
                h5.tag(f, f"nsp.{kind}")
                for key, value in {**provenance, **extra}.items():
                    f.attrs[key] = value
                yield f
                f.attrs[h5.DIGEST] = h5.metadata_digest(f)
            except BaseException:
                if f is not None:
                    f.close()
                sink.released = True       # HDF5 closed the file: the guard may close it (no ResourceWarning)
                raise
            f.close()
        seal(tmp)


def _digest(handle, heaps: list | None = None) -> tuple[str, int]:
    """SHA-256 and length of the bytes after the user block; the offsets of what looks like the start of an
    HDF5 global heap collection are added to ``heaps`` where given."""
    handle.seek(USERBLOCK)
    digest, size, tail = hashlib.sha256(), 0, b""
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        if heaps is not None:                   # the signature may span two chunks: the last 7 bytes kept
            data, at = tail + chunk, 0
            while (at := data.find(_HEAP, at)) >= 0:
                heaps.append(USERBLOCK + size - len(tail) + at)
                at += 1
            tail = data[-7:]
        size += len(chunk)
    return digest.hexdigest(), size


#: the start of an HDF5 global heap collection (signature, version 1, 3 reserved bytes)
_HEAP = b"GCOL\x01\x00\x00\x00"


def _check_heaps(handle, offsets: list, path) -> None:
    """HDF5's global heap (the variable-length strings) has no checksum, and HDF5 trusts its object sizes: a
    damaged one, in a file sealed again, can make HDF5 loop forever or crash. Each collection is walked
    first: its objects, each numbered once, must end at its end (the last one the free space, number 0, unless
    less than an object header is left)."""
    end_of_file = handle.seek(0, 2)
    for start in offsets:
        handle.seek(start + 8)
        length = int.from_bytes(handle.read(8), "little")
        if not 4096 <= length <= end_of_file - start:
            continue                                    # not a collection: data that happen to look like one
        handle.seek(start)
        heap, at, seen = handle.read(length), 16, set()
        while at + 16 <= length:
            number, size = int.from_bytes(heap[at:at + 2], "little"), int.from_bytes(heap[at + 8:at + 16], "little")
            if number == 0:
                at = at + size if size >= 16 else -1
                break
            if number in seen:
                break
            seen.add(number)
            at += 16 + (size + 7) // 8 * 8
        if not 0 <= length - at < 16:                  # (less than an object header left: no free-space object)
            raise StorageError(f"{path}: damaged: the HDF5 global heap (variable-length strings) at byte {start} "
                               f"is not consistent (its objects do not fill it)")


def seal(path, digest: bool = False) -> None:
    """Write the SHA-256 of an nsp file's HDF5 bytes into its user block.

    nsp seals every file it writes; call this after changing an nsp file with
    another program (h5py, say), or reading it refuses it as damaged. Data
    written with h5py carry new checksums; a change of names, shapes, types,
    attributes or strings is refused by the metadata digest unless
    ``digest=True``, which writes the digest of the file as it is now.
    """
    if digest:
        with h5py.File(path, "r+", locking=False) as f:
            f.attrs[h5.DIGEST] = h5.metadata_digest(f)
    with open(path, "r+b") as handle:
        head = handle.read(USERBLOCK)
        if len(head) < USERBLOCK or head[:8] == b"\x89HDF\r\n\x1a\n":
            raise StorageError(f"{path}: has no user block to hold the seal (not written by nsp {FORMAT_VERSION} "
                               f"or later)")
        heaps = []
        digest, size = _digest(handle, heaps)
        line = f"{digest} {size} heaps {','.join(map(str, _collections(handle, heaps))) or '-'}\n".encode()
        if len(SEAL) + len(line) > USERBLOCK:         # too many to list: readers look for them
            line = f"{digest} {size}\n".encode()
        handle.seek(0)
        handle.write(SEAL + line.ljust(USERBLOCK - len(SEAL), b"\0"))


def _collections(handle, offsets: list) -> list:
    """Those of ``offsets`` where a global heap collection may start (a plausible length follows)."""
    end_of_file = handle.seek(0, 2)
    out = []
    for start in offsets:
        handle.seek(start + 8)
        if 4096 <= int.from_bytes(handle.read(8), "little") <= end_of_file - start:
            out.append(start)
    return out


def _check_seal(path) -> bool:
    """True if ``path`` carries a seal that matches its bytes; False if it has none; StorageError if it does
    not match."""
    with open(path, "rb") as handle:
        head = handle.read(USERBLOCK)
        if not head.startswith(SEAL):
            return False
        fields = head[len(SEAL):].split(b"\n", 1)[0].split(b" ")
        listed = len(fields) == 4 and fields[2] == b"heaps"
        try:
            expected, length = fields[0].decode(), int(fields[1])
            heaps = [] if not listed or fields[3] == b"-" else [int(o) for o in fields[3].split(b",")]
        except (ValueError, IndexError, UnicodeDecodeError):
            fields = ()
        if len(fields) != 2 and not listed:
            raise StorageError(f"{path}: damaged (its seal is unreadable)")
        digest, size = _digest(handle, None if listed else heaps)   # without the list: every collection looked for
    if size != length:
        how = "truncated?" if size < length else "changed by another program? nsp.storage.seal(path) accepts that"
        raise StorageError(f"{path}: damaged: {USERBLOCK + size} bytes where nsp wrote {USERBLOCK + length} ({how})")
    if digest != expected:
        raise StorageError(f"{path}: damaged: its content does not match the SHA-256 nsp sealed it with (a "
                           f"disk or copy error, or changed by another program; nsp.storage.seal(path) accepts "
                           f"such a change)")
    with open(path, "rb") as handle:
        _check_heaps(handle, heaps, path)
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
    """:func:`open_file` for readers: whatever goes wrong while reading is a StorageError naming the file.
    When the block has read what it needs (its structural checks passed), the metadata digest is checked
    (:func:`check_digest`)."""
    with open_file(path, kinds) as f:
        try:
            yield f
            check_digest(f, path)
        except StorageError:
            raise
        except _READ_FAILURES as err:
            raise _damaged(path, err) from err


def check_digest(f: h5py.File, path) -> None:
    """StorageError unless the file's metadata match its ``nsp-digest`` attribute (files without one, written
    before it, pass)."""
    if h5.DIGEST in f.attrs:
        if str(f.attrs[h5.DIGEST]) != h5.metadata_digest(f):
            raise StorageError(f"{path}: damaged: the names, shapes, types, attributes or strings of its groups "
                               f"and datasets do not match the SHA-256 nsp wrote in its {h5.DIGEST} attribute "
                               f"(changed by another program? nsp.storage.seal(path, digest=True) accepts such a "
                               f"change)")
