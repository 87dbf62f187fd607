"""Networks of the reference package and a few of our own, by name, for tests, benchmarks, the demo
and the pipeline; their classes are in :mod:`nsp.nets` (imported, with torch, when a network is built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsp import external
from nsp.storage.files import atomic_output

#: zoo name -> input shape of one sample (batch axis excluded)
INPUT_SHAPES = {
    "digits_cnn": (1, 8, 8),
    "digits_mlp": (64,),
    "mnist_reference": (1, 28, 28),
    "residual_cnn": (1, 8, 8),
    "toy": (1, 4, 4),
    "vgg_cifar": (3, 32, 32),
    "resnet_cifar": (3, 32, 32),
}
_CLASSES = {"digits_cnn": "DigitsCNN", "digits_mlp": "DigitsMLP", "mnist_reference": "MnistNet",
            "residual_cnn": "ResidualCNN", "toy": "ToyNet", "vgg_cifar": "VGGNet", "resnet_cifar": "ResNet"}


def __getattr__(name: str):
    """``ARCHITECTURES`` (zoo name -> (class, input shape)) and the classes, from :mod:`nsp.nets`."""
    if name.startswith("__"):
        raise AttributeError(f"module 'nsp.zoo' has no attribute {name!r}")
    from nsp import nets
    if name == "ARCHITECTURES":
        return {arch: (getattr(nets, cls), INPUT_SHAPES[arch]) for arch, cls in _CLASSES.items()}
    if isinstance(getattr(nets, name, None), type):
        return getattr(nets, name)
    raise AttributeError(f"module 'nsp.zoo' has no attribute {name!r}")


def build(architecture: str, options: dict | None = None):
    """A zoo network by name, a timm or torchvision architecture (``timm:<name>``, ``torchvision:<name>``,
    random weights, :mod:`nsp.external`), or a user network ``module:Class`` (importable from the working
    folder), constructed with the keyword arguments ``options``."""
    options = options or {}
    if architecture in INPUT_SHAPES:
        from nsp import nets
        return _construct(getattr(nets, _CLASSES[architecture]), architecture, options)
    if external.is_named(architecture):
        return external.build(architecture, options)
    module_name, _, class_name = architecture.partition(":")
    import importlib
    import sys
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import model {architecture!r}: {err}") from None
    return _construct(cls, architecture, options)


def _construct(cls, architecture: str, options: dict):
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"architecture {architecture} does not take the options {options}: {err}") from None


def load_weights(module, path: str | Path):
    """Load a state dict: ``.npz`` arrays, or a torch file read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".npz":
        return load_state_npz(module, path)
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state)
    return module.eval()


def load_state_npz(module, path: str | Path):
    """Load a state dict stored as named arrays in an ``.npz`` file (no pickle)."""
    import torch
    with np.load(path, allow_pickle=False) as arrays:
        state = {name: torch.from_numpy(arrays[name].copy()) for name in arrays.files}
    module.load_state_dict(state)
    return module.eval()


def save_state_npz(module, path: str | Path) -> None:
    """Write a state dict as an ``.npz`` of named arrays with deterministic bytes
    (sorted names, fixed zip timestamps; ``numpy.savez`` stamps the current time)."""
    import io
    import zipfile

    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for name, tensor in sorted(module.state_dict().items()):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, tensor.detach().cpu().numpy(), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())
