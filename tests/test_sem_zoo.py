"""The sem transform on the architectures users bring (timm, torchvision), in both trace modes.

Each model (random weights, float64, a small input) is checked two independent ways:

- coefficient by coefficient against ``s - A s`` with ``A`` the weighted adjacency assembled edge by
  edge (``weighted_adjacency``: the parts' edge lists, not the layer-by-layer products the transform uses);
- layer by layer against the operation itself: where a layer is affine in its parents (probed here, in
  the test, at the recorded values and a random direction), ``A s = f(s) - f(0)``, the JVP of its linear part.

The bench list (``bench/bench_zoo.py``) is the source of models; ``NSP_SEM_ZOO=all`` runs every one of them,
the default a spread of families.
"""

import os
import resource
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nsp
from nsp.graph.weights import incoming, outgoing
from nsp.operations import part_edges
from nsp.transforms.sem import SemTransform

from nsp import external

try:
    external.import_torchvision()
    import timm  # noqa: F401
except ImportError as err:
    pytest.skip(f"the optional models extra (timm, torchvision) is not installed: {err}", allow_module_level=True)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_zoo import MODELS  # noqa: E402

SPREAD = ["timm:resnet10t", "timm:efficientnet_b0", "timm:mobilenetv3_small_050", "timm:densenet121",
          "timm:convnext_atto", "timm:vit_tiny_patch16_224", "timm:swin_tiny_patch4_window7_224",
          "timm:mixer_s16_224", "timm:cait_xxs24_224", "timm:mobilevit_xxs", "timm:levit_128s",
          "torchvision:resnet18", "torchvision:shufflenet_v2_x0_5", "torchvision:swin_t", "torchvision:vit_b_16"]
CHOSEN = [m for m in MODELS if os.environ.get("NSP_SEM_ZOO") == "all" or m[0] in SPREAD]
HEADROOM = 10 << 30         # address space a check may add: a mistake must not take the machine down
#: kinds that are linear by what they are (elementwise: where affine; reductions: sums and means)
LINEAR_KINDS = {"conv", "linear", "avgpool", "adaptive_avgpool", "reshape", "gather", "cat", "elementwise", "reduce"}


def _address_space() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


