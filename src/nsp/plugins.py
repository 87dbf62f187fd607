"""Plugins: code outside nsp that adds entries to its registries.

A plugin is an importable module that, when imported, registers what it brings: operation kinds
(:func:`nsp.operations.register`), transforms (:func:`nsp.transforms.register_transform`) with their HDF5
encodings (:func:`nsp.storage.h5.writer` / :func:`~nsp.storage.h5.reader`), figure kinds and dataset
sources. nsp imports two sorts:

- installed packages that declare an entry point in the group ``nsp.plugins`` (in ``pyproject.toml``:
  ``[project.entry-points."nsp.plugins"] name = "package.module"``), once per process, the first time any
  registry is read (:func:`run_installed`);
- the modules a pipeline config lists under ``plugins:`` (:func:`load`), imported by the workflow and
  by every job before the rest of the config is checked, so the config schema, the stages, the storage
  layer and the Snakefile all see them.
"""

from __future__ import annotations

import importlib
import re
import sys
from importlib.metadata import entry_points

from nsp.errors import ConfigError, NspError

#: the entry-point group through which installed packages extend nsp
GROUP = "nsp.plugins"
MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_installed = {"state": "not run"}


def run_installed() -> None:
    """Import, once per process, every module of the ``nsp.plugins`` entry-point group (sorted by entry
    name); one that fails to load is an :class:`NspError` naming the entry point and its package."""
    if _installed["state"] != "not run":
        return
    _installed["state"] = "running"
    try:
        for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
            try:
                point.load()
            except NspError:
                raise
            except Exception as err:
                package = f" of package {point.dist.name}" if getattr(point, "dist", None) else ""
                raise NspError(f"plugin {point.name} = {point.value} (entry point {GROUP}{package}) failed to "
                               f"load: {type(err).__name__}: {err}") from err
    finally:
        _installed["state"] = "done"


def load(modules, key: str = "plugins") -> None:
    """Import the modules a config lists under ``key``; ConfigError naming the entry that fails."""
    if modules is None:
        return
    if not isinstance(modules, list):
        raise ConfigError(f"config key {key}: a list of Python module names, got {type(modules).__name__}")
    for index, name in enumerate(modules):
        where = f"config key {key}[{index}]"
        if not isinstance(name, str) or not MODULE_NAME.match(name):
            raise ConfigError(f"{where}: {name!r} is not a Python module name (dotted identifiers, e.g. "
                              f"my_package.nsp_plugin)")
        try:
            import_user_module(name)
        except NspError as err:
            raise ConfigError(f"{where}: plugin {name} failed: {err}") from err
        except Exception as err:
            raise ConfigError(f"{where}: cannot import plugin {name}: {type(err).__name__}: {err}") from err


def import_user_module(name: str):
    """Import a module of the user's: installed, or in the working folder (as ``python -m`` would find it;
    the ``nsp`` command alone does not look there)."""
    if "" not in sys.path:
        sys.path.insert(0, "")
    return importlib.import_module(name)
