"""Clean failure: stale temporary files, SIGTERM, a full disk."""

import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nsp.errors import NspError

from nsp.pipeline import cli
from nsp.pipeline.sigterm import exit_on_sigterm
from nsp.storage import SignalBatch, write_signals
from nsp.storage.files import WriteGuard, atomic_output, writing_caller
from nsp.tracing.table import LayerTable

HOST = socket.gethostname()
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def layers(width: int) -> LayerTable:
    return LayerTable.build(["x"], ["input"], [""], [""], [(width,)], [()])


@pytest.fixture
def start():
    """start(code): a Python child running ``code``, once it printed 'ready'; killed after the test."""
    children = []

    def start(code: str) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=ENV)
        children.append(child)
        line = child.stdout.readline()
        assert line == "ready\n", (line, child.stderr.read())
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.fixture
def sigterm_handler():
    """Restores the SIGTERM handler, unraisable hook and tracing that cli's handling changes in this process."""
    saved, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    yield
    signal.signal(signal.SIGTERM, saved)
    sys.unraisablehook = hook
    sys.settrace(None)


# --- 1. stale temporary files -----------------------------------------------------------------------------

def test_temporary_name_holds_process_thread_and_host(tmp_path):
    with atomic_output(tmp_path / "out.json") as tmp:
        assert tmp.name == f".out.json.tmp{os.getpid()}-{threading.get_ident()}.{HOST}"
        tmp.write_text("{}")
    assert (tmp_path / "out.json").read_text() == "{}"
    assert os.listdir(tmp_path) == ["out.json"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = dead_pid()
    stale = tmp_path / f".out.json.tmp{dead}-1.{HOST}"
    kept = [tmp_path / f".out.json.tmp{os.getpid()}-1.{HOST}",     # a live writer
            tmp_path / f".out.json.tmp{dead}-1.other-host.example",    # another host: its pid means nothing here
            tmp_path / f".out.json.tmp{dead}-1",                       # no host (older nsp): left alone
            tmp_path / f".other.json.tmp{dead}-1.{HOST}"]              # another output's
    for path in [stale, *kept]:
        path.write_text("partial")
    with atomic_output(tmp_path / "out.json") as tmp:
        tmp.write_text("{}")
    assert not stale.exists()
    assert all(path.exists() for path in kept)
    assert (tmp_path / "out.json").read_text() == "{}"


def test_temporary_left_by_a_killed_writer_goes_on_the_next_write(tmp_path, start):
    out = tmp_path / "out.json"
    child = start(f"""
        import time
        from nsp.storage.files import atomic_output
        with atomic_output({str(out)!r}) as tmp:
            tmp.write_text("partial")
            print("ready", flush=True)
            time.sleep(60)
    """)
    child.kill()
    child.wait()
    left = os.listdir(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".out.json.tmp{child.pid}-")
    with atomic_output(out) as tmp:
        tmp.write_text("{}")
    assert os.listdir(tmp_path) == ["out.json"]


# --- 2. SIGTERM ---------------------------------------------------------------------------------------------

STAGE = """
    import sys, time
    from nsp.pipeline import cli
    from nsp.storage.files import atomic_output
    OUT = {out!r}
{stage}
    cli.STAGES["demo"].function = stage
    sys.exit(cli.main(["demo"]))
"""


def run_stage(start, out: Path, stage: str) -> subprocess.Popen:
    return start(STAGE.format(out=str(out), stage=textwrap.indent(textwrap.dedent(stage), "    ")))


def test_sigterm_during_a_stage_exits_143_and_leaves_nothing(tmp_path, start):
    child = run_stage(start, tmp_path / "out.json", """
        def stage(args, cfg):
            with atomic_output(OUT) as tmp:
                tmp.write_text("partial")
                print("ready", flush=True)
                time.sleep(60)
    """)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 143
    assert os.listdir(tmp_path) == []


def test_sigterm_swallowed_in_a_finalizer_still_exits_143(tmp_path, start):
    # The signal arrives while Python runs a __del__: the SystemExit raised there is only printed
    # ("Exception ignored in ..."); before, the stage went on and wrote its output, and the job exited 0.
    child = run_stage(start, tmp_path / "out.json", """
        class Closing:
            def __del__(self):
                print("ready", flush=True)
                time.sleep(60)

        def stage(args, cfg):
            with atomic_output(OUT) as tmp:
                tmp.write_text("partial")
                Closing()
                time.sleep(3)
                tmp.write_text("complete")
    """)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 143
    assert os.listdir(tmp_path) == []
    assert "Exception ignored" not in child.stderr.read()


def test_sigterm_while_streaming_hdf5_exits_143_and_leaves_nothing(tmp_path, start):
    child = run_stage(start, tmp_path / "out.h5", """
        import numpy as np
        from nsp.storage import SignalWriter
        from nsp.tracing.table import LayerTable

        def stage(args, cfg):
            table = LayerTable.build(["x"], ["input"], [""], [""], [(2000,)], [()])
            rng = np.random.default_rng(0)
            with SignalWriter(OUT, "activations", table, 2000) as writer:
                for i in range(2000):               # 1 GB: the SIGTERM comes long before
                    writer.append(rng.standard_normal((64, 2000), dtype=np.float32))
                    if i == 3:
                        print("ready", flush=True)
    """)
    time.sleep(0.5)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == 143
    assert os.listdir(tmp_path) == []


def test_second_sigterm_while_unwinding_is_only_recorded(sigterm_handler):
    state = exit_on_sigterm()
    handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit:
        handler(signal.SIGTERM, sys._getframe())
    assert exit.value.code == 143
    assert handler(signal.SIGTERM, sys._getframe()) is None         # cleanup goes on
    assert state == {"signal": signal.SIGTERM, "unwinding": True}


def test_sigterm_caught_by_the_stage_still_exits_143(monkeypatch, sigterm_handler):
    def stage(args, cfg):
        try:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, sys._getframe())
        except BaseException:          # code that catches everything
            pass

    monkeypatch.setattr(cli.STAGES["demo"], "function", stage)
    assert cli.main(["demo"]) == 143


