"""Rules for what attention networks (ViT, Swin, Mixer) and modern CNNs use: data movement, matrix products,
reductions over axes.

Every block of these kinds is compared, entry by entry, with the nonzero pattern of the operation's
Jacobian at random float64 inputs, computed here by autograd: for data movement, products of layers and
smooth reductions that pattern is the exact dependence structure.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.tracing import record
from nsp.tracing.layer import module_op

EXACT_KINDS = {"gather", "matmul", "einsum", "attention", "multihead_attention", "reduce", "reshape", "linear"}


def jacobian_support(op, shapes):
    gen = torch.Generator().manual_seed(7)
    xs = tuple(torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes)
    jac = torch.autograd.functional.jacobian(lambda *v: op.evaluate(v, False).double(), xs)
    jac = jac if isinstance(jac, tuple) else (jac,)
    n_out = int(np.prod(op.out_shape))
    return [(j.reshape(n_out, -1) != 0).numpy() for j in jac]


def check_blocks(net, x, kinds, fallback=False):
    rec = record(net.double().eval(), x.double(), "ops")
    core = nsp.GraphCore.from_recording(rec)
    seen = set()
    for index, layer in enumerate(rec.layers[1:], start=1):
        assert fallback or layer.op.kind != "jacobian", f"layer {layer.name} has no rule"
        if layer.op.kind not in EXACT_KINDS:
            continue
        seen.add(layer.op.kind)
        want = jacobian_support(layer.op, layer.op.in_shapes)
        for (parent, block), expected in zip(core.blocks[index], want):
            rows, cols = block.coo()
            got = np.zeros(block.shape, dtype=bool)
            got[rows, cols] = True
            if layer.op.params.get("reduction") in ("amax", "amin"):    # the Jacobian shows the winner only
                assert got.all() and expected.any(), layer.name
            else:
                assert np.array_equal(got, expected), f"{layer.name} ({layer.op.kind}) from layer {parent}"
    assert kinds <= seen, kinds - seen
    return core


class Movement(nn.Module):
    def forward(self, x):                                      # (1, 3, 4, 5)
        a, b = x.chunk(2, dim=-1)                              # (1,3,4,3), (1,3,4,2)
        c = a.transpose(1, 2).flip(-1)[:, ::2, 1:]             # steps and flips
        d = x.permute(0, 3, 1, 2).roll(1, dims=2).narrow(1, 1, 3)
        e = torch.unbind(b, dim=1)[2].expand(2, 4, 2)[:1]      # a piece of unbind, a broadcast
        f = x[0, :, 1].repeat(1, 2).unsqueeze(0)
        g = x.select(3, 4).index_select(2, torch.tensor([3, 0, 0]))
        h = torch.addcmul(x, x.norm(p=2, dim=(2, 3), keepdim=True), x, value=0.5)
        return (c.sum() + d.mean((1, 3)).sum() + e.amax() + f.std() + g.logsumexp(1).sum()
                + torch.linalg.vector_norm(h, 2, (1, 2)).sum())


class Attention(nn.Module):
    """Multi-head self-attention written out, with a class token and a positional embedding."""

    def __init__(self, d=4, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.token = nn.Parameter(torch.randn(1, 1, d))
        self.position = nn.Parameter(torch.randn(1, 4, d))
        self.norm = nn.LayerNorm(d)

    def forward(self, x):                                      # (1, 3, d)
        x = torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1) + self.position
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        y = scores.softmax(dim=-1) @ v
        return x + self.proj(y.transpose(1, 2).reshape(b, t, d))


def test_data_movement_blocks_are_exact():
    core = check_blocks(Movement(), torch.randn(1, 3, 4, 5), {"gather", "reduce"})
    assert "jacobian" not in core.kinds


def test_attention_blocks_are_exact():
    torch.manual_seed(0)
    core = check_blocks(Attention(), torch.randn(1, 3, 4), {"gather", "matmul", "reduce"})
    assert core.kinds.count("matmul") == 2


def test_product_of_a_layer_with_itself_is_the_union_of_both_roles():
    class Square(nn.Module):
        def forward(self, x):                                  # (1, 3, 3)
            return torch.matmul(x, x) + x.transpose(1, 2) @ F.relu(x)
    check_blocks(Square(), torch.randn(1, 3, 3), {"matmul"})


def test_slices_and_broadcasts_stay_kronecker_permutes_are_permutations():
    class Net(nn.Module):
        def forward(self, x):                                  # (1, 2, 6, 6)
            return x[:, :, 1::2, ::3].flip(1), x.transpose(2, 3), x.permute(0, 2, 3, 1)[:, [2, 0]]
    rec = record(Net().eval(), torch.randn(1, 2, 6, 6), "ops")
    core = nsp.GraphCore.from_recording(rec)
    kinds = {layer.name: type(core.blocks[i][0][1]).__name__ for i, layer in enumerate(rec.layers) if i}
    assert kinds == {"getitem": "Kron", "flip": "Kron", "transpose": "Permutation", "permute": "Permutation",
                     "getitem_1": "Kron"}
    assert core.blocks[3][0][1].order == (0, 1, 3, 2) and core.blocks[4][0][1].order == (0, 2, 3, 1)
    for index in (3, 4):                                       # the order says where each element goes
        block = core.blocks[index][0][1]
        want = np.arange(72).reshape(1, 2, 6, 6).transpose(block.order).reshape(-1)
        assert np.array_equal(block.rows, np.arange(72)) and np.array_equal(block.cols, want)


def test_exact_spectra_through_the_new_rules():
    from test_exact import check
    torch.manual_seed(2)
    net, x = Attention().double(), torch.randn(2, 3, 4, dtype=torch.float64)
    core = nsp.GraphCore.from_activations(nsp.Activations(net.eval(), x[:1], trace="ops"))
    check(core, record(net.eval(), x, "ops").values(np.float64), "attention")


class LayerNorm2d(nn.LayerNorm):
    """A layer norm over channels (as in ConvNeXt): a subclass of nn.LayerNorm that overrides forward."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


