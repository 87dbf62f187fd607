"""Figures: activation patterns and spectra page by page, and summary plots of many samples.

All drawing goes through a fixed style (bundled DejaVu fonts) on figures with
their own Agg canvas, never through pyplot, so importing this module leaves
matplotlib's backend alone; files are written without creation dates, so the
same data gives the same bytes in PDF and PNG.
"""

from __future__ import annotations

import textwrap
from contextlib import contextmanager
from math import ceil
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.transforms import Affine2D

from nsp.errors import InputError
from nsp.storage.files import atomic_output

SCALES = ("layerscale", "layernorm", "globalscale", "globalnorm")
STYLE = {
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "figure.titlesize": 11,
    "pdf.fonttype": 42, "svg.hashsalt": "nsp", "figure.dpi": 100, "savefig.dpi": 150,
    "image.interpolation": "nearest", "image.resample": False,
    "image.composite_image": False,      # each panel its own image in a PDF, never resampled into one
}
PDF_METADATA = {"Creator": "nsp", "Producer": "nsp (matplotlib)", "CreationDate": None, "ModDate": None}
PNG_METADATA = {"Software": None}
PANEL_INCHES = 1.9
MAX_COLUMNS = 4
#: most channels drawn per layer page (the first ones; the title says how many the layer has and which are
#: left out)
MAX_PANELS = 64
#: image pixels per inch of a panel in a PDF: each value is written as a block of whole pixels, so a viewer
#: that smooths images blurs only the edges of the blocks (panels of many values are written as they are)
PANEL_PPI = 96


@contextmanager
def style():
    with matplotlib.rc_context(STYLE):
        yield


