"""Drawing that scales (issue 24): which layers get a page, the page and panel caps and their notes,
panels as images in the PDF, reading only what is drawn, and class means and summaries taken in chunks
that equal the whole-array results exactly."""

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import nsp
from nsp import statistics as analysis, storage
from nsp.pipeline import batching, cli
from nsp.plotting import figures as plotting, pages
from nsp.tracing.table import LayerTable
from nsp.zoo import ToyNet

TOY_INPUT = torch.arange(16, dtype=torch.float).reshape(1, 1, 4, 4) - 8


def titles(figures):
    return [f._suptitle.get_text().split("\n")[0] for f in figures]


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return nsp.Activations(ToyNet(), TOY_INPUT)


def deep(layers=40):
    """A chain of ``layers - 1`` small layers (plus the input): more layers than the default page cap."""
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Linear(3, 3) for _ in range(layers - 1)])
    return nsp.Activations(net, torch.randn(1, 3))


def table(shapes, names=None):
    names = names or [f"layer{i}" for i in range(len(shapes))]
    return LayerTable.build(names, ["input"] + ["linear"] * (len(shapes) - 1), [""] * len(shapes), [""] * len(shapes),
                            shapes, [[]] + [[i] for i in range(len(shapes) - 1)])


# --- which layers get a page ---------------------------------------------------------------------------

def test_names_and_patterns_select_exactly_their_layers(tmp_path, toy):
    layers = [a.numpy() for a in toy.layeractivations]
    figures = list(pages.pattern_pages(layers, toy.layernames, select=["conv*", "fc"]))
    assert titles(figures) == ["Layer 1: conv1  (2, 3, 3)", "Layer 2: conv2  (8, 2, 2)", "Layer 3: fc  (8,)",
                               "Layers not drawn: 1 of 4"]
    assert any("0  input" in text.get_text() for text in figures[-1].texts)
    # the same through the library's facade, with the page count as its value
    assert nsp.Visualizer.visualize_pattern(toy, tmp_path / "a.pdf", layers=["fc", "input"]) == 3
    assert nsp.Visualizer.visualize_pattern(toy, tmp_path / "b.pdf", layers=["*"]) == 4          # all: no note page
    assert nsp.Visualizer.visualize_spectrum(nsp.NNGraph(toy).transform(toy), tmp_path / "c.pdf", layers=["conv2"]) == 2
    selection = pages.select_layers(toy.layernames, ["conv?", "conv1"])
    assert selection.drawn == (1, 2) and selection.skipped == (0, 3)


def test_a_pattern_that_matches_nothing_names_the_key_and_the_layers(tmp_path, toy):
    with pytest.raises(ValueError, match=r"^layers: 'dense\*' matches no layer; the layers are input, conv1, conv2, "
                                         r"fc$"):
        nsp.Visualizer.visualize_pattern(toy, tmp_path / "x.pdf", layers=["conv1", "dense*"])
    assert not (tmp_path / "x.pdf").exists()
    many = [f"block{i}" for i in range(30)]
    with pytest.raises(ValueError, match=r"config key visualize.layers: 'head' matches no layer; the layers are "
                                         r"block0, block1, .*block11, \.\.\. \(30 layers\)"):
        pages.select_layers(many, ["head"], what="config key visualize.layers")


def test_the_stage_draws_the_configured_layers_and_refuses_an_unknown_one(tmp_path, capsys):
    layers = table([(2, 3, 3), (4,), (3,)], ["input", "hidden", "out"])
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch(
        kind="activations", values=np.arange(2 * layers.n_nodes, dtype=np.float32).reshape(2, -1), layers=layers))
    cfg = tmp_path / "c.yaml"
    base = {"datasets": {"d": {"source": "sklearn-digits"}}, "models": {"m": {"architecture": "digits_mlp",
            "dataset": "d"}}, "transforms": {"standard": {}}}
    argv = ["visualize", "--config", str(cfg), "--activations", str(tmp_path / "a.h5"), "--out", str(tmp_path / "p.pdf")]
    cfg.write_text(yaml.safe_dump({**base, "visualize": {"layers": ["h*", "out"]}}))
    assert cli.main(argv) == 0
    log = capsys.readouterr().err
    assert "2 of 3 layers drawn (visualize.layers); not drawn: 0 input" in log
    assert open(tmp_path / "p.pdf", "rb").read().count(b"/Type /Page\n") + \
        open(tmp_path / "p.pdf", "rb").read().count(b"/Type /Page ") >= 1
    (tmp_path / "p.pdf").unlink()
    cfg.write_text(yaml.safe_dump({**base, "visualize": {"layers": ["hidden", "logits"]}}))
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == ("nsp visualize: error: config key visualize.layers: 'logits' matches no layer; "
                                       "the layers are input, hidden, out\n")
    assert not (tmp_path / "p.pdf").exists()
    cfg.write_text(yaml.safe_dump({**base, "visualize": {"layers": []}}))
    assert cli.main(argv) == 2
    assert "config key visualize.layers: [] should be non-empty" in capsys.readouterr().err


