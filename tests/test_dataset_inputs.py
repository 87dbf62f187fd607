"""Dataset files that nsp refuses, each with a one-line error naming the dataset, the file and the value:
suffixes, non-numeric arrays, labels that are not class indices, arrays stored in other HDF5 files, arrays
larger than the memory budget (read only as far as ``limit``), truncated members, empty datasets, and
torchvision's files."""

import importlib.util
import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch

from nsp.errors import DatasetError, MemoryBudgetError, MissingFileError
from nsp.pipeline import cli, datasets, training


def both(spec):
    """The errors of count (plan time) and load (in a job), as (type, message) pairs."""
    out = []
    for call in (datasets.count, datasets.load):
        with pytest.raises(Exception) as err:
            call(spec, "d")
        out.append((type(err.value), str(err.value)))
    return out


def test_a_file_source_takes_npz_and_hdf5_suffixes_only(tmp_path):
    (tmp_path / "a.csv").write_text("1,2,3\n")
    message = (f"dataset d: {tmp_path / 'a.csv'} is not a file of arrays nsp reads: a file source ends in .npz, "
               f".h5, .hdf5 (numpy's savez, or HDF5)")
    assert both({"source": str(tmp_path / "a.csv")}) == [(DatasetError, message)] * 2
    with h5py.File(tmp_path / "a.hdf5", "w") as f:
        f["inputs"], f["labels"] = np.ones((3, 2)), np.array([0, 1, 1])
    spec = {"source": str(tmp_path / "a.hdf5")}
    assert datasets.count(spec) == 3 and datasets.load(spec)[1].tolist() == [0, 1, 1]


def test_arrays_that_are_not_numeric_are_named_with_their_key_and_dtype(tmp_path):
    np.savez(tmp_path / "strings.npz", inputs=np.array(["a", "b"]), labels=np.array([0, 1]))
    np.savez(tmp_path / "objects.npz", inputs=np.zeros((2, 3)), labels=np.array([1, None], dtype=object))
    with h5py.File(tmp_path / "strings.h5", "w") as f:
        f["inputs"] = np.array(["a", "bb"], dtype=h5py.string_dtype())
    for file, kind, key, dtype in (("strings.npz", "a .npz", "inputs", "<U1"), ("objects.npz", "a .npz", "labels",
                                   "object"), ("strings.h5", "an HDF5", "inputs", "object")):
        with pytest.raises(DatasetError) as err:
            datasets.load({"source": str(tmp_path / file)}, "d")
        assert str(err.value) == (f"dataset d: {tmp_path / file} is not {kind} file of numeric arrays nsp can read: "
                                  f"array {key!r} has dtype {dtype} (accepted: bool, integer or float arrays)")


@pytest.mark.parametrize("labels, shown, why", [([0, 0.9, 1], "0.9", "of sample 1 is not a whole number"),
                                                ([0, 1, -1], "-1", "of sample 2 is negative"),
                                                ([np.nan, 1, 1], "nan", "of sample 0 is not a whole number"),
                                                ([0, 2.0**40, 1], "1099511627776.0", "of sample 1 exceeds 2147483647")])
def test_labels_that_are_not_class_indices_are_refused_never_truncated(tmp_path, labels, shown, why):
    np.savez(tmp_path / "l.npz", inputs=np.zeros((3, 2)), mine=np.array(labels))
    with pytest.raises(DatasetError) as err:
        datasets.load({"source": str(tmp_path / "l.npz"), "labels_key": "mine"}, "d")
    assert str(err.value) == (f"dataset d: {tmp_path / 'l.npz'} array 'mine': label {shown} {why}; labels are class "
                              f"indices 0..C-1 (integers, or floats with whole values)")


def test_float_labels_with_whole_values_are_class_indices(tmp_path):
    np.savez(tmp_path / "l.npz", inputs=np.zeros((3, 2)), labels=np.array([2.0, 0.0, 1.0], np.float32))
    labels = datasets.load({"source": str(tmp_path / "l.npz")}, "d")[1]
    assert labels.dtype == np.int64 and labels.tolist() == [2, 0, 1]
    with pytest.raises(DatasetError, match=r"dataset d: source gen:x: labels have shape \(3, 1\); labels are one "
                                           r"class index per sample"):
        with datasets.SOURCES.temporary():
            datasets.SOURCES.add(datasets.Source("gen:", lambda spec, name: (np.zeros((3, 2)), np.zeros((3, 1)))))
            datasets.load({"source": "gen:x"}, "d")


