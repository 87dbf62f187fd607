"""Paper figures of many samples: compaction, per-layer profiles, magnitudes by depth, class means, causes
(contributions to the predicted class, reconstruction from sampled neurons).

Every figure is sized for a journal page: :data:`DOUBLE` inches wide (a double column; :data:`SINGLE` for
one), at most :data:`MAX_HEIGHT` high, with text of at least 7 pt at that size, the colour-blind-safe
Okabe-Ito colours for series and cividis for images. Layers run down the y axis where each layer is a row,
so a network of a hundred layers still fits a page. Statistics that span many orders of magnitude (the
standard spectrum grows by twenty from the input to the logits) are drawn on log axes or per layer, each
layer on its own scale, never relative to one global maximum.
"""

from __future__ import annotations

from math import ceil
from typing import Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator

from nsp.plotting.figures import new_figure, style
from nsp.statistics import class_spread

#: a double-column figure's width, inches
DOUBLE = 7.2
#: a single-column figure's width, inches
SINGLE = 3.5
#: the tallest figure, inches (a page less its caption)
MAX_HEIGHT = 9.5
#: the Okabe-Ito colours (distinguishable with every common colour-vision deficiency), in series order
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
#: text sizes (points) of the paper figures: never below 7 at print size
TEXT = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
        "legend.fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.2, "lines.markersize": 3.5,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6}
#: most layer names written along a layer axis (the others are ticks without a name)
MAX_LAYER_LABELS = 60


#: the built-in series keep their colour in every figure; others take the next ones, in order
FIXED = ("activations", "standard", "sem", "laplacian", "influence")


def colours(series: Sequence[str]) -> dict:
    """A colour and a marker for each series name: the built-in series always the same, others in order."""
    others = [name for name in series if name not in FIXED]
    index = {**{name: i for i, name in enumerate(FIXED)}, **{name: len(FIXED) + i for i, name in enumerate(others)}}
    return {name: (COLOURS[index[name] % len(COLOURS)], MARKERS[index[name] % len(MARKERS)]) for name in series}


def _page(width: float, height: float) -> Figure:
    return new_figure(figsize=(width, min(MAX_HEIGHT, height)), layout="constrained")


def _legend(fig: Figure, series: Sequence[str], marker: bool = True) -> None:
    colour = colours(series)
    handles = [Line2D([], [], color=colour[s][0], marker=colour[s][1] if marker else None, label=s)
               for s in series]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(series), 4), frameon=False)


def compaction_grid(panels: dict, title: str = "Energy compaction") -> Figure:
    """One compaction panel per model (``{model: {series: (ks, share)}}``), three to a row, series coloured
    alike; the legend lists every series."""
    series = list(dict.fromkeys(name for curves in panels.values() for name in curves))
    colour = colours(series)
    cols = max(1, min(3, len(panels)))
    rows = max(1, ceil(len(panels) / cols))
    with style(), _text():
        fig = _page(DOUBLE, 0.9 + 1.9 * rows)
        axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
        for ax, (model, curves) in zip(axes.flat, panels.items()):
            for name, (ks, share) in curves.items():
                ax.plot(ks, share, color=colour[name][0])
            ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            ax.set_title(model)
            ax.grid(True, which="major", linewidth=0.3)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("k largest coefficients")
        for ax in axes[:, 0]:
            ax.set_ylabel("share of energy")
        _legend(fig, series, marker=False)
        fig.suptitle(title)
    return fig


def layer_profiles(panels: Sequence[tuple], layer_names: Sequence[str], title: str) -> Figure:
    """Side-by-side panels of one statistic per layer each, layers down the y axis (the input at the top):
    ``panels`` holds ``(heading, axis label, {series: values per layer}, log)``; a log panel leaves out
    zeros (a statistic of 0 has no place on a log axis)."""
    series = list(dict.fromkeys(name for panel in panels for name in panel[2]))
    colour = colours(series)
    n = len(layer_names)
    y = np.arange(n)
    with style(), _text():
        fig = _page(DOUBLE, 1.3 + 0.13 * n)
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        for ax, (heading, label, values, log) in zip(axes, panels):
            for name, v in values.items():
                v = np.asarray(v, dtype=np.float64)
                shown = v > 0 if log else np.isfinite(v)
                ax.plot(v[shown], y[shown], color=colour[name][0], marker=colour[name][1], linewidth=0.8)
            if log:
                ax.set_xscale("log")
            ax.set_title(heading)
            ax.set_xlabel(label)
            ax.grid(True, which="major", linewidth=0.3)
        _layer_axis(axes[0], layer_names, "y")
        _legend(fig, series)
        fig.suptitle(title)
    return fig


