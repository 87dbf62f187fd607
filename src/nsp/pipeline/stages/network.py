"""The stages that run a network: train, extract-graph, collect-activations, and demo."""

from __future__ import annotations

import os
import time

import numpy as np

from nsp.errors import DatasetError, InputError
from nsp.pipeline import batching
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import (build_model, example, job_device, load_torch, log, model_inputs, producer,
                                        progress, write_json)
from nsp.tracing import TRACE_MODES
from nsp.zoo import INPUT_SHAPES


def train(args, cfg) -> None:
    """Train a zoo model on its dataset; write its weights and its metrics."""
    from nsp import zoo
    from nsp.pipeline import training
    net, shape, spec = build_model(args, cfg, args.model, None)
    inputs, labels = model_inputs(cfg, spec, shape, args.model)
    if labels is None:
        raise DatasetError(f"model {args.model}: dataset {spec['dataset']} has no labels to train on")
    start = time.perf_counter()
    metrics = training.train(net, inputs, labels, epochs=spec["epochs"], batch_size=spec["batch_size"],
                             learning_rate=spec["learning_rate"], seed=cfg["seed"],
                             test_every=cfg["datasets"][spec["dataset"]]["test_every"],
                             what=f"model {args.model}, dataset {spec['dataset']}")
    zoo.save_state_npz(net, args.out)
    write_json(args.metrics, {"model": args.model, **metrics})
    log(args, f"{args.model}: test accuracy {metrics['test_accuracy']:.3f} after {spec['epochs']} epochs "
              f"({time.perf_counter() - start:.1f} s)")


def extract_graph(args, cfg) -> None:
    """Build a model's neuron graph and write it."""
    from nsp import storage
    from nsp.graph.core import GraphCore
    net, shape, spec = build_model(args, cfg, args.model, args.weights)
    core = GraphCore.from_activations(example(net, shape, spec["trace"]))     # no networkx graph: any size
    storage.write_graph(args.out, core, producer=producer(args), parameters={"model": spec})
    for reason in core.weight_fallbacks():
        log(args, f"warning: {reason}")
    log(args, f"{args.model}: {core.n_nodes:,} nodes, {core.n_edges:,} edges")


def collect_activations(args, cfg) -> None:
    """Record the activations of one shard of a model's dataset, a batch of samples at a time."""
    from nsp.pipeline import datasets
    from nsp.storage import SignalWriter
    from nsp.tracing.recording import record_values
    net, shape, spec = build_model(args, cfg, args.model, args.weights)
    inputs, labels = model_inputs(cfg, spec, shape, args.model)
    bounds = datasets.shard_bounds(len(inputs), cfg["shard_size"])
    if not 0 <= args.shard < len(bounds):
        raise InputError(f"shard {args.shard} does not exist: dataset {spec['dataset']} has {len(bounds)} shards")
    start, stop = bounds[args.shard]
    first_sample = example(net, shape, spec["trace"])
    table = first_sample.table
    stored = None if spec["layers"] is None else table.matching(spec["layers"],
                                                                 f"config key models.{args.model}.layers")
    stored = None if stored is not None and len(stored) == len(table) else stored
    columns = _columns(table, stored)
    width = sum(c.stop - c.start for c in columns)
    device = job_device(args, cfg)
    if device is not None:
        net = net.to(device)
    forward = write = 0.0
    with SignalWriter(args.out, "activations", table, width, trace=spec["trace"], with_labels=labels is not None,
                      producer=producer(args), weights=first_sample.weights_sha256, stored_layers=stored) as writer:
        step = batching.collect_batch(first_sample.n_neurons)
        batches = range(start, stop, step)
        for first in progress(args, batches, len(batches), f"{args.model} shard {args.shard}"):
            tick = time.perf_counter()
            last = min(stop, first + step)
            x = inputs[first:last] if device is None else inputs[first:last].to(device)
            values = record_values(net, x, spec["trace"])
            _finite(values, first, table, args.model)
            values = values if stored is None else np.concatenate([values[:, c] for c in columns], axis=1)
            tock = time.perf_counter()
            writer.append(values, np.arange(first, last), None if labels is None else labels[first:last])
            forward, write = forward + tock - tick, write + time.perf_counter() - tock
        tick = time.perf_counter()
        writer.close()                # the last chunks compressed, the file sealed and renamed
        write += time.perf_counter() - tick
    samples, size = stop - start, os.path.getsize(args.out)
    kept = "every layer" if stored is None else f"{len(stored)} of {len(table)} layers (models.{args.model}.layers)"
    log(args, f"{args.model} shard {args.shard}: samples {start}..{stop - 1}; {kept}, {width:,} of "
              f"{table.n_nodes:,} values per sample; wrote {size / 1e6:.1f} MB, {size / 1e6 / samples:.3f} MB "
              f"per sample; forward pass {forward:.2f} s, writing {write:.2f} s (forward/write "
              f"{forward / max(write, 1e-9):.2f})")


