"""Networks of the reference package, for tests, benchmarks and the demo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ToyNet(nn.Module):
    """The reference's toy network: Conv2d(1,2,k=2) -> sigmoid -> Conv2d(2,8,k=2)
    -> sigmoid -> view(-1, 32) -> Linear(32, 8), for 1x1x4x4 inputs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, kernel_size=2)
        self.conv2 = nn.Conv2d(2, 8, kernel_size=2)
        self.fc = nn.Linear(32, 8)

    def forward(self, x):
        x = torch.sigmoid(self.conv1(x))
        x = torch.sigmoid(self.conv2(x))
        return self.fc(x.view(-1, 32))


class MnistNet(nn.Module):
    """The reference's MNIST network: conv 1->10 k5, ReLU, maxpool 2, conv 10->20 k5,
    ReLU, maxpool 2, linear 320->10 (ReLU applied functionally), for 1x1x28x28 inputs."""

    def __init__(self):
        super().__init__()
        self.cnn1 = nn.Conv2d(1, 10, kernel_size=5)
        self.maxpool1 = nn.MaxPool2d(2)
        self.cnn2 = nn.Conv2d(10, 20, kernel_size=5)
        self.maxpool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(320, 10)

    def forward(self, x):
        x = self.maxpool1(F.relu(self.cnn1(x)))
        x = self.maxpool2(F.relu(self.cnn2(x)))
        return self.fc1(x.view(x.size(0), -1))


def load_state_npz(module: nn.Module, path: str | Path) -> nn.Module:
    """Load a state dict stored as named arrays in an ``.npz`` file (no pickle)."""
    with np.load(path, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in arrays.files}
    module.load_state_dict(state)
    return module.eval()
