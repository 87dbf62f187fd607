"""Visualizer pages, summary statistics and plots: limits, page counts, identical bytes, errors."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.colors import LogNorm

import nsp
from nsp import statistics as analysis
from nsp.plotting import figures as plotting
from nsp.zoo import ToyNet

README_INPUT = torch.tensor([[[[-6, -1, -2, 5], [-3, -6, 5, 4], [2, 5, -6, 3], [5, 0, 1, -6]]]], dtype=torch.float)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def pages(path):
    data = open(path, "rb").read()
    return data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") + data.count(b"/Type /Page>")


@pytest.fixture
def toy():
    torch.manual_seed(0)
    acts = nsp.Activations(ToyNet(), README_INPUT)
    return acts, nsp.NNGraph(acts)


def layer_arrays(acts):
    return [a.numpy() for a in acts.layeractivations]


@pytest.mark.parametrize("scale", plotting.SCALES)
def test_colour_limits_follow_the_scale(toy, scale):
    acts, _ = toy
    layers = layer_arrays(acts)
    figures = list(plotting.pattern_figures(layers, acts.layernames, scale))
    assert len(figures) == 4
    lo_all = min(float(a.min()) for a in layers)
    hi_all = max(float(a.max()) for a in layers)
    for fig, layer in zip(figures, layers):
        images = fig.axes[0].images                              # the panels, on one grid of axes
        assert len(images) == (layer.shape[0] if layer.ndim == 3 else 1)
        clims = {im.get_clim() for im in images}
        assert len(clims) == 1                                   # one colour scale per page
        lo, hi = clims.pop()
        if scale == "layerscale":
            assert (lo, hi) == (float(layer.min()), float(layer.max()))
        elif scale == "layernorm":
            m = float(np.abs(layer).max())
            assert (lo, hi) == (-m, m)
        elif scale == "globalscale":
            assert (lo, hi) == (lo_all, hi_all)
        else:
            m = max(abs(lo_all), abs(hi_all))
            assert (lo, hi) == (-m, m)
        assert fig.axes[-1].get_xlabel() == scale                # the horizontal colour bar


def test_page_titles_grid_and_shapes(toy):
    acts, _ = toy
    figures = list(plotting.pattern_figures(layer_arrays(acts), acts.layernames))
    assert [f._suptitle.get_text() for f in figures] == [
        "Layer 0: input  (1, 4, 4)", "Layer 1: conv1  (2, 3, 3)", "Layer 2: conv2  (8, 2, 2)", "Layer 3: fc  (8,)"]
    conv2 = figures[2]
    grid = conv2.axes[0].images
    corners = [im.get_extent()[:4:2] for im in grid]                                    # (left, bottom)
    assert len(grid) == 8 and len({x for x, _ in corners}) == 4 and len({y for _, y in corners}) == 2
    assert [t.get_text() for t in conv2.axes[0].texts] == [f"channel {k}" for k in range(8)]
    for im, channel in zip(grid, layer_arrays(acts)[2]):
        left, right, bottom, top = im.get_extent()                                     # square pixels
        assert np.array_equal(im.get_array(), channel)
        assert (right - left) * conv2.axes[0].bbox.width / 4 == pytest.approx((top - bottom) * conv2.axes[0].bbox.height / 2)
    assert figures[3].axes[0].images[0].get_array().shape == (1, 8)                       # a vector is one row


def test_pdf_pages_bytes_and_folders(tmp_path, toy):
    acts, graph = toy
    first = tmp_path / "new" / "folder" / "acts.pdf"
    assert nsp.Visualizer.visualize_pattern(acts, first, scale="layernorm") == 4
    assert pages(first) == 4
    second = tmp_path / "acts2.pdf"
    nsp.Visualizer.visualize_pattern(acts, second, scale="layernorm")
    assert sha(first) == sha(second)
    assert b"CreationDate" not in open(first, "rb").read()
    lap = tmp_path / "lap.pdf"
    assert nsp.Visualizer.visualize_spectrum(graph.transform(acts, "laplacian"), lap) == 5     # + eigenvalue page
    assert pages(lap) == 5
    std = tmp_path / "std.pdf"
    assert nsp.Visualizer.visualize_spectrum(graph.transform(acts), std) == 4
    assert nsp.Visualizer.visualize_pattern(graph.transform(acts), tmp_path / "spec-as-pattern.pdf") == 4


def test_wide_layer_stays_one_readable_page(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 64, 3), nn.ReLU())
    acts = nsp.Activations(net, torch.randn(1, 1, 6, 6))
    figures = list(plotting.pattern_figures(layer_arrays(acts), acts.layernames))
    wide = figures[1]
    assert len(wide.axes[0].images) == 64
    width, height = wide.get_size_inches()
    assert width == pytest.approx(4 * plotting.PANEL_INCHES + 0.4) and height >= 16 * plotting.PANEL_INCHES
    assert nsp.Visualizer.visualize_pattern(acts, tmp_path / "wide.pdf") == 3


def test_very_wide_layer_shows_the_first_channels():
    layer = np.arange(100 * 2 * 2, dtype=float).reshape(100, 2, 2)
    (fig,) = plotting.pattern_figures([layer], ["conv"])
    drawn = fig.axes[0].images
    assert len(drawn) == plotting.MAX_PANELS == 64
    assert fig.axes[0].texts[-1].get_text() == "channel 63" and np.array_equal(drawn[-1].get_array(), layer[63])
    assert "(channels 0-63 of 100)" in fig._suptitle.get_text()


def test_bad_scale_colormap_and_path(tmp_path, toy):
    acts, _ = toy
    with pytest.raises(ValueError, match="unknown scale 'log'; accepted: layerscale, layernorm, globalscale, globalnorm"):
        nsp.Visualizer.visualize_pattern(acts, tmp_path / "x.pdf", scale="log")
    with pytest.raises(ValueError, match=r"unknown colormap 'viridiss'; accepted: .*viridis"):
        nsp.Visualizer.visualize_pattern(acts, tmp_path / "x.pdf", cmap_style="viridiss")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=f"{blocker / 'x.pdf'}: not written: cannot make the folder {blocker}: a file "
                                      f"is in the way") as caught:
        nsp.Visualizer.visualize_pattern(acts, blocker / "x.pdf")
    assert isinstance(caught.value, nsp.NspError)
    with pytest.raises(TypeError, match="activations must be an nsp.Activations or Spectrum, got ndarray"):
        nsp.Visualizer.visualize_pattern(np.zeros(3), tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


# --- statistics ------------------------------------------------------------------------------

def test_energy_per_layer():
    values = np.array([[1.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    shares = analysis.energy_per_layer(values, [0, 2, 3, 4])
    assert shares.tolist() == [[2 / 6, 4 / 6, 0.0], [0.0, 0.0, 1.0]]


def test_compaction():
    ks, share = analysis.compaction(np.array([[3.0, 0.0, -4.0, 0.0]]), ks=[1, 2, 4])
    assert ks.tolist() == [1, 2, 4] and share.tolist() == [16 / 25, 1.0, 1.0]
    ks, share = analysis.compaction(np.ones((2, 1000)))
    assert ks[0] == 1 and ks[-1] == 1000 and share[-1] == 1.0 and share[0] == pytest.approx(1e-3)


def test_sparsity_and_class_means():
    values = np.array([[1.0, 1e-4, 0.5, 0.0], [2.0, 2.0, 1e-5, 1.0]])
    assert analysis.sparsity_per_layer(values, [0, 2, 4], threshold=1e-3).tolist() == [0.25, 0.5]
    classes, means = analysis.class_means(np.arange(12.0).reshape(4, 3), [1, 0, 1, 0])
    assert classes.tolist() == [0, 1] and means.tolist() == [[6.0, 7.0, 8.0], [3.0, 4.0, 5.0]]


def test_summary_figures_are_deterministic(tmp_path):
    from nsp.plotting import paper
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 30))
    offsets = [0, 10, 25, 30]
    names = ["input", "hidden", "out"]
    shares = {"activations": analysis.energy_per_layer(values, offsets).mean(axis=0),
              "standard": analysis.energy_per_layer(values * 2, offsets).mean(axis=0)}
    quantiles = {"a": analysis.magnitude_quantiles_per_sample(values, offsets).mean(axis=0)}
    figs = {
        "energy": lambda: paper.layer_profiles([("energy", "share", shares, True)], names, "energy"),
        "compaction": lambda: paper.compaction_grid({"m": {"a": analysis.compaction(values)}}),
        "magnitude": lambda: paper.magnitude_grid({"m": (names, quantiles)}, analysis.QUANTILES, "magnitude"),
        "classes": lambda: paper.class_means_figure(*analysis.class_means(values, np.arange(50) % 5), offsets, names),
    }
    for name, make in figs.items():
        a = plotting.save_figure(make(), tmp_path / f"{name}-1")
        b = plotting.save_figure(make(), tmp_path / f"{name}-2")
        assert [p.suffix for p in a] == [".pdf", ".png"]
        assert [sha(p) for p in a] == [sha(p) for p in b]
    line = paper.layer_profiles([("energy", "share", shares, True)], names, "energy").axes[0].lines[0]
    assert line.get_xdata().tolist() == shares["activations"].tolist() and line.get_ydata().tolist() == [0, 1, 2]


def test_compaction_grid_legend_lists_every_series():
    from nsp.plotting import paper
    ks, share = np.array([1, 10]), np.array([0.5, 1.0])
    fig = paper.compaction_grid({"a": {"activations": (ks, share), "laplacian": (ks, share)},
                                 "b": {"activations": (ks, share), "sem": (ks, share)}})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["activations", "laplacian", "sem"]