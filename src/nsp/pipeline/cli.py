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
import torch

from nsp import __version__, storage, zoo
from nsp.activations import Activations
from nsp.graph.core import GraphCore
from nsp.nngraph import NNGraph
from nsp.outputloader import from_batch
from nsp.pipeline import config as configuration
from nsp.pipeline import datasets, training
from nsp.plotting import figures as plotting
from nsp.plotting import statistics as analysis
from nsp.storage.files import atomic_output
from nsp.storage import SignalWriter
from nsp.tracing import TRACE_MODES, TraceError, record
from nsp.transforms import TRANSFORMS, make_transform
from nsp.visualizer import Visualizer

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


def _model(cfg: dict, name: str, weights):
    """The configured network with its weights, its input shape, and its config entry."""
    if name not in cfg["models"]:
        raise configuration.ConfigError(f"config key models.{name}: no such model (defined: {', '.join(cfg['models'])})")
    spec = cfg["models"][name]
    net = zoo.build(spec["architecture"], spec["options"])
    shape = spec["input_shape"] or zoo.ARCHITECTURES[spec["architecture"]][1]
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
    data_spec = cfg["datasets"][spec["dataset"]]
    inputs, labels = datasets.load(data_spec, spec["dataset"])
    return datasets.for_model(inputs, shape, model), labels