def reach(core, target: int) -> np.ndarray:
    """Which input neurons reach each neuron of layer ``target`` (boolean closure of the adjacency)."""
    a = core.adjacency.astype(bool).astype(np.int64).tocsr()
    n = a.shape[0]
    r = np.eye(n, dtype=bool)
    for _ in range(core.n_layers):
        r = r | ((a @ r.astype(np.int64)) > 0)
    o = core.offsets
    return r[o[target]:o[target + 1], o[0]:o[1]]


def test_module_subclass_overriding_forward_gets_no_parent_rule():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 3, 1), LayerNorm2d(3)).double().eval()
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    want = jacobian_support(module_op(net, "net", ((1, 2, 3, 4),), (1, 3, 3, 4)), [(1, 2, 3, 4)])[0]
    for trace in ("children", "ops"):
        core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace=trace))
        assert np.array_equal(reach(core, core.n_layers - 1), want), trace
    children = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
    assert children.kinds == ["input", "conv", "jacobian"]
    ops = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    assert ops.kinds == ["input", "conv", "gather", "reduce", "gather"]


def test_piecewise_linear_activations_are_not_taken_for_affine():
    net = nn.Sequential(nn.Linear(3, 4), nn.Hardsigmoid(), nn.Dropout(0.5), nn.Hardtanh(), nn.ReLU6()).eval()
    for trace in ("children", "ops"):
        core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.randn(1, 3) * 0.1, trace=trace))
        weights = [float(core.linear[i][0][0].arrays["r"]) for i in range(2, 6)]
        assert weights == [1.0, 1.0, 1.0, 1.0], (trace, weights)      # dropout in eval mode: exactly 1
    scaled = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    scaled[1].running_var.fill_(4.0)
    core = nsp.GraphCore.from_activations(nsp.Activations(scaled, torch.randn(1, 3), trace="children"))
    assert np.allclose(core.linear[2][0][0].arrays["r"], 1 / np.sqrt(4.0 + 1e-5))


