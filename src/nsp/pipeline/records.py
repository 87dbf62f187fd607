"""The base of the pipeline's registry entries: a record built around one function.

The pipeline's registries (stages, figure kinds, dataset sources) hold small records rather than classes.
:class:`nsp.registry.Registry` tells two entries of one name apart by where each was defined; for a
record that is where its function is defined. So a plugin that reuses a taken name is an error, while a
module imported twice replaces its own entries, as for classes.
"""

from __future__ import annotations


class FunctionRecord:
    """Mixin of a dataclass record whose field ``FUNCTION`` holds its function: calling the record calls
    that function, and the record reads as defined where the function is (its ``__module__`` and
    ``__qualname__``)."""

    FUNCTION = "function"

    def __post_init__(self) -> None:
        function = getattr(self, self.FUNCTION)
        object.__setattr__(self, "__module__", getattr(function, "__module__", type(self).__module__))
        object.__setattr__(self, "__qualname__", getattr(function, "__qualname__", type(self).__qualname__))

    def __call__(self, *args, **kwargs):
        return getattr(self, self.FUNCTION)(*args, **kwargs)
