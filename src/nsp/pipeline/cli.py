"""The ``nsp`` command line: one subcommand per pipeline stage, each reading and writing files.

Every stage is a thin layer over the library; the Snakemake rules in
``workflow/`` call these commands, and each also works by hand (``--help``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from nsp import __version__
from nsp.errors import NspError
from nsp.pipeline import config as configuration
from nsp.storage.files import atomic_output
from nsp.tracing import TRACE_MODES
from nsp.zoo import INPUT_SHAPES

# Each stage imports what it uses when it runs: a job that runs no network never imports torch, one that
# draws nothing never imports matplotlib (start-up time of many small jobs).

BATCH = 256


# --- helpers ---------------------------------------------------------------------------------------

def _log(args, message: str) -> None:
    if not args.quiet:
        print(f"[nsp {args.command}] {message}", file=sys.stderr, flush=True)


def _progress(args, iterable, total: int, desc: str):
    if args.quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def _write_json(path, data: dict) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _torch(args):
    """torch, with the job's thread count."""
    import torch
    torch.set_num_threads(args.threads)
    return torch


def _model(args, cfg: dict, name: str, weights):
    """The configured network with its weights, its input shape, and its config entry."""
    from nsp import zoo
    torch = _torch(args)
    if name not in cfg["models"]:
        raise configuration.ConfigError(f"config key models.{name}: no such model (defined: {', '.join(cfg['models'])})")
    spec = cfg["models"][name]
    torch.manual_seed(cfg.get("seed", 0))                # initial weights of a model to train
    net = zoo.build(spec["architecture"], spec["options"])
    shape = spec["input_shape"] or zoo.INPUT_SHAPES[spec["architecture"]]
    if weights is not None:
        zoo.load_weights(net, weights)
    try:
        with torch.no_grad():
            net.eval()(torch.zeros((1, *shape)))
    except Exception as err:
        raise ValueError(f"model {name}: {spec['architecture']} does not accept samples of shape {tuple(shape)} "
                         f"(config key models.{name}.input_shape): {type(err).__name__}: {err}") from None
    return net, tuple(shape), spec


def _inputs(cfg: dict, spec: dict, shape, model: str):
    from nsp.pipeline import datasets
    data_spec = cfg["datasets"][spec["dataset"]]
    inputs, labels = datasets.load(data_spec, spec["dataset"])
    return datasets.for_model(inputs, shape, model), labels


def _device(args, cfg: dict):
    """The configured torch device, or None for the CPU without torch."""
    if cfg["device"] == "cpu":
        return None
    from nsp.devices import torch_device
    _torch(args)
    return torch_device(cfg["device"], "config key device:")


def _producer(args, **extra) -> dict:
    keys = {k: v for k, v in vars(args).items() if k not in ("func", "quiet") and v is not None}
    return {"command": f"nsp {args.command}", **{k: str(v) for k, v in keys.items()}, **extra}


def _example(net, shape, trace):
    import torch
    from nsp.activations import Activations
    return Activations(net, torch.zeros((1, *shape)), trace=trace)


def _pairs(paths, outs, what: str, option: str) -> list:
    """``paths`` paired with ``outs`` (one output per input)."""
    if len(outs or []) != len(paths or []):
        raise ValueError(f"{option}: {len(outs or [])} files for {len(paths or [])} {what}; give one per {what[:-1]}")
    return list(zip(paths or [], outs or []))


# --- stages ------------------------------------------------------------------------------------------

def cmd_train(args, cfg) -> None:
    from nsp import zoo
    from nsp.pipeline import training
    net, shape, spec = _model(args, cfg, args.model, None)
    inputs, labels = _inputs(cfg, spec, shape, args.model)
    if labels is None:
        raise ValueError(f"model {args.model}: dataset {spec['dataset']} has no labels to train on")
    start = time.perf_counter()
    metrics = training.train(net, inputs, labels, epochs=spec["epochs"], batch_size=spec["batch_size"],
                             learning_rate=spec["learning_rate"], seed=cfg["seed"],
                             test_every=cfg["datasets"][spec["dataset"]]["test_every"])
    zoo.save_state_npz(net, args.out)
    _write_json(args.metrics, {"model": args.model, **metrics})
    _log(args, f"{args.model}: test accuracy {metrics['test_accuracy']:.3f} after {spec['epochs']} epochs "
               f"({time.perf_counter() - start:.1f} s)")


