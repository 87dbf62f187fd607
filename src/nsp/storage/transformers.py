"""Transformer files: one fitted transform, stored with the encoding its class registered."""

from __future__ import annotations

import importlib

from nsp.storage import h5
from nsp.storage.container import create, provenance_attrs, reading


def write_transformer(path, transform, *, producer=None, parameters=None, weights=None) -> None:
    with create(path, "transformer", type(transform).__name__, provenance_attrs(producer, parameters, weights),
                **{"transform-type": transform.type}) as f:
        h5.write(f, "transform", transform)


def built_in_encodings() -> None:
    """Register the encodings of the built-in transforms (their modules do, when first used)."""
    importlib.import_module("nsp.transforms").make_transform


def read_transformer(path):
    """The fitted transform stored at ``path``; its ``weights_sha256`` is the file's (None if not recorded)."""
    built_in_encodings()
    with reading(path, "transformer") as f:
        transform = h5.read(f["transform"])
        transform.weights_sha256 = str(f.attrs["weights-sha256"]) or None
        return transform
