"""Public names of a package that load on first use (PEP 562), so that importing one light module of
nsp (storage, plotting statistics, the config) does not import torch or matplotlib."""

from __future__ import annotations

import importlib
import sys


def exports(package: str, names: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for ``package``: ``names`` maps each public name to the module
    defining it."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
