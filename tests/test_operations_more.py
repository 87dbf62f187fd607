"""Rules for operations of users' nets: torch.stack, F.normalize, F.interpolate; each block equals the
Jacobian's nonzero pattern, each linear part the operation's own weights; timm models that use them."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.graph.core import GraphCore
from nsp.graph.weights import incoming

from test_connectivity import jac_patterns, stored_block


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def last_layer(fn, shape, seed=0):
    """Core of ``fn`` traced in ops mode (float64), and the blocks of its last layer per parent layer."""
    torch.manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64)
    acts = nsp.Activations(Fn(fn), x, trace="ops")
    core = GraphCore.from_activations(acts)
    return core, x, acts.to_array(np.float64).reshape(1, -1)


STACKS = [
    (lambda x: torch.stack([x, x.sin(), -x], dim=1), (1, 2, 3)),
    (lambda x: torch.stack([x.exp(), x], dim=-1), (1, 4)),
    (lambda x: torch.stack((x, torch.ones_like(x), x.cos()), 0), (1, 3, 2)),      # a constant item
]


@pytest.mark.parametrize("fn, shape", STACKS)
def test_stack_blocks_equal_the_jacobian_pattern(fn, shape):
    core, x, _ = last_layer(fn, shape)
    assert core.kinds[-1] == "stack" and core.probed == ()
    expected, = jac_patterns(fn, x)
    zeta = nsp.make_transform("standard", method="explicit").fit(core).zeta      # reachability, with paths
    o = core.offsets
    assert np.array_equal(zeta[o[-2]:o[-1], o[0]:o[1]].toarray() != 0, expected)
    params = core.table[core.n_layers - 1].params
    dim = params["dim"] % (len(shape) + 1)
    for item, (_, blk) in zip(params["items"], core.blocks[-1]):       # item i fills index i of the new axis
        selection = blk.factors[dim]
        assert selection.shape == (len(params["shapes"]), 1) and selection.nnz == 1
        assert np.flatnonzero(stored_block(type(blk)((selection,))))[0] == item


@pytest.mark.parametrize("dim", [1, -1, (1, 2)])
def test_normalize_reads_each_vector_whole(dim):
    fn = lambda x: F.normalize(x, dim=dim)                   # noqa: E731
    core, x, _ = last_layer(fn, (1, 3, 4))
    assert core.kinds[-1] == "reduce" and core.probed == ()
    expected, = jac_patterns(fn, x)
    assert np.array_equal(stored_block(core.blocks[-1][0][1]), expected)


INTERPOLATIONS = [
    (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), (1, 2, 3, 4)),
    (lambda x: F.interpolate(x, size=(5, 7), mode="nearest-exact"), (1, 2, 3, 4)),
    (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), (1, 2, 3, 4)),
    (lambda x: F.interpolate(x, size=(6, 5), mode="bilinear", align_corners=True), (1, 1, 4, 3)),
    (lambda x: F.interpolate(x, scale_factor=1.7, mode="bicubic", align_corners=False), (1, 2, 4, 5)),
    (lambda x: F.interpolate(x, size=(3, 2), mode="bicubic", align_corners=True), (1, 2, 6, 5)),
    (lambda x: F.interpolate(x, size=(2, 3), mode="bilinear", antialias=True), (1, 1, 6, 7)),
    (lambda x: F.interpolate(x, scale_factor=3, mode="linear"), (1, 2, 4)),
    (lambda x: F.interpolate(x, size=(3, 4, 2), mode="trilinear"), (1, 1, 2, 3, 4)),
    (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 3, 2, 2)),
]


@pytest.mark.parametrize("fn, shape", INTERPOLATIONS)
def test_interpolation_blocks_and_weights_are_the_operations_own(fn, shape):
    core, x, s = last_layer(fn, shape)
    assert core.kinds[-1] == "interpolate" and core.probed == ()
    expected, = jac_patterns(fn, x)
    assert np.array_equal(stored_block(core.blocks[-1][0][1]), expected)
    # the linear part is the interpolation itself: A s = f(s), and so is every edge weight (a dense A)
    with torch.no_grad():
        want = fn(x).reshape(-1).numpy()
    assert np.abs(incoming(core, 1, s)[0] - want).max() <= 1e-14 * np.abs(want).max()
    from nsp.graph.weights import weighted_adjacency
    a = weighted_adjacency(core).toarray()[core.offsets[1]:, :core.offsets[1]]
    assert np.abs(a @ s[0, :core.offsets[1]] - want).max() <= 1e-14 * np.abs(want).max()
    sem = nsp.make_transform("sem").fit(core).transform(s)
    assert np.abs(sem[0, core.offsets[1]:]).max() <= 1e-14 * np.abs(want).max()       # nothing but propagation


def test_a_mode_that_is_not_a_product_of_axis_weights_goes_to_the_fallback(monkeypatch):
    fn = lambda x: F.interpolate(x, size=(2, 2), mode="area")          # noqa: E731  adaptive average pooling
    core, x, _ = last_layer(fn, (1, 1, 5, 3))
    assert core.kinds[-1] == "interpolate"                               # separable windows: the rule
    from nsp.operations import resample
    monkeypatch.setattr(resample, "axis_matrices", lambda op: None)      # as if it were not separable
    core, x, _ = last_layer(fn, (1, 1, 5, 3))
    assert core.kinds[-1] == "interpolate"                               # its blocks from the Jacobian
    expected, = jac_patterns(fn, x)
    assert np.array_equal(stored_block(core.blocks[-1][0][1]), expected)


def _masked_attention(mask):
    def fn(x):                                                   # x: (1, 2 heads, 4 rows, 3 features)
        return F.scaled_dot_product_attention(x * 0.5, x.flip(-2), x.sin(), attn_mask=mask)
    return fn


MASKS = {
    "float": torch.randn(4, 4, dtype=torch.float64),                                  # scores shifted: all read
    "float -inf": torch.tensor([[0.0, -np.inf, 1.0, 2.0], [0.5, 0.0, -np.inf, -np.inf],
                                [-np.inf, -np.inf, -np.inf, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64),
    "float per head, same keys": torch.where(torch.rand(1, 2, 4, 4) < 0.5, float("-inf"), 1.0).double()[:, :1]
    .expand(1, 2, 4, 4).clone() + torch.randn(1, 2, 4, 4, dtype=torch.float64),
    "bool per head, other keys": torch.rand(1, 2, 4, 4, generator=torch.Generator().manual_seed(3)) < 0.6,
}


@pytest.mark.parametrize("name", list(MASKS))
def test_attention_masks_float_and_per_head(name):
    mask = MASKS[name]
    fn = _masked_attention(mask)
    core, x, _ = last_layer(fn, (1, 2, 4, 3))
    expected, = jac_patterns(fn, x)
    zeta = nsp.make_transform("standard", method="explicit").fit(core).zeta
    o = core.offsets
    assert np.array_equal(zeta[o[-2]:o[-1], o[0]:o[1]].toarray() != 0, expected)
    ruled = core.kinds[-1] == "attention" and not core.probed
    same = bool((torch.isfinite(mask) if mask.is_floating_point() else mask).reshape(-1, 4, 4).unique(dim=0).shape[0] == 1)
    assert ruled == same                                 # a pattern that differs between heads: the fallback
