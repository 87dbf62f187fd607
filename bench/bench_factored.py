"""Benchmark: the standard transform from Kronecker factors on VGG- and ResNet-style nets.

A scale series of the zoo's CIFAR-sized networks (3x32x32 inputs, traced in
ops mode, random weights) from ~10k to ~1M neurons. For each: set-up time
(trace + graph core + factored closure), nonzeros the closure would have as
a matrix, forward and inverse ms per sample at batch 64 (NumPy backend, and
torch on the CPU; best of two calls after a first one, which is printed
too), peak memory of a fresh process (fit + forward + inverse),
and, where the explicit zeta/Möbius path still fits, its set-up and forward
time in the same run with the ratio explicit / factored (the spectra are
compared too). Each size runs in its own process so that peaks don't mix.

    .venv/bin/python bench/bench_factored.py [--quick] [--batch 64]

--quick runs the small sizes only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from common import timed

#: (label, architecture, options); neurons grow with the width
SERIES = [
    ("vgg", "vgg_cifar", {"width": 1}),
    ("vgg", "vgg_cifar", {"width": 4}),
    ("vgg", "vgg_cifar", {"width": 16}),
    ("vgg", "vgg_cifar", {"width": 80}),
    ("resnet", "resnet_cifar", {"width": 1, "blocks": 1}),
    ("resnet", "resnet_cifar", {"width": 4, "blocks": 1}),
    ("resnet", "resnet_cifar", {"width": 8, "blocks": 2}),
    ("resnet", "resnet_cifar", {"width": 32, "blocks": 2}),
]
#: the explicit path runs up to this many closure nonzeros (~24 bytes each at its peak)
EXPLICIT_LIMIT = 1.5e8


def one(architecture: str, options: dict, batch: int) -> dict:
    """Measure one network (run in a child process)."""
    from nsp import Activations, zoo
    from nsp.transforms.standard import StandardTransform
    from nsp.graph.core import GraphCore
    torch.manual_seed(0)
    start = time.perf_counter()
    net = zoo.build(architecture, options).eval()
    acts = Activations(net, torch.rand(1, 3, 32, 32), trace="ops")
    core = GraphCore.from_activations(acts)
    transform = StandardTransform("factored").fit(core)
    setup = time.perf_counter() - start
    signals = np.random.default_rng(0).random((batch, core.n_nodes)).astype(np.float32)
    out = {"neurons": core.n_nodes, "layers": core.n_layers, "setup_s": setup, "terms": transform.closure.n_terms,
           "closure_nnz": transform.closure.nnz}
    t = time.perf_counter()
    spectra = transform.transform(signals)
    out["first_forward_ms"] = (time.perf_counter() - t) / batch * 1e3
    out["forward_ms"] = min(out["first_forward_ms"], timed(lambda: transform.transform(signals), 2)[0] / batch * 1e3)
    back = transform.inverse_transform(spectra)
    out["inverse_ms"] = timed(lambda: transform.inverse_transform(spectra), 2)[0] / batch * 1e3
    out["growth"] = float(np.abs(spectra).max() / np.abs(signals).max())
    out["roundtrip"] = float(np.abs(back - signals).max() / np.abs(signals).max())
    del back
    out["torch_forward_ms"] = timed(lambda: transform.transform(signals, device="cpu"), 2)[0] / batch * 1e3
    torch_spectra = transform.transform(signals, device="cpu")
    out["torch_vs_numpy"] = float(np.abs(torch_spectra - spectra).max() / np.abs(spectra).max())
    del torch_spectra
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if out["closure_nnz"] <= EXPLICIT_LIMIT:
        t = time.perf_counter()
        explicit = StandardTransform("explicit").fit(core)
        out["explicit_setup_s"] = time.perf_counter() - t
        reference = explicit.transform(signals)
        out["explicit_forward_ms"] = timed(lambda: explicit.transform(signals), 2)[0] / batch * 1e3
        out["explicit_vs_factored"] = float(np.abs(reference - spectra).max() / np.abs(reference).max())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        architecture, options = json.loads(args.child)
        print(json.dumps(one(architecture, options, args.batch)))
        return
    print(f"factored standard transform, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"{'net':<7}{'options':<22}{'neurons':>10}{'closure nnz':>13}{'set-up s':>9}{'fwd ms':>8}{'inv ms':>8}"
          f"{'torch ms':>9}{'peak MiB':>9}{'explicit: set-up s':>19}{'fwd ms':>8}{'ratio':>7}{'rel diff':>10}")
    for label, architecture, options in SERIES:
        if args.quick and max(options.values()) > 4:
            continue
        run = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--child",
                              json.dumps([architecture, options])], capture_output=True, text=True, check=True)
        r = json.loads(run.stdout.strip().splitlines()[-1])
        explicit = ("" if "explicit_setup_s" not in r else
                    f"{r['explicit_setup_s']:>19.2f}{r['explicit_forward_ms']:>8.2f}"
                    f"{r['explicit_forward_ms'] / r['forward_ms']:>6.1f}x{r['explicit_vs_factored']:>10.1e}")
        opts = ",".join(f"{k}={v}" for k, v in options.items())
        print(f"{label:<7}{opts:<22}{r['neurons']:>10,}{r['closure_nnz']:>13.3g}{r['setup_s']:>9.2f}"
              f"{r['forward_ms']:>8.2f}{r['inverse_ms']:>8.2f}{r['torch_forward_ms']:>9.2f}{r['peak_mib']:>9.0f}"
              f"{explicit}", flush=True)
        print(f"{'':<7}terms {r['terms']}, layers {r['layers']}; first forward call {r['first_forward_ms']:.2f} ms "
              f"per sample; max|c|/max|s| {r['growth']:.2g}, "
              f"round trip rel. error {r['roundtrip']:.1e}, torch vs NumPy {r['torch_vs_numpy']:.1e}", flush=True)


if __name__ == "__main__":
    main()
