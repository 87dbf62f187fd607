"""Transformer files (one fitted transform) and the HDF5 encodings of the built-in transforms.

``standard``: the explicit zeta (and, for float precision, Möbius) matrices, or the factored closure (the
layer table, the distinct Kronecker factors once each, one row per signed term); ``laplacian``: the
eigenvalues and eigenvectors with the options; ``sem``: the graph core with its edge weights; ``influence``: the
max-product closure (CSR) with the graph's layer names and offsets.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import scipy.sparse as sp

from nsp.operations.kronecker import Factor
from nsp.storage import h5
from nsp.storage.container import create, provenance_attrs, reading
from nsp.storage.graphs import read_core, write_core
from nsp.tracing.table import LayerTable
from nsp.transforms.factored import FactoredClosure
from nsp.transforms.influence import SCALES, InfluenceTransform
from nsp.transforms.laplacian import LaplacianTransform
from nsp.transforms.sem import SemTransform
from nsp.transforms.standard import StandardTransform


def write_transformer(path, transform, *, producer=None, parameters=None, weights=None) -> None:
    with create(path, "transformer", type(transform).__name__, provenance_attrs(producer, parameters, weights),
                **{"transform-type": transform.type}) as f:
        h5.write(f, "transform", transform)


def read_transformer(path):
    """The fitted transform stored at ``path``; its ``weights_sha256`` is the file's (None if not recorded)."""
    with reading(path, "transformer") as f:
        transform = h5.read(f["transform"])
        transform.weights_sha256 = str(f.attrs["weights-sha256"]) or None
        return transform


# --- HDF5 encodings: the explicit matrices, or the factored closure -----------------------------------

_FACTOR_KINDS = ("ones", "eye", "dense")


@h5.writer(StandardTransform)
def _write_standard(parent, name: str, transform: StandardTransform):
    if transform.factored:
        group = h5.group(parent, name, "nsp.factored-transform", version=2, method=transform.method,
                         precision=transform.precision)
        _write_closure(group, transform.closure)
        return group
    group = h5.group(parent, name, "nsp.standard-transform", method=transform.method, precision=transform.precision)
    h5.write_csr(group, "zeta", transform.zeta)
    if transform.precision == "float":            # the exact path works from the zeta matrix alone
        h5.write_csr(group, "mobius", transform.mobius)
    return group


def _precision(group) -> str:
    """Files written before the precision option hold float transforms."""
    return str(group.attrs.get("precision", "float"))


@h5.reader("nsp.standard-transform", 1)
def _read_explicit(group) -> StandardTransform:
    zeta = h5.read_csr(group["zeta"])
    mobius = h5.read_csr(group["mobius"]) if "mobius" in group else None
    h5.check(zeta.shape[0] == zeta.shape[1] and (mobius is None or mobius.shape == zeta.shape), group,
             f"zeta {zeta.shape} and mobius {None if mobius is None else mobius.shape} are not one square size")
    return StandardTransform.from_matrices(zeta, mobius, str(group.attrs["method"]), _precision(group))


def _write_closure(group, closure: FactoredClosure) -> None:
    """The layer table and axes; the distinct factors once each; one row per signed term."""
    factors: dict = {}
    rows = []
    for target, pairs in enumerate(closure.signed):
        for source, terms in pairs:
            for coef, term in terms:
                rows.append([target, source, coef] + [factors.setdefault(f.key, (len(factors), f))[0] for f in term])
    ordered = [f for _, f in sorted(factors.values(), key=lambda item: item[0])]
    rank = len(closure.axes[0])
    terms = np.asarray(rows, dtype=np.int64).reshape(-1, 3 + rank)
    h5.write(group, "layers", closure.table)
    h5.array(group, "axes", np.asarray(closure.axes, dtype=np.int64))
    h5.array(group, "orders", np.asarray(closure.orders, dtype=np.int64))
    h5.array(group, "factor_kind", np.asarray([_FACTOR_KINDS.index(f.kind) for f in ordered], dtype=np.uint8))
    h5.array(group, "factor_shape", np.asarray([f.shape for f in ordered], dtype=np.int64).reshape(-1, 2))
    dense = [f.array.ravel() for f in ordered if f.kind == "dense"]
    h5.array(group, "factor_data", np.concatenate(dense or [np.zeros(0, bool)]).astype(np.uint8), **h5.COMPRESSION)
    h5.array(group, "term_target", terms[:, 0])
    h5.array(group, "term_source", terms[:, 1])
    h5.array(group, "term_coefficient", terms[:, 2])
    h5.array(group, "term_factors", terms[:, 3:])