class ShapeBranch(nn.Module):
    """Code torch.fx cannot trace: branches on a shape, padding computed from it, a write through an index."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):                                      # (1, 2, 5, 6)
        if x.shape[-1] != x.shape[-2]:
            x = F.pad(x, (0, 0, 0, x.shape[-1] - x.shape[-2]), value=-1.0)
        y = F.pad(self.conv(x), (1, 1, 1, 1), mode="replicate").relu() * 1.0
        y[:, 0, 1:3] = y[:, 1, :2] * 2
        return y.mT.softmax(-1)


def test_nets_fx_cannot_trace_are_captured_from_a_real_forward_pass():
    torch.manual_seed(9)
    net, x = ShapeBranch().double().eval(), torch.randn(1, 2, 5, 6, dtype=torch.float64)
    rec = record(net, x, "ops")
    assert rec.capture.startswith("functions (torch.fx could not trace ShapeBranch (TraceError: ")
    assert [layer.op.kind for layer in rec.layers[1:]] == ["gather", "conv", "gather", "elementwise", "elementwise",
                                                           "gather", "elementwise", "gather", "gather", "reduce"]
    core = check_blocks(net, x, set(), fallback=True)         # gather and reduce blocks equal their Jacobians
    outputs = int(core.sizes[-1])
    jac = torch.autograd.functional.jacobian(lambda v: net(v).reshape(-1), x).reshape(outputs, -1)
    assert not ((jac != 0).numpy() & ~reach(core, core.n_layers - 1)).any()      # no dependence missing


def test_padding_is_a_kronecker_selection_with_constant_rows():
    class Pads(nn.Module):
        def __init__(self):
            super().__init__()
            self.reflect = nn.ReflectionPad2d(1)

        def forward(self, x):                                  # (1, 2, 3, 3)
            return F.pad(x, (1, 2, 0, 1), value=float("-inf")), self.reflect(x), F.pad(x, (1, 1, 2, 0), "circular")
    rec = record(Pads().eval(), torch.randn(1, 2, 3, 3), "ops")
    core = check_blocks(Pads(), torch.randn(1, 2, 3, 3), {"gather"})
    assert all(type(block).__name__ == "Kron" for blocks in core.blocks[1:] for _, block in blocks)
    assert core.blocks[1][0][1].nnz == 18                       # the constant rows read nothing
    assert rec.capture == "torch.fx"


class Between(nn.Module):
    """Two children with functional code between them."""

    def __init__(self, between):
        super().__init__()
        self.a = nn.Conv2d(2, 2, 1)
        self.b = nn.Conv2d(2, 2, 1)
        self.between = between

    def forward(self, x):                                      # (1, 2, 3, 3)
        y = self.a(x)
        return self.b(self.between(y, x))


@pytest.mark.parametrize("between, error", [
    (lambda y, x: y.transpose(2, 3), "rearranged or mixed by functional code"),
    (lambda y, x: y.softmax(dim=1), "rearranged or mixed by functional code"),
    (lambda y, x: y + x, "reads 'input', not only the layer recorded before it \\('a'\\)"),
    (lambda y, x: F.relu(y).flatten(2).reshape(-1, 2, 3, 3) * 2 + 1, None),
])
def test_children_mode_refuses_what_it_would_wire_wrongly(between, error):
    torch.manual_seed(5)
    net = Between(between).eval()
    x = torch.randn(3, 2, 3, 3)
    if error is None:
        assert nsp.record(net, x, "children").table.names == ["input", "a", "b"]
        return
    with pytest.raises(nsp.TraceError, match=error + ".*trace='ops'"):
        nsp.record(net, x, "children")
    assert len(nsp.record(net, x, "ops").table.names) > 3         # ops mode takes it


def test_children_check_leaves_running_statistics_alone():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)).train()
    x = torch.randn(4, 1, 3, 3)
    before = {name: b.clone() for name, b in net.named_buffers()}
    with pytest.warns(UserWarning, match="in training mode"):
        nsp.record(net, x, "children")
    assert all(torch.equal(before[name], b) for name, b in net.named_buffers())    # no update at all
    assert int(net[1].num_batches_tracked) == 0


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


def test_container_children_are_wired_from_their_traced_internals():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(),
                                                          nn.MaxPool2d(2)), Residual(2)).eval()
    x = torch.randn(1, 1, 6, 6)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
    assert core.kinds == ["input", "conv", "jacobian", "jacobian"]
    ops = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    for layer, child in ((2, net[1]), (3, net[2])):
        # the block equals the reachability through the same child traced in ops mode, and covers the
        # Jacobian at random weights and inputs
        block = core.blocks[layer][0][1]
        rows, cols = block.coo()
        got = np.zeros(block.shape, dtype=bool)
        got[rows, cols] = True
        shape = (1, 2, 6, 6) if layer == 2 else (1, 2, 3, 3)
        inner = nsp.GraphCore.from_activations(nsp.Activations(child, torch.randn(shape), trace="ops"))
        assert np.array_equal(got, reach(inner, inner.n_layers - 1))
        gen = torch.Generator().manual_seed(1)
        for _ in range(3):
            probe = torch.randn(shape, generator=gen, dtype=torch.float64)
            jac = torch.autograd.functional.jacobian(lambda v: child.double()(v), probe).reshape(got.shape[0], -1)
            assert not ((jac != 0).numpy() & ~got).any()
    assert np.array_equal(reach(core, 3), reach(ops, ops.n_layers - 1))


@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention_blocks_are_exact(causal):
    class Sdpa(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(4, 12)

        def forward(self, x):                                  # (1, 3, 4) -> heads 2, tokens 3, features 2
            q, k, v = self.qkv(x).reshape(1, 3, 3, 2, 2).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.manual_seed(8)
    core = check_blocks(Sdpa(), torch.randn(1, 3, 4), {"gather"})
    assert core.kinds[-1] == "attention"
    attention = [block for _, block in core.blocks[-1]]
    assert len(attention) == 3 and all(type(b).__name__ == "Kron" for b in attention)


def test_scaled_dot_product_attention_with_a_boolean_mask():
    mask = torch.tensor([[True, False, True], [False, True, True], [True, True, False]])

    class Masked(nn.Module):
        def forward(self, x):                                  # (1, 2, 3, 2)
            return F.scaled_dot_product_attention(x, x * 2, x + 1, attn_mask=mask)
    core = check_blocks(Masked(), torch.randn(1, 2, 3, 2), set())
    assert core.kinds[-1] == "attention"


class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(2, 3)


class TorchAttention(nn.Module):
    """nn.MultiheadAttention with queries and keys from one layer, values from another, and options."""

    def __init__(self, batch_first, mask=None, padding=None, **options):
        super().__init__()
        self.batch_first, self.mask, self.padding = batch_first, mask, padding
        self.fc = nn.Linear(4, 4)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first, **options)

    def forward(self, x):                                      # (1, 5, 4)
        y = self.fc(x)
        q, v = (y, x) if self.batch_first else (y.transpose(0, 1), x.transpose(0, 1))
        out = self.attn(q, q, v, need_weights=False, attn_mask=self.mask, key_padding_mask=self.padding)[0]
        return out if self.batch_first else out.transpose(0, 1)


ONE_KEY = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 0, 0, 1, 0], [1, 1, 1, 1, 0], [0, 0, 0, 0, 0]]).bool()


@pytest.mark.parametrize("options", [
    dict(batch_first=True), dict(batch_first=False),
    dict(batch_first=True, mask=ONE_KEY),                                    # rows 0 and 3 attend to one key
    dict(batch_first=True, mask=torch.zeros(5, 5).masked_fill(ONE_KEY, float("-inf"))),
    dict(batch_first=True, mask=ONE_KEY, add_zero_attn=True),               # a zero key: every row scored
    dict(batch_first=True, mask=ONE_KEY, add_bias_kv=True),
    dict(batch_first=False, padding=torch.tensor([[False, True, False, False, True]])),
], ids=["batch-first", "sequence-first", "bool-mask", "float-mask", "zero-key", "bias-kv", "padding"])
def test_multihead_attention_blocks_are_exact(options):
    torch.manual_seed(13)
    net = TorchAttention(**options)
    core = check_blocks(net, torch.randn(1, 5, 4), {"multihead_attention"})
    assert "jacobian" not in core.kinds


class Einsums(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):                                      # (1, 2, 3, 3)
        scores = torch.einsum("bhqd,bhkd->bhqk", x, x * 2)     # Kronecker: same rank, letters aligned
        mixed = torch.einsum("...d,de->...e", x, self.w)       # a constant operand, ellipsis
        diagonal = torch.einsum("bhii->bhi", x)                # a repeated letter
        swapped = torch.einsum("bhij->bjhi", scores)           # a permutation: explicit
        implicit = torch.einsum("bhij,bhjk", x, scores)        # implicit output "ik" (repeated letters summed)
        outer = torch.einsum("bhi,bhj->bhij", diagonal, x[:, :1, 0])   # a broadcast size-1 axis
        return mixed.sum() + swapped.sum() + implicit.sum() + outer.sum()


def test_einsum_blocks_are_exact():
    torch.manual_seed(17)
    core = check_blocks(Einsums(), torch.randn(1, 2, 3, 3), {"einsum"})
    assert core.kinds.count("einsum") == 6
    kron = [type(b).__name__ for i, k in enumerate(core.kinds) if k == "einsum" for _, b in core.blocks[i]]
    # scores: x aligned (Kron), x * 2 reads its k axis into output axis 3 (explicit); the rest as commented
    assert kron == ["Kron", "Coo", "Kron", "Coo", "Coo", "Coo", "Coo", "Coo", "Coo"]


def test_union_of_kronecker_blocks_differing_in_one_factor_stays_kronecker():
    from nsp.operations.blocks import Kron, union
    rng = np.random.default_rng(0)
    a, b, c, d = (rng.random(shape) < 0.4 for shape in ((3, 4), (3, 4), (2, 5), (2, 5)))

    def dense(block):
        got = np.zeros(block.shape, dtype=bool)
        got[block.coo()] = True
        return got
    one = union([Kron((a, c)), Kron((b, c))], (6, 20))
    assert isinstance(one, Kron) and np.array_equal(dense(one), np.kron(a | b, c))
    two = union([Kron((a, c)), Kron((b, d))], (6, 20))
    assert not isinstance(two, Kron) and np.array_equal(dense(two), np.kron(a, c) | np.kron(b, d))


def test_multihead_attention_in_nets_fx_cannot_trace():
    class Branching(TorchAttention):
        def forward(self, x):
            if x.shape[1] > 1:                                 # control flow on a shape
                x = x * 2
            return super().forward(x)
    torch.manual_seed(14)
    net = Branching(batch_first=True, mask=ONE_KEY).double().eval()
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    rec = record(net, x, "ops")
    assert rec.capture.startswith("functions")
    attention = [l for l in rec.layers[1:] if l.op.kind == "multihead_attention"]
    assert len(attention) == 1 and attention[0].op.params["piece"] == 0
    core = nsp.GraphCore.from_recording(rec)
    assert "jacobian" not in core.kinds
    index = rec.layers.index(attention[0])
    want = jacobian_support(attention[0].op, attention[0].op.in_shapes)
    for (_, block), expected in zip(core.blocks[index], want):
        got = np.zeros(block.shape, dtype=bool)
        got[block.coo()] = True
        assert np.array_equal(got, expected)


def window_attention(x, weight, shift: int):
    """A Python function torch.fx keeps whole (as torchvision's shifted_window_attention): a rolled
    window attention over (1, H, W, C) with a mask made from the input's shape, 2 x 2 windows."""
    h, w, c = x.shape[1:]
    x = torch.roll(x, (-shift, -shift), (1, 2))
    mask = x.new_zeros((h, w))
    mask[h - shift:, :] = 1
    windows = x.view(1, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4, c)
    groups = mask.view(h // 2, 2, w // 2, 2).permute(0, 2, 1, 3).reshape(-1, 4)
    blocked = (groups.unsqueeze(1) != groups.unsqueeze(2))
    qkv = F.linear(windows, weight)
    scores = (qkv @ qkv.transpose(1, 2)).masked_fill(blocked, float("-inf")).softmax(-1)
    out = (scores @ windows).reshape(1, h // 2, w // 2, 2, 2, c).permute(0, 1, 3, 2, 4, 5).reshape(1, h, w, c)
    return torch.roll(out, (shift, shift), (1, 2))


torch.fx.wrap("window_attention")


class Windows(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 3))

    def forward(self, x):                                      # (1, 4, 4, 3)
        return window_attention(x, self.weight, 1) + window_attention(x, self.weight, 0)


def test_python_functions_kept_whole_by_fx_are_wired_from_their_internals():
    torch.manual_seed(15)
    net = Windows().double().eval()
    x = torch.randn(1, 4, 4, 3, dtype=torch.float64)
    rec = record(net, x, "ops")
    calls = [i for i, l in enumerate(rec.layers) if l.name.startswith("window_attention")]
    assert len(calls) == 2 and all(rec.layers[i].op.kind == "jacobian" for i in calls)
    core = nsp.GraphCore.from_recording(rec)
    assert core.probed == ()                                   # collapsed from the internals, not probed
    found = []
    for index in calls:
        op = rec.layers[index].op
        (_, block), = core.blocks[index]
        got = np.zeros(block.shape, dtype=bool)
        got[block.coo()] = True
        want = np.zeros_like(got)
        for seed in range(3):                                  # union over inputs: the structural pattern
            gen = torch.Generator().manual_seed(seed)
            probe = torch.randn(op.in_shapes[0], generator=gen, dtype=torch.float64)
            jac = torch.autograd.functional.jacobian(lambda v: op.evaluate((v,), False), probe)
            want |= (jac.reshape(block.shape) != 0).numpy()
        inner = nsp.GraphCore.from_recording(record(op.module, rec.layers[0].value, "ops"))
        assert np.array_equal(got, reach(inner, inner.n_layers - 1))     # the internals' reachability
        found.append((got.sum(), want.sum(), (want & ~got).sum()))
    # unshifted: every token reads the 4 tokens of its window, 3 features each: exactly the Jacobian's.
    # Shifted: the scores masked with -inf before the softmax are wired as read (a superset: 144 extra)
    assert found == [(576, 432, 0), (576, 576, 0)]


def test_comparisons_and_constants_made_from_a_layer():
    class Masked(nn.Module):
        def forward(self, x):                                  # (1, 2, 3)
            zeros = torch.zeros_like(x) + x.new_ones(x.shape)
            return torch.where(x > zeros, x, -x) * (x != 0).float() + zeros
    core = check_blocks(Masked(), torch.randn(1, 2, 3), set())
    assert "jacobian" not in core.kinds
    assert core.kinds == ["input"] + ["elementwise"] * 7     # gt, neg, where, ne, float, mul, add: no constants


class WriteThroughSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):                                      # (1, 4)
        y = self.fc(x)
        y[:, :2].mul_(3)                                       # the case: torch.fx shows no write to y
        return y * 2


class WriteThroughViewOfView(WriteThroughSlice):
    def forward(self, x):
        y = self.fc(x)
        v = y.view(2, 2)
        v[0].zero_()
        return torch.relu(y) + v.sum()


class WriteToBaseReadThroughView(WriteThroughSlice):
    def forward(self, x):
        y = self.fc(x)
        v = y[:, 1:3]
        y.add_(x)                                              # v changes too
        v[:, 0] = x[:, 3] * 5                                  # and y through v
        return v * y[:, :2]


@pytest.mark.parametrize("cls, writes", [(WriteThroughSlice, 1), (WriteThroughViewOfView, 2),
                                         (WriteToBaseReadThroughView, 2)])
def test_writes_in_place_through_views_are_attributed_to_the_tensor_they_change(cls, writes):
    torch.manual_seed(16)
    net = cls().double().eval()
    x = torch.randn(1, 4, dtype=torch.float64)
    rec = record(net, x, "ops")
    assert rec.capture.startswith("functions (")     # torch.fx: no write through a view, or no item assignment
    assert torch.equal(rec.layers[rec.output].value, net(x.clone()))
    for layer in rec.layers[1:]:        # every layer is what its parents' recorded values give: no stale parent
        inputs = [rec.layers[p].value.reshape(s) for p, s in zip(layer.op_inputs, layer.op.in_shapes)]
        assert torch.equal(layer.op.evaluate(inputs, False), layer.value), layer.name
    assert sum(l.name.startswith("write") for l in rec.layers) == writes
    check_blocks(net, x, {"gather"}, fallback=True)          # write blocks: exact against the Jacobian


class OptionalArgument(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, extra=None, skips=None):             # as timm's DlaTree
        skips = [] if skips is None else skips
        out = self.conv(x)
        return out if extra is None else out + extra


def test_optional_forward_arguments_are_traced_at_their_defaults():
    net = nn.Sequential(nn.Conv2d(1, 2, 1), OptionalArgument()).eval()
    x = torch.randn(1, 1, 4, 4)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
    assert core.probed == () and type(core.blocks[2][0][1]).__name__ == "Kron"
    assert core.blocks[2][0][1].nnz == 2 * 2 * (4 * 4 * 9 - 4 * 3 * 4 + 4)    # 3 x 3 windows, zero padding


def test_traced_graphs_that_fail_to_run_fall_back_to_the_real_forward(monkeypatch):
    from nsp.tracing import symbolic

    def broken(self, *args):
        raise RuntimeError("boom")
    monkeypatch.setattr(symbolic._Recorder, "run", broken)
    rec = record(nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU()), torch.randn(1, 1, 3, 3), "ops")
    assert rec.capture == ("functions (the torch.fx graph of Sequential failed where its forward() runs "
                           "(RuntimeError: boom))")
    assert [l.op.kind for l in rec.layers[1:]] == ["conv", "elementwise"]


