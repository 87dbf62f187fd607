"""Connectivity rules against brute force: every block of the adjacency equals the
nonzero pattern of a Jacobian (or of the outputs on basis inputs) computed here,
independently of nsp's rules, on small seeded shapes.

Children mode: a single-layer ``nn.Sequential(op)``, block = rows of layer 1, columns of layer 0.
Ops mode: small custom modules; each layer's blocks against the Jacobian of that one operation
at the recorded parent values, and nothing anywhere else in the adjacency.
"""

import copy
from math import prod

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.operations.blocks import Kron

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- brute force -------------------------------------------------------------

def jac_patterns(fn, *xs):
    """Nonzero pattern (n_out, n_in_k) of d fn / d xs[k], in float64, one array per input."""
    xs = tuple(x.detach().to(torch.float64) for x in xs)
    jac = torch.autograd.functional.jacobian(fn, xs)
    n_out = fn(*xs).numel()
    return [(j.reshape(n_out, -1) != 0).numpy() for j in jac]


def basis_pattern(fn, shape):
    """(n_out, n_in) pattern of a pooling op: output o is nonzero on basis vector e_i iff i is in o's window."""
    n_in = prod(shape)
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape)
    with torch.no_grad():
        out = fn(eye).reshape(n_in, -1)
    return (out != 0).numpy().T


def as_double(module):
    return copy.deepcopy(module).double()


def ones_weights(module):
    """A float64 copy of a conv/linear module with weight 1 and bias 0."""
    m = as_double(module)
    with torch.no_grad():
        m.weight.fill_(1)
        if m.bias is not None:
            m.bias.zero_()
    return m


def expected_children_block(module, x, incl=True):
    """Expected (n_out, n_in) boolean block of nn.Sequential(module) on x (batch axis 1)."""
    if not incl:
        return jac_patterns(as_double(module), x)[0]
    if isinstance(module, WEIGHTED):
        return jac_patterns(ones_weights(module), x)[0]
    if isinstance(module, POOLS):
        return basis_pattern(as_double(module), tuple(x.shape[1:]))
    # elementwise / normalisation / softmax: evaluate where ReLU-like ops are active
    return jac_patterns(as_double(module), x.abs() + 0.5)[0]


# --- reading the graph ---------------------------------------------------------

def block(graph, layer, parent):
    adj, off = graph.core.adjacency, graph.core.offsets
    return adj[off[layer]:off[layer + 1], off[parent]:off[parent + 1]].toarray() != 0


def stored_block(blk):
    """Dense boolean form of a Kron / Coo block from its coo()."""
    rows, cols = blk.coo()
    dense = np.zeros(blk.shape, dtype=bool)
    dense[rows, cols] = True
    return dense


def check_adjacency_shape(graph):
    adj = graph.core.adjacency
    n = graph.core.n_nodes
    assert adj.shape == (n, n)
    assert sp.triu(adj).nnz == 0, "adjacency must be strictly lower triangular"
    assert np.all(adj.data == 1)
    coo = adj.tocoo()
    keys = coo.row.astype(np.int64) * n + coo.col
    assert np.all(np.diff(keys) > 0), "CSR not canonical (unsorted or duplicate entries)"
    assert graph.number_of_nodes() == n and graph.number_of_edges() == adj.nnz


def children_graph(module, x, incl=True):
    if module.training and isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
        with pytest.warns(UserWarning, match=r"Sequential is in training mode; .* \(1 in all\)"):
            acts = nsp.Activations(nn.Sequential(module), x)
    else:
        acts = nsp.Activations(nn.Sequential(module), x)
    graph = nsp.NNGraph(acts, INCL=incl)
    assert graph.core.n_layers == 2
    assert graph.core.shapes == [tuple(x.shape[1:]), tuple(acts.layeractivations[1].shape)]
    return acts, graph


def check_single_block(graph, expected, factored=None):
    check_adjacency_shape(graph)
    got = block(graph, 1, 0)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert graph.core.adjacency.nnz == expected.sum(), "edges outside the (layer 1, layer 0) block"
    ((parent, blk),) = graph.core.blocks[1]
    assert parent == 0
    assert tuple(blk.shape) == expected.shape
    assert np.array_equal(stored_block(blk), expected)
    if factored is not None:
        assert graph.core.is_factored(1) is factored
        assert isinstance(blk, Kron) is factored


