"""The pipeline's stages: one function each, registered with what the command line needs to offer it.

A stage is a :class:`Stage` record in :data:`STAGES`. ``nsp <stage>`` (:mod:`nsp.pipeline.cli`) builds
one subcommand per record, in the registry's order, parses the stage's options and calls
``stage.function(args, cfg)``: ``args`` the parsed arguments, ``cfg`` the validated config (or a stage's
part of it; None for a stage run without one). A stage raises an :class:`nsp.errors.NspError` for anything
the user can fix (a missing or damaged input file, a bad option, a config key); the command line prints
that as one line and exits with status 2. Any other exception is a bug and keeps its traceback.

The built-in stages live in the modules of this package, grouped by what they work on: ``network``
(train, extract-graph, collect-activations, demo), ``spectra`` (compute-transformer, transform),
``causes`` (causes), ``summaries`` (summarize, class-means) and ``drawing`` (visualize, figures); ``common`` holds what several
of them use. Each stage imports what it uses when it runs: a job that runs no network never imports
torch, one that draws nothing never imports matplotlib (start-up time of many small jobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from nsp.errors import RegistryError
from nsp.pipeline.records import FunctionRecord
from nsp.registry import Registry


@dataclass
class Option:
    """One command-line option of a stage: the ``flags`` and ``settings`` of
    ``argparse.ArgumentParser.add_argument``. ``choices`` may be a function returning them: it is called
    when the parser is built, after the plugins were loaded, so that a registry's entries are offered."""

    flags: tuple[str, ...]
    settings: dict = field(default_factory=dict)


def option(*flags: str, **settings: Any) -> Option:
    """An :class:`Option`, written as a call of ``add_argument``."""
    return Option(flags, settings)


@dataclass
class Stage(FunctionRecord):
    """A subcommand of ``nsp``: ``function(args, cfg)`` runs it; ``help`` describes it in ``nsp --help``;
    ``options`` are its own options. ``config`` says whether it takes ``--config`` (a pipeline config or
    the stage's part of one): ``"required"``, ``"optional"`` or ``"none"``. Every stage also takes
    ``--threads`` and ``--quiet``. The record is not frozen, so that a test can swap a stage's function
    (``monkeypatch.setattr(STAGES["demo"], "function", ...)``)."""

    name: str
    function: Callable[[Any, dict | None], None]
    help: str
    options: tuple[Option, ...] = ()
    config: str = "required"

    def __post_init__(self) -> None:
        if self.config not in ("required", "optional", "none"):
            raise RegistryError(f"stage {self.name}: config {self.config!r} is not one of required, optional, none")
        super().__post_init__()


#: the built-in stages, in the order ``nsp --help`` lists them
BUILT_IN = tuple(f"nsp.pipeline.stages.{spec}" for spec in (
    "network:TRAIN", "network:EXTRACT_GRAPH", "spectra:COMPUTE_TRANSFORMER", "network:COLLECT_ACTIVATIONS",
    "spectra:TRANSFORM", "drawing:VISUALIZE", "causes:CAUSES", "summaries:SUMMARIZE", "summaries:CLASS_MEANS", "drawing:FIGURES_STAGE",
    "gallery:GALLERY",
    "network:DEMO"))

#: stage name -> :class:`Stage`: the built-in ones, then those plugins add (``STAGES.add(Stage(...))``)
STAGES = Registry("stage", BUILT_IN)
