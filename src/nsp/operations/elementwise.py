"""Elementwise operations (activations, arithmetic, comparisons, eval-mode batch norm, dropout, identity, casts).

Output neuron ``i`` reads neuron ``i`` of every input, broadcasting over
size-1 axes. Linear part: where the operation can be affine by what it is
(identity, dropout in eval mode, eval-mode batch norm, adding, subtracting,
multiplying or dividing, casts) the coefficient is measured by evaluating
it, and confirmed affine on a few points; every other operation (ReLU,
hardsigmoid, GELU, ...) is not affine, whatever a few points would suggest,
and has weight 1.
"""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.operations.base import LinearPart, OperationKind, bind
from nsp.operations.blocks import Kron
from nsp.operations.kronecker import Factor

#: relative tolerance of the affinity test of elementwise operations
AFFINE_RTOL = 1e-5

MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Identity, nn.Dropout,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)

FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.prelu, F.rrelu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, F.sigmoid, F.tanh, F.softplus, F.softsign, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.hardshrink, F.softshrink, F.tanhshrink,
    F.threshold, F.logsigmoid, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.abs,
    torch.neg, torch.sqrt, torch.rsqrt, torch.square, torch.sin, torch.cos,
    torch.clamp, torch.clip, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum, torch.pow, torch.where, torch.addcmul, torch.addcdiv, torch.lerp,
    torch.erf, torch.reciprocal, torch.floor, torch.ceil, torch.round, torch.sign, torch.log1p, torch.expm1,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    operator.pow, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge, torch.logical_not, torch.logical_and,
    torch.logical_or, torch.masked_fill, operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge,
}

METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log",
    "abs", "neg", "sqrt", "square", "clamp", "clamp_", "clip", "add", "add_", "sub",
    "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum", "float",
    "double", "half", "to", "type_as", "clone", "detach", "contiguous", "addcmul", "addcmul_", "addcdiv",
    "lerp", "erf", "reciprocal", "rsqrt", "floor", "ceil", "round", "sign", "log1p", "expm1", "sin", "cos",
    "gelu", "silu", "hardswish", "mish", "softplus", "masked_fill", "masked_fill_",
    "eq", "ne", "lt", "le", "gt", "ge", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
    "logical_not", "logical_and", "logical_or", "bool", "long", "int",
}

#: what can be affine in an input by what it is (the coefficient is then measured); the rest is not
AFFINE_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                  nn.FeatureAlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
AFFINE_FUNCTIONS = {
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, operator.add, operator.sub, operator.mul,
    operator.truediv, operator.neg, operator.iadd, operator.isub, operator.imul, operator.itruediv,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
}
AFFINE_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "float", "double", "half",
                  "to", "type_as", "clone", "detach", "contiguous"}

BATCH_NORM_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")


def batch_statistics(args, kwargs) -> bool:
    """Whether a functional batch norm call normalises with the batch's own statistics."""
    b = bind(BATCH_NORM_ARGS, args, kwargs)
    return bool(b.get("training")) or b.get("running_mean") is None


class Elementwise(OperationKind):
    name = "elementwise"
    modules = MODULES
    functions = FUNCTIONS
    methods = METHODS

    def module_params(self, module):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.training or module.running_mean is None:
                return None             # batch statistics: a reduction (nsp.operations.normalization)
            return {"affine": True, "scale": batch_norm_scale(module.running_var, module.weight, module.eps)}
        params = super().module_params(module)
        return None if params is None else {"affine": isinstance(module, AFFINE_MODULES)}

    def function_params(self, target, args, kwargs):
        if target is F.batch_norm and not batch_statistics(args, kwargs):
            b = bind(BATCH_NORM_ARGS, args, kwargs, eps=1e-5)
            return {"affine": True, "scale": batch_norm_scale(b["running_var"], b.get("weight"), b["eps"])}
        if (getattr(target, "__module__", "") or "").startswith("torchvision.ops") and \
                getattr(target, "__name__", "") == "stochastic_depth":
            return {"affine": True}     # identity in eval mode, a per-sample scaling in training
        params = super().function_params(target, args, kwargs)
        return None if params is None else {"affine": target in AFFINE_FUNCTIONS}

    def method_params(self, name, args, kwargs):
        params = super().method_params(name, args, kwargs)
        return None if params is None else {"affine": name in AFFINE_METHODS}

    def blocks(self, op, inputs, incl, limit):
        out = op.out_shape
        blocks = []
        for shape in op.in_shapes:
            padded = (1,) * (len(out) - len(shape)) + tuple(shape)
            blocks.append(Kron(tuple(Factor.eye(n) if p == n else Factor.ones(n, 1) for p, n in zip(padded, out))))
        return blocks

    def linear_parts(self, op, inputs, blocks):
        scale = op.params.get("scale")
        if isinstance(scale, torch.Tensor):     # eval-mode batch norm: gamma / sqrt(var + eps), in float64
            shape = [1] * len(op.out_shape)
            shape[1] = scale.numel()
            return [LinearPart.rows(scale.numpy().reshape(shape))]
        if op.evaluate is None or not op.params.get("affine", True):
            return super().linear_parts(op, inputs, blocks)     # not affine by what it is: weight 1
        return [LinearPart.rows(affine_coefficient(op, inputs, k)) for k in range(len(op.in_shapes))]


def batch_norm_scale(running_var, weight, eps) -> torch.Tensor:
    """The per-channel factor of an eval-mode batch norm, ``weight / sqrt(running_var + eps)``, in float64
    (the network's float32 output would give it to float32 accuracy only)."""
    var = running_var.detach().double().cpu()
    scale = 1.0 / torch.sqrt(var + float(eps))
    return scale * weight.detach().double().cpu() if weight is not None else scale


def affine_coefficient(op, inputs, k: int):
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
