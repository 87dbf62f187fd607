"""Registries: name -> entry maps that fill themselves, in a fixed order, the first time they are read.

Each extension point of nsp (operation kinds, transforms, HDF5 encodings, figure kinds, dataset sources) is
one :class:`Registry`, created with the list of its built-in entries as ``"module:attribute"`` strings (or
``"module"``: a module whose decorators add its entries, for keyed registries where order does not matter).
The first time anything reads a registry (a lookup, ``in``, iteration, ``len``) it imports those modules,
puts their entries first, in that order (a keyed registry imports them one by one, only as far as a lookup
needs), and then runs the installed plugins once (the ``nsp.plugins`` entry-point group, see
:mod:`nsp.plugins`). So content and order never depend on what happened to be imported before, and a
built-in operation kind or transform module registers nothing by being imported.

Entries added later (by a plugin, a user's module or a test) come after the built-ins, in the order they
were added. Adding a second, different entry under a taken name is an error; adding the same definition
again (a module imported twice) replaces it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from nsp import plugins
from nsp.errors import RegistryError


class Registry(Mapping):
    """A name -> entry mapping of one kind of extension (``what``: "transform", "operation kind", ...).

    ``built_in``: the built-in entries, ``"module:attribute"``, in their order. ``name_of(entry)`` gives an
    entry's name; ``prepare(entry)`` checks an entry and returns what is stored (an instance of a class,
    say). ``error`` is raised by :meth:`lookup` for an unknown name. A ``keyed`` registry (the HDF5
    encodings) has no order: a lookup imports its built-in modules only until the name is found, so that
    reading a layer table does not import the transforms.
    """

    def __init__(self, what: str, built_in: tuple[str, ...] = (), *, name_of: Callable[[Any], Any] = None,
                 prepare: Callable[[Any], Any] = None, error: type = RegistryError, keyed: bool = False):
        self.what = what
        self._built_in = tuple(built_in)
        self._name_of = name_of or (lambda entry: entry.name)
        self._prepare = prepare or (lambda entry: entry)
        self._error = error
        self._keyed = keyed
        self._imported = 0                   # built-in specs imported so far
        self._entries: dict = {}
        self._filled = False

    # --- filling -------------------------------------------------------------------------------

    def _import(self, spec: str) -> None:
        module, _, attribute = spec.partition(":")
        loaded = importlib.import_module(module)     # a module alone: its decorators add the entries
        if attribute:
            self._put(getattr(loaded, attribute), None, False)

    def _fill(self, name=None) -> None:
        """Import the built-ins (a keyed registry: only until ``name``, where given, is there)."""
        if self._keyed:
            if not self._filled:
                self._filled = True
                plugins.run_installed()
            while self._imported < len(self._built_in) and (name is None or name not in self._entries):
                self._import(self._built_in[self._imported])
                self._imported += 1
            return
        if self._filled:
            return
        self._filled = True
        added, self._entries = self._entries, {}
        try:
            for spec in self._built_in:
                self._import(spec)
            for name, value in added.items():
                self._put(value, name, False)
        except BaseException:
            self._filled = False
            self._entries = added
            raise
        plugins.run_installed()

    def add(self, entry, name=None, *, replace: bool = False):
        """Add ``entry`` (under ``name``, default its own name); returns ``entry``, so that registering
        functions can be decorators. It comes after the built-ins whenever it was added. ``replace`` allows
        taking a name another definition has."""
        self._put(entry, name, replace)
        return entry

    def _put(self, entry, name, replace: bool) -> None:
        value = self._prepare(entry)
        name = self._name_of(value) if name is None else name
        if not name:
            raise RegistryError(f"a {self.what} needs a name: {_origin(value)} has none")
        old = self._entries.get(name)
        if old is not None and not replace and _origin(old) != _origin(value):
            raise RegistryError(f"{self.what} {name!r} is already registered by {_origin(old)}; "
                                f"{_origin(value)} must use another name")
        self._entries[name] = value

    # --- reading -------------------------------------------------------------------------------

    def __getitem__(self, name):
        self._fill(name)
        return self._entries[name]

    def __iter__(self) -> Iterator:
        self._fill()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._fill()
        return len(self._entries)

    def __contains__(self, name) -> bool:
        self._fill(name)
        return name in self._entries

    def __repr__(self) -> str:
        return f"<Registry of {self.what}s: {', '.join(map(str, self)) or 'empty'}>"

    def lookup(self, name):
        """The entry called ``name``; an unknown name is ``error``, listing the accepted ones."""
        if name not in self:
            raise self._error(f"unknown {self.what} {name!r}; accepted: {self.accepted()}")
        return self._entries[name]

    def accepted(self) -> str:
        """The names, sorted, as one string for messages."""
        return ", ".join(sorted(map(str, self)))

    @contextmanager
    def temporary(self):
        """Restore the current content on exit (for tests and benchmarks that add or replace entries)."""
        self._fill()
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)


def _origin(value) -> str:
    """Where an entry was defined, ``module.qualname`` (of its class, for an instance)."""
    obj = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
