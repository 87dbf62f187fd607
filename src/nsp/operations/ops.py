"""Normalised descriptions of the operations that produce layers.

Tracing (``nsp.tracing``) meets operations in three guises: child modules,
torch functions and tensor methods. This module turns each into an
:class:`Op`: a kind that names a connectivity rule (``nsp.connectivity``),
the parameters that rule needs, and the shapes the operation saw. Anything
without a rule becomes kind ``"jacobian"``, which the connectivity module
handles from the Jacobian's nonzero pattern.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True, eq=False)
class Op:
    """One operation of the network as the graph builder sees it.

    ``in_shapes`` and ``out_shape`` are the full tensor shapes (batch axis
    included) of the operation's tensor inputs, one per parent layer, and of
    its output. ``evaluate(inputs, randomize)`` recomputes the output from
    input tensors of those shapes; with ``randomize`` the operation's
    parameters are replaced by seeded random values (for structural Jacobian
    patterns that must not depend on the trained weights).
    """

    kind: str
    path: str
    params: dict = field(default_factory=dict)
    in_shapes: tuple = ()
    out_shape: tuple = ()
    evaluate: Callable[[Sequence[torch.Tensor], bool], torch.Tensor] | None = None


ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh, nn.Softplus, nn.Softsign,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardshrink, nn.Softshrink,
    nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.Identity, nn.Dropout,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.FeatureAlphaDropout, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
)

_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.prelu, F.rrelu, F.elu, F.selu, F.celu,
    F.gelu, F.silu, F.mish, F.sigmoid, F.tanh, F.softplus, F.softsign, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.hardshrink, F.softshrink, F.tanhshrink,
    F.threshold, F.logsigmoid, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout,
    torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.abs,
    torch.neg, torch.sqrt, torch.rsqrt, torch.square, torch.sin, torch.cos,
    torch.clamp, torch.clip, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum, torch.pow, torch.where,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    operator.pow, operator.iadd, operator.isub, operator.imul, operator.itruediv,
}

_ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log",
    "abs", "neg", "sqrt", "square", "clamp", "clamp_", "clip", "add", "add_", "sub",
    "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum", "float",
    "double", "half", "to", "type_as", "clone", "detach", "contiguous",
}

_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
_SOFTMAX_FUNCTIONS = {F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax}

_CONV_FUNCTIONS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3}
_MAXPOOL_FUNCTIONS = {F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3}
_AVGPOOL_FUNCTIONS = {F.avg_pool1d: 1, F.avg_pool2d: 2, F.avg_pool3d: 3}
_ADAPTIVE_FUNCTIONS = {
    F.adaptive_avg_pool1d: ("adaptive_avgpool", 1), F.adaptive_avg_pool2d: ("adaptive_avgpool", 2),
    F.adaptive_avg_pool3d: ("adaptive_avgpool", 3), F.adaptive_max_pool1d: ("adaptive_maxpool", 1),
    F.adaptive_max_pool2d: ("adaptive_maxpool", 2), F.adaptive_max_pool3d: ("adaptive_maxpool", 3),
}

# Positional parameter names of the functional forms, for binding fx call arguments.
_SIGNATURES = {
    "conv": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "maxpool": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avgpool": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "adaptive": ("input", "output_size", "return_indices"),
    "linear": ("input", "weight", "bias"),
    "layer_norm": ("input", "normalized_shape", "weight", "bias", "eps"),
    "softmax": ("input", "dim"),
    "cat": ("tensors", "dim"),
    "batch_norm": ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
}
_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "groups": 1, "dim": 0}


def _bind(signature: str, args: Sequence, kwargs: dict) -> dict:
    names = _SIGNATURES[signature]
    bound = dict(_DEFAULTS)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _tuple(value, nd: int) -> tuple:
    if isinstance(value, (tuple, list)):
        if len(value) == 1:
            return tuple(value) * nd
        return tuple(value)
    return (value,) * nd


def _window_params(nd: int, kernel, stride, padding, dilation=1) -> dict:
    kernel = _tuple(kernel, nd)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _tuple(stride, nd)
    return {
        "nd": nd, "kernel": kernel, "stride": stride,
        "padding": padding if isinstance(padding, str) else _tuple(padding, nd),
        "dilation": _tuple(dilation, nd),
    }


def module_params(module: nn.Module) -> tuple[str, dict]:
    """Kind and rule parameters of a module; ``("jacobian", {})`` if it has no rule."""
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        nd = len(module.kernel_size)
        params = _window_params(nd, module.kernel_size, module.stride, module.padding, module.dilation)
        params.update(groups=module.groups, padding_mode=module.padding_mode, weight=module.weight)
        return "conv", params
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        nd = int(type(module).__name__[-2])
        return "maxpool", _window_params(nd, module.kernel_size, module.stride, module.padding, module.dilation)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        nd = int(type(module).__name__[-2])
        return "avgpool", _window_params(nd, module.kernel_size, module.stride, module.padding)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return "adaptive_avgpool", {"nd": int(type(module).__name__[-2])}
    if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)):
        return "adaptive_maxpool", {"nd": int(type(module).__name__[-2])}
    if isinstance(module, nn.Linear):
        return "linear", {"weight": module.weight}
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return "reshape", {}
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None):
        return "reduce", {"keep": (1,)}    # batch statistics: each channel over batch and space
    if isinstance(module, (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)):
        return "reduce", {"last": int(type(module).__name__[-2])}   # each (sample, channel) over space
    if isinstance(module, ELEMENTWISE_MODULES):
        return "elementwise", {}
    if isinstance(module, nn.LayerNorm):
        return "reduce", {"last": len(module.normalized_shape)}
    if isinstance(module, (nn.Softmax, nn.LogSoftmax, nn.Softmin)) and module.dim is not None:
        return "reduce", {"dims": (module.dim,)}
    return "jacobian", {}


def function_params(target: Any, args: Sequence, kwargs: dict) -> tuple[str, dict]:
    """Kind and rule parameters of a call_function target (args hold values)."""
    if target in _ELEMENTWISE_FUNCTIONS:
        return "elementwise", {}
    if target is F.batch_norm:
        b = _bind("batch_norm", args, kwargs)
        if b.get("training") or b.get("running_mean") is None:
            return "reduce", {"keep": (1,)}
        return "elementwise", {}
    if target in _RESHAPE_FUNCTIONS:
        return "reshape", {}
    if target in _CAT_FUNCTIONS:
        return "cat", {"dim": _bind("cat", args, kwargs)["dim"]}
    if target in _SOFTMAX_FUNCTIONS:
        dim = _bind("softmax", args, kwargs).get("dim")
        return ("reduce", {"dims": (dim,)}) if dim is not None else ("jacobian", {})
    if target is F.layer_norm:
        return "reduce", {"last": len(_tuple(_bind("layer_norm", args, kwargs)["normalized_shape"], 1))}
    if target in _CONV_FUNCTIONS:
        nd = _CONV_FUNCTIONS[target]
        b = _bind("conv", args, kwargs)
        if b["stride"] is None:
            b["stride"] = 1
        params = _window_params(nd, tuple(b["weight"].shape[2:]), b["stride"], b["padding"], b["dilation"])
        params.update(groups=b["groups"], padding_mode="zeros", weight=b["weight"])
        return "conv", params
    if target in _MAXPOOL_FUNCTIONS:
        b = _bind("maxpool", args, kwargs)
        if b.get("return_indices"):
            return "jacobian", {}
        return "maxpool", _window_params(_MAXPOOL_FUNCTIONS[target], b["kernel_size"], b["stride"], b["padding"], b["dilation"])
    if target in _AVGPOOL_FUNCTIONS:
        b = _bind("avgpool", args, kwargs)
        return "avgpool", _window_params(_AVGPOOL_FUNCTIONS[target], b["kernel_size"], b["stride"], b["padding"])
    if target in _ADAPTIVE_FUNCTIONS:
        kind, nd = _ADAPTIVE_FUNCTIONS[target]
        if _bind("adaptive", args, kwargs).get("return_indices"):
            return "jacobian", {}
        return kind, {"nd": nd}
    if target is F.linear:
        return "linear", {"weight": _bind("linear", args, kwargs)["weight"]}
    return "jacobian", {}


def method_params(name: str, args: Sequence, kwargs: dict) -> tuple[str, dict]:
    """Kind and rule parameters of a call_method (``args[0]`` is the tensor)."""
    if name in _ELEMENTWISE_METHODS:
        return "elementwise", {}
    if name in _RESHAPE_METHODS:
        return "reshape", {}
    if name in ("softmax", "log_softmax"):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        return ("reduce", {"dims": (dim,)}) if dim is not None else ("jacobian", {})
    return "jacobian", {}


def function_name(target: Any) -> str:
    """A readable name for a call_function target."""
    name = getattr(target, "__name__", None) or repr(target)
    if name == "fn" and target in _MAXPOOL_FUNCTIONS:  # boolean_dispatch wrappers
        name = f"max_pool{_MAXPOOL_FUNCTIONS[target]}d"
    if name == "fn" and target in _ADAPTIVE_FUNCTIONS:
        kind, nd = _ADAPTIVE_FUNCTIONS[target]
        name = f"adaptive_max_pool{nd}d"
    return name