def fresh(module):
    """A copy of a (module-level, shared) test module with seeded random parameters."""
    module = copy.deepcopy(module)
    with torch.no_grad():
        for param in module.parameters():
            param.normal_()
    return module


def run_structural(module, shape):
    module = fresh(module)
    x = torch.randn(*shape)
    _, graph = children_graph(module, x)
    expected = expected_children_block(module, x)
    factored = True if isinstance(module, WEIGHTED + POOLS) else None
    check_single_block(graph, expected, factored)
    return expected


# --- children mode, structural (INCL=True) ---------------------------------------

CONV_CASES = [
    (nn.Conv1d(2, 3, 3), (1, 2, 7)),
    (nn.Conv1d(2, 3, 3, stride=2, padding=1), (1, 2, 8)),
    (nn.Conv1d(2, 3, 2, padding="same", dilation=2), (1, 2, 7)),
    (nn.Conv1d(4, 6, 3, groups=2, padding="valid"), (1, 4, 6)),
    (nn.Conv1d(1, 1, 2, padding=3), (1, 1, 4)),                    # corner outputs read only padding
    (nn.Conv1d(2, 2, 3, padding=2, padding_mode="circular"), (1, 2, 5)),
    (nn.Conv1d(2, 2, 3, padding=2, padding_mode="reflect"), (1, 2, 5)),
    (nn.Conv1d(2, 2, 3, padding=1, stride=2, padding_mode="replicate"), (1, 2, 6)),
    (nn.Conv1d(2, 3, 4, padding="same", padding_mode="reflect"), (1, 2, 6)),
    (nn.Conv2d(2, 3, 3), (1, 2, 5, 6)),
    (nn.Conv2d(4, 6, 3, groups=2, stride=(2, 1), padding=(1, 0)), (1, 4, 5, 6)),
    (nn.Conv2d(3, 3, 3, groups=3, bias=False), (1, 3, 4, 5)),
    (nn.Conv2d(2, 3, (2, 3), padding="same", dilation=(1, 2)), (1, 2, 5, 6)),
    (nn.Conv2d(2, 3, 3, stride=2, dilation=2, padding=2), (1, 2, 7, 6)),
    (nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular"), (1, 2, 4, 5)),
    (nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode="reflect"), (1, 2, 4, 5)),
    (nn.Conv2d(2, 3, 3, padding=2, stride=2, padding_mode="replicate"), (1, 2, 4, 5)),
    (nn.Conv2d(4, 6, 3, groups=2, padding="same", padding_mode="circular"), (1, 4, 4, 4)),
    (nn.Conv3d(2, 2, (2, 3, 2), stride=(1, 2, 1), padding=(1, 1, 0)), (1, 2, 3, 5, 4)),
    (nn.Conv3d(4, 2, 3, groups=2, padding="same", padding_mode="circular"), (1, 4, 3, 4, 3)),
    (nn.Conv3d(1, 2, 2, dilation=2, padding="valid"), (1, 1, 4, 5, 4)),
    (nn.Conv3d(2, 2, 3, padding=1, padding_mode="replicate"), (1, 2, 3, 3, 4)),
    (nn.Conv3d(2, 2, 2, padding=1, padding_mode="reflect"), (1, 2, 3, 3, 3)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("module, shape", CONV_CASES, ids=[repr(m) for m, _ in CONV_CASES])
def test_conv_structural(module, shape):
    run_structural(module, shape)


POOL_CASES = [
    (nn.MaxPool1d(3, stride=2, padding=1), (1, 2, 8)),
    (nn.MaxPool1d(2, ceil_mode=True), (1, 2, 7)),
    (nn.MaxPool1d(3, stride=2, dilation=2, ceil_mode=True), (1, 2, 8)),
    (nn.MaxPool1d(3, stride=2, padding=1, dilation=2, ceil_mode=True), (1, 1, 9)),
    (nn.MaxPool2d(2), (1, 2, 5, 6)),
    (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
    (nn.MaxPool2d((2, 3), stride=(2, 1), dilation=(2, 1)), (1, 2, 6, 6)),
    (nn.MaxPool2d(2, stride=3, ceil_mode=True), (1, 1, 6, 8)),
    (nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True), (1, 2, 5)),  # ceil window starting in padding dropped
    (nn.MaxPool3d(2, stride=2, ceil_mode=True), (1, 2, 3, 5, 4)),
    (nn.MaxPool3d((2, 2, 3), stride=1, padding=(1, 0, 1), dilation=(1, 2, 1)), (1, 2, 3, 4, 4)),
    (nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 8)),
    (nn.AvgPool1d(2, ceil_mode=True), (1, 2, 5)),
    (nn.AvgPool1d(2, stride=2, padding=1, ceil_mode=True), (1, 2, 5)),
    (nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (1, 2, 5, 6)),
    (nn.AvgPool2d((2, 3), stride=2, ceil_mode=True), (1, 2, 5, 6)),
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (1, 1, 6, 6)),
    (nn.AvgPool2d(2, divisor_override=3), (1, 2, 4, 5)),
    (nn.AvgPool3d(2, ceil_mode=True), (1, 2, 3, 3, 3)),
    (nn.AdaptiveAvgPool1d(3), (1, 2, 7)),
    (nn.AdaptiveAvgPool2d(3), (1, 2, 7, 7)),
    (nn.AdaptiveAvgPool2d((3, 2)), (1, 2, 7, 5)),
    (nn.AdaptiveAvgPool2d((5, None)), (1, 2, 3, 4)),                # output larger than input
    (nn.AdaptiveMaxPool2d(3), (1, 2, 7, 7)),
    (nn.AdaptiveMaxPool2d((2, 4)), (1, 2, 5, 6)),
    (nn.AdaptiveMaxPool3d((2, 3, 2)), (1, 1, 3, 7, 5)),
]


