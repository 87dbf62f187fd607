"""Datasets for the pipeline: bundled digits and photographs, user arrays, local torchvision datasets.

Nothing is downloaded: scikit-learn ships the 1,797 digits and two photographs (cut into 32x32 RGB tiles
for the CIFAR-sized networks); user arrays and torchvision files must be on disk.

Each kind of ``source`` of a config's dataset entry is a :class:`Source` record in :data:`SOURCES`:
``sklearn-digits``, ``sklearn-photos``, ``torchvision:`` (a prefix: ``torchvision:MNIST``) and, for any
other text, ``file`` (a path to ``.npz``, ``.h5`` or ``.hdf5`` arrays: numeric arrays stored in the file
itself; with ``limit`` only the first rows are read, and an array that would not fit in memory is refused
before it is read). :func:`load` and :func:`count` find the source (:func:`source_of`); what every dataset
shares (at least one sample, labels that are class indices, ``limit``, ``scale``/``mean``/``std``, the
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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nsp.errors import DatasetError, MissingFileError
from nsp.pipeline import arrayfiles
from nsp.pipeline.arrayfiles import NUMERIC, SUFFIXES
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
    """Inputs (float32, samples first) and labels (int64 class indices, or None) of a config dataset entry,
    scaled and normalised as configured. A dataset without samples is refused; so are labels that are not
    whole numbers from 0 (see :func:`class_indices`)."""
    source = source_of(spec["source"])
    inputs, labels = source.load(spec, name)
    inputs = np.asarray(inputs, dtype=np.float32)
    if labels is not None and len(labels) != len(inputs):
        raise DatasetError(f"dataset {name}: {len(inputs)} inputs but {len(labels)} labels; every input needs its "
                           f"label (or give no labels)")
    if spec.get("limit"):
        inputs = inputs[: spec["limit"]]
        labels = None if labels is None else labels[: spec["limit"]]
    if not len(inputs):
        raise DatasetError(_empty(spec, name))
    if labels is not None:
        where = (f"{spec['source']} array {spec.get('labels_key', 'labels')!r}" if source.name == "file"
                 else f"source {spec['source']}")
        labels = class_indices(labels, f"dataset {name}: {where}")
    scale, mean, std = (np.float32(spec.get(key, default)) for key, default in (("scale", 1.0), ("mean", 0.0),
                                                                                ("std", 1.0)))
    inputs = (inputs * scale - mean) / std
    finite = np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1)
    if not finite.all():
        raise DatasetError(f"dataset {name}: sample {int(np.argmin(finite))} (and {int((~finite).sum()) - 1} more) "
                           f"holds NaN or infinite values; nsp takes finite inputs only")
    return inputs.astype(np.float32), labels


def class_indices(labels, where: str) -> np.ndarray:
    """``labels`` as int64 class indices, refused (a :class:`DatasetError` that starts with ``where``) unless
    they are one whole number from 0 per sample: an integer or bool array, or floats with integral values
    (as MATLAB and many HDF5 files store them; 0.9 is refused, never truncated)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in NUMERIC:
        raise DatasetError(f"{where}: labels have dtype {labels.dtype}; labels are class indices (integers "
                           f"0..C-1)")
    if labels.ndim != 1:
        raise DatasetError(f"{where}: labels have shape {labels.shape}; labels are one class index per sample")
    negative, large = labels < 0, labels >= MAX_LABEL
    fraction = labels != np.floor(labels) if labels.dtype.kind == "f" else np.zeros(len(labels), bool)
    bad = negative | large | fraction
    if bad.any():
        i = int(np.argmax(bad))
        why = ("is not a whole number" if fraction[i] else "is negative" if negative[i]
               else f"exceeds {MAX_LABEL - 1}")
        raise DatasetError(f"{where}: label {labels[i].item()!r} of sample {i} {why}; labels are class indices "
                           f"0..C-1 (integers, or floats with whole values)")
    return labels.astype(np.int64)


def _empty(spec: dict, name: str) -> str:
    return f"dataset {name}: {spec['source']} has no samples; nsp needs at least one"


