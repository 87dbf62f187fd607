"""Damaged, truncated and crafted files: every reader refuses them with a StorageError naming the file and
the object, or loads exactly what was written; never a crash, never a silent wrong load."""

import hashlib

import h5py
import numpy as np
import pytest
import torch
import yaml

import nsp
from nsp import storage
from nsp.pipeline.cli import main
from nsp.storage import StorageError
from nsp.storage.graphs import read_graph_transforms, write_graph
from nsp.transforms import make_transform
from nsp.zoo import ToyNet

INPUT = torch.tensor([[[[-6, -1, -2, 5], [-3, -6, 5, 4], [2, 5, -6, 3], [5, 0, 1, -6]]]], dtype=torch.float)


def toy_graph(seed=0):
    torch.manual_seed(seed)
    acts = nsp.Activations(ToyNet(), INPUT)
    return acts, nsp.NNGraph(acts)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One file of every kind and every transform encoding, from the toy network."""
    out = tmp_path_factory.mktemp("kinds")
    acts, graph = toy_graph()
    graph.get_transformer("standard")
    graph.get_transformer("laplacian")
    nsp.OutputLoader.save(graph, out / "graph.h5")
    core = graph.core
    for name, transform in {"explicit": make_transform("standard", method="explicit"),
                            "float": make_transform("standard", method="explicit", precision="float"),
                            "factored": make_transform("standard", method="factored"),
                            "laplacian": make_transform("laplacian"), "sem": make_transform("sem")}.items():
        storage.write_transformer(out / f"{name}.h5", transform.fit(core), weights=core.weights_sha256)
    values = np.random.default_rng(0).normal(size=(5, core.n_nodes)).astype(np.float32)
    storage.write_signals(out / "activations.h5", storage.SignalBatch(
        "activations", values, core.table, np.arange(3, 8), np.array([1, 0, 2, 1, 0]),
        weights_sha256=core.weights_sha256))
    lap = graph.transformers["laplacian"]
    storage.write_signals(out / "spectra.h5", storage.SignalBatch(
        "spectra", lap.transform(values.astype(np.float64)), core.table, transform_type="laplacian",
        eigenvalues=lap.eigenvalues, weights_sha256=core.weights_sha256))
    return out


CONFIG = {"models": {"m": {"architecture": "toy", "dataset": "d"}}, "datasets": {"d": {"source": "sklearn-digits"}},
          "transforms": {"standard": {}, "laplacian": {}}}
KINDS = ["graph", "explicit", "float", "factored", "laplacian", "sem", "activations", "spectra"]


def resaved(path, scratch) -> bytes:
    """Load ``path`` with nsp's readers and write what came back: equal bytes mean equal data."""
    with storage.open_file(path) as f:
        kind = str(f.attrs["kind"])
    out = scratch / "resaved.h5"
    if kind == "graph":
        write_graph(out, storage.read_graph(path), read_graph_transforms(path))
    elif kind == "transformer":
        storage.write_transformer(out, storage.read_transformer(path))
    else:
        storage.write_signals(out, storage.read_signals(path))
    return out.read_bytes()


def flipped_copies(files, tmp_path, kind, positions, seed, reseal=False) -> int:
    """Flip one bit at each of ``positions`` of the stored ``kind`` file in turn (sealing the copy again where
    ``reseal``): each copy must be refused with a StorageError naming it, or load data identical to the
    original's. Returns how many were refused."""
    data = (files / f"{kind}.h5").read_bytes()
    reference = resaved(files / f"{kind}.h5", tmp_path)
    damaged = tmp_path / "damaged.h5"
    rng, refused = np.random.default_rng(seed), 0
    for position in positions(len(data), rng):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        damaged.write_bytes(bytes(flipped))
        if reseal:
            storage.seal(damaged)                 # the damage accepted as a change: only the inner checks remain
        try:
            loaded = resaved(damaged, tmp_path)
        except StorageError as err:
            assert str(err).startswith(f"{damaged}: " + ("" if reseal else "damaged")), err
            refused += 1
        else:
            assert loaded == reference, f"byte {position} flipped (sealed again: {reseal}): a silent wrong load"
    return refused


