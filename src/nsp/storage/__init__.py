"""HDF5 storage of graphs, transformers, activations and spectra (schema: ``docs/format.md``)."""

from nsp.storage.hdf5 import (FORMAT_VERSION, SAMPLE_COMPRESSION, LayerTable, SignalBatch, SignalWriter,
                              StorageError, _chunks, open_file, read_graph, read_signals, read_transformer,
                              write_graph, write_signals, write_transformer)
