"""HDF5 storage: round trips, byte-identical files, errors for bad files, atomic writes."""

import hashlib
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import nsp
from nsp import storage
from nsp.errors import InputTypeError
from nsp.storage import SignalBatch, SignalWriter, StorageError
from nsp.zoo import ToyNet

README_INPUT = torch.tensor([[[[-6, -1, -2, 5], [-3, -6, 5, 4], [2, 5, -6, 3], [5, 0, 1, -6]]]], dtype=torch.float)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def toy():
    torch.manual_seed(0)
    acts = nsp.Activations(ToyNet(), README_INPUT)
    graph = nsp.NNGraph(acts)
    graph.get_transformer("standard")
    graph.get_transformer("laplacian")
    return acts, graph


def same_csr(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and (a != b).nnz == 0


def test_graph_round_trip(tmp_path, toy):
    acts, graph = toy
    path = tmp_path / "graph.h5"
    nsp.OutputLoader.save(graph, path)
    back = nsp.OutputLoader.load(path)
    assert isinstance(back, nsp.NNGraph) and back.INCL is True
    assert list(back.nodes) == list(graph.nodes) and set(back.edges) == set(graph.edges)
    core, stored = graph.core, back.core
    assert stored.table == core.table
    assert same_csr(stored.adjacency, core.adjacency)
    assert [len(b) for b in stored.blocks] == [len(b) for b in core.blocks]
    for items, stored_items in zip(core.blocks, stored.blocks):
        for (p, block), (q, stored_block) in zip(items, stored_items):
            assert p == q and type(block) is type(stored_block)
            assert np.array_equal(np.stack(block.coo()), np.stack(stored_block.coo()))
    assert same_csr(back.inv_F, graph.inv_F)
    assert same_csr(back.transformers["standard"].mobius, graph.transformers["standard"].mobius)
    lap, stored_lap = graph.transformers["laplacian"], back.transformers["laplacian"]
    assert np.array_equal(lap.eigenvalues, stored_lap.eigenvalues)
    assert np.array_equal(lap.eigenvectors, stored_lap.eigenvectors)
    assert stored_lap.channel_groups == lap.channel_groups and stored_lap.truncation is None
    assert back.weights_sha256 == acts.weights_sha256
    assert np.array_equal(back.transform(acts).to_array(np.float64), graph.transform(acts).to_array(np.float64))


def test_activations_and_spectrum_round_trip(tmp_path, toy):
    acts, graph = toy
    nsp.OutputLoader.save(acts, tmp_path / "acts.h5")
    back = nsp.OutputLoader.load(tmp_path / "acts.h5")
    assert type(back) is nsp.Activations
    assert back.layernames == acts.layernames and back.layerparents == acts.layerparents
    assert back.layerdescriptions == [str(d) for d in acts.layerdescriptions]
    assert all(a.dtype == b.dtype == torch.float32 and torch.equal(a, b)
               for a, b in zip(acts.layeractivations, back.layeractivations))
    assert back.trace == "children" and back.weights_sha256 == acts.weights_sha256
    for kind in ("standard", "laplacian"):
        spectrum = graph.transform(acts, kind)
        nsp.OutputLoader.save(spectrum, tmp_path / f"{kind}.h5")
        stored = nsp.OutputLoader.load(tmp_path / f"{kind}.h5")
        assert type(stored) is nsp.Spectrum and stored.transform_type == kind
        assert np.array_equal(stored.to_array(np.float64), spectrum.to_array(np.float64))
        assert stored.layeractivations[1].dtype == torch.float64
        if kind == "laplacian":
            assert np.array_equal(stored.eigenvalues, spectrum.eigenvalues)
    with pytest.raises(ValueError, match="carry no operations \\(loaded from a file"):
        nsp.NNGraph(back)


def test_many_samples_stream_and_read_back(tmp_path, toy):
    acts, _ = toy
    table = acts.table
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((n, 74)).astype(np.float32) for n in (5, 1, 40)]
    path = tmp_path / "shard.h5"
    with SignalWriter(path, "activations", table, 74, with_labels=True, producer={"rule": "test"}) as writer:
        start = 100
        for chunk in chunks:
            writer.append(chunk, np.arange(start, start + len(chunk)), np.arange(len(chunk)) % 10)
            start += len(chunk)
        assert not path.exists()                      # nothing at the target before close
    batch = nsp.OutputLoader.load(path)
    assert isinstance(batch, SignalBatch) and batch.kind == "activations"
    assert batch.values.dtype == np.float32 and np.array_equal(batch.values, np.concatenate(chunks))
    assert batch.sample_ids.tolist() == list(range(100, 146))
    assert batch.labels.tolist() == [i % 10 for n in (5, 1, 40) for i in range(n)]
    assert batch.layers == table
    part = storage.read_signals(path, "activations", samples=slice(3, 7))
    assert np.array_equal(part.values, np.concatenate(chunks)[3:7])
    with h5py.File(path, "r") as f:
        assert f["values"].chunks[0] <= 32 and f["values"].compression == "gzip"
        assert json_of(f.attrs["producer"]) == {"rule": "test"}


