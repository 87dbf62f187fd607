"""Checks made before and around a recording, and the messages they give.

The network must be a module; modules that behave differently in training mode, and NaN or infinite input
values, are reported as warnings (the recording goes ahead); a forward pass that fails is reported as a
``ValueError`` that says what the network was given.
"""

from __future__ import annotations

import sys
import warnings

import torch
import torch.nn as nn

from nsp.errors import InputTypeError


def check_network(network) -> None:
    """Raise ``TypeError`` unless ``network`` is a ``torch.nn.Module``."""
    if not isinstance(network, nn.Module):
        raise InputTypeError(f"network must be a torch.nn.Module, got {type(network).__name__}")


def training_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of each module of ``network`` in training mode whose output depends on that mode:
    dropout with p > 0 (also inside nn.MultiheadAttention and recurrent layers) and batch or instance
    norm with running statistics. Custom modules that read ``self.training`` cannot be told apart."""
    found = []
    for name, module in network.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd):
            depends = module.p > 0
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            depends = module.track_running_stats
        elif isinstance(module, (nn.MultiheadAttention, nn.RNNBase)):
            depends = module.dropout > 0
        else:
            depends = False
        if depends:
            found.append((name, module))
    return found


def warn_training(network: nn.Module) -> None:
    """A UserWarning naming the modules of ``network`` that run differently in training mode, if any."""
    found = training_modules(network)
    if not found:
        return
    named = [f"{name!r} ({type(m).__name__})" if name else f"the network itself ({type(m).__name__})"
             for name, m in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    _warn(f"{type(network).__name__} is in training mode; modules that run differently in training than in "
          f"evaluation: {', '.join(named)}{more} ({len(found)} in all). It is recorded as it is, in training "
          f"mode (dropout active, batch norm with the batch's own statistics); its buffers (running statistics) "
          f"are left unchanged. Call network.eval() first to record it as used for inference")


def warn_non_finite(inputs: torch.Tensor) -> None:
    """A UserWarning counting the NaN and infinite values of ``inputs``, if any."""
    if not (inputs.is_floating_point() or inputs.is_complex()):
        return
    nan = int(torch.isnan(inputs).sum())
    inf = int(torch.isinf(inputs).sum())
    if nan or inf:
        _warn(f"the input holds {nan} NaN and {inf} infinite values (of {inputs.numel()}); they are recorded "
              f"as they are, and activations computed from them may be NaN or infinite too")


def _warn(message: str) -> None:
    """``warnings.warn`` pointing at the first caller outside the nsp package."""
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("nsp."):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def forward_failed(network, input, err) -> ValueError:
    """The error to raise where ``network`` failed on ``input`` with ``err``: what it was given, and a hint
    where it is in training mode."""
    training = "; it is in training mode: call network.eval() first if it should run as for inference" \
        if training_modules(network) else ""
    return ValueError(
        f"{type(network).__name__} failed on an input of shape {tuple(input.shape)} "
        f"({type(err).__name__}: {err}); pass samples in the shape the network expects, "
        f"after a leading batch axis{training}")
