"""Benchmark: HDF5 storage of activations and spectra at MNIST-fixture size.

Writes and reads 10,000 samples x 9,594 neurons as activations (float32) and
as standard spectra (float64) with several filters, and prints MB/s, file
size and compression ratio next to numpy.save of the same array in the same
run. Also times reading one sample and one neuron across all samples, and
the seal (hashing the whole file, which every read checks first) against the
time of a full read.

    .venv/bin/python bench/bench_storage.py [--samples N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import mnist_net, synthetic_images

import nsp
from nsp import storage
from nsp.storage import container, h5
from nsp.storage import SignalWriter
from nsp.tracing import LayerTable
FILTERS = {
    "none": {},
    "gzip-1 + shuffle": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "gzip-4 + shuffle": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
    "gzip-1": {"compression": "gzip", "compression_opts": 1},
    "lzf + shuffle": {"compression": "lzf", "shuffle": True},
    "lzf": {"compression": "lzf"},
}


def data(samples: int):
    """Activations of the MNIST network on smooth synthetic digits-like images, and their spectra."""
    net, _ = mnist_net()
    images = synthetic_images(samples)
    values = nsp.record(net, images, "children").values()
    acts = nsp.Activations(net, images[:1])
    graph = nsp.NNGraph(acts)
    spectra = nsp.make_transform("standard").fit(graph.core).transform(values)
    return values.astype(np.float32), spectra, acts.table


def rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 2**20:8.0f} MB/s"


def bench(name: str, array: np.ndarray, table: LayerTable, folder: Path) -> None:
    kind = "activations" if array.dtype == np.float32 else "spectra"
    raw = array.nbytes
    start = time.perf_counter()
    np.save(folder / "ref.npy", array)
    t_save = time.perf_counter() - start
    start = time.perf_counter()
    np.load(folder / "ref.npy")
    t_load = time.perf_counter() - start
    print(f"\n{name}: {array.shape[0]:,} x {array.shape[1]:,} {array.dtype} ({raw / 2**20:.0f} MiB)")
    print(f"  {'numpy.save':<18} write {rate(raw, t_save)}   read {rate(raw, t_load)}   size "
          f"{(folder / 'ref.npy').stat().st_size / 2**20:7.1f} MiB   ratio  1.00")
    for label, options in FILTERS.items():
        path = folder / f"{kind}.h5"
        start = time.perf_counter()
        with SignalWriter(path, kind, table, array.shape[1], dtype=array.dtype, compression=options,
                          transform_type=None if kind == "activations" else "standard") as writer:
            for begin in range(0, array.shape[0], 1000):        # a shard at a time, as the pipeline does
                writer.append(array[begin:begin + 1000])
        t_write = time.perf_counter() - start
        start = time.perf_counter()
        back = storage.read_signals(path)
        t_read = time.perf_counter() - start
        assert np.array_equal(back.values, array)
        start = time.perf_counter()
        storage.read_signals(path, samples=slice(5000, 5001))
        t_one = time.perf_counter() - start
        with storage.open_file(path) as f:
            start = time.perf_counter()
            f["values" if kind == "activations" else "coefficients"][:, 4321]
            t_column = time.perf_counter() - start
        start = time.perf_counter()
        container.seal(path)                                      # hashing the file, as writing does at the end
        t_seal = time.perf_counter() - start
        size = path.stat().st_size
        print(f"  {label:<18} write {rate(raw, t_write)}   read {rate(raw, t_read)}   size {size / 2**20:7.1f} MiB   "
              f"ratio {raw / size:5.2f}   one sample {t_one * 1e3:6.1f} ms   one neuron {t_column * 1e3:7.1f} ms   "
              f"seal {t_seal * 1e3:5.0f} ms ({t_seal / t_read:4.0%} of the read)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    values, spectra, table = data(args.samples)
    print(f"default filters: {storage.SAMPLE_COMPRESSION}; chunks {h5.chunks(values.shape[1], 4)} (float32), "
          f"{h5.chunks(spectra.shape[1], 8)} (float64)")
    with tempfile.TemporaryDirectory() as folder:
        bench("activations", values, table, Path(folder))
        bench("standard spectra", spectra, table, Path(folder))


if __name__ == "__main__":
    main()
