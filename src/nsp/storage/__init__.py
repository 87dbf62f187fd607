"""HDF5 storage of graphs, transformers, activations and spectra (schema: ``docs/format.md``).

``h5`` holds the building blocks and the registry of encodings; ``container``
the file conventions (kind, format version, provenance, atomic writes);
``graphs``, ``signals`` and ``transformers`` the three families of files
(``transformers`` also holds the encodings of the built-in transforms).
"""

from nsp._lazy import exports

_MODULES = {"FORMAT_VERSION": "container", "open_file": "container", "seal": "container", "read_graph": "graphs",
            "read_graph_transforms": "graphs", "write_graph": "graphs", "StorageError": "h5",
            "SAMPLE_COMPRESSION": "signals", "SignalBatch": "signals", "SignalWriter": "signals",
            "read_signals": "signals", "iter_signals": "signals", "open_signals": "signals",
            "write_signals": "signals",
            "read_transformer": "transformers", "write_transformer": "transformers"}
# each family loads on first use: reading activations needs neither the graph nor the transform code
__getattr__, __dir__ = exports(__name__, {name: f"nsp.storage.{module}" for name, module in _MODULES.items()})

__all__ = list(_MODULES)