def _read_closure(group, table) -> StandardTransform:
    kinds, shapes = h5.integers(group, "factor_kind"), h5.integers(group, "factor_shape", 2)
    data = h5.integers(group, "factor_data")
    dense = kinds == _FACTOR_KINDS.index("dense")
    h5.check(shapes.shape == (kinds.size, 2) and (shapes >= 0).all(), group["factor_shape"],
             f"not one (rows, columns) pair per factor ({kinds.size})")
    h5.in_range(kinds, 0, len(_FACTOR_KINDS), group["factor_kind"], "factor kind")
    h5.check(int(np.prod(shapes[dense], axis=1).sum()) == data.size, group["factor_data"],
             f"{data.size} entries for the dense factors")
    target, source = h5.integers(group, "term_target"), h5.integers(group, "term_source")
    coefficient, indices = h5.integers(group, "term_coefficient"), h5.integers(group, "term_factors", 2)
    axes = h5.integers(group, "axes", 2)
    h5.check(axes.shape[0] == len(table) and target.shape == source.shape == coefficient.shape
             and indices.shape == (target.size, axes.shape[1]), group, "terms, axes and layers disagree in size")
    h5.check(((source >= 0) & (source < target) & (target < len(table))).all(), group,
             "term_target or term_source outside the layers (a term runs from an earlier layer to a later one)")
    h5.in_range(indices, 0, kinds.size, group["term_factors"], "factor number")
    factors, position = [], 0
    for kind, (m, n) in zip(kinds, shapes):
        kind = _FACTOR_KINDS[int(kind)]
        if kind == "dense":
            factors.append(Factor("dense", (m, n), data[position:position + m * n].astype(bool).reshape(m, n)))
            position += m * n
        else:
            factors.append(Factor(kind, (m, n)))
    signed = [[] for _ in range(len(table))]
    for L, l, coef, row in zip(target, source, coefficient, indices):
        pairs = signed[int(L)]
        if not pairs or pairs[-1][0] != int(l):
            pairs.append((int(l), []))
        pairs[-1][1].append((int(coef), tuple(factors[int(i)] for i in row)))
    closure = FactoredClosure(table, axes, signed, h5.load(group["orders"]) if "orders" in group else None)
    return StandardTransform.from_closure(closure, str(group.attrs["method"]), _precision(group))


@h5.reader("nsp.factored-transform", 2)
def _read_factored(group) -> StandardTransform:
    return _read_closure(group, h5.read(group["layers"]))


@h5.reader("nsp.factored-transform", 1)
def _read_factored_v1(group) -> StandardTransform:
    """Version 1 stored layer names and offsets only: a table of flat layers stands in."""
    offsets = h5.integers(group, "offsets")
    names = h5.strings(group["names"])
    table = LayerTable.build(names, [""] * len(names), [""] * len(names), [""] * len(names),
                             [(int(b - a),) for a, b in zip(offsets[:-1], offsets[1:])], [()] * len(names))
    return _read_closure(group, table)


# --- the Laplacian transform and the sem transform ---------------------------------------------------

