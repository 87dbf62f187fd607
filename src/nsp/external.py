"""Architectures from timm and torchvision by name (``timm:<name>``, ``torchvision:<name>``), never downloading.

Both libraries are optional extras (``pip install 'nsp[models]'``). Models are
built with random weights (``pretrained=False`` / ``weights=None``); trained
weights come from a local file, like every other model of the pipeline.

torchvision's classification models are pure Python. Its compiled extension
only provides detection operators (``nms``, ``roi_align``, ...); where it
cannot load (a CUDA build beside a CPU-only torch), importing torchvision
fails on registering fake kernels for operators that were never declared.
:func:`import_torchvision` then declares the two operators those
registrations need and imports it again, so the models (and timm, which
imports torchvision) work; the detection operators stay unavailable.
"""

from __future__ import annotations

import difflib
import importlib
import re
import sys
from typing import TYPE_CHECKING

from nsp.errors import ExternalModelError

if TYPE_CHECKING:                # annotations only; torch loads where a function needs it
    import torch

#: the sources a named architecture may come from
SOURCES = ("timm", "torchvision")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_DECLARED = []                  # keeps the declaring library alive


def is_named(architecture: str) -> bool:
    return architecture.partition(":")[0] in SOURCES


def import_torchvision():
    """``torchvision``, importable even where its compiled extension is not (see the module docstring)."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch.library
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _DECLARED.append(library)
    return importlib.import_module("torchvision")


def _library(source: str):
    try:
        import_torchvision()
        return importlib.import_module("timm") if source == "timm" else importlib.import_module("torchvision.models")
    except ImportError as err:
        raise ExternalModelError(f"{source} is not installed ({err}); install the optional extra: "
                                 f"pip install 'nsp[models]'") from None


def names(source: str) -> list[str]:
    """The architecture names ``source`` knows."""
    library = _library(source)
    return list(library.list_models())


def check(architecture: str) -> None:
    """Raise :class:`ExternalModelError` unless ``architecture`` names a model of an installed source."""
    source, _, name = architecture.partition(":")
    if source not in SOURCES:
        raise ExternalModelError(f"{architecture!r}: unknown source {source!r}; accepted: {', '.join(SOURCES)}")
    if not NAME.match(name):
        raise ExternalModelError(f"{architecture!r}: a model name is letters, digits, '_', '.' and '-'")
    known = names(source)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; close: {', '.join(close)}" if close else ""
        raise ExternalModelError(f"{architecture!r}: {source} has no model {name!r}{hint}")


def build(architecture: str, options: dict | None = None) -> torch.nn.Module:
    """The named model with random weights, constructed with ``options`` (``num_classes``, ``img_size``, ...)."""
    check(architecture)
    source, _, name = architecture.partition(":")
    options = dict(options or {})
    asked = {k: options[k] for k in ("pretrained", "weights", "pretrained_cfg_overlay", "checkpoint_path")
             if options.get(k)}
    if asked:
        raise ExternalModelError(f"{architecture!r}: options {asked} would load or download weights; nsp never "
                                 f"downloads: give a local weights file (models.<name>.weights) instead")
    library = _library(source)
    try:
        if source == "timm":
            return library.create_model(name, pretrained=False, **options)
        return library.get_model(name, weights=None, **options)
    except TypeError as err:
        raise ExternalModelError(f"{architecture!r} does not take the options {options}: {err}") from None
