"""Shared set-up of the benchmarks: the reference MNIST network and synthetic inputs."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import nsp
from nsp.zoo import MnistNet, load_state_npz

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "network_mnist_1.npz"


def timed(fn, repeats: int = 1):
    """Best wall time of ``repeats`` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None                      # the previous result is not held while the next call runs
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def mnist_net() -> tuple[torch.nn.Module, str]:
    """The reference MNIST network: the fixture's trained weights where ../shared has them."""
    net = MnistNet()
    if FIXTURE.is_file():
        return load_state_npz(net, FIXTURE), "fixture weights"
    torch.manual_seed(0)
    return net.eval(), "random weights (fixture absent)"


def mnist_core():
    net, _ = mnist_net()
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return nsp.NNGraph(nsp.Activations(net, x)).core


def synthetic_images(samples: int, seed: int = 0) -> torch.Tensor:
    """Binary 28x28 images of smooth random strokes (no dataset download needed)."""
    images = torch.rand(samples, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    images = F.avg_pool2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return (images > 0.55).float()


class ConvStack(nn.Module):
    """``depth`` 3x3 convolutions (padding 1) with ReLU; optionally max pooling and a linear head."""

    def __init__(self, in_channels: int, channels: int, depth: int, head: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1)
                                   for i in range(depth))
        self.pool = nn.MaxPool2d(2) if head else None
        self.head = nn.LazyLinear(10) if head else None

    def forward(self, x):
        for conv in self.convs:
            x = F.relu(conv(x))
        if self.head is None:
            return x
        return self.head(torch.flatten(self.pool(x), 1))