@h5.writer(LaplacianTransform)
def _write_laplacian(parent, name: str, transform: LaplacianTransform):
    group = h5.group(parent, name, "nsp.laplacian-transform", k=-1 if transform.k is None else transform.k,
                     method=transform.method, symmetry=transform.symmetry,
                     truncation=json.dumps(transform.truncation, sort_keys=True),
                     **{"channel-groups": json.dumps(transform.channel_groups)})
    h5.array(group, "eigenvalues", transform.eigenvalues)
    h5.array(group, "eigenvectors", transform.eigenvectors, **h5.COMPRESSION,
             chunks=h5.chunks(transform.eigenvectors.shape[1], 8, transform.eigenvectors.shape[0]))
    return group


@h5.reader("nsp.laplacian-transform", 1)
def _read_laplacian(group) -> LaplacianTransform:
    truncation = json.loads(group.attrs["truncation"])
    for name in ("eigenvalues", "eigenvectors"):
        h5.check(isinstance(group.get(name), h5py.Dataset), group, f"no dataset {name!r}")
    values, vectors = group["eigenvalues"], group["eigenvectors"]
    h5.check(values.ndim == 1 and vectors.ndim == 2 and vectors.shape[1] == values.shape[0] <= vectors.shape[0],
             group, f"eigenvalues {values.shape} and eigenvectors {vectors.shape} do not form a basis")
    h5.check(values.dtype.kind == "f" and vectors.dtype.kind == "f", group, f"eigenvalues ({values.dtype}) and "
             f"eigenvectors ({vectors.dtype}) are not floating-point numbers")
    out = LaplacianTransform.from_basis(h5.load(values), h5.load(vectors), truncation)
    k = int(group.attrs["k"])
    out.k = None if k < 0 else k
    out.method = str(group.attrs["method"])
    out.symmetry = bool(group.attrs["symmetry"])
    out.channel_groups = [(tuple(names), c) for names, c in json.loads(group.attrs["channel-groups"])]
    return out


@h5.writer(SemTransform)
def _write_sem(parent, name: str, transform: SemTransform):
    if transform.core is None:
        raise h5.StorageError("a sem transform fitted on a bare adjacency matrix cannot be stored; fit it on a "
                              "graph core")
    return write_core(parent, name, transform.core, encoding="nsp.sem-transform")


@h5.reader("nsp.sem-transform", 1)
def _read_sem(group) -> SemTransform:
    return SemTransform().fit(read_core(group))


@h5.writer(InfluenceTransform)
def _write_influence(parent, name: str, transform: InfluenceTransform):
    group = h5.group(parent, name, "nsp.influence-transform", scale=transform.scale)
    h5.write_csr(group, "closure", transform.closure)
    layers = transform.layer_offsets()
    if layers is not None:
        h5.array(group, "layer_names", np.asarray(layers[0], dtype=object))
        h5.array(group, "layer_offsets", np.asarray(layers[1], dtype=np.int64))
    return group


@h5.reader("nsp.influence-transform", 1)
def _read_influence(group) -> InfluenceTransform:
    closure = h5.read_csr(group["closure"])
    n = closure.shape[0]
    h5.check(closure.shape == (n, n), group, f"the closure {closure.shape} is not square")
    h5.check(not sp.triu(closure, 1).nnz and np.array_equal(closure.diagonal(), np.ones(n)), group,
             "the closure is not lower unitriangular")
    scale = str(group.attrs.get("scale", ""))
    h5.check(scale in SCALES, group, f"scale {scale!r} is not one of {', '.join(SCALES)}")
    layers = None
    if "layer_names" in group:
        names, offsets = h5.strings(group["layer_names"]), h5.integers(group, "layer_offsets")
        h5.check(offsets.shape == (len(names) + 1,) and offsets[0] == 0 and offsets[-1] == n
                 and (np.diff(offsets) >= 0).all(), group["layer_offsets"],
                 f"layer offsets do not split {n} nodes into {len(names)} layers")
        layers = (names, [int(o) for o in offsets])
    return InfluenceTransform.from_closure(closure, scale, layers)