@pytest.mark.parametrize("module, shape", POOL_CASES, ids=[repr(m) for m, _ in POOL_CASES])
def test_pool_structural(module, shape):
    run_structural(module, shape)


def test_ceil_mode_cases_really_hang_over_the_edge():
    # guard for the test data itself: these ceil_mode cases change the output size
    for module, shape in [(nn.MaxPool1d(2, ceil_mode=True), (1, 2, 7)),
                          (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
                          (nn.AvgPool2d((2, 3), stride=2, ceil_mode=True), (1, 2, 5, 6))]:
        floor = copy.deepcopy(module)
        floor.ceil_mode = False
        x = torch.randn(*shape)
        assert module(x).numel() > floor(x).numel()


LINEAR_CASES = [
    (nn.Linear(5, 4), (1, 5)),
    (nn.Linear(5, 4), (1, 3, 5)),
    (nn.Linear(5, 4, bias=False), (1, 2, 3, 5)),
]


@pytest.mark.parametrize("module, shape", LINEAR_CASES, ids=["1d", "3x5", "2x3x5"])
def test_linear_structural(module, shape):
    expected = run_structural(module, shape)
    assert expected.sum() == prod(shape[:-1]) * 5 * 4


def _batchnorm_eval():
    bn = nn.BatchNorm2d(3)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(3, generator=gen))
        bn.running_var.copy_(torch.rand(3, generator=gen) + 0.5)
    return bn.eval()


OTHER_CASES = [
    (nn.Flatten(), (1, 2, 3, 4)),
    (nn.Flatten(2), (1, 2, 3, 4)),
    (nn.Unflatten(1, (2, 3)), (1, 6)),
    (nn.ReLU(), (1, 3, 4)),
    (nn.Sigmoid(), (1, 2, 3, 4)),
    (nn.Tanh(), (1, 5)),
    (nn.LeakyReLU(0.1), (1, 2, 5)),
    (nn.Identity(), (1, 2, 3)),
    (_batchnorm_eval(), (1, 3, 4, 5)),
    (nn.Dropout(0.5).eval(), (1, 3, 4)),
    (nn.Dropout2d(0.5).eval(), (1, 2, 3, 4)),
    (nn.LayerNorm([3, 4]), (1, 2, 3, 4)),
    (nn.LayerNorm(4), (1, 2, 3, 4)),
    (nn.Softmax(dim=1), (1, 3, 4)),
    (nn.Softmax(dim=-1), (1, 2, 3, 4)),
    (nn.LogSoftmax(dim=2), (1, 2, 3, 4)),
    # no rule: the Jacobian fallback
    (nn.ConvTranspose1d(2, 3, 3, stride=2), (1, 2, 4)),
    (nn.Upsample(scale_factor=2, mode="nearest"), (1, 2, 3)),
    (nn.GroupNorm(2, 4), (1, 4, 3)),
]


