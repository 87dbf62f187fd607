"""Attention (kinds ``attention`` and ``multihead_attention``): which queries, keys and values each output reads.

Softmax attention ``out_i = sum_j softmax_j(q_i . k_j) v_j`` over the keys
``j`` that row ``i`` may attend to (all, the causal ``j <= i``, or a
constant mask): output row ``i`` reads its query row, every allowed key row
and every allowed value row. A row that may attend to a single key reads
neither its query nor the keys (its softmax weight is 1 whatever the
scores). Both kinds are Kronecker blocks: a factor from the mask on the
sequence axes, identity on batch and head axes, and on the feature axis
all-ones or identity (see each kind). Linear part: 1 on every edge (the
output is not linear in the queries and keys).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import LinearPart, OperationKind, bind
from nsp.operations.blocks import Kron, union
from nsp.operations.kronecker import Factor


def _plain(allowed) -> list | None:
    return None if allowed is None else np.asarray(allowed, dtype=bool).astype(int).tolist()


def _row_factors(mask, rows: int, cols: int) -> tuple:
    """Sequence-axis factors ``(values, keys, queries)`` from a stored allowed pattern (None: every key)."""
    return _factors(np.ones((rows, cols), dtype=bool) if mask is None else np.asarray(mask, dtype=bool), 0)


def _factors(allowed: np.ndarray, extra: int) -> tuple:
    """The same from a boolean (rows x cols) pattern, with ``extra`` keys that are not read from the input."""
    scored = allowed.sum(axis=1) + extra > 1       # rows whose softmax has more than one term
    return Factor.of(allowed), Factor.of(allowed & scored[:, None]), Factor.of(np.diag(scored))


def _allowed(mask: torch.Tensor, rows: int, cols: int) -> np.ndarray | None:
    """The (rows x cols) keys each query may attend to under a boolean mask (True: attends) or an additive
    float mask (a finite value changes the scores, not which keys are read; -inf removes a key); None
    where the pattern is not the same for every leading index (batch, head)."""
    if mask.dtype == torch.bool:
        pattern = mask
    elif mask.is_floating_point():
        pattern = torch.isfinite(mask)
    else:
        return None
    if pattern.dim() < 2:
        pattern = pattern.reshape((1,) * (2 - pattern.dim()) + tuple(pattern.shape))
    pattern = torch.broadcast_to(pattern, tuple(pattern.shape[:-2]) + (rows, cols)).reshape(-1, rows, cols)
    if not bool((pattern == pattern[:1]).all()):
        return None
    return pattern[0].cpu().numpy()


class Attention(OperationKind):
    """``F.scaled_dot_product_attention(q, k, v)`` (kind ``attention``).

    ``out[..., i, :]`` reads the whole row ``i`` of ``q``, every key row ``j`` of ``k`` (all features) and
    feature ``d`` of every value row ``j``, for the rows ``j`` the mask lets ``i`` attend to (all, the
    causal ``j <= i``, or a constant mask: boolean, or additive where -inf removes a key and a finite value
    keeps it); a row that attends to a single key reads neither
    its query nor the keys (its softmax weight is 1). Leading axes: identity, or all-ones from a broadcast
    size-1 axis. Linear part: 1 (not linear).
    """

    name = "attention"
    positional = True
    functions = {torch.nn.functional.scaled_dot_product_attention}

    def function_params(self, target, args, kwargs):
        if target not in self.functions:
            return None
        bound = bind(("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"), args, kwargs)
        q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
        mask = bound.get("attn_mask")
        if not all(isinstance(t, torch.Tensor) and t.dim() >= 2 for t in (q, k, v)) or bound.get("enable_gqa"):
            return None
        rows, cols = q.shape[-2], k.shape[-2]
        if mask is not None:
            allowed = _allowed(mask, rows, cols)
            if allowed is None:
                return None             # a pattern that differs between heads or samples: the Jacobian fallback
        elif bound.get("is_causal"):
            allowed = np.tril(np.ones((rows, cols), dtype=bool))
        else:
            allowed = None
        return {"q": list(q.shape), "k": list(k.shape), "v": list(v.shape), "mask": _plain(allowed)}

    def blocks(self, op, inputs, incl, limit):
        if any(r > 2 for roles in op.params["roles"] for r in roles):   # a mask computed from the input
            from nsp.operations.jacobian import jacobian_blocks
            return jacobian_blocks(op, inputs, incl, limit)
        out = tuple(op.out_shape)
        shapes = [tuple(op.params[n]) for n in ("q", "k", "v")]
        attend, keys, queries = _row_factors(op.params.get("mask"), shapes[0][-2], shapes[1][-2])
        blocks = []
        for roles in op.params["roles"]:
            parts = []
            for r in roles:
                shape = shapes[r]
                padded = (1,) * (len(out) - len(shape)) + shape
                lead = [Factor.eye(n) if p == n else Factor.ones(n, p) for p, n in zip(padded[:-2], out[:-2])]
                if r == 0:
                    tail = [queries, Factor.ones(out[-1], shape[-1])]
                elif r == 1:
                    tail = [keys, Factor.ones(out[-1], shape[-1])]
                else:
                    tail = [attend, Factor.eye(out[-1])]
                parts.append(Kron(tuple(lead + tail)))
            blocks.append(union(parts, parts[0].shape))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        return [LinearPart.rows(1.0) for _ in op.in_shapes]


#: argument names of F.multi_head_attention_forward, in order
_MHA_ARGS = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias",
             "bias_k", "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training",
             "key_padding_mask", "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight",
             "k_proj_weight", "v_proj_weight", "static_k", "static_v", "average_attn_weights", "is_causal")
#: argument names of nn.MultiheadAttention.forward, in order
_MODULE_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
                "is_causal")


class MultiheadAttention(OperationKind):
    """``nn.MultiheadAttention`` and ``F.multi_head_attention_forward`` (kind ``multihead_attention``): the
    attention output (the first item of the returned pair; the averaged weights, the second, have no rule).

    The projections mix all features and the output projection mixes all heads, so output ``(i, e)`` reads
    every feature of query row ``i``, of every allowed key row and of every allowed value row; the batch
    axis is an identity. Allowed: every key, minus those a boolean or ``-inf`` ``attn_mask`` (2-D, or 3-D
    per head: their union) or ``key_padding_mask`` excludes, or the causal pattern where ``is_causal``
    says the mask is causal. Learned ``bias_k``/``bias_v`` and ``add_zero_attn`` add keys that are not
    read from the input (a row then always has more than one softmax term). ``static_k``/``static_v``:
    no rule.
    """

    name = "multihead_attention"
    positional = True
    modules = (nn.MultiheadAttention,)
    functions = {F.multi_head_attention_forward}
    pieces = (0,)

    def module_params(self, module):
        return None                     # only a call (with its arguments) is described

    def call_params(self, module, args, kwargs):
        if not isinstance(module, nn.MultiheadAttention):
            return None
        bound = bind(_MODULE_ARGS, args, kwargs)
        extra = int(module.bias_k is not None) + int(module.add_zero_attn)
        return _mha_params(bound, module.batch_first, extra)

    def function_params(self, target, args, kwargs):
        if target not in self.functions:
            return None
        bound = bind(_MHA_ARGS, args, kwargs)
        if bound.get("static_k") is not None or bound.get("static_v") is not None:
            return None
        extra = int(bound.get("bias_k") is not None) + int(bool(bound.get("add_zero_attn")))
        return _mha_params(bound, False, extra)

    def blocks(self, op, inputs, incl, limit):
        out = tuple(op.out_shape)
        shapes = [tuple(op.params[n]) for n in ("q", "k", "v")]
        seq = op.params["seq_axis"]
        allowed = np.asarray(op.params["allowed"], dtype=bool)
        values, keys, queries = _factors(allowed, op.params["extra"])
        blocks = []
        for roles in op.params["roles"]:
            parts = []
            for r in roles:
                shape = shapes[r]
                factors = [Factor.eye(n) for n in out]
                factors[seq] = (queries, keys, values)[r]
                factors[-1] = Factor.ones(out[-1], shape[-1])
                parts.append(Kron(tuple(factors)))
            blocks.append(union(parts, parts[0].shape))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        return [LinearPart.rows(1.0) for _ in op.in_shapes]


def _mha_params(bound: dict, batch_first: bool, extra: int) -> dict | None:
    q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
    if not all(isinstance(t, torch.Tensor) and t.dim() in (2, 3) and t.dim() == q.dim() for t in (q, k, v)):
        return None
    seq = 1 if batch_first and q.dim() == 3 else 0
    rows, cols = q.shape[seq], k.shape[seq]
    allowed = np.ones((rows, cols), dtype=bool)
    mask, padding = bound.get("attn_mask"), bound.get("key_padding_mask")
    if bound.get("is_causal") and mask is not None and padding is None and not bound.get("need_weights", True):
        allowed = np.tril(allowed)      # the mask is taken to be causal: the causal pattern is applied
    elif mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dim() not in (2, 3) or tuple(mask.shape[-2:]) != (rows, cols):
            return None
        blocked = mask if mask.dtype == torch.bool else torch.isneginf(mask)
        allowed &= ~blocked.reshape(-1, rows, cols).all(dim=0).cpu().numpy()    # union over heads
    if padding is not None:
        if not isinstance(padding, torch.Tensor) or padding.numel() != cols:
            return None                 # per-sample padding of a batch of several: no single pattern
        blocked = padding if padding.dtype == torch.bool else torch.isneginf(padding)
        allowed &= ~blocked.reshape(1, cols).cpu().numpy()
    return {"q": list(q.shape), "k": list(k.shape), "v": list(v.shape), "seq_axis": seq, "extra": extra,
            "allowed": _plain(allowed)}