@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_truncations_and_byte_flips_raise_storage_error_or_load_identical_data(files, tmp_path, kind):
    data = (files / f"{kind}.h5").read_bytes()
    damaged = tmp_path / "damaged.h5"
    for length in sorted({0, 100, 511, 512, 513, len(data) // 2, len(data) - 1}):
        damaged.write_bytes(data[:length])
        with pytest.raises(StorageError, match="damaged.h5: "):
            resaved(damaged, tmp_path)
    refused = flipped_copies(files, tmp_path, kind, lambda n, rng: rng.choice(n, size=60, replace=False), 17)
    assert refused >= 50, refused             # only flips in the unused part of the user block load


def test_the_seal_names_what_is_wrong(files, tmp_path):
    path = tmp_path / "a.h5"
    data = bytearray((files / "activations.h5").read_bytes())
    data[-200] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"a\.h5: damaged: its content does not match the SHA-256 nsp sealed it "
                                           r"with \(a disk or copy error, or changed by another program; "
                                           r"nsp.storage.seal\(path\) accepts such a change\)"):
        storage.read_signals(path)
    data = bytearray((files / "activations.h5").read_bytes())
    data[:512] = bytes(512)                                    # the seal wiped: format version 2 needs it
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match=r"a\.h5: damaged: an nsp file of format version 2 without its seal"):
        storage.read_signals(path)
    with h5py.File(path, "r+", locking=False) as f:             # an older file: read without a check
        f.attrs["format-version"] = 1
        del f.attrs["nsp-digest"]                               # (written before the metadata digest)
    assert np.array_equal(storage.read_signals(path).values, storage.read_signals(files / "activations.h5").values)
    with pytest.raises(StorageError, match=r"b\.h5: has no user block to hold the seal"):
        with h5py.File(tmp_path / "b.h5", "w") as f:
            f["x"] = 1
        storage.seal(tmp_path / "b.h5")


def crafted(files, tmp_path, kind, edit):
    """A copy of a file changed with h5py and sealed again: valid HDF5 and a valid seal, wrong content."""
    path = tmp_path / f"{kind}.h5"
    path.write_bytes((files / f"{kind}.h5").read_bytes())
    with h5py.File(path, "r+", locking=False) as f:
        edit(f)
    storage.seal(path)
    return path


def set_entry(name, index, value):
    def edit(f):
        array = f[name][()]
        array[index] = value
        f[name][...] = array
    return edit


def test_an_out_of_range_csr_column_is_refused_not_a_crash(files, tmp_path, capsys):
    n = storage.read_graph(files / "graph.h5").n_nodes
    path = crafted(files, tmp_path, "graph", set_entry("adjacency/indices", 3, n + 5))
    with pytest.raises(StorageError, match=rf"graph\.h5: /adjacency/indices: column index {n + 5} outside "
                                           rf"0\.\.{n - 1} \(damaged, or not written by nsp\)"):
        storage.read_graph(path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["compute-transformer", "--config", str(config), "--transform", "laplacian", "--graph", str(path),
                 "--out", str(tmp_path / "t.h5")]) == 2
    assert f"/adjacency/indices: column index {n + 5} outside" in capsys.readouterr().err
    assert not (tmp_path / "t.h5").exists()
    path = crafted(files, tmp_path, "explicit", set_entry("transform/zeta/indices", 0, -1))
    with pytest.raises(StorageError, match=r"/transform/zeta/indices: column index -1 outside 0\.\."):
        storage.read_transformer(path)


