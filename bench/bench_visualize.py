"""Benchmark: drawing. The MNIST network's activation PDF (the reference's layout) and the
summary plots (energy per layer, compaction, sparsity, class means) for 1,797 samples.

The reference point in the same run is a bare matplotlib loop drawing the same
panels with default settings (no shared norm, no colour bar, no fixed style).
The 1,797 inputs are synthetic 28x28 stroke images (the digits dataset arrives
with the pipeline issue).

    .venv/bin/python bench/bench_visualize.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from common import mnist_net, synthetic_images, timed
from matplotlib.backends.backend_pdf import PdfPages

import nsp
from nsp import statistics as analysis
from nsp.plotting import figures as plotting


def bare_pdf(acts, path):
    with PdfPages(path) as pdf:
        for layer in acts.layeractivations:
            for image in plotting.panels(layer.numpy()):
                fig, ax = plt.subplots()
                ax.imshow(image)
                pdf.savefig(fig)
                plt.close(fig)


def main():
    torch.set_num_threads(2)
    net, source = mnist_net()
    images = synthetic_images(1797)
    acts = nsp.Activations(net, images[:1])
    graph = nsp.NNGraph(acts)
    folder = Path(tempfile.mkdtemp())
    t_pdf, pages = timed(lambda: nsp.Visualizer.visualize_pattern(acts, folder / "acts.pdf"), 3)
    t_spec, _ = timed(lambda: nsp.Visualizer.visualize_spectrum(graph.transform(acts), folder / "std.pdf"), 3)
    t_bare, _ = timed(lambda: bare_pdf(acts, folder / "bare.pdf"), 3)
    print(f"MNIST network ({source}), one pattern, {pages} pages")
    print(f"  activation PDF           {t_pdf:6.2f} s   ({(folder / 'acts.pdf').stat().st_size / 1024:.0f} KiB)")
    print(f"  standard spectrum PDF    {t_spec:6.2f} s")
    print(f"  bare matplotlib loop     {t_bare:6.2f} s   (one figure per channel; ratio {t_bare / t_pdf:.2f} x)")

    values = nsp.record(net, images, "children").values()
    offsets = graph.core.offsets
    names = graph.core.names
    labels = np.arange(len(images)) % 10
    spectra = {
        "activations": values.astype(np.float64),
        "standard": nsp.make_transform("standard").fit(graph.core).transform(values),
        "laplacian (layer layout)": nsp.make_transform("laplacian").fit(graph.core).transform(values),
    }
    def summaries():
        from nsp.plotting import paper
        energy = {k: analysis.energy_per_layer(v, offsets).mean(axis=0) for k, v in spectra.items()}
        plotting.save_figure(paper.layer_profiles([("energy", "share", energy, True)], names, "energy"),
                             folder / "energy")
        curves = {k: analysis.compaction(v) for k, v in spectra.items()}
        plotting.save_figure(paper.compaction_grid({"net": curves}), folder / "compaction")
        sparsity = {k: analysis.layer_sparsity_per_sample(v, offsets).mean(axis=0) for k, v in spectra.items()}
        plotting.save_figure(paper.layer_profiles([("sparsity", "share", sparsity, False)], names, "sparsity"),
                             folder / "sparsity")
        classes, means = analysis.class_means(spectra["standard"], labels)
        plotting.save_figure(paper.class_means_figure(classes, means, offsets, names), folder / "classes")
    t_sum, _ = timed(summaries, 2)
    t_stats, _ = timed(lambda: [analysis.compaction(v) for v in spectra.values()], 2)
    print(f"summary plots for {len(images):,} samples x {values.shape[1]:,} neurons, 3 series, PDF + PNG")
    print(f"  all four figures         {t_sum:6.2f} s   (of which compaction statistics {t_stats:.2f} s)")
    print(f"  written to {folder}")


if __name__ == "__main__":
    main()
