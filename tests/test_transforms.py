"""Causal (standard) and Laplacian transforms: docs/math.md identities, dense references, seed API."""

import numpy as np
import pytest
import scipy.linalg as la
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.transforms.standard import StandardTransform
from nsp.transforms.zeta import generations, zeta_mobius
from nsp.transforms.laplacian import LaplacianTransform, laplacian
from nsp.zoo import MnistNet, ToyNet, load_state_npz

README_INPUT = torch.tensor([[[[-6, -1, -2, 5], [-3, -6, 5, 4], [2, 5, -6, 3], [5, 0, 1, -6]]]], dtype=torch.float)


def dag(n, edges):
    """Adjacency (row = target, column = source) from (source, target) pairs."""
    a = np.zeros((n, n), dtype=np.int8)
    for s, t in edges:
        a[t, s] = 1
    return sp.csr_matrix(a)


def layered(widths):
    """Complete bipartite connections between consecutive layers."""
    offsets = np.concatenate([[0], np.cumsum(widths)])
    edges = [(s, t) for k in range(len(widths) - 1)
             for s in range(offsets[k], offsets[k + 1]) for t in range(offsets[k + 1], offsets[k + 2])]
    return dag(int(offsets[-1]), edges)


def dense_closure(a):
    a = a.toarray().astype(bool)
    n = a.shape[0]
    z = np.eye(n, dtype=bool)
    for _ in range(n):
        z = z | (a.astype(np.int64) @ z.astype(np.int64) > 0)
    return z.astype(np.int64)