@pytest.mark.parametrize("module, shape", OTHER_CASES, ids=[repr(m) for m, _ in OTHER_CASES])
def test_other_modules_structural(module, shape):
    expected = run_structural(module, shape)
    if isinstance(module, (nn.Flatten, nn.Unflatten, nn.ReLU, nn.Sigmoid, nn.Identity, nn.BatchNorm2d,
                           nn.Dropout, nn.Dropout2d)):
        assert np.array_equal(expected, np.eye(prod(shape), dtype=bool))  # sanity of the brute force


def test_relu_edges_do_not_depend_on_the_sign_of_the_input():
    x = -torch.rand(1, 2, 3) - 0.1                   # every unit inactive
    for incl in (True, False):
        _, graph = children_graph(nn.ReLU(), x, incl)
        check_single_block(graph, np.eye(6, dtype=bool))


@pytest.mark.parametrize("module, shape", [
    (nn.BatchNorm2d(2).train(), (1, 2, 3, 3)),
    (nn.BatchNorm1d(2).train(), (1, 2, 4)),
    (nn.BatchNorm3d(2).train(), (1, 2, 2, 2, 2)),
    (nn.BatchNorm2d(2, track_running_stats=False).eval(), (1, 2, 3, 3)),
    (nn.InstanceNorm2d(2), (1, 2, 3, 3)),
    (nn.InstanceNorm1d(2, affine=True), (1, 2, 4)),
], ids=["bn2d-train", "bn1d-train", "bn3d-train", "bn2d-no-running-stats", "in2d", "in1d-affine"])
def test_batch_statistics_normalisation(module, shape):
    # normalising with statistics of the sample: every output reads its whole channel
    expected = run_structural(module, shape)
    channel = prod(shape[2:])
    assert np.all(expected.sum(axis=1) == channel)


# --- children mode, input-local (INCL=False) ---------------------------------------

def zero_some_weights(module, fraction=0.4):
    """Random weights with exact zeros: a random fraction, plus the first input column / kernel tap."""
    with torch.no_grad():
        module.weight.normal_()
        module.weight[torch.rand(module.weight.shape) < fraction] = 0
        if isinstance(module, nn.Linear):
            module.weight[:, 0] = 0
        else:
            module.weight[(slice(None), slice(None)) + (0,) * (module.weight.dim() - 2)] = 0
    return module


LOCAL_WEIGHTED_CASES = [
    (nn.Conv1d(2, 3, 3, padding=1), (1, 2, 6)),
    (nn.Conv1d(2, 2, 3, padding=2, padding_mode="circular"), (1, 2, 5)),
    (nn.Conv2d(4, 6, 3, groups=2, stride=(2, 1), padding=(1, 0)), (1, 4, 5, 6)),
    (nn.Conv2d(2, 3, 3, padding="same", dilation=2, padding_mode="reflect"), (1, 2, 5, 5)),
    (nn.Conv2d(2, 3, 2, padding=1, padding_mode="replicate"), (1, 2, 4, 3)),
    (nn.Conv3d(2, 2, 2, padding=1), (1, 2, 3, 3, 3)),
    (nn.Linear(5, 4), (1, 5)),
    (nn.Linear(5, 4), (1, 3, 5)),
]


@pytest.mark.parametrize("module, shape", LOCAL_WEIGHTED_CASES, ids=[repr(m) for m, _ in LOCAL_WEIGHTED_CASES])
def test_weighted_input_local_drops_zero_weights(module, shape):
    module = zero_some_weights(fresh(module))
    x = torch.randn(*shape)
    _, local = children_graph(module, x, incl=False)
    expected = expected_children_block(module, x, incl=False)
    check_single_block(local, expected)
    structural = expected_children_block(module, x, incl=True)
    assert expected.sum() < structural.sum() and not np.any(expected & ~structural)
    if isinstance(module, nn.Linear):           # linear stays factored (the weight mask is one factor)
        assert local.core.is_factored(1)


