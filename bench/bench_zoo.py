"""Graphs of the models users bring: timm and torchvision architectures, random weights, small inputs.

Per model: whether ops mode built a graph, neurons, edges, seconds, ``fallback`` (layers whose edges the
Jacobian fallback's probes found: neither a rule nor traceable internals cover them), ``missing`` (a
brute-force check: the nonzero pattern of the Jacobian of the network's output with respect to its
input, autograd, float64, two random inputs, against the graph's reachability from input to output;
Jacobian entries without a path, must be 0), then children mode (graph or error, and its time) and
whether the standard transform can take the factored path (or why not). Needs the ``models`` extra
(timm, torchvision). ``--quick``: the first 8 models; ``--from NAME``: start at that model.
"""

from __future__ import annotations

import sys
import time
import warnings

import torch

import nsp
from nsp import external
from nsp.graph.verify import missing_dependences
from nsp.transforms.factored import FactoredClosure, NotFactorable

VIT = {"img_size": 32, "patch_size": 8}
SWIN = {"img_size": 28, "patch_size": 2, "window_size": 7, "embed_dim": 24, "depths": (1, 1, 1),
        "num_heads": (1, 1, 1)}
MODELS = [
    ("timm:resnet10t", {}, 32), ("timm:resnet18", {}, 32), ("timm:resnet50", {}, 32),
    ("timm:resnext26ts", {}, 32), ("timm:seresnet18", {}, 32), ("timm:regnetx_002", {}, 32),
    ("timm:regnety_002", {}, 32), ("timm:efficientnet_b0", {}, 32), ("timm:tf_efficientnet_b0", {}, 32),
    ("timm:mobilenetv2_050", {}, 32), ("timm:mobilenetv3_small_050", {}, 32), ("timm:mnasnet_050", {}, 32),
    ("timm:ghostnet_050", {}, 32), ("timm:densenet121", {}, 32), ("timm:dla34", {}, 32),
    ("timm:vgg11", {}, 32), ("timm:convnext_atto", {}, 32), ("timm:convnextv2_atto", {}, 32),
    ("timm:vit_tiny_patch16_224", VIT, 32), ("timm:deit_tiny_patch16_224", VIT, 32),
    ("timm:vit_small_patch16_224", VIT, 32), ("timm:swin_tiny_patch4_window7_224", SWIN, 28),
    ("timm:mixer_s16_224", {"img_size": 32}, 32), ("timm:resmlp_12_224", {"img_size": 32}, 32),
    ("timm:cait_xxs24_224", {"img_size": 32}, 32), ("timm:mobilevit_xxs", {}, 64),
    ("timm:test_vit", {}, 160), ("timm:levit_128s", {"img_size": 32}, 32), ("timm:poolformer_s12", {}, 32),
    ("torchvision:resnet18", {}, 32), ("torchvision:mobilenet_v2", {}, 32),
    ("torchvision:mobilenet_v3_small", {}, 32), ("torchvision:efficientnet_b0", {}, 32),
    ("torchvision:squeezenet1_0", {}, 32), ("torchvision:densenet121", {}, 32), ("torchvision:vgg11", {}, 32),
    ("torchvision:shufflenet_v2_x0_5", {}, 32), ("torchvision:regnet_x_400mf", {}, 32),
    ("torchvision:convnext_tiny", {}, 32), ("torchvision:vit_b_16", {"image_size": 32}, 32),
    ("torchvision:swin_t", {}, 32),
]


def main() -> None:
    torch.set_num_threads(2)
    warnings.simplefilter("ignore")
    models = MODELS[:8] if "--quick" in sys.argv else MODELS
    if "--from" in sys.argv:                  # resume at a model
        start = [name for name, _, _ in models].index(sys.argv[sys.argv.index("--from") + 1])
        models = models[start:]
    print(f"{'model':<38}{'ops':>5}{'neurons':>10}{'edges':>12}{'s':>7}{'fallback':>9}{'missing':>8}"
          f"{'children':>10}{'s':>6}  factored")
    built = 0
    for arch, options, size in models:
        torch.manual_seed(0)
        net = external.build(arch, dict(options, num_classes=10)).eval()
        x = torch.randn(1, 3, size, size)
        start = time.perf_counter()
        try:
            core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
            seconds = time.perf_counter() - start
            edges = core.adjacency.nnz
            try:
                FactoredClosure.of(core)
                factored = "yes"
            except NotFactorable as err:
                factored = str(err)[:90]
            missing = missing_dependences(net, core, x)
            row = (f"{'yes':>5}{core.n_nodes:>10,}{edges:>12,}{seconds:>7.1f}{len(core.probed):>9}"
                   f"{missing:>8}")
            built += 1
        except Exception as err:
            seconds = time.perf_counter() - start
            row, factored = f"{'no':>5}{'':>10}{'':>12}{seconds:>7.1f}{'':>9}{'':>8}", f"{type(err).__name__}: {err}"[:160]
        start = time.perf_counter()
        try:
            net = net.float()
            nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="children"))
            children = "graph"
        except Exception as err:
            children = type(err).__name__[:9]
        print(f"{arch:<38}{row}{children:>10}{time.perf_counter() - start:>6.1f}  {factored}", flush=True)
    print(f"ops-mode graphs: {built} of {len(models)} ({built / len(models):.0%}); missing: Jacobian entries "
          f"(output x input, 2 random inputs) without a path in the graph")


if __name__ == "__main__":
    main()