def count(spec: dict, name: str = "dataset") -> int:
    """Number of samples of a dataset entry (for cutting shards), read from file headers where the source
    can (the pipeline counts every dataset each time it plans its jobs), else by loading it. A dataset
    without samples is refused."""
    source = source_of(spec["source"])
    total = None if source.count is None else source.count(spec, name)
    if total is None:
        total = int(load(spec, name)[0].shape[0])
    if total == 0:
        raise DatasetError(_empty(spec, name))
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


#: labels are class indices below this (so that float and int64 hold them exactly)
MAX_LABEL = 1 << 31

def _file(spec: dict, name: str) -> Path:
    """The path of a file source, refused where it does not exist or is not .npz or HDF5 by its suffix."""
    path = Path(spec["source"])
    if not path.is_file():
        raise MissingFileError(f"dataset {name}: {path} does not exist (sources: {accepted()})")
    if path.suffix.lower() not in SUFFIXES:
        raise DatasetError(f"dataset {name}: {path} is not a file of arrays nsp reads: a file source ends in "
                           f"{', '.join(SUFFIXES)} (numpy's savez, or HDF5)")
    return path


def _arrays(spec: dict, name: str):
    """The arrays of a ``.npz`` or HDF5 file: ``inputs_key`` (default ``inputs``) and, where the file has
    it, ``labels_key`` (default ``labels``); with ``limit``, only their first rows are read."""
    keys = spec.get("inputs_key", "inputs"), spec.get("labels_key", "labels")
    return arrayfiles.read(_file(spec, name), keys, spec.get("limit") or None, name)


def _count_arrays(spec: dict, name: str) -> int | None:
    """The number of samples of a ``.npz`` or HDF5 file, from the array's header."""
    return arrayfiles.count(_file(spec, name), spec.get("inputs_key", "inputs"), name)



def _torchvision(spec: dict, name: str):
    """A torchvision dataset's test split, from files under ``root`` (never downloaded). torchvision is
    imported as :func:`nsp.external.import_torchvision` imports it (also where its compiled extension does
    not load)."""
    which, root = spec["source"].split(":", 1)[1], spec.get("root", "data")
    instead = "or save the arrays to a .npz file (inputs, labels) and give its path as source"
    from nsp.external import import_torchvision
    try:
        torchvision = import_torchvision()
    except (ImportError, RuntimeError) as err:
        raise DatasetError(f"dataset {name}: torchvision:{which} needs torchvision, which does not import here "
                           f"({type(err).__name__}: {err}); install the optional extra, {instead}") from None
    classes = {"MNIST": torchvision.datasets.MNIST, "FashionMNIST": torchvision.datasets.FashionMNIST,
               "CIFAR10": torchvision.datasets.CIFAR10}
    if which not in classes:
        raise DatasetError(f"dataset {name}: unknown torchvision dataset {which!r}; accepted: {', '.join(classes)}")
    missing = [str(f) for f in _torchvision_files(classes[which], root) if not f.is_file()]
    if missing:
        raise MissingFileError(f"dataset {name}: torchvision:{which} files not found under {root} (never "
                               f"downloaded): {', '.join(missing)}; put them there (config key "
                               f"datasets.{name}.root), {instead}")
    try:
        data = classes[which](root=root, train=False, download=False)
    except Exception as err:                              # a damaged file: torchvision raises many kinds
        raise DatasetError(f"dataset {name}: torchvision:{which} could not read its files under {root} "
                           f"({type(err).__name__}: {err}); check them (CIFAR10's are checked by MD5), "
                           f"{instead}") from None
    inputs = np.asarray(data.data, dtype=np.float32)
    if inputs.ndim == 4:                                  # CIFAR: (N, H, W, C) -> (N, C, H, W)
        inputs = inputs.transpose(0, 3, 1, 2)
    return inputs, np.asarray(data.targets, dtype=np.int64)


def _torchvision_files(cls, root: str) -> list[Path]:
    """The files torchvision's class ``cls`` checks before it reads (MNIST-like: both splits' raw files)."""
    if hasattr(cls, "resources"):                         # MNIST, FashionMNIST: <root>/<class>/raw/<name>
        return [Path(root, cls.__name__, "raw", Path(url).stem) for url, _ in cls.resources]
    return [Path(root, cls.base_folder, file) for file, _ in cls.train_list + cls.test_list]


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
