"""Benchmark: the sem transform c = (I - A) s with the network's own weights.

Samples/s (forward and inverse) for the reference MNIST network (ops mode)
and for a ~1M-neuron VGG-style conv net (zoo vgg_cifar, width 80, ops mode),
each beside a reference computed in the same run: for MNIST the product with
the assembled weighted adjacency (s - A s as one sparse product; A holds the
max-pool winners of sample 0, so the values are compared on that sample),
for the large net the factored standard transform (the weighted adjacency
has 2.8e8 edges there).

    .venv/bin/python bench/bench_sem.py [--quick] [--batch 64]

--quick skips the large net.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import mnist_net, synthetic_images, timed

import nsp
from nsp.transforms.standard import StandardTransform
from nsp.graph.core import GraphCore
from nsp.transforms.sem import SemTransform
from nsp.tracing import record
from nsp.graph.weights import weighted_adjacency
from nsp.zoo import VGGNet


def patterns(net, x, trace) -> np.ndarray:
    with torch.no_grad():
        return record(net, x, trace).values(np.float64)


def mnist(batch: int) -> None:
    net, weights = mnist_net()
    x = synthetic_images(batch)
    acts = nsp.Activations(net, x[:1], trace="ops")
    core = GraphCore.from_activations(acts)
    s = patterns(net, x, "ops")
    sem = SemTransform().fit(core)
    t_fwd, c = timed(lambda: sem.transform(s), 3)
    t_inv, back = timed(lambda: sem.inverse_transform(c), 3)
    t_build, a = timed(lambda: weighted_adjacency(core))
    t_ref, ref = timed(lambda: s - (a @ s.T).T, 3)
    print(f"MNIST network ({weights}; {core.n_nodes:,} nodes, {a.nnz:,} weighted edges), batch {batch}")
    print(f"  sem forward        {batch / t_fwd:10,.0f} samples/s   inverse {batch / t_inv:10,.0f} samples/s")
    print(f"  s - A s (CSR)      {batch / t_ref:10,.0f} samples/s   (assembling A: {t_build:.2f} s)   "
          f"layer-wise / CSR {t_ref / t_fwd:.2f}x")
    print(f"  sample 0 (whose max-pool winners A holds): max |layer-wise - CSR| / max |s| "
          f"{np.abs(c[0] - ref[0]).max() / np.abs(s[0]).max():.1e}; "
          f"round trip {np.abs(back - s).max() / np.abs(s).max():.1e}; max |c| / max |s| "
          f"{np.abs(c).max() / np.abs(s).max():.2f}")


def large(batch: int) -> None:
    torch.manual_seed(0)
    net = VGGNet(width=80).eval()
    x = torch.rand(batch, 3, 32, 32)
    start = time.perf_counter()
    acts = nsp.Activations(net, x[:1], trace="ops")
    core = GraphCore.from_activations(acts)
    sem = SemTransform().fit(core)
    setup = time.perf_counter() - start
    s = patterns(net, x, "ops")
    t_fwd, c = timed(lambda: sem.transform(s), 2)
    t_inv, back = timed(lambda: sem.inverse_transform(c), 2)
    standard = StandardTransform("factored").fit(core)
    t_std, _ = timed(lambda: standard.transform(s), 2)
    print(f"VGG-style net, width 80 ({core.n_nodes:,} neurons, {core.n_edges:,} edges), batch {batch}; "
          f"set-up {setup:.1f} s")
    print(f"  sem forward        {batch / t_fwd:10,.0f} samples/s ({t_fwd / batch * 1e3:.1f} ms)   inverse "
          f"{batch / t_inv:10,.0f} samples/s")
    print(f"  standard, factored {batch / t_std:10,.0f} samples/s   sem / standard time {t_fwd / t_std:.2f}x")
    print(f"  round trip {np.abs(back - s).max() / np.abs(s).max():.1e}; max |c| / max |s| "
          f"{np.abs(c).max() / np.abs(s).max():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="MNIST only")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads")
    mnist(args.batch)
    if not args.quick:
        large(args.batch)


if __name__ == "__main__":
    main()
