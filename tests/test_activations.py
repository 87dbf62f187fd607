"""Activations: reference semantics in children mode, full dataflow in ops mode, bad inputs."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.zoo import MnistNet, ToyNet, load_state_npz


def test_toy_children_layers_match_reference():
    torch.manual_seed(0)
    net = ToyNet()
    x = torch.rand(1, 1, 4, 4)
    acts = nsp.Activations(net, x)
    assert acts.layernames == ["input", "conv1", "conv2", "fc"]
    assert acts.layerdescriptions[0] == "Input[1, 1, 4, 4]"
    assert acts.layerdescriptions[1:] == [net.conv1, net.conv2, net.fc]
    h1 = net.conv1(x)
    h2 = net.conv2(torch.sigmoid(h1))
    out = net.fc(torch.sigmoid(h2).view(-1, 32))
    expected = [x[0], h1[0], h2[0], out[0]]
    assert [tuple(a.shape) for a in acts.layeractivations] == [(1, 4, 4), (2, 3, 3), (8, 2, 2), (8,)]
    for got, want in zip(acts.layeractivations, expected):
        assert torch.equal(got, want.detach())
    assert acts.layerparents == [(), (0,), (1,), (2,)]


def test_mnist_fixture_children_values(mnist_weights):
    net = load_state_npz(MnistNet(), mnist_weights)
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    acts = nsp.Activations(net, x)
    assert acts.layernames == ["input", "cnn1", "maxpool1", "cnn2", "maxpool2", "fc1"]
    with torch.no_grad():
        c1 = net.cnn1(x)
        p1 = F.max_pool2d(F.relu(c1), 2)
        c2 = net.cnn2(p1)
        p2 = F.max_pool2d(F.relu(c2), 2)
        out = net.fc1(p2.view(1, -1))
    for got, want in zip(acts.layeractivations, [x, c1, p1, c2, p2, out]):
        assert torch.equal(got, want[0])
    assert acts.n_neurons == 9594


def test_to_vector_and_back_round_trip():
    torch.manual_seed(1)
    acts = nsp.Activations(ToyNet(), torch.rand(1, 1, 4, 4))
    vector = acts.to_vector()
    assert isinstance(vector, list) and len(vector) == 74
    assert vector[:16] == acts.layeractivations[0].reshape(-1).tolist()
    assert vector[66:] == acts.layeractivations[3].tolist()
    back = acts.to_activations(vector)
    for a, b in zip(acts.layeractivations, back.layeractivations):
        assert torch.equal(a, b)
    signal = np.arange(74, dtype=np.float64)
    other = acts.to_activations(signal)
    assert other.layeractivations[1].dtype == torch.float64
    assert other.layeractivations[1][0, 0, 1].item() == 17.0          # offset 16 + C-order index 1
    assert np.array_equal(other.to_array(np.float64), signal)
    assert other.layernames == acts.layernames and other is not acts
    assert torch.equal(acts.layeractivations[0], back.layeractivations[0])  # original untouched


def test_to_activations_rejects_wrong_length():
    acts = nsp.Activations(ToyNet(), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="signal has 73 values; this pattern has 74 neurons"):
        acts.to_activations([0.0] * 73)


class ChildrenNet(nn.Module):
    """ReLU and Flatten as children."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.conv(x))))


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        return F.relu(self.conv2(h) + x)


def test_children_and_ops_with_module_children():
    torch.manual_seed(2)
    net, x = ChildrenNet(), torch.randn(1, 1, 6, 6)
    children = nsp.Activations(net, x)
    ops = nsp.Activations(net, x, trace="ops")
    assert children.layernames == ["input", "conv", "relu", "flatten", "fc"]
    assert ops.layernames == ["input", "conv", "relu", "flatten", "fc"]
    assert ops.layerparents == [(), (0,), (1,), (2,), (3,)]
    for a, b in zip(children.layeractivations, ops.layeractivations):
        assert torch.equal(a, b)
    graph = nsp.NNGraph(ops)
    # conv 48*9 + relu 48 + flatten 48 + fc 5*48
    assert graph.number_of_edges() == 48 * 9 + 48 + 48 + 240
    assert graph.core.kinds == ["input", "conv", "elementwise", "reshape", "linear"]


