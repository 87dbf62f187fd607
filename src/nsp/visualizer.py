"""``Visualizer``: the reference package's PDF pages of activation patterns and spectra."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nsp.errors import InputTypeError
from nsp.plotting import pages

if TYPE_CHECKING:
    from nsp.activations import Activations


def _layers(activations) -> list[np.ndarray]:
    from nsp.activations import Activations
    if not isinstance(activations, Activations):
        raise InputTypeError(f"activations must be an nsp.Activations or Spectrum, got {type(activations).__name__}")
    return [a.detach().cpu().numpy() for a in activations.layeractivations]


def _selection(activations, layers):
    """The layers that get a page (ValueError for a pattern that matches none)."""
    return pages.select_layers(activations.layernames, layers)


class Visualizer:
    """Draw activation patterns and spectra, one PDF page per layer."""

    @staticmethod
    def visualize_pattern(activations: Activations, pdf_filepath, scale: str = "layerscale",
                          cmap_style: str = "viridis", layers=None) -> int:
        """Write ``activations`` (or a spectrum, in the layer layout) to a PDF, one page per layer.

        Each page is titled with the layer's index and name; channels form a
        grid of at most four columns sharing one horizontal colour bar.
        ``scale``: ``layerscale`` (each layer's own min..max), ``layernorm``
        (each layer's, centred at 0), ``globalscale`` (the whole pattern's
        min..max), ``globalnorm`` (the pattern's, centred at 0; good with
        diverging colormaps). ``cmap_style``: any matplotlib colormap.
        ``layers``: the layers that get a page, a list of names or fnmatch
        patterns (``["conv*", "fc"]``; one that matches no layer is a
        ValueError listing the layers); by default every layer of a network
        of at most 24 layers, else 24 spread over its depth, and a last page
        lists the layers left out. A layer with more than 64 channels shows
        the first 64 and says so. Missing folders are created. Returns the
        number of pages.
        """
        return pages.pattern_pdf(_layers(activations), activations.layernames, pdf_filepath, scale, cmap_style,
                                 getattr(activations, "transform_type", None), _selection(activations, layers))

    @staticmethod
    def visualize_spectrum(spectrum, pdf_filepath, scale: str = "layernorm", cmap_style: str = "RdBu_r",
                           layers=None) -> int:
        """Write a spectrum to a PDF: its coefficients in the layer layout, page per layer (``layers`` as
        for :meth:`visualize_pattern`), and for Laplacian spectra a last page of |coefficient| against
        eigenvalue. Returns the page count."""
        return pages.spectrum_pdf(_layers(spectrum), spectrum.layernames, pdf_filepath,
                                  getattr(spectrum, "transform_type", None), getattr(spectrum, "eigenvalues", None),
                                  scale, cmap_style, _selection(spectrum, layers))