def rel(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


# --- docs/math.md: the Laplacian -----------------------------------------------------------------------

def test_chain_is_first_difference():
    t = StandardTransform().fit(dag(5, [(0, 1), (1, 2), (2, 3), (3, 4)]))
    assert np.array_equal(t.zeta.toarray(), np.tril(np.ones((5, 5), dtype=np.int8)))
    assert t.transform([3, 5, 4, 4, 10]).tolist() == [3, 2, -1, 0, 6]
    assert t.inverse_transform([3, 2, -1, 0, 6]).tolist() == [3, 5, 4, 4, 10]


def test_diamond():
    t = StandardTransform().fit(dag(4, [(0, 1), (0, 2), (1, 3), (2, 3)]))
    assert t.inverse_transform([1, 2, 3, 4]).tolist() == [1, 3, 4, 10]
    s = np.array([2.0, 7.0, -3.0, 5.0])
    assert t.transform(s)[3] == s[3] - s[1] - s[2] + s[0]
    assert t.mobius.toarray()[3].tolist() == [1, -1, -1, 1]


def test_layered_1_2_3_2_mobius_matrix():
    expected = [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [-1, 1, 0, 0, 0, 0, 0, 0],
        [-1, 0, 1, 0, 0, 0, 0, 0],
        [1, -1, -1, 1, 0, 0, 0, 0],
        [1, -1, -1, 0, 1, 0, 0, 0],
        [1, -1, -1, 0, 0, 1, 0, 0],
        [-2, 2, 2, -1, -1, -1, 1, 0],
        [-2, 2, 2, -1, -1, -1, 0, 1],
    ]
    t = StandardTransform().fit(layered([1, 2, 3, 2]))
    assert t.mobius.dtype == np.int64
    assert t.mobius.toarray().tolist() == expected


def test_boolean_lattice_on_two_elements():
    z, m = zeta_mobius(dag(4, [(0, 1), (0, 2), (1, 3), (2, 3)]))
    assert m.toarray().tolist() == [[1, 0, 0, 0], [-1, 1, 0, 0], [-1, 0, 1, 0], [1, -1, -1, 1]]


def test_fully_connected_layers_mobius_formula():
    widths = [2, 3, 4, 3, 2]
    m = StandardTransform().fit(layered(widths)).mobius.toarray()
    offsets = np.concatenate([[0], np.cumsum(widths)])
    for i in range(len(widths)):
        for j in range(i + 1, len(widths)):
            want = (-1) ** (j - i) * int(np.prod([widths[k] - 1 for k in range(i + 1, j)]))
            assert np.all(m[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] == want)


class Conv1dChain(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(1, 1, 2)
        self.c2 = nn.Conv1d(1, 1, 2)
        self.c3 = nn.Conv1d(1, 1, 2)

    def forward(self, x):
        return self.c3(self.c2(self.c1(x)))


def test_one_dimensional_convolution_rule():
    torch.manual_seed(0)
    acts = nsp.Activations(Conv1dChain(), torch.randn(1, 1, 7))
    graph = nsp.NNGraph(acts)
    spectrum = graph.transform(acts)
    s = [a.double().reshape(-1) for a in acts.layeractivations]
    c = [a.reshape(-1) for a in spectrum.layeractivations]
    for layer in (2, 3):
        for i in range(c[layer].numel()):
            want = s[layer][i] - s[layer - 1][i] - s[layer - 1][i + 1] + s[layer - 2][i + 1]
            assert abs(float(c[layer][i] - want)) < 1e-12
    assert torch.allclose(c[1], s[1] - s[0][:-1] - s[0][1:], atol=1e-12, rtol=0)


# --- dense references on random DAGs and small networks ---------------------------------------

@pytest.mark.parametrize("seed", range(12))
def test_random_dag_matches_dense_inverse(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    lower = np.tril(rng.random((n, n)) < 0.2, -1)
    perm = rng.permutation(n)                       # any node order, not only topological
    a = sp.csr_matrix(lower[perm][:, perm].astype(np.int8))
    t = StandardTransform().fit(a)
    z = dense_closure(a)
    assert np.array_equal(t.zeta.toarray(), z)
    assert np.array_equal(t.mobius.toarray(), np.rint(np.linalg.inv(z)).astype(np.int64))
    signals = rng.standard_normal((5, n))
    dense = np.linalg.solve(z.astype(float), signals.T).T
    assert rel(t.transform(signals), dense) < 1e-12
    assert rel(t.inverse_transform(t.transform(signals)), signals) < 1e-12


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h) + h)
        return self.fc(torch.flatten(self.pool(h), 1))


def test_children_mode_refuses_a_residual_net():
    with pytest.raises(nsp.TraceError, match="child module 'pool' .* reads 'conv1'"):
        nsp.Activations(SmallResNet(), torch.randn(1, 1, 4, 4), trace="children")


@pytest.mark.parametrize("net, shape, trace", [
    (ToyNet, (1, 1, 4, 4), "children"), (ToyNet, (1, 1, 4, 4), "ops"),
    (SmallResNet, (1, 1, 4, 4), "ops"),
])
def test_small_networks_match_dense_triangular_solve(net, shape, trace):
    torch.manual_seed(1)
    model = net()
    acts = nsp.Activations(model, torch.randn(shape), trace=trace)
    graph = nsp.NNGraph(acts, INCL=trace == "ops")      # the input-local graph too
    t = StandardTransform().fit(graph.core)
    z = dense_closure(graph.core.adjacency)
    assert np.array_equal(t.zeta.toarray(), z)
    assert np.array_equal(t.mobius.toarray(), np.rint(np.linalg.inv(z)).astype(np.int64))
    signals = np.random.default_rng(2).standard_normal((4, z.shape[0]))
    dense = la.solve_triangular(z.astype(float), signals.T, lower=True, unit_diagonal=True).T
    assert rel(t.transform(signals), dense) < 1e-12
    assert rel(t.inverse_transform(dense), signals) < 1e-12


def test_generations_are_longest_path_levels():
    assert generations(dag(5, [(0, 2), (1, 2), (2, 4), (0, 4), (3, 4)])).tolist() == [0, 0, 1, 0, 2]
    with pytest.raises(ValueError, match="the graph has a cycle: 3 of 4 nodes"):
        generations(dag(4, [(1, 2), (2, 3), (3, 1)]))


def test_node_order_must_respect_given_generations():
    with pytest.raises(ValueError, match="generation 0 .* has an edge from itself or a later generation"):
        zeta_mobius(dag(3, [(0, 1)]), offsets=np.array([0, 3]))


def test_mobius_overflow_and_float64_exactness_are_reported():
    # width 9 between the ends: mu(first, last) = +-8^(depth - 2)
    with pytest.warns(RuntimeWarning, match="float64 transforms of this graph are not exact"):
        t = StandardTransform(precision="float").fit(layered([1] + [9] * 18 + [1]))
    assert t.max_abs_mobius == 8**18
    with pytest.raises(OverflowError, match="may exceed int64"):
        StandardTransform(precision="float").fit(layered([1] + [9] * 22 + [1]))
    exact = StandardTransform().fit(layered([1] + [9] * 22 + [1]))     # the exact path needs no Möbius matrix
    with pytest.raises(OverflowError, match="may exceed int64"):
        exact.mobius


# --- Laplacian -----------------------------------------------------------------------------

def test_laplacian_matrix():
    lap = laplacian(dag(4, [(0, 1), (0, 2), (1, 3), (2, 3)])).toarray()
    assert lap.tolist() == [[2, -1, -1, 0], [-1, 2, 0, -1], [-1, 0, 2, -1], [0, -1, -1, 2]]


def toy_core():
    torch.manual_seed(0)
    return nsp.NNGraph(nsp.Activations(ToyNet(), README_INPUT)).core


def test_full_laplacian_basis_identities():
    core = toy_core()
    t = LaplacianTransform().fit(core)
    lap = laplacian(core.adjacency).toarray()
    v, lam = t.eigenvectors, t.eigenvalues
    assert t.truncation is None and v.shape == (74, 74)
    assert np.all(np.diff(lam) >= 0) and abs(lam[0]) < 1e-12
    assert np.abs(v.T @ v - np.eye(74)).max() < 1e-12
    assert np.abs(lap @ v - v * lam).max() < 1e-11
    s = np.random.default_rng(3).standard_normal((6, 74))
    c = t.transform(s)
    assert np.allclose(np.linalg.norm(c, axis=1), np.linalg.norm(s, axis=1), rtol=1e-13, atol=0)
    assert rel(t.inverse_transform(c), s) < 1e-12
    assert np.all(np.abs(v).argmax(axis=0) == np.argmax(v, axis=0))      # fixed signs


def test_partial_laplacian_basis_is_the_lowest_part():
    core = toy_core()
    full = LaplacianTransform().fit(core)
    part = LaplacianTransform(k=10).fit(core)
    assert np.abs(part.eigenvalues - full.eigenvalues[:10]).max() < 1e-9
    v = part.eigenvectors
    assert v.shape == (74, 10) and np.abs(v.T @ v - np.eye(10)).max() < 1e-10
    lap = laplacian(core.adjacency).toarray()
    assert np.abs(lap @ v - v * part.eigenvalues).max() < 1e-8
    trunc = part.truncation
    assert trunc["k"] == 10 and trunc["n"] == 74
    assert abs(trunc["next"] - full.eigenvalues[10]) < 1e-9
    assert trunc["splits_eigenspace"] == bool(abs(full.eigenvalues[10] - full.eigenvalues[9]) < 1e-9)
    s = np.random.default_rng(4).standard_normal(74)
    projection = v @ (v.T @ s)
    assert rel(part.inverse_transform(part.transform(s)), projection) < 1e-12


# --- reference networks and the seed API ---------------------------------------------------

def test_toy_reference_readme_example():
    torch.manual_seed(0)
    acts = nsp.Activations(ToyNet(), README_INPUT)
    graph = nsp.NNGraph(acts)
    for kind in ("standard", "laplacian"):
        spectrum = graph.transform(acts, type=kind)
        assert isinstance(spectrum, nsp.Spectrum) and spectrum.transform_type == kind
        values = spectrum.to_array(np.float64)
        assert np.all(np.isfinite(values))
        back = graph.inverse_transform(spectrum)
        assert type(back) is nsp.Activations
        assert rel(back.to_array(np.float64), acts.to_array(np.float64)) < 1e-12
    assert graph.transform(acts, "laplacian").eigenvalues.shape == (74,)
    assert graph.transform(acts).eigenvalues is None


def test_mnist_fixture_spectrum_round_trip(mnist_weights):
    net = load_state_npz(MnistNet(), mnist_weights)
    acts = nsp.Activations(net, torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(5)))
    graph = nsp.NNGraph(acts)
    t = graph.transformers.get("standard") or graph._transform("standard")
    assert (t.zeta.nnz, t.mobius.nnz, t.max_abs_mobius) == (2817114, 982234, 15791)
    spectrum = graph.transform(acts)
    c = spectrum.to_array(np.float64)
    assert np.all(np.isfinite(c))
    s = acts.to_array(np.float64)
    # forward error bound of the two sparse products: a few ulps of |Z| |M| |s|
    bound = 64 * np.finfo(float).eps * (abs(t.zeta).astype(float) @ (abs(t.mobius).astype(float) @ np.abs(s)))
    assert np.all(np.abs(graph.inverse_transform(spectrum).to_array(np.float64) - s) <= bound)
    assert rel(graph.inverse_transform(spectrum).to_array(np.float64), s) < 1e-9
    # the reference's own route: a sparse triangular solve with inv_F
    ref = nsp.Transformer.get_fourier_coefficients(acts, inv_F=graph.inv_F)
    assert rel(ref.to_array(np.float64), c) < 1e-9