def new_figure(**kwargs) -> Figure:
    """A figure on its own Agg canvas (``Figure`` keyword arguments); pyplot never sees it."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def colormap(name: str):
    """A matplotlib colormap by name; an unknown name is an error listing the accepted ones."""
    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise InputError(f"unknown colormap {name!r}; accepted: {', '.join(sorted(matplotlib.colormaps))}") from None


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise InputError(f"unknown scale {scale!r}; accepted: {', '.join(SCALES)}")
    return scale


def panels(layer: np.ndarray, limit: int | None = None) -> list[np.ndarray]:
    """The 2-D images a layer is drawn as: one per channel of (C, H, W); one for 2-D; one row for 1-D
    (only the first ``limit`` channels, converted, where given)."""
    x = np.asarray(layer)
    x = np.asarray(x[:limit] if limit is not None and x.ndim >= 3 else x, dtype=np.float64)
    if x.ndim == 0:
        return [x.reshape(1, 1)]
    if x.ndim == 1:
        return [x.reshape(1, -1)]
    if x.ndim == 2:
        return [x]
    return list(x.reshape(x.shape[0], -1, x.shape[-1]))


def limits(layers: Sequence[np.ndarray], scale: str, indices: Sequence[int] | None = None) -> list[tuple[float, float]]:
    """Colour limits of each layer's page under ``scale`` (of the layers ``indices`` only, where given; a
    global scale still spans every layer). Each layer is looked at once, one at a time, so ``layers`` may
    be a sequence that reads them when asked for."""
    check_scale(scale)
    indices = range(len(layers)) if indices is None else indices
    if scale.startswith("global"):
        return [_bounds([_range(layers[i]) for i in range(len(layers))], scale)] * len(indices)
    return [_bounds([_range(layers[i])], scale) for i in indices]


def _range(layer) -> tuple[float, float] | None:
    return (float(np.min(layer)), float(np.max(layer))) if np.size(layer) else None


def _bounds(ranges, scale: str) -> tuple[float, float]:
    ranges = [r for r in ranges if r is not None]
    lo = min((r[0] for r in ranges), default=0.0)
    hi = max((r[1] for r in ranges), default=0.0)
    if scale.endswith("norm"):
        hi = max(abs(lo), abs(hi))
        lo = -hi
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def pattern_figures(layers: Sequence[np.ndarray], names: Sequence[str], scale: str = "layerscale",
                    cmap: str = "viridis", note: str = "", indices: Sequence[int] | None = None) -> Iterator[Figure]:
    """One figure per layer (of the layers ``indices`` only, where given): channels in a grid of at most
    four columns, one horizontal colour bar.

    Pages grow with the number of channels (a 64-channel layer is 16 rows of
    four panels), so every channel keeps a readable size; layers with more
    than ``MAX_PANELS`` channels show the first ``MAX_PANELS`` and say which
    are left out. The panels are images placed on a fixed grid in one set of
    axes (one ``Axes`` per panel and a layout engine made the pages of a
    CIFAR network take a minute); a PDF holds each as an image of whole-pixel
    blocks (``PANEL_PPI``), not resampled to the page's resolution. Figures
    are made one at a time, and ``layers`` is indexed only for the layers
    drawn (and for a global scale's limits), so it may read them lazily.
    """
    cm = colormap(cmap)
    indices = list(range(len(layers)) if indices is None else indices)
    shared = limits(layers, scale, indices[:1])[0] if scale.startswith("global") and indices else None
    for index in indices:
        layer = np.asarray(layers[index])
        bounds = shared or limits([layer], scale)[0]
        channels = layer.shape[0] if layer.ndim >= 3 else 1
        images = panels(layer, MAX_PANELS)
        shown = ""
        if channels > len(images):
            left = channels - len(images)
            shown = (f"  (channels 0-{len(images) - 1} of {channels})\n{left} channels "
                     f"({len(images)}-{channels - 1}) not drawn: a page shows at most {MAX_PANELS}")
        vector = layer.ndim <= 1
        cols = 1 if vector else min(MAX_COLUMNS, len(images))
        rows = ceil(len(images) / cols)
        width = 8.0 if vector else max(4.0, PANEL_INCHES * cols + 0.4)
        wrapped = textwrap.fill(note, width=int(width * 11)) if note else ""
        title = f"Layer {index}: {names[index]}  {tuple(layer.shape)}{shown}" + (f"\n{wrapped}" if note else "")
        top = 0.2 + 0.19 * (title.count("\n") + 1)             # inches: the title's lines
        bottom = 0.62                                          # the colour bar and its label
        height = (2.2 if vector else PANEL_INCHES * rows + 1.3) + max(0.0, top - 0.6)
        with style():
            fig = new_figure(figsize=(width, height))
            grid = fig.add_axes((0.15 / width, bottom / height, (width - 0.3) / width, (height - top - bottom) / height))
            norm = Normalize(*bounds)
            for k, image in enumerate(images):
                im = _panel(grid, image, k, cols, rows, ((width - 0.3) / cols, (height - top - bottom) / rows),
                            cm, norm, fill=vector, label=len(images) > 1)
            grid.set_xlim(0, cols)
            grid.set_ylim(0, rows)
            grid.set_axis_off()
            fig.suptitle(title, y=1 - 0.12 / height, va="top")
            bar = fig.add_axes((0.1, 0.42 / height, 0.8, 0.1 / height))
            _colorbar(fig, bar, im, scale)
        yield fig


def _colorbar(fig, cax, mappable, label: str):
    """A horizontal colour bar whose colours are one image of the colormap's values in a PDF (matplotlib
    rasterises its own at the figure's size and keeps that buffer until the PDF closes: about 20 MB a page)."""
    bar = fig.colorbar(mappable, cax=cax, orientation="horizontal", label=label)
    bar.solids.remove()
    lo, hi = cax.get_xlim()
    n = mappable.cmap.N
    ramp = BlockImage(cax, (1, 1), cmap=mappable.cmap, norm=mappable.norm, interpolation="none",
                      extent=(lo, hi, 0, 1))
    ramp.set_data((lo + (np.arange(n) + 0.5) * (hi - lo) / n)[None, :])
    cax.add_image(ramp)
    return bar


class BlockImage(AxesImage):
    """An image whose data a vector backend (PDF) receives as blocks of ``blocks`` = (rows, columns) whole
    pixels per value, unresampled; raster backends resample it as any image. Its data stays the values."""

    def __init__(self, ax, blocks: tuple[int, int], **kwargs):
        super().__init__(ax, **kwargs)
        self.blocks = blocks

    def make_image(self, renderer, magnification=1.0, unsampled=False):
        im, x, y, trans = super().make_image(renderer, magnification, unsampled)
        ky, kx = self.blocks
        if unsampled and im is not None and ky * kx > 1:
            im = np.repeat(np.repeat(im, ky, axis=0), kx, axis=1)
            trans = Affine2D().scale(1 / kx, 1 / ky) + trans
        return im, x, y, trans


def _blocks(shape, width: float, height: float) -> tuple[int, int]:
    """Whole pixels per value, (rows, columns), for ``PANEL_PPI`` in a box of ``width`` x ``height`` inches
    (1 along an axis of one value, which no viewer smooths, or of at least that many values)."""
    return tuple(1 if n <= 1 else max(1, ceil(inches * PANEL_PPI / n)) for n, inches in zip(shape, (height, width)))


def _panel(grid, image: np.ndarray, k: int, cols: int, rows: int, cell: tuple[float, float], cmap, norm,
           fill: bool, label: bool):
    """Panel ``k`` in its cell of the grid (cells are one data unit, ``cell`` inches): the image, square
    pixels unless ``fill``, framed, titled ``channel k`` when ``label``."""
    row, col = divmod(k, cols)
    box_w, box_h = cell[0] - 0.1, cell[1] - 0.1 - (0.17 if label else 0.0)          # inches
    w, h = (box_w, box_h) if fill else _fit(image.shape, box_w, box_h)
    x0 = col + (0.05 + (box_w - w) / 2) / cell[0]
    y0 = rows - 1 - row + (0.05 + (box_h - h) / 2) / cell[1]
    x1, y1 = x0 + w / cell[0], y0 + h / cell[1]
    im = BlockImage(grid, _blocks(image.shape, w, h), cmap=cmap, norm=norm, interpolation="none",
                    extent=(x0, x1, y0, y1))
    im.set_data(image)
    grid.add_image(im)
    grid.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=0.8, edgecolor="black"))
    if label:
        grid.text((x0 + x1) / 2, y1 + 0.03 / cell[1], f"channel {k}", fontsize=7, ha="center", va="bottom")
    return im