def test_children_and_ops_with_functional_relu():
    torch.manual_seed(3)
    net, x = FunctionalNet(), torch.randn(1, 1, 6, 6)
    children = nsp.Activations(net, x)
    ops = nsp.Activations(net, x, trace="ops")
    assert children.layernames == ["input", "conv", "fc"]
    assert ops.layernames == ["input", "conv", "relu", "flatten", "fc"]
    assert [str(d) for d in ops.layerdescriptions[2:4]] == ["relu(conv, inplace=False)", "flatten(relu, 1)"]
    assert torch.equal(ops.layeractivations[2], F.relu(children.layeractivations[1]))
    assert torch.equal(ops.layeractivations[-1], children.layeractivations[-1])
    # children mode links fc directly to the conv output (the reference's graph)
    assert nsp.NNGraph(children).number_of_edges() == 48 * 9 + 5 * 48


def test_residual_block_parents_and_edges():
    torch.manual_seed(4)
    net, x = ResidualNet(), torch.randn(1, 2, 4, 4)
    ops = nsp.Activations(net, x, trace="ops")
    assert ops.layernames == ["input", "conv1", "relu", "conv2", "add", "relu_1"]
    assert ops.layerparents == [(), (0,), (1,), (2,), (3, 0), (4,)]
    graph = nsp.NNGraph(ops)
    add = graph.core.offsets[4]
    # every output of the addition reads the same neuron of conv2 and of the input
    for k in range(32):
        assert sorted(graph.core.adjacency[add + k].indices.tolist()) == [k, graph.core.offsets[3] + k]
    assert torch.equal(ops.layeractivations[-1], net(x)[0])


class InPlaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc1(x)
        h.mul_(2)
        return self.fc2(self.act(h))


def test_ops_mode_snapshots_in_place_operations():
    torch.manual_seed(5)
    net, x = InPlaceNet(), torch.randn(1, 4)
    ops = nsp.Activations(net, x, trace="ops")
    assert ops.layernames == ["input", "fc1", "mul_", "act", "fc2"]
    pre = net.fc1(x)[0].detach()
    assert torch.equal(ops.layeractivations[1], pre)
    assert torch.equal(ops.layeractivations[2], pre * 2)
    assert torch.equal(ops.layeractivations[3], torch.relu(pre * 2))
    # the ReLU reads the tensor after the in-place multiplication
    assert ops.layerparents[3] == (2,)


def test_children_mode_does_not_clobber_values_with_in_place_relu():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True))
    x = torch.randn(1, 4)
    acts = nsp.Activations(net, x)
    assert torch.equal(acts.layeractivations[1], net[0](x)[0].detach())
    assert (acts.layeractivations[1] < 0).any()


class BranchyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


def test_ops_mode_captures_data_dependent_control_flow_from_a_real_forward_pass():
    recording = nsp.record(BranchyNet(), torch.ones(1, 3), "ops")
    assert recording.capture.startswith("functions (torch.fx could not trace BranchyNet")
    assert recording.table.names[0] == "input" and recording.table.names[-1] == "fc"   # the branch taken
    assert nsp.Activations(BranchyNet(), torch.ones(1, 3)).layernames == ["input", "fc"]


def test_batch_larger_than_one_is_rejected():
    with pytest.raises(ValueError, match=r"batch axis of size 1; got shape \(2, 1, 4, 4\)"):
        nsp.Activations(ToyNet(), torch.rand(2, 1, 4, 4))


