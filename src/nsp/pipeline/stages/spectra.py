"""The stages that make spectra: compute-transformer (fit a transform on a graph) and transform (apply it)."""

from __future__ import annotations

import time

from nsp.errors import ConfigError, StorageError
from nsp.pipeline import batching
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import check_provenance, job_device, log, producer, require_files


def compute_transformer(args, cfg) -> None:
    """Fit one configured transform on a stored graph and write the fitted transformer."""
    from nsp import storage
    from nsp.transforms import make_transform
    if args.transform not in cfg["transforms"]:
        raise ConfigError(f"config key transforms.{args.transform}: not configured "
                          f"(configured: {', '.join(cfg['transforms'])})")
    require_files(graph=args.graph)
    core = storage.read_graph(args.graph)
    options = dict(cfg["transforms"][args.transform])
    start = time.perf_counter()
    transform = make_transform(args.transform, **options).fit(core)
    storage.write_transformer(args.out, transform, producer=producer(args), parameters=options,
                              weights=core.weights_sha256)
    log(args, f"{args.transform}: {transform.summary()} ({time.perf_counter() - start:.1f} s)")


def transform(args, cfg) -> None:
    """Apply a stored transformer to a shard of activations, a block of samples at a time."""
    from nsp import storage
    require_files(activations=args.activations, transformer=args.transformer)
    fitted = storage.read_transformer(args.transformer)
    device = job_device(args, cfg)
    writer, done = None, 0
    try:
        for batch in storage.iter_signals(args.activations, "activations", batching.TRANSFORM_BYTES):
            if writer is None:
                if batch.stored_layers is not None:
                    raise StorageError(f"--activations {args.activations} holds {len(batch.stored_layers)} of the "
                                       f"{len(batch.layers)} layers of its network (config key models.<model>.layers);"
                                       f" a transform needs every node: store every layer (layers: null) to transform")
                check_provenance(fitted, batch, args.transformer, args.activations)
                writer = storage.SignalWriter(
                    args.out, "spectra", batch.layers, fitted.n_coefficients, transform_type=fitted.type,
                    eigenvalues=getattr(fitted, "eigenvalues", None), trace=batch.trace,
                    with_labels=batch.labels is not None, producer=producer(args),
                    parameters={"transform": fitted.type, "options": fitted.get_params()},
                    weights=batch.weights_sha256, noise_floor=hasattr(fitted, "noise_floor"))
            coefficients = fitted.transform(batch.values, device=device)
            floor = (fitted.noise_floor(batch.values, device=device, spectrum=coefficients)
                     if hasattr(fitted, "noise_floor") else None)
            writer.append(coefficients, batch.sample_ids, batch.labels, floor)
            done += coefficients.shape[0]
            log(args, f"{fitted.type}: {done} samples")
    except BaseException as err:
        if writer is not None:
            writer.discard(err)
        raise
    writer.close()


COMPUTE_TRANSFORMER = Stage("compute-transformer", compute_transformer, "fit one transform on a stored graph", (
    option("--graph", required=True),
    option("--transform", required=True, help="a transform configured under transforms"),
    option("--out", required=True)))

TRANSFORM = Stage("transform", transform, "apply a stored transformer to a shard of activations", (
    option("--activations", required=True),
    option("--transformer", required=True),
    option("--out", required=True)))
