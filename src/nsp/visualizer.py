"""``Visualizer``: the reference package's PDF pages of activation patterns and spectra."""

from __future__ import annotations

import numpy as np

from nsp.plotting import figures as plotting
from nsp.activations import Activations
from nsp.transforms import TRANSFORMS


def _layers(activations: Activations) -> list[np.ndarray]:
    if not isinstance(activations, Activations):
        raise TypeError(f"activations must be an nsp.Activations or Spectrum, got {type(activations).__name__}")
    return [a.detach().cpu().numpy() for a in activations.layeractivations]


class Visualizer:
    """Draw activation patterns and spectra, one PDF page per layer."""

    @staticmethod
    def visualize_pattern(activations: Activations, pdf_filepath, scale: str = "layerscale",
                          cmap_style: str = "viridis") -> int:
        """Write ``activations`` (or a spectrum, in the layer layout) to a PDF, one page per layer.

        Each page is titled with the layer's index and name; channels form a
        grid of at most four columns sharing one horizontal colour bar.
        ``scale``: ``layerscale`` (each layer's own min..max), ``layernorm``
        (each layer's, centred at 0), ``globalscale`` (the whole pattern's
        min..max), ``globalnorm`` (the pattern's, centred at 0; good with
        diverging colormaps). ``cmap_style``: any matplotlib colormap.
        Missing folders are created. Returns the number of pages.
        """
        plotting.check_scale(scale)
        plotting.colormap(cmap_style)
        kind = getattr(activations, "transform_type", None)
        note = TRANSFORMS[kind].description if kind in TRANSFORMS and not TRANSFORMS[kind].coefficients_at_nodes else ""
        figures = plotting.pattern_figures(_layers(activations), activations.layernames, scale, cmap_style, note)
        return plotting.write_pdf(figures, pdf_filepath)

    @staticmethod
    def visualize_spectrum(spectrum, pdf_filepath, scale: str = "layernorm", cmap_style: str = "RdBu_r") -> int:
        """Write a spectrum to a PDF: its coefficients in the layer layout, page per layer, and for
        Laplacian spectra a last page of |coefficient| against eigenvalue. Returns the page count."""
        plotting.check_scale(scale)
        plotting.colormap(cmap_style)
        kind = getattr(spectrum, "transform_type", None)
        note = TRANSFORMS[kind].description if kind in TRANSFORMS else f"{kind or 'standard'} spectrum: coefficient at its node"
        figures = list(plotting.pattern_figures(_layers(spectrum), spectrum.layernames, scale, cmap_style, note))
        if getattr(spectrum, "eigenvalues", None) is not None:
            figures.append(plotting.eigenvalue_figure(spectrum.eigenvalues, spectrum.to_array(np.float64),
                                                      f"{TRANSFORMS[kind].label if kind in TRANSFORMS else kind} spectrum: |coefficient| against eigenvalue"))
        return plotting.write_pdf(figures, pdf_filepath)