LOCAL_MAX_CASES = [
    (nn.MaxPool1d(3, stride=2, padding=1), (1, 2, 8)),
    (nn.MaxPool1d(3, stride=2, dilation=2, ceil_mode=True), (1, 2, 8)),
    (nn.MaxPool2d(2), (1, 2, 5, 6)),
    (nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
    (nn.MaxPool2d((2, 3), stride=(2, 1), dilation=(2, 1), padding=(1, 1)), (1, 2, 6, 6)),
    (nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True), (1, 2, 5)),
    (nn.MaxPool3d(2, stride=2, ceil_mode=True), (1, 2, 3, 5, 4)),
    (nn.MaxPool3d((2, 2, 3), stride=1, padding=(1, 0, 1), dilation=(1, 2, 1)), (1, 2, 3, 4, 4)),
    (nn.AdaptiveMaxPool2d(3), (1, 2, 7, 7)),
    (nn.AdaptiveMaxPool1d(4), (1, 3, 6)),
]


@pytest.mark.parametrize("module, shape", LOCAL_MAX_CASES, ids=[repr(m) for m, _ in LOCAL_MAX_CASES])
def test_maxpool_input_local_keeps_the_winner(module, shape):
    x = torch.randn(*shape)
    acts, local = children_graph(module, x, incl=False)
    expected = expected_children_block(module, acts.layeractivations[0].unsqueeze(0), incl=False)
    assert np.all(expected.sum(axis=1) == 1)
    check_single_block(local, expected)
    structural = expected_children_block(module, x, incl=True)
    assert not np.any(expected & ~structural)


@pytest.mark.parametrize("module, shape", [
    (nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7)),
    (nn.AdaptiveAvgPool2d(3), (1, 2, 7, 7)),
    (nn.Softmax(dim=1), (1, 3, 4)),
    (nn.Flatten(), (1, 2, 3)),
])
def test_input_local_equals_structural_without_weights_or_max(module, shape):
    x = torch.randn(*shape)
    _, local = children_graph(module, x, incl=False)
    check_single_block(local, expected_children_block(module, x, incl=True))


# --- ops mode ------------------------------------------------------------------------

def jac(fn, positive=False):
    """Spec: blocks = Jacobian pattern of fn at the parent values (or at |v| + 0.5 for ReLU-like ops)."""
    def expected(*values):
        if positive:
            values = [v.abs() + 0.5 for v in values]
        return jac_patterns(fn, *values)
    return expected


def basis(fn):
    """Spec for a structural max pooling: window membership from basis inputs."""
    return lambda value: [basis_pattern(fn, tuple(value.shape[1:]))]


def ones_like(w):
    return torch.ones(w.shape, dtype=torch.float64)


def check_ops(net, x, specs, incl=True):
    """specs: {layer name: (parent names, spec(*parent values) -> one block per parent)} for every
    non-input layer, in layer order. Compares the whole adjacency to the expected one."""
    acts = nsp.Activations(net, x, trace="ops")
    graph = nsp.NNGraph(acts, INCL=incl)
    names = acts.layernames
    assert names == ["input"] + list(specs)
    check_adjacency_shape(graph)
    off = graph.core.offsets
    want = np.zeros((graph.core.n_nodes,) * 2, dtype=bool)
    for layer, name in enumerate(names[1:], start=1):
        parent_names, spec = specs[name]
        assert {names[p] for p in acts.layerparents[layer]} == set(parent_names), name
        parents = [names.index(p) for p in parent_names]
        values = [acts.layeractivations[p].unsqueeze(0) for p in parents]
        for p, expected in zip(parents, spec(*values)):
            assert expected.shape == (graph.core.sizes[layer], graph.core.sizes[p]), (name, names[p])
            assert np.array_equal(block(graph, layer, p), expected), (name, names[p])
            want[off[layer]:off[layer + 1], off[p]:off[p + 1]] = expected
    # nothing outside the (layer, parent) blocks
    assert np.array_equal(graph.core.adjacency.toarray() != 0, want)
    return acts, graph


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.w2 = nn.Parameter(torch.randn(3, 4, 2, 2))
        self.lw = nn.Parameter(torch.randn(5, 12))

    def forward(self, x):                                   # (1, 2, 7, 7)
        y = F.conv2d(x, self.w, stride=1, padding=1)        # (1, 4, 7, 7)
        y = F.relu(y)
        y = F.max_pool2d(y, 2, ceil_mode=True)              # (1, 4, 4, 4)
        y = F.avg_pool2d(y, 3, stride=2, padding=1)         # (1, 4, 2, 2)
        y = F.conv2d(y, self.w2, None, 1, "same", 2)        # positional; (1, 3, 2, 2)
        y = torch.flatten(y, 1)                             # (1, 12)
        y = F.linear(y, self.lw)                            # (1, 5)
        return F.softmax(y, dim=-1)


