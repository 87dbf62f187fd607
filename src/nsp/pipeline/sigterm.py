"""SIGTERM (a cancelled job, a scheduler's time limit) ends a stage as ``SystemExit(143)``, so that the
``atomic_output`` blocks it is in remove their temporary files on the way out (a job killed outright leaves
its temporary file to the next writer of that output, :func:`nsp.storage.files.remove_stale`).

A plain handler that raises is enough almost everywhere. Two places need more, because there Python or
HDF5 would swallow the exception and the stage would go on to write its output:

- code that Python runs for its own purposes: a ``__del__``, a weakref callback (h5py runs them after every
  HDF5 call), a C callback. An exception raised there is only printed ("Exception ignored in ...");
- HDF5 writing through :class:`nsp.storage.files.WriteGuard`: HDF5 would take the exception for a failed
  write and carry on.

In both the exception is raised again at the next line that the interrupted code runs, by tracing its frames
(as a debugger does); the first is detected by a ``sys.unraisablehook``, the second by looking at the frames
when the signal comes. A SIGTERM that comes while the first one unwinds (temporary files being removed,
HDF5 files closed) is only recorded, so that it cannot interrupt that cleanup.
"""

from __future__ import annotations

import signal
import sys

from nsp.storage.files import writing_caller


def exit_on_sigterm() -> dict:
    """Install the handler; returns its state: ``signal`` is set once SIGTERM came (the command line then
    exits with ``128 + signal`` even where code caught the ``SystemExit``), ``unwinding`` while the exit
    is on its way out."""
    state = {"signal": 0, "unwinding": False}
    armed = []                                   # frames that raise at their next line
    previous_hook, previous_trace = sys.unraisablehook, sys.gettrace()

    def leave(*_):
        for frame in armed:
            frame.f_trace = None
        if armed:
            armed.clear()
            sys.settrace(previous_trace)
        state["unwinding"] = True
        sys.exit(128 + state["signal"])

    def leave_at_next_line(frame):
        while frame is not None:
            frame.f_trace = leave
            armed.append(frame)
            frame = frame.f_back
        sys.settrace(lambda *_: None)           # tracing on; frames that start from now on are not traced

    def on_sigterm(signum, frame):
        state["signal"] = signum
        if state["unwinding"]:
            return
        caller = writing_caller(frame)
        if caller is None:
            leave()
        else:
            leave_at_next_line(caller)

    def on_unraisable(unraisable):
        if isinstance(unraisable.exc_value, SystemExit) and state["unwinding"]:
            state["unwinding"] = False          # swallowed: raise it again in the code that was interrupted
            leave_at_next_line(sys._getframe(1))
        else:
            previous_hook(unraisable)

    signal.signal(signal.SIGTERM, on_sigterm)
    sys.unraisablehook = on_unraisable
    return state
