"""Paper figures: per-layer statistics against hand-computed values on a spectrum spanning 1e-3 to 1e20,
page-sized figures with readable text, and captions whose numbers are those of the statistics."""

import json
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn
from matplotlib.text import Text

import nsp
from nsp import statistics, storage
from nsp.errors import InputError
from nsp.pipeline import cli, paper_figures
from nsp.pipeline.figures import FIGURES

# one sample, two layers: the first of magnitude 1e-3, the second up to 1e20
TOY = np.array([[1e-3, 0.0, 2e-3, 0.0, 1e20, 1e19, 0.0, 1e17]])
OFFSETS = [0, 4, 8]


def exact(x: float) -> Fraction:
    return Fraction(x)


def test_magnitude_quantiles_by_hand():
    q = statistics.magnitude_quantiles_per_sample(TOY, OFFSETS)[0]
    # sorted |values| of layer 0: 0, 0, 1e-3, 2e-3 (linear interpolation between order statistics)
    assert q[0].tolist() == pytest.approx([0.5e-3, 1.7e-3, 1.97e-3, 2e-3], rel=1e-14, abs=0)
    # layer 1: 0, 1e17, 1e19, 1e20
    median = float((exact(1e17) + exact(1e19)) / 2)
    assert q[1, 0] == pytest.approx(median, rel=1e-15) and q[1, 3] == 1e20


def test_zeros_and_sparsity_on_each_layers_own_scale_by_hand():
    assert statistics.zeros_per_sample(TOY, OFFSETS).tolist() == [[0.5, 0.25]]
    # a noise floor of 1.5e-3 on layer 0 makes 1e-3 a zero too
    assert statistics.zeros_per_sample(TOY, OFFSETS, floor=[1.5e-3, 0.0]).tolist() == [[0.75, 0.25]]
    # 1e-3 x each layer's own max: 2e-6 (only the zeros) and 1e17 (0 and 1e17)
    assert statistics.layer_sparsity_per_sample(TOY, OFFSETS, 1e-3).tolist() == [[0.5, 0.5]]
    # 1e-3 x the sample's max (1e17): every value of layer 0 counts as sparse, which says nothing about it
    assert statistics.sparsity_per_sample(TOY, OFFSETS, 1e-3).tolist() == [[1.0, 0.5]]


def test_energy_shares_within_and_across_layers_by_hand():
    squares = [exact(v) ** 2 for v in TOY[0]]
    layer0, layer1 = sum(squares[:4]), sum(squares[4:])
    compaction = statistics.layer_compaction_per_sample(TOY, OFFSETS, fraction=0.01)[0]
    assert compaction[0] == pytest.approx(float(squares[2] / layer0), rel=1e-14)        # 0.8
    assert compaction[1] == pytest.approx(float(squares[4] / layer1), rel=1e-14)
    energy = statistics.energy_per_layer(TOY, OFFSETS)[0]
    assert energy[0] == pytest.approx(float(layer0 / (layer0 + layer1)), rel=1e-12)   # about 4.95e-46
    assert energy[0] > 0 and energy[1] == pytest.approx(1.0, rel=1e-15)


def test_a_summary_gives_the_same_statistics_however_the_samples_are_chunked():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((23, 30)) * np.logspace(-3, 20, 30)
    values[rng.random(values.shape) < 0.3] = 0.0
    offsets = [0, 7, 7, 20, 30]                        # an empty layer too
    results = []
    for size in (23, 5, 1):
        s = statistics.Summary(30, offsets, floor=[0.0, 0.0, 1e-2, 0.0])
        for start in range(0, 23, size):
            s.add(values[start:start + size])
        results.append(s.result())
    for name in statistics.PER_LAYER:
        assert all(np.array_equal(results[0][name], r[name]) for r in results[1:]), name
    assert results[0]["magnitude_quantiles"].shape == (4, len(statistics.QUANTILES))
    assert results[0]["zeros_per_layer"][1] == 0.0         # the empty layer


