"""How much data each pipeline stage handles at once.

The stages (:mod:`nsp.pipeline.stages`) work in batches of these sizes, and :mod:`nsp.pipeline.resources`
estimates a job's memory from the same numbers, so both read them here. Every size depends on the data
alone, never on the machine, so that results do not depend on where a job runs.
"""

from __future__ import annotations

#: samples per forward pass of collect-activations for a small network
BATCH = 256

#: bytes of recorded activations one forward pass of collect-activations may hold (float32, every layer)
COLLECT_BYTES = 1 << 29

#: float64 bytes of activations transformed at once: the transform stage's memory is a small multiple of it
TRANSFORM_BYTES = 1 << 28

#: float64 bytes of samples that summarize and class-means take at once (at least one sample): their memory
#: is a small multiple of it (and, for class means, one row per class), not of a shard
STREAM_BYTES = 1 << 25


def collect_batch(neurons: int) -> int:
    """Samples per forward pass: :data:`BATCH`, fewer for a large network so that the recorded layers (and
    the array of their values: twice ``4 * neurons`` bytes per sample) stay near :data:`COLLECT_BYTES`."""
    return max(1, min(BATCH, COLLECT_BYTES // (8 * max(neurons, 1))))