def json_of(text):
    import json
    return json.loads(text)


def test_transformer_file_round_trip(tmp_path, toy):
    _, graph = toy
    for kind in ("standard", "laplacian"):
        path = tmp_path / f"{kind}.h5"
        storage.write_transformer(path, graph.transformers[kind], weights="abc")
        back = nsp.OutputLoader.load(path)
        assert back.type == kind
        signals = np.random.default_rng(1).standard_normal((3, 74))
        assert np.array_equal(back.transform(signals), graph.transformers[kind].transform(signals))
    partial = nsp.LaplacianTransform(k=9).fit(graph.core)
    storage.write_transformer(tmp_path / "partial.h5", partial)
    back = storage.read_transformer(tmp_path / "partial.h5")
    assert back.k == 9 and back.truncation == partial.truncation and back.n_coefficients == 9


def test_same_object_gives_identical_bytes(tmp_path, toy):
    acts, graph = toy
    objects = (("graph", graph), ("acts", acts), ("spectrum", graph.transform(acts)))
    for name, obj in objects:
        nsp.OutputLoader.save(obj, tmp_path / f"{name}-1.h5")
    time.sleep(1.1)                       # HDF5 timestamps have one-second resolution: none may be stored
    for name, obj in objects:
        nsp.OutputLoader.save(obj, tmp_path / f"{name}-2.h5")
        assert sha(tmp_path / f"{name}-1.h5") == sha(tmp_path / f"{name}-2.h5")
    # and a fresh graph built again from the network gives the same bytes
    torch.manual_seed(0)
    again = nsp.NNGraph(nsp.Activations(ToyNet(), README_INPUT))
    again.get_transformer("standard")
    again.get_transformer("laplacian")
    nsp.OutputLoader.save(again, tmp_path / "graph-3.h5")
    assert sha(tmp_path / "graph-3.h5") == sha(tmp_path / "graph-1.h5")


def test_no_timestamps_or_absolute_paths(tmp_path, toy):
    _, graph = toy
    path = tmp_path / "graph.h5"
    nsp.OutputLoader.save(graph, path)
    with h5py.File(path, "r") as f:
        texts = [str(v) for v in f.attrs.values()]
        assert not any(str(tmp_path) in t for t in texts)
        f.visititems(lambda name, obj: texts.extend(str(v) for v in obj.attrs.values()))
        assert all("encoding-type" in obj.attrs for obj in _all_objects(f))
        assert f.attrs["format-version"] == storage.FORMAT_VERSION and f.attrs["kind"] == "graph"
        assert f.attrs["torch-version"] == torch.__version__
    assert not any(str(tmp_path) in t for t in texts)


def _all_objects(f):
    found = []
    f.visititems(lambda name, obj: found.append(obj))
    return found


def test_bad_files_give_clear_errors(tmp_path, toy):
    acts, graph = toy
    good = tmp_path / "graph.h5"
    nsp.OutputLoader.save(graph, good)
    truncated = tmp_path / "truncated.h5"
    data = open(good, "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(StorageError, match=rf"truncated\.h5: damaged: {len(data) // 2} bytes where nsp wrote "
                                           rf"{len(data)} \(truncated\?\)"):
        nsp.OutputLoader.load(truncated)
    noise = tmp_path / "noise.h5"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(StorageError, match=r"noise\.h5: not a readable HDF5 file"):
        nsp.OutputLoader.load(noise)
    with pytest.raises(StorageError, match=r"graph\.h5: holds nsp 'graph' data; expected 'activations' or 'spectra'"):
        storage.read_signals(good)
    with pytest.raises(StorageError, match=r"graph\.h5: holds nsp 'graph' data; expected 'transformer'"):
        storage.read_transformer(good)
    future = tmp_path / "future.h5"
    nsp.OutputLoader.save(acts, future)
    with h5py.File(future, "a") as f:
        f.attrs["format-version"] = storage.FORMAT_VERSION + 1
    storage.seal(future)
    with pytest.raises(StorageError, match=r"future\.h5: format version 3 is newer than this nsp reads \(2\); upgrade nsp"):
        nsp.OutputLoader.load(future)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(StorageError, match=r"plain\.h5: an HDF5 file but not an nsp file"):
        nsp.OutputLoader.load(plain)
    with pytest.raises(FileNotFoundError, match="missing.h5: no such file"):
        nsp.OutputLoader.load(tmp_path / "missing.h5")
    with pytest.raises(TypeError, match="cannot save a list; accepted: NNGraph"):
        nsp.OutputLoader.save([1, 2], tmp_path / "list.h5")


def test_failed_write_leaves_nothing(tmp_path, toy):
    acts, _ = toy
    path = tmp_path / "sub" / "shard.h5"
    with pytest.raises(RuntimeError, match="killed"):
        with SignalWriter(path, "activations", acts.table, 74) as writer:
            writer.append(np.zeros((2, 74), np.float32))
            raise RuntimeError("killed")
    assert list((tmp_path / "sub").iterdir()) == []
    with pytest.raises(ValueError, match=r"values must have shape \(samples, 74\); got \(1, 3\)"):
        with SignalWriter(path, "activations", acts.table, 74) as writer:
            writer.append(np.zeros(3))
    assert list((tmp_path / "sub").iterdir()) == []


def test_files_are_readable_without_nsp(tmp_path, toy):
    acts, graph = toy
    nsp.OutputLoader.save(graph, tmp_path / "graph.h5")
    nsp.OutputLoader.save(acts, tmp_path / "acts.h5")
    script = (
        "import sys, h5py\n"
        "assert 'nsp' not in sys.modules\n"
        "for p in sys.argv[1:]:\n"
        "    with h5py.File(p, 'r') as f:\n"
        "        names = []\n"
        "        f.visit(names.append)\n"
        "        print(p.rsplit('/', 1)[-1], len(names), f.attrs['kind'])\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", script, str(tmp_path / "graph.h5"), str(tmp_path / "acts.h5")],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ""})
    lines = out.stdout.split("\n")
    assert lines[0].startswith("graph.h5 ") and lines[0].endswith(" graph")
    assert lines[1].startswith("acts.h5 ") and lines[1].endswith(" activations")
    with h5py.File(tmp_path / "graph.h5", "r") as f:
        adjacency = sp.csr_matrix((f["adjacency/data"][()], f["adjacency/indices"][()], f["adjacency/indptr"][()]),
                                  shape=tuple(f["adjacency"].attrs["shape"]))
    assert adjacency.nnz == 584


