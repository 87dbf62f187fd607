"""Batches of signals: the (samples, nodes) float64 arrays the transforms work on."""

from __future__ import annotations

import numpy as np


def as_batch(values, width: int, what: str) -> tuple[np.ndarray, bool]:
    """``values`` as a float64 array of shape (samples, width), and whether it was one vector."""
    x = np.asarray(values, dtype=np.float64)
    single = x.ndim == 1
    x2 = x[None, :] if single else x
    if x2.ndim != 2 or x2.shape[1] != width:
        raise ValueError(f"{what} must have shape (samples, {width}) or ({width},); got {x.shape}")
    return x2, single
