"""The memory (and time) each pipeline job asks its scheduler for, estimated from its input files.

The rules call these functions from their ``resources`` (``mem_mb``, ``runtime``), with the job's input
files. Snakemake (9.27.1, ``scheduling/job_scheduler.py``: ``job.reset_params_and_resources()`` for every
ready job) evaluates a rule's resources again when it schedules the job, once its input files exist, and
again for each retry (``attempt``). Before that, in a dry run or while it plans, an input may not exist yet:
the estimate is then the stage's floor (shown by ``snakemake -n``, never given to a job).

Only metadata is read: the node count from the graph's layer table, the edge count from the shapes of the
stored index arrays (``adjacency``, or the blocks' Kronecker factors and coordinate lists), the bytes the
arrays of a file take once read (dtype size times shape, whatever the compression), and the shape of a
shard's sample matrix. Nothing is loaded or hashed.

Formulas, in bytes (MB = 2^20 bytes), each for one attempt; a retry asks for ``attempt`` times as much.
``n`` nodes, ``e`` edges, ``S`` the arrays of a file, ``b`` samples per step of a stage, ``P`` the
process with its imports (:data:`TORCH_MB` for stages that run a network or torch, :data:`BASE_MB` else):

- ``collect-activations``: ``P + 16 n b + 8 i N``: the recorded layers, the array of their values and what
  the forward pass and the writer hold besides (measured: three times ``4 n b``), ``b`` =
  :func:`nsp.pipeline.batching.collect_batch`; the dataset loaded whole and reshaped for the model (``i``
  values per input, ``N`` samples).
- ``compute-transformer``: ``P + 2 S(graph)`` and the fit: the explicit standard transform's lower bound
  (:func:`nsp.transforms.standard.explicit_memory` with the smallest closure, ``n + e`` entries) where the
  graph has coordinate-list blocks or is input-local (``INCL`` false), or with ``method: explicit`` (the
  factored closure: nothing more); the Laplacian fit's bound (:func:`nsp.transforms.laplacian.laplacian_memory`) plus, on the sparse
  path, :data:`LU_FILL` times the sparse Laplacian for the fill-in of its LU factors.
- ``transform``: ``P + 2 S(transformer) + c 8 n b``, ``b`` the samples of one batch of
  :data:`nsp.pipeline.batching.TRANSFORM_BYTES` (``c`` per transform: :data:`TRANSFORM_COPIES`).
- ``summarize``: ``P + 6 max(B, 8 w)``: a block of :data:`nsp.pipeline.batching.STREAM_BYTES` (``B``; at least
  one sample of the widest series, ``w`` columns) and the statistics' copies of it.
- ``class-means``: ``P + 4 B + 8 w (k + 2)``: the blocks, and the running sum of each of ``k`` classes.
- ``causes``: ``P + 2 S(transformer) + 8 n (4 N + 64)`` for ``N`` samples and the closure rows of one, and
  where the graph is reconstructed (``n`` at most ``causes.max_nodes``) ``24 f n^2``: three copies of the
  observed rows of ``W`` for the largest fraction ``f``.

Runtime (minutes) of ``collect-activations`` and ``transform``: :data:`RUNTIME_FLOOR`, or
:data:`NS_PER_VALUE` nanoseconds per value of the shard (samples times nodes; measured on this machine's
cores: 100 to 140 ns per value to record and write, 280 to 520 to transform), times ``attempt``.

Then :data:`MARGIN`, rounded up to 100 MB. The constants were fitted on the peak RSS of each stage on
graphs of 138 to 965,642 nodes (measured / estimated, MB: collect-activations of vgg_cifar width 80 and 64
samples 1039 / 1800; transform with the standard transform 2919 / 4700, with sem 1404 / 2600; the sparse
Laplacian fit (k 16) of vgg_cifar width 8 3852 / 7100); ``tests/test_resources.py`` checks the estimates
against the measured peak of every stage on small graphs. ``extract-graph`` (its graph is its output),
``train`` and the drawing stages keep fixed figures in their rules.
"""

from __future__ import annotations

import math
import os

from nsp.pipeline import batching

#: resident memory of a stage's process before its data: Python, NumPy, SciPy, h5py, nsp (measured 60-110 MB)
BASE_MB = 200
#: the same with torch and a network (measured 280-310 MB)
TORCH_MB = 450
#: factor on every estimate
MARGIN = 1.25
#: bytes of the sparse LU of the shifted Laplacian per byte of the Laplacian (measured 42 on vgg_cifar width 8)
LU_FILL = 60
#: float64 copies of one batch that applying a transform holds (measured: standard 11.6, sem 4.3, laplacian 2)
TRANSFORM_COPIES = {"standard": 14, "sem": 6, "laplacian": 4}
#: for a transform not listed above
OTHER_COPIES = 16
#: the transforms whose application imports torch
_TORCH_TRANSFORMS = {"sem"}
MB = 1 << 20