def _device(cfg: dict) -> torch.device:
    device = torch.device(cfg["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config key device: {cfg['device']!r} requested but no CUDA device is available")
    return device


def _producer(args, **extra) -> dict:
    keys = {k: v for k, v in vars(args).items() if k not in ("func", "quiet") and v is not None}
    return {"command": f"nsp {args.command}", **{k: str(v) for k, v in keys.items()}, **extra}


def _example(net, shape, trace) -> Activations:
    return Activations(net, torch.zeros((1, *shape)), trace=trace)


# --- stages ------------------------------------------------------------------------------------------

def cmd_train(args, cfg) -> None:
    net, shape, spec = _model(cfg, args.model, None)
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
    net, shape, spec = _model(cfg, args.model, args.weights)
    example = _example(net, shape, spec["trace"])
    core = GraphCore.from_activations(example)     # no networkx graph: any size
    storage.write_graph(args.out, core, producer=_producer(args), parameters={"model": spec})
    for reason in core.weight_fallbacks():
        _log(args, f"warning: {reason}")
    _log(args, f"{args.model}: {core.n_nodes:,} nodes, {core.n_edges:,} edges")


def cmd_compute_transformer(args, cfg) -> None:
    core = storage.read_graph(args.graph)
    options = dict(cfg["transforms"][args.transform])
    start = time.perf_counter()
    transform = make_transform(args.transform, **options).fit(core)
    storage.write_transformer(args.out, transform, producer=_producer(args), parameters=options,
                              weights=core.weights_sha256)
    _log(args, f"{args.transform}: {transform.summary()} ({time.perf_counter() - start:.1f} s)")


def cmd_collect_activations(args, cfg) -> None:
    net, shape, spec = _model(cfg, args.model, args.weights)
    inputs, labels = _inputs(cfg, spec, shape, args.model)
    bounds = datasets.shard_bounds(len(inputs), cfg["shard_size"])
    if not 0 <= args.shard < len(bounds):
        raise ValueError(f"shard {args.shard} does not exist: dataset {spec['dataset']} has {len(bounds)} shards")
    start, stop = bounds[args.shard]
    example = _example(net, shape, spec["trace"])
    device = _device(cfg)
    net = net.to(device)
    with SignalWriter(args.out, "activations", example.table, example.n_neurons,
                      trace=spec["trace"], with_labels=labels is not None, producer=_producer(args),
                      weights=example.weights_sha256) as writer:
        batches = range(start, stop, BATCH)
        for first in _progress(args, batches, len(batches), f"{args.model} shard {args.shard}"):
            last = min(stop, first + BATCH)
            values = record(net, inputs[first:last].to(device), spec["trace"]).values()
            writer.append(values, np.arange(first, last), None if labels is None else labels[first:last])
    _log(args, f"{args.model} shard {args.shard}: samples {start}..{stop - 1}")


def cmd_transform(args, cfg) -> None:
    batch = storage.read_signals(args.activations, "activations")
    transform = storage.read_transformer(args.transformer)
    device = _device(cfg)
    coefficients = transform.transform(batch.values, device=None if device.type == "cpu" else device)
    with SignalWriter(args.out, "spectra", batch.layers, coefficients.shape[1], transform_type=transform.type,
                      eigenvalues=getattr(transform, "eigenvalues", None), trace=batch.trace,
                      with_labels=batch.labels is not None, producer=_producer(args),
                      parameters={"transform": transform.type, "options": transform.get_params()},
                      weights=batch.weights_sha256) as writer:
        writer.append(coefficients, batch.sample_ids, batch.labels)
    _log(args, f"{transform.type}: {coefficients.shape[0]} samples")


def cmd_visualize(args, cfg) -> None:
    options = cfg["visualize"]
    batch = storage.read_signals(args.activations, "activations")
    hits = np.flatnonzero(batch.labels == options["label"]) if batch.labels is not None else np.array([0])
    index = int(hits[0]) if hits.size else 0
    if not args.out and not args.spectra:
        raise ValueError("nothing to draw: give --out (the pattern) and/or --spectra")
    if args.out:
        Visualizer.visualize_pattern(from_batch(batch, index), args.out, scale=options["scale"], cmap_style=options["cmap"])
    folder = Path(args.spectra_dir or Path(args.out or ".").parent)
    for path in args.spectra or []:
        spectra = storage.read_signals(path, "spectra")
        out = folder / f"spectrum_{spectra.transform_type}.pdf"
        if spectra.values.shape[1] == batch.values.shape[1]:
            Visualizer.visualize_spectrum(from_batch(spectra, index), out)
        else:                      # a partial Laplacian basis: coefficients have no layer layout
            title = f"Laplacian spectrum ({spectra.values.shape[1]} lowest eigenvalues): |coefficient| against eigenvalue"
            plotting.write_pdf([plotting.eigenvalue_figure(spectra.eigenvalues, spectra.values[index], title)], out)
    _log(args, f"sample {int(batch.sample_ids[index])} (label {options['label']})")


def _stats(values: np.ndarray, offsets, threshold: float) -> dict:
    """Compaction always; energy and sparsity per layer where the values have the layer layout
    (not for a partial Laplacian basis)."""
    ks, share = analysis.compaction(values)
    out = {"compaction_k": ks.tolist(), "compaction_share": share.tolist(), "coefficients": int(values.shape[1])}
    if values.shape[1] == offsets[-1]:
        out["energy_per_layer"] = analysis.energy_per_layer(values, offsets).mean(axis=0).tolist()
        out["sparsity_per_layer"] = analysis.sparsity_per_layer(values, offsets, threshold).tolist()
    return out


def cmd_summarize(args, cfg) -> None:
    threshold = cfg["summary"]["sparsity_threshold"]
    series = {"activations": [storage.read_signals(p, "activations") for p in args.activations]}
    for path in args.spectra or []:
        batch = storage.read_signals(path, "spectra")
        series.setdefault(batch.transform_type, []).append(batch)
    summary = {"model": args.model, "sparsity_threshold": threshold}
    if args.metrics:
        summary["training"] = json.loads(Path(args.metrics).read_text())
    first = series["activations"][0]
    summary["layers"] = first.layers.names
    summary["samples"] = int(sum(b.values.shape[0] for b in series["activations"]))
    offsets = first.layers.offsets
    out_dir = Path(args.class_means_dir or Path(args.out).parent)
    for name, batches in series.items():
        values = np.concatenate([b.values for b in batches]).astype(np.float64)
        labels = np.concatenate([b.labels for b in batches]) if batches[0].labels is not None else None
        summary[name] = _stats(values, offsets, threshold)
        if labels is not None:
            classes, means = analysis.class_means(values, labels)
            kind = "activations" if name == "activations" else "spectra"
            storage.write_signals(out_dir / f"class_means_{name}.h5", storage.SignalBatch(
                kind=kind, values=means, layers=first.layers, sample_ids=classes,
                transform_type=None if kind == "activations" else name, trace=first.trace,
                weights_sha256=first.weights_sha256), producer=_producer(args))
    _write_json(args.out, summary)
    _log(args, f"{args.model}: {summary['samples']} samples, series {', '.join(series)}")


def cmd_figures(args, cfg) -> None:
    summaries = [json.loads(Path(p).read_text()) for p in args.summaries]
    out = Path(args.out_dir)
    wanted = set(cfg["figures"])
    written = []
    if "compaction" in wanted:
        panels = {s["model"]: {name: (np.array(s[name]["compaction_k"]), np.array(s[name]["compaction_share"]))
                               for name in _series(s)} for s in summaries}
        written += plotting.save_figure(plotting.compaction_grid(panels, "Energy compaction by model and transform"),
                                        out / "compaction")
    for kind, key, title in (("energy", "energy_per_layer", "Energy per layer"),
                             ("sparsity", "sparsity_per_layer", "Sparsity per layer")):
        if kind not in wanted:
            continue
        for s in summaries:
            shares = {name: np.array(s[name][key]) for name in _series(s) if key in s[name]}
            if kind == "energy":
                fig = plotting.energy_figure(shares, s["layers"], f"{title}: {s['model']}")
            else:
                fig = plotting.sparsity_figure(shares, s["layers"], s["sparsity_threshold"], f"{title}: {s['model']}")
            written += plotting.save_figure(fig, out / f"{kind}_{s['model']}")
    if "class_means" in wanted:
        for model, path in _class_means_files(args.class_means or []):
            batch = storage.read_signals(path)
            name = batch.transform_type or "activations"
            offsets, names = batch.layers.offsets, batch.layers.names
            if batch.values.shape[1] != offsets[-1]:          # partial Laplacian basis
                offsets, names = [0, batch.values.shape[1]], ["coefficients by ascending eigenvalue"]
            fig = plotting.class_means_figure(batch.sample_ids, batch.values, offsets, names,
                                              f"Mean {name} per class: {model}")
            written += plotting.save_figure(fig, out / f"class_means_{model}_{name}")
    _log(args, f"{len(written)} files")


def _class_means_files(paths) -> list[tuple[str, Path]]:
    """(model, file) of class-means files given directly (<model>/<dataset>/class_means_<series>.h5) or as
    folders (<model>/<dataset>/class_means/), activations first, then the transforms."""
    order = ["activations", *TRANSFORMS]
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = {p.stem.removeprefix("class_means_"): p for p in path.glob("class_means_*.h5")}
            files += [(path.parent.parent.name, found[name]) for name in order if name in found]
        else:
            files.append((path.parent.parent.name, path))
    return files


def _series(summary: dict) -> list[str]:
    return [k for k in ("activations", *TRANSFORMS) if k in summary]


def cmd_demo(args, cfg) -> None:
    torch.manual_seed(0)
    for name in args.models:
        net = zoo.build(name).eval()
        shape = zoo.ARCHITECTURES[name][1]
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
        p.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default 1)")
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
    p.add_argument("--transform", required=True, choices=list(TRANSFORMS))
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
    p.add_argument("--spectra", nargs="*", help="spectra shards of the same samples")
    p.add_argument("--out", help="pattern PDF")
    p.add_argument("--spectra-dir", dest="spectra_dir",
                   help="folder of the spectrum_<type>.pdf files (default: the folder of --out)")

    p = stage("summarize", cmd_summarize, "statistics over all shards of one model (JSON + class means HDF5)")
    p.add_argument("--model", required=True)
    p.add_argument("--activations", nargs="+", required=True)
    p.add_argument("--spectra", nargs="*")
    p.add_argument("--metrics", help="training metrics (JSON)")
    p.add_argument("--out", required=True)
    p.add_argument("--class-means-dir", dest="class_means_dir",
                   help="folder of the class_means_<series>.h5 files (default: the folder of --out)")

    p = stage("figures", cmd_figures, "the paper figures named in the config (PDF + PNG)")
    p.add_argument("--summaries", nargs="+", required=True)
    p.add_argument("--class-means", nargs="*", dest="class_means")
    p.add_argument("--out-dir", required=True, dest="out_dir")

    p = stage("demo", cmd_demo, "trace zoo networks and print their layer tables", needs_config=False)
    p.add_argument("--models", nargs="+", choices=sorted(zoo.ARCHITECTURES), default=["toy", "mnist_reference"])
    p.add_argument("--trace", nargs="+", choices=TRACE_MODES, default=list(TRACE_MODES))
    p.add_argument("--input-local", action="store_true", help="build the INCL=False graph")
    return parser


def _exit_on_sigterm() -> None:
    """Turn SIGTERM (job cancelled, time limit) into SystemExit so that partial outputs are removed."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


#: errors that mean bad input (config, files, models): one line, exit code 2. Anything else is a bug and
#: keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, ImportError, OSError, TraceError)


def main(argv=None) -> int:
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")   # jobs on cluster file systems (NFS, Lustre)
    _exit_on_sigterm()
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        cfg = configuration.load(args.config) if getattr(args, "config", None) else None
        torch.manual_seed(cfg["seed"] if cfg else 0)        # initial weights of models to train
        args.func(args, cfg)
    except USER_ERRORS as err:
        print(f"nsp {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