CRAFTED = [
    ("graph", set_entry("adjacency/indptr", 2, 10 ** 6), r"/adjacency/indptr: row pointers are not increasing"),
    ("graph", set_entry("layers/parents/values", 0, 5), r"/layers/parents: layer 1 has parents \[5\]; each layer's "
                                                         r"parents come before it"),
    ("graph", set_entry("layers/shape/offsets", 1, 99), r"/layers/shape/offsets: offsets are not increasing"),
    ("graph", set_entry("layers/shape/values", 1, 3), r"/layers: stored offsets disagree with the shapes"),
    ("graph", set_entry("blocks/1/0/factor_0/indices", 0, 7), r"/blocks/1/0/factor_0/indices: column index 7 "),
    ("activations", lambda f: f["sample_ids"].resize((4,)), r"/: sample_ids are not one integer per sample \(5\)"),
    ("activations", lambda f: f["values"].resize((5, 3)), r"/values: 3 columns for the \d+ nodes of its layer table"),
    ("spectra", lambda f: f["eigenvalues"].resize((2,)) if f["eigenvalues"].maxshape[0] is None else
     (f.__delitem__("eigenvalues"), f.create_dataset("eigenvalues", data=np.zeros(2))),
     r"eigenvalues: \(2,\) eigenvalues for \d+ coefficients"),
    ("spectra", lambda f: (f.__delitem__("eigenvalues"), f.__delitem__("coefficients"),
                           f.create_dataset("coefficients", data=np.zeros((5, 999)))),
     r"/coefficients: 999 coefficients for the \d+ nodes of its layer table"),
    ("graph", lambda f: f["transformers"].__setitem__("x", h5py.ExternalLink("/etc/passwd", "/")),
     r"graph\.h5: /transformers/x links to '/etc/passwd' \(ExternalLink\); nsp files hold no links"),
    ("factored", set_entry("transform/term_target", 0, 99), r"/transform: term_target or term_source outside"),
]


@pytest.mark.parametrize("kind, edit, message", CRAFTED)
def test_crafted_structure_is_refused_naming_file_and_dataset(files, tmp_path, kind, edit, message):
    path = crafted(files, tmp_path, kind, edit)
    with pytest.raises(StorageError, match=message):
        resaved(path, tmp_path / "out")


def test_spectra_of_a_partial_basis_without_eigenvalues_load(tmp_path):
    """Class means of a truncated Laplacian basis: fewer coefficients than nodes, and no eigenvalues."""
    _, graph = toy_graph()
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    storage.write_signals(tmp_path / "m.h5", storage.SignalBatch("spectra", values, graph.core.table,
                                                                 transform_type="laplacian"))
    assert np.array_equal(storage.read_signals(tmp_path / "m.h5").values, values)


def test_a_transformer_is_applied_only_to_its_own_graph_and_weights(files, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    _, other = toy_graph(seed=1)                      # the same graph, other weights
    storage.write_transformer(tmp_path / "other.h5", make_transform("standard").fit(other.core),
                              weights=other.core.weights_sha256)
    ours = storage.read_signals(files / "activations.h5").weights_sha256
    args = ["transform", "--config", str(config), "--activations", str(files / "activations.h5"), "--out",
            str(tmp_path / "s.h5"), "--transformer"]
    assert main(args + [str(tmp_path / "other.h5")]) == 2
    assert capsys.readouterr().err == (
        f"nsp transform: error: --transformer {tmp_path / 'other.h5'} was not fitted for --activations "
        f"{files / 'activations.h5'}: other weights (sha256 {other.core.weights_sha256[:12]}... for the "
        f"transformer, {ours[:12]}... for the activations)\n")
    tiny = nsp.NNGraph(nsp.Activations(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.ones(1, 3)))
    storage.write_transformer(tmp_path / "tiny.h5", make_transform("standard").fit(tiny.core))
    assert main(args + [str(tmp_path / "tiny.h5")]) == 2
    assert capsys.readouterr().err.endswith(": a graph of 5 nodes, activations of 74\n")
    assert not (tmp_path / "s.h5").exists()
    assert main(args + [str(files / "explicit.h5")]) == 0
    assert hashlib.sha256((tmp_path / "s.h5").read_bytes()).hexdigest()