def summary_of(values, offsets, names, model="toy", series=("activations", "standard")):
    """A summary as nsp summarize writes it, of the same values for each series (the second scaled)."""
    out = {"model": model, "layers": names, "samples": len(values), "sparsity_threshold": 1e-3,
           "series": list(series)}
    for i, name in enumerate(series):
        s = statistics.Summary(values.shape[1], offsets)
        s.add(values * 10.0 ** (6 * i))
        r = s.result()
        out[name] = {"compaction_k": r["ks"].tolist(), "compaction_share": r["compaction"].tolist(),
                     "coefficients": values.shape[1], "quantiles": list(statistics.QUANTILES),
                     **{k: r[k].tolist() for k in statistics.PER_LAYER}}
    return out


@pytest.fixture
def deep_summary():
    """A summary of 100 layers whose scale grows by 1e20 from the input to the last."""
    rng = np.random.default_rng(0)
    offsets = np.arange(0, 1001, 10)
    values = rng.standard_normal((12, 1000)) * np.repeat(np.logspace(0, 20, 100), 10)
    return summary_of(values, offsets, [f"layer{i}" for i in range(100)])


def readable(fig):
    """Size in inches and the smallest font of the visible text of a figure (after drawing it)."""
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    return tuple(fig.get_size_inches()), min(sizes)


@pytest.mark.parametrize("kind", ["compaction", "magnitude", "energy", "sparsity"])
def test_every_summary_figure_fits_a_page_with_readable_text(deep_summary, kind):
    kind = FIGURES[kind]
    inputs = [deep_summary, dict(deep_summary, model="other")] if kind.inputs == "summaries" else deep_summary
    (width, height), smallest = readable(kind.draw(inputs))
    assert width <= 7.3 and height <= 9.5 and smallest >= 7


def test_the_magnitude_caption_states_the_growth_the_statistics_hold(deep_summary):
    caption = paper_figures._magnitude_caption([deep_summary])
    first, last, top, where = paper_figures.growth(deep_summary, "standard")
    assert last / first == pytest.approx(1e20, rel=0.5)          # the scale the toy was made with
    assert f"standard from {paper_figures.number(first)} to {paper_figures.number(last)}" in caption
    assert f"(largest {paper_figures.number(top)}, {where})" in caption and "12 samples" in caption


def test_the_energy_and_sparsity_captions_quote_the_statistics(deep_summary):
    energy = paper_figures._energy_caption(deep_summary)
    hi, where_hi, lo, where_lo = paper_figures.extremes(deep_summary, "activations", "energy_per_layer")
    assert where_hi == "layer99" and where_lo == "layer0"
    assert f"- activations: {paper_figures.number(hi)} (layer99) to {paper_figures.number(lo)} (layer0)" in energy
    sparsity = paper_figures._sparsity_caption(deep_summary)
    means = [np.mean(deep_summary["standard"][k]) for k in ("zeros_per_layer", "layer_sparsity",
                                                           "sparsity_per_layer")]
    assert "- standard: " + ", ".join(map(paper_figures.number, means)) in sparsity


def test_the_figures_stage_writes_the_caption_beside_the_figure(tmp_path, deep_summary):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(deep_summary))
    out = tmp_path / "paper" / "compaction.pdf"
    assert cli.main(["figures", "--quiet", "--kind", "compaction", "--summaries", str(path), "--out", str(out)]) == 0
    caption = (tmp_path / "paper" / "compaction.caption.md").read_text()
    k, share = paper_figures.compaction_at(deep_summary["standard"])
    assert caption.startswith("**Energy compaction.**") and f"standard {paper_figures.number(share)} (k = {k})" in caption
    assert sorted(p.name for p in out.parent.iterdir()) == ["compaction.caption.md", "compaction.pdf",
                                                             "compaction.png"]


def test_class_means_are_scaled_per_layer():
    from nsp.plotting import paper
    means = np.array([[1e-3, -2e-3, 1e19], [0.0, 1e-3, -1e20]])
    scaled = paper.per_layer_scaled(means, [0, 2, 3])
    assert scaled.tolist() == [[0.5, 1.0, 0.1], [0.0, 0.5, 1.0]]