def cmd_extract_graph(args, cfg) -> None:
    from nsp import storage
    from nsp.graph.core import GraphCore
    net, shape, spec = _model(args, cfg, args.model, args.weights)
    example = _example(net, shape, spec["trace"])
    core = GraphCore.from_activations(example)     # no networkx graph: any size
    storage.write_graph(args.out, core, producer=_producer(args), parameters={"model": spec})
    for reason in core.weight_fallbacks():
        _log(args, f"warning: {reason}")
    _log(args, f"{args.model}: {core.n_nodes:,} nodes, {core.n_edges:,} edges")


def cmd_compute_transformer(args, cfg) -> None:
    from nsp import storage
    from nsp.transforms import make_transform
    if args.transform not in cfg["transforms"]:
        raise configuration.ConfigError(f"config key transforms.{args.transform}: not configured "
                                        f"(configured: {', '.join(cfg['transforms'])})")
    core = storage.read_graph(args.graph)
    options = dict(cfg["transforms"][args.transform])
    start = time.perf_counter()
    transform = make_transform(args.transform, **options).fit(core)
    storage.write_transformer(args.out, transform, producer=_producer(args), parameters=options,
                              weights=core.weights_sha256)
    _log(args, f"{args.transform}: {transform.summary()} ({time.perf_counter() - start:.1f} s)")