def test_sigterm_lost_in_a_finalizer_is_raised_again(monkeypatch, sigterm_handler):
    class Closing:
        def __del__(self):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, sys._getframe())

    finished = []

    def stage(args, cfg):
        Closing()                      # the SystemExit raised in __del__ is lost ...
        time.sleep(5)                  # ... and raised again at the next line of the stage
        finished.append(True)

    monkeypatch.setattr(cli.STAGES["demo"], "function", stage)
    with pytest.raises(SystemExit) as exit:
        cli.main(["demo"])
    assert exit.value.code == 143 and not finished


def test_sigterm_inside_hdf5_writes_waits_until_hdf5_returns(tmp_path, sigterm_handler):
    state = exit_on_sigterm()
    handler = signal.getsignal(signal.SIGTERM)
    test_frame, seen = sys._getframe(), []

    def signal_inside_the_guard(frame, event, arg):     # as if SIGTERM came as the guard calls write(2)
        if event == "c_call" and frame.f_code is WriteGuard.write.__code__ and not seen:
            seen.append(writing_caller(frame))
            handler(signal.SIGTERM, frame)                # no SystemExit into HDF5 ...

    assert writing_caller(test_frame) is None
    with WriteGuard(tmp_path / "t", "w") as guard:
        sys.setprofile(signal_inside_the_guard)
        try:
            with pytest.raises(SystemExit) as exit:
                written = guard.write(b"abc")
                pytest.fail(f"went on after writing {written} bytes")  # ... but once HDF5 has returned
        finally:
            sys.setprofile(None)
    assert seen == [test_frame] and exit.value.code == 143 and state["unwinding"]
    assert (tmp_path / "t").read_bytes() == b"abc"


# --- 3. a full disk -----------------------------------------------------------------------------------------