def bias_free_net():
    """Two convolutions without bias (they add nothing: exact sem coefficients 0), a max pool, and a linear
    layer whose biases (0.1 to 0.5) are its exact coefficients."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.ReLU(), nn.Conv2d(4, 4, 3, bias=False), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(16, 5)).eval()
    with torch.no_grad():
        net[5].bias.copy_(torch.tensor([0.1, -0.2, 0.3, -0.4, 0.5]))
    return net


def test_the_sem_noise_floor_separates_rounding_from_what_a_layer_adds():
    net, x = bias_free_net(), torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x[:1]))
    values = nsp.record(net, x, "children").values()
    sem = nsp.SemTransform().fit(core)
    c, floor = sem.transform(values), sem.noise_floor(values)
    assert floor.shape == (6, core.n_layers) and (floor[:, 0] == 0).all()
    assert np.array_equal(sem.noise_floor(values, spectrum=c), floor)
    assert np.array_equal(sem.noise_floor(values[2], spectrum=c[2]), floor[2])
    layer = {name: slice(core.offsets[i], core.offsets[i + 1]) for i, name in enumerate(core.names)}
    for i, name in enumerate(core.names):
        magnitude = np.abs(c[:, layer[name]])
        if name in ("0", "2"):                      # bias-free convolutions: rounding, below the floor, not 0
            assert (magnitude <= floor[:, i:i + 1]).all() and (magnitude > 0).any() and floor[:, i].max() < 1e-5
        if name == "5":                             # the biases, far above it
            assert (magnitude > floor[:, i:i + 1]).all()
            assert np.abs(c[:, layer[name]] - [0.1, -0.2, 0.3, -0.4, 0.5]).max() < floor[:, i].max()
    # statistics: below the floor counts as zero, above it does not
    summary = statistics.Summary(c.shape[1], core.offsets)
    summary.add(c, floor=floor)
    zeros = dict(zip(core.names, summary.result()["zeros_per_layer"]))
    exact = dict(zip(core.names, statistics.zeros_per_sample(c, core.offsets).mean(axis=0)))
    assert zeros["0"] == zeros["2"] == 1.0 and exact["0"] < 1.0 and exact["2"] < 1.0
    assert zeros["5"] == exact["5"] == 0.0 and zeros["input"] == exact["input"]
    assert summary.floored


def test_the_noise_floor_is_stored_with_the_spectra(tmp_path):
    net, x = bias_free_net(), torch.randn(3, 1, 8, 8)
    acts = nsp.Activations(net, x[:1])
    values = nsp.record(net, x, "children").values()
    sem = nsp.SemTransform().fit(nsp.GraphCore.from_activations(acts))
    floor = sem.noise_floor(values)
    path = tmp_path / "s.h5"
    with storage.SignalWriter(path, "spectra", acts.table, values.shape[1], transform_type="sem",
                              noise_floor=True) as writer:
        with pytest.raises(InputError, match=r"noise_floor: give one row of 7 layers per sample with every append"):
            writer.append(sem.transform(values))
        writer.append(sem.transform(values), noise_floor=floor)
    assert np.array_equal(storage.read_signals(path).noise_floor, floor)
    assert np.array_equal(storage.read_signals(path, samples=slice(1, 2)).noise_floor, floor[1:2])
    with storage.open_signals(path) as batch:
        assert np.array_equal(batch.noise_floor, floor)
    with storage.SignalWriter(tmp_path / "t.h5", "spectra", acts.table, values.shape[1]) as writer:
        with pytest.raises(InputError, match="noise_floor: this file was opened without it"):
            writer.append(values, noise_floor=floor)
        writer.append(values)
    assert storage.read_signals(tmp_path / "t.h5").noise_floor is None


def test_class_spread_by_hand():
    # layer 0: classes (1, 3) and (3, 1): std 1 at each node, mean magnitude 2 -> 0.5; layer 1: equal classes -> 0
    means = np.array([[1.0, 3.0, 5.0], [3.0, 1.0, 5.0]])
    assert statistics.class_spread(means, [0, 2, 3]).tolist() == [0.5, 0.0]
    assert statistics.class_spread(np.zeros((2, 3)), [0, 3]).tolist() == [0.0]


def test_trained_and_untrained_models_of_one_network_are_compared(deep_summary):
    trained = dict(deep_summary, model="mlp", training={"epochs": 8, "test_accuracy": 0.925})
    untrained = dict(deep_summary, model="mlp_untrained", training={"epochs": 0, "test_accuracy": 0.1})
    other = dict(deep_summary, model="cnn", layers=["x"] * 100, training={"epochs": 0})   # another network
    given = dict(deep_summary, model="given")                                               # not trained here
    groups = paper_figures.training_groups([trained, other, untrained, given])
    assert list(groups) == ["mlp_untrained vs mlp"] and [m["model"] for m in groups["mlp_untrained vs mlp"]] == \
        ["mlp_untrained", "mlp"]
    caption = paper_figures._training_caption([trained, untrained])
    top = paper_figures.number(np.asarray(trained["standard"]["magnitude_quantiles"])[-1, -1])
    zeros = paper_figures.number(np.mean(trained["standard"]["zeros_per_layer"]))
    assert f"- mlp: 8 epochs, test accuracy 0.925: activations" in caption and f"standard {top}, {zeros}" in caption
    (width, height), smallest = readable(FIGURES["training"].draw([trained, untrained]))
    assert width <= 7.3 and height <= 9.5 and smallest >= 7
    assert "No two models" in paper_figures._training_caption([trained, other])


def test_sample_pages_draw_values_below_the_noise_floor_as_zero():
    from nsp.plotting import pages
    from nsp.tracing.table import LayerTable
    table = LayerTable.build(["input", "conv"], ["input", "conv"], ["", ""], ["", ""], [(2,), (3,)], [[], [0]])
    values = np.array([[1e-7, 2.0, 3e-7, -0.5, -2e-7]])
    layers = pages.SampleLayers(values, 0, table, floor=[0.0, 4e-7])
    assert layers[0].tolist() == [1e-7, 2.0] and layers[1].tolist() == [0.0, -0.5, 0.0]
    assert pages.SampleLayers(values, 0, table)[1].tolist() == [3e-7, -0.5, -2e-7]


def causes_record(layers, transform, shares, logit, errors=None, skipped=None):
    """A causes record as nsp causes writes it: ``shares`` (samples, layers) of the predicted logits."""
    shares = np.asarray(shares, dtype=np.float64)
    predicted = [i % 2 for i in range(len(shares))]
    out = {"transform": transform, "samples": len(shares), "nodes": 100,
           "reconstruction": {"skipped": skipped} if skipped else {
               "method": "omp", "sparsity": 5, "fractions": [0.1, 0.5], "errors": [[e] for e in errors],
               "mean_error": list(errors), "warnings": []}}
    if transform != "laplacian":
        out["contributions"] = {
            "layers": layers, "predicted": predicted, "labels": None, "shares": shares.tolist(), "logit": logit,
            "mean": shares.mean(axis=0).tolist(), "completeness_error": 1e-16,
            "by_class": {str(c): shares[np.array(predicted) == c].mean(axis=0).tolist() for c in (0, 1)}}
    return out


def test_the_causes_figures_fit_a_page_and_their_captions_quote_the_records():
    names = [f"layer{i}" for i in range(40)]
    shares = np.zeros((4, 40))
    shares[:, 0], shares[:, 7], shares[:, 39] = [2.0, 3.0, 1.0, 2.0], -1.0, 1e6 * np.array([1, -1, 1, -1])
    summaries = []
    for m in range(7):                                      # the default run's seven models
        causes = {"sem": causes_record(names, "sem", shares, [2.0, 2.0, 2.0, 2.0], errors=[1.2, 0.9]),
                  "laplacian": causes_record(names, "laplacian", shares, [2.0] * 4,
                                             skipped="a graph of 50,000 neurons (causes.max_nodes is 20,000)")}
        summaries.append({"model": f"model{m}", "series": ["activations", "sem", "laplacian"], "causes": causes})
    for kind in ("contributions", "reconstruction"):
        (width, height), smallest = readable(FIGURES[kind].draw(summaries))
        assert width <= 7.3 and height <= 9.5 and smallest >= 7
    caption = FIGURES["contributions"].caption(summaries)
    # mean shares over the mean |logit| (2): layer0 2.0 / 2 = 1, layer7 -1 / 2 = -0.5
    assert "- model0: sem (4 samples): layer0 1, layer7 -0.5, error 1e-16" in caption
    caption = FIGURES["reconstruction"].caption(summaries)
    assert ("- model3 at 50% observed: sem 0.9 (omp, 5 coefficients, 1 samples); laplacian skipped (a graph of "
            "50,000 neurons (causes.max_nodes is 20,000))") in caption
