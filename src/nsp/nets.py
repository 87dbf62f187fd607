"""The networks of the zoo (:mod:`nsp.zoo` names them): the reference package's and a few of our own."""

from __future__ import annotations

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


class DigitsCNN(nn.Module):
    """A small CNN for 8x8 digits: conv 1->8, pool, conv 8->16, pool, linear 64->10 (ReLU functional)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc(x.view(x.size(0), -1))


class DigitsMLP(nn.Module):
    """An MLP for flattened 8x8 digits: 64 -> 32 -> ReLU -> 10."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ResidualCNN(nn.Module):
    """A residual CNN for 8x8 digits (trace it in ops mode): stem, one residual block, pool, linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
        self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.conv_b(F.relu(self.conv_a(h))))
        return self.fc(torch.flatten(self.pool(h), 1))


class VGGNet(nn.Module):
    """VGG-style network for 3x32x32 images: ``stages`` stages of two 3x3 convolutions
    (each followed by batch norm and ReLU) and a 2x2 max pooling; the width doubles per
    stage up to 8x ``width``; a linear head. The layers are direct children called in
    order, so both trace modes work."""

    def __init__(self, width: int = 8, stages: int = 4, classes: int = 10):
        super().__init__()
        self.order = []
        channels = 3
        for stage in range(1, stages + 1):
            out = width * 2 ** min(stage - 1, 3)
            for conv in (1, 2):
                self._add(f"conv{stage}_{conv}", nn.Conv2d(channels, out, 3, padding=1))
                self._add(f"bn{stage}_{conv}", nn.BatchNorm2d(out))
                self._add(f"relu{stage}_{conv}", nn.ReLU())
                channels = out
            self._add(f"pool{stage}", nn.MaxPool2d(2))
        side = 32 >> stages
        self.fc = nn.Linear(channels * side * side, classes)

    def _add(self, name: str, module: nn.Module) -> None:
        self.add_module(name, module)
        self.order.append(name)

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the input (through a strided 1x1
    convolution where the shape changes), then ReLU."""

    def __init__(self, channels: int, out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out)
        self.conv2 = nn.Conv2d(out, out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)
        self.shortcut = (nn.Conv2d(channels, out, 1, stride=stride, bias=False)
                         if stride != 1 or channels != out else None)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + skip)


class ResNet(nn.Module):
    """ResNet-style network for 3x32x32 images (trace it in ops mode): a 3x3 stem, three
    stages of ``blocks`` basic blocks at widths ``width``, 2x, 4x (strides 1, 2, 2),
    global average pooling and a linear head."""

    def __init__(self, width: int = 8, blocks: int = 1, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        stages, channels = [], width
        for stage in range(3):
            out = width * 2 ** stage
            for block in range(blocks):
                stages.append(BasicBlock(channels, out, 2 if stage and not block else 1))
                channels = out
        self.blocks = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, x):
        h = F.relu(self.bn(self.stem(x)))
        return self.fc(torch.flatten(self.pool(self.blocks(h)), 1))
