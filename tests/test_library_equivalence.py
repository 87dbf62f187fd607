"""Library replacements give the results of the hand-written code they replaced.

helmert (scipy.linalg.helmert), the Laplacian (scipy.sparse.csgraph.laplacian),
channel groups (connected components instead of a union-find), config defaults
(one validation pass), and figures that leave matplotlib's backend and the
environment alone.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import nsp
from nsp.graph import symmetry
from nsp.graph.symmetry import channel_groups, helmert
from nsp.pipeline import config
from nsp.transforms.laplacian import laplacian
from nsp.zoo import MnistNet, ToyNet


# --- helmert -----------------------------------------------------------------------------------

def helmert_by_formula(c):
    """Column j - 1: ones on rows :j, -j on row j, zeros below, divided by sqrt(j (j + 1))."""
    h = np.zeros((c, c - 1))
    for j in range(1, c):
        for row in range(j):
            h[row, j - 1] = 1.0
        h[j, j - 1] = -float(j)
        h[:, j - 1] /= np.sqrt(j * (j + 1.0))
    return h


@pytest.mark.parametrize("c", range(2, 21))
def test_helmert_matches_the_formula(c):
    h = helmert(c)
    assert h.shape == (c, c - 1) and h.dtype == np.float64
    np.testing.assert_array_equal(h, helmert_by_formula(c))
    np.testing.assert_allclose(h.T @ h, np.eye(c - 1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.ones(c) @ h, np.zeros(c - 1), rtol=0, atol=1e-14)


# --- Laplacian ---------------------------------------------------------------------------------

def random_dag(rng, n, density):
    """Edges i -> j with i < j only (a DAG), as a sparse adjacency."""
    dense = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if rng.random() < density:
                dense[i, j] = 1.0
    return sp.csr_matrix(dense)


def laplacian_by_loops(adjacency):
    a = adjacency.toarray()
    n = a.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j and (a[i, j] != 0 or a[j, i] != 0):
                out[i, j] = -1.0
                out[i, i] += 1.0
    return out


@pytest.mark.parametrize("seed, n, density", [(0, 1, 0.5), (1, 6, 0.5), (2, 12, 0.3), (3, 20, 0.15), (4, 25, 0.05)])
def test_laplacian_is_degree_minus_adjacency(seed, n, density):
    adjacency = random_dag(np.random.default_rng(seed), n, density)
    lap = laplacian(adjacency)
    expected = laplacian_by_loops(adjacency)
    assert isinstance(lap, sp.csr_matrix) and lap.dtype == np.float64 and lap.has_sorted_indices
    assert np.array_equal(lap.toarray(), expected)
    assert np.all(lap.data != 0) and lap.nnz == np.count_nonzero(expected)        # no stored zeros


def test_laplacian_ignores_weights_directions_and_self_loops():
    adjacency = sp.csr_matrix(np.array([[2.0, -3.0, 0.0, 0.0], [0.5, 0.0, 1.0, 0.0],
                                        [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 7.0]]))
    lap = laplacian(adjacency)
    assert np.array_equal(lap.toarray(), laplacian_by_loops(adjacency))
    assert lap.nnz == 7                                                            # node 3 is isolated


# --- channel groups ----------------------------------------------------------------------------

def core_of(net, shape, trace="children", INCL=True):
    torch.manual_seed(0)
    return nsp.NNGraph(nsp.Activations(net, torch.randn(shape), trace=trace), INCL=INCL).core


def channel_groups_by_union_find(core):
    """Union-find over layers (root: the smallest layer); groups ordered by their smallest layer."""
    channels = symmetry._candidate_channels(core)
    root = list(range(core.n_layers))

    def find(x):
        while root[x] != x:
            x = root[x]
        return x

    adjacency, off = core.adjacency, core.offsets
    for layer in range(core.n_layers):
        for parent in core.parents[layer]:
            c = channels[layer]
            if c <= 1 or channels[parent] != c:
                continue
            block = adjacency[off[layer]:off[layer + 1], off[parent]:off[parent + 1]].toarray()
            m_out, m_in = block.shape[0] // c, block.shape[1] // c
            if all(i // m_out == j // m_in for i, j in zip(*np.nonzero(block))):
                a, b = find(layer), find(parent)
                root[max(a, b)] = min(a, b)
    members = {}
    for layer in range(core.n_layers):
        if channels[layer] > 1:
            members.setdefault(find(layer), []).append(layer)
    symmetric = sp.csr_matrix(adjacency + adjacency.T, dtype=bool)
    out = []
    for root_layer in sorted(members):
        layers = members[root_layer]
        c = channels[layers[0]]
        nodes = np.hstack([np.arange(off[l], off[l + 1]).reshape(c, -1) for l in layers])
        if symmetry._verify(symmetric, nodes):
            out.append((tuple(layers), nodes))
    return out


@pytest.mark.parametrize("net, shape", [(MnistNet, (1, 1, 28, 28)), (ToyNet, (1, 1, 4, 4))])
@pytest.mark.parametrize("trace", ["children", "ops"])
@pytest.mark.parametrize("INCL", [True, False])
def test_channel_groups_match_a_union_find(net, shape, trace, INCL):
    core = core_of(net(), shape, trace, INCL)
    found = channel_groups(core)
    expected = channel_groups_by_union_find(core)
    assert found and [g.layers for g in found] == [layers for layers, _ in expected]
    for group, (_, nodes) in zip(found, expected):
        assert group.nodes.dtype == nodes.dtype and np.array_equal(group.nodes, nodes)


# --- config defaults ---------------------------------------------------------------------------

MINIMAL = {
    "datasets": {"digits": {"source": "sklearn-digits"}},
    "models": {"a": {"architecture": "digits_mlp", "dataset": "digits"},
               "b": {"architecture": "digits_cnn", "dataset": "digits", "epochs": 2}},
    "transforms": {"standard": {}, "laplacian": {}},
}


def test_config_defaults_are_filled_in_one_validation():
    cfg = config.validate(MINIMAL)
    assert {k: cfg[k] for k in ("results", "seed", "shard_size", "threads", "device", "figures")} == {
        "results": "results", "seed": 0, "shard_size": 500, "threads": 1, "device": "cpu",
        "figures": ["compaction", "magnitude", "energy"]}
    model_defaults = {"options": {}, "weights": None, "input_shape": None, "trace": "children", "epochs": 8,
                      "batch_size": 64, "learning_rate": 0.003, "transforms": None, "layers": None}
    assert cfg["models"]["a"] == {"architecture": "digits_mlp", "dataset": "digits", **model_defaults}
    assert cfg["models"]["b"] == {"architecture": "digits_cnn", "dataset": "digits", **model_defaults, "epochs": 2}
    assert cfg["datasets"]["digits"] == {"source": "sklearn-digits", "root": "data", "inputs_key": "inputs",
                                         "labels_key": "labels", "limit": None, "scale": 1.0, "mean": 0.0,
                                         "std": 1.0, "test_every": 5}
    assert cfg["transforms"] == {"standard": {"method": "auto", "precision": "exact"}, "laplacian": {"k": None}}
    # entries created from a default get their own nested defaults
    assert cfg["visualize"] == {"label": 1, "scale": "layerscale", "cmap": "viridis", "layers": None, "keep": 0.01}
    assert cfg["summary"] == {"sparsity_threshold": 0.001}
    # defaults are copies, the input is untouched, and validation is a fixed point
    cfg["models"]["a"]["options"]["width"] = 3
    assert cfg["models"]["b"]["options"] == {} and "epochs" not in MINIMAL["models"]["a"]
    assert config.validate(config.validate(MINIMAL)) == config.validate(MINIMAL)


def test_config_reports_the_first_error_by_key():
    bad = {**MINIMAL, "shard_size": 0, "models": {"a": {"dataset": "digits", "epochs": -1, "trace": "graph"}}}
    with pytest.raises(config.ConfigError, match=r"^config key models\.a\.epochs: -1 is less than the minimum of 0$"):
        config.validate(bad)


# --- matplotlib backend and environment ----------------------------------------------------------

IMPORT_CHECK = (
    "import matplotlib; b = matplotlib.get_backend(); import os; env = dict(os.environ); "
    "import nsp, nsp.plotting.figures, nsp.visualizer; "
    "assert b == 'svg', b; assert matplotlib.get_backend() == b, matplotlib.get_backend(); "
    "changed = sorted(set(os.environ.items()) ^ set(env.items())); assert dict(os.environ) == env, changed; "
    "print('ok')"
)


def test_import_leaves_backend_and_environment_alone():
    env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    env["MPLBACKEND"] = "svg"
    run = subprocess.run([sys.executable, "-c", IMPORT_CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-2000:]