def _columns(table, stored) -> list[slice]:
    """The column ranges of the layers ``stored`` (None: every layer) in the node order of ``table``,
    neighbouring layers merged into one range."""
    offsets = table.offsets
    out = []
    for i in range(len(table)) if stored is None else stored:
        a, b = int(offsets[i]), int(offsets[i + 1])
        if out and out[-1].stop == a:
            out[-1] = slice(out[-1].start, b)
        else:
            out.append(slice(a, b))
    return out


def _finite(values: np.ndarray, first: int, table, model: str) -> None:
    """Activations that summaries and transforms can use: NaN or infinity (an overflow in the network) is
    refused, naming the first sample and layer, before anything is written."""
    bad = ~np.isfinite(values)
    if bad.any():
        sample, node = np.argwhere(bad)[0]
        layer = int(np.searchsorted(table.offsets, node, side="right")) - 1
        raise InputError(f"model {model}: sample {first + int(sample)} gives NaN or infinite activations in layer "
                         f"{layer} ({table.names[layer]!r}) ({int(bad.any(axis=1).sum())} of {len(values)} samples "
                         f"of this batch); summaries would be meaningless")


def demo(args, cfg) -> None:
    """Trace zoo networks and print their layer tables."""
    from nsp import zoo
    from nsp.activations import Activations
    from nsp.nngraph import NNGraph
    torch = load_torch(args)
    torch.manual_seed(0)
    for name in args.models:
        net = zoo.build(name).eval()
        shape = zoo.INPUT_SHAPES[name]
        for trace in args.trace:
            start = time.perf_counter()
            graph = NNGraph(Activations(net, torch.rand((1, *shape)), trace=trace), INCL=not args.input_local)
            core = graph.core
            print(f"{name} ({trace} mode): {core.n_nodes:,} nodes, {core.n_edges:,} edges, {core.n_layers} layers, "
                  f"built in {time.perf_counter() - start:.2f} s")
            if not args.quiet:
                for layer in core.table:
                    print(f"  {layer}")


TRAIN = Stage("train", train, "train a zoo model on its dataset; write weights (.npz) and metrics (JSON)", (
    option("--model", required=True),
    option("--out", required=True, help="weights file (.npz)"),
    option("--metrics", required=True, help="metrics file (JSON): train/test accuracy")))

EXTRACT_GRAPH = Stage("extract-graph", extract_graph, "build a model's neuron graph and write it (HDF5)", (
    option("--model", required=True),
    option("--weights", help="state dict (.npz or torch file, weights_only)"),
    option("--out", required=True)))

COLLECT_ACTIVATIONS = Stage("collect-activations", collect_activations,
                            "record the activations of one dataset shard", (
    option("--model", required=True),
    option("--weights"),
    option("--shard", type=int, required=True),
    option("--out", required=True)))

DEMO = Stage("demo", demo, "trace zoo networks and print their layer tables", (
    option("--models", nargs="+", choices=sorted(INPUT_SHAPES), default=["toy", "mnist_reference"]),
    option("--trace", nargs="+", choices=TRACE_MODES, default=list(TRACE_MODES)),
    option("--input-local", action="store_true", help="build the INCL=False graph")), config="none")
