"""The ``nsp`` command line. Stage subcommands arrive with the pipeline; for
now ``nsp demo`` traces the reference networks and prints their layer tables."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from . import __version__
from .activations import Activations
from .nngraph import NNGraph
from .tracing import TRACE_MODES
from .zoo import MnistNet, ToyNet

_MODELS = {"toy": (ToyNet, (1, 1, 4, 4)), "mnist": (MnistNet, (1, 1, 28, 28))}


def _demo(args) -> int:
    torch.manual_seed(0)
    for name in args.models:
        cls, shape = _MODELS[name]
        net = cls().eval()
        x = torch.rand(shape)
        for trace in args.trace:
            start = time.perf_counter()
            graph = NNGraph(Activations(net, x, trace=trace), INCL=not args.input_local)
            seconds = time.perf_counter() - start
            core = graph.core
            print(f"{name} ({trace} mode): {core.n_nodes:,} nodes, {core.n_edges:,} edges, "
                  f"{core.n_layers} layers, built in {seconds:.2f} s")
            if not args.quiet:
                for row in core.layer_table():
                    print(f"  {row['index']:>3}  {row['name']:<12} {row['kind']:<18} "
                          f"{str(row['shape']):<16} offset {row['offset']:>6}  parents {row['parents']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nsp", description="Neural-network signal processing: "
                                     "activation patterns of PyTorch networks as signals on their neuron DAG.")
    parser.add_argument("--version", action="version", version=f"nsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="trace the reference networks and print their layer tables")
    demo.add_argument("--models", nargs="+", choices=sorted(_MODELS), default=["toy", "mnist"])
    demo.add_argument("--trace", nargs="+", choices=TRACE_MODES, default=list(TRACE_MODES))
    demo.add_argument("--input-local", action="store_true", help="build the INCL=False graph")
    demo.add_argument("--quiet", action="store_true", help="print only the totals")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
