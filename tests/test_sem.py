"""The sum-product ("sem") transform with the network's own weights: c = (I - A) s."""

import copy
import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp import storage, zoo
from nsp.graph.core import GraphCore
from nsp.transforms.sem import SemTransform
from nsp.graph.weights import weighted_adjacency

from test_connectivity import CONV_CASES, LINEAR_CASES, OTHER_CASES, POOL_CASES


def recorded(net, x, trace="ops"):
    """Core and float64 pattern of a double-precision copy of ``net``."""
    net = copy.deepcopy(net).double().eval()              # the shared test modules stay float32
    acts = nsp.Activations(net, x.double(), trace=trace)
    return GraphCore.from_activations(acts), acts.to_array(np.float64).reshape(1, -1)


def layer(core, values, index):
    return values[..., core.offsets[index]:core.offsets[index + 1]]


def test_diamond_identity():
    a = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0]], dtype=float))
    sem = SemTransform().fit(a)
    assert np.array_equal(sem.inverse_transform([1, 2, 3, 4]), [1, 3, 4, 11])
    assert np.array_equal(sem.transform([1, 3, 4, 11]), [1, 2, 3, 4])
    weighted = SemTransform().fit(a.multiply(2.0))            # paths multiply their weights, then add
    assert np.array_equal(weighted.inverse_transform([1, 0, 0, 0]), [1, 2, 2, 8])