#: runtime (minutes) of a job: at least these, more for large shards (nanoseconds per stored value)
RUNTIME_FLOOR = {"collect-activations": 30, "transform": 30}
NS_PER_VALUE = {"collect-activations": 500, "transform": 2000}


def _mb(nbytes: float, attempt: int) -> int:
    """Megabytes to ask for: the margin, ``attempt`` times, rounded up to 100 MB."""
    return int(math.ceil(nbytes * MARGIN * max(1, int(attempt)) / MB / 100) * 100)


def _h5():
    import h5py
    return h5py


def _array_bytes(group) -> int:
    """Bytes the numeric datasets under an HDF5 group take once read (dtype size times element count)."""
    total = 0

    def add(_, obj):
        nonlocal total
        if isinstance(obj, _h5().Dataset) and obj.dtype.kind in "biuf":
            total += obj.size * obj.dtype.itemsize
    group.visititems(add)
    return total


class GraphSize:
    """What the resource estimates need of a graph file, from its metadata: ``nodes``, ``input_nodes`` (the
    first layer), ``incl`` (the structural graph); read when asked for (a walk over the blocks' metadata):
    ``edges``, ``stored`` (bytes of its arrays once read), ``coo`` (some block is a coordinate list: the
    factored standard transform does not apply)."""

    def __init__(self, path):
        self.path = path
        with _h5().File(path, "r", locking=False) as f:
            offsets = f["layers/offset"][()]
            self.nodes = int(offsets[-1])
            self.input_nodes = int(offsets[1] - offsets[0]) if len(offsets) > 1 else self.nodes
            self.incl = bool(f.attrs.get("INCL", True))
        self._walked = None

    def _walk(self) -> tuple[int, int, bool]:
        if self._walked is None:
            with _h5().File(self.path, "r", locking=False) as f:
                coo, edges = False, 0
                for layer in f["blocks"].values():
                    for entry in layer.values():
                        if str(entry.attrs.get("encoding-type")) == "coo":
                            coo, edges = True, edges + int(entry["rows"].shape[0])
                        else:
                            edges += math.prod(int(entry[f"factor_{j}/indices"].shape[0])
                                               for j in range(int(entry.attrs["factors"])))
                edges = int(f["adjacency/indices"].shape[0]) if "adjacency" in f else edges
                self._walked = (edges, _array_bytes(f), coo)
        return self._walked

    edges = property(lambda self: self._walk()[0])
    stored = property(lambda self: self._walk()[1])
    coo = property(lambda self: self._walk()[2])


def _graph(path) -> GraphSize | None:
    return GraphSize(path) if path and os.path.exists(path) else None


def _shape(path) -> tuple[int, int] | None:
    """(samples, width) of an activations or spectra file, or None while it does not exist."""
    if not path or not os.path.exists(path):
        return None
    with _h5().File(path, "r", locking=False) as f:
        name = "values" if "values" in f else "coefficients"
        rows, width = f[name].shape
        return int(rows), int(width)


