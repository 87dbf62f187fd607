"""One sample drawn page by page: its activation pattern, or one of its spectra in the layer layout.

Arrays in, PDF out: ``layers`` is the sample cut into one array per layer, in the layer's shape
(:meth:`nsp.tracing.table.LayerTable.split`). :class:`nsp.Visualizer` draws its objects through these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nsp.plotting import figures as plotting
from nsp.transforms import TRANSFORMS


def pattern_pdf(layers: Sequence[np.ndarray], names: Sequence[str], path, scale: str = "layerscale",
                cmap: str = "viridis", kind: str | None = None) -> int:
    """The pattern (or a spectrum of transform ``kind``, in the layer layout), one page per layer.
    Returns the page count."""
    plotting.check_scale(scale)
    plotting.colormap(cmap)
    note = TRANSFORMS[kind].description if kind in TRANSFORMS and not TRANSFORMS[kind].coefficients_at_nodes else ""
    return plotting.write_pdf(plotting.pattern_figures(layers, names, scale, cmap, note), path)


def spectrum_pdf(layers: Sequence[np.ndarray], names: Sequence[str], path, kind: str | None,
                 eigenvalues=None, scale: str = "layernorm", cmap: str = "RdBu_r") -> int:
    """A spectrum of transform ``kind`` in the layer layout, one page per layer, and where it has
    ``eigenvalues`` (Laplacian) a last page of |coefficient| against eigenvalue. Returns the page count."""
    plotting.check_scale(scale)
    plotting.colormap(cmap)
    note = TRANSFORMS[kind].description if kind in TRANSFORMS else f"{kind or 'standard'} spectrum: coefficient at its node"
    figures = list(plotting.pattern_figures(layers, names, scale, cmap, note))
    if eigenvalues is not None:
        values = np.concatenate([np.asarray(layer, dtype=np.float64).reshape(-1) for layer in layers])
        label = TRANSFORMS[kind].label if kind in TRANSFORMS else kind
        figures.append(plotting.eigenvalue_figure(eigenvalues, values, f"{label} spectrum: |coefficient| against eigenvalue"))
    return plotting.write_pdf(figures, path)
