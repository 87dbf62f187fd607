"""Datasets for the pipeline: bundled digits and photographs, user arrays, local torchvision datasets.

Nothing is downloaded: scikit-learn ships the 1,797 digits and two photographs
(cut into 32x32 RGB tiles for the CIFAR-sized networks); user arrays and
torchvision files must be on disk.
"""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from pathlib import Path

import h5py
import numpy as np

from nsp.errors import DatasetError


def load(spec: dict, name: str = "dataset") -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs (float32, samples first) and labels (int64 or None) of a config dataset entry,
    scaled and normalised as configured."""
    source = spec["source"]
    if source == "sklearn-digits":
        inputs, labels = digit_images()
    elif source == "sklearn-photos":
        inputs, labels = photo_tiles()
    elif source.startswith("torchvision:"):
        inputs, labels = _torchvision(source.split(":", 1)[1], spec.get("root", "data"), name)
    else:
        inputs, labels = _arrays(Path(source), spec.get("inputs_key", "inputs"), spec.get("labels_key", "labels"), name)
    if labels is not None and len(labels) != len(inputs):
        raise ValueError(f"dataset {name}: {len(inputs)} inputs but {len(labels)} labels; every input needs its "
                         f"label (or give no labels)")
    if spec.get("limit"):
        inputs = inputs[: spec["limit"]]
        labels = None if labels is None else labels[: spec["limit"]]
    inputs = (inputs * np.float32(spec.get("scale", 1.0)) - np.float32(spec.get("mean", 0.0))) / np.float32(spec.get("std", 1.0))
    finite = np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1) if len(inputs) else np.ones(0, bool)
    if not finite.all():
        raise ValueError(f"dataset {name}: sample {int(np.argmin(finite))} (and {int((~finite).sum()) - 1} more) "
                         f"holds NaN or infinite values; nsp takes finite inputs only")
    return inputs.astype(np.float32), labels


def photo_tiles(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping ``size`` x ``size`` RGB tiles (N, 3, size, size; values 0..255) of the two
    photographs scikit-learn ships (china.jpg, flower.jpg; the label is the photograph), taken row by
    row and interleaved (china, flower, china, ...) so that any first N tiles hold both classes."""
    tiles, labels = [], []
    for label, image in enumerate(_photographs()):
        rows, cols = image.shape[0] // size, image.shape[1] // size
        grid = image[:rows * size, :cols * size].reshape(rows, size, cols, size, 3)
        tiles.append(grid.transpose(0, 2, 4, 1, 3).reshape(rows * cols, 3, size, size))
        labels.append(np.full(rows * cols, label, dtype=np.int64))
    count = min(len(t) for t in tiles)
    inputs = np.stack([t[:count] for t in tiles], axis=1).reshape(-1, 3, size, size)
    return inputs.astype(np.float32), np.stack([l[:count] for l in labels], axis=1).reshape(-1)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (float32 images, values 0..16) and their labels, read from the file
    scikit-learn ships (as its ``load_digits`` reads it: importing scikit-learn costs a second per job)."""
    files = _sklearn_files("sklearn-digits")
    if files is None:                                    # another layout: through scikit-learn
        from sklearn.datasets import load_digits
        digits = load_digits()
        return digits.images.astype(np.float32), digits.target.astype(np.int64)
    with gzip.open(files[0], "rt", encoding="utf-8") as handle:
        data = np.loadtxt(handle, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8).astype(np.float32), data[:, -1].astype(np.int64)


def _photographs() -> list[np.ndarray]:
    """scikit-learn's two bundled photographs (china, flower) as RGB arrays, read with PIL as its
    ``load_sample_images`` reads them."""
    files = _sklearn_files("sklearn-photos")
    if files is None:
        from sklearn.datasets import load_sample_images
        return list(load_sample_images().images)
    from PIL import Image
    out = []
    for path in files:
        with open(path, "rb") as handle:
            out.append(np.asarray(Image.open(handle)))
    return out


def _arrays(path: Path, inputs_key: str, labels_key: str, name: str):
    if not path.is_file():
        raise FileNotFoundError(f"dataset {name}: {path} does not exist (sources: sklearn-digits, sklearn-photos, "
                                f"a .npz or .h5 file, torchvision:MNIST|FashionMNIST|CIFAR10)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            if inputs_key not in arrays.files:
                raise DatasetError(f"dataset {name}: {path} has no array {inputs_key!r} (has {', '.join(arrays.files)})")
            return arrays[inputs_key].astype(np.float32), (arrays[labels_key].astype(np.int64)
                                                           if labels_key in arrays.files else None)
    with h5py.File(path, "r", locking=False) as f:
        if inputs_key not in f:
            raise DatasetError(f"dataset {name}: {path} has no dataset {inputs_key!r}")
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
    """Number of samples of a dataset entry (for cutting shards), read from file headers where it can be:
    the pipeline counts every dataset each time it plans its jobs."""
    total = _count_from_headers(spec, name)
    if total is None:                                    # torchvision datasets: loaded once to count them
        total = int(load(spec, name)[0].shape[0])
    return min(total, spec["limit"]) if spec.get("limit") else total


def _count_from_headers(spec: dict, name: str) -> int | None:
    source = spec["source"]
    if source in ("sklearn-digits", "sklearn-photos"):
        files = _sklearn_files(source)
        if files is None:
            return None
        if source == "sklearn-digits":                  # one line per image
            with gzip.open(files[0], "rt") as handle:
                return sum(1 for _ in handle)
        from PIL import Image                            # the image sizes from the JPEG headers
        tiles = []
        for path in files:
            with Image.open(path) as image:
                width, height = image.size
            tiles.append((height // 32) * (width // 32))
        return len(files) * min(tiles)
    if source.startswith("torchvision:"):
        return None
    path = Path(source)
    key = spec.get("inputs_key", "inputs")
    if path.suffix == ".npz" and path.is_file():
        with zipfile.ZipFile(path) as archive:
            if f"{key}.npy" not in archive.namelist():
                return None                              # load() names the missing array
            with archive.open(f"{key}.npy") as handle:
                header = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(handle))
                if header is None:
                    return None
                shape = header(handle)[0]
        return int(shape[0]) if shape else None
    if path.suffix != ".npz" and path.is_file():
        with h5py.File(path, "r", locking=False) as f:
            return int(f[key].shape[0]) if key in f and f[key].shape else None
    return None


def _sklearn_files(source: str) -> list[Path] | None:
    """scikit-learn's bundled files behind a source (without importing scikit-learn), or None."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "datasets"
    files = ([root / "data" / "digits.csv.gz"] if source == "sklearn-digits"
             else [root / "images" / "china.jpg", root / "images" / "flower.jpg"])
    return files if all(f.is_file() for f in files) else None


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(n, start + size)) for start in range(0, n, size)]


def for_model(inputs: np.ndarray, input_shape, model: str = "model"):
    """Inputs shaped for a model: a reshape when the sizes agree (8x8 -> 64 or 1x8x8), else a
    bilinear resize of the image axes (digits 8x8 -> 28x28); a torch tensor."""
    import torch
    import torch.nn.functional as F
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
