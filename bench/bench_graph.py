"""Benchmark: building the neuron graph.

Prints, for the reference MNIST network, the time to trace the activations,
build the array graph core and build the networkx graph, against a
brute-force reference computed in the same run (every layer's block from its
Jacobian, as the reference package does, but vectorised). Then a scale series
of plain conv nets up to ~1M neurons: time and peak memory of the core
against the number of edges.

    .venv/bin/python bench/bench_graph.py [--quick]
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import torch

from common import ConvStack, mnist_net, timed

import nsp
from nsp.graph.core import GraphCore
from nsp.operations import OPERATIONS


def jacobian_core(acts: nsp.Activations) -> GraphCore:
    """Brute force: every block from the nonzero pattern of the layer's Jacobian."""
    with OPERATIONS.temporary():
        fallback = OPERATIONS["jacobian"]
        for name in list(OPERATIONS):
            OPERATIONS.add(fallback, name, replace=True)
        return GraphCore.from_activations(acts, jacobian_limit=1 << 30)


def mnist(repeats: int) -> None:
    net, source = mnist_net()
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t_acts, acts = timed(lambda: nsp.Activations(net, x), repeats)
    t_core, core = timed(lambda: GraphCore.from_activations(acts), repeats)
    t_nx, graph = timed(lambda: nsp.NNGraph(acts), repeats)
    t_ref, ref = timed(lambda: jacobian_core(acts), 1)
    same = (ref.adjacency != core.adjacency).nnz == 0
    print(f"MNIST reference network ({source}): {core.n_nodes:,} nodes, {core.n_edges:,} edges")
    print(f"  trace activations        {t_acts * 1e3:9.1f} ms")
    print(f"  graph core (rules)       {t_core * 1e3:9.1f} ms")
    print(f"  NNGraph incl. networkx   {t_nx * 1e3:9.1f} ms")
    print(f"  brute-force Jacobian     {t_ref * 1e3:9.1f} ms   (same adjacency: {same})")
    print(f"  ratio brute force / core {t_ref / t_core:9.1f} x")


def scale(quick: bool) -> None:
    series = [(8, 32, 4), (16, 32, 8), (16, 64, 8), (32, 64, 8), (16, 64, 32)]
    if quick:
        series = series[:2]
    print("\nScale series: 3x3 conv stacks (padding 1) + max pool + linear head, ops mode")
    print(f"  {'channels':>8} {'size':>5} {'depth':>5} {'neurons':>10} {'edges':>12} {'core s':>8} "
          f"{'peak MiB':>9} {'bytes/edge':>10}")
    for channels, size, depth in series:
        torch.manual_seed(0)
        net = ConvStack(3, channels, depth, head=True).eval()
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            net(x)                                   # materialise the lazy head
        acts = nsp.Activations(net, x, trace="ops")
        tracemalloc.start()
        start = time.perf_counter()
        core = GraphCore.from_activations(acts)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  {channels:>8} {size:>5} {depth:>5} {core.n_nodes:>10,} {core.n_edges:>12,} {seconds:>8.2f} "
              f"{peak / 2**20:>9.0f} {peak / core.n_edges:>10.1f}")
        del acts, core
    print(f"  process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small scale series only")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    mnist(args.repeats)
    scale(args.quick)


if __name__ == "__main__":
    main()
