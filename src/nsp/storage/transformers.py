"""Transformer files: one fitted transform, stored with the encoding its class registered."""

from __future__ import annotations

import importlib

from nsp.storage import h5
from nsp.storage.container import create, open_file, provenance_attrs


def write_transformer(path, transform, *, producer=None, parameters=None, weights=None) -> None:
    with create(path, "transformer", type(transform).__name__, provenance_attrs(producer, parameters, weights),
                **{"transform-type": transform.type}) as f:
        h5.write(f, "transform", transform)


def built_in_encodings() -> None:
    """Register the encodings of the built-in transforms (their modules do, when first used)."""
    importlib.import_module("nsp.transforms").make_transform


def read_transformer(path):
    built_in_encodings()
    with open_file(path, "transformer") as f:
        return h5.read(f["transform"])
