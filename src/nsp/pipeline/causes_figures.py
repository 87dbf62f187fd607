"""The paper figures of the causes stage, drawn from the ``causes`` entry of every model's summary.

- ``contributions``: per model, the share of each layer's coefficients in the predicted class's logit, the
  mean over the samples and the range of the class means, for each transform with coefficients at the
  nodes (``Transform.contributions``), each as a fraction of the model's mean |logit|.
- ``reconstruction``: per model, the relative error of patterns reconstructed from a fraction of their
  neurons, against that fraction, for each transform (greedy pursuit; low-pass for the Laplacian).

A model without a ``causes`` entry (``causes.transforms: []``, or a summary written before the stage
existed) has no panel; the caption says which models have none.
"""

from __future__ import annotations

import numpy as np

from nsp.pipeline.figures import FigureKind
from nsp.pipeline.paper_figures import number


def _causes(summary: dict) -> dict:
    """The summary's causes records by transform, in the order of its series (the JSON file sorts them)."""
    records = summary.get("causes") or {}
    order = [t for t in summary.get("series", []) if t in records]
    return {t: records[t] for t in order + sorted(set(records) - set(order))}


def shares(record: dict) -> tuple:
    """(layer names, mean share per layer, lowest and highest class mean per layer, mean |logit|) of a
    transform's contributions; shares as fractions of the mean |logit|."""
    c = record["contributions"]
    scale = max(float(np.mean(np.abs(c["logit"]))), 1e-300)
    by_class = np.array(list(c["by_class"].values()), dtype=np.float64) / scale
    return (c["layers"], np.array(c["mean"]) / scale, by_class.min(axis=0), by_class.max(axis=0), scale)


def _contributions(summaries: list):
    from nsp.plotting import paper
    panels = {}
    for s in summaries:
        values = {t: shares(r)[1:4] for t, r in _causes(s).items() if "contributions" in r}
        if values:
            names = next(r["contributions"]["layers"] for r in _causes(s).values() if "contributions" in r)
            panels[s["model"]] = (names, values)
    return paper.contributions_grid(panels, "Which layers' causes made the predicted class")


def _contributions_caption(summaries: list) -> str:
    lines = ["**Contributions to the predicted class.** For each model and each causal transform, the share "
             "of each layer's coefficients in the logit of the class the network predicts (the sum over the "
             "layer's neurons of W[logit, x] c_x), as a fraction of the mean |logit|: the mean over the samples "
             "(line) and the range of the means over the samples of each predicted class (shaded), on a "
             "symmetric log axis. Summed over the layers the shares give the logit. Largest positive and "
             "negative mean share, and the largest completeness error (|sum of shares - logit| / largest "
             "|logit|):", ""]
    missing = []
    for s in summaries:
        parts = []
        for t, r in _causes(s).items():
            if "contributions" not in r:
                continue
            names, mean, _, _, scale = shares(r)
            top, bottom = int(np.argmax(mean)), int(np.argmin(mean))
            parts.append(f"{t} ({r['samples']} samples): {names[top]} {number(mean[top])}, {names[bottom]} "
                         f"{number(mean[bottom])}, error {number(r['contributions']['completeness_error'])}")
        if parts:
            lines.append(f"- {s['model']}: " + "; ".join(parts))
        else:
            missing.append(s["model"])
    if missing:
        lines += ["", f"No contributions for {', '.join(missing)} (config key causes.transforms)."]
    return "\n".join(lines)


def _curves(summary: dict) -> tuple:
    values, notes = {}, []
    for t, r in _causes(summary).items():
        rec = r["reconstruction"]
        if "skipped" in rec:
            notes.append(f"{t}: skipped")
        else:
            values[t] = (np.array(rec["fractions"]), np.maximum(np.array(rec["mean_error"]), 1e-16))
    return values, "; ".join(notes)


def _reconstruction(summaries: list):
    from nsp.plotting import paper
    panels = {s["model"]: _curves(s) for s in summaries if _causes(s)}
    return paper.reconstruction_grid(panels, "Reconstruction from a fraction of the neurons")


def _reconstruction_caption(summaries: list) -> str:
    lines = ["**Reconstruction from sampled neurons.** For each model, the mean relative error "
             "||estimate - s|| / ||s|| of patterns reconstructed from the values of a random fraction of their "
             "neurons, against that fraction (both axes log): greedy pursuit on the observed rows of each causal "
             "transform's synthesis matrix, and band-limited (low-pass) interpolation with the Laplacian's lowest "
             "frequencies; the dashed line is the error of guessing 0. Error at the largest fraction:", ""]
    for s in summaries:
        parts = []
        for t, r in _causes(s).items():
            rec = r["reconstruction"]
            if "skipped" in rec:
                parts.append(f"{t} skipped ({rec['skipped']})")
            else:
                parts.append(f"{t} {number(rec['mean_error'][-1])} ({rec['method']}, {rec['sparsity']} "
                             f"coefficients, {len(rec['errors'][-1])} samples)")
        if parts:
            lines.append(f"- {s['model']} at {_largest(s)}: " + "; ".join(parts))
    return "\n".join(lines)


def _largest(summary: dict) -> str:
    fractions = [max(r["reconstruction"]["fractions"]) for r in _causes(summary).values()
                 if "fractions" in r["reconstruction"]]
    return f"{max(fractions):.0%} observed" if fractions else "every fraction"


CONTRIBUTIONS = FigureKind("contributions", _contributions, "summaries", "per-layer contributions to the "
                           "predicted class of every model", _contributions_caption)
RECONSTRUCTION = FigureKind("reconstruction", _reconstruction, "summaries", "reconstruction error against the "
                            "fraction of neurons observed, of every model", _reconstruction_caption)