def cmd_collect_activations(args, cfg) -> None:
    from nsp.pipeline import datasets
    from nsp.storage import SignalWriter
    from nsp.tracing.recording import record_values
    net, shape, spec = _model(args, cfg, args.model, args.weights)
    inputs, labels = _inputs(cfg, spec, shape, args.model)
    bounds = datasets.shard_bounds(len(inputs), cfg["shard_size"])
    if not 0 <= args.shard < len(bounds):
        raise ValueError(f"shard {args.shard} does not exist: dataset {spec['dataset']} has {len(bounds)} shards")
    start, stop = bounds[args.shard]
    example = _example(net, shape, spec["trace"])
    table = example.table
    stored = None if spec["layers"] is None else table.matching(spec["layers"],
                                                                 f"config key models.{args.model}.layers")
    stored = None if stored is not None and len(stored) == len(table) else stored
    columns = _columns(table, stored)
    width = sum(c.stop - c.start for c in columns)
    device = _device(args, cfg)
    if device is not None:
        net = net.to(device)
    forward = write = 0.0
    with SignalWriter(args.out, "activations", table, width, trace=spec["trace"], with_labels=labels is not None,
                      producer=_producer(args), weights=example.weights_sha256, stored_layers=stored) as writer:
        step = collect_batch(example.n_neurons)
        batches = range(start, stop, step)
        for first in _progress(args, batches, len(batches), f"{args.model} shard {args.shard}"):
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
    _log(args, f"{args.model} shard {args.shard}: samples {start}..{stop - 1}; {kept}, {width:,} of "
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


#: bytes of recorded activations one forward pass of collect-activations may hold (float32, every layer)
COLLECT_BYTES = 1 << 29


def collect_batch(neurons: int) -> int:
    """Samples per forward pass: :data:`BATCH`, fewer for a large network so that the recorded layers (and
    the array of their values: twice ``4 * neurons`` bytes per sample) stay near :data:`COLLECT_BYTES`. It
    depends on the network alone, so results do not depend on the machine."""
    return max(1, min(BATCH, COLLECT_BYTES // (8 * max(neurons, 1))))


def _finite(values: np.ndarray, first: int, table, model: str) -> None:
    """Activations that summaries and transforms can use: NaN or infinity (an overflow in the network) is
    refused, naming the first sample and layer, before anything is written."""
    bad = ~np.isfinite(values)
    if bad.any():
        sample, node = np.argwhere(bad)[0]
        layer = int(np.searchsorted(table.offsets, node, side="right")) - 1
        raise ValueError(f"model {model}: sample {first + int(sample)} gives NaN or infinite activations in layer "
                         f"{layer} ({table.names[layer]!r}) ({int(bad.any(axis=1).sum())} of {len(values)} samples "
                         f"of this batch); summaries would be meaningless")


def _check_provenance(transform, batch, transformer_path, activations_path) -> None:
    """A transformer applies only to activations of the graph and the weights it was fitted for."""
    mismatch = f"--transformer {transformer_path} was not fitted for --activations {activations_path}"
    if transform.weights_sha256 and batch.weights_sha256 and transform.weights_sha256 != batch.weights_sha256:
        raise ValueError(f"{mismatch}: other weights (sha256 {transform.weights_sha256[:12]}... for the transformer, "
                         f"{batch.weights_sha256[:12]}... for the activations)")
    if transform.n != batch.values.shape[1]:
        raise ValueError(f"{mismatch}: a graph of {transform.n:,} nodes, activations of {batch.values.shape[1]:,}")


#: float64 bytes of activations transformed at once: the transform stage's memory is a small multiple of it
TRANSFORM_BYTES = 1 << 28


def cmd_transform(args, cfg) -> None:
    from nsp import storage
    transform = storage.read_transformer(args.transformer)
    device = _device(args, cfg)
    writer, done = None, 0
    try:
        for batch in storage.iter_signals(args.activations, "activations", TRANSFORM_BYTES):
            if writer is None:
                if batch.stored_layers is not None:
                    raise ValueError(f"--activations {args.activations} holds {len(batch.stored_layers)} of the "
                                     f"{len(batch.layers)} layers of its network (config key models.<model>.layers);"
                                     f" a transform needs every node: store every layer (layers: null) to transform")
                _check_provenance(transform, batch, args.transformer, args.activations)
                writer = storage.SignalWriter(
                    args.out, "spectra", batch.layers, transform.n_coefficients, transform_type=transform.type,
                    eigenvalues=getattr(transform, "eigenvalues", None), trace=batch.trace,
                    with_labels=batch.labels is not None, producer=_producer(args),
                    parameters={"transform": transform.type, "options": transform.get_params()},
                    weights=batch.weights_sha256)
            coefficients = transform.transform(batch.values, device=device)
            writer.append(coefficients, batch.sample_ids, batch.labels)
            done += coefficients.shape[0]
            _log(args, f"{transform.type}: {done} samples")
    except BaseException as err:
        if writer is not None:
            writer.discard(err)
        raise
    writer.close()


def cmd_visualize(args, cfg) -> None:
    from contextlib import ExitStack

    from nsp import storage
    from nsp.plotting import figures as plotting
    from nsp.plotting import pages
    options = cfg["visualize"]
    if not args.out and not args.spectra:
        raise ValueError("nothing to draw: give --out (the pattern) and/or --spectra")
    outs = args.spectra_out
    if args.spectra and outs is None:
        outs = [None] * len(args.spectra)
    pairs = _pairs(args.spectra, outs, "spectra files", "--spectra-out")
    for option, path in [("--out", args.out)] + [("--spectra-out", out) for out in outs or []]:
        if path is not None and Path(path).suffix != ".pdf":
            raise ValueError(f"{option} {path}: the pages are a PDF; give a name ending in .pdf")
    with ExitStack() as files:     # the files stay open: each page reads its layer of the one sample
        batch = files.enter_context(storage.open_signals(args.activations, "activations"))
        if not batch.values.shape[0]:
            raise ValueError(f"--activations {args.activations} holds no samples")
        label = options["label"]
        if batch.labels is None:       # no labels: the shard's first sample
            index, label = 0, "none"
        else:
            hits = np.flatnonzero(batch.labels == label)
            if not hits.size:
                held = np.unique(batch.labels)
                more = f" (and {held.size - 10} more)" if held.size > 10 else ""
                raise ValueError(f"config key visualize.label: no sample of {args.activations} has label {label}; "
                                 f"its labels are {', '.join(map(str, held[:10]))}{more}")
            index = int(hits[0])
        selection = pages.select_layers(batch.stored_table.names, options.get("layers"),
                                        what="config key visualize.layers")
        spectra = []                   # every file checked before any page is written
        for path, out in pairs:
            stored = files.enter_context(storage.open_signals(path, "spectra"))
            _check_spectra(args.activations, batch, path, stored)
            spectra.append((stored, out or Path(args.out or ".").parent / f"spectrum_{stored.transform_type}.pdf"))
        if args.out:
            columns = batch.stored_table                 # the stored layers (models.<m>.layers), or all
            pages.pattern_pdf(pages.SampleLayers(batch.values, index, columns), columns.names, args.out,
                              options["scale"], options["cmap"], select=selection)
        for stored, out in spectra:
            if stored.values.shape[1] == stored.layers.n_nodes:
                pages.spectrum_pdf(pages.SampleLayers(stored.values, index, stored.layers), stored.layers.names, out,
                                   stored.transform_type, stored.eigenvalues, select=selection)
            else:                      # a partial Laplacian basis: coefficients have no layer layout
                values = stored.values[index]
                title = f"Laplacian spectrum ({values.size} lowest eigenvalues): |coefficient| against eigenvalue"
                plotting.write_pdf([plotting.eigenvalue_figure(stored.eigenvalues, values, title)], out)
    _log(args, f"sample {int(batch.sample_ids[index])} (label {label}); {selection.summary()}")


def _check_spectra(activations, batch, path, spectra) -> None:
    """Refuse a spectra file that is not of the same graph, weights and samples as the activations."""
    def table(t):
        return f"{len(t)} layers, {t.n_nodes:,} nodes"

    if batch.stored_layers is not None:       # spectra need every layer's activations (models.<m>.layers)
        raise ValueError(f"--spectra {path} cannot be drawn beside --activations {activations}: those hold "
                         f"{len(batch.stored_layers)} of the {len(batch.layers)} layers only")
    ours, theirs = batch.layers, spectra.layers
    what = None
    if ours != theirs and table(ours) != table(theirs):
        what = f"layer tables differ ({table(ours)} in the activations; {table(theirs)} in the spectra)"
    elif ours != theirs:
        i, a, b = next((i, a, b) for i, (a, b) in enumerate(zip(ours, theirs)) if a != b)
        what = (f"layer tables differ at layer {i} ({a.name!r}, {a.kind}, {a.shape} in the activations; "
                f"{b.name!r}, {b.kind}, {b.shape} in the spectra)")
    elif batch.weights_sha256 and spectra.weights_sha256 and batch.weights_sha256 != spectra.weights_sha256:
        what = (f"they come from different weights (sha256 {batch.weights_sha256[:12]}... in the activations, "
                f"{spectra.weights_sha256[:12]}... in the spectra)")
    elif len(batch.sample_ids) != len(spectra.sample_ids):
        what = f"{len(batch.sample_ids)} samples in the activations, {len(spectra.sample_ids)} in the spectra"
    elif not np.array_equal(batch.sample_ids, spectra.sample_ids):
        i = int(np.flatnonzero(batch.sample_ids != spectra.sample_ids)[0])
        what = (f"sample {i} has id {int(batch.sample_ids[i])} in the activations, "
                f"{int(spectra.sample_ids[i])} in the spectra")
    if what:
        raise ValueError(f"--spectra {path} does not match --activations {activations}: {what}")


#: float64 bytes of samples that summarize and class-means take at once (at least one sample): their memory
#: is a small multiple of it (and, for class means, one row per class), not of a shard
STREAM_BYTES = 1 << 25


def _stats(summary) -> dict:
    """A series' statistics for the summary file: compaction always; energy and sparsity per layer where
    the values have the layer layout (not for a partial Laplacian basis)."""
    stats = summary.result()
    out = {"compaction_k": stats["ks"].tolist(), "compaction_share": stats["compaction"].tolist(),
           "coefficients": summary.width}
    if "energy_per_layer" in stats:
        out["energy_per_layer"] = stats["energy_per_layer"].tolist()
        out["sparsity_per_layer"] = stats["sparsity_per_layer"].tolist()
    return out


def _distinct_samples(ids, series: str) -> None:
    """Shards that hold each sample once (the same shard given twice would count its samples twice);
    ``ids``: the sample ids of each shard."""
    values, counts = np.unique(np.concatenate(ids), return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{series}: sample {int(values[counts > 1][0])} is in the shards more than once "
                         f"(a shard given twice?)")


def cmd_summarize(args, cfg) -> None:
    from nsp import storage
    from nsp.plotting import statistics as analysis
    threshold = cfg["summary"]["sparsity_threshold"]
    summary = {"model": args.model, "sparsity_threshold": threshold}
    if args.metrics:
        summary["training"] = json.loads(Path(args.metrics).read_text())
    series, ids, offsets = {}, {}, None       # series: activations, then each transform in the order of --spectra
    for kind, paths in (("activations", args.activations), ("spectra", args.spectra or [])):
        for path in paths:                    # shard by shard, a few samples at a time
            with storage.open_signals(path, kind) as batch:
                name = batch.transform_type or "activations"
                if offsets is None:
                    offsets, summary["layers"] = batch.stored_table.offsets, batch.stored_table.names
                if name not in series:
                    width = batch.values.shape[1]
                    series[name] = analysis.Summary(width, offsets if width == offsets[-1] else None, threshold)
                ids.setdefault(name, []).append(batch.sample_ids)
                _distinct_samples(ids[name], name)
                for rows in batch.values.row_blocks(STREAM_BYTES):
                    series[name].add(batch.values[rows].astype(np.float64))
    summary["samples"] = series["activations"].samples
    for name, stats in series.items():
        summary[name] = _stats(stats)
    _write_json(args.out, summary)
    _log(args, f"{args.model}: {summary['samples']} samples, series {', '.join(series)}")


def cmd_class_means(args, cfg) -> None:
    from nsp import storage
    from nsp.plotting import statistics as analysis
    first, ids, means = None, [], None
    for path in args.signals:                 # shard by shard, a block of samples and columns at a time
        with storage.open_signals(path) as batch:
            if first is None:
                first, means = batch, analysis.ClassMeans(batch.values.shape[1])
            elif (batch.kind, batch.transform_type) != (first.kind, first.transform_type):
                mixed = sorted({str(b.transform_type or b.kind) for b in (first, batch)})
                raise ValueError(f"--signals: the shards mix series ({', '.join(mixed)}); class means are taken "
                                 f"over one series")
            ids.append(batch.sample_ids)
            _distinct_samples(ids, first.transform_type or "activations")
            if batch.labels is not None:      # no labels, no classes: an empty table
                for rows, columns, values in batch.values.blocks(STREAM_BYTES):
                    means.add(values.astype(np.float64), batch.labels[rows], columns.start)
    classes, values = means.result()
    storage.write_signals(args.out, storage.SignalBatch(
        kind=first.kind, values=values, layers=first.layers, sample_ids=np.asarray(classes),
        stored_layers=first.stored_layers,
        transform_type=first.transform_type, trace=first.trace,
        weights_sha256=first.weights_sha256), producer=_producer(args))
    _log(args, f"{first.transform_type or 'activations'}: {len(classes)} classes over {sum(map(len, ids))} samples")


def cmd_figures(args, cfg) -> None:
    from nsp import storage
    from nsp.plotting import figures as plotting
    need = {"compaction": ("summaries",), "energy": ("summaries",), "sparsity": ("summaries",),
            "class_means": ("class_means", "model")}[args.kind]
    for option in ("summaries", "class_means", "model"):
        if (getattr(args, option) is not None) != (option in need):
            raise ValueError(f"--kind {args.kind} {'needs' if option in need else 'takes no'} "
                             f"--{option.replace('_', '-')}")
    summaries = [json.loads(Path(p).read_text()) for p in args.summaries or []]
    if args.kind in ("energy", "sparsity") and len(summaries) != 1:
        raise ValueError(f"--kind {args.kind}: one figure per model; give one summary, got {len(summaries)}")
    if args.kind == "compaction":
        panels = {s["model"]: {name: (np.array(s[name]["compaction_k"]), np.array(s[name]["compaction_share"]))
                               for name in _series(s)} for s in summaries}
        fig = plotting.compaction_grid(panels, "Energy compaction by model and transform")
    elif args.kind == "energy":
        s = summaries[0]
        shares = {name: np.array(s[name]["energy_per_layer"]) for name in _series(s) if "energy_per_layer" in s[name]}
        fig = plotting.energy_figure(shares, s["layers"], f"Energy per layer: {s['model']}")
    elif args.kind == "sparsity":
        s = summaries[0]
        shares = {name: np.array(s[name]["sparsity_per_layer"]) for name in _series(s)
                  if "sparsity_per_layer" in s[name]}
        fig = plotting.sparsity_figure(shares, s["layers"], s["sparsity_threshold"], f"Sparsity per layer: {s['model']}")
    else:
        batch = storage.read_signals(args.class_means)
        name = batch.transform_type or "activations"
        offsets, layer_names = batch.stored_table.offsets, batch.stored_table.names
        if batch.values.shape[1] != offsets[-1]:          # partial Laplacian basis
            offsets, layer_names = [0, batch.values.shape[1]], ["coefficients by ascending eigenvalue"]
        fig = plotting.class_means_figure(batch.sample_ids, batch.values, offsets, layer_names,
                                          f"Mean {name} per class: {args.model}")
    out = Path(args.out)
    if out.suffix != ".pdf":
        raise ValueError(f"--out {out}: the figure's PDF (a name ending in .pdf; the PNG is written beside it)")
    written = plotting.save_figure(fig, out.with_name(out.stem))
    _log(args, f"{args.kind}: {', '.join(map(str, written))}")


def _series(summary: dict) -> list[str]:
    """The series of a summary (the entries with statistics), in their fixed order."""
    return configuration.series([k for k, v in summary.items() if isinstance(v, dict) and "compaction_k" in v])


def cmd_demo(args, cfg) -> None:
    from nsp import zoo
    from nsp.activations import Activations
    from nsp.nngraph import NNGraph
    torch = _torch(args)
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


# --- parser ----------------------------------------------------------------------------------------

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nsp", description="Neural-network signal processing: activation "
                                     "patterns of PyTorch networks as signals on their neuron DAG.")
    parser.add_argument("--version", action="version", version=f"nsp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    def stage(name, func, help, needs_config=True):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if needs_config:
            p.add_argument("--config", required=True, help="pipeline config (YAML)")
        p.add_argument("--threads", type=_positive, default=1, help="torch and BLAS threads (default 1)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        return p

    p = stage("train", cmd_train, "train a zoo model on its dataset; write weights (.npz) and metrics (JSON)")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="weights file (.npz)")
    p.add_argument("--metrics", required=True, help="metrics file (JSON): train/test accuracy")

    p = stage("extract-graph", cmd_extract_graph, "build a model's neuron graph and write it (HDF5)")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", help="state dict (.npz or torch file, weights_only)")
    p.add_argument("--out", required=True)

    p = stage("compute-transformer", cmd_compute_transformer, "fit one transform on a stored graph")
    p.add_argument("--graph", required=True)
    p.add_argument("--transform", required=True, help="a transform configured under transforms")
    p.add_argument("--out", required=True)

    p = stage("collect-activations", cmd_collect_activations, "record the activations of one dataset shard")
    p.add_argument("--model", required=True)
    p.add_argument("--weights")
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--out", required=True)

    p = stage("transform", cmd_transform, "apply a stored transformer to a shard of activations")
    p.add_argument("--activations", required=True)
    p.add_argument("--transformer", required=True)
    p.add_argument("--out", required=True)

    p = stage("visualize", cmd_visualize, "draw the configured sample's pattern and spectra (PDF, layer layout)")
    p.add_argument("--activations", required=True, help="first activations shard")
    p.add_argument("--out", help="pattern PDF")
    p.add_argument("--spectra", nargs="*", help="spectra shards of the same samples")
    p.add_argument("--spectra-out", nargs="*", dest="spectra_out",
                   help="one PDF per --spectra file (default: spectrum_<type>.pdf beside --out)")

    p = stage("summarize", cmd_summarize, "statistics over all shards of one model (JSON)")
    p.add_argument("--model", required=True)
    p.add_argument("--activations", nargs="+", required=True)
    p.add_argument("--spectra", nargs="*")
    p.add_argument("--metrics", help="training metrics (JSON)")
    p.add_argument("--out", required=True)

    p = stage("class-means", cmd_class_means, "mean of one series (activations or one transform's spectra) "
              "over the samples of each class (HDF5; no labels: no classes)", needs_config=False)
    p.add_argument("--signals", nargs="+", required=True, help="the shards of one series")
    p.add_argument("--out", required=True)

    p = stage("figures", cmd_figures, "one paper figure, as PDF and PNG: energy compaction of every model, "
              "energy or sparsity per layer of one model, or the class means of one series", needs_config=False)
    p.add_argument("--kind", required=True, choices=["compaction", "energy", "sparsity", "class_means"])
    p.add_argument("--summaries", nargs="+", help="summary files (JSON): every model's for compaction, one for "
                   "energy and sparsity")
    p.add_argument("--class-means", dest="class_means", help="class-means file (HDF5), for class_means")
    p.add_argument("--model", help="the model's name, for class_means")
    p.add_argument("--out", required=True, help="the PDF (the PNG is written beside it)")

    p = stage("demo", cmd_demo, "trace zoo networks and print their layer tables", needs_config=False)
    p.add_argument("--models", nargs="+", choices=sorted(INPUT_SHAPES), default=["toy", "mnist_reference"])
    p.add_argument("--trace", nargs="+", choices=TRACE_MODES, default=list(TRACE_MODES))
    p.add_argument("--input-local", action="store_true", help="build the INCL=False graph")
    return parser


def _exit_on_sigterm() -> dict:
    """Turn SIGTERM (job cancelled, time limit) into SystemExit(143) so that partial outputs are removed.

    Returns the state: ``signal`` is set once SIGTERM came, and ``main`` then exits 143 even where code
    caught the SystemExit. Where raising it at once would lose it or do harm, it is raised at the next
    line that the interrupted code runs (tracing the running frames, as pdb does): Python only prints
    an exception raised in a ``__del__``, a weakref callback (h5py runs them after every HDF5 call) or a
    C callback ("Exception ignored in ..."; this installs a ``sys.unraisablehook`` that sees it), and
    HDF5 would take one raised while it writes through ``nsp.storage.files.WriteGuard`` for a failed
    write. A SIGTERM that comes while the first one unwinds (temporary files being removed, HDF5 files
    closed) is only recorded, so that it cannot interrupt that cleanup.
    """
    from nsp.storage.files import writing_caller
    state = {"signal": 0, "unwinding": False}
    armed = []
    previous_hook, previous_trace = sys.unraisablehook, sys.gettrace()

    def leave(*_):
        for frame in armed:
            frame.f_trace = None
        if armed:
            armed.clear()
            sys.settrace(previous_trace)
        state["unwinding"] = True
        sys.exit(128 + state["signal"])

    def leave_at_next_line(frame):
        while frame is not None:
            frame.f_trace = leave
            armed.append(frame)
            frame = frame.f_back
        sys.settrace(lambda *_: None)           # tracing on; frames that start from now on are not traced

    def on_sigterm(signum, frame):
        state["signal"] = signum
        if state["unwinding"]:
            return
        caller = writing_caller(frame)
        if caller is None:
            leave()
        else:
            leave_at_next_line(caller)

    def on_unraisable(unraisable):
        if isinstance(unraisable.exc_value, SystemExit) and state["unwinding"]:
            state["unwinding"] = False
            leave_at_next_line(sys._getframe(1))
        else:
            previous_hook(unraisable)

    signal.signal(signal.SIGTERM, on_sigterm)
    sys.unraisablehook = on_unraisable
    return state


#: errors that mean bad input (config, files, models): one line, exit code 2. Anything else is a bug and
#: keeps its traceback. nsp's own are :class:`nsp.errors.NspError`; the others come from what a stage calls
#: (NumPy, h5py, torch, the file system) on input they refuse.
USER_ERRORS = (NspError, ValueError, FileNotFoundError, ImportError, OSError)


def _user_error(err: Exception) -> bool:
    return isinstance(err, USER_ERRORS)


def main(argv=None) -> int:
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")   # jobs on cluster file systems (NFS, Lustre)
    unraisablehook = sys.unraisablehook
    sigterm = _exit_on_sigterm()
    try:
        args = build_parser().parse_args(argv)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):     # torch, wherever the stage imports it
            os.environ[name] = str(args.threads)
        try:
            cfg = configuration.load(args.config, args.command) if getattr(args, "config", None) else None
            args.func(args, cfg)
        except Exception as err:
            if sigterm["signal"]:                # an error that the SIGTERM caused
                return 128 + sigterm["signal"]
            if not _user_error(err):
                raise
            print(f"nsp {args.command}: error: {err}", file=sys.stderr)
            return 2
        return 128 + sigterm["signal"] if sigterm["signal"] else 0   # a SIGTERM whose SystemExit got lost
    finally:
        sys.unraisablehook = unraisablehook


if __name__ == "__main__":
    sys.exit(main())
