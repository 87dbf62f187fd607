"""The built-in paper figures: what each draws from the summaries or class means, and its caption.

Each kind is a :class:`nsp.pipeline.figures.FigureKind` in :data:`nsp.pipeline.figures.FIGURES`. Its caption
(``<figure>.caption.md`` beside the PDF) says what is plotted, on which models and how many samples, and
the numbers that state the finding, computed here from the same statistics the figure draws; a number in
a caption is the statistic rounded to three significant digits (:func:`number`).

- ``compaction``: share of the energy in the k largest values, one panel per model.
- ``magnitude``: the largest and the median |value| of each layer by depth, one panel per model (log axis:
  the growth of the standard spectrum with depth is shown, not hidden).
- ``energy_<model>``: per layer, the share of the sample's energy (log axis) and the share of the layer's
  own energy in its largest 1% of values.
- ``sparsity_<model>``: per layer, the share of zeros, of values below the threshold times the layer's own
  largest, and times the sample's largest.
- ``training``: models of one network that differ only in their training (``epochs: 0`` for untrained),
  the largest |value| and the share of zeros per layer.
- ``class_means_<model>_<series>``: the class means, each layer scaled to its own largest |mean|, and how
  much the classes differ in each layer.
"""

from __future__ import annotations

import numpy as np

from nsp.pipeline.figures import FigureKind, series_of

#: the share of a layer's values (or of all values, for compaction) the captions quote
TOP = 0.01


def number(value: float) -> str:
    """A statistic as a caption writes it: three significant digits (``0.5``, ``0.123``, ``9.02e+19``)."""
    return f"{float(value):.3g}"


def _per_layer(summary: dict, key: str) -> dict:
    return {name: np.array(summary[name][key]) for name in series_of(summary) if key in summary[name]}


def _samples(summaries: list) -> str:
    counts = sorted({int(s["samples"]) for s in summaries})
    return f"{counts[0]} samples" if len(counts) == 1 else f"{counts[0]} to {counts[-1]} samples"


# --- compaction -----------------------------------------------------------------------------------

def _compaction(summaries: list):
    from nsp.plotting import paper
    panels = {s["model"]: {name: (np.array(s[name]["compaction_k"]), np.array(s[name]["compaction_share"]))
                           for name in series_of(s)} for s in summaries}
    return paper.compaction_grid(panels, "Energy compaction: share of energy in the k largest values")


def compaction_at(stats: dict, fraction: float = TOP) -> tuple[int, float]:
    """(k, share) of a series' compaction curve at the largest k of its grid that is at most ``fraction`` of
    its values (at least the first k)."""
    ks, share = stats["compaction_k"], stats["compaction_share"]
    i = max([0] + [j for j, k in enumerate(ks) if k <= fraction * stats["coefficients"]])
    return int(ks[i]), float(share[i])


def _compaction_caption(summaries: list) -> str:
    lines = [f"**Energy compaction.** For each model ({_samples(summaries)} each), the mean share of a "
             f"sample's energy (sum of squares) held by its k largest-magnitude values, against k (log axis), "
             f"for the activations and each transform's spectrum. Share kept by about {TOP:.0%} of the values:", ""]
    for s in summaries:
        parts = [f"{name} {number(compaction_at(s[name])[1])} (k = {compaction_at(s[name])[0]})"
                 for name in series_of(s)]
        lines.append(f"- {s['model']}: " + ", ".join(parts))
    return "\n".join(lines)


# --- magnitude by depth ---------------------------------------------------------------------------

def _magnitude(summaries: list):
    from nsp.plotting import paper
    panels = {s["model"]: (s["layers"], _per_layer(s, "magnitude_quantiles")) for s in summaries}
    return paper.magnitude_grid({m: p for m, p in panels.items() if p[1]}, quantiles(summaries),
                                "Magnitude by depth: largest and median |value| per layer")


def quantiles(summaries: list) -> list:
    """The quantiles of the summaries' magnitude profiles."""
    from nsp.statistics import QUANTILES
    return next((s[n]["quantiles"] for s in summaries for n in series_of(s) if "quantiles" in s[n]),
                list(QUANTILES))


def growth(summary: dict, name: str) -> tuple:
    """(first layer's largest |value|, last layer's, the largest of all, the layer holding it): the means
    over samples of each layer's largest |value| of one series."""
    top = np.asarray(summary[name]["magnitude_quantiles"])[:, -1]
    i = int(np.argmax(top))
    return float(top[0]), float(top[-1]), float(top[i]), summary["layers"][i]


def _magnitude_caption(summaries: list) -> str:
    lines = [f"**Magnitude by depth.** For each model ({_samples(summaries)} each), the largest |value| "
             f"(solid) and the median |value| (dashed) in each layer, means over samples, on a log axis, layers "
             f"in order from the input (0). Largest |value| at the input, at the last layer, and overall:", ""]
    for s in summaries:
        parts = []
        for name in series_of(s):
            if "magnitude_quantiles" in s[name]:
                first, last, top, where = growth(s, name)
                parts.append(f"{name} from {number(first)} to {number(last)} (largest {number(top)}, {where})")
        lines.append(f"- {s['model']}: " + "; ".join(parts))
    return "\n".join(lines)


