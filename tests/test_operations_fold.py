"""Rules for F.unfold / nn.Unfold (im2col) and F.fold / nn.Fold (col2im): each block equals the Jacobian's
nonzero pattern edge by edge (kernel, dilation, padding, stride; ints and pairs), in ops and children traces,
with no Jacobian fallback; unfold -> fold round trips and VOLO's outlook attention."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.graph.core import GraphCore
from nsp.graph.weights import incoming

from test_connectivity import jac_patterns, stored_block
from test_operations_more import Fn

torch.set_num_threads(1)


class Calls(Fn):
    """Branches on a shape, which stops torch.fx: ops mode records the calls of a real forward pass instead
    (where ``F.unfold`` arrives by the name it shares with the tensor method ``Tensor.unfold``)."""

    def forward(self, x):
        if x.shape[-1] > 0:
            return self.fn(x)
        return x


HOW = {Fn: "torch.fx", Calls: "functions"}


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def columns(channels, size, kernel, dilation=1, padding=0, stride=1):
    """The (C * kh * kw, L) shape that unfold gives for an image of ``size`` (what fold takes)."""
    k, d, p, s = pair(kernel), pair(dilation), pair(padding), pair(stride)
    n = [(size[a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(2)]
    return channels * k[0] * k[1], n[0] * n[1]


# (kernel, dilation, padding, stride, channels, image size)
WINDOWS = [
    (2, 1, 0, 1, 2, (4, 5)),
    ((2, 3), 1, 1, 1, 2, (5, 4)),                    # non-square kernel, padding
    (3, 2, (1, 2), 1, 1, (7, 6)),                     # dilation 2, padding per axis
    (2, 1, 0, 3, 2, (7, 8)),                          # stride > kernel: pixels nobody reads
    ((3, 2), (2, 1), (2, 0), (2, 1), 3, (6, 5)),      # everything per axis
    (3, 1, 1, 2, 2, (5, 5)),                          # VOLO's outlook window (kernel 3, padding 1, stride 2)
    (1, 1, 0, 1, 2, (3, 4)),                          # kernel 1: an identity
    ((1, 4), (1, 2), (0, 3), (1, 2), 1, (3, 6)),      # padding larger than the kernel reaches
]
IDS = [f"k{k}-d{d}-p{p}-s{s}" for k, d, p, s, _, _ in WINDOWS]


def unfold_case(kernel, dilation, padding, stride, channels, size):
    fn = lambda x: F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)     # noqa: E731
    return fn, (1, channels) + size


def fold_case(kernel, dilation, padding, stride, channels, size):
    fn = lambda x: F.fold(x, size, kernel, dilation=dilation, padding=padding, stride=stride)  # noqa: E731
    return fn, (1,) + columns(channels, size, kernel, dilation, padding, stride)


def traced(net, shape, trace="ops", seed=0, how=None):
    """Core of ``net`` on a seeded float64 input; ``how``: the ops capture expected (``torch.fx`` or
    ``functions``)."""
    torch.manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64)
    acts = nsp.Activations(net, x, trace=trace)
    if how is not None:
        assert acts.recording.capture.startswith(how)
    core = GraphCore.from_activations(acts)
    return core, x, acts.to_array(np.float64).reshape(1, -1)


def check_last_layer(core, fn, x, s, kind):
    """The last layer is ``kind`` from its rule, its block the Jacobian's pattern, its weights ``fn`` itself."""
    assert core.kinds[-1] == kind and core.probed == () and "jacobian" not in core.kinds
    (parent, block), = core.blocks[-1]
    assert parent == core.n_layers - 2
    expected, = jac_patterns(fn, x)
    got = stored_block(block)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected), f"{(got & ~expected).sum()} extra, {(expected & ~got).sum()} missing edges"
    with torch.no_grad():
        want = fn(x).reshape(-1).numpy()
    layer = core.n_layers - 1
    assert np.abs(incoming(core, layer, s)[0] - want).max() <= 1e-12 * (1 + np.abs(want).max())
    sem = nsp.make_transform("sem").fit(core).transform(s)              # linear: nothing but propagation
    assert np.abs(sem[0, core.offsets[layer]:]).max() <= 1e-12 * (1 + np.abs(want).max())


@pytest.mark.parametrize("window", WINDOWS, ids=IDS)
@pytest.mark.parametrize("capture", [Fn, Calls], ids=["fx", "calls"])
@pytest.mark.parametrize("op", ["unfold", "fold"])
def test_function_blocks_equal_the_jacobian_pattern(op, capture, window):
    fn, shape = (unfold_case if op == "unfold" else fold_case)(*window)
    core, x, s = traced(capture(fn), shape, how=HOW[capture])
    check_last_layer(core, fn, x, s, op)


@pytest.mark.parametrize("capture", [Fn, Calls], ids=["fx", "calls"])
def test_the_tensor_method_unfold_stays_data_movement(capture):
    for fn in (lambda x: x.unfold(-1, 2, 1), lambda x: x.unfold(dimension=2, size=3, step=2),
               lambda x: x.unfold(1, 1, 1)):
        core, x, _ = traced(capture(fn), (1, 2, 5, 4), how=HOW[capture])
        assert core.kinds[-1] == "gather" and core.probed == ()
        expected, = jac_patterns(fn, x)
        assert np.array_equal(stored_block(core.blocks[-1][0][1]), expected)