def test_wrong_input_shape_is_reported():
    with pytest.raises(ValueError, match=r"ToyNet failed on an input of shape \(1, 1, 5, 5\)"):
        nsp.Activations(ToyNet(), torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match=r"ToyNet failed on an input of shape \(1, 3, 4, 4\)"):
        nsp.Activations(ToyNet(), torch.rand(1, 3, 4, 4), trace="ops")


def test_non_module_network_is_rejected():
    with pytest.raises(TypeError, match="network must be a torch.nn.Module, got function"):
        nsp.Activations(lambda x: x, torch.rand(1, 3))


def test_unknown_trace_mode_lists_accepted():
    with pytest.raises(ValueError, match="unknown trace mode 'graph'; accepted: children, ops"):
        nsp.Activations(ToyNet(), torch.rand(1, 1, 4, 4), trace="graph")


class TwoBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(4, 5)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], 1)


def test_children_mode_rejects_non_chain_dataflow():
    with pytest.raises(nsp.TraceError, match=r"child module 'b' \(Linear\).*received \(1, 4\).*trace='ops'"):
        nsp.Activations(TwoBranch(), torch.rand(1, 4))
    ops = nsp.Activations(TwoBranch(), torch.rand(1, 4), trace="ops")
    assert ops.layerparents == [(), (0,), (0,), (1, 2)]


class ListNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 2)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_children_mode_rejects_uncalled_children():
    with pytest.raises(nsp.TraceError, match=r"none of the direct children of ListNet \(blocks\) was called"):
        nsp.Activations(ListNet(), torch.rand(1, 3))
    assert nsp.Activations(ListNet(), torch.rand(1, 3), trace="ops").layernames == ["input", "blocks_0", "blocks_1"]


class _HeadsFirst(nn.Module):
    """Attention-style regrouping that moves the batch axis off the front (timm's qkv.permute(2, 0, 3, 1, 4))."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def forward(self, x):                                   # (B, 5, 4)
        q = self.qkv(x).reshape(x.shape[0], 5, 3, 2, 2).permute(2, 0, 3, 1, 4)
        return q.tanh().sum(0)


class _Merged(nn.Module):
    def forward(self, x):                                   # (B, 5, 4) -> (B * 5, 4): samples no longer on one axis
        return x.reshape(-1, 4).tanh()


def test_a_batch_records_each_sample_as_it_alone_would_even_when_a_permute_moved_the_batch_axis():
    torch.manual_seed(0)
    net = _HeadsFirst().eval()
    x = torch.randn(3, 5, 4)                                # 3 samples: as many as the permuted axis of size 3
    batch = nsp.record(net, x, "ops")
    for i in range(3):
        alone = nsp.record(net, x[i:i + 1], "ops")
        assert np.array_equal(batch.values()[i], alone.values()[0])
        assert batch.table.shapes == alone.table.shapes and batch.table.n_nodes == alone.table.n_nodes
    with pytest.raises(nsp.tracing.TraceError, match=r"layer '\w+' has shape \(10, 4\) for 2 samples and \(5, 4\) "
                                                      r"for one: its samples are not along one axis"):
        nsp.record(_Merged(), torch.randn(2, 5, 4), "ops")


def test_record_values_takes_one_sample_at_a_time_where_the_batch_axis_is_merged():
    """Swin's window partition folds the samples into the windows' axis: the pipeline's collect stage then
    records each sample alone, and gets what one sample alone gives."""
    from nsp.tracing.recording import BatchAxisError, record_values
    torch.manual_seed(0)
    x = torch.randn(3, 5, 4)
    with pytest.raises(BatchAxisError):
        nsp.record(_Merged(), x, "ops")
    values = record_values(_Merged(), x, "ops")
    want = np.concatenate([nsp.record(_Merged(), x[i:i + 1], "ops").values() for i in range(3)])
    assert values.shape == (3, 60) and np.array_equal(values, want)          # input, reshape, tanh
    net = _HeadsFirst().eval()
    assert np.array_equal(record_values(net, x, "ops"), nsp.record(net, x, "ops").values())
