"""One config per results folder at a time: an advisory lock on ``<results>/.nsp.lock``.

Snakemake locks a run against other runs of the same working folder only; two working folders whose
configs name one ``results:`` folder would otherwise overwrite each other's config parts while their jobs
read them. The workflow's main process takes this lock when it reads the config and holds it until it
exits (the kernel releases it even after SIGKILL); another run may still plan or run alongside it with
the same config, but not rewrite the parts with another one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from nsp.storage.files import atomic_output

NAME = ".nsp.lock"
_held: dict[str, int] = {}


def claim(results) -> bool:
    """Take the lock of ``results`` for the rest of this process; True when this process holds it (or the
    file system has no locks, as some network file systems), False when another process does."""
    path = Path(results).resolve() / NAME
    if str(path) in _held:
        return True
    if not path.exists():
        with atomic_output(path) as tmp:            # creates the folder, or names what is in the way
            tmp.write_bytes(b"")
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    except OSError:                                 # no locking here: nothing to coordinate with
        os.close(descriptor)
        return True
    _held[str(path)] = descriptor
    return True
