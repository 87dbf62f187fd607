"""Contributions W[y, x] c_x of each node to target nodes, against a dense W built in the test.

sem: W = (I - A)^-1 from the edge list (``weighted_adjacency``), per sample where max pooling picks each
sample's own winners (the graph of that sample gives its A); standard: the zeta matrix, with exact
integers, on the factored path (permuted axes included: the ViT block) and the explicit one.
"""

from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn

import nsp
from nsp import zoo
from nsp.errors import InputError
from nsp.graph.weights import weighted_adjacency

from test_factored_attention_nets import TinyViT


def recorded(net, x, trace="ops"):
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1], trace=trace))
    return core, nsp.record(net, x, trace).values().astype(np.float64)


def dense_w(core) -> np.ndarray:
    return np.linalg.inv(np.eye(core.n_nodes) - weighted_adjacency(core).toarray())


def assert_shares(got, w_rows, c, abs_w_rows):
    """Each share against W[y, x] c_x, to the rounding of one backward pass (relative to |W| |c|)."""
    expected = w_rows * c[None, :]
    assert np.all(np.abs(got - expected) <= 1e-10 * np.abs(abs_w_rows * c[None, :]).sum(axis=1, keepdims=True)
                  + 1e-300)


MLP = (lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 3)), (6, 4))
VIT = (TinyViT, (3, 1, 4, 4))


@pytest.mark.parametrize("make, shape", [MLP, VIT], ids=["mlp", "vit-block"])
def test_sem_contributions_are_the_dense_closure_times_the_spectrum(make, shape):
    torch.manual_seed(0)
    net = make().eval()
    core, s = recorded(net, torch.randn(*shape))
    sem = nsp.SemTransform().fit(core)
    w = dense_w(core)
    targets = list(range(core.offsets[-2], core.n_nodes))              # the logits
    got = sem.contributions(s, core.names[-1])
    assert got.shape == (len(s), len(targets), core.n_nodes)
    c = sem.transform(s)
    for b in range(len(s)):
        assert_shares(got[b], w[targets], c[b], np.abs(w[targets]))
    assert np.allclose(got.sum(axis=2), s[:, targets], rtol=1e-9, atol=1e-9)          # completeness
    assert np.allclose(sem.contributions(s[1], targets), got[1], rtol=0, atol=0)     # one signal: same numbers
    layers = sem.contributions(s, targets, per_layer=True)
    for i, (lo, hi) in enumerate(zip(core.offsets[:-1], core.offsets[1:])):
        assert np.allclose(layers[:, :, i], got[:, :, lo:hi].sum(axis=2), rtol=1e-12, atol=1e-12)


def test_sem_contributions_through_a_residual_cnn_follow_each_samples_max_pooling_winners():
    torch.manual_seed(0)
    net = zoo.build("residual_cnn").eval()
    x = torch.randn(3, 1, 8, 8)
    core, s = recorded(net, x)
    sem = nsp.SemTransform().fit(core)
    got = sem.contributions(s, core.names[-1])
    c = sem.transform(s)
    targets = np.arange(core.offsets[-2], core.n_nodes)
    for b in range(len(x)):                        # the graph of sample b has b's winners in its edge list
        own, _ = recorded(net, x[b:b + 1])
        w = dense_w(own)
        assert_shares(got[b], w[targets], c[b], np.abs(w[targets]))
        assert np.allclose(got[b].sum(axis=1), s[b, targets], rtol=1e-9, atol=1e-9)
    # without signals, closure rows take the recorded sample's winners: the rows of the graph's own W
    assert np.allclose(sem.synthesis_rows(targets), dense_w(core)[targets], rtol=1e-12, atol=1e-12)


