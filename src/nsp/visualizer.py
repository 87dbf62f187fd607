"""``Visualizer``: the reference package's PDF pages of activation patterns and spectra."""

from __future__ import annotations

import numpy as np

from nsp.plotting import figures as plotting
from nsp.activations import Activations

_LAPLACIAN_NOTE = ("Laplacian coefficients drawn in the layer layout (a convention: "
                   "coefficient k belongs to eigenvalue λ_k, not to a node)")


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
        note = _LAPLACIAN_NOTE if getattr(activations, "transform_type", None) == "laplacian" else ""
        figures = plotting.pattern_figures(_layers(activations), activations.layernames, scale, cmap_style, note)
        return plotting.write_pdf(figures, pdf_filepath)

    @staticmethod
    def visualize_spectrum(spectrum, pdf_filepath, scale: str = "layernorm", cmap_style: str = "RdBu_r") -> int:
        """Write a spectrum to a PDF: its coefficients in the layer layout, page per layer, and for
        Laplacian spectra a last page of |coefficient| against eigenvalue. Returns the page count."""
        plotting.check_scale(scale)
        plotting.colormap(cmap_style)
        kind = getattr(spectrum, "transform_type", None)
        note = {"laplacian": _LAPLACIAN_NOTE,
                "sem": "sem spectrum: what each neuron adds to the weighted sum of its inputs (c = s - A s)"}.get(
            kind, f"{kind or 'standard'} spectrum: coefficient at its node")
        figures = list(plotting.pattern_figures(_layers(spectrum), spectrum.layernames, scale, cmap_style, note))
        if kind == "laplacian" and getattr(spectrum, "eigenvalues", None) is not None:
            figures.append(plotting.eigenvalue_figure(spectrum.eigenvalues, spectrum.to_array(np.float64),
                                                      "Laplacian spectrum: |coefficient| against eigenvalue"))
        return plotting.write_pdf(figures, pdf_filepath)
