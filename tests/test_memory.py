"""Memory budgets: a step that cannot fit is refused with the figure before (or while) it allocates."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import nsp
from nsp import memory
from nsp.transforms.standard import StandardTransform, explicit_memory
from nsp.transforms.zeta import zeta_mobius


def _dense_mlp_core(width=24, depth=5):
    torch.manual_seed(0)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.Tanh()]
    net = nn.Sequential(*layers).eval()
    return nsp.GraphCore.from_activations(nsp.Activations(net, torch.randn(1, width), trace="ops"))


def test_budget_takes_the_smallest_limit(monkeypatch):
    monkeypatch.setenv("NSP_MEMORY_MB", "100")
    assert memory.budget() == 100 << 20
    monkeypatch.setenv("NSP_MEMORY_MB", "1")
    assert memory.budget() == 64 << 20                      # never below 64 MiB
    monkeypatch.setenv("NSP_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="NSP_MEMORY_MB must be a number of megabytes; got 'lots'"):
        memory.budget()


def test_explicit_memory_counts_every_copy():
    # 10 nodes, 20 edges, 40 closure entries, int32 indices: 2*20*5 + 40*(2*5 + 3*12) + 80
    assert explicit_memory(10, 20, 40) == 200 + 40 * 46 + 80
    assert explicit_memory(2**31, 0, 0) == 8 * 2**31              # int64 indices beyond 2^31 entries


def test_explicit_standard_transform_is_refused_up_front(monkeypatch):
    core = _dense_mlp_core()
    edges = sum(block.nnz for blocks in core.blocks for _, block in blocks)
    need = explicit_memory(core.n_nodes, edges, core.n_nodes + edges)
    monkeypatch.setattr(memory, "budget", lambda: need - 1)
    with pytest.raises(memory.MemoryBudgetError,
                       match=rf"graph of {core.n_nodes:,} nodes and {edges:,} edges needs at least .* GB.*"
                             r"method='explicit' was asked for.*Alternatives: .*sem transform"):
        StandardTransform(method="explicit").fit(core)
    monkeypatch.setattr(memory, "budget", lambda: need)        # exactly the lower bound: it passes up front ...
    z, _ = zeta_mobius(core.adjacency, core.offsets, mobius=False)
    final = explicit_memory(core.n_nodes, edges, z.nnz)
    assert final > need                                        # ... but the closure grows beyond it on the way
    with pytest.raises(memory.MemoryBudgetError, match=r"closure of [\d,]+\+ entries after layer \d+ '"):
        StandardTransform(method="explicit").fit(core)
    monkeypatch.setattr(memory, "budget", lambda: final)       # enough: the same matrices as without a check
    fitted = StandardTransform(method="explicit").fit(core)
    assert (fitted.zeta != z).nnz == 0


def test_the_cli_refuses_with_one_line(tmp_path, monkeypatch, capsys):
    core = _dense_mlp_core()
    nsp.storage.write_graph(tmp_path / "g.h5", core)
    monkeypatch.setattr(memory, "_available", lambda: 1 << 20)   # the machine has almost nothing free
    monkeypatch.setattr(memory, "budget", lambda: 1 << 16)
    from nsp.pipeline import cli
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "datasets": {"digits": {"source": "sklearn-digits"}},
        "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits"}},
        "transforms": {"standard": {"method": "explicit"}}}))
    code = cli.main(["compute-transformer", "--config", str(tmp_path / "c.yaml"), "--graph", str(tmp_path / "g.h5"),
                     "--transform", "standard", "--out", str(tmp_path / "t.h5"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "nsp compute-transformer: error: the explicit standard transform " in err
    assert "this process may use 0.0 GB" in err and not (tmp_path / "t.h5").exists()


def test_laplacian_memory_figures_and_refusal(monkeypatch):
    from nsp.transforms.laplacian import LaplacianTransform, laplacian_memory
    # 100 nodes, 300 edges, int32 indices: adjacency 300*5, Laplacian 700*12, dense 2 * 8 * 100^2
    assert laplacian_memory(100, 300, 10) == 1500 + 8400 + 160000
    assert laplacian_memory(100, 300, None) == 1500 + 8400 + 240000
    assert laplacian_memory(100, 300, None, solver=False) == 1500 + 8400
    # sparse: twice the sparse part and six blocks of k + max(8, k / 4) = 50 vectors
    assert laplacian_memory(30000, 90000, 40, "sparse") == 2 * (90000 * 5 + 210000 * 12) + 6 * 8 * 30000 * 50
    core = _dense_mlp_core()
    monkeypatch.setattr(memory, "budget", lambda: 1 << 16)
    with pytest.raises(memory.MemoryBudgetError, match=rf"Laplacian eigenbasis \(8 of {core.n_nodes:,} eigenvectors\)"
                                                      r".* needs at least 0\.0 GB.*smaller k \(transforms\.laplacian\.k\)"):
        LaplacianTransform(k=8).fit(core)
    monkeypatch.setattr(memory, "budget", lambda: 1 << 30)
    assert LaplacianTransform(k=8).fit(core).eigenvectors.shape == (core.n_nodes, 8)


@pytest.mark.parametrize("kind", ["sem", "standard"])
def test_the_transform_stage_streams_batches_with_the_same_bytes(tmp_path, monkeypatch, kind):
    from nsp import storage
    from nsp.pipeline import batching, cli
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 4)).eval()
    x = torch.randn(7, 1, 6, 6)
    acts = nsp.Activations(net, x[:1], trace="ops")
    core = nsp.GraphCore.from_activations(acts)
    recording = nsp.record(net, x, "ops")
    values = recording.values()
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch(
        "activations", values, recording.table, sample_ids=np.arange(7), labels=np.arange(7) % 2,
        weights_sha256=core.weights_sha256))
    transform = nsp.make_transform(kind).fit(core)
    storage.write_transformer(tmp_path / "t.h5", transform, weights=core.weights_sha256)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "datasets": {"digits": {"source": "sklearn-digits"}},
        "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits"}}, "transforms": {kind: {}}}))
    args = ["transform", "--config", str(tmp_path / "c.yaml"), "--activations", str(tmp_path / "a.h5"),
            "--transformer", str(tmp_path / "t.h5"), "--quiet", "--out"]
    out = tmp_path / "s.h5"                  # one name: the command line is part of the file's provenance
    assert cli.main(args + [str(out)]) == 0
    whole = out.read_bytes()
    monkeypatch.setattr(batching, "TRANSFORM_BYTES", 2 * 8 * core.n_nodes)     # batches of two samples
    assert cli.main(args + [str(out)]) == 0
    parts = storage.read_signals(out)
    assert np.array_equal(parts.values, transform.transform(values.astype(np.float64)))
    assert np.array_equal(parts.labels, np.arange(7) % 2) and np.array_equal(parts.sample_ids, np.arange(7))
    assert out.read_bytes() == whole


def test_the_cgroup_limit_is_read_from_the_group_or_the_namespace_root(tmp_path, monkeypatch):
    files = {"/proc/self/cgroup": "4:memory:/job_7\n0::/\n",
             "/sys/fs/cgroup/memory/memory.limit_in_bytes": str(3 << 30),
             "/sys/fs/cgroup/memory/memory.usage_in_bytes": str(1 << 30)}
    monkeypatch.setattr(memory, "_read", files.get)
    assert memory._cgroup_room() == 2 << 30                    # /job_7 is hidden: the root's figures
    files["/sys/fs/cgroup/memory/job_7/memory.limit_in_bytes"] = str(5 << 30)
    assert memory._cgroup_room() == 5 << 30                    # the group's own limit, no usage file
    files.update({"/proc/self/cgroup": "0::/slurm/job_9\n", "/sys/fs/cgroup/slurm/job_9/memory.max": "max"})
    assert memory._cgroup_room() is None                       # cgroup v2 without a limit
    files["/sys/fs/cgroup/slurm/job_9/memory.max"] = str(4 << 30)
    files["/sys/fs/cgroup/slurm/job_9/memory.current"] = str(3 << 30)
    assert memory._cgroup_room() == 1 << 30


def test_collect_activations_takes_fewer_samples_per_pass_for_large_networks():
    from nsp.pipeline import batching
    assert batching.collect_batch(100_000) == batching.BATCH == 256     # the default experiment's nets: unchanged
    assert batching.collect_batch(12_208_706) == (1 << 29) // (8 * 12_208_706) == 5    # ViT-tiny, 4x4 patches
    assert batching.collect_batch(10**10) == 1