def test_many_layers_get_the_default_page_cap_spread_over_the_depth_and_a_note(tmp_path):
    acts = deep(40)
    layers = [a.numpy() for a in acts.layeractivations]
    selection = pages.select_layers(acts.layernames)
    assert len(selection.drawn) == pages.MAX_PAGES == 24
    assert selection.drawn[0] == 0 and selection.drawn[-1] == 39            # first and last layer, evenly between
    assert max(np.diff(selection.drawn)) - min(np.diff(selection.drawn)) <= 1
    figures = list(pages.pattern_pages(layers, acts.layernames))
    assert len(figures) == 25
    assert titles(figures)[:2] == [f"Layer 0: {acts.layernames[0]}  (3,)", f"Layer 2: {acts.layernames[2]}  (3,)"]
    note = figures[-1]
    assert titles([note]) == ["Layers not drawn: 16 of 40"]
    listed = "\n".join(t.get_text() for t in note.texts)
    assert all(f"{i}  {acts.layernames[i]}" in listed for i in selection.skipped)
    assert "24 pages by default" in listed
    assert nsp.Visualizer.visualize_pattern(acts, tmp_path / "deep.pdf") == 25
    # few layers: every one, no note
    assert pages.select_layers(acts.layernames[:24]).skipped == ()
    assert "16 not drawn" not in selection.summary() and selection.summary().startswith("24 of 40 layers drawn")


def test_wide_layers_show_64_channels_and_say_which_are_left_out():
    layer = np.arange(100 * 3 * 2, dtype=float).reshape(100, 3, 2)
    (fig,) = plotting.pattern_figures([layer], ["conv"])
    assert len(fig.axes[0].images) == plotting.MAX_PANELS == 64
    title = fig._suptitle.get_text()
    assert "(channels 0-63 of 100)" in title and "36 channels (64-99) not drawn: a page shows at most 64" in title
    (fig,) = plotting.pattern_figures([layer[:64]], ["conv"])
    assert "not drawn" not in fig._suptitle.get_text()


# --- panels as images, deterministic, reading only what is drawn -------------------------------------------

def test_panels_are_block_images_in_a_deterministic_pdf(tmp_path):
    layer = np.random.default_rng(0).standard_normal((6, 5, 7))
    (fig,) = plotting.pattern_figures([layer], ["conv"])
    panels = fig.axes[0].images
    assert all(isinstance(im, plotting.BlockImage) and im.get_interpolation() == "none" for im in panels)
    assert np.array_equal(panels[2].get_array(), layer[2])                      # the data stay the values
    assert all(ky > 1 and kx > 1 for ky, kx in (im.blocks for im in panels))
    paths = [tmp_path / "a.pdf", tmp_path / "b.pdf"]
    for path in paths:
        pages.pattern_pdf([layer, layer[0, 0]], ["conv", "row"], path, select=["conv"])
    data = [p.read_bytes() for p in paths]
    assert hashlib.sha256(data[0]).digest() == hashlib.sha256(data[1]).digest()
    assert data[0].count(b"/Subtype /Image") == 7                        # six panels and the colour bar's ramp


def test_pages_read_only_the_drawn_layers():
    layers = table([(2, 2, 2), (4,), (3, 2), (5,)])
    values = np.arange(2 * layers.n_nodes, dtype=np.float32).reshape(2, -1)

    class Counting:
        def __init__(self):
            self.reads = []

        def __getitem__(self, key):
            self.reads.append(key)
            return values[key]

    source = Counting()
    sample = pages.SampleLayers(source, 1, layers)
    assert np.array_equal(sample[2], values[1, 12:18].reshape(3, 2))
    source.reads.clear()
    list(pages.pattern_pages(sample, layers.names, select=["layer2"]))
    assert source.reads == [(1, slice(12, 18))]
    source.reads.clear()
    list(pages.pattern_pages(sample, layers.names, scale="globalnorm", select=["layer2"]))   # limits span all layers
    assert sorted({k[1].start for k in source.reads}) == [0, 8, 12, 18]


def test_the_stage_reads_one_sample_of_an_open_file(tmp_path):
    layers = table([(3, 4, 4), (5,)])
    values = np.random.default_rng(1).standard_normal((40, layers.n_nodes)).astype(np.float32)
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch(kind="activations", values=values, layers=layers,
                                                                 labels=np.arange(40) % 3))
    with storage.open_signals(tmp_path / "a.h5", "activations") as batch:
        assert isinstance(batch.values, storage.signals.StoredValues) and batch.values.shape == (40, 53)
        assert batch.labels.tolist() == (np.arange(40) % 3).tolist()
        sample = pages.SampleLayers(batch.values, 7, batch.layers)
        assert np.array_equal(sample[0], values[7, :48].reshape(3, 4, 4)) and np.array_equal(sample[1], values[7, 48:])


# --- class means and summaries in chunks ---------------------------------------------------------------

