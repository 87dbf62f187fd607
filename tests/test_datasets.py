"""Dataset sources: one registry (built-in sources, then plugins'), found by name or prefix, a path otherwise;
what every dataset shares (labels, limit, scaling, finite values) applies to a plugin's source too."""

import types

import h5py
import numpy as np
import pytest

from docexamples import docstring_example

from nsp import external
from nsp.errors import DatasetError, MissingFileError, RegistryError
from nsp.pipeline import config, datasets
from nsp.pipeline.datasets import SOURCES, Source, source_of


def test_built_in_sources_in_their_order_and_how_a_source_is_found(tmp_path):
    assert list(SOURCES) == ["sklearn-digits", "sklearn-photos", "file", "torchvision:"]
    assert source_of("sklearn-digits") is SOURCES["sklearn-digits"]
    assert source_of("torchvision:MNIST") is SOURCES["torchvision:"]
    assert source_of("data/x.npz") is SOURCES["file"] and source_of("torchvision") is SOURCES["file"]
    with pytest.raises(MissingFileError) as err:
        datasets.load({"source": str(tmp_path / "x.npz")}, "d")
    assert str(err.value) == (f"dataset d: {tmp_path / 'x.npz'} does not exist (sources: sklearn-digits, "
                              f"sklearn-photos, a .npz or .h5 file, torchvision:MNIST|FashionMNIST|CIFAR10)")
    try:
        external.import_torchvision()
    except ImportError:
        return                                      # without the optional extra: the name is not checked
    with pytest.raises(DatasetError, match="dataset d: unknown torchvision dataset 'SVHN'; accepted: MNIST"):
        datasets.load({"source": "torchvision:SVHN"}, "d")


def test_damaged_array_files_are_dataset_errors_naming_the_file(tmp_path):
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 not a whole archive")
    (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n and nothing more")
    np.savez(tmp_path / "objects.npz", inputs=np.array([object(), 1], dtype=object))
    for name, message in (("cut.npz", "is not a .npz file of numeric arrays nsp can read"),
                          ("cut.h5", "is not an HDF5 file of numeric arrays nsp can read"),
                          ("objects.npz", "is not a .npz file of numeric arrays nsp can read")):
        spec = {"source": str(tmp_path / name)}
        with pytest.raises(DatasetError, match=f"dataset d: .*{name} {message}"):
            datasets.load(spec, "d")
        if name.startswith("cut"):                  # no header to count from: loading says what is wrong
            with pytest.raises(DatasetError, match=f"{name} {message}"):
                datasets.count(spec, "d")
    assert datasets.count({"source": str(tmp_path / "objects.npz")}) == 2     # the header is readable
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f["inputs"] = np.zeros((3, 2))
    assert datasets.count({"source": str(tmp_path / "ok.h5")}) == 3



def test_the_documented_plugin_source_loads_counts_and_is_accepted_by_the_config(monkeypatch):
    module = types.ModuleType("nsp_documented_source")
    with SOURCES.temporary():
        exec(compile(docstring_example(datasets.__doc__), "nsp_documented_source.py", "exec"), module.__dict__)
        spec = {"source": "noise", "limit": 30, "scale": 2.0}
        inputs, labels = datasets.load(spec, "n")
        assert inputs.shape == (30, 1, 8, 8) and inputs.dtype == np.float32 and labels.tolist()[:3] == [0, 1, 2]
        monkeypatch.setattr(datasets, "load", lambda *a: pytest.fail("counted by loading"))
        assert datasets.count(spec, "n") == 30 and datasets.count({"source": "noise"}) == 100
        cfg = config.validate({"datasets": {"n": {"source": "noise"}}, "shard_size": 40,
                               "models": {"m": {"architecture": "digits_mlp", "dataset": "n"}},
                               "transforms": {"standard": {}}})
        assert config.shard_counts(cfg) == {"m": 3}
        assert datasets.accepted().endswith("torchvision:MNIST|FashionMNIST|CIFAR10, noise")
    assert "noise" not in SOURCES


def test_a_prefix_source_takes_every_name_and_shares_the_checks():
    def load(spec, name):
        kind = spec["source"].partition(":")[2]
        return (np.full((4, 2), np.nan if kind == "nan" else 1.0), [0, 1, 2] if kind == "short" else None)

    with SOURCES.temporary():
        SOURCES.add(Source("gen:", load))
        assert datasets.load({"source": "gen:ok"})[1] is None
        assert datasets.count({"source": "gen:ok"}) == 4                   # no count: loaded to be counted
        with pytest.raises(DatasetError, match="dataset g: 4 inputs but 3 labels"):
            datasets.load({"source": "gen:short"}, "g")
        with pytest.raises(DatasetError, match="dataset g: sample 0 \\(and 3 more\\) holds NaN"):
            datasets.load({"source": "gen:nan"}, "g")
        with pytest.raises(RegistryError, match="dataset source 'sklearn-digits' is already registered by "
                                                "nsp.pipeline.datasets._digits"):
            SOURCES.add(Source("sklearn-digits", load))
