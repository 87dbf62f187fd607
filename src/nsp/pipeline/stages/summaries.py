"""The stages that reduce many samples to a few numbers: summarize (statistics of every series of a model)
and class-means (the mean of one series over each class). Both stream their shards a block at a time."""

from __future__ import annotations

import numpy as np

from nsp.errors import InputError, StorageError
from nsp.pipeline import batching
from nsp.pipeline.stages import Stage, option
from nsp.pipeline.stages.common import log, producer, read_json, require_files, write_json


def summarize(args, cfg) -> None:
    """Statistics over every shard of one model: of its activations and of each transform's spectra."""
    from nsp import statistics, storage
    require_files(activations=args.activations, spectra=args.spectra, metrics=args.metrics, causes=args.causes)
    threshold = cfg["summary"]["sparsity_threshold"]
    summary = {"model": args.model, "sparsity_threshold": threshold}
    if args.metrics:
        summary["training"] = read_json(args.metrics, "--metrics")
    series, ids, offsets = {}, {}, None       # series: activations, then each transform in the order of --spectra
    first = None                              # the first shard: every other is of its network
    for kind, paths in (("activations", args.activations), ("spectra", args.spectra or [])):
        for path in paths:                    # shard by shard, a few samples at a time
            with storage.open_signals(path, kind) as batch:
                name = batch.transform_type or "activations"
                if offsets is None:
                    offsets, summary["layers"] = batch.stored_table.offsets, batch.stored_table.names
                if name not in series:
                    width = batch.values.shape[1]
                    series[name] = statistics.Summary(width, offsets if width == offsets[-1] else None, threshold)
                elif batch.values.shape[1] != series[name].width:
                    raise StorageError(f"--{kind} {path}: {batch.values.shape[1]} columns, where the other "
                                       f"{name} shards have {series[name].width}: shards of another network?")
                ids.setdefault(name, []).append(batch.sample_ids)
                _distinct_samples(ids[name], name)
                _same_network(batch, first or batch, path, f"--{kind}")
                first = first or batch
                for rows in batch.values.row_blocks(batching.STREAM_BYTES):
                    series[name].add(_finite(batch.values[rows].astype(np.float64), batch, rows, path, f"--{kind}"),
                                     floor=None if batch.noise_floor is None else batch.noise_floor[rows])
    summary["samples"] = series["activations"].samples
    summary["series"] = list(series)
    if args.causes:
        summary["causes"] = {}
        for path in args.causes:
            record = read_json(path, "--causes")
            if not (isinstance(record, dict) and isinstance(record.get("transform"), str)
                    and isinstance(record.get("reconstruction"), dict)):
                raise StorageError(f"--causes {path} is not a record of nsp causes (no transform or reconstruction)")
            summary["causes"][record["transform"]] = record
    for name, stats in series.items():
        summary[name] = _stats(stats)
    write_json(args.out, summary)
    log(args, f"{args.model}: {summary['samples']} samples, series {', '.join(series)}")


def _stats(summary) -> dict:
    """A series' statistics for the summary file: compaction always; the per-layer statistics
    (:data:`nsp.statistics.PER_LAYER`) where the values have the layer layout (not for a partial Laplacian
    basis)."""
    from nsp import statistics
    stats = summary.result()
    out = {"compaction_k": stats["ks"].tolist(), "compaction_share": stats["compaction"].tolist(),
           "coefficients": summary.width}
    for name in statistics.PER_LAYER:
        if name in stats:
            out[name] = stats[name].tolist()
    if "magnitude_quantiles" in stats:
        out["quantiles"] = list(statistics.QUANTILES)
        out["noise_floor"] = summary.floored
    return out


def _distinct_samples(ids, series: str) -> None:
    """Shards that hold each sample once (the same shard given twice would count its samples twice);
    ``ids``: the sample ids of each shard."""
    values, counts = np.unique(np.concatenate(ids), return_counts=True)
    if (counts > 1).any():
        raise InputError(f"{series}: sample {int(values[counts > 1][0])} is in the shards more than once "
                         f"(a shard given twice?)")