def test_class_means_in_any_chunks_equal_the_whole_array_exactly():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal((97, 301)) * 10 ** rng.uniform(-3, 3, (97, 301))).astype(np.float32)
    labels = rng.integers(0, 5, 97)
    classes, means = analysis.class_means(values.astype(np.float64), labels)
    assert np.array_equal(means, np.stack([values.astype(np.float64)[labels == c].mean(axis=0) for c in classes]))
    for rows, cols in [(1, 301), (7, 301), (32, 50), (13, 1), (97, 128)]:
        chunked = analysis.ClassMeans(301)
        for r in range(0, 97, rows):
            for c in range(0, 301, cols):
                chunked.add(values[r:r + rows, c:c + cols].astype(np.float64), labels[r:r + rows], c)
        got_classes, got = chunked.result()
        assert np.array_equal(got_classes, classes) and np.array_equal(got, means)
        assert chunked.samples == 97


def test_the_class_means_stage_streams_blocks_and_gives_the_same_bytes(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    layers = table([(5000,), (300,)])
    values = rng.standard_normal((70, layers.n_nodes)).astype(np.float32)
    labels = rng.integers(0, 4, 70)
    for name, rows in (("a", slice(0, 45)), ("b", slice(45, 70))):
        storage.write_signals(tmp_path / f"{name}.h5", storage.SignalBatch(
            kind="activations", values=values[rows], layers=layers, sample_ids=np.arange(70)[rows],
            labels=labels[rows]))
    shards = [str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]
    with storage.open_signals(tmp_path / "a.h5") as batch:
        blocks = list(batch.values.blocks(1))                       # one chunk at a time
        assert len(blocks) > 4 and all(v.shape == (r.stop - r.start, c.stop - c.start) for r, c, v in blocks)
    out = tmp_path / "m1.h5"                 # one name: the command line is part of the file's provenance
    assert cli.main(["class-means", "--signals", *shards, "--out", str(out), "--quiet"]) == 0
    whole = out.read_bytes()
    monkeypatch.setattr(batching, "STREAM_BYTES", 1)
    assert cli.main(["class-means", "--signals", *shards, "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes() == whole
    classes, means = analysis.class_means(values.astype(np.float64), labels)
    stored = storage.read_signals(tmp_path / "m1.h5")
    assert np.array_equal(stored.sample_ids, classes) and np.array_equal(stored.values, means)


def test_summaries_in_any_chunks_equal_the_whole_array_exactly(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((75, 40)) * (rng.random((75, 40)) > 0.3)
    offsets = [0, 10, 25, 40]
    ks, share = analysis.compaction(values)
    for rows in (1, 8, 75):
        summary = analysis.Summary(40, offsets, 1e-3)
        for r in range(0, 75, rows):
            summary.add(values[r:r + rows])
        result = summary.result()
        assert np.array_equal(result["ks"], ks) and np.array_equal(result["compaction"], share)
        assert np.array_equal(result["energy_per_layer"], analysis.energy_per_layer(values, offsets).mean(axis=0))
        assert np.array_equal(result["sparsity_per_layer"], analysis.sparsity_per_layer(values, offsets, 1e-3))
    # the stage: the same file in small and large chunks
    layers = table([(10,), (15,), (15,)])
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch(kind="activations", values=values.astype(np.float32),
                                                                 layers=layers))
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml.safe_dump({"part": "summarize", "summary": {"sparsity_threshold": 0.001}}))
    argv = ["summarize", "--config", str(cfg), "--model", "m", "--activations", str(tmp_path / "a.h5"), "--quiet"]
    assert cli.main(argv + ["--out", str(tmp_path / "1.json")]) == 0
    monkeypatch.setattr(batching, "STREAM_BYTES", 1)
    assert cli.main(argv + ["--out", str(tmp_path / "2.json")]) == 0
    assert (tmp_path / "1.json").read_text() == (tmp_path / "2.json").read_text()
    stats = json.loads((tmp_path / "1.json").read_text())["activations"]
    assert stats["compaction_share"] == analysis.compaction(values.astype(np.float32).astype(np.float64))[1].tolist()


def test_the_class_means_figure_bins_wide_means_by_their_largest_magnitude():
    from nsp.plotting import paper
    means = np.zeros((2, 3 * paper.MAX_IMAGE_COLUMNS))
    means[1, 5] = -7.0
    means[0, 20] = 2.0                      # the second layer's largest: scaled to 1
    fig = paper.class_means_figure([0, 1], means, [0, 10, means.shape[1]], ["a", "b"])
    image = fig.axes[0].images[0]
    assert image.get_array().shape == (2, paper.MAX_IMAGE_COLUMNS)
    assert image.get_array()[1, 1] == 1.0 and image.get_array()[0, 6] == 1.0
    assert image.get_extent()[:2] == [-0.5, means.shape[1] - 0.5]
    names = [f"l{i}" for i in range(100)]
    fig = paper.class_means_figure([0], np.ones((1, 100)), np.arange(101), names)
    assert len(fig.axes[0].get_xticks()) == paper.MAX_LAYER_TICKS
    assert "(24 of 100 layers marked)" in fig.axes[0].get_title()