def test_container_children_without_kronecker_form_use_exact_reachability():
    torch.manual_seed(10)
    inner = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), Transpose(), nn.ReLU(), nn.Conv2d(2, 3, (1, 3)))
    net = nn.Sequential(nn.Conv2d(1, 2, 1), inner).eval()
    x = torch.randn(1, 1, 5, 9)                               # 2 x 5 x 9 -> 3 x 9 x 3: 270 input bits per row
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
    block = core.blocks[2][0][1]
    assert type(block).__name__ == "Coo"
    got = np.zeros(block.shape, dtype=bool)
    got[block.rows, block.cols] = True
    traced = nsp.GraphCore.from_activations(nsp.Activations(inner, torch.randn(1, 2, 5, 9), trace="ops"))
    assert np.array_equal(got, reach(traced, traced.n_layers - 1))


@pytest.mark.parametrize("bitset_bytes", [1 << 28, 1])        # one pass; one 64-bit word per pass
def test_bitset_reachability_is_the_same_forward_and_backward(monkeypatch, bitset_bytes):
    from nsp.graph import collapse
    monkeypatch.setattr(collapse, "BITSET_BYTES", bitset_bytes)
    torch.manual_seed(11)
    shrink = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), Transpose(), nn.ReLU(), nn.Conv2d(2, 3, (1, 3)))
    grow = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), Transpose(), nn.ReLU(), nn.Conv2d(5, 3, 1))
    for inner in (shrink, grow):                            # more inputs than outputs (backward), fewer
        core = nsp.GraphCore.from_activations(nsp.Activations(inner, torch.randn(1, 2, 5, 9), trace="ops"))
        assert (core.sizes[0] > core.sizes[-1]) == (inner is shrink)
        shape = tuple(core.sizes)
        block = collapse._bitset_reach(core, core.n_layers - 1, 1 << 30, "m")
        assert block.nnz == len(set(zip(block.rows.tolist(), block.cols.tolist())))
        got = np.zeros(block.shape, dtype=bool)
        got[block.rows, block.cols] = True
        assert np.array_equal(got, reach(core, core.n_layers - 1)), shape