def functional_specs(net, incl=True):
    w = ones_like(net.w) if incl else net.w.detach().double()
    w2 = ones_like(net.w2) if incl else net.w2.detach().double()
    lw = ones_like(net.lw) if incl else net.lw.detach().double()
    pool = (basis(lambda v: F.max_pool2d(v, 2, ceil_mode=True)) if incl
            else jac(lambda v: F.max_pool2d(v, 2, ceil_mode=True)))
    return {
        "conv2d": (["input"], jac(lambda v: F.conv2d(v, w, stride=1, padding=1))),
        "relu": (["conv2d"], jac(F.relu, positive=True)),
        "max_pool2d": (["relu"], pool),
        "avg_pool2d": (["max_pool2d"], jac(lambda v: F.avg_pool2d(v, 3, stride=2, padding=1))),
        "conv2d_1": (["avg_pool2d"], jac(lambda v: F.conv2d(v, w2, None, 1, "same", 2))),
        "flatten": (["conv2d_1"], jac(lambda v: torch.flatten(v, 1))),
        "linear": (["flatten"], jac(lambda v: F.linear(v, lw))),
        "softmax": (["linear"], jac(lambda v: F.softmax(v, dim=-1))),
    }


def test_ops_functional_structural():
    net = FunctionalNet()
    _, graph = check_ops(net, torch.randn(1, 2, 7, 7), functional_specs(net))
    kinds = dict(zip(graph.core.names, graph.core.kinds))
    assert [kinds[n] for n in ("conv2d", "max_pool2d", "avg_pool2d", "conv2d_1", "linear")] == \
        ["conv", "maxpool", "avgpool", "conv", "linear"]
    for layer in range(1, graph.core.n_layers):
        if graph.core.kinds[layer] in ("conv", "maxpool", "avgpool", "linear"):
            assert graph.core.is_factored(layer)
            ((parent, blk),) = graph.core.blocks[layer]
            assert np.array_equal(stored_block(blk), block(graph, layer, parent))


def test_ops_functional_input_local():
    net = FunctionalNet()
    with torch.no_grad():
        net.w[torch.rand(net.w.shape) < 0.4] = 0
        net.w[:, :, 1, 1] = 0
        net.w2[torch.rand(net.w2.shape) < 0.4] = 0
        net.lw[torch.rand(net.lw.shape) < 0.4] = 0
    _, local = check_ops(net, torch.randn(1, 2, 7, 7), functional_specs(net, incl=False), incl=False)
    off = local.core.offsets
    pool = local.core.names.index("max_pool2d")
    assert np.all(np.diff(local.core.adjacency.indptr)[off[pool]:off[pool + 1]] == 1)


class ResidualNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):                                   # (1, 3, 4, 5)
        y = x + self.conv(x)                                # residual
        m = y.mean(dim=(2, 3), keepdim=True)                # (1, 3, 1, 1): Jacobian fallback
        z = y + m                                           # broadcasting add
        return z.view(1, -1)


def test_ops_residual_broadcast_and_view():
    net = ResidualNet()
    conv = ones_weights(net.conv)
    specs = {
        "conv": (["input"], jac(conv)),
        "add": (["input", "conv"], jac(lambda a, b: a + b)),
        "mean": (["add"], jac(lambda v: v.mean(dim=(2, 3), keepdim=True))),
        "add_1": (["add", "mean"], jac(lambda a, b: a + b)),
        "view": (["add_1"], jac(lambda v: v.view(1, -1))),
    }
    _, graph = check_ops(net, torch.randn(1, 3, 4, 5), specs)
    assert graph.core.kinds == ["input", "conv", "elementwise", "reduce", "elementwise", "reshape"]
    add_1 = graph.core.names.index("add_1")
    mean = graph.core.names.index("mean")
    assert block(graph, add_1, mean).sum(axis=1).tolist() == [1] * 60      # each output reads its channel mean
    assert graph.core.is_factored(add_1) and graph.core.is_factored(1)


class CatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)

    def forward(self, x):                                   # (1, 2, 4, 4)
        a = self.conv(x)                                    # (1, 3, 4, 4)
        b = torch.cat([a, a], 1)                            # (1, 6, 4, 4)
        c = torch.cat((x, a), dim=1)                        # (1, 5, 4, 4)
        d = torch.cat([c, x], dim=-3)                       # (1, 7, 4, 4)
        e = b[:, 1:4]                                       # getitem: Jacobian fallback
        return torch.flatten(d, 1), e


def test_ops_cat():
    net = CatNet()
    specs = {
        "conv": (["input"], jac(ones_weights(net.conv))),
        "cat": (["conv"], jac(lambda a: torch.cat([a, a], 1))),
        "cat_1": (["input", "conv"], jac(lambda u, a: torch.cat((u, a), dim=1))),
        "cat_2": (["cat_1", "input"], jac(lambda c, u: torch.cat([c, u], dim=-3))),
        "getitem": (["cat"], jac(lambda b: b[:, 1:4])),
        "flatten": (["cat_2"], jac(lambda d: torch.flatten(d, 1))),
    }
    _, graph = check_ops(net, torch.randn(1, 2, 4, 4), specs)
    cat = graph.core.names.index("cat")
    assert block(graph, cat, 1).sum(axis=0).tolist() == [2] * 48             # every conv unit feeds two outputs
    assert graph.core.is_factored(cat)


class InplaceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x):                                   # (1, 2, 5)
        y = self.conv(x)
        F.relu(y, inplace=True)                             # rewrites y in place
        return y + x                                        # reads the relu output, not the conv output


def test_ops_inplace_relu_feeds_the_residual():
    net = InplaceNet()
    specs = {
        "conv": (["input"], jac(ones_weights(net.conv))),
        "relu": (["conv"], jac(F.relu, positive=True)),
        "add": (["relu", "input"], jac(lambda a, b: a + b)),
    }
    acts, _ = check_ops(net, torch.randn(1, 2, 5), specs)
    with torch.no_grad():
        conv_out = net.conv(torch.zeros(1, 2, 5) + acts.layeractivations[0])
    assert torch.equal(acts.layeractivations[1], conv_out[0])               # snapshot taken before relu_


class SoftmaxNet(nn.Module):
    def forward(self, x):                                   # (1, 3, 2, 2)
        a = F.softmax(x, dim=-1)
        b = x.softmax(1)
        c = torch.log_softmax(x, dim=2)
        d = F.layer_norm(x, [2, 2])
        return a + b + c + d


def test_ops_softmax_and_layer_norm():
    specs = {
        "softmax": (["input"], jac(lambda v: F.softmax(v, dim=-1))),
        "softmax_1": (["input"], jac(lambda v: v.softmax(1))),
        "log_softmax": (["input"], jac(lambda v: torch.log_softmax(v, dim=2))),
        "layer_norm": (["input"], jac(lambda v: F.layer_norm(v, [2, 2]))),
        "add": (["softmax", "softmax_1"], jac(lambda a, b: a + b)),
        "add_1": (["add", "log_softmax"], jac(lambda a, b: a + b)),
        "add_2": (["add_1", "layer_norm"], jac(lambda a, b: a + b)),
    }
    _, graph = check_ops(SoftmaxNet(), torch.randn(1, 3, 2, 2), specs)
    assert graph.core.kinds[1:5] == ["reduce"] * 4


class ImplicitSoftmaxNet(nn.Module):
    def forward(self, x):                                   # (1, 3, 2, 2): implicit dim is 1
        return F.softmax(x)


def test_ops_softmax_with_implicit_dim():
    with pytest.warns(UserWarning, match="Implicit dimension"):
        check_ops(ImplicitSoftmaxNet(), torch.randn(1, 3, 2, 2),
                  {"softmax": (["input"], jac(lambda v: F.softmax(v, dim=1)))})


class ModulesNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, stride=1, padding=1, dilation=2)
        self.adapt = nn.AdaptiveAvgPool2d(3)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(2 * 3 * 3, 4)

    def forward(self, x):                                   # (1, 2, 5, 5)
        y = self.pool(x)                                    # (1, 2, 5, 5)
        y = self.adapt(y)                                   # 5 -> 3, does not divide
        y = self.fc(self.flat(y))
        return y.view(1, 2, 2)


