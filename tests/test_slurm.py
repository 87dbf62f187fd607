"""The pipeline through a real single-node SLURM cluster (scripts/slurm-up.sh), against a local run.

Runs only with NSP_TEST_SLURM=1 (`make test-slurm`, which .ci/run calls after the unit tests):
it installs and starts daemons. Where SLURM cannot run, the tests are skipped with the reason.
"""

import os
import re
import shutil
import subprocess

import pytest
from test_pipeline import REPO, TINY, digests, run, workspace

pytestmark = pytest.mark.skipif(os.environ.get("NSP_TEST_SLURM") != "1",
                                reason="needs a live SLURM cluster: run `make test-slurm` (NSP_TEST_SLURM=1)")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/rule_([a-z_]+)/")
SLURM_ARGS = ("--profile", str(REPO / "workflow" / "profiles" / "slurm"), "--slurm-no-account",
              "--default-resources", "slurm_partition=test", "--seconds-between-status-checks", "2")


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run([str(REPO / "scripts" / "slurm-up.sh")], capture_output=True, text=True)
    print(up.stderr.strip())
    if up.returncode != 0:                  # 3: SLURM cannot run here; other codes: the script broke
        subprocess.run([str(REPO / "scripts" / "slurm-down.sh")], capture_output=True)
        lines = up.stderr.strip().splitlines() or [f"slurm-up.sh exited with {up.returncode}"]
        pytest.skip(f"SLURM cluster unavailable: {lines[-1]}")
    yield
    down = subprocess.run([str(REPO / "scripts" / "slurm-down.sh")], capture_output=True, text=True)
    print(down.stderr.strip())


def submitted(output: str) -> list[tuple[str, str]]:
    """(rule, SLURM job id) of every job Snakemake submitted."""
    return [(rule, jobid) for _, jobid, rule in SUBMITTED.findall(output)]


def test_tiny_config_through_slurm_is_byte_identical_to_a_local_run(tmp_path, cluster):
    local = workspace(tmp_path, "local", TINY)
    run(local, "--cores", "2", "--quiet")
    remote = workspace(tmp_path, "slurm", TINY)
    out = run(remote, *SLURM_ARGS)
    jobs = submitted(out.stdout + out.stderr)
    planned = run(workspace(tmp_path, "plan", TINY), "-n", "--quiet", "rules")
    counts = {line.split()[0]: int(line.split()[1]) for line in (planned.stdout + planned.stderr).splitlines()
              if len(line.split()) == 2 and line.split()[1].isdigit() and line.split()[0] != "total"}
    expected = sum(n for rule, n in counts.items() if rule != "all")  # local
    print(f"\nSLURM job ids of the {len(jobs)} pipeline jobs:")
    for rule, jobid in jobs:
        print(f"  {jobid:>6}  {rule}")
    assert len(jobs) == expected and len({j for _, j in jobs}) == expected
    a, b = digests(local), digests(remote)
    same = sorted(k for k in a if a[k] == b.get(k))
    print(f"byte-identical to the local run: {len(same)} of {len(a)} result files")
    assert a == b and len(a) >= 45


def test_failed_job_is_reported_and_rerun_completes_only_the_missing_work(tmp_path, cluster):
    config = {**TINY, "shard_size": 60, "transforms": {"standard": {}}, "figures": ["compaction"],
              "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1},
                         "ext": {"architecture": "digits_mlp", "dataset": "digits", "weights": "ext.npz"}}}
    folder = workspace(tmp_path, "fail", config)
    (folder / "ext.npz").write_bytes(b"not a weights file")          # the injected failure
    out = run(folder, *SLURM_ARGS, "--keep-going", check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert re.search(r"Error in rule extract_graph:\s+message: SLURM-job '\d+' failed", text)
    first = submitted(text)
    print(f"\nfirst run: {len(first)} SLURM jobs, failed: extract_graph and collect_activations of ext")
    assert (folder / "results" / "summary" / "mlp" / "digits" / "summary.json").is_file()
    assert not (folder / "results" / "models" / "ext" / "graph.h5").exists()
    shutil.copy(folder / "results" / "models" / "mlp" / "weights.npz", folder / "ext.npz")   # repaired
    before = digests(folder)
    again = run(folder, *SLURM_ARGS)
    second = submitted(again.stdout + again.stderr)
    print("rerun: " + ", ".join(f"{rule} ({jobid})" for rule, jobid in second))
    assert sorted(rule for rule, _ in second) == sorted(                 # the jobs of ext, the figure, the gallery
        ["collect_activations", "compute_transformer", "extract_graph", "paper_all_models", "paper_gallery",
         "summarize", "transform", "visualize", "visualize_spectrum", "class_means", "class_means"])
    # (no causes jobs: TINY's causes.transforms are sem and laplacian, and this config runs standard only)
    after = digests(folder)
    assert all(after[k] == v for k, v in before.items() if "/mlp/" in k or k.startswith("models/mlp"))
