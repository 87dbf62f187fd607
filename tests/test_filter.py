"""Filters by causes: T.filter(S, keep) = W (keep * c), against a dense W and exact integers."""

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


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


@pytest.fixture
def fitted():
    net = small_net()
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(2))
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1]))
    return core, nsp.record(net, x, "children").values().astype(np.float64), nsp.SemTransform().fit(core)


def test_sem_filter_equals_the_dense_synthesis_of_the_kept_causes(fitted):
    core, s, sem = fitted
    w = np.linalg.inv(np.eye(core.n_nodes) - weighted_adjacency(core).toarray())     # W = (I - A)^-1, dense
    c = sem.transform(s)
    assert np.allclose(sem.filter(s, np.ones(core.n_nodes, bool)), s, rtol=1e-12, atol=1e-12)
    for layer, name in enumerate(core.names):
        part = slice(core.offsets[layer], core.offsets[layer + 1])
        expected = c[:, part] @ w[:, part].T                  # only this layer's innovations, propagated
        assert np.allclose(sem.filter(s, [name]), expected, rtol=1e-12, atol=1e-12)
        assert np.allclose(sem.filter(s, [layer]), expected, rtol=1e-12, atol=1e-12)
    parts = sum(sem.filter(s, [name]) for name in core.names)        # linear: the layers' shares add up to S
    assert np.allclose(parts, s, rtol=1e-12, atol=1e-12)


def test_standard_filter_is_the_zeta_synthesis_exactly():
    # a diamond with a long edge: 0 -> 1, 0 -> 2, 1 -> 3, 2 -> 3, 0 -> 3 (row = target)
    a = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]))
    t = nsp.StandardTransform("explicit").fit(a)
    s = np.array([[3.0, -1.0, 4.0, 10.0], [0.0, 2.0, -5.0, 7.0]])
    keep = np.array([[True, False, True, True], [False, True, True, False]])
    zeta = t.zeta.toarray().astype(int)
    c = t.transform(s)
    for row in range(2):
        kept = [Fraction(c[row, j]) if keep[row, j] else Fraction(0) for j in range(4)]
        exact = [sum(int(zeta[i, j]) * kept[j] for j in range(4)) for i in range(4)]
        assert t.filter(s, keep)[row].tolist() == [float(v) for v in exact]
    assert t.filter(s, np.ones(4, bool)).tolist() == s.tolist()
    # the worked example of docs/transforms.md
    assert t.transform([3.0, -1.0, 4.0, 10.0]).tolist() == [3.0, -4.0, 1.0, 10.0]
    assert t.filter([3.0, -1.0, 4.0, 10.0], np.array([True, False, True, True])).tolist() == [3.0, 3.0, 4.0, 14.0]


def test_top_k_keeps_the_largest_causes_of_each_sample(fitted):
    core, s, sem = fitted
    c = sem.transform(s)
    for k in (0, 1, 5, core.n_nodes):
        kept = sem.transform(sem.filter(s, k))
        top = np.argsort(-np.abs(c), axis=1, kind="stable")[:, :k]
        expected = np.zeros_like(c)
        np.put_along_axis(expected, top, np.take_along_axis(c, top, axis=1), axis=1)
        assert np.allclose(kept, expected, rtol=1e-9, atol=1e-12)


def test_bad_keep_arguments_name_what_is_accepted(fitted):
    core, s, sem = fitted
    with pytest.raises(InputError, match=r"keep: no layer 'fc9'; layers: input, 0, 1, 2"):
        sem.filter(s, ["fc9"])
    with pytest.raises(InputError, match=r"keep: layer index 7 outside 0\.\.3"):
        sem.filter(s, [7])
    with pytest.raises(InputError, match=rf"keep={core.n_nodes + 1}: the number of largest coefficients kept is "
                                         rf"0\.\.{core.n_nodes}"):
        sem.filter(s, core.n_nodes + 1)
    with pytest.raises(InputError, match=rf"keep must be a boolean mask of shape \({core.n_nodes},\) or "
                                         rf"\(4, {core.n_nodes}\), a number of coefficients or a list of layers; "
                                         rf"got float64 of shape \(3,\)"):
        sem.filter(s, np.ones(3))
    explicit = nsp.StandardTransform("explicit").fit(sp.csr_matrix(np.array([[0, 0], [1, 0]])))
    with pytest.raises(InputError, match=r"keep=\['input'\]: this standard transform does not know its graph.s layers \(fit it on a graph core\)"):
        explicit.filter(np.ones((1, 2)), ["input"])


def test_the_factored_standard_transform_filters_by_layer():
    net = zoo.ToyNet().eval()
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1], trace="ops"))
    s = nsp.record(net, x, "ops").values().astype(np.float64)
    factored = nsp.StandardTransform("factored").fit(core)
    explicit = nsp.StandardTransform("explicit").fit(core)
    assert factored.layer_offsets() == (list(core.names), [int(o) for o in core.offsets])
    mask = np.zeros(core.n_nodes, bool)
    mask[core.offsets[1]:core.offsets[2]] = True                      # layer 1's causes only
    assert np.allclose(factored.filter(s, [core.names[1]]), explicit.filter(s, mask), rtol=1e-12, atol=1e-9)
    assert np.allclose(factored.filter(s, list(core.names)), s, rtol=1e-12, atol=1e-9)
