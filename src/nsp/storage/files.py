"""Writing output files safely: a temporary name in the target folder, renamed when complete."""

from __future__ import annotations

import errno
import io
import os
import re
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from nsp.errors import OutputError

#: errors that mean the file system took no more data: the disk is full, the quota used up, or the file
#: larger than the process may write (``ulimit -f``)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
#: errors of writing an output that the user can fix: the above, no permission, a read-only file system, a
#: name too long, a file where a folder should be or a folder where the file should be
NOT_WRITABLE = DISK_FULL + (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR,
                            errno.EEXIST, errno.EISDIR)


@contextmanager
def atomic_output(path):
    """Yield a temporary path next to ``path``; move it to ``path`` if the block succeeds, else delete it.

    Missing folders are created. Readers never see a half-written file. Temporary files of ``path`` that
    killed writers left behind are removed first (:func:`remove_stale`). An output the file system refuses
    (:data:`NOT_WRITABLE`: a full disk, quota or file size limit, no permission, a read-only file system, a
    name too long, a file where a folder should be, a folder at ``path``) is an :class:`OutputError` (an
    ``OSError`` with the same ``errno``) naming ``path`` (and the file in the way of its folder).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            where = "" if blocker == path.parent else f" ({blocker})"
            raise OutputError(err.errno, f"{path}: not written: cannot make the folder {path.parent}: a file is "
                                         f"in the way{where}") from err
        raise _refused(path, err, f"cannot make the folder {path.parent}: ") from err
    remove_stale(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}.{socket.gethostname()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass                                # a folder that refuses writes may refuse this too
        raise _refused(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _refused(path: Path, err: OSError, what: str = "") -> OSError:
    """``err`` as an :class:`OutputError` naming ``path`` where the user can fix it; else ``err`` itself."""
    if isinstance(err, OutputError) or err.errno not in NOT_WRITABLE:
        return err
    reason = {errno.EEXIST: "a file is in the way", errno.ENOTDIR: "a file is in the way",
              errno.EISDIR: "a folder of that name is in the way"}.get(err.errno) or os.strerror(err.errno)
    return OutputError(err.errno, f"{path}: not written: {what}{reason}")


def remove_stale(path) -> None:
    """Delete the temporary files of ``path`` whose writer is gone (a job killed with SIGKILL leaves them).

    A temporary file is named ``.<name>.tmp<pid>-<thread>.<host>``. One is stale when it was written on
    this host (a process id means nothing on another host of a cluster file system) and no process with
    its id runs here. A live id, even one the system has since given to another process, keeps the file:
    the rule never deletes the file of a running writer, at worst it leaves a stale one. Temporary files
    of other hosts, and those without a host (older nsp), are left alone; so are other outputs' files.
    Hosts are told apart by name: two containers with one host name but separate process ids could
    delete each other's temporary file only while both write the same output, a race in any case.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp(\d+)-\d+\.(.+)")
    host = socket.gethostname()
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in names:
        match = pattern.fullmatch(name)
        if match and match[2] == host and not _alive(int(match[1])):
            try:
                (path.parent / name).unlink(missing_ok=True)
            except OSError:                 # another writer removed it, or no right to: not our problem
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):   # another user's process; an id out of range: kept all the same
        pass
    return True


class WriteGuard(io.FileIO):
    """The temporary file of an HDF5 output, for h5py to write through (``h5py.File(guard, "w")``).

    HDF5 cannot recover from a write that fails (a full disk): it leaves objects half closed, often
    inside the garbage collection of an h5py object where the error is only printed, and closing them
    again, at the latest when Python exits, crashes the process (HDF5 2.0, h5py 3.16; h5py issues 914
    and 2160, HDF5 issue 6601). This file never
    reports a failed write to HDF5: it keeps the first ``OSError`` and drops what follows, and leaving
    the ``with`` block raises that error, after h5py has closed the file. Reads past the end give zeros,
    as from HDF5's own driver. The writer learns of the error when it closes the file, not at once.
    """

    error = None
    #: set once HDF5 has closed the file: on an error path too, leaving the ``with`` block then closes it
    released = False

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        if self.error is None:
            try:
                while view:
                    view = view[super().write(view):]
            except OSError as err:
                self.error = err
        return size

    def truncate(self, size=None):
        if self.error is None:
            try:
                return super().truncate(size)
            except OSError as err:
                self.error = err
        return size

    def read(self, size=-1) -> bytes:
        data = super().read(size)
        return data + bytes(size - len(data)) if size > len(data) else data

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None or self.released:
            try:
                self.close()
            except OSError as err:          # a network file system may report a full disk only here
                self.error = self.error or err
        # else, unless the writer saw h5py's close complete (``released``), that close may have been cut
        # short (SIGTERM) and HDF5 still hold the file: it is closed with HDF5's last reference to it, so
        # that what HDF5 writes until then does not fail
        if self.error is not None:
            raise self.error


def writing_caller(frame):
    """The frame that called HDF5 if ``frame`` runs inside a :class:`WriteGuard` method, else None.

    A signal handler that raises there (SIGTERM turned into ``SystemExit``) makes HDF5 see a failed
    write; it should raise in that caller, once HDF5 has returned.
    """
    caller = None
    while frame is not None:
        if frame.f_code in _GUARD_CODES:
            caller = frame.f_back
        frame = frame.f_back
    return caller


_GUARD_CODES = {WriteGuard.write.__code__, WriteGuard.truncate.__code__, WriteGuard.read.__code__}
