"""Datasets for the pipeline: bundled digits and photographs, user arrays, local torchvision datasets.

Nothing is downloaded: scikit-learn ships the 1,797 digits and two photographs
(cut into 32x32 RGB tiles for the CIFAR-sized networks); user arrays and
torchvision files must be on disk.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F


def load(spec: dict, name: str = "dataset") -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs (float32, samples first) and labels (int64 or None) of a config dataset entry,
    scaled and normalised as configured."""
    source = spec["source"]
    if source == "sklearn-digits":
        from sklearn.datasets import load_digits
        digits = load_digits()
        inputs, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
    elif source == "sklearn-photos":
        inputs, labels = photo_tiles()
    elif source.startswith("torchvision:"):
        inputs, labels = _torchvision(source.split(":", 1)[1], spec.get("root", "data"), name)
    else:
        inputs, labels = _arrays(Path(source), spec.get("inputs_key", "inputs"), spec.get("labels_key", "labels"), name)
    if spec.get("limit"):
        inputs = inputs[: spec["limit"]]
        labels = None if labels is None else labels[: spec["limit"]]
    inputs = (inputs * np.float32(spec.get("scale", 1.0)) - np.float32(spec.get("mean", 0.0))) / np.float32(spec.get("std", 1.0))
    return inputs.astype(np.float32), labels


def photo_tiles(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``size`` x ``size`` RGB tiles (N, 3, size, size; values 0..255) of the two
    photographs scikit-learn ships (china.jpg, flower.jpg; the label is the photograph), taken row by
    row and interleaved (china, flower, china, ...) so that any first N tiles hold both classes."""
    from sklearn.datasets import load_sample_images
    tiles, labels = [], []
    for label, image in enumerate(load_sample_images().images):
        rows, cols = image.shape[0] // size, image.shape[1] // size
        grid = image[:rows * size, :cols * size].reshape(rows, size, cols, size, 3)
        tiles.append(grid.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, size, size))
        labels.append(np.full(rows * cols, label, dtype=np.int64))
    count = min(len(t) for t in tiles)
    inputs = np.stack([t[:count] for t in tiles], axis=1).reshape(-1, 3, size, size)
    return inputs.astype(np.float32), np.stack([l[:count] for l in labels], axis=1).reshape(-1)


def _arrays(path: Path, inputs_key: str, labels_key: str, name: str):
    if not path.is_file():
        raise FileNotFoundError(f"dataset {name}: {path} does not exist (sources: sklearn-digits, sklearn-photos, "
                                f"a .npz or .h5 file, torchvision:MNIST|FashionMNIST|CIFAR10)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if inputs_key not in arrays.files:
                raise KeyError(f"dataset {name}: {path} has no array {inputs_key!r} (has {', '.join(arrays.files)})")
            return arrays[inputs_key].astype(np.float32), (arrays[labels_key].astype(np.int64)
                                                           if labels_key in arrays.files else None)
    with h5py.File(path, "r", locking=False) as f:
        if inputs_key not in f:
            raise KeyError(f"dataset {name}: {path} has no dataset {inputs_key!r}")
        return f[inputs_key][()].astype(np.float32), (f[labels_key][()].astype(np.int64) if labels_key in f else None)


def _torchvision(which: str, root: str, name: str):
    try:
        import torchvision
    except ImportError:
        raise ImportError(f"dataset {name}: torchvision:{which} needs the optional torchvision extra") from None
    classes = {"MNIST": torchvision.datasets.MNIST, "FashionMNIST": torchvision.datasets.FashionMNIST,
               "CIFAR10": torchvision.datasets.CIFAR10}
    if which not in classes:
        raise ValueError(f"dataset {name}: unknown torchvision dataset {which!r}; accepted: {', '.join(classes)}")
    try:
        data = classes[which](root=root, train=False, download=False)
    except RuntimeError as err:
        raise FileNotFoundError(f"dataset {name}: {which} files not found under {root} (never downloaded): {err}") from None
    inputs = np.asarray(data.data, dtype=np.float32)
    if inputs.ndim == 4:                                  # CIFAR: (N, H, W, C) -> (N, C, H, W)
        inputs = inputs.transpose(0, 3, 1, 2)
    return inputs, np.asarray(data.targets, dtype=np.int64)


def count(spec: dict, name: str = "dataset") -> int:
    """Number of samples of a dataset entry (for cutting shards)."""
    return int(load(spec, name)[0].shape[0])


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def for_model(inputs: np.ndarray, input_shape, model: str = "model") -> torch.Tensor:
    """Inputs shaped for a model: a reshape when the sizes agree (8x8 -> 64 or 1x8x8), else a
    bilinear resize of the image axes (digits 8x8 -> 28x28)."""
    x = torch.from_numpy(np.ascontiguousarray(inputs))
    n, shape = x.shape[0], tuple(input_shape)
    if int(np.prod(x.shape[1:])) == int(np.prod(shape)):
        return x.reshape(n, *shape)
    if len(shape) == 3 and x.dim() in (3, 4):
        images = x.unsqueeze(1) if x.dim() == 3 else x
        if images.shape[1] == shape[0]:
            return F.interpolate(images, size=shape[1:], mode="bilinear", align_corners=False)
    raise ValueError(f"model {model} expects samples of shape {shape}; the dataset gives {tuple(x.shape[1:])}, "
                     f"which is neither a reshape nor an image resize of it")