@pytest.fixture
def limited():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + HEADROOM, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _recorded(arch, options, size, trace):
    torch.manual_seed(0)
    net = external.build(arch, dict(options, num_classes=10)).eval().double()
    x = torch.randn(1, 3, size, size, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            acts = nsp.Activations(net, x, trace=trace)
        except nsp.tracing.TraceError as err:       # children mode needs a chain of children
            pytest.skip(f"children mode does not apply: {str(err)[:80]}")
        core = nsp.GraphCore.from_activations(acts)
    return acts.recording, core, acts.to_array(np.float64).reshape(1, -1)


def _parents(core, rec, s, layer, values=None):
    op = rec.layers[layer].op
    out = []
    for parent, shape in zip(core.parents[layer], op.in_shapes):
        v = s[0, core.offsets[parent]:core.offsets[parent + 1]] if values is None else values[parent]
        out.append(torch.from_numpy(np.array(v, dtype=np.float64)).reshape(tuple(shape)))
    return out


def _affine_reference(core, rec, s, layer, rng):
    """``f(s) - f(0)`` where the layer's operation is affine in its parents here, else None."""
    op = rec.layers[layer].op
    params = core.table[layer].params
    linear = core.kinds[layer] in LINEAR_KINDS and params.get("affine", True) and \
        (core.kinds[layer] != "reduce" or params.get("reduction") in ("sum", "mean"))
    if not linear or op.evaluate is None or len(set(core.parents[layer])) != len(core.parents[layer]):
        return None                 # other kinds' weights are 1 by convention (docs/graph.md)
    xs = _parents(core, rec, s, layer)
    rs = [torch.from_numpy(rng.standard_normal(tuple(x.shape))) * 10 * (1 + x.abs().max()) for x in xs]

    def f(values):
        with torch.no_grad():
            try:
                return op.evaluate(tuple(values), False).double().reshape(-1).numpy()
            except Exception:
                return None
    zero = f([torch.zeros_like(x) for x in xs])
    fs, fr, fm = f(xs), f(rs), f([-r for r in rs])
    fsr = f([x + r for x, r in zip(xs, rs)])
    if any(v is None or not np.all(np.isfinite(v)) for v in (zero, fs, fr, fm, fsr)):
        return None
    scale = 1 + max(np.abs(v).max(initial=0) for v in (zero, fs, fr, fm, fsr))
    if np.abs(fr + fm - 2 * zero).max(initial=0) > 1e-9 * scale or \
            np.abs(fsr - fs - fr + zero).max(initial=0) > 1e-9 * scale:
        return None                                    # not affine: its weights are a convention
    return fs - zero, scale


def _transposed_edge_sums(core, y):
    """``A^T y`` and ``|A|^T |y|`` from each block's edge list, the reference of the backward pass."""
    out, bound = np.zeros_like(y), np.zeros_like(y)
    for layer in range(1, core.n_layers):
        lo = core.offsets[layer]
        for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
            rows, cols, values = part_edges(part, block, in_shape, out_shape)
            size = core.offsets[parent + 1] - core.offsets[parent]
            out[core.offsets[parent]:core.offsets[parent] + size] += np.bincount(cols, values * y[lo + rows], size)
            bound[core.offsets[parent]:core.offsets[parent] + size] += np.bincount(
                cols, np.abs(values * y[lo + rows]), size)
    return out, bound


def _edge_sums(core, s):
    """``A s`` and ``|A| |s|`` from each block's edge list (``part_edges``), one layer at a time."""
    As, absAs = np.zeros_like(s), np.zeros_like(s)
    for layer in range(1, core.n_layers):
        lo, hi = core.offsets[layer], core.offsets[layer + 1]
        for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
            rows, cols, values = part_edges(part, block, in_shape, out_shape)
            x = s[core.offsets[parent] + cols]
            As[lo:hi] += np.bincount(rows, values * x, minlength=hi - lo)
            absAs[lo:hi] += np.bincount(rows, np.abs(values * x), minlength=hi - lo)
    return As, absAs


@pytest.mark.parametrize("trace", ["ops", "children"])
@pytest.mark.parametrize("arch,options,size", CHOSEN, ids=[m[0] for m in CHOSEN])
def test_sem_against_edges_and_the_operations(arch, options, size, trace, limited):
    rec, core, s = _recorded(arch, options, size, trace)
    sem = SemTransform().fit(core)
    c = sem.transform(s)
    As, absAs = _edge_sums(core, s[0])
    # coefficient by coefficient: the layer-by-layer sums against the edge list, to rounding of |A||s|
    assert np.all(np.abs(c[0] - (s[0] - As)) <= 1e-12 * (absAs + np.abs(s[0])) + 1e-300)
    rng = np.random.default_rng(0)
    checked = 0
    for layer in range(1, core.n_layers):
        ref = _affine_reference(core, rec, s, layer, rng)
        if ref is None:
            continue
        jvp, scale = ref
        got = incoming(core, layer, s)[0]
        assert np.abs(got - jvp).max(initial=0) <= 1e-10 * scale, (layer, core.names[layer], core.kinds[layer])
        checked += 1
    assert checked >= 3 or trace == "children"
    # the backward pass (contributions): every layer's transposed parts against the transposed edge list
    y = np.random.default_rng(1).standard_normal(core.n_nodes)
    back = np.zeros_like(y)
    for layer in range(1, core.n_layers):
        for parent, part in outgoing(core, layer, y[None, core.offsets[layer]:core.offsets[layer + 1]]):
            back[core.offsets[parent]:core.offsets[parent + 1]] += part[0]
    expected, bound = _transposed_edge_sums(core, y)
    assert np.all(np.abs(back - expected) <= 1e-12 * bound + 1e-300)
    # the inverse undoes the transform where the linear propagation is well conditioned: the error of
    # forward substitution grows with the products of the layers' weights (docs/transforms.md)
    back = sem.inverse_transform(c)
    assert np.all(np.isfinite(back))