# --- energy and sparsity per layer ----------------------------------------------------------------

def _profiles(summary: dict, panels: list, title: str):
    """The layer profiles of ``panels`` ((key, heading, axis label, log)) that the summary has."""
    from nsp.plotting import paper
    drawn = [(heading, label, _per_layer(summary, key), log) for key, heading, label, log in panels
             if _per_layer(summary, key)]
    return paper.layer_profiles(drawn, summary["layers"], f"{title}: {summary['model']}")


def _energy(summary: dict):
    return _profiles(summary, [("energy_per_layer", "share of the sample's energy", "share (log axis)", True),
                               ("layer_compaction", "within each layer", "share of its energy in its largest 1%",
                                False)], "Energy per layer")


def _largest_and_smallest(values, names) -> tuple:
    """(largest value, its layer, smallest non-zero value, its layer) of one value per layer."""
    v = np.asarray(values, dtype=np.float64)
    hi = int(np.argmax(v))
    positive = np.flatnonzero(v > 0)
    lo = int(positive[np.argmin(v[positive])]) if positive.size else hi
    return float(v[hi]), names[hi], float(v[lo]), names[lo]


def extremes(summary: dict, name: str, key: str) -> tuple:
    """(largest value, its layer, smallest non-zero value, its layer) of a per-layer statistic."""
    return _largest_and_smallest(summary[name][key], summary["layers"])


def _energy_caption(summary: dict) -> str:
    lines = [f"**Energy per layer, {summary['model']}** ({summary['samples']} samples). Left: the mean share of "
             f"a sample's energy in each layer (log axis: shares below 1e-3 stay visible). Right: the share of "
             f"each layer's own energy held by its largest 1% of values. Largest and smallest non-zero share:", ""]
    for name in series_of(summary):
        if "energy_per_layer" in summary[name]:
            hi, where_hi, lo, where_lo = extremes(summary, name, "energy_per_layer")
            lines.append(f"- {name}: {number(hi)} ({where_hi}) to {number(lo)} ({where_lo})")
    return "\n".join(lines)


def _sparsity(summary: dict):
    t = summary["sparsity_threshold"]
    return _profiles(summary, [("zeros_per_layer", "zeros", "share of values that are 0 (*)", False),
                               ("layer_sparsity", "on the layer's own scale", f"share <= {t:g} x layer's max",
                                False),
                               ("sparsity_per_layer", "on the sample's scale", f"share <= {t:g} x sample's max",
                                False)], "Sparsity per layer (* at most the noise floor, where known)")


def mean_over_layers(summary: dict, name: str, key: str) -> float:
    """The mean over layers of a per-layer statistic (each layer counts once)."""
    return float(np.mean(summary[name][key]))


def _sparsity_caption(summary: dict) -> str:
    t = summary["sparsity_threshold"]
    lines = [f"**Sparsity per layer, {summary['model']}** ({summary['samples']} samples). Left: the share of "
             f"each layer's values that are zero. Middle: the share at most {t:g} times the largest |value| of "
             f"the same layer and sample. Right: at most {t:g} times the sample's largest |value| (dominated by "
             f"the layers of largest magnitude). Means over layers (zeros, own scale, sample's scale):", ""]
    floored = []
    for name in series_of(summary):
        if "zeros_per_layer" in summary[name]:
            values = [mean_over_layers(summary, name, key) for key in
                      ("zeros_per_layer", "layer_sparsity", "sparsity_per_layer")]
            lines.append(f"- {name}: " + ", ".join(map(number, values)))
            floored += [name] if summary[name].get("noise_floor") else []
    if floored:
        lines += ["", f"For {', '.join(floored)}, a value at or below its noise floor counts as zero: the bound of "
                      f"the float32 rounding in the network's own arithmetic, per sample and layer (a layer that "
                      f"adds nothing, such as a convolution without bias, has coefficients of about 1e-7 instead "
                      f"of 0)."]
    return "\n".join(lines)


# --- trained against untrained --------------------------------------------------------------------

def training_groups(summaries: list) -> dict:
    """Models that differ only in their training: trained by the pipeline (their summary has training
    metrics), with the same layers and node count, for at least two numbers of epochs. ``{"a vs b": [their
    summaries, from the fewest epochs to the most]}``, in the order the models come."""
    groups = {}
    for s in summaries:
        if isinstance(s.get("training"), dict) and isinstance(s["training"].get("epochs"), int):
            groups.setdefault((tuple(s["layers"]), s["activations"]["coefficients"]), []).append(s)
    out = {}
    for members in groups.values():
        members = sorted(members, key=lambda s: s["training"]["epochs"])
        if len({m["training"]["epochs"] for m in members}) >= 2:
            out[" vs ".join(m["model"] for m in members)] = members
    return out


def _state(summary: dict, accuracy: bool = True) -> str:
    """A model's training state, as the legend (``accuracy=False``) and the caption name it."""
    value = summary["training"].get("test_accuracy")
    shown = f", test accuracy {number(value)}" if accuracy and isinstance(value, (int, float)) else ""
    return f"{summary['model']}: {summary['training']['epochs']} epochs{shown}"