def test_sem_on_a_bare_adjacency_solves_the_transposed_system():
    a = sp.csr_matrix(np.array([[0, 0, 0], [2.0, 0, 0], [0.5, -1.0, 0]]))
    sem = nsp.SemTransform().fit(a)
    s = np.array([[1.0, 3.0, -2.0]])
    w = np.linalg.inv(np.eye(3) - a.toarray())
    assert np.allclose(sem.synthesis_rows([2, 1]), w[[2, 1]], rtol=0, atol=1e-15)
    assert np.allclose(sem.contributions(s, 2)[0, 0], w[2] * sem.transform(s)[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", ["factored", "explicit"])
@pytest.mark.parametrize("make, shape", [MLP, VIT], ids=["mlp", "vit-block"])
def test_standard_contributions_are_exact_zeta_rows_times_the_spectrum(make, shape, method):
    torch.manual_seed(0)
    net = make().eval()
    core, _ = recorded(net, torch.randn(*shape))
    t = nsp.StandardTransform(method).fit(core)
    assert t.factored == (method == "factored")
    s = np.random.default_rng(0).integers(-9, 10, (2, core.n_nodes)).astype(np.float64)   # exact spectra
    zeta = nsp.StandardTransform("explicit").fit(core).zeta.toarray().astype(int)
    targets = [core.n_nodes - 1, core.offsets[-2], core.offsets[len(core.names) // 2]]
    got = t.contributions(s, targets)
    c = t.transform(s)
    for b in range(2):
        for i, y in enumerate(targets):
            exact = [zeta[y, x] * Fraction(c[b, x]) for x in range(core.n_nodes)]
            assert got[b, i].tolist() == [float(v) for v in exact]
            assert sum(exact) == Fraction(s[b, y])                                 # completeness, exactly
    assert np.array_equal(t.synthesis_rows(targets), zeta[targets].astype(float))


def test_laplacian_contributions_are_eigenvector_rows_times_the_spectrum():
    torch.manual_seed(0)
    core, s = recorded(MLP[0]().eval(), torch.randn(2, 4))
    full = nsp.LaplacianTransform().fit(core)
    got = full.contributions(s, [0, core.n_nodes - 1])
    v = full.eigenvectors
    assert np.allclose(got, v[[0, core.n_nodes - 1]][None] * full.transform(s)[:, None, :], rtol=0, atol=1e-15)
    assert np.allclose(got.sum(axis=2), s[:, [0, core.n_nodes - 1]], rtol=0, atol=1e-12)    # a full basis
    part = nsp.LaplacianTransform(k=3).fit(core)
    assert part.contributions(s, 5).shape == (2, 1, 3)
    assert np.allclose(part.contributions(s, 5).sum(axis=2), part.filter(s, np.ones(3, bool))[:, [5]], rtol=0,
                       atol=1e-12)                                            # the projection onto the basis


def test_contribution_arguments_are_checked():
    torch.manual_seed(0)
    core, s = recorded(MLP[0]().eval(), torch.randn(2, 4))
    sem = nsp.SemTransform().fit(core)
    with pytest.raises(InputError, match=rf"targets: node {core.n_nodes} outside 0\.\.{core.n_nodes - 1}"):
        sem.contributions(s, [0, core.n_nodes])
    with pytest.raises(InputError, match=r"targets: node -1 outside"):
        sem.contributions(s, -1)
    with pytest.raises(InputError, match=r"targets: no layer 'logits'; layers: "):
        sem.contributions(s, "logits")
    with pytest.raises(InputError, match=r"targets must be a node index, a non-empty list of node indices or a "
                                         r"layer name; got \[\]"):
        sem.contributions(s, [])
    with pytest.raises(InputError, match=r"targets must be .* got 1.5"):
        sem.contributions(s, 1.5)
    with pytest.raises(InputError, match=r"signals must have shape \(samples, \d+\)"):
        sem.contributions(s[:, :3], 0)
    lap = nsp.LaplacianTransform().fit(core)
    with pytest.raises(InputError, match=r"targets=.output.: this laplacian transform does not know its graph.s "
                                         r"layers"):
        lap.contributions(s, "output")
    bare = nsp.StandardTransform().fit(sp.csr_matrix(np.array([[0, 0], [1, 0]])))
    with pytest.raises(InputError, match=r"per_layer=True: this standard transform does not know its graph.s "
                                         r"layers"):
        bare.contributions(np.ones((1, 2)), 1, per_layer=True)
    with pytest.raises(nsp.NotFittedError, match="not fitted"):
        nsp.SemTransform().contributions(s, 0)
