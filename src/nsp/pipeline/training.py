"""Deterministic training of zoo models (seconds on two cores), with held-out test accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from nsp.errors import DatasetError, InputError


def split(n: int, test_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: every ``test_every``-th sample is held out."""
    index = np.arange(n)
    test = index % test_every == 0
    return index[~test], index[test]


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = model(inputs).argmax(dim=1).numpy()
    return float(np.mean(predicted == labels)) if len(labels) else float("nan")


def check_labels(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray, what: str = "") -> None:
    """Refuse labels that are not class indices of the network: each must be in 0..C-1, where C is the
    number of outputs of the network (read from its output for the first input)."""
    prefix = f"{what}: " if what else ""
    labels = np.asarray(labels)
    was_training = model.training
    with torch.no_grad():
        outputs = model.eval()(inputs[:1])
    model.train(was_training)
    if outputs.dim() < 2:
        return                                            # no class axis: cross-entropy says what is wrong
    classes = int(outputs.shape[1])
    bad = (labels < 0) | (labels >= classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{prefix}label {labels[i].item()} of sample {i} is out of range: the network has "
                           f"{classes} outputs (labels 0..{classes - 1})")


def train(model: nn.Module, inputs: torch.Tensor, labels: np.ndarray, *, epochs: int, batch_size: int,
          learning_rate: float, seed: int, test_every: int, what: str = "") -> dict:
    """Train with Adam and cross-entropy on the training split; returns the metrics. Too few samples to
    train and test on, labels that are not class indices of the network (:func:`check_labels`; ``what``
    names the model and dataset in its message), or weights that diverge to NaN or infinity, are errors."""
    if len(labels) < 2:
        raise DatasetError(f"{len(labels)} labelled samples: training needs at least two (one held out for testing)")
    check_labels(model, inputs, labels, what)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    train_idx, test_idx = split(len(labels), test_every)
    x, y = inputs[train_idx], torch.from_numpy(labels[train_idx])
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    diverged = [name for name, value in model.state_dict().items() if not torch.isfinite(value).all()]
    if diverged:
        more = " ..." if len(diverged) > 3 else ""
        raise InputError(f"training diverged: {', '.join(diverged[:3])}{more} hold NaN or infinite values after "
                         f"{epochs} epochs (try a lower learning_rate)")
    return {"epochs": epochs, "train_samples": int(len(train_idx)), "test_samples": int(len(test_idx)),
            "train_accuracy": accuracy(model, x, labels[train_idx]),
            "test_accuracy": accuracy(model, inputs[test_idx], labels[test_idx])}