def _last_and_zeros(summary: dict, name: str) -> tuple:
    """(largest |value| per layer, share of zeros per layer) of one series."""
    return np.asarray(summary[name]["magnitude_quantiles"])[:, -1], np.asarray(summary[name]["zeros_per_layer"])


def _training(summaries: list):
    from nsp.plotting import paper
    groups = {name: (members[0]["layers"],
                     {_state(m, accuracy=False): {s: _last_and_zeros(m, s) for s in series_of(m) if "magnitude_quantiles" in m[s]}
                      for m in members})
              for name, members in training_groups(summaries).items()}
    return paper.training_grid(groups, "Trained against untrained: largest |value| and zeros per layer")


def _training_caption(summaries: list) -> str:
    groups = training_groups(summaries)
    if not groups:
        return ("**Trained against untrained.** No two models of the run differ only in their training (the "
                "same network and dataset, another number of epochs); add one with `epochs: 0` to compare.")
    lines = ["**Trained against untrained.** Models of the same network that differ only in their training. "
             "Left: the largest |value| of each layer by depth (log axis); right: the share of zeros per layer "
             "(at most the noise floor, where known); the most trained solid, the others dashed. For each model, "
             "per series: the largest |value| at the last layer, and the share of zeros (mean over layers):", ""]
    for members in groups.values():
        for m in members:
            parts = [f"{s} {number(_last_and_zeros(m, s)[0][-1])}, {number(_last_and_zeros(m, s)[1].mean())}"
                     for s in series_of(m) if "magnitude_quantiles" in m[s]]
            lines.append(f"- {_state(m)}: " + "; ".join(parts))
    return "\n".join(lines)


# --- class means ----------------------------------------------------------------------------------

def class_means_layout(means) -> tuple:
    """(offsets, layer names) of a class-means file's columns (one block for a partial Laplacian basis)."""
    offsets, names = means.stored_table.offsets, means.stored_table.names
    if means.values.shape[1] != offsets[-1]:
        return [0, means.values.shape[1]], ["coefficients by ascending eigenvalue"]
    return offsets, names


def _class_means(means, model: str):
    from nsp.plotting import paper
    offsets, names = class_means_layout(means)
    return paper.class_means_figure(means.sample_ids, means.values, offsets, names,
                                    f"Mean |{means.transform_type or 'activations'}| per class: {model}")


def layer_scales(means) -> tuple:
    """(smallest non-zero, its layer, largest, its layer) of each layer's largest |class mean|."""
    offsets, names = class_means_layout(means)
    tops = [np.abs(means.values[:, a:b]).max() if b > a and len(means.values) else 0.0
            for a, b in zip(offsets[:-1], offsets[1:])]
    hi, where_hi, lo, where_lo = _largest_and_smallest(tops, names)
    return lo, where_lo, hi, where_hi


def spread_extremes(means) -> tuple:
    """(largest class spread, its layer, smallest, its layer) (:func:`nsp.statistics.class_spread`)."""
    from nsp.statistics import class_spread
    offsets, names = class_means_layout(means)
    spread = class_spread(means.values, offsets)
    hi, lo = int(np.argmax(spread)), int(np.argmin(spread))
    return float(spread[hi]), names[hi], float(spread[lo]), names[lo]


def _class_means_caption(means, model: str) -> str:
    series = means.transform_type or "activations"
    if not len(means.sample_ids):
        return f"**Class means of {series}, {model}.** The dataset has no labels: no class means."
    lo, where_lo, hi, where_hi = layer_scales(means)
    most, where_most, least, where_least = spread_extremes(means)
    return (f"**Class means of {series}, {model}.** Top: the magnitude of the mean of each of "
            f"{len(means.sample_ids)} classes (rows) at every node (columns, layers marked), each layer divided "
            f"by its own largest |mean| over the classes, so that every layer's pattern is seen whatever its "
            f"scale. Those largest |means| range from {number(lo)} ({where_lo}) to {number(hi)} ({where_hi}). "
            f"Bottom: how much the classes differ in each layer (the standard deviation of the class means, "
            f"averaged over the layer's nodes, over their mean magnitude): most in {where_most} "
            f"({number(most)}), least in {where_least} ({number(least)}).")


COMPACTION = FigureKind("compaction", _compaction, "summaries", "energy compaction of every model",
                        _compaction_caption)
MAGNITUDE = FigureKind("magnitude", _magnitude, "summaries", "largest and median |value| per layer by depth, of "
                       "every model", _magnitude_caption)
ENERGY = FigureKind("energy", _energy, "summary", "energy per layer of one model", _energy_caption)
SPARSITY = FigureKind("sparsity", _sparsity, "summary", "zeros and sparsity per layer of one model",
                      _sparsity_caption)
TRAINING = FigureKind("training", _training, "summaries", "trained against untrained models of one network",
                      _training_caption)
CLASS_MEANS = FigureKind("class_means", _class_means, "class_means", "the class means of one series of one model",
                         _class_means_caption)
