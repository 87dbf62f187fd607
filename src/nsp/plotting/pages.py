"""One sample drawn page by page: its activation pattern, or one of its spectra in the layer layout.

Arrays in, PDF out: ``layers`` is the sample cut into one array per layer, in the layer's shape
(:meth:`nsp.tracing.table.LayerTable.split`, or :class:`SampleLayers`, which reads each layer of a stored
sample only when it is drawn). :class:`nsp.Visualizer` draws its objects through these.

Which layers get a page: ``select``, a list of layer names or :mod:`fnmatch` patterns, or by default
every layer of a network of at most ``MAX_PAGES`` layers and otherwise ``MAX_PAGES`` of them spread over
the depth; a last page lists the layers left out.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from nsp.plotting import figures as plotting
from nsp.tracing.table import match_layers
from nsp.transforms import TRANSFORMS

#: layer pages drawn by default (a network with more layers gets this many, spread over its depth)
MAX_PAGES = 24


@dataclass(frozen=True)
class Selection:
    """The layers that get a page (``drawn``, indices in layer order) and those that do not."""

    drawn: tuple
    skipped: tuple
    names: tuple
    chosen: bool                       # by patterns (else the default)

    def summary(self) -> str:
        """One line for a log: which layers are drawn, and the ones left out by name."""
        total = len(self.names)
        if not self.skipped:
            return f"{total} layers drawn"
        how = "visualize.layers" if self.chosen else f"at most {MAX_PAGES} pages by default, spread over the depth"
        rest = ", ".join(f"{i} {self.names[i]}" for i in self.skipped)
        return f"{len(self.drawn)} of {total} layers drawn ({how}); not drawn: {rest}"


def select_layers(names: Sequence[str], select: Sequence[str] | None = None, *, what: str = "layers",
                  cap: int = MAX_PAGES) -> Selection:
    """The layers whose pages are drawn.

    ``select``: layer names or fnmatch patterns (``"layer1_*"``, ``"blocks_?_attn_qkv"``), each matching at
    least one layer; the layers any of them matches are drawn, in layer order. ``None``: every layer when
    there are at most ``cap``, else ``cap`` layers evenly spread from the first to the last. A pattern that
    matches no layer is a ValueError that starts with ``what`` and lists some layer names.
    """
    names = tuple(str(n) for n in names)
    if select is None:
        if len(names) <= cap:
            drawn = tuple(range(len(names)))
        else:
            drawn = tuple(int(i) for i in np.unique(np.round(np.linspace(0, len(names) - 1, cap)).astype(np.int64)))
    else:
        drawn = match_layers(names, select, what)
    kept = set(drawn)
    skipped = tuple(i for i in range(len(names)) if i not in kept)
    return Selection(drawn, skipped, names, select is not None)


class SampleLayers(Sequence):
    """Row ``row`` of a (samples, nodes) matrix cut into its layers (``table``: the LayerTable), each read
    when it is asked for: with the values of an open file (:func:`nsp.storage.signals.open_signals`) a
    page reads only its layer of the one sample. ``floor`` (one value per layer): values at or below it in
    magnitude are given as 0 (a noise floor, :meth:`nsp.SemTransform.noise_floor`)."""

    def __init__(self, values, row: int, table, floor=None):
        self.values, self.row, self.table = values, int(row), table
        self.offsets = np.asarray(table.offsets, dtype=np.int64)
        self.floor = None if floor is None else np.asarray(floor, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        layer = np.asarray(self.values[self.row, start:stop]).reshape(self.table[index].shape)
        if self.floor is not None:
            layer = np.where(np.abs(layer) <= self.floor[index], 0.0, layer)
        return layer


def _selection(names, select) -> Selection:
    return select if isinstance(select, Selection) else select_layers(names, select)


def pattern_pages(layers: Sequence[np.ndarray], names: Sequence[str], scale: str = "layerscale",
                  cmap: str = "viridis", note: str = "", select=None) -> Iterator:
    """The figures of :func:`pattern_pdf`, one at a time: a page per selected layer, then (where layers
    were left out) a page that lists them."""
    selection = _selection(names, select)
    yield from plotting.pattern_figures(layers, names, scale, cmap, note, selection.drawn)
    if selection.skipped:
        yield skipped_figure(selection)


def pattern_pdf(layers: Sequence[np.ndarray], names: Sequence[str], path, scale: str = "layerscale",
                cmap: str = "viridis", kind: str | None = None, select=None, note: str = "") -> int:
    """The pattern (or a spectrum of transform ``kind``, in the layer layout), one page per selected layer
    (``select``: see :func:`select_layers`; a :class:`Selection` is taken as it is); ``note`` is written on
    every page (what the pattern is). Returns the page count."""
    plotting.check_scale(scale)
    plotting.colormap(cmap)
    selection = _selection(names, select)
    if kind in TRANSFORMS and not TRANSFORMS[kind].coefficients_at_nodes:
        note = "; ".join(filter(None, [TRANSFORMS[kind].description, note]))
    return plotting.write_pdf(pattern_pages(layers, names, scale, cmap, note, selection), path)


def spectrum_pdf(layers: Sequence[np.ndarray], names: Sequence[str], path, kind: str | None,
                 eigenvalues=None, scale: str = "layernorm", cmap: str = "RdBu_r", select=None,
                 floored: bool = False) -> int:
    """A spectrum of transform ``kind`` in the layer layout, one page per selected layer (``select`` as for
    :func:`pattern_pdf`), and where it has ``eigenvalues`` (Laplacian) a last page of |coefficient| against
    eigenvalue, over every coefficient. ``floored``: the layers come with values at or below a noise floor
    set to 0 (:class:`SampleLayers`), which each page says. Returns the page count."""
    plotting.check_scale(scale)
    plotting.colormap(cmap)
    selection = _selection(names, select)
    note = TRANSFORMS[kind].description if kind in TRANSFORMS else f"{kind or 'standard'} spectrum: coefficient at its node"
    if floored:
        note += "; values at or below the layer's noise floor (float32 rounding of the network) drawn as 0"

    def figures():
        yield from pattern_pages(layers, names, scale, cmap, note, selection)
        if eigenvalues is not None:
            values = np.concatenate([np.asarray(layers[i], dtype=np.float64).reshape(-1) for i in range(len(layers))])
            label = TRANSFORMS[kind].label if kind in TRANSFORMS else kind
            yield plotting.eigenvalue_figure(eigenvalues, values, f"{label} spectrum: |coefficient| against eigenvalue")
    return plotting.write_pdf(figures(), path)


def skipped_figure(selection: Selection):
    """A page that lists the layers without a page of their own, index and name, in columns."""
    names, skipped = selection.names, selection.skipped
    how = ("not chosen by the layer selection (visualize.layers, or layers= of the drawing functions)"
           if selection.chosen else
           f"a network of more than {MAX_PAGES} layers gets {MAX_PAGES} pages by default, spread over its depth; "
           f"choose others with visualize.layers (layers= of the drawing functions)")
    entries = [f"{i}  {names[i]}" for i in skipped]
    longest = max(len(e) for e in entries)
    columns = max(1, min(4, int(7.6 // (0.06 * longest + 0.3))))
    per_column = -(-len(entries) // columns)
    width, line = 8.0, 0.14                                     # inches; one line of 7-point text
    height = 1.3 + line * per_column
    with plotting.style():
        fig = plotting.new_figure(figsize=(width, height))
        fig.suptitle(f"Layers not drawn: {len(skipped)} of {len(names)}", y=1 - 0.12 / height, va="top")
        fig.text(0.5, 1 - 0.5 / height, textwrap.fill(how, 100), ha="center", va="top", fontsize=8)
        for c in range(columns):
            block = entries[c * per_column:(c + 1) * per_column]
            fig.text((0.2 + c * (width - 0.4) / columns) / width, 1 - 1.0 / height, "\n".join(block),
                     ha="left", va="top", fontsize=7, linespacing=1.2, family="DejaVu Sans Mono")
    return fig
