"""Sliding-window geometry shared by convolutions and pooling: per-axis 0/1 window factors."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from nsp.operations.base import ConnectivityError
from nsp.operations.kronecker import Factor


def as_tuple(value, nd: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(value) * nd
        return tuple(value)
    return (value,) * nd


def window_params(nd: int, kernel, stride, padding, dilation=1) -> dict:
    """Normalised window parameters: per-axis tuples (stride defaults to the kernel, as pooling does)."""
    kernel = as_tuple(kernel, nd)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else as_tuple(stride, nd)
    return {
        "nd": nd, "kernel": kernel, "stride": stride,
        "padding": padding if isinstance(padding, str) else as_tuple(padding, nd),
        "dilation": as_tuple(dilation, nd),
    }


def resolved_padding(params: dict) -> tuple:
    """Padding per axis, with ``'valid'`` and ``'same'`` resolved (left side for ``'same'``)."""
    padding = params["padding"]
    if padding == "valid":
        return (0,) * params["nd"]
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(params["kernel"], params["dilation"]))
    return tuple(padding)


def padded_index(index: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map positions of a padded axis (already shifted by -padding) to input positions; -1 = padding."""
    if mode == "zeros":
        return np.where((index >= 0) & (index < size), index, -1)
    if mode == "circular":
        return np.mod(index, size)
    if mode == "replicate":
        return np.clip(index, 0, size - 1)
    if mode == "reflect":
        period = 2 * (size - 1) if size > 1 else 1
        folded = np.mod(index, period)
        return np.where(folded < size, folded, period - folded)
    raise ConnectivityError(f"unknown padding mode {mode!r}; accepted: zeros, reflect, replicate, circular")


def window_offsets(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
                   dilation: int, mode: str = "zeros") -> list[sp.csr_matrix]:
    """One (n_out x n_in) 0/1 matrix per kernel offset k: output o reads input o*s - p + d*k."""
    out = np.arange(n_out)
    mats = []
    for k in range(kernel):
        idx = padded_index(out * stride - padding + dilation * k, n_in, mode)
        keep = idx >= 0
        mats.append(sp.csr_matrix((np.ones(keep.sum(), dtype=bool), (out[keep], idx[keep])), shape=(n_out, n_in)))
    return mats


def window(n_in: int, n_out: int, kernel: int, stride: int, padding: int,
           dilation: int, mode: str = "zeros") -> Factor:
    """Union over kernel offsets of :func:`window_offsets`: the per-axis window factor."""
    total = sp.csr_matrix((n_out, n_in), dtype=bool)
    for mat in window_offsets(n_in, n_out, kernel, stride, padding, dilation, mode):
        total = total + mat
    return Factor.of(total.astype(bool))


def adaptive_window(n_in: int, n_out: int) -> Factor:
    """Adaptive pooling: output o reads inputs floor(o*n/m) .. ceil((o+1)*n/m) - 1."""
    o = np.arange(n_out)
    start = (o * n_in) // n_out
    stop = -((-(o + 1) * n_in) // n_out)
    i = np.arange(n_in)
    return Factor.of((i[None, :] >= start[:, None]) & (i[None, :] < stop[:, None]))


def ceil_mode(params: dict, in_shape: tuple, out_shape: tuple) -> bool:
    """Whether a pooling's recorded output size needs ceil_mode (inferred from the shapes)."""
    nd = params["nd"]
    padding = resolved_padding(params)
    for a in range(nd):
        n = in_shape[-nd + a]
        span = n + 2 * padding[a] - params["dilation"][a] * (params["kernel"][a] - 1) - 1
        if out_shape[-nd + a] != span // params["stride"][a] + 1:
            return True
    return False