def test_small_graph_with_laplacian_and_label_misuse(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    acts = nsp.Activations(net, torch.ones(1, 3))
    graph = nsp.NNGraph(acts)
    graph.get_transformer("laplacian")
    nsp.OutputLoader.save(graph, tmp_path / "tiny.h5")          # 5 nodes: chunks must fit
    back = nsp.OutputLoader.load(tmp_path / "tiny.h5")
    assert np.array_equal(back.transformers["laplacian"].eigenvectors, graph.transformers["laplacian"].eigenvectors)
    with pytest.raises(ValueError, match="opened without labels: pass with_labels=True"):
        with SignalWriter(tmp_path / "x.h5", "activations", acts.table, 5) as writer:
            writer.append(np.zeros((1, 5)), labels=[3])
    assert not (tmp_path / "x.h5").exists()
    with h5py.File(tmp_path / "tiny.h5", "a") as f:
        del f.attrs["format-version"]
    storage.seal(tmp_path / "tiny.h5")
    with pytest.raises(StorageError, match="without a format-version attribute"):
        nsp.OutputLoader.load(tmp_path / "tiny.h5")


def test_format_versions_folders_and_devices_are_clear_errors(tmp_path):
    import h5py
    from nsp import storage
    from nsp.tracing.table import LayerTable
    table = LayerTable.build(["input"], ["input"], [""], [""], [(2,)], [[]])
    path = tmp_path / "s.h5"
    storage.write_signals(path, storage.SignalBatch(kind="activations", values=np.zeros((1, 2), np.float32),
                                                    layers=table))
    for bad in ("abc", -1, 1.5, 0, True):
        with h5py.File(path, "r+") as f:
            f.attrs["format-version"] = bad
        storage.seal(path)
        with pytest.raises(storage.StorageError, match=r"s.h5: format-version .* is not a version number "
                                                       r"\(a whole number from 1; this nsp writes 2\)"):
            storage.read_signals(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format-version"] = 2
    storage.seal(path)
    assert storage.read_signals(path).values.shape == (1, 2)
    with pytest.raises(storage.StorageError, match="a folder, not an nsp file"):
        storage.read_signals(tmp_path)
    with pytest.raises(storage.StorageError, match="/dev/null: not a regular file"):
        storage.read_signals("/dev/null")
    with pytest.raises(FileNotFoundError, match="missing.h5: no such file"):
        storage.read_signals(tmp_path / "missing.h5")


@pytest.mark.parametrize("producer, says", [
    ({"rule": object()}, "Object of type object is not JSON serializable"),
    ({"loss": float("nan")}, "Out of range float values are not JSON compliant"),
    ("rule", "got str"),
])
def test_provenance_that_is_not_json_is_refused_before_writing(tmp_path, toy, producer, says):
    acts, _ = toy
    with pytest.raises(InputTypeError, match=f"producer= takes a dict of JSON values.*{says}"):
        with SignalWriter(tmp_path / "s.h5", "activations", acts.table, 74, producer=producer):
            pass
    with pytest.raises(InputTypeError, match="parameters= takes a dict of JSON values"):
        storage.write_signals(tmp_path / "s.h5", SignalBatch("activations", np.zeros((1, 74), np.float32),
                                                             acts.table), parameters={"x": {1, 2}})
    assert list(tmp_path.iterdir()) == []                      # nothing half-written
