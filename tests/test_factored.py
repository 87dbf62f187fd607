"""The factored causal closure and transform equal the explicit zeta/Möbius path."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp import storage, zoo
from nsp.storage import graphs as storage_graphs
from nsp.transforms.standard import StandardTransform
from nsp.operations.blocks import Kron
from nsp.transforms.factored import FactoredClosure, NotFactorable, run
from nsp.graph.core import GraphCore
from nsp.operations.kronecker import Factor, KroneckerError, regroup, signed_terms, term_dense, union_add

from test_connectivity import (CONV_CASES, LINEAR_CASES, OTHER_CASES, POOL_CASES, CatNet, ChunkNet,
                               FunctionalNet, InplaceNet, ModulesNet, ResidualNet, SoftmaxNet, SplitNet)

RTOL = 1e-12


def core_of(net, x, trace="children", incl=True) -> GraphCore:
    acts = nsp.Activations(net.eval(), x, trace=trace)
    return GraphCore.from_activations(acts, incl)


def rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def compare(core: GraphCore, samples: int = 3) -> FactoredClosure | None:
    """Factored vs explicit: zeta entry by entry, forward and inverse to 1e-12; None if not factorable."""
    explicit = StandardTransform("explicit").fit(core)
    try:
        closure = FactoredClosure.of(core)
    except NotFactorable as err:
        explicit_blocks = [not isinstance(b, Kron) for blocks in core.blocks for _, b in blocks]
        assert not core.incl or any(explicit_blocks) or "no form on axes" in str(err), str(err)
        return None
    zeta = closure.zeta()
    assert (zeta != explicit.zeta).nnz == 0
    assert closure.nnz == explicit.zeta.nnz
    gen = np.random.default_rng(7)
    s = gen.standard_normal((samples, core.n_nodes))
    forward = run(closure, s, True)
    assert rel(forward, explicit.transform(s)) <= RTOL
    c = gen.standard_normal((samples, core.n_nodes))
    assert rel(run(closure, c, False), explicit.inverse_transform(c)) <= RTOL
    assert rel(run(closure, s, True, device="cpu"), forward) <= RTOL          # torch backend
    assert rel(run(closure, forward, False), s) <= 1e-8 * max(1.0, explicit.max_abs_mobius)
    return closure


def single(module, shape) -> GraphCore:
    torch.manual_seed(0)
    return core_of(nn.Sequential(module), torch.randn(*shape))


SINGLE = CONV_CASES + POOL_CASES + LINEAR_CASES + OTHER_CASES


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("module, shape", SINGLE, ids=[repr(m) for m, _ in SINGLE])
def test_single_operations(module, shape):
    core = single(module, shape)
    closure = compare(core)
    factorable = all(isinstance(b, Kron) for _, b in core.blocks[1])
    assert (closure is not None) == factorable


class GroupedDilatedStrided(nn.Module):
    """Grouped, dilated and strided convolutions, a downsampling residual block, a channel concat."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)
        self.strided = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.shortcut = nn.Conv2d(4, 6, 1, stride=2)
        self.side = nn.Conv2d(4, 2, 1, stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d((2, 3))
        self.fc = nn.Linear(48, 5)

    def forward(self, x):                                    # (1, 2, 9, 9)
        h = F.relu(self.stem(x))
        g = h + self.grouped(h)                               # residual over a grouped dilated conv
        r = F.relu(self.strided(g) + self.shortcut(g))        # downsampling block: (1, 6, 5, 5)
        c = torch.cat([r, self.side(g)], dim=1)               # (1, 8, 5, 5)
        p = self.pool(self.bn(c))
        return self.fc(torch.flatten(p, 1))


class TwoPaths(nn.Module):
    """Paths of different depth meeting twice (unions that neither contain the other)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(2, 2, 3, padding=1, groups=2)
        self.b = nn.Conv1d(2, 2, 1)
        self.c = nn.Conv1d(2, 2, 3, padding=2, dilation=2)

    def forward(self, x):                                    # (1, 2, 9)
        y = self.a(x) + self.b(x)
        return self.c(y) + self.a(y) + x


OPS_NETS = {
    "functional": (FunctionalNet, (1, 2, 7, 7)),
    "residual-with-mean": (ResidualNet, (1, 3, 4, 5)),
    "cat-with-getitem": (CatNet, (1, 2, 4, 4)),
    "inplace": (InplaceNet, (1, 2, 5)),
    "softmax": (SoftmaxNet, (1, 3, 2, 2)),
    "modules": (ModulesNet, (1, 2, 5, 5)),
    "chunk": (ChunkNet, (1, 2, 3, 3)),
    "split": (SplitNet, (1, 4, 3, 3)),
    "grouped-dilated-strided": (GroupedDilatedStrided, (1, 2, 9, 9)),
    "two-paths": (TwoPaths, (1, 2, 9)),
    "residual_cnn": (zoo.ResidualCNN, (1, 1, 8, 8)),
    "resnet": (lambda: zoo.ResNet(2, blocks=1), (1, 3, 8, 8)),
    "vgg-ops": (lambda: zoo.VGGNet(1, stages=3), (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(OPS_NETS))
def test_ops_networks(name):
    make, shape = OPS_NETS[name]
    torch.manual_seed(0)
    core = core_of(make(), torch.randn(*shape), trace="ops")
    closure = compare(core)
    assert closure is not None          # means, slices and pieces of chunk/split are Kronecker-factored too


CHILDREN_NETS = {
    "toy": (zoo.ToyNet, (1, 1, 4, 4)),
    "digits_cnn": (zoo.DigitsCNN, (1, 1, 8, 8)),
    "digits_mlp": (zoo.DigitsMLP, (1, 64)),
    "vgg": (lambda: zoo.VGGNet(2, stages=2), (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(CHILDREN_NETS))
def test_children_networks(name):
    make, shape = CHILDREN_NETS[name]
    torch.manual_seed(0)
    assert compare(core_of(make(), torch.randn(*shape))) is not None


@pytest.mark.parametrize("trace", ["children", "ops"])
def test_mnist_fixture_same_spectrum_both_ways(mnist_weights, trace):
    net = zoo.load_weights(zoo.MnistNet(), mnist_weights)
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6, 6:22] = 1.0                                   # a crude '7'
    x[0, 0, 6:24, 21 - np.arange(18) // 2] = 1.0
    acts = nsp.Activations(net, x, trace=trace)
    graph = nsp.NNGraph(acts)
    factored = graph.transform(acts, type="standard")
    assert graph.transformers["standard"].factored
    explicit = StandardTransform("explicit").fit(graph.core).transform(acts.to_vector())
    assert rel(factored.to_vector(), explicit) <= RTOL
    assert np.abs(explicit).max() > 1e3                      # a real, ill-conditioned spectrum
    closure = compare(graph.core)
    assert closure.axes[-1] == (10, 1, 1)


class TransposeNet(nn.Module):
    def __init__(self, flatten=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.flatten = flatten

    def forward(self, x):                                    # (1, 3, 4, 5)
        y = F.relu(self.conv(x).transpose(2, 3))
        return y.flatten(2) if self.flatten else y


class ConvNeXtLike(nn.Module):
    """Depthwise conv, then channels last: layer norm and an MLP over channels, back, residual."""

    def __init__(self, c=3):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.norm = nn.LayerNorm(c)
        self.up, self.down = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)

    def forward(self, x):                                    # (1, c, h, w)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class TokenMixing(nn.Module):
    """ResMLP/Mixer-style: a linear layer across tokens through a transpose, and one across features."""

    def __init__(self, tokens=4, d=3):
        super().__init__()
        self.tokens, self.features = nn.Linear(tokens, tokens), nn.Linear(d, d)

    def forward(self, x):                                    # (1, tokens, d)
        x = x + self.tokens(x.transpose(1, 2)).transpose(1, 2)
        return x + self.features(x)


def test_permuted_axes_take_the_factored_path():
    for make, shape in ((TransposeNet, (1, 3, 4, 5)), (lambda: nn.Sequential(nn.Conv2d(1, 3, 2), ConvNeXtLike(),
                                                                              ConvNeXtLike()), (1, 1, 5, 6)),
                        (TokenMixing, (1, 4, 3))):
        torch.manual_seed(0)
        core = core_of(make(), torch.randn(*shape), trace="ops")
        assert any(type(b).__name__ == "Permutation" for blocks in core.blocks for _, b in blocks)
        closure = compare(core)
        assert closure is not None and any(o != tuple(range(len(o))) for o in closure.orders)


class PatchTokens(nn.Module):
    """A ViT/Mixer stem and token mixing: patches flattened and transposed (one tensor axis of tokens made of
    two spatial axes), a norm over features, a linear map over the tokens (transposed again), residual."""

    def __init__(self, d=3, tokens=4):
        super().__init__()
        self.embed = nn.Conv2d(1, d, 2, stride=2)
        self.norm = nn.LayerNorm(d)
        self.mix = nn.Linear(tokens, 5)
        self.back = nn.Linear(5, tokens)

    def forward(self, x):                                    # (1, 1, 4, 4)
        t = self.norm(self.embed(x).flatten(2).transpose(1, 2))            # (1, 4 tokens = 2 x 2, d)
        mixed = self.back(F.gelu(self.mix(t.transpose(1, 2))))             # over the tokens: (1, d, 4)
        return mixed.transpose(1, 2).flatten(1)


def test_transposes_and_reshapes_of_regrouped_axes_take_the_factored_path():
    torch.manual_seed(0)
    for make, shape in ((lambda: TransposeNet(flatten=True), (1, 3, 4, 5)), (PatchTokens, (1, 1, 4, 4))):
        core = core_of(make(), torch.randn(*shape), trace="ops")
        closure = compare(core)
        assert closure is not None and any(o != tuple(range(len(o))) for o in closure.orders)


class ScoresNet(nn.Module):
    """Attention scores formed as a product: two maps of the same tokens multiplied (q @ kᵀ)."""

    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Linear(3, 2), nn.Linear(3, 2)

    def forward(self, x):                                    # (1, 4 tokens, 3)
        return self.q(x) @ self.k(x).transpose(1, 2)


def test_auto_falls_back_with_the_reason():
    torch.manual_seed(0)
    core = core_of(ScoresNet(), torch.randn(1, 4, 3), trace="ops")
    auto = StandardTransform().fit(core)
    assert not auto.factored and auto.zeta is not None
    assert "no form on axes" in auto.reason and "q @ kᵀ" in auto.reason, auto.reason
    with pytest.raises(NotFactorable, match="method='auto' or 'explicit'"):
        StandardTransform("factored").fit(core)
    forced = StandardTransform("explicit").fit(core_of(zoo.ToyNet(), torch.randn(1, 1, 4, 4)))
    assert not forced.factored and forced.reason == "method='explicit' was asked for"


def test_input_local_graph_is_not_factorable():
    torch.manual_seed(0)
    core = core_of(zoo.DigitsCNN(), torch.randn(1, 1, 8, 8), incl=False)
    auto = StandardTransform().fit(core)
    assert not auto.factored and "input-local (INCL=False)" in auto.reason


class UnflattenConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 48)
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):                                    # (1, 4)
        return self.conv(self.fc(x).view(1, 3, 4, 4))


def test_unflatten_then_conv_takes_the_factored_path():
    """A linear map's features reshaped into channels x height x width for a convolution: the reshape keeps
    the linear layer's one axis, and the convolution's factors merge into one (8 x 48) factor on it."""
    core = core_of(UnflattenConv(), torch.randn(1, 4), trace="ops")
    closure = compare(core)
    assert closure is not None and closure.axes[2:] == [(48, 1, 1), (8, 1, 1)]


def test_bad_method_and_bare_adjacency():
    with pytest.raises(ValueError, match="unknown method 'fast'.*accepted: auto, explicit, factored"):
        StandardTransform("fast")
    chain = np.eye(4, k=-1, dtype=bool)
    with pytest.raises(ValueError, match="method='factored' needs a graph core"):
        StandardTransform("factored").fit(chain)
    auto = StandardTransform().fit(chain)
    assert not auto.factored and "adjacency matrix" in auto.reason
    assert np.allclose(auto.transform([3, 5, 4, 4]), [3, 2, -1, 0])


@pytest.mark.parametrize("make, shape", [(GroupedDilatedStrided, (1, 2, 9, 9)), (ConvNeXtLike, (1, 3, 3, 4))],
                         ids=["grouped", "permuted"])
def test_lazy_matrices_and_storage_round_trip(tmp_path, make, shape):
    torch.manual_seed(0)
    core = core_of(make(), torch.randn(*shape), trace="ops")
    fitted = StandardTransform().fit(core)
    explicit = StandardTransform("explicit").fit(core)
    assert fitted.factored and fitted._zeta is None
    assert (fitted.zeta != explicit.zeta).nnz == 0 and (fitted.mobius != explicit.mobius).nnz == 0
    assert fitted.max_abs_mobius == explicit.max_abs_mobius
    path = tmp_path / "t.h5"
    storage.write_transformer(path, StandardTransform().fit(core))
    with storage.open_file(path, "transformer") as f:
        assert f["transform"].attrs["encoding-type"] == "nsp.factored-transform"
        assert "zeta" not in f["transform"]
    loaded = storage.read_transformer(path)
    assert loaded.factored and loaded.method == "auto"
    assert loaded.closure.orders == fitted.closure.orders
    s = np.random.default_rng(0).standard_normal((2, core.n_nodes))
    assert np.array_equal(loaded.transform(s), fitted.transform(s))
    assert np.array_equal(loaded.inverse_transform(s), fitted.inverse_transform(s))
    storage.write_transformer(tmp_path / "again.h5", loaded)
    assert (tmp_path / "again.h5").read_bytes() == path.read_bytes()


def test_graph_file_without_csr_round_trips(tmp_path, monkeypatch):
    torch.manual_seed(0)
    core = core_of(zoo.ResNet(2), torch.randn(1, 3, 32, 32), trace="ops")
    monkeypatch.setattr(storage_graphs, "ADJACENCY_IN_FILE", 10)
    storage.write_graph(tmp_path / "g.h5", core)
    with storage.open_file(tmp_path / "g.h5", "graph") as f:
        assert "adjacency" not in f
    loaded = storage.read_graph(tmp_path / "g.h5")
    assert loaded.csr is None and loaded.n_edges == core.n_edges
    assert (loaded.adjacency != core.adjacency).nnz == 0


# --- the Kronecker algebra ---------------------------------------------------------------------

def test_regroup_splits_a_linear_head_over_flattened_axes():
    ones = Factor.of(np.ones((10, 320), dtype=bool))
    batch = Factor.of(np.ones((1, 1), dtype=bool))
    term = regroup([batch, ones], (10, 1, 1), (20, 4, 4))
    assert [f.kind for f in term] == ["ones"] * 3 and [f.shape for f in term] == [(10, 20), (1, 4), (1, 4)]
    eye = regroup([batch, Factor.of(np.eye(6, dtype=bool))], (2, 3), (2, 3))
    assert [f.kind for f in eye] == ["eye", "eye"]


def test_regroup_splits_dense_kronecker_products_and_rejects_others():
    gen = np.random.default_rng(1)
    a, b = gen.random((2, 3)) < 0.5, gen.random((3, 2)) < 0.5
    a[0, 0] = b[0, 0] = True
    term = regroup([Factor.of(np.kron(a, b))], (2, 3), (3, 2))
    assert np.array_equal(term_dense(term), np.kron(a, b))
    c = np.kron(a, b)
    c[0, 1] = not c[0, 1]
    with pytest.raises(KroneckerError, match="not the Kronecker product"):
        regroup([Factor.of(c)], (2, 3), (3, 2))
    with pytest.raises(KroneckerError, match="does not fit axes"):
        regroup([Factor.of(c)], (3, 3), (3, 2))


def test_union_and_inclusion_exclusion_are_exact():
    gen = np.random.default_rng(3)
    union, dense = [], np.zeros((12, 12), dtype=bool)
    for _ in range(4):
        a, b = gen.random((3, 3)) < 0.6, gen.random((4, 4)) < 0.6
        a[0, 0] = b[0, 0] = True
        union = union_add(union, (Factor.of(a), Factor.of(b)))
        dense |= np.kron(a, b)
    total = sum(coef * term_dense(term).astype(np.int64) for coef, term in signed_terms(union, 64))
    assert np.array_equal(total, dense.astype(np.int64))
    with pytest.raises(KroneckerError, match="more than 2 signed terms"):
        signed_terms(union, 2) if len(union) > 1 else signed_terms(union + union, 0)