class MLP(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.a = nn.Linear(6, 5, bias=bias)
        self.b = nn.Linear(5, 4, bias=bias)
        self.c = nn.Linear(4, 3, bias=bias)

    def forward(self, x):
        return self.c(torch.tanh(self.b(F.relu(self.a(x)))))


def test_mlp_spectrum_is_inputs_biases_and_nonlinearity_residuals():
    torch.manual_seed(0)
    net = MLP()
    x = torch.randn(1, 6)
    core, s = recorded(net, x)
    assert core.names == ["input", "a", "relu", "b", "tanh", "c"]
    c = SemTransform().fit(core).transform(s)
    assert np.array_equal(layer(core, c, 0), layer(core, s, 0))
    for index, module in ((1, net.a), (3, net.b), (5, net.c)):
        assert np.allclose(layer(core, c, index)[0], module.bias.detach().numpy(), rtol=0, atol=1e-14)
    for index, fn in ((2, F.relu), (4, torch.tanh)):
        z = torch.from_numpy(layer(core, s, index - 1)[0])
        assert np.allclose(layer(core, c, index)[0], (fn(z) - z).numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("trace", ["children", "ops"])
def test_bias_free_linear_network_has_no_spectrum_beyond_the_inputs(trace):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Identity(), nn.Linear(5, 4, bias=False),
                        nn.Dropout(0.3), nn.Linear(4, 2, bias=False))
    core, s = recorded(net, torch.randn(1, 6), trace)
    c = SemTransform().fit(core).transform(s)
    assert np.array_equal(layer(core, c, 0), layer(core, s, 0))
    assert np.abs(c[0, core.offsets[1]:]).max() <= 1e-15 * np.abs(s).max()


class Mixed(nn.Module):
    """Every kind of linear part: conv (groups, dilation, circular padding), BN, average and max
    pooling (ceil mode), affine and nonlinear elementwise ops, a residual difference, cat, linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1, padding_mode="circular")
        self.grouped = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(8 * 3 * 3, 5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):                                   # (1, 2, 6, 6)
        h = F.relu(self.conv(x))
        g = self.bn(self.grouped(h)) * 0.5 - h              # affine in both inputs: 0.5 * scale, -1
        p = F.avg_pool2d(g, 3, stride=3, padding=1, ceil_mode=True)           # (1, 4, 3, 3)
        q = F.max_pool2d(torch.sigmoid(h), 2)                                  # (1, 4, 3, 3)
        return self.fc(torch.flatten(torch.cat([p, q * p], 1), 1))


SMALL = {
    "mixed": (Mixed, (1, 2, 6, 6)),
    "residual_cnn": (zoo.ResidualCNN, (1, 1, 8, 8)),
    "resnet": (lambda: zoo.ResNet(2), (1, 3, 8, 8)),
    "mnist": (zoo.MnistNet, (1, 1, 28, 28)),
    "mlp": (MLP, (1, 6)),
}


@pytest.mark.parametrize("name", list(SMALL))
def test_layerwise_equals_dense_i_minus_a_and_round_trips(name):
    make, shape = SMALL[name]
    torch.manual_seed(2)
    core, s = recorded(make(), torch.randn(*shape))
    sem = SemTransform().fit(core)
    c = sem.transform(s)
    a = weighted_adjacency(core).toarray()
    dense = s @ (np.eye(core.n_nodes) - a).T
    assert np.abs(c - dense).max() <= 1e-12 * np.abs(s).max()
    assert np.abs(sem.inverse_transform(c) - s).max() <= 1e-12 * np.abs(s).max()
    random = np.random.default_rng(3).standard_normal((3, core.n_nodes))
    back = sem.inverse_transform(sem.transform(random))
    assert np.abs(back - random).max() <= 1e-12 * np.abs(random).max()


def test_mixed_network_spectrum_by_operation():
    torch.manual_seed(2)
    net = Mixed()
    core, s = recorded(net, torch.randn(1, 2, 6, 6))
    c = SemTransform().fit(core).transform(s)
    names = core.names
    kinds = {n: core.linear[i][0][0].kind for i, n in enumerate(names) if i}
    assert kinds["conv"] == "conv" and kinds["max_pool2d"] == "max" and kinds["fc"] == "linear"
    conv = layer(core, c, names.index("conv"))[0].reshape(4, 6, 6)
    assert np.allclose(conv, net.conv.bias.detach().numpy()[:, None, None], rtol=0, atol=1e-13)
    assert np.abs(layer(core, c, names.index("grouped"))).max() <= 1e-13        # no bias
    bn = net.bn
    shift = (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    assert np.allclose(layer(core, c, names.index("bn"))[0].reshape(4, 6, 6), shift[:, None, None], atol=1e-13)
    for zero in ("mul", "sub", "avg_pool2d", "max_pool2d", "cat", "flatten"):
        assert np.abs(layer(core, c, names.index(zero))).max() <= 1e-13, zero
    # a product of two layers is not linear: unit weights, so it adds p * q - p - q
    p, q = layer(core, s, names.index("avg_pool2d")), layer(core, s, names.index("max_pool2d"))
    assert np.allclose(layer(core, c, names.index("mul_1")), p * q - p - q, atol=1e-13)
    parts = {n: core.linear[i] for i, n in enumerate(names) if i}
    assert float(parts["mul"][0][0].arrays["r"]) == 0.5
    assert [float(part.arrays["r"]) for part, _, _ in parts["sub"]] == [1.0, -1.0]


SINGLE = CONV_CASES + POOL_CASES + LINEAR_CASES + OTHER_CASES


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("module, shape", SINGLE, ids=[repr(m) for m, _ in SINGLE])
def test_single_operations_against_dense(module, shape):
    torch.manual_seed(4)
    core, s = recorded(nn.Sequential(module), torch.randn(*shape), trace="children")
    sem = SemTransform().fit(core)
    c = sem.transform(s)
    dense = s @ (np.eye(core.n_nodes) - weighted_adjacency(core).toarray()).T
    assert np.abs(c - dense).max() <= 1e-12 * np.abs(s).max()
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):      # the spectrum is the bias
        out = layer(core, c, 1)[0].reshape(core.shapes[1])
        b = np.zeros(1) if module.bias is None else module.bias.detach().numpy()
        expected = b if isinstance(module, nn.Linear) else b.reshape((-1,) + (1,) * (out.ndim - 1))
        assert np.allclose(out, np.broadcast_to(expected, out.shape), rtol=0, atol=1e-12)


def test_storage_round_trips_edge_weights(tmp_path):
    torch.manual_seed(5)
    core, s = recorded(Mixed(), torch.randn(1, 2, 6, 6))
    storage.write_graph(tmp_path / "g.h5", core)
    loaded = storage.read_graph(tmp_path / "g.h5")
    assert (weighted_adjacency(loaded) != weighted_adjacency(core)).nnz == 0
    sem = SemTransform().fit(core)
    storage.write_transformer(tmp_path / "t.h5", sem)
    with storage.open_file(tmp_path / "t.h5", "transformer") as f:
        assert f.attrs["transform-type"] == "sem" and f["transform"].attrs["encoding-type"] == "nsp.sem-transform"
    again = storage.read_transformer(tmp_path / "t.h5")
    assert np.array_equal(again.transform(s), sem.transform(s))
    graph = nsp.NNGraph(nsp.Activations(Mixed().double().eval(), torch.randn(1, 2, 6, 6).double(), trace="ops"))
    spectrum = graph.transform(nsp.Activations(Mixed().double().eval(), torch.randn(1, 2, 6, 6).double(),
                                               trace="ops"), type="sem")
    assert spectrum.transform_type == "sem" and isinstance(graph.get_transformer("sem"), SemTransform)


def test_errors():
    torch.manual_seed(6)
    core, _ = recorded(MLP(), torch.randn(1, 6))
    core.linear = None
    with pytest.raises(ValueError, match="needs the graph's edge weights"):
        SemTransform().fit(core)
    with pytest.raises(ValueError, match="strictly lower triangular"):
        SemTransform().fit(np.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(nsp.NotFittedError, match="not fitted"):
        SemTransform().transform([1.0, 2.0])
    with pytest.raises(ValueError, match="signals must have shape"):
        SemTransform().fit(np.zeros((2, 2))).transform([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown transform type 'sum'; accepted: influence, laplacian, sem, standard"):
        nsp.make_transform("sum")


class ConvRelu(nn.Module):
    """A container with a forward of its own (no rule): children mode collapses it into one block."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x)) + self.conv(x)


class HeadsMoved(nn.Module):
    """Attention-style regrouping that moves the batch axis off the front before a linear map reads it."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.proj = nn.Linear(2, 3)

    def forward(self, x):                                        # (1, 5, 4)
        qkv = self.qkv(x).reshape(1, 5, 3, 2, 2).permute(2, 0, 3, 1, 4)   # (3, 1, 2, 5, 2)
        return self.proj(torch.tanh(qkv))                        # a linear part on a tensor whose axis 0 is not the batch


@pytest.mark.parametrize("make,shape,trace", [
    (lambda: nn.Sequential(ConvRelu(2, 3), nn.Flatten(), nn.Linear(75, 4)), (1, 2, 5, 5), "children"),
    (HeadsMoved, (1, 5, 4), "ops"),
])
def test_collapsed_containers_and_moved_batch_axes_match_dense(make, shape, trace):
    torch.manual_seed(8)
    core, s = recorded(make(), torch.randn(*shape), trace)
    signals = np.vstack([s, np.random.default_rng(9).standard_normal((2, core.n_nodes))])
    sem = SemTransform().fit(core)
    c = sem.transform(signals)
    a = weighted_adjacency(core).toarray()
    dense = signals @ (np.eye(core.n_nodes) - a).T
    assert np.abs(c - dense).max() <= 1e-13 * np.abs(signals).max()
    assert np.abs(sem.inverse_transform(c) - signals).max() <= 1e-13 * np.abs(signals).max()


def test_eval_batch_norm_coefficients_are_float64_exact_on_a_float32_network():
    torch.manual_seed(10)
    bn = nn.BatchNorm2d(3).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.1, 3)
        bn.weight.uniform_(0.3, 2)
        bn.bias.uniform_(-1, 1)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), bn).eval()                  # float32 throughout
    for trace in ("children", "ops"):
        acts = nsp.Activations(net, torch.randn(1, 1, 6, 6), trace=trace)
        core = GraphCore.from_activations(acts)
        s = acts.to_array(np.float64).reshape(1, -1)
        c = SemTransform().fit(core).transform(s)
        scale = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).detach()
        expected = layer(core, s, 2) - (layer(core, s, 1).reshape(3, 16) * scale.numpy()[:, None]).reshape(1, -1)
        assert np.abs(layer(core, c, 2) - expected).max() <= 4e-16 * np.abs(layer(core, s, 2)).max()
