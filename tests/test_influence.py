"""The influence transform: the max-product closure against a brute-force enumeration of every path."""

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

import nsp
from nsp import storage
from nsp.errors import InputError, MemoryBudgetError
from nsp.graph.weights import weighted_adjacency


def all_paths(a: np.ndarray, x: int, y: int):
    """Every path from x to y of the DAG with edges a[target, source] > 0, as node lists."""
    if x == y:
        yield [x]
        return
    for p in np.flatnonzero(a[y]):
        for path in all_paths(a, x, int(p)):
            yield path + [y]


def brute_force(a: np.ndarray) -> np.ndarray:
    """W[y, x] = the largest product of edge weights over the paths from x to y (1 on the diagonal)."""
    n = a.shape[0]
    w = np.eye(n)
    for y, x in itertools.product(range(n), range(n)):
        if x < y:
            products = []
            for path in all_paths(a, x, y):
                product = 1.0
                for u, v in zip(path[:-1], path[1:]):       # from the source: the order the closure multiplies in
                    product = a[v, u] * product
                products.append(product)
            w[y, x] = max(products, default=0.0)
    return w


def random_dag(seed: int, n: int = 9, density: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.tril(rng.standard_normal((n, n)), -1) * (rng.random((n, n)) < density)


@pytest.mark.parametrize("seed", range(4))
def test_closure_is_the_strongest_path_product_exactly(seed):
    adjacency = random_dag(seed)
    a = np.abs(adjacency)
    t = nsp.InfluenceTransform().fit(sp.csr_matrix(adjacency))
    assert t.closure.toarray().tolist() == brute_force(a / a.max()).tolist()          # bit for bit
    rows = a.max(axis=1, keepdims=True)
    target = nsp.InfluenceTransform("target").fit(sp.csr_matrix(adjacency))
    assert target.closure.toarray().tolist() == brute_force(np.divide(a, rows, out=np.zeros_like(a),
                                                                      where=rows > 0)).tolist()
    s = np.random.default_rng(seed).standard_normal((3, a.shape[0]))
    c = t.transform(s)
    w = brute_force(a / a.max())
    assert np.allclose(w @ c.T, s.T, rtol=0, atol=1e-12)                 # synthesis s = W c
    assert np.allclose(t.inverse_transform(c), s, rtol=0, atol=1e-12)


def test_worked_example():
    # 0 -> 1 (weight 2), 0 -> 2 (-4), 1 -> 3 (1), 2 -> 3 (-1): scaled by 4, the path 0 -> 2 -> 3 has
    # influence 1 * 0.25, the path 0 -> 1 -> 3 only 0.5 * 0.25
    a = sp.csr_matrix(np.array([[0, 0, 0, 0], [2.0, 0, 0, 0], [-4.0, 0, 0, 0], [0, 1.0, -1.0, 0]]))
    t = nsp.InfluenceTransform().fit(a)
    assert t.closure.toarray().tolist() == [[1, 0, 0, 0], [0.5, 1, 0, 0], [1, 0, 1, 0], [0.25, 0.25, 0.25, 1]]
    assert t.transform([1.0, 1.0, 1.0, 1.0]).tolist() == [1.0, 0.5, 0.0, 0.625]


def test_network_graph_round_trip_and_contributions(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)).eval()
    x = torch.randn(3, 1, 3, 3)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1]))
    s = nsp.record(net, x, "children").values().astype(np.float64)
    t = nsp.make_transform("influence").fit(core)
    a = np.abs(weighted_adjacency(core).toarray())
    assert np.array_equal(t.closure.toarray(), brute_force(a / a.max()))
    storage.write_transformer(tmp_path / "t.h5", t)
    back = storage.read_transformer(tmp_path / "t.h5")
    assert isinstance(back, nsp.InfluenceTransform) and back.scale == "global"
    assert (back.closure != t.closure).nnz == 0 and back.layer_offsets() == t.layer_offsets()
    assert np.array_equal(back.transform(s), t.transform(s))
    shares = t.contributions(s, core.names[-1])
    assert np.allclose(shares.sum(axis=2), s[:, -2:], rtol=1e-12, atol=1e-12)
    assert np.allclose(t.filter(s, [core.names[0]]), (t.closure[:, :9] @ t.transform(s)[:, :9].T).T, rtol=0,
                       atol=1e-12)


def test_refusals(monkeypatch):
    with pytest.raises(InputError, match=r"unknown scale 'row' for the influence transform; accepted: global, "
                                         r"target"):
        nsp.InfluenceTransform("row")
    with pytest.raises(InputError, match=r"adjacency must be strictly lower triangular"):
        nsp.InfluenceTransform().fit(sp.csr_matrix(np.array([[0, 1.0], [0, 0]])))
    with pytest.raises(InputError, match=r"non-finite weights"):
        nsp.InfluenceTransform().fit(sp.csr_matrix(np.array([[0, 0], [np.inf, 0]])))
    width = 1500                                            # two complete layers: 2.25 million candidates
    dense = np.zeros((2 * width, 2 * width))
    dense[width:, :width] = 1.0
    monkeypatch.setenv("NSP_MEMORY_MB", "64")
    with pytest.raises(MemoryBudgetError, match=r"the influence closure \(generation 1 of 2: 2,250,000 candidate "
                                                r"entries on top of 1,500\) needs at least 0\.1 GB .* use a smaller "
                                                r"input or model, or the sem transform"):
        nsp.InfluenceTransform().fit(sp.csr_matrix(dense))