def test_labels_beyond_the_outputs_of_the_network_are_refused_before_training():
    net, inputs = torch.nn.Linear(4, 10), torch.zeros((5, 4))
    labels = np.array([0, 1, 2, 12, 3])
    with pytest.raises(DatasetError) as err:
        training.train(net, inputs, labels, epochs=1, batch_size=2, learning_rate=0.1, seed=0, test_every=2,
                       what="model m, dataset d")
    assert str(err.value) == ("model m, dataset d: label 12 of sample 3 is out of range: the network has 10 outputs "
                              "(labels 0..9)")
    with pytest.raises(DatasetError, match=r"^label -1 of sample 0 is out of range: the network has 10 outputs"):
        training.check_labels(net, inputs, np.array([-1, 0]))
    assert net.training                                   # the check leaves the network's mode as it was


def test_nsp_train_refuses_a_label_beyond_the_outputs_in_one_line(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", inputs=np.zeros((6, 64), np.float32), labels=np.array([0, 1, 2, 12, 3, 4]))
    (tmp_path / "c.yaml").write_text(json.dumps({
        "results": str(tmp_path / "results"), "datasets": {"d": {"source": str(tmp_path / "d.npz")}},
        "models": {"m": {"architecture": "digits_mlp", "dataset": "d", "epochs": 1}},
        "transforms": {"standard": {}}}))
    assert cli.main(["train", "--config", str(tmp_path / "c.yaml"), "--model", "m", "--out", str(tmp_path / "w.npz"),
                     "--metrics", str(tmp_path / "m.json"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nsp train: error: ")
    assert err[0].endswith("label 12 of sample 3 is out of range: the network has 10 outputs (labels 0..9)")
    assert not (tmp_path / "w.npz").exists() and not (tmp_path / "m.json").exists()


def test_hdf5_arrays_stored_in_another_file_are_refused(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["inputs"] = np.ones((3, 4))
    layout = h5py.VirtualLayout(shape=(3, 4), dtype="f8")
    layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "inputs", shape=(3, 4))
    (tmp_path / "raw.bin").write_bytes(bytes(96))
    with h5py.File(tmp_path / "links.h5", "w") as f:
        f["external"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "inputs")
        f["soft"] = h5py.SoftLink("/external")
        f.create_virtual_dataset("virtual", layout)
        f.create_dataset("raw", shape=(3, 4), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 96)])
        f["group/inputs"] = np.ones((3, 4))
    path = tmp_path / "links.h5"
    for key, what in (("external", "a link into another file"), ("soft", "a link into another file"),
                      ("virtual", "a virtual dataset (its data lie in other files)"),
                      ("raw", "stored in an external raw file")):
        message = f"dataset d: {path} array {key!r} is {what}; nsp reads arrays stored in the file itself"
        assert both({"source": str(path), "inputs_key": key}) == [(DatasetError, message)] * 2
    assert datasets.load({"source": str(path), "inputs_key": "group/inputs"})[0].shape == (3, 4)
    with pytest.raises(DatasetError, match=f"dataset d: {path} 'group' is an HDF5 group, not an array"):
        datasets.load({"source": str(path), "inputs_key": "group"}, "d")


def test_an_npz_larger_than_the_budget_is_refused_unread_and_limit_inflates_only_its_rows(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "bomb.npz", inputs=np.zeros((500_000, 64), np.uint8))     # 32 MB in 31 kB
    monkeypatch.setenv("NSP_MEMORY_MB", "64")
    read = []
    original = zipfile.ZipExtFile.read
    monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: read.append(n) or original(self, n))
    with pytest.raises(MemoryBudgetError) as err:
        datasets.load({"source": str(tmp_path / "bomb.npz")}, "d")
    assert str(err.value).startswith(f"dataset d: {tmp_path / 'bomb.npz'} array 'inputs' (shape (500000, 64), uint8) "
                                     f"needs at least 0.1 GB of memory; this process may use 0.1 GB")
    assert str(err.value).endswith("Set limit: in the dataset's config entry to read its first samples only.")
    assert sum(n for n in read if n > 0) < 1000                      # the header only
    read.clear()
    spec = {"source": str(tmp_path / "bomb.npz"), "limit": 10}
    inputs, labels = datasets.load(spec, "d")
    assert inputs.shape == (10, 64) and labels is None and datasets.count(spec) == 10
    assert sum(n for n in read if n > 0) < 1000 + 10 * 64


def test_an_hdf5_array_larger_than_the_budget_is_refused_and_limit_reads_its_first_rows(tmp_path, monkeypatch):
    with h5py.File(tmp_path / "big.h5", "w") as f:                   # 32 MB declared, nothing written
        f.create_dataset("inputs", shape=(500_000, 64), dtype="u1", chunks=(1000, 64), fillvalue=3)
        f["labels"] = np.arange(500_000) % 10
    monkeypatch.setenv("NSP_MEMORY_MB", "64")
    with pytest.raises(MemoryBudgetError, match=r"dataset d: .*big.h5 array 'inputs' \(shape \(500000, 64\), uint8\) "
                                                r"needs at least 0.1 GB of memory"):
        datasets.load({"source": str(tmp_path / "big.h5")}, "d")
    inputs, labels = datasets.load({"source": str(tmp_path / "big.h5"), "limit": 4}, "d")
    assert inputs.shape == (4, 64) and (inputs == 3).all() and labels.tolist() == [0, 1, 2, 3]


def test_truncated_members_fortran_order_and_mismatched_labels(tmp_path):
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    np.save(tmp_path / "f.npy", fortran)
    whole = (tmp_path / "f.npy").read_bytes()
    with zipfile.ZipFile(tmp_path / "fortran.npz", "w") as z:
        z.writestr("inputs.npy", whole)
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:
        z.writestr("inputs.npy", whole[:-16])
    inputs = datasets.load({"source": str(tmp_path / "fortran.npz"), "limit": 2})[0]
    assert np.array_equal(inputs, fortran[:2])
    with pytest.raises(DatasetError) as err:
        datasets.load({"source": str(tmp_path / "cut.npz")}, "d")
    assert str(err.value) == (f"dataset d: {tmp_path / 'cut.npz'} array 'inputs' declares shape (3, 4) of float64 "
                              f"(96 bytes) but holds 80 bytes (a truncated or damaged file)")
    np.savez(tmp_path / "short.npz", inputs=np.zeros((5, 4)), labels=np.arange(3))
    with pytest.raises(DatasetError, match=r"dataset d: 5 inputs but 3 labels; every input needs its label \(or give "
                                           r"no labels\): .*short.npz arrays 'inputs' and 'labels'"):
        datasets.load({"source": str(tmp_path / "short.npz"), "limit": 2}, "d")    # limit does not hide it


def test_an_empty_dataset_is_refused_when_it_is_counted(tmp_path):
    np.savez(tmp_path / "empty.npz", inputs=np.zeros((0, 1, 8, 8)), labels=np.zeros(0, int))
    message = f"dataset d: {tmp_path / 'empty.npz'} has no samples; nsp needs at least one"
    assert both({"source": str(tmp_path / "empty.npz")}) == [(DatasetError, message)] * 2
    with datasets.SOURCES.temporary():
        datasets.SOURCES.add(datasets.Source("none", lambda spec, name: (np.zeros((0, 2)), None)))
        with pytest.raises(DatasetError, match="^dataset e: none has no samples; nsp needs at least one$"):
            datasets.count({"source": "none"}, "e")


TORCHVISION_SCRIPT = """
import json, struct, sys
from pathlib import Path
import numpy as np
root = Path(sys.argv[1])
raw = root / "MNIST" / "raw"
raw.mkdir(parents=True)
images = np.arange(5 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(5, 28, 28)
for split in ("train", "t10k"):
    (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, 5, 28, 28) + images.tobytes())
    (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, 5) + bytes([3, 1, 4, 1, 5]))
from nsp.errors import NspError
from nsp.pipeline import datasets
spec = {"source": "torchvision:MNIST", "root": str(root)}
out = {"count": datasets.count(spec, "m")}
inputs, labels = datasets.load(spec, "m")
out.update(shape=list(inputs.shape), labels=labels.tolist(), same=bool((inputs == images).all()))
(raw / "train-labels-idx1-ubyte").unlink()
try:
    datasets.count(spec, "m")
except NspError as err:
    out["missing"] = [type(err).__name__, str(err)]
print(json.dumps(out))
"""


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_torchvision_mnist_files_load_and_count_in_a_fresh_process(tmp_path):
    run = subprocess.run([sys.executable, "-c", TORCHVISION_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["count"] == 5 and out["shape"] == [5, 28, 28] and out["labels"] == [3, 1, 4, 1, 5] and out["same"]
    assert out["missing"] == [MissingFileError.__name__, (
        f"dataset m: torchvision:MNIST files not found under {tmp_path} (never downloaded): "
        f"{tmp_path / 'MNIST' / 'raw' / 'train-labels-idx1-ubyte'}; put them there (config key datasets.m.root), "
        f"or save the arrays to a .npz file (inputs, labels) and give its path as source")]
