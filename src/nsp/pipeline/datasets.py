"""Datasets for the pipeline: bundled digits and photographs, user arrays, local torchvision datasets.

Nothing is downloaded: scikit-learn ships the 1,797 digits and two photographs (cut into 32x32 RGB tiles
for the CIFAR-sized networks); user arrays and torchvision files must be on disk.

Each kind of ``source`` of a config's dataset entry is a :class:`Source` record in :data:`SOURCES`:
``sklearn-digits``, ``sklearn-photos``, ``torchvision:`` (a prefix: ``torchvision:MNIST``) and, for any
other text, ``file`` (a path to ``.npz`` or ``.h5`` arrays). :func:`load` and :func:`count` find the source
(:func:`source_of`); what every dataset shares (the labels' check, ``limit``, ``scale``/``mean``/``std``, the
refusal of NaN and infinity) is done here, not by the source.

A plugin (a module listed under ``plugins:``, or an installed ``nsp.plugins`` entry point) adds a source::

    import numpy as np
    from nsp.pipeline.datasets import SOURCES, Source

    def load(spec, name):                  # the dataset entry of the config, and its name
        inputs = np.random.default_rng(0).random((100, 1, 8, 8), dtype=np.float32)
        return inputs, np.arange(100) % 10  # (inputs, samples first; labels, int, or None)

    SOURCES.add(Source("noise", load, count=lambda spec, name: 100))

after which ``datasets: {d: {source: noise}}`` is accepted. A name ending in ``:`` is a prefix
(``Source("myzoo:", ...)`` takes ``myzoo:anything``; ``spec["source"]`` holds the whole text). ``count``
is optional: without it (or where it returns None) the dataset is loaded to be counted, and the workflow
counts every dataset each time it plans its jobs.
"""

from __future__ import annotations

import gzip
import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from nsp.errors import DatasetError, MissingFileError
from nsp.pipeline.records import FunctionRecord
from nsp.registry import Registry


@dataclass(frozen=True)
class Source(FunctionRecord):
    """A kind of dataset source: ``name`` (the text of ``source:``, or a prefix ending in ``:``),
    ``load(spec, name)`` -> ``(inputs, labels)`` (the dataset entry and its name; inputs samples first,
    labels one integer per input or None), ``count(spec, name)`` -> the number of samples, or None where it
    cannot tell without loading (optional), ``shown``: how messages list it (default the name)."""

    name: str
    load: Callable[[dict, str], tuple]
    count: Callable[[dict, str], int | None] | None = None
    shown: str = ""
    FUNCTION = "load"

    def claims(self, source: str) -> bool:
        """Whether ``source`` (the text of a dataset's ``source:``) is of this kind."""
        return source == self.name or self.name.endswith(":") and source.startswith(self.name)


def source_of(source: str) -> Source:
    """The registered source that claims the text ``source``; a path to arrays (``file``) if none does."""
    return next((s for s in SOURCES.values() if s.claims(source)), SOURCES["file"])


def accepted() -> str:
    """The sources, as messages list them."""
    return ", ".join(s.shown or s.name for s in SOURCES.values())