def test_full_disk_is_one_line_naming_the_output(tmp_path):
    out = tmp_path / "sub" / "out.json"
    with pytest.raises(OSError) as error:
        with atomic_output(out) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(error.value) == f"{out}: not written: No space left on device"
    assert error.value.errno == errno.ENOSPC
    assert os.listdir(out.parent) == []
    with pytest.raises(OSError, match=f"^{out}: not written: Permission denied$") as error:   # also one line
        with atomic_output(out):
            raise OSError(errno.EACCES, "denied")
    assert isinstance(error.value, NspError) and error.value.errno == errno.EACCES
    with pytest.raises(OSError, match=r"^\[Errno 5\] failing disk$") as error:    # others are left as they are
        with atomic_output(out):
            raise OSError(errno.EIO, "failing disk")
    assert not isinstance(error.value, NspError)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_write_guard_keeps_the_first_error_and_hides_it_from_hdf5(tmp_path):
    tmp = tmp_path / "t"
    tmp.symlink_to("/dev/full")                         # every write: ENOSPC
    with pytest.raises(OSError) as error:
        with WriteGuard(tmp, "w+") as guard:
            assert guard.write(bytearray(b"abc")) == 3   # what HDF5 sees: success
            assert guard.write(b"def") == 3
            assert guard.read(4) == bytes(4)            # past the end: zeros
    assert error.value.errno == errno.ENOSPC


SUBPROCESS_FULL = """
    import os, sys
    from contextlib import contextmanager
    import numpy as np
    from nsp.storage import container, SignalBatch, write_signals
    from nsp.tracing.table import LayerTable
    real = container.atomic_output

    @contextmanager
    def on_full_disk(path):                 # the temporary file is /dev/full: every write fails, ENOSPC
        with real(path) as tmp:
            os.symlink("/dev/full", tmp)
            yield tmp

    container.atomic_output = on_full_disk
    table = LayerTable.build(["x"], ["input"], [""], [""], [(4000,)], [()])
    values = np.random.default_rng(0).standard_normal((200, 4000)).astype(np.float32)
    try:
        write_signals({out!r}, SignalBatch("activations", values, table, labels=np.arange(200) % 10))
    except OSError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
"""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_full_disk_writing_hdf5_is_a_clean_error(tmp_path):
    out = tmp_path / "acts.h5"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SUBPROCESS_FULL.format(out=str(out)))],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]                     # not -11: no segmentation fault
    assert done.stderr == f"{out}: not written: No space left on device\n"
    assert os.listdir(tmp_path) == []


def limit_file_size(size: int):
    """For a child: writes past ``size`` bytes fail with EFBIG (SIGXFSZ ignored), as on a full disk ENOSPC."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


GRAPH = """
    import sys, torch, nsp
    from nsp.zoo import ToyNet
    torch.manual_seed(0)
    graph = nsp.NNGraph(nsp.Activations(ToyNet(), torch.zeros((1, 1, 4, 4))))
    graph.get_transformer("laplacian")
    try:
        nsp.OutputLoader.save(graph, {out!r})
    except OSError as err:
        print(err, file=sys.stderr)
        sys.exit(2)
"""


@pytest.mark.parametrize("size", [3000, 20000])     # the file is 65 kB
def test_file_size_limit_writing_a_graph_is_a_clean_error(tmp_path, size):
    out = tmp_path / "graph.h5"
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(GRAPH.format(out=str(out)))], capture_output=True,
                          text=True, env=ENV, preexec_fn=limit_file_size(size), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]         # not -11 (SIGSEGV) or -7 (SIGBUS)
    assert done.stderr == f"{out}: not written: File too large\n"
    assert os.listdir(tmp_path) == []


def test_file_size_limit_in_the_cli_is_one_line_and_no_crash(tmp_path):
    # the stage writes a 1.6 MB file under a 100 kB limit
    signals, out = tmp_path / "acts.h5", tmp_path / "out" / "means.h5"
    values = np.random.default_rng(0).standard_normal((40, 20000)).astype(np.float32)
    write_signals(signals, SignalBatch("activations", values, layers(20000), labels=np.arange(40) % 10))

    done = subprocess.run([sys.executable, "-m", "nsp.pipeline.cli", "class-means", "--signals", str(signals),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, env=ENV,
                          preexec_fn=limit_file_size(100_000), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr == f"nsp class-means: error: {out}: not written: File too large\n"
    assert os.listdir(out.parent) == []
