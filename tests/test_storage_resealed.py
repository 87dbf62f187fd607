"""Files changed by another program and sealed again (``nsp.storage.seal``): HDF5 parses them, so what nsp
reads is checked besides the seal: sizes against the memory budget, shapes against each other, labels and
eigenvalues against what the writer recorded, data against their chunks' checksums, the rest against the
metadata digest. And what the writer refuses or cleans up."""

import gc
import warnings

import h5py
import numpy as np
import pytest

from nsp import storage
from nsp.errors import InputError, OutputError
from nsp.storage import StorageError, h5
from nsp.tracing.table import LayerTable

from test_hardening_storage import KINDS, crafted, files, flipped_copies, resaved, set_entry  # noqa: F401

TABLE = LayerTable.build(["input"], ["input"], [""], [""], [(3,)], [[]])


@pytest.mark.parametrize("kind", KINDS)
def test_resealed_byte_flips_raise_storage_error_or_load_identical_data(files, tmp_path, kind):
    refused = flipped_copies(files, tmp_path, kind,
                             lambda n, rng: rng.choice(np.arange(512, n), size=60, replace=False), 29, reseal=True)
    assert refused >= 30, refused                 # flips in unused bytes load the same data


def signals_file(tmp_path, rows, width=3, labels=True):
    """An activations file whose datasets declare ``rows`` samples (nothing written: chunks are not
    allocated), sealed."""
    path = tmp_path / "big.h5"
    storage.write_signals(path, storage.SignalBatch("activations", np.zeros((2, width), np.float32), TABLE,
                                                    labels=np.zeros(2, int) if labels else None))
    with h5py.File(path, "r+", locking=False) as f:
        for name, shape, dtype in (("values", (rows, width), np.float32), ("sample_ids", (rows,), np.int64),
                                   ("labels", (rows,), np.int64)):
            del f[name]
            f.create_dataset(name, shape=shape, dtype=dtype, chunks=(32,) + shape[1:], fletcher32=True)
    storage.seal(path)
    return path


def test_a_declared_size_beyond_the_memory_budget_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv("NSP_MEMORY_MB", "1024")
    path = signals_file(tmp_path, 1 << 33)
    with pytest.raises(StorageError, match=r"big\.h5: /sample_ids: declares 8589934592 values of int64, 64\.0 GB "
                                           r"to read at once; this process may use 1\.0 GB \(NSP_MEMORY_MB, the "
                                           r"cgroup/SLURM limit or the free memory\): damaged, or too large"):
        storage.read_signals(path)
    with h5py.File(path, "r") as f, pytest.raises(StorageError, match=r"big\.h5: /values: declares 8589934592 x 3 "
                                                                      r"values of float32, 96\.0 GB to read at once"):
        h5.load(f["values"])
    with pytest.raises(StorageError, match=r"big\.h5: damaged: the names, shapes, types"):
        storage.read_signals(path, samples=slice(0, 4))        # a part fits, but the shapes are not nsp's
    storage.seal(path, digest=True)                             # unless accepted
    assert storage.read_signals(path, samples=slice(0, 4)).values.shape == (4, 3)


def test_shapes_are_compared_before_anything_is_read(tmp_path):
    path = signals_file(tmp_path, 1 << 33)
    with h5py.File(path, "r+", locking=False) as f:
        del f["labels"]
        f.create_dataset("labels", data=np.zeros(5, np.int64))
    storage.seal(path)
    with pytest.raises(StorageError, match=r"big\.h5: /: labels are not one integer per sample \(8589934592\)"):
        storage.read_signals(path)


CRAFTED = [
    ("spectra", lambda f: f.__delitem__("eigenvalues"),
     r"spectra\.h5: /: holds 0 eigenvalues where its eigenvalue-count attribute says \d+ \(/eigenvalues missing\)"),
    ("activations", set_entry("labels", 1, 16384),
     r"activations\.h5: /labels: label 16384 of sample 4 is above 2, the largest label written \(its label-max "
     r"attribute\)"),
    ("activations", set_entry("labels", 0, -3),
     r"activations\.h5: /labels: label -3 of sample 3 is negative \(labels are class numbers from 0\)"),
    ("activations", lambda f: f["labels"].attrs.__setitem__("label-max", "2"),
     r"/labels: label-max attribute '2' is not an integer"),
    ("spectra", lambda f: (f.__delitem__("eigenvalues"), f.create_dataset("eigenvalues", data=np.zeros(
        f["coefficients"].shape[1], np.int64))), r"/eigenvalues: expected floating-point eigenvalues, found int64"),
    ("laplacian", lambda f: f.__delitem__("transform/eigenvalues"), r"laplacian\.h5: /transform: "),
]


@pytest.mark.parametrize("kind, edit, message", CRAFTED)
def test_crafted_content_behind_a_new_seal_is_refused(files, tmp_path, kind, edit, message):
    path = crafted(files, tmp_path, kind, edit)
    with pytest.raises(StorageError, match=message):
        resaved(path, tmp_path / "out")