def test_collapsed_blocks_above_the_size_limit_are_refused_with_their_size(monkeypatch):
    from nsp.graph import collapse
    torch.manual_seed(12)
    inner = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), Transpose(), nn.ReLU(), nn.Conv2d(2, 3, (1, 3)))
    net = nn.Sequential(nn.Conv2d(1, 2, 1), inner).eval()
    x = torch.randn(1, 1, 5, 9)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
    nnz = core.blocks[2][0][1].nnz
    monkeypatch.setattr(collapse, "COLLAPSE_LIMIT", nnz)         # at the limit: accepted
    assert nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children")).blocks[2][0][1].nnz == nnz
    monkeypatch.setattr(collapse, "COLLAPSE_LIMIT", nnz - 1)
    with pytest.raises(nsp.ConnectivityError, match=rf"layer 2 \('1'\): module Sequential .* \(81 outputs x 90 "
                       rf"inputs\) would have {nnz:,} edges, more than the limit of {nnz - 1:,}. Use trace='ops'"):
        nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"), jacobian_limit=16)
    monkeypatch.setattr(collapse, "BITSET_BYTES", 1)             # several passes: estimated first
    monkeypatch.setattr(collapse, "COLLAPSE_LIMIT", nnz // 3)
    with pytest.raises(nsp.ConnectivityError, match=r"would have about [\d,]+ edges \(estimated from 64 sampled"):
        nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"), jacobian_limit=16)


def test_container_children_that_cannot_be_traced_are_refused(monkeypatch):
    from nsp.graph import collapse

    def fails(*args, **kwargs):
        raise nsp.tracing.TraceError("torch.fx could not trace it")
    monkeypatch.setattr(collapse, "record", fails)
    x = torch.randn(1, 1, 3, 3)
    container = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU())).eval()
    with pytest.raises(nsp.ConnectivityError, match=r"layer 2 \('1'\): module Sequential has no connectivity rule "
                       r"and its internals could not be traced \(torch.fx could not trace it\); .* use trace='ops'"):
        nsp.GraphCore.from_activations(nsp.Activations(container, x, trace="children"))
    leaf = nn.Sequential(nn.Conv2d(1, 2, 1), Transpose()).eval()      # no child modules: the fallback decides
    core = nsp.GraphCore.from_activations(nsp.Activations(leaf, x, trace="children"))
    assert core.kinds == ["input", "conv", "jacobian"] and core.probed == (2,)


