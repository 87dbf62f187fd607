"""Channel symmetry: groups found on neuron graphs, and the exact split of the Laplacian eigenproblem."""

import numpy as np
import scipy.sparse as sp
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.transforms.laplacian import LaplacianTransform, laplacian
from nsp.graph.symmetry import channel_groups, helmert
from nsp.zoo import MnistNet, ToyNet


class Strided(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(36, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(F.relu(self.conv(x))), 1))


class TwoStage(nn.Module):
    """The MNIST network's shape, small: two conv/pool stages with 3 and 4 channels, a linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, 3)
        self.p1 = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(3, 4, 3)
        self.p2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.p1(F.relu(self.c1(x)))
        x = self.p2(F.relu(self.c2(x)))
        return self.fc(x.view(1, -1))


class FirstChannelHead(nn.Module):
    """A head that reads channel 0 only: the channels are no longer interchangeable."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return self.fc(h[:, 0].reshape(1, -1))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        return F.relu(self.conv2(h) + h)


def core_of(net, shape, trace="children", INCL=True):
    torch.manual_seed(0)
    return nsp.NNGraph(nsp.Activations(net, torch.randn(shape), trace=trace), INCL=INCL).core


def test_helmert_basis():
    h = helmert(5)
    assert h.shape == (5, 4)
    assert np.abs(h.T @ h - np.eye(4)).max() < 1e-15 and np.abs(h.sum(axis=0)).max() < 1e-15


def test_groups_of_the_mnist_network():
    core = core_of(MnistNet(), (1, 1, 28, 28))
    found = [([core.names[l] for l in g.layers], g.channels, g.nodes.shape) for g in channel_groups(core)]
    assert found == [(["cnn1", "maxpool1"], 10, (10, 720)), (["cnn2", "maxpool2"], 20, (20, 80)), (["fc1"], 10, (10, 1))]
    ops = core_of(MnistNet(), (1, 1, 28, 28), "ops")
    assert [[ops.names[l] for l in g.layers] for g in channel_groups(ops)] == [
        ["cnn1", "relu", "maxpool1"], ["cnn2", "relu_1", "maxpool2", "view"], ["fc1"]]


def test_broken_symmetry_is_not_used():
    core = core_of(FirstChannelHead(), (1, 1, 4, 4), "ops")
    assert all("conv" not in [core.names[l] for l in g.layers] for g in channel_groups(core))
    # a residual block mixes channels inside the would-be group: rejected as a whole
    res = core_of(Residual(), (1, 1, 4, 4), "ops")
    assert channel_groups(res) == []


@pytest.mark.parametrize("net, shape, trace, INCL", [
    (ToyNet(), (1, 1, 4, 4), "children", True), (ToyNet(), (1, 1, 4, 4), "ops", True),
    (Strided(), (1, 1, 16, 16), "ops", True), (Strided(), (1, 1, 16, 16), "ops", False),
    (FirstChannelHead(), (1, 1, 4, 4), "ops", True), (Residual(), (1, 1, 4, 4), "ops", True),
    (TwoStage(), (1, 1, 14, 14), "children", True), (TwoStage(), (1, 1, 14, 14), "ops", True),
])
def test_split_eigenbasis_is_an_exact_eigenbasis(net, shape, trace, INCL):
    core = core_of(net, shape, trace, INCL)
    lap = laplacian(core.adjacency)
    dense = np.linalg.eigvalsh(lap.toarray())
    for k in (None, 37):
        t = LaplacianTransform(k=k).fit(core)
        count = core.n_nodes if k is None else 37
        v, lam = t.eigenvectors, t.eigenvalues
        assert v.shape == (core.n_nodes, count)
        assert np.abs(lam - dense[:count]).max() < 1e-10 * max(1.0, dense[-1])
        assert np.abs(v.T @ v - np.eye(count)).max() < 1e-12
        assert np.abs(lap @ v - v * lam).max() < 1e-10
    plain = LaplacianTransform(symmetry=False).fit(core)
    assert plain.channel_groups == []
    assert np.abs(plain.eigenvalues - dense).max() < 1e-10 * max(1.0, dense[-1])


def test_channel_groups_are_reported():
    t = LaplacianTransform(k=8).fit(core_of(MnistNet(), (1, 1, 28, 28)))
    assert t.channel_groups == [(("cnn1", "maxpool1"), 10), (("cnn2", "maxpool2"), 20), (("fc1",), 10)]


def test_a_split_whose_blocks_exceed_the_limit_is_not_formed(monkeypatch):
    from nsp.graph.symmetry import SplitLaplacian
    core = core_of(TwoStage(), (1, 1, 14, 14), "ops")
    lap = laplacian(core.adjacency)
    groups = channel_groups(core)
    split = SplitLaplacian.of(lap, groups)
    largest = max([split.symmetric_block.shape[0]] + [b.shape[0] for b in split.channel_blocks])
    assert SplitLaplacian.of(lap, groups, limit=largest) is not None
    monkeypatch.setattr(sp.csr_matrix, "toarray", lambda self, *a, **k: pytest.fail("a block was made dense"))
    assert SplitLaplacian.of(lap, groups, limit=largest - 1) is None