def test_ops_modules():
    net = ModulesNet()
    specs = {
        "pool": (["input"], basis(as_double(net.pool))),
        "adapt": (["pool"], basis(as_double(net.adapt))),
        "flat": (["adapt"], jac(lambda v: torch.flatten(v, 1))),
        "fc": (["flat"], jac(ones_weights(net.fc))),
        "view": (["fc"], jac(lambda v: v.view(1, 2, 2))),
    }
    _, graph = check_ops(net, torch.randn(1, 2, 5, 5), specs)
    for layer in (1, 2, 4):
        assert graph.core.is_factored(layer)


# --- values read out of tuples, steps, min-like ops, functional batch norm (fallback paths) ----

class ChunkNet(nn.Module):
    def forward(self, x):                                   # (1, 2, 3, 3)
        a, b = x.chunk(2, dim=1)
        return a * b


class SplitNet(nn.Module):
    def forward(self, x):
        y = F.relu(x)
        a, b = torch.split(y, 1, dim=1)
        return a + b


class MaxDimNet(nn.Module):
    def forward(self, x):
        return torch.max(x, dim=1)[0]


class PoolIndicesNet(nn.Module):
    def forward(self, x):
        return F.adaptive_max_pool2d(x, 2, return_indices=True)[0]


TUPLE_CASES = {
    "chunk": (ChunkNet(), {
        "getitem": (["input"], jac(lambda v: v.chunk(2, dim=1)[0])),
        "getitem_1": (["input"], jac(lambda v: v.chunk(2, dim=1)[1])),
        "mul": (["getitem", "getitem_1"], jac(lambda a, b: a * b, positive=True)),
    }),
    "split": (SplitNet(), {
        "relu": (["input"], jac(F.relu, positive=True)),
        "getitem": (["relu"], jac(lambda v: torch.split(v, 1, dim=1)[0])),
        "getitem_1": (["relu"], jac(lambda v: torch.split(v, 1, dim=1)[1])),
        "add": (["getitem", "getitem_1"], jac(lambda a, b: a + b)),
    }),
    "max-dim": (MaxDimNet(), {"getitem": (["input"], basis(lambda v: torch.max(v, dim=1)[0]))}),
    "pool-return-indices": (PoolIndicesNet(), {
        "getitem": (["input"], basis(lambda v: F.adaptive_max_pool2d(v, 2)))}),
}


@pytest.mark.parametrize("case", list(TUPLE_CASES))
def test_ops_values_taken_out_of_tuples(case):
    net, specs = TUPLE_CASES[case]
    check_ops(net, torch.randn(1, 2, 3, 3), specs)


class CompareNet(nn.Module):
    def forward(self, x):
        return torch.where(x > 0, x, 0.1 * x)


def test_ops_comparison_block_is_empty_or_identity():
    acts = nsp.Activations(CompareNet(), torch.randn(1, 2, 5, 5), trace="ops")
    graph = nsp.NNGraph(acts)
    assert acts.layernames[1] == "gt"
    got = block(graph, 1, 0)
    assert np.array_equal(got, np.eye(50, dtype=bool))     # a step reads its input, though its Jacobian is 0


class AminNet(nn.Module):
    def forward(self, x):                                   # (1, 2, 5, 5)
        return x.amin(dim=1)


def test_ops_amin_structural():
    check_ops(AminNet(), torch.randn(1, 2, 5, 5),
              {"amin": (["input"], basis(lambda v: -torch.amin(-v, dim=1)))})


class AmaxNet(nn.Module):
    def forward(self, x):
        return x.amax(dim=1)


def test_ops_amax_structural():
    # the same fallback on a max-like op is complete
    check_ops(AmaxNet(), torch.randn(1, 2, 5, 5),
              {"amax": (["input"], basis(lambda v: torch.amax(v, dim=1)))})


class FunctionalBatchNormNet(nn.Module):
    def forward(self, x):                                   # (1, 2, 3, 3)
        return F.batch_norm(x, None, None, training=True)


def test_ops_functional_batch_norm_training():
    check_ops(FunctionalBatchNormNet(), torch.randn(1, 2, 3, 3),
              {"batch_norm": (["input"], jac(lambda v: F.batch_norm(v, None, None, training=True)))})