def _layer_axis(ax, names: Sequence[str], axis: str) -> None:
    """Layer names along ``axis`` (at most :data:`MAX_LAYER_LABELS`, spread over the depth)."""
    n = len(names)
    step = max(1, ceil(n / MAX_LAYER_LABELS))
    ticks = np.arange(0, n, step)
    if axis == "y":
        ax.set_yticks(ticks, [names[i] for i in ticks])
        ax.set_ylim(n - 0.5, -0.5)
    else:
        ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90)
        ax.set_xlim(-0.5, n - 0.5)


def magnitude_grid(panels: dict, quantiles: Sequence[float], title: str) -> Figure:
    """|value| by depth, one panel per model (``{model: (layer names, {series: (layers, quantiles)
    array})}``): the largest magnitude per layer as a solid line, the median dashed, on a log axis, so that
    the growth of a spectrum with depth is seen next to the others."""
    series = list(dict.fromkeys(name for _, values in panels.values() for name in values))
    colour = colours(series)
    top, middle = list(quantiles).index(1.0), list(quantiles).index(0.5)
    cols = max(1, min(2, len(panels)))
    rows = max(1, ceil(len(panels) / cols))
    with style(), _text():
        fig = _page(DOUBLE, 0.9 + 2.3 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, (model, (names, values)) in zip(axes.flat, panels.items()):
            x = np.arange(len(names))
            for name, q in values.items():
                q = np.asarray(q, dtype=np.float64)
                for column, dash in ((top, "-"), (middle, "--")):
                    shown = q[:, column] > 0
                    ax.plot(x[shown], q[shown, column], dash, color=colour[name][0], linewidth=1.0)
            ax.set_yscale("log")
            ax.set_title(model)
            ax.set_xlabel("layer (input at 0)")
            ax.set_xlim(-0.5, len(names) - 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, which="major", linewidth=0.3)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel("|value| (max solid, median dashed)")
        _legend(fig, series, marker=False)
        fig.suptitle(title)
    return fig


#: line styles of the training states compared (the most trained solid, the least dashed)
STATES = ["--", ":", "-."]


def training_grid(groups: dict, title: str) -> Figure:
    """Trained against untrained: one row per network (``{name: (layer names, {label: {series: (largest
    |value| per layer, share of zeros per layer)}})}``, labels from the least trained to the most), the
    largest |value| by depth (log axis) and the share of zeros per layer; series by colour, training state
    by line style (the most trained solid)."""
    series = list(dict.fromkeys(s for _, states in groups.values() for state in states.values() for s in state))
    colour = colours(series)
    with style(), _text():
        fig = _page(DOUBLE, 1.1 + 2.3 * max(1, len(groups)))
        if not groups:
            fig.text(0.5, 0.5, "no two models differ only in their training: add a model of the same architecture\n"
                               "and dataset with another number of epochs (epochs: 0 for untrained)", ha="center",
                     va="center")
            fig.suptitle(title)
            return fig
        axes = fig.subplots(len(groups), 2, squeeze=False)
        handles = [Line2D([], [], color=colour[s][0], label=s) for s in series]
        for row, (name, (names, states)) in zip(axes, groups.items()):
            styles = dict(zip(states, [*STATES[:len(states) - 1], "-"]))
            x = np.arange(len(names))
            for label, state in states.items():
                for s, (top, zeros) in state.items():
                    top = np.asarray(top, dtype=np.float64)
                    row[0].plot(x[top > 0], top[top > 0], styles[label], color=colour[s][0], linewidth=1.0)
                    row[1].plot(x, zeros, styles[label], color=colour[s][0], linewidth=1.0)
            row[0].set_yscale("log")
            row[0].set_ylabel("largest |value|")
            row[1].set_ylabel("share of zeros")
            row[1].set_ylim(-0.02, 1.02)
            for ax in row:
                ax.set_title(name)
                ax.set_xlabel("layer (input at 0)")
                ax.set_xlim(-0.5, len(names) - 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.grid(True, which="major", linewidth=0.3)
            handles += [Line2D([], [], color="0.3", linestyle=styles[label], label=label) for label in states
                        if label not in [h.get_label() for h in handles]]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False)
        fig.suptitle(title)
    return fig


def _model_grid(count: int, row_height: float, cols: int = 3):
    cols = max(1, min(cols, count))
    rows = max(1, ceil(count / cols))
    fig = _page(DOUBLE, 1.0 + row_height * rows)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _bottom_labels(axes, count: int, label: str) -> None:
    """Hide the grid's unused panels and label the x axis of the lowest panel of each column."""
    flat, cols = axes.flat, axes.shape[1]
    for i, ax in enumerate(flat):
        ax.set_visible(i < count)
        if i < count and i + cols >= count:
            ax.set_xlabel(label)


def contributions_grid(panels: dict, title: str) -> Figure:
    """Per-layer shares of the predicted class's logit, one panel per model (``{model: (layer names,
    {series: (mean over samples, lowest class mean, highest class mean)})}``, each as a fraction of the mean
    |logit|): layers down the y axis (the input at the top), the mean as a line with markers, the range of
    the class means shaded, on a symmetric log axis (the standard shares reach millions of logits)."""
    series = list(dict.fromkeys(name for _, values in panels.values() for name in values))
    colour = colours(series)
    depth = max((len(names) for names, _ in panels.values()), default=1)
    with style(), _text():
        fig, axes = _model_grid(len(panels), min(3.4, max(1.8, 0.5 + 0.09 * depth)))
        for ax, (model, (names, values)) in zip(axes.flat, panels.items()):
            y = np.arange(len(names))
            for name, (mean, low, high) in values.items():
                ax.fill_betweenx(y, low, high, color=colour[name][0], alpha=0.2, linewidth=0)
                ax.plot(mean, y, color=colour[name][0], marker=colour[name][1], linewidth=0.8)
            ax.axvline(0, color="0.5", linewidth=0.5)
            _symlog_axis(ax, max(float(np.max(np.abs(v))) for value in values.values() for v in value))
            ax.set_title(model)
            if len(names) <= 20:
                _layer_axis(ax, names, "y")
            else:
                ax.set_ylim(len(names) - 0.5, -0.5)
                ax.set_ylabel("layer (input at 0)")
            ax.grid(True, which="major", linewidth=0.3)
        _bottom_labels(axes, len(panels), "share / mean |logit|")
        _legend(fig, series)
        fig.suptitle(title)
    return fig


def _symlog_axis(ax, largest: float, linthresh: float = 1e-2) -> None:
    """A symmetric log x axis with at most two powers of ten labelled on each side of 0."""
    ax.set_xscale("symlog", linthresh=linthresh)
    top = max(0, ceil(np.log10(max(largest, linthresh))))
    low = int(np.log10(linthresh))
    first = min(low + 1, top)                     # the threshold's own power would crowd the 0
    if top - first >= 6:                          # a wide span: small powers would crowd the 0 too
        first = int(round((first + top) / 2))
    powers = sorted({int(round(p)) for p in np.linspace(first, top, min(2, top - first + 1))})
    ticks = [-(10.0 ** p) for p in reversed(powers)] + [0.0] + [10.0 ** p for p in powers]
    labels = [f"$-10^{{{p}}}$" for p in reversed(powers)] + ["0"] + [f"$10^{{{p}}}$" for p in powers]
    ax.set_xticks(ticks, labels)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(-(10.0 ** top), 10.0 ** top)


def reconstruction_grid(panels: dict, title: str) -> Figure:
    """Relative reconstruction error against the fraction of neurons observed, one panel per model
    (``{model: ({series: (fractions, mean errors)}, note)}``, both axes log), with the error of guessing 0
    (1) dashed; ``note`` (what was skipped) is written in the panel."""
    series = list(dict.fromkeys(name for values, _ in panels.values() for name in values))
    colour = colours(series)
    with style(), _text():
        fig, axes = _model_grid(len(panels), 2.0)
        for ax, (model, (values, note)) in zip(axes.flat, panels.items()):
            for name, (fractions, errors) in values.items():
                ax.plot(fractions, errors, color=colour[name][0], marker=colour[name][1], linewidth=0.9)
            ax.axhline(1.0, color="0.4", linestyle="--", linewidth=0.7)
            ax.set_xscale("log")
            ax.set_yscale("log")
            fractions = sorted({float(f) for f, _ in values.values() for f in f})
            ax.set_xticks(fractions, [f"{f:.0%}" if f >= 0.01 else f"{f:.1%}" for f in fractions])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_title(model)
            if note:
                ax.text(0.03, 0.03, note, transform=ax.transAxes, fontsize=7, va="bottom", wrap=True)
            ax.grid(True, which="major", linewidth=0.3)
        _bottom_labels(axes, len(panels), "fraction of neurons observed")
        for ax in axes[:, 0]:
            ax.set_ylabel("relative error")
        handles = [Line2D([], [], color=colour[s][0], marker=colour[s][1], label=s) for s in series]
        handles.append(Line2D([], [], color="0.4", linestyle="--", label="guessing 0"))
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
        fig.suptitle(title)
    return fig


#: most columns of the class-means image: wider means are shown as the largest value of each of this many
#: runs of consecutive nodes (a peak is never sampled away)
MAX_IMAGE_COLUMNS = 4096
#: most layers marked (boundary and name) on the class-means image
MAX_LAYER_TICKS = 24


def per_layer_scaled(means, offsets) -> np.ndarray:
    """|means| (classes, nodes) with each layer divided by its own largest |mean| over every class (a layer
    of zeros stays 0): values in [0, 1]."""
    magnitude = np.abs(np.asarray(means, dtype=np.float64))
    offsets = np.asarray(offsets, dtype=np.int64)
    for start, stop in zip(offsets[:-1], offsets[1:]):
        block = magnitude[:, start:stop]
        top = block.max() if block.size else 0.0
        if top > 0:
            block /= top
    return magnitude


def _binned(magnitude: np.ndarray) -> np.ndarray:
    n = magnitude.shape[1]
    if n <= MAX_IMAGE_COLUMNS:
        return magnitude
    starts = np.linspace(0, n, MAX_IMAGE_COLUMNS + 1).astype(np.int64)[:-1]
    return np.maximum.reduceat(magnitude, starts, axis=1)


def class_means_figure(classes, means: np.ndarray, offsets, layer_names: Sequence[str],
                       title: str = "Mean spectrum per class") -> Figure:
    """|class mean| as an image, each layer scaled to its own largest |mean| (:func:`per_layer_scaled`):
    one row per class, nodes along x, layer boundaries marked; below it, how much the classes differ in each
    layer (:func:`nsp.statistics.class_spread`). No classes (a dataset without labels): a figure that says
    so."""
    with style(), _text():
        if len(classes) == 0:
            fig = _page(DOUBLE, 1.5)
            fig.text(0.5, 0.5, "no labels: no class means", ha="center", va="center")
            fig.suptitle(title)
            return fig
        image = _binned(per_layer_scaled(means, offsets))
        n = np.shape(means)[1]
        fig = _page(DOUBLE, 2.9 + 0.22 * len(classes))
        ax, low = fig.subplots(2, 1, sharex=True, height_ratios=[max(1.2, 0.22 * len(classes)), 1.0])
        low.stairs(class_spread(means, offsets), np.asarray(offsets) - 0.5, color=COLOURS[0], linewidth=1.0)
        low.set_ylabel("class spread")
        low.grid(True, axis="y", linewidth=0.3)
        im = ax.imshow(image, aspect="auto", cmap="cividis", norm=Normalize(0.0, 1.0), interpolation="none",
                       extent=(-0.5, n - 0.5, len(classes) - 0.5, -0.5), rasterized=True)
        ax.set_yticks(np.arange(len(classes)), [str(c) for c in classes])
        ax.set_ylabel("class")
        offsets = np.asarray(offsets)
        shown = np.arange(len(layer_names))
        if len(shown) > MAX_LAYER_TICKS:
            shown = np.unique(np.round(np.linspace(0, len(shown) - 1, MAX_LAYER_TICKS)).astype(np.int64))
            title = f"{title} ({len(shown)} of {len(layer_names)} layers marked)"
        for boundary in offsets[shown[shown > 0]]:
            ax.axvline(boundary - 0.5, color="white", linewidth=0.5)
            low.axvline(boundary - 0.5, color="0.8", linewidth=0.5)
        centres = (offsets[shown] + offsets[shown + 1]) / 2
        labels, last = [], -np.inf
        for i, centre in zip(shown, centres):      # a name only where it does not overlap the previous one
            labels.append(layer_names[i] if centre - last >= n / 40 else "")
            last = centre if labels[-1] else last
        low.set_xticks(centres, labels, rotation=90)
        low.set_xlim(-0.5, n - 0.5)
        ax.set_title(title)
        fig.colorbar(im, ax=[ax, low], label="|mean| / layer's largest |mean|", shrink=0.8)
    return fig


def _text():
    import matplotlib
    return matplotlib.rc_context(TEXT)
