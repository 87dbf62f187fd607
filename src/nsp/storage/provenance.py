"""What produced a result: package versions and a checksum of the model weights."""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version



def weights_sha256(network) -> str:
    """SHA-256 over the state dict of a torch module: names, dtypes, shapes and bytes, in name order."""
    import torch
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(t.dtype).encode())
        digest.update(repr(tuple(t.shape)).encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def versions() -> dict:
    """Versions of nsp and the libraries that shape its results."""
    out = {}
    for package in ("nsp", "torch", "numpy", "scipy", "h5py"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out