def test_seed_api_matrices():
    torch.manual_seed(0)
    acts = nsp.Activations(ToyNet(), README_INPUT)
    graph = nsp.NNGraph(acts)
    assert graph.inv_F is None and graph.lu_piv is None
    inv_f = graph.get_transformer()
    assert sp.isspmatrix_csr(inv_f) and sp.triu(inv_f, 1).nnz == 0 and inv_f is graph.inv_F
    mobius = nsp.Transformer.get_fourier_matrix(graph, inv_f)
    assert (mobius != graph.transformers["standard"].mobius).nnz == 0
    assert np.array_equal((mobius @ inv_f).toarray(), np.eye(74))
    lu, piv = graph.get_transformer("laplacian")
    assert lu.shape == (74, 74) and graph.lu_piv[0] is lu
    spectrum = graph.transform(acts, "laplacian")
    via_lu = nsp.Transformer.get_fourier_coefficients(acts, type="laplacian", lu_piv=graph.lu_piv)
    assert rel(via_lu.to_array(np.float64), spectrum.to_array(np.float64)) < 1e-12
    v = graph.transformers["laplacian"].eigenvectors
    assert np.array_equal(nsp.Transformer.get_fourier_matrix(graph, v), v.T)
    lap = nsp.Transformer.get_laplacian(graph)
    assert sp.issparse(lap) and np.array_equal(nsp.Transformer.get_laplacian(graph, dense=True), lap.toarray())
    assert np.array_equal(nsp.Transformer.get_inv_fourier_matrix(graph).toarray(), inv_f.toarray())


