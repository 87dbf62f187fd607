"""Edge weights: the linear part of each operation (``docs/graph.md``, "Edge weights").

For every (layer, parent) block the graph core keeps a :class:`LinearPart`,
the coefficients with which the layer's output depends linearly on that
parent:

- ``conv``: the kernel (no bias), applied as a convolution;
- ``linear``: the weight matrix (no bias);
- ``max`` (max pooling): 1 on the input that won; the graph records the
  winners of the input it was built from, the transform takes each sample's
  own winners (so a max pooling adds nothing);
- ``rows``: every structural edge into output ``o`` weighs ``r[o]``, with
  ``r`` broadcastable to the output shape. Average pooling: ``1 / divisor``;
  elementwise operations that are affine in a parent (batch norm in eval
  mode, dropout in eval mode, ``x * 0.5``, ``a + b``, ``a - b`` …): their
  exact coefficient (found by evaluating the operation at a few points);
  nonlinear elementwise operations (ReLU, sigmoid, ``a * b`` …), reshapes,
  concatenation, reductions and operations without a rule: 1.

``apply`` computes a part's contribution for a batch of signals;
``edge_values`` lists its weighted edges for the weighted adjacency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from math import prod

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from nsp.operations.connectivity import Kron, _ceil_mode, _resolved_padding

#: relative tolerance of the affinity test of elementwise operations
AFFINE_RTOL = 1e-5


@dataclass
class LinearPart:
    kind: str                                    # conv | linear | max | rows
    arrays: dict = field(default_factory=dict)   # name -> numpy array
    params: dict = field(default_factory=dict)   # JSON-able

    def to_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


def linear_parts(op, inputs, blocks) -> list[LinearPart]:
    """The linear part of ``op`` for each parent (aligned with ``blocks``); unit weights, with the
    reason in ``params['fallback']``, where it cannot be determined."""
    try:
        return _linear_parts(op, inputs, blocks)
    except Exception as err:            # never let edge weights break the graph itself
        return [LinearPart("rows", {"r": np.ones(())}, {"fallback": f"{type(err).__name__}: {err}"})
                for _ in op.in_shapes]


def _linear_parts(op, inputs, blocks) -> list[LinearPart]:
    p = op.params
    if op.kind == "conv":
        padding = p["padding"] if isinstance(p["padding"], str) else list(p["padding"])
        return [LinearPart("conv", {"weight": _numpy(p["weight"])},
                           {"nd": p["nd"], "stride": list(p["stride"]), "padding": padding,
                            "dilation": list(p["dilation"]), "groups": p["groups"],
                            "padding_mode": p["padding_mode"], "kernel": list(p["kernel"])})]
    if op.kind == "linear":
        return [LinearPart("linear", {"weight": _numpy(p["weight"])})]
    if op.kind in ("maxpool", "adaptive_maxpool"):
        return [_max_part(op, inputs[0])]
    if op.kind in ("avgpool", "adaptive_avgpool") and op.evaluate is not None:
        ones = torch.ones(tuple(op.in_shapes[0]), dtype=torch.float64)
        with torch.no_grad():
            total = op.evaluate((ones,), False).double().numpy().reshape(-1)
        counts = np.bincount(blocks[0].coo()[0], minlength=total.size)
        r = np.divide(total, counts, out=np.zeros_like(total), where=counts > 0)
        return [_rows(r.reshape(op.out_shape))]
    if op.kind == "elementwise" and op.evaluate is not None:
        return [_rows(_affine_coefficient(op, inputs, k)) for k in range(len(op.in_shapes))]
    return [_rows(np.ones(())) for _ in op.in_shapes]


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy().copy()


def _rows(r) -> LinearPart:
    """A ``rows`` part with ``r`` shrunk to its smallest broadcastable shape."""
    r = np.asarray(r, dtype=np.float64)
    for axis in range(r.ndim):
        first = r.take([0], axis=axis)
        if np.array_equal(r, np.broadcast_to(first, r.shape)):
            r = first
    if r.size == 1:
        r = r.reshape(())
    return LinearPart("rows", {"r": np.array(r, dtype=np.float64, order="C")})


def _affine_coefficient(op, inputs, k: int):
    """Coefficient of input ``k`` if the operation is affine in it (whatever the other inputs), else 1.

    Affinity is checked with the other inputs at zero and at their recorded values; the coefficient
    is taken with the others at zero (``a - b`` then gives exactly -1).
    """
    dtype = inputs[k].dtype if inputs[k].is_floating_point() else torch.float64
    settings = [[torch.zeros(tuple(s), dtype=dtype) for s in op.in_shapes],
                [x.detach().clone().reshape(tuple(s)) for x, s in zip(inputs, op.in_shapes)]]
    coefficient = None
    for others in settings:
        def f(t):
            values = list(others)
            values[k] = torch.full(tuple(op.in_shapes[k]), float(t), dtype=dtype)
            try:
                with torch.no_grad():
                    return op.evaluate(tuple(values), False).double().numpy()
            except Exception:            # an operation that cannot take these values is not affine
                return None
        points = {t: f(t) for t in (-2, -1, 0, 1, 2)}
        if any(v is None or not np.all(np.isfinite(v)) for v in points.values()):
            return np.ones(())
        a = points[1] - points[0]
        scale = max(1.0, *(float(np.abs(v).max(initial=0)) for v in points.values()))
        if any(np.abs(points[t] - points[0] - a * t).max(initial=0) > AFFINE_RTOL * scale for t in points):
            return np.ones(())
        if coefficient is not None and np.abs(coefficient - a).max(initial=0) > AFFINE_RTOL * scale:
            return np.ones(())
        coefficient = a if coefficient is None else coefficient
    return coefficient


def _max_part(op, x: torch.Tensor) -> LinearPart:
    nd, p = op.params["nd"], op.params
    adaptive = op.kind == "adaptive_maxpool"
    params = {"nd": nd, "adaptive": adaptive, "out": list(op.out_shape[-nd:])}
    if not adaptive:
        params.update(kernel=list(p["kernel"]), stride=list(p["stride"]), padding=list(_resolved_padding(p)),
                      dilation=list(p["dilation"]), ceil_mode=_ceil_mode(op))
    _, idx = _max_pool(torch.as_tensor(x).reshape(tuple(op.in_shapes[0])), params, indices=True)
    return LinearPart("max", {"winners": idx.reshape(-1).cpu().numpy().astype(np.int64)}, params)


def _max_pool(x: torch.Tensor, params: dict, indices: bool = False):
    nd = params["nd"]
    if params["adaptive"]:
        return getattr(F, f"adaptive_max_pool{nd}d")(x, params["out"], return_indices=indices)
    return getattr(F, f"max_pool{nd}d")(x, params["kernel"], params["stride"], params["padding"],
                                        params["dilation"], ceil_mode=params["ceil_mode"], return_indices=indices)


# --- applying a part to a batch ------------------------------------------------------------------

def apply(part: LinearPart, block, x: np.ndarray, in_shape: tuple, out_shape: tuple) -> np.ndarray:
    """The part's contribution ``A[L, p] x`` for a batch ``x`` of shape (B, size of the parent).

    ``in_shape`` and ``out_shape`` are the operation's full shapes (batch axis of size 1 first).
    Returns (B, size of the layer), float64.
    """
    batch = x.shape[0]
    if part.kind == "rows":
        y = _block_product(block, x, in_shape, out_shape).reshape((batch,) + tuple(out_shape[1:]))
        return (y * part.arrays["r"]).reshape(batch, -1)       # r: a scalar or of the full output shape
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape((batch,) + tuple(in_shape[1:]))
    with torch.no_grad():
        if part.kind == "conv":
            y = _conv(t, torch.from_numpy(part.arrays["weight"]), part.params)
        elif part.kind == "linear":
            y = F.linear(t, torch.from_numpy(part.arrays["weight"]))
        elif part.kind == "max":
            y = _max_pool(t, part.params)
        else:
            raise ValueError(f"unknown linear part {part.kind!r}")
    return y.reshape(batch, -1).numpy()


def _conv(x: torch.Tensor, weight: torch.Tensor, p: dict) -> torch.Tensor:
    padding = p["padding"]
    if p["padding_mode"] != "zeros":
        if padding == "same":
            pairs = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(p["kernel"], p["dilation"])]
        elif padding == "valid":
            pairs = [(0, 0)] * p["nd"]
        else:
            pairs = [(q, q) for q in padding]
        x = F.pad(x, [v for pair in reversed(pairs) for v in pair], mode=p["padding_mode"])
        padding = 0
    conv = getattr(F, f"conv{p['nd']}d")
    return conv(x, weight, None, p["stride"], padding, p["dilation"], p["groups"])


def _block_product(block, x: np.ndarray, in_shape: tuple, out_shape: tuple) -> np.ndarray:
    """``B x`` for the 0/1 block ``B`` (Kronecker factors by mode products, else a sparse product)."""
    batch = x.shape[0]
    if isinstance(block, Kron):
        from nsp.transforms.factored import apply_term, Backend
        from nsp.graph.kronecker import Factor
        factors = [Factor.of(f) for f in block.factors]
        y = apply_term(Backend(), np.ascontiguousarray(x).reshape((batch,) + tuple(in_shape)), tuple(factors), {})
        rows = tuple(f.shape[0] for f in factors)         # the block's row axes (a reshape keeps its input's)
        return np.broadcast_to(y, (batch,) + rows).reshape(batch, -1)
    rows, cols = block.coo()
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=block.shape)
    return np.asarray((matrix @ x.T).T)


# --- weighted edges ------------------------------------------------------------------------------

def edge_values(part: LinearPart, block, in_shape: tuple, out_shape: tuple) -> tuple:
    """``(rows, cols, values)`` of the part's weighted edges (duplicates are to be summed)."""
    if part.kind == "rows":
        rows, cols = block.coo()
        r = np.broadcast_to(part.arrays["r"], tuple(out_shape)).reshape(-1)
        return rows, cols, r[rows]
    if part.kind == "max":
        nd = part.params["nd"]
        in_spatial, out_spatial = prod(in_shape[-nd:]), prod(out_shape[-nd:])
        rows = np.arange(prod(out_shape), dtype=np.int64)
        cols = (rows // out_spatial) * in_spatial + part.arrays["winners"]
        return rows, cols, np.ones(rows.size)
    if part.kind == "linear":
        lead = prod(in_shape[:-1])
        matrix = sp.kron(sp.identity(lead), sp.csr_matrix(part.arrays["weight"])).tocoo()
        return matrix.row.astype(np.int64), matrix.col.astype(np.int64), matrix.data
    if part.kind == "conv":
        return _conv_edges(part, in_shape, out_shape)
    raise ValueError(f"unknown linear part {part.kind!r}")


def _conv_edges(part: LinearPart, in_shape: tuple, out_shape: tuple) -> tuple:
    """Kernel entries as edge weights, one Kronecker product per kernel offset."""
    from nsp.operations.connectivity import window_offsets
    p, weight = part.params, part.arrays["weight"]
    nd = p["nd"]
    lead = prod(in_shape[:-nd - 1])
    c_in, c_out = in_shape[-nd - 1], out_shape[-nd - 1]
    padding = _resolved_padding({"padding": p["padding"], "nd": nd, "kernel": p["kernel"], "dilation": p["dilation"]})
    per_axis = [window_offsets(in_shape[-nd + a], out_shape[-nd + a], p["kernel"][a], p["stride"][a], padding[a],
                               p["dilation"][a], p["padding_mode"]) for a in range(nd)]
    groups = p["groups"]
    same_group = (np.arange(c_out)[:, None] // (c_out // groups)) == (np.arange(c_in)[None, :] // (c_in // groups))
    local = np.arange(c_in) % (c_in // groups)
    total = None
    for offset in np.ndindex(*p["kernel"]):
        channel = np.where(same_group, weight[(slice(None), local) + offset], 0.0)
        term = sp.kron(sp.identity(lead), sp.csr_matrix(channel))
        for a, k in enumerate(offset):
            term = sp.kron(term, per_axis[a][k].astype(np.float64))
        total = term if total is None else total + term
    total = total.tocoo()
    return total.row.astype(np.int64), total.col.astype(np.int64), total.data


def weighted_adjacency(core) -> sp.csr_matrix:
    """The weighted adjacency ``A`` (float64 CSR, row = target): the linear part of every edge."""
    if core.linear is None:
        raise ValueError("this graph has no edge weights (it was read from a file written without them)")
    n = core.n_nodes
    rows, cols, vals = [], [], []
    for layer in range(1, core.n_layers):
        for (parent, block), (part, in_shape, out_shape) in zip(core.blocks[layer], core.linear[layer]):
            r, c, v = edge_values(part, block, in_shape, out_shape)
            rows.append(r + core.offsets[layer])
            cols.append(c + core.offsets[parent])
            vals.append(v)
    if not rows:
        return sp.csr_matrix((n, n))
    out = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    out.sum_duplicates()
    return out