@pytest.mark.parametrize("window", WINDOWS, ids=IDS)
@pytest.mark.parametrize("trace", ["ops", "children"])
@pytest.mark.parametrize("op", ["unfold", "fold"])
def test_module_blocks_equal_the_jacobian_pattern(op, trace, window):
    kernel, dilation, padding, stride, channels, size = window
    if op == "unfold":
        module = nn.Unfold(kernel, dilation=dilation, padding=padding, stride=stride)
        shape = (1, channels) + size
    else:
        module = nn.Fold(size, kernel, dilation=dilation, padding=padding, stride=stride)
        shape = (1,) + columns(channels, size, kernel, dilation, padding, stride)
    core, x, s = traced(nn.Sequential(module), shape, trace)
    assert core.n_layers == 2
    check_last_layer(core, module, x, s, op)


def test_unbatched_inputs():
    fn = lambda x: F.unfold(x[0], (2, 3), padding=1, stride=(1, 2))          # noqa: E731  (C, H, W) input
    core, x, s = traced(Calls(fn), (1, 2, 4, 5), how="functions")
    check_last_layer(core, fn, x, s, "unfold")
    fn = lambda x: F.fold(x[0], (4, 5), (2, 3), padding=1, stride=(1, 2))   # noqa: E731  (C * k, L) input
    core, x, s = traced(Fn(fn), (1,) + columns(2, (4, 5), (2, 3), 1, 1, (1, 2)))
    check_last_layer(core, fn, x, s, "fold")


def check_reachability(core, fn, x):
    """Paths from the input to the output: exactly the Jacobian's pattern."""
    assert core.probed == () and "jacobian" not in core.kinds
    expected, = jac_patterns(fn, x)
    zeta = nsp.make_transform("standard", method="explicit").fit(core).zeta
    o = core.offsets
    got = zeta[o[-2]:o[-1], o[0]:o[1]].toarray() != 0
    assert np.array_equal(got, expected), f"{(got & ~expected).sum()} extra, {(expected & ~got).sum()} missing edges"


@pytest.mark.parametrize("window", WINDOWS, ids=IDS)
@pytest.mark.parametrize("trace", ["ops", "children"])
def test_unfold_fold_round_trip(trace, window):
    kernel, dilation, padding, stride, channels, size = window
    args = dict(kernel_size=kernel, dilation=dilation, padding=padding, stride=stride)
    net = nn.Sequential(nn.Unfold(**args), nn.Tanh(), nn.Fold(size, **args))
    core, x, _ = traced(net, (1, channels) + size, trace)
    assert core.kinds[1:] == ["unfold", "elementwise", "fold"]
    check_reachability(core, net, x)


def test_outlook_attention_round_trip():
    """VOLO's outlook attention in plain torch: values unfolded, mixed per window by a softmax, folded back."""
    k, pad, stride, heads, dim, size = 3, 1, 2, 2, 4, (5, 5)
    torch.manual_seed(0)
    v_proj, attn_proj = nn.Linear(dim, dim).double(), nn.Linear(dim, heads * k ** 4).double()

    def outlook(x):                                            # x: (1, H, W, C)
        B, H, W, C = x.shape
        h, w = -(-H // stride), -(-W // stride)
        v = F.unfold(v_proj(x).permute(0, 3, 1, 2), k, padding=pad, stride=stride)
        v = v.reshape(B, heads, C // heads, k * k, h * w).permute(0, 1, 4, 3, 2)
        a = F.avg_pool2d(x.permute(0, 3, 1, 2), stride, stride, ceil_mode=True).permute(0, 2, 3, 1)
        a = attn_proj(a).reshape(B, h * w, heads, k * k, k * k).permute(0, 2, 1, 3, 4).softmax(-1)
        y = (a @ v).permute(0, 1, 4, 3, 2).reshape(B, C * k * k, h * w)
        return F.fold(y, size, k, padding=pad, stride=stride)

    core, x, _ = traced(Fn(outlook), (1,) + size + (dim,))
    assert {"unfold", "fold"} <= set(core.kinds)
    check_reachability(core, outlook, x)


try:
    from nsp import external
    external.import_torchvision()
    import timm  # noqa: F401
    HAVE_TIMM = True
except ImportError:
    HAVE_TIMM = False
needs_timm = pytest.mark.skipif(not HAVE_TIMM, reason="the optional models extra (timm, torchvision) is not installed")


@needs_timm
def test_timm_outlook_attention_is_exact():
    from timm.models.volo import OutlookAttention
    torch.manual_seed(0)
    net = OutlookAttention(8, num_heads=2, kernel_size=3, padding=1, stride=2).double().eval()
    core, x, _ = traced(net, (1, 5, 4, 8))
    assert {"unfold", "fold"} <= set(core.kinds)
    check_reachability(core, net, x)


@needs_timm
def test_volo_builds_without_the_jacobian_fallback():
    torch.manual_seed(0)
    # the auxiliary head's x.max(1) has no rule (the fallback): left out, the rest is what VOLO is made of
    net = external.build("timm:volo_d1_224", {"img_size": 32, "num_classes": 10, "use_aux_head": False}).eval()
    x = torch.randn(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        core = GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    assert {"unfold", "fold"} <= set(core.kinds) and "jacobian" not in core.kinds and core.probed == ()
    # (every output reads every input here: test_timm_outlook_attention_is_exact is the edge-by-edge check)