def _fit(shape, width: float, height: float) -> tuple[float, float]:
    """The largest width x height of square pixels for an image of ``shape`` inside the box."""
    scale = min(width / shape[1], height / shape[0])
    return shape[1] * scale, shape[0] * scale


def eigenvalue_figure(eigenvalues: np.ndarray, coefficients: np.ndarray, title: str) -> Figure:
    """|coefficient| against its eigenvalue (Laplacian spectra)."""
    with style():
        fig = new_figure(figsize=(7, 3.6), layout="constrained")
        ax = fig.subplots()
        magnitude = np.abs(coefficients)
        positive = magnitude > 0
        ax.scatter(eigenvalues[positive], magnitude[positive], s=4, linewidths=0, color="#1f4e79")
        ax.set_yscale("log")
        ax.set_xlabel("eigenvalue λ of the Laplacian")
        ax.set_ylabel("|coefficient|")
        ax.set_title(title)
    return fig


def write_pdf(figures, path) -> int:
    """Write figures as the pages of one PDF (atomically, no dates); returns the page count."""
    count = 0
    with atomic_output(path) as tmp, style(), PdfPages(tmp, metadata=PDF_METADATA) as pdf:
        for fig in figures:
            pdf.savefig(fig)
            count += 1
    return count


def save_figure(fig: Figure, path, formats: Sequence[str] = ("pdf", "png")) -> list[Path]:
    """Save one figure as ``path`` plus each suffix in ``formats`` (``results/compaction`` ->
    ``results/compaction.pdf`` and ``.png``; a dot in the name stays: ``energy_vit.tiny.pdf``)."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_name(f"{path.name}.{fmt}")
        metadata = PDF_METADATA if fmt == "pdf" else PNG_METADATA if fmt == "png" else None
        with atomic_output(target) as tmp, style():
            fig.savefig(tmp, format=fmt, metadata=metadata)
        written.append(target)
    return written
