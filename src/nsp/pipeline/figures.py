"""Figure kinds: the paper figures the pipeline draws, one :class:`FigureKind` record each in :data:`FIGURES`.

Everything that lists figure kinds reads this registry: the config schema (the names accepted under
``figures:``), ``nsp figures --kind``, :func:`nsp.pipeline.config.figure_names` and the workflow's figure
rules (``workflow/rules/figures.smk``, one rule per kind of input). A kind says what it is drawn from
(``inputs``), and that fixes the files it makes, each a ``<name>.pdf`` and ``<name>.png`` under
``results/figures/paper/``:

==================  =================================================  ====================================
``inputs``          ``draw`` is called with                            figures
==================  =================================================  ====================================
``"summaries"``     ``draw(summaries)``: every model's summary (the    one: ``<kind>``
                    parsed ``summary.json``), in the config's order
``"summary"``       ``draw(summary)``: one model's summary             one per model: ``<kind>_<model>``
``"class_means"``   ``draw(means, model)``: the class means of one     one per model and series:
                    series of the model (a :class:`nsp.storage.        ``<kind>_<model>_<series>``
                    SignalBatch`` with one row per class)
==================  =================================================  ====================================

``draw`` returns a matplotlib ``Figure``; ``nsp figures`` saves it, and writes the kind's ``caption``
beside it. A summary holds ``model``, ``layers`` (the stored layers' names), ``samples``,
``sparsity_threshold``, ``training`` (where the model was trained), ``series`` (the names of its series,
in order) and, for each series (``activations``, then each transform the model runs; :func:`series_of`),
a dictionary with ``compaction_k``, ``compaction_share``, ``coefficients`` and, where the series has the
layer layout, the per-layer statistics of :data:`nsp.statistics.PER_LAYER` (``docs/figures.md``).

A plugin adds a kind
--------------------
A plugin (a module listed under ``plugins:`` in the config, or an installed ``nsp.plugins`` entry point)
adds a kind with :func:`register_figure` (or ``FIGURES.add``). The simplest draws from every model's
summary::

    from nsp.pipeline.figures import FigureKind, register_figure

    def draw(summaries):
        from nsp.plotting.figures import new_figure, style
        with style():
            fig = new_figure(figsize=(6, 3), layout="constrained")
            ax = fig.subplots()
            ax.bar([s["model"] for s in summaries], [s["samples"] for s in summaries])
            ax.set_ylabel("samples")
        return fig

    register_figure(FigureKind("samples", draw, inputs="summaries", help="samples of each model"))

With ``figures: [compaction, samples]`` the workflow then draws ``results/figures/paper/samples.pdf`` (and
``.png``) with ``nsp figures --kind samples --summaries <every model's summary.json> --config <part>``, the
config part naming the plugins so that the job loads them too. A kind's name becomes part of file names and
of the figure rules' wildcards: letters, digits and ``_``. Drawing code imports matplotlib inside ``draw``:
this module is read by the workflow and by every job, which should not pay for matplotlib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from nsp.errors import RegistryError
from nsp.pipeline.records import FunctionRecord
from nsp.registry import Registry

#: what a figure kind can be drawn from (see the module's documentation)
INPUTS = ("summaries", "summary", "class_means")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class FigureKind(FunctionRecord):
    """A kind of paper figure: its ``name`` (the value in ``figures:``), ``draw`` (the function that draws
    it), ``inputs`` (what it is drawn from: one of :data:`INPUTS`), ``help`` (one line for messages) and
    ``caption`` (called as ``draw`` is, it returns the caption as Markdown: what is plotted, on what, and
    the numbers that say what it shows; without one, the caption is ``help``)."""

    name: str
    draw: Callable
    inputs: str = "summaries"
    help: str = ""
    caption: Callable | None = None
    FUNCTION = "draw"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise RegistryError(f"figure kind {self.name!r}: a name is letters, digits and '_', starting with a "
                                f"letter (it becomes part of file names)")
        if self.inputs not in INPUTS:
            raise RegistryError(f"figure kind {self.name}: inputs {self.inputs!r} is not one of {', '.join(INPUTS)}")
        super().__post_init__()

    def figure_names(self, models: dict) -> list[str]:
        """The names of the figures of this kind for ``models`` (model -> its series)."""
        if self.inputs == "summaries":
            return [self.name]
        if self.inputs == "summary":
            return [f"{self.name}_{model}" for model in models]
        return [f"{self.name}_{model}_{s}" for model, model_series in models.items() for s in model_series]


def register_figure(kind: FigureKind) -> FigureKind:
    """Add a figure kind after the built-in ones (a plugin's); returns it."""
    return FIGURES.add(kind)


def kinds(inputs: str | None = None) -> list[str]:
    """The names of the figure kinds (drawn from ``inputs`` only, where given), in the registry's order."""
    return [name for name, kind in FIGURES.items() if inputs is None or kind.inputs == inputs]


def kinds_pattern(inputs: str) -> str:
    """The figure kinds drawn from ``inputs`` as a regular expression, for the wildcard of the workflow's
    figure rule of that input (no such kind: a pattern that matches nothing)."""
    return "|".join(map(re.escape, kinds(inputs))) or "(?!)"


def series_of(summary: dict) -> list[str]:
    """The series of a summary (the entries with statistics) in the order of
    :func:`nsp.pipeline.config.series`: activations, the transforms in the registry's order, any other by
    name. A summary lists them under ``series`` (in that order; read without importing the transforms);
    one written before that key is ordered with the transform registry."""
    names = {k for k, v in summary.items() if isinstance(v, dict) and "compaction_k" in v}
    listed = summary.get("series")
    if isinstance(listed, list) and set(listed) == names:
        return list(listed)
    from nsp.transforms import TRANSFORMS
    return [*(["activations"] if "activations" in names else []), *[t for t in TRANSFORMS if t in names],
            *sorted(names - set(TRANSFORMS) - {"activations"})]


#: figure kind name -> :class:`FigureKind`: the built-in kinds (:mod:`nsp.pipeline.paper_figures`,
#: :mod:`nsp.pipeline.causes_figures`), then those
#: plugins add
FIGURES = Registry("figure kind", tuple(f"nsp.pipeline.paper_figures:{name}" for name in
                                        ("COMPACTION", "MAGNITUDE", "TRAINING", "ENERGY", "SPARSITY",
                                         "CLASS_MEANS")) + ("nsp.pipeline.causes_figures:CONTRIBUTIONS",
                                                            "nsp.pipeline.causes_figures:RECONSTRUCTION"))
