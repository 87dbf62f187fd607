"""Graph core and NNGraph facade: reference counts, INCL, node ids, fallback and its limits."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.operations.blocks import Kron
from nsp.zoo import MnistNet, ToyNet, load_state_npz


def toy_graph(INCL=True):
    torch.manual_seed(0)
    return nsp.NNGraph(nsp.Activations(ToyNet(), torch.rand(1, 1, 4, 4)), INCL=INCL)


def test_toy_network_counts():
    graph = toy_graph()
    assert graph.number_of_nodes() == 74
    assert graph.number_of_edges() == 584
    assert graph.core.n_nodes == 74 and graph.core.n_edges == 584
    # conv1: 18 outputs x 4 inputs; conv2: 32 x 8; fc: 8 x 32
    blocks = graph.core.adjacency
    off = graph.core.offsets
    assert [blocks[off[i]:off[i + 1], off[i - 1]:off[i]].nnz for i in (1, 2, 3)] == [72, 256, 256]


def test_mnist_fixture_counts_and_factoring(mnist_weights):
    net = load_state_npz(MnistNet(), mnist_weights)
    acts = nsp.Activations(net, torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    graph = nsp.NNGraph(acts)
    assert graph.number_of_nodes() == 9594
    assert graph.number_of_edges() == 474240
    assert all(graph.core.is_factored(layer) for layer in range(1, 6))
    conv2 = graph.core.blocks[3][0][1]
    assert isinstance(conv2, Kron)
    # batch, channels (20 x 10 all-to-all), rows (8 x 12 window 5), columns
    assert [f.shape for f in conv2.factors] == [(1, 1), (20, 10), (8, 12), (8, 12)]
    assert [int(f.nnz) for f in conv2.factors] == [1, 200, 40, 40]


def test_mnist_input_local_graph_keeps_one_max_winner(mnist_weights):
    net = load_state_npz(MnistNet(), mnist_weights)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    acts = nsp.Activations(net, x)
    local = nsp.NNGraph(acts, INCL=False)
    adj, off = local.core.adjacency, local.core.offsets
    indeg = np.diff(adj.indptr)
    assert np.all(indeg[off[2]:off[3]] == 1) and np.all(indeg[off[4]:off[5]] == 1)
    # the winner is the maximum of the window
    cnn1 = acts.layeractivations[1].reshape(-1).numpy()
    pool1 = acts.layeractivations[2].reshape(-1).numpy()
    winners = adj[off[2]:off[3]].indices - off[1]
    assert np.array_equal(np.maximum(cnn1[winners], 0), pool1)
    # trained weights have no exact zeros: conv and linear blocks are the structural ones
    full = nsp.NNGraph(acts).core.adjacency
    for layer in (1, 3, 5):
        a = local.core.adjacency[off[layer]:off[layer + 1]]
        b = full[off[layer]:off[layer + 1]]
        assert (a != b).nnz == 0
    assert local.number_of_edges() == 474240 - 1440 * 3 - 320 * 3


def test_input_local_drops_zero_weights():
    net = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    acts = nsp.Activations(net, torch.ones(1, 3))
    dense = nsp.NNGraph(acts, INCL=False).core.adjacency.toarray()
    assert dense[3:, :3].tolist() == [[1, 0, 1], [0, 0, 1]]
    assert nsp.NNGraph(acts).core.adjacency.toarray()[3:, :3].tolist() == [[1, 1, 1], [1, 1, 1]]


def test_networkx_graph_equals_core_and_node_order():
    graph = toy_graph()
    nodes = list(graph.nodes)
    assert nodes[0] == (0, 0, 0, 0) and nodes[16] == (1, 0, 0, 0) and nodes[-1] == (3, 7)
    assert all(graph.node_id(node) == i for i, node in enumerate(nodes))
    assert [graph.core.layer_of(i) for i in (0, 15, 16, 33, 34, 65, 66, 73)] == [0, 0, 1, 1, 2, 2, 3, 3]
    coo = graph.core.adjacency.tocoo()
    assert set(graph.edges) == {(nodes[c], nodes[r]) for r, c in zip(coo.row, coo.col)}
    assert sp.triu(graph.core.adjacency).nnz == 0          # strictly lower triangular


def test_node_id_rejects_non_nodes():
    graph = toy_graph()
    with pytest.raises(KeyError, match="not a node"):
        graph.node_id((9, 0))
    with pytest.raises(KeyError, match="not a node"):
        graph.node_id((1, 5, 0, 0))
    with pytest.raises(KeyError, match=r"layer 1 \('conv1'\) has shape \(2, 3, 3\)"):
        graph.node_id((1, 0))


def test_networkx_copies_work():
    graph = toy_graph()
    copy = graph.copy()
    assert copy.number_of_edges() == 584
    assert graph.subgraph([(0, 0, 0, 0), (1, 0, 0, 0)]).number_of_edges() == 1


def test_activations_type_checked():
    with pytest.raises(TypeError, match="activations must be an nsp.Activations, got list"):
        nsp.NNGraph([1, 2])


class Gram(nn.Module):
    """An operation without a rule: x @ x^T over the features."""

    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x):
        h = self.fc(x)
        return h.unsqueeze(2) @ h.unsqueeze(1)


def test_outer_product_by_matmul_is_exact():
    torch.manual_seed(7)
    acts = nsp.Activations(Gram(3), torch.randn(1, 3), trace="ops")
    assert acts.layernames == ["input", "fc", "unsqueeze", "unsqueeze_1", "matmul"]
    graph = nsp.NNGraph(acts)
    assert graph.core.kinds[-1] == "matmul"
    off = graph.core.offsets
    adj = graph.core.adjacency.toarray()
    # out[i, j] = h[i] * h[j]: reads h[i] through the (3, 1) branch and h[j] through the (1, 3) branch
    from_col = adj[off[4]:off[5], off[2]:off[3]]
    from_row = adj[off[4]:off[5], off[3]:off[4]]
    assert np.array_equal(from_col, np.repeat(np.eye(3, dtype=np.int8), 3, axis=0))
    assert np.array_equal(from_row, np.tile(np.eye(3, dtype=np.int8), (3, 1)))


class CumSum(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x):
        return self.fc(x).cumsum(dim=1)


def test_jacobian_fallback_is_exact_for_small_operations():
    acts = nsp.Activations(CumSum(4), torch.randn(1, 4), trace="ops")
    graph = nsp.NNGraph(acts)
    assert graph.core.kinds[-1] == "jacobian"
    off = graph.core.offsets
    assert np.array_equal(graph.core.adjacency.toarray()[off[2]:off[3], off[1]:off[2]],
                          np.tril(np.ones((4, 4), dtype=np.int8)))


def test_unsupported_operation_too_large_for_fallback():
    acts = nsp.Activations(CumSum(64), torch.randn(1, 64), trace="ops")
    with pytest.raises(nsp.ConnectivityError,
                       match=r"layer 2 \('cumsum'\): operation 'cumsum' .* exceeds the fallback limit of 1,000"):
        nsp.NNGraph(acts, jacobian_limit=1000)


class SumPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)

    def forward(self, x):
        return self.fc(x).sum(dim=1, keepdim=True)


def test_structural_fallback_ignores_zero_weights():
    net = SumPool()
    with torch.no_grad():
        net.fc.weight.zero_()
    children = nsp.Activations(nn.Sequential(net), torch.ones(1, 4))
    # the child is a whole module without a rule: the Jacobian is zero at the trained
    # (zero) weights, the structural graph still has every path
    assert nsp.NNGraph(children).core.adjacency.toarray()[4:, :4].tolist() == [[1, 1, 1, 1]]
    assert nsp.NNGraph(children, INCL=False).core.adjacency.nnz == 0


class ConvReluPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(F.relu(self.conv(x)))


def test_children_mode_input_local_pool_uses_what_the_pool_received():
    net = ConvReluPool()
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
        net.conv.bias.zero_()
    x = torch.tensor([[[[-3.0, -1.0], [-2.0, -4.0]]]])
    acts = nsp.Activations(net, x)
    assert acts.layernames == ["input", "conv", "pool"]
    adj = nsp.NNGraph(acts, INCL=False).core.adjacency
    _, index = F.max_pool2d(F.relu(x), 2, return_indices=True)   # ties among the zeros after ReLU
    assert index.item() != 1                                      # the pre-ReLU maximum is at 1
    assert adj[8].indices.tolist() == [4 + index.item()]


def test_jacobian_fallback_has_a_time_budget(monkeypatch):
    from nsp.operations import jacobian
    monkeypatch.setattr(jacobian, "JACOBIAN_SECONDS", -1)
    acts = nsp.Activations(CumSum(4), torch.randn(1, 4), trace="ops")
    # refused up front: 3 x 4 backward passes, each at least one forward pass
    with pytest.raises(nsp.ConnectivityError, match=r"layer 2 \('cumsum'\): operation 'cumsum' .* has no connectivity "
                                                    r"rule, and its Jacobian fallback would take at least [\d.]+ s "
                                                    r"\(12 backward passes of an operation whose forward pass takes"):
        nsp.NNGraph(acts)
    monkeypatch.setattr(jacobian._Budget, "estimate", lambda self, *args: None)
    with pytest.raises(nsp.ConnectivityError, match=r"layer 2 \('cumsum'\): operation 'cumsum' .* has no connectivity "
                                                    r"rule and its Jacobian fallback passed its time budget"):
        nsp.NNGraph(acts)