def test_unknown_type_lists_accepted():
    graph = nsp.NNGraph(nsp.Activations(ToyNet(), README_INPUT))
    for call in (lambda: graph.get_transformer("fourier"), lambda: nsp.make_transform("fourier"),
                 lambda: graph.transform(nsp.Activations(ToyNet(), README_INPUT), type="fourier")):
        with pytest.raises(ValueError, match="unknown transform type 'fourier'; accepted: influence, laplacian, sem, standard"):
            call()


def test_bad_transform_inputs():
    t = StandardTransform()
    with pytest.raises(nsp.NotFittedError, match="not fitted"):
        t.transform(np.zeros(3))
    t.fit(dag(3, [(0, 1)]))
    with pytest.raises(ValueError, match=r"signals must have shape \(samples, 3\) or \(3,\); got \(2, 4\)"):
        t.transform(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        LaplacianTransform(k=0)
    graph = nsp.NNGraph(nsp.Activations(ToyNet(), README_INPUT))
    other = nsp.Activations(MnistNet(), torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="activations have 9594 values; this graph has 74 nodes"):
        graph.transform(other)
    with pytest.raises(ValueError, match="fitted with k=5: a partial basis has no lu_piv"):
        graph.get_transformer("laplacian", k=5)
    assert graph.transformers["laplacian"].n_coefficients == 5
    spectrum = graph.transform(nsp.Activations(ToyNet(), README_INPUT), "laplacian")   # refits the full basis
    assert spectrum.eigenvalues.shape == (74,) and graph.transformers["laplacian"].truncation is None
    lu, _ = graph.get_transformer("laplacian")
    assert lu.shape == (74, 74)
    with pytest.raises(ValueError, match="k must be a positive integer or None"):
        LaplacianTransform(k=True)
    with pytest.raises(ValueError, match="unknown eigensolver method 'arpack'; accepted: auto, dense, sparse"):
        LaplacianTransform(k=3, method="arpack")


def test_stored_zeros_are_not_edges_and_offsets_are_checked():
    a = sp.csr_matrix((np.array([0, 1]), np.array([1, 0]), np.array([0, 1, 2])), shape=(2, 2))  # 1 -> 0 stored as 0
    assert zeta_mobius(a)[1].toarray().tolist() == [[1, 0], [-1, 1]]
    with pytest.raises(ValueError, match=r"offsets must rise from 0 to the node count 3; got \[0, 1, 2\]"):
        zeta_mobius(dag(3, [(0, 1)]), offsets=[0, 1, 2])


def test_fourier_matrix_checks_its_input():
    graph = nsp.NNGraph(nsp.Activations(ToyNet(), README_INPUT))
    zeta = graph.get_transformer()
    mobius = graph.transformers["standard"].mobius
    assert (nsp.Transformer.get_fourier_matrix(graph, zeta.toarray()) != mobius).nnz == 0
    not_closed = sp.identity(74, dtype=np.int8, format="csr") + graph.core.adjacency
    with pytest.raises(ValueError, match="not transitively closed"):
        nsp.Transformer.get_fourier_matrix(graph, not_closed)
    with pytest.raises(ValueError, match="neither a zeta matrix .* nor an orthonormal"):
        nsp.Transformer.get_fourier_matrix(graph, 2.0 * np.eye(74) + 0.5)
    with pytest.raises(TypeError, match="an LU factorisation"):
        nsp.Transformer.get_fourier_matrix(graph, graph.get_transformer("laplacian"))


def test_assigning_inv_f_installs_the_standard_transform():
    acts = nsp.Activations(ToyNet(), README_INPUT)
    first = nsp.NNGraph(acts)
    zeta = first.get_transformer()
    second = nsp.NNGraph(acts)
    second.inv_F = zeta
    assert (second.transformers["standard"].mobius != first.transformers["standard"].mobius).nnz == 0
    assert np.array_equal(second.transform(acts).to_array(np.float64), first.transform(acts).to_array(np.float64))
    with pytest.raises(ValueError, match="inv_F has shape"):
        second.inv_F = sp.identity(3, format="csr")


class StridedNet(nn.Module):
    """Many repeated Laplacian eigenvalues (32 zero eigenvalues among them)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(36, 10)

    def forward(self, x):
        return self.fc(self.flat(self.pool(torch.relu(self.conv(x)))))


@pytest.mark.parametrize("method", ["dense", "sparse"])
@pytest.mark.parametrize("k", [20, 200])
def test_partial_basis_with_repeated_eigenvalues(method, k):
    torch.manual_seed(0)
    core = nsp.NNGraph(nsp.Activations(StridedNet(), torch.randn(1, 1, 16, 16))).core
    full = np.linalg.eigvalsh(laplacian(core.adjacency).toarray())
    part = LaplacianTransform(k=k, method=method).fit(core)
    assert np.abs(part.eigenvalues - full[:k]).max() < 1e-8
    assert part.truncation["splits_eigenspace"] == bool(abs(full[k] - full[k - 1]) < 1e-9)
    v = part.eigenvectors
    assert np.abs(v.T @ v - np.eye(k)).max() < 1e-8


def test_partial_basis_as_large_as_the_graph_is_the_full_one():
    core = toy_core()
    part = LaplacianTransform(k=500).fit(core)
    assert part.truncation == {"k": 74, "n": 74, "largest_kept": part.eigenvalues[-1], "next": None,
                               "splits_eigenspace": False}
    assert np.abs(part.eigenvalues - LaplacianTransform().fit(core).eigenvalues).max() < 1e-12