def _same_network(batch, first, path, option: str) -> None:
    """Refuse a shard of another network than the first shard's (other layers, or other weights)."""
    if batch.layers.names != first.layers.names or batch.weights_sha256 != first.weights_sha256:
        what = "layers" if batch.layers.names != first.layers.names else "weights"
        raise InputError(f"{option} {path} is of another network than the first shard (other {what}): the shards "
                         f"given must be those of one model")


def _finite(values, batch, rows, path, option: str, start: int = 0):
    """``values`` (rows ``rows`` of ``batch``, its columns from ``start``), refused where they hold NaN or
    infinity: statistics of them would be NaN, or would silently skip them."""
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = (int(i[0]) for i in np.nonzero(bad))
        value, sample, column = values[row, column], int(batch.sample_ids[rows][row]), start + column
        offsets = batch.stored_table.offsets
        where = f"layer {batch.stored_table.names[int(np.searchsorted(offsets, column, 'right')) - 1]}, " \
            if batch.values.shape[1] == offsets[-1] else ""
        raise InputError(f"{option} {path}: sample {sample} holds {value} ({where}column {column}); statistics "
                         f"take finite values only")
    return values


def class_means(args, cfg) -> None:
    """The mean of one series (activations, or one transform's spectra) over the samples of each class."""
    from nsp import statistics, storage
    require_files(signals=args.signals)
    first, ids, means = None, [], None
    for path in args.signals:                 # shard by shard, a block of samples and columns at a time
        with storage.open_signals(path) as batch:
            if first is None:
                first, means = batch, statistics.ClassMeans(batch.values.shape[1])
            elif (batch.kind, batch.transform_type) != (first.kind, first.transform_type):
                mixed = sorted({str(b.transform_type or b.kind) for b in (first, batch)})
                raise InputError(f"--signals: the shards mix series ({', '.join(mixed)}); class means are taken "
                                 f"over one series")
            elif batch.values.shape[1] != means.width:
                raise StorageError(f"--signals {path}: {batch.values.shape[1]} columns, where the first shard has "
                                   f"{means.width}: shards of another network?")
            _same_network(batch, first, path, "--signals")
            ids.append(batch.sample_ids)
            _distinct_samples(ids, first.transform_type or "activations")
            if batch.labels is not None:      # no labels, no classes: an empty table
                for rows, columns, values in batch.values.blocks(batching.STREAM_BYTES):
                    block = _finite(values.astype(np.float64), batch, rows, path, "--signals", columns.start)
                    means.add(block, batch.labels[rows], columns.start)
    classes, values = means.result()
    storage.write_signals(args.out, storage.SignalBatch(
        kind=first.kind, values=values, layers=first.layers, sample_ids=np.asarray(classes),
        stored_layers=first.stored_layers,
        transform_type=first.transform_type, trace=first.trace,
        weights_sha256=first.weights_sha256), producer=producer(args))
    log(args, f"{first.transform_type or 'activations'}: {len(classes)} classes over {sum(map(len, ids))} samples")


SUMMARIZE = Stage("summarize", summarize, "statistics over all shards of one model (JSON)", (
    option("--model", required=True),
    option("--activations", nargs="+", required=True),
    option("--spectra", nargs="*"),
    option("--metrics", help="training metrics (JSON)"),
    option("--causes", nargs="*", help="the records of nsp causes for this model (JSON), one per transform"),
    option("--out", required=True)))

CLASS_MEANS = Stage("class-means", class_means, "mean of one series (activations or one transform's spectra) "
                    "over the samples of each class (HDF5; no labels: no classes)", (
    option("--signals", nargs="+", required=True, help="the shards of one series"),
    option("--out", required=True)), config="none")
