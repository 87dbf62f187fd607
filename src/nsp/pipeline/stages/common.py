"""What several stages use: messages, output files, the configured network, its inputs and device."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nsp.errors import ConfigError, InputError, MissingFileError, StorageError
from nsp.storage.files import atomic_output


def log(args, message: str) -> None:
    """A progress message of the stage on stderr (none with ``--quiet``)."""
    if not args.quiet:
        print(f"[nsp {args.command}] {message}", file=sys.stderr, flush=True)


def progress(args, iterable, total: int, desc: str):
    """``iterable`` with a progress bar where stderr is a terminal (and not ``--quiet``)."""
    if args.quiet or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="batch", leave=False)


def write_json(path, data: dict) -> None:
    """Write ``data`` as indented JSON with sorted keys, atomically."""
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")   # strict JSON


def read_json(path, option: str):
    """The JSON in the file ``path`` given as ``option`` (checked by :func:`require_files` first); a file
    that is not JSON is a StorageError."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise StorageError(f"{option} {path} cannot be read: {err.strerror or err}") from None
    if data.startswith(b"\x89HDF") or data[512:516] == b"\x89HDF" or b"\0" in data[:4096]:
        raise StorageError(f"{option} {path} is not a JSON file: it holds binary data (an HDF5 file?); "
                           f"{option} takes the JSON files nsp writes")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StorageError(f"{option} {path} is not a JSON file (damaged, or not written by nsp): {err}") from None


def check_provenance(transformer, batch, transformer_path, activations_path) -> None:
    """A transformer applies only to activations of the graph and the weights it was fitted for."""
    mismatch = f"--transformer {transformer_path} was not fitted for --activations {activations_path}"
    if (transformer.weights_sha256 and batch.weights_sha256
            and transformer.weights_sha256 != batch.weights_sha256):
        raise StorageError(f"{mismatch}: other weights (sha256 {transformer.weights_sha256[:12]}... for the "
                           f"transformer, {batch.weights_sha256[:12]}... for the activations)")
    if transformer.n != batch.values.shape[1]:
        raise StorageError(f"{mismatch}: a graph of {transformer.n:,} nodes, activations of "
                           f"{batch.values.shape[1]:,}")


def require_files(**options) -> None:
    """Check that every input file exists before a stage starts work: ``options`` maps an option's name
    (``class_means`` for ``--class-means``) to its path or list of paths (None: not given). A missing file
    is a MissingFileError naming the option and the file."""
    for name, paths in options.items():
        for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths or []:
            if not os.path.exists(path):
                raise MissingFileError(f"--{name.replace('_', '-')} {path}: no such file")
            if not os.path.isfile(path):
                what = "a folder" if os.path.isdir(path) else "not a regular file (a device, pipe or socket)"
                raise InputError(f"--{name.replace('_', '-')} {path} is {what}; it takes a file nsp wrote")


#: the options that name files a stage writes (train's --metrics too: there it is an output)
OUTPUTS = ("out", "spectra_out")


def distinct_outputs(args) -> None:
    """Refuse a command whose output file is also one of its inputs (or another of its outputs): the stage
    would replace the file it reads. Paths are compared after resolving links and ``..``."""
    named = []
    for name, value in vars(args).items():
        if name in ("command", "config") or not isinstance(value, (str, list)):
            continue
        for path in [value] if isinstance(value, str) else value:
            if isinstance(path, str):
                named.append((name, path, os.path.realpath(path)))
    for out_name, out, real in [entry for entry in named if entry[0] in OUTPUTS]:
        for name, path, other in named:
            if other == real and (name, path) != (out_name, out):
                raise InputError(f"--{out_name.replace('_', '-')} {out} is also given as "
                                 f"--{name.replace('_', '-')} {path}: each output needs a path of its own (nsp never "
                                 f"writes over a file it reads)")


def producer(args, **extra) -> dict:
    """What wrote a file: the command and its arguments, for the file's provenance."""
    keys = {k: v for k, v in vars(args).items() if k != "quiet" and v is not None}
    return {"command": f"nsp {args.command}", **{k: str(v) for k, v in keys.items()}, **extra}


def pairs(paths, outs, what: str, option: str) -> list:
    """``paths`` paired with ``outs`` (one output per input)."""
    if len(outs or []) != len(paths or []):
        raise InputError(f"{option}: {len(outs or [])} files for {len(paths or [])} {what}; give one per {what[:-1]}")
    return list(zip(paths or [], outs or []))


# --- the network, its inputs and its device --------------------------------------------------------

def load_torch(args):
    """torch, with the job's thread count."""
    import torch
    torch.set_num_threads(args.threads)
    return torch


def build_model(args, cfg: dict, name: str, weights):
    """The configured network with its weights, its input shape, and its config entry."""
    from nsp import zoo
    torch = load_torch(args)
    if name not in cfg["models"]:
        raise ConfigError(f"config key models.{name}: no such model (defined: {', '.join(cfg['models'])})")
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
        raise ConfigError(f"model {name}: {spec['architecture']} does not accept samples of shape {tuple(shape)} "
                          f"(config key models.{name}.input_shape): {type(err).__name__}: {err}") from None
    return net, tuple(shape), spec


def model_inputs(cfg: dict, spec: dict, shape, model: str):
    """The model's dataset, shaped for the model (a torch tensor), and its labels (or None)."""
    from nsp.pipeline import datasets
    data_spec = cfg["datasets"][spec["dataset"]]
    inputs, labels = datasets.load(data_spec, spec["dataset"])
    return datasets.for_model(inputs, shape, model), labels


def job_device(args, cfg: dict):
    """The configured torch device, or None for the CPU without torch."""
    if cfg["device"] == "cpu":
        return None
    from nsp.devices import torch_device
    load_torch(args)
    return torch_device(cfg["device"], "config key device:")


def example(net, shape, trace):
    """The network's activations on one zero sample: its layer table and neuron count."""
    import torch
    from nsp.activations import Activations
    return Activations(net, torch.zeros((1, *shape)), trace=trace)