def load(spec: dict, name: str = "dataset") -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs (float32, samples first) and labels (int64 or None) of a config dataset entry,
    scaled and normalised as configured."""
    inputs, labels = source_of(spec["source"]).load(spec, name)
    inputs = np.asarray(inputs, dtype=np.float32)
    labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    if labels is not None and len(labels) != len(inputs):
        raise DatasetError(f"dataset {name}: {len(inputs)} inputs but {len(labels)} labels; every input needs its "
                           f"label (or give no labels)")
    if spec.get("limit"):
        inputs = inputs[: spec["limit"]]
        labels = None if labels is None else labels[: spec["limit"]]
    scale, mean, std = (np.float32(spec.get(key, default)) for key, default in (("scale", 1.0), ("mean", 0.0),
                                                                                ("std", 1.0)))
    inputs = (inputs * scale - mean) / std
    finite = np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1) if len(inputs) else np.ones(0, bool)
    if not finite.all():
        raise DatasetError(f"dataset {name}: sample {int(np.argmin(finite))} (and {int((~finite).sum()) - 1} more) "
                           f"holds NaN or infinite values; nsp takes finite inputs only")
    return inputs.astype(np.float32), labels


def count(spec: dict, name: str = "dataset") -> int:
    """Number of samples of a dataset entry (for cutting shards), read from file headers where the source
    can (the pipeline counts every dataset each time it plans its jobs), else by loading it."""
    source = source_of(spec["source"])
    total = None if source.count is None else source.count(spec, name)
    if total is None:
        total = int(load(spec, name)[0].shape[0])
    return min(total, spec["limit"]) if spec.get("limit") else total


# --- the built-in sources ---------------------------------------------------------------------------------

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


def _arrays(spec: dict, name: str):
    """The arrays of a ``.npz`` or HDF5 file: ``inputs_key`` (default ``inputs``) and, where the file has
    it, ``labels_key`` (default ``labels``)."""
    path = Path(spec["source"])
    inputs_key, labels_key = spec.get("inputs_key", "inputs"), spec.get("labels_key", "labels")
    if not path.is_file():
        raise MissingFileError(f"dataset {name}: {path} does not exist (sources: {accepted()})")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                if inputs_key not in arrays.files:
                    raise DatasetError(f"dataset {name}: {path} has no array {inputs_key!r} "
                                       f"(has {', '.join(arrays.files)})")
                return arrays[inputs_key].astype(np.float32), (arrays[labels_key].astype(np.int64)
                                                               if labels_key in arrays.files else None)
        with h5py.File(path, "r", locking=False) as f:
            if inputs_key not in f:
                raise DatasetError(f"dataset {name}: {path} has no dataset {inputs_key!r}")
            return (f[inputs_key][()].astype(np.float32),
                    f[labels_key][()].astype(np.int64) if labels_key in f else None)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as err:
        if isinstance(err, DatasetError):
            raise
        kind = "a .npz" if path.suffix == ".npz" else "an HDF5"
        raise DatasetError(f"dataset {name}: {path} is not {kind} file of numeric arrays nsp can read "
                           f"({type(err).__name__}: {err})") from None


def _count_arrays(spec: dict, name: str) -> int | None:
    """The number of samples of a ``.npz`` or HDF5 file, from the array's header."""
    path = Path(spec["source"])
    key = spec.get("inputs_key", "inputs")
    if not path.is_file():
        return None                                      # load() names the missing file
    try:
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                if f"{key}.npy" not in archive.namelist():
                    return None                          # load() names the missing array
                with archive.open(f"{key}.npy") as handle:
                    header = {(1, 0): np.lib.format.read_array_header_1_0,
                              (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(handle))
                    if header is None:
                        return None
                    shape = header(handle)[0]
            return int(shape[0]) if shape else None
        with h5py.File(path, "r", locking=False) as f:
            return int(f[key].shape[0]) if key in f and f[key].shape else None
    except (OSError, ValueError, zipfile.BadZipFile):
        return None                                      # load() says what is wrong with the file


def _torchvision(spec: dict, name: str):
    """A torchvision dataset's test split, from files under ``root`` (never downloaded)."""
    which, root = spec["source"].split(":", 1)[1], spec.get("root", "data")
    from nsp.external import import_torchvision
    try:
        torchvision = import_torchvision()
    except ImportError:
        raise DatasetError(f"dataset {name}: torchvision:{which} needs the optional torchvision extra") from None
    classes = {"MNIST": torchvision.datasets.MNIST, "FashionMNIST": torchvision.datasets.FashionMNIST,
               "CIFAR10": torchvision.datasets.CIFAR10}
    if which not in classes:
        raise DatasetError(f"dataset {name}: unknown torchvision dataset {which!r}; accepted: {', '.join(classes)}")
    try:
        data = classes[which](root=root, train=False, download=False)
    except RuntimeError as err:
        raise MissingFileError(f"dataset {name}: {which} files not found under {root} (never downloaded): "
                               f"{err}") from None
    inputs = np.asarray(data.data, dtype=np.float32)
    if inputs.ndim == 4:                                  # CIFAR: (N, H, W, C) -> (N, C, H, W)
        inputs = inputs.transpose(0, 3, 1, 2)
    return inputs, np.asarray(data.targets, dtype=np.int64)


def _digits(spec: dict, name: str):
    return digit_images()


def _photo_tiles(spec: dict, name: str):
    return photo_tiles()


def _count_digits(spec: dict, name: str) -> int | None:
    files = _sklearn_files("sklearn-digits")
    if files is None:
        return None
    with gzip.open(files[0], "rt") as handle:            # one line per image
        return sum(1 for _ in handle)


def _count_photo_tiles(spec: dict, name: str) -> int | None:
    files = _sklearn_files("sklearn-photos")
    if files is None:
        return None
    from PIL import Image                                # the image sizes from the JPEG headers
    tiles = []
    for path in files:
        with Image.open(path) as image:
            width, height = image.size
        tiles.append((height // 32) * (width // 32))
    return len(files) * min(tiles)


def _sklearn_files(source: str) -> list[Path] | None:
    """scikit-learn's bundled files behind a source (without importing scikit-learn), or None."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "datasets"
    files = ([root / "data" / "digits.csv.gz"] if source == "sklearn-digits"
             else [root / "images" / "china.jpg", root / "images" / "flower.jpg"])
    return files if all(f.is_file() for f in files) else None


DIGITS = Source("sklearn-digits", _digits, _count_digits)
PHOTOS = Source("sklearn-photos", _photo_tiles, _count_photo_tiles)
FILE = Source("file", _arrays, _count_arrays, shown="a .npz or .h5 file")
TORCHVISION = Source("torchvision:", _torchvision, shown="torchvision:MNIST|FashionMNIST|CIFAR10")

#: source name -> :class:`Source`: the built-in ones, in the order messages list them, then those plugins add
SOURCES = Registry("dataset source", tuple(f"nsp.pipeline.datasets:{name}"
                                           for name in ("DIGITS", "PHOTOS", "FILE", "TORCHVISION")),
                   error=DatasetError)


def shard_bounds(n: int, size: int) -> list[tuple[int, int]]:
    """The (start, stop) sample ranges of the shards of ``n`` samples, ``size`` each (the last fewer)."""
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
    raise DatasetError(f"model {model} expects samples of shape {shape}; the dataset gives {tuple(x.shape[1:])}, "
                       f"which is neither a reshape nor an image resize of it")
