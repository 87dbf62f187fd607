"""HDF5 storage of graphs, transformers, activations and spectra (schema: ``docs/format.md``).

``h5`` holds the building blocks and the registry of encodings; ``container``
the file conventions (kind, format version, provenance, atomic writes);
``graphs``, ``signals`` and ``transformers`` the three families of files.
Transforms register their own encodings in their modules.
"""

from nsp.storage.container import FORMAT_VERSION, open_file
from nsp.storage.graphs import read_graph, read_graph_transforms, write_graph
from nsp.storage.h5 import StorageError
from nsp.storage.signals import SAMPLE_COMPRESSION, SignalBatch, SignalWriter, read_signals, write_signals
from nsp.storage.transformers import read_transformer, write_transformer

__all__ = ["FORMAT_VERSION", "open_file", "read_graph", "read_graph_transforms", "write_graph", "StorageError",
           "SAMPLE_COMPRESSION", "SignalBatch", "SignalWriter", "read_signals", "write_signals",
           "read_transformer", "write_transformer"]
