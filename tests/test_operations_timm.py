"""timm architectures that need the rules for stack, additive attention masks, normalize, interpolate and
recurrent layers: each builds in ops mode without the Jacobian fallback, and autograd finds no dependence the
graph misses."""

import warnings

import pytest
import torch

import nsp
from nsp import external
from nsp.graph.verify import missing_dependences

try:
    external.import_torchvision()
    import timm  # noqa: F401
except ImportError as err:
    pytest.skip(f"the optional models extra (timm, torchvision) is not installed: {err}", allow_module_level=True)

MODELS = [
    ("timm:skresnet18", {}, 32, "stack"),
    ("timm:beit_base_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 64, "num_heads": 2},
     32, "attention"),
    ("timm:swinv2_cr_tiny_ns_224", {"img_size": 32, "window_size": 4, "depths": (1, 1, 1, 1)}, 32, "reduce"),
    ("timm:efficientformerv2_s0", {"img_size": 64}, 64, "interpolate"),
    ("timm:sequencer2d_s", {"img_size": 32, "layers": (1, 1, 1, 1)}, 32, "recurrent"),
]


@pytest.mark.parametrize("arch, options, size, kind", MODELS, ids=[m[0] for m in MODELS])
def test_models_with_the_new_rules(arch, options, size, kind):
    torch.manual_seed(0)
    net = external.build(arch, dict(options, num_classes=10)).eval()
    x = torch.randn(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    assert kind in core.kinds and "jacobian" not in core.kinds and core.probed == ()
    assert missing_dependences(net, core, x) == 0
