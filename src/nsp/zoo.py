"""Networks of the reference package and a few of our own, by name, for tests, benchmarks, the demo
and the pipeline; their classes are in :mod:`nsp.nets` (imported, with torch, when a network is built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nsp.errors import ExternalModelError, InputError, MissingFileError, StorageError
from nsp import external, plugins
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
    try:
        module = plugins.import_user_module(module_name)
    except Exception as err:                  # the user's module failed: say which, in one line
        raise ExternalModelError(f"cannot import model {architecture!r}: importing {module_name} raised "
                                 f"{type(err).__name__}: {err}") from None
    cls = getattr(module, class_name, None)
    import torch.nn as nn
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        found = "nothing" if cls is None else f"a {type(cls).__name__}"
        raise ExternalModelError(f"architecture {architecture!r}: {class_name} in {module_name} is {found}, not a "
                                 f"torch.nn.Module subclass (module:Class names a network class)")
    return _construct(cls, architecture, options)


def _construct(cls, architecture: str, options: dict):
    try:
        return cls(**options)
    except TypeError as err:
        raise ExternalModelError(f"architecture {architecture} does not take the options {options}: {err}") from None


def load_weights(module, path: str | Path):
    """Load a state dict: ``.npz`` arrays, or a torch file read with ``weights_only=True``. Weights with
    other names or shapes than the network's, or NaN or infinite values, are refused (``ValueError``)."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"weights file {path} does not exist")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        raise InputError(f"weights file {path} is {what}; weights are a .npz file or a torch state-dict file")
    if path.suffix == ".npz":
        return load_state_npz(module, path)
    import torch
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception:               # torch raises many kinds (UnpicklingError, RuntimeError, KeyError, ...)
        raise StorageError(f"weights file {path} is not a torch file that loads with weights_only=True "
                         f"(tensors only; nothing else is unpickled)") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StorageError(f"weights file {path} does not hold a state dict (parameter names to tensors)")
    return _load_state(module, state, path)


def load_state_npz(module, path: str | Path):
    """Load a state dict stored as named arrays in an ``.npz`` file. Nothing is unpickled: an object array
    is refused, as is any file that is not a zip of ``.npy`` arrays."""
    import torch
    path = Path(path)
    state = {}
    for name, array in _read_npz(path).items():
        try:
            state[name] = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=False))
        except TypeError:
            raise StorageError(f"weights file {path}: {name} holds {array.dtype} values, which torch cannot "
                             f"hold") from None
    return _load_state(module, state, path)


def _read_npz(path: Path) -> dict:
    """The arrays of an ``.npz`` file by name, read with ``numpy.lib.format``: each member's header first,
    and only numeric arrays read (nothing is unpickled)."""
    import zipfile
    fmt = np.lib.format
    not_npz = f"weights file {path} is not an .npz of arrays (a zip of .npy files, as nsp train writes)"
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise StorageError(not_npz) from None
    arrays = {}
    with archive:
        for member in archive.namelist():
            name = member.removesuffix(".npy")
            try:
                with archive.open(member) as f:
                    version = fmt.read_magic(f)
                    dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)[2]
                if dtype.kind in "biufc":
                    with archive.open(member) as f:
                        arrays[name] = fmt.read_array(f, allow_pickle=False)
            except (ValueError, EOFError, zipfile.BadZipFile):
                raise StorageError(f"{not_npz}: {member} is not a readable .npy array") from None
            if dtype.hasobject:
                raise StorageError(f"weights file {path}: {name} is an object array; weights are numeric arrays "
                                 f"(object arrays are never unpickled)")
            if dtype.kind not in "biufc":
                raise StorageError(f"weights file {path}: {name} holds {dtype} values; weights are numeric arrays")
    return arrays


def _few(names) -> str:
    names = list(names)
    return ", ".join(names[:5]) + (f" (and {len(names) - 5} more)" if len(names) > 5 else "")


def _load_state(module, state: dict, path: Path):
    """``module.load_state_dict(state)``, refusing non-finite values, wrong shapes and wrong names with one
    line naming the file and the keys."""
    import torch
    bad = [k for k, v in state.items() if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if bad:
        raise StorageError(f"weights file {path}: {_few(bad)} hold NaN or infinite values")
    expected = module.state_dict()
    wrong = [k for k, v in state.items()
             if k in expected and not torch.nn.parameter.is_lazy(expected[k]) and v.shape != expected[k].shape]
    if wrong:
        key, more = wrong[0], f" (and {len(wrong) - 1} more keys of the wrong shape)" if len(wrong) > 1 else ""
        raise StorageError(f"weights file {path}: {key} has shape {tuple(state[key].shape)} in the file; the network "
                         f"expects {tuple(expected[key].shape)}{more}")
    result = module.load_state_dict(state, strict=False)    # strict=False: torch's own hooks still apply
    if result.missing_keys or result.unexpected_keys:
        parts = [f"{label} keys {_few(keys)}" for label, keys in (("missing", result.missing_keys),
                                                                  ("unexpected", result.unexpected_keys)) if keys]
        raise StorageError(f"weights file {path} does not fit the network: {'; '.join(parts)}")
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