def _transform_batch(samples: int, width: int) -> int:
    return max(1, min(samples, batching.TRANSFORM_BYTES // (8 * max(width, 1))))


# --- one function per stage: megabytes ------------------------------------------------------------------

def collect_activations_mb(graph, shard_size: int, dataset_size: int, attempt: int = 1) -> int:
    """Memory of a ``collect-activations`` job: ``graph`` the model's graph file, ``shard_size`` samples per
    shard, ``dataset_size`` samples in the dataset (it is loaded whole)."""
    g = _graph(graph)
    if g is None:
        return _mb(TORCH_MB * MB, 1)
    step = min(max(1, shard_size), batching.collect_batch(g.nodes))
    return _mb(TORCH_MB * MB + 16 * g.nodes * step + 8 * g.input_nodes * dataset_size, attempt)


def compute_transformer_mb(graph, transform: str, options: dict | None = None, attempt: int = 1) -> int:
    """Memory of a ``compute-transformer`` job fitting ``transform`` (a type, with its config ``options``)
    on the graph file ``graph``."""
    g = _graph(graph)
    base = BASE_MB * MB
    if g is None:
        return _mb(base, 1)
    options = options or {}
    fit = 2 * g.stored
    if transform == "standard":
        if options.get("method") == "explicit" or options.get("method", "auto") == "auto" and (g.coo or not g.incl):
            from nsp.transforms.standard import explicit_memory
            fit += explicit_memory(g.nodes, g.edges, g.nodes + g.edges)
    elif transform == "laplacian":
        from nsp.transforms.laplacian import DENSE_LIMIT, laplacian_memory
        k, method = options.get("k"), options.get("method", "auto")
        fit += laplacian_memory(g.nodes, g.edges, k, method)
        want = g.nodes if k is None else min(k + 8, g.nodes)
        if k is not None and (method == "sparse" or method == "auto" and g.nodes > DENSE_LIMIT and 2 * want < g.nodes):
            fit += LU_FILL * laplacian_memory(g.nodes, g.edges, k, method, solver=False)
    elif transform != "sem":
        fit += 8 * g.nodes * g.nodes // 64 + 16 * g.edges        # a transform nsp knows nothing of: a guess
    return _mb(base + fit, attempt)


def transform_mb(activations, transformer, attempt: int = 1) -> int:
    """Memory of a ``transform`` job applying the transformer file ``transformer`` to the shard
    ``activations``."""
    shape = _shape(activations)
    if shape is None or not transformer or not os.path.exists(transformer):
        return _mb(BASE_MB * MB, 1)
    with _h5().File(transformer, "r", locking=False) as f:
        kind, stored = str(f.attrs.get("transform-type", "")), _array_bytes(f)
    samples, width = shape
    batch = 8 * width * _transform_batch(samples, width)
    base = (TORCH_MB if kind in _TORCH_TRANSFORMS else BASE_MB) * MB
    return _mb(base + 2 * stored + TRANSFORM_COPIES.get(kind, OTHER_COPIES) * batch, attempt)


def summarize_mb(activations, spectra=(), attempt: int = 1) -> int:
    """Memory of a ``summarize`` job over the shards ``activations`` and ``spectra`` (lists of files)."""
    shapes = [s for s in (_shape(p) for p in [*list(activations)[:1], *spectra]) if s is not None]
    width = max((w for _, w in shapes), default=0)
    return _mb(BASE_MB * MB + 6 * max(batching.STREAM_BYTES, 8 * width), attempt)


def class_means_mb(signals, attempt: int = 1) -> int:
    """Memory of a ``class-means`` job over the shards ``signals``: the running sum of each class."""
    width, classes = 0, set()
    for path in signals:
        if not os.path.exists(path):
            continue
        with _h5().File(path, "r", locking=False) as f:
            width = max(width, f["values" if "values" in f else "coefficients"].shape[1])
            if "labels" in f:
                classes.update(int(c) for c in set(f["labels"][()].tolist()))
    return _mb(BASE_MB * MB + 4 * batching.STREAM_BYTES + 8 * width * (len(classes) + 2), attempt)


def causes_mb(transformer, activations, settings: dict, attempt: int = 1) -> int:
    """Memory of a ``causes`` job: the transformer, its samples, one sample's closure rows at a time, and
    the observed rows of ``W`` of the largest fraction where the graph is small enough to reconstruct."""
    shape = _shape(list(activations)[0]) if activations else None
    if shape is None or not transformer or not os.path.exists(transformer):
        return _mb(TORCH_MB * MB, 1)
    with _h5().File(transformer, "r", locking=False) as f:
        stored = _array_bytes(f)
    n = shape[1]
    need = TORCH_MB * MB + 2 * stored + 8 * n * (4 * settings["samples"] + 64)
    if n <= settings["max_nodes"]:
        need += 24 * int(max(settings["fractions"]) * n) * n
    return _mb(need, attempt)


# --- runtime ----------------------------------------------------------------------------------------

def runtime_min(stage: str, values: int, attempt: int = 1) -> int:
    """Minutes to ask for a job of ``stage`` (``collect-activations``, ``transform``) that handles ``values``
    stored values (samples times width): :data:`RUNTIME_FLOOR`, or :data:`NS_PER_VALUE` per value."""
    minutes = max(RUNTIME_FLOOR[stage], math.ceil(values * NS_PER_VALUE[stage] / 60e9))
    return minutes * max(1, int(attempt))


def collect_activations_runtime(graph, shard_size: int, attempt: int = 1) -> int:
    g = _graph(graph)
    return runtime_min("collect-activations", 0 if g is None else g.nodes * shard_size, attempt)


def transform_runtime(activations, attempt: int = 1) -> int:
    shape = _shape(activations)
    return runtime_min("transform", 0 if shape is None else shape[0] * shape[1], attempt)
