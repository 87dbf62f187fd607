"""One results folder, one config at a time: a workflow run holds the folder's lock, and another run may
plan or run beside it with the same config but not rewrite the config parts with another one."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from nsp.errors import ConfigError
from nsp.pipeline import config as nsp_config

BASE = {"datasets": {"digits": {"source": "sklearn-digits", "limit": 8}},
        "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits"}},
        "transforms": {"standard": {}}}

HOLDER = textwrap.dedent("""
    import sys, time
    from nsp.pipeline import config
    config.sync_parts(config.validate({**%r, "seed": 0}), sys.argv[1])
    print("holding", flush=True)
    time.sleep(600)
""") % (BASE,)


def parts(results):
    return {p.relative_to(results): p.read_bytes() for p in sorted(results.rglob("*.yaml"))}


@pytest.fixture
def holder(tmp_path):
    """A process that wrote the parts of the config with seed 0 into tmp_path/results and holds its lock."""
    results = tmp_path / "results"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(results)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "holding\n"
        yield results, process
    finally:
        process.kill()
        process.wait()


def test_another_config_is_refused_while_a_run_holds_the_results_folder_and_accepted_after_it_dies(holder):
    results, process = holder
    before = parts(results)
    assert len(before) == 1 + len(nsp_config.part_names(nsp_config.validate(dict(BASE))))
    # the same config beside the running one: nothing to write, nothing refused
    assert nsp_config.sync_parts(nsp_config.validate({**BASE, "seed": 0}), results) == []
    # another config: refused, every part as it was
    with pytest.raises(ConfigError, match=rf"^results folder {results} is in use by another nsp workflow run "
                                          r"with another config \(.*config.resolved.yaml differs\); wait for that "
                                          r"run to end, or set config key results to another folder$"):
        nsp_config.sync_parts(nsp_config.validate({**BASE, "seed": 7}), results)
    assert parts(results) == before
    # the holder killed outright (SIGKILL): the kernel releases its lock, the new config is written
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    written = nsp_config.sync_parts(nsp_config.validate({**BASE, "seed": 7}), results)
    assert written == [str(results / "config.resolved.yaml"), str(results / "config" / "train" / "mlp.yaml"),
                       str(results / "config" / "causes.yaml")]         # the stages that read the seed
    assert nsp_config.load(results / "config.resolved.yaml")["seed"] == 7


def test_a_job_process_does_not_take_the_lock(tmp_path):
    """Jobs that parse the workflow again (hold=False) find the parts as the main process wrote them."""
    results = tmp_path / "results"
    config = nsp_config.validate(dict(BASE))
    assert nsp_config.sync_parts(config, results, hold=False) != []
    assert nsp_config.sync_parts(config, results, hold=False) == []
    assert not (results / ".nsp.lock").exists()
