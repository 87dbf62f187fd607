"""Transformer files: one fitted transform, stored with the encoding its class registered."""

from __future__ import annotations

from nsp.storage import h5
from nsp.storage.container import create, open_file, provenance_attrs


def write_transformer(path, transform, *, producer=None, parameters=None, weights=None) -> None:
    with create(path, "transformer", type(transform).__name__, provenance_attrs(producer, parameters, weights),
                **{"transform-type": transform.type}) as f:
        h5.write(f, "transform", transform)


def read_transformer(path):
    with open_file(path, "transformer") as f:
        return h5.read(f["transform"])