def test_shape_only_arguments_are_not_dependences():
    class AsShapes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)

        def forward(self, x):                                  # (1, 2, 3)
            y = self.fc(x.flatten(1))
            return y.reshape_as(x) + x[:, :1].expand_as(x) + y.view_as(x).type_as(x)
    core = check_blocks(AsShapes(), torch.randn(1, 2, 3), {"reshape", "gather"})
    assert "jacobian" not in core.kinds


def test_missing_dependences_finds_removed_edges():
    from nsp.graph.verify import missing_dependences
    torch.manual_seed(18)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randn(1, 1, 4, 4)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    assert missing_dependences(net, core, x) == 0
    adjacency = core.adjacency.tolil()
    assert adjacency[:, 0].nnz == 2 * 4                       # input 0 feeds 4 positions in 2 channels
    adjacency[:, 0] = 0                                       # cut every edge out of input 0
    core.csr = adjacency.tocsr()
    assert missing_dependences(net, core, x) == 2 * 3          # linear: all 3 outputs read it, at both inputs


def test_coo_union_is_the_sorted_set_of_coordinates():
    from nsp.operations.blocks import Coo
    rng = np.random.default_rng(4)
    rows = [rng.integers(0, 7, 40), rng.integers(0, 7, 25), np.zeros(0, np.int64)]
    cols = [rng.integers(0, 9, 40), rng.integers(0, 9, 25), np.zeros(0, np.int64)]
    block = Coo.union(rows, cols, (7, 9))
    expected = sorted({(int(r), int(c)) for rs, cs in zip(rows, cols) for r, c in zip(rs, cs)})
    assert list(zip(block.rows.tolist(), block.cols.tolist())) == expected and block.shape == (7, 9)
    empty = Coo.union([np.zeros(0, np.int64)], [np.zeros(0, np.int64)], (2, 3))
    assert empty.nnz == 0 and empty.shape == (2, 3)