def test_a_changed_attribute_is_refused_by_the_digest_unless_accepted(files, tmp_path):
    path = crafted(files, tmp_path, "activations", lambda f: f.attrs.__setitem__("weights-sha256", "0" * 64))
    with pytest.raises(StorageError, match=r"activations\.h5: damaged: the names, shapes, types, attributes or "
                                           r"strings of its groups and datasets do not match the SHA-256 nsp wrote "
                                           r"in its nsp-digest attribute \(changed by another program\? "
                                           r"nsp\.storage\.seal\(path, digest=True\) accepts such a change\)"):
        storage.read_signals(path)
    with pytest.raises(StorageError, match="do not match the SHA-256 nsp wrote"):
        with storage.open_signals(path):
            pass
    with pytest.raises(StorageError, match="do not match the SHA-256 nsp wrote"):
        next(storage.iter_signals(path))
    storage.seal(path, digest=True)
    assert storage.read_signals(path).weights_sha256 == "0" * 64


def test_data_changed_and_sealed_again_fail_their_checksum(files, tmp_path):
    path = tmp_path / "a.h5"
    data = bytearray((files / "activations.h5").read_bytes())
    with h5py.File(files / "activations.h5", "r") as f:
        offset = f["values"].id.get_chunk_info(0).byte_offset
    data[offset + 4] ^= 0x01
    path.write_bytes(bytes(data))
    storage.seal(path)
    with pytest.raises(StorageError, match=r"a\.h5: /values: damaged: its data cannot be read \(a chunk whose "
                                           r"checksum does not match, or that does not decompress\)"):
        storage.read_signals(path)


def test_a_partial_basis_and_class_means_declare_no_eigenvalues(tmp_path):
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    storage.write_signals(tmp_path / "m.h5", storage.SignalBatch("spectra", values, TABLE, transform_type="laplacian"))
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f.attrs["eigenvalue-count"] == 0 and "eigenvalues" not in f
    assert np.array_equal(storage.read_signals(tmp_path / "m.h5").values, values)


def test_a_value_that_does_not_fit_float32_is_refused_not_written_as_infinity(tmp_path):
    values = np.zeros((3, 3))
    values[1, 2] = 1e300
    values[2, 0] = -np.inf                       # infinite already: stored as it is
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no numpy overflow warning either
        with pytest.raises(StorageError, match=r"a\.h5: /values: value 1e\+300 of sample 8 \(column 2\) does not fit "
                                               r"the file's float32 \(largest 3\.40282e\+38\); 1 such values in this "
                                               r"append, nothing written"):
            _write_float32(tmp_path / "a.h5", values)
    assert list(tmp_path.iterdir()) == []
    values[1, 2] = 3e38
    _write_float32(tmp_path / "a.h5", values)
    back = storage.read_signals(tmp_path / "a.h5").values
    assert back.dtype == np.float32 and back[1, 2] == np.float32(3e38) and back[2, 0] == -np.inf


def _write_float32(path, values):
    with storage.SignalWriter(path, "activations", TABLE, 3) as writer:     # activations: float32
        writer.append(values, np.array([7, 8, 9]))


def test_negative_labels_are_refused_when_written(tmp_path):
    with pytest.raises(InputError, match=r"labels must be class numbers from 0; got -1 for sample 1"):
        storage.write_signals(tmp_path / "a.h5", storage.SignalBatch("activations", np.zeros((2, 3), np.float32),
                                                                     TABLE, labels=np.array([0, -1])))
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch("activations", np.zeros((2, 3), np.float32),
                                                                 TABLE, labels=np.array([0, 7])))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["labels"].attrs["label-max"] == 7


def test_a_failed_writer_closes_its_file_and_leaves_no_temporary(tmp_path):
    def inside_block():
        with storage.SignalWriter(tmp_path / "a.h5", "activations", TABLE, 3) as writer:
            writer.append(np.zeros((2, 3), np.float32))
            raise RuntimeError("killed")

    def in_append():
        with storage.SignalWriter(tmp_path / "a.h5", "activations", TABLE, 3) as writer:
            writer.append(np.zeros((2, 4), np.float32))

    def in_close():
        writer = storage.SignalWriter(tmp_path / "a.h5", "activations", TABLE, 3)
        writer.append(np.zeros((1, 3)))
        writer._labels = writer._values          # makes the last flush fail
        writer._pending[0] = (writer._pending[0][0], writer._pending[0][1], None)
        writer.close()

    def in_init():
        storage.SignalWriter(tmp_path / "a.h5", "spectra", TABLE, 3, stored_layers=[0])

    for fail, error in ((inside_block, RuntimeError), (in_append, InputError), (in_close, Exception),
                        (in_init, InputError)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(error):
                fail()
            gc.collect()
        assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == [], fail.__name__
        assert list(tmp_path.iterdir()) == [], fail.__name__


def test_an_output_under_a_file_or_onto_a_folder_is_refused_by_name(tmp_path):
    (tmp_path / "afile").write_text("x")
    batch = storage.SignalBatch("activations", np.zeros((1, 3), np.float32), TABLE)
    for path, where in ((tmp_path / "afile" / "a.h5", ""),
                        (tmp_path / "afile" / "sub" / "a.h5", f" \\({tmp_path / 'afile'}\\)")):
        with pytest.raises(OutputError, match=rf"^{path}: not written: cannot make the folder {path.parent}: a file "
                                              rf"is in the way{where}$"):
            storage.write_signals(path, batch)
    (tmp_path / "folder.h5").mkdir()
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'folder.h5'}: not written: a folder of that name is in "
                                          rf"the way$"):
        storage.write_signals(tmp_path / "folder.h5", batch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder.h5"]


def test_the_same_content_gives_the_same_bytes(files, tmp_path):
    for kind in ("graph", "laplacian", "spectra"):
        first, second = resaved(files / f"{kind}.h5", tmp_path), resaved(files / f"{kind}.h5", tmp_path)
        assert first == second, kind
