"""Bad inputs refused with one line: weights files, spectra that do not match their activations, a
visualize.label no sample has, an inverse transform of another type than the spectrum's."""

import os

import numpy as np
import pytest
import torch
import yaml

import nsp
from nsp import storage, zoo
from nsp.pipeline.cli import main
from nsp.tracing.table import LayerTable

CONFIG = {
    "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625}},
    "models": {"m": {"architecture": "digits_mlp", "dataset": "digits"}},
    "transforms": {"standard": {}},
}


class MakesFolder:
    """Unpickling it would create a folder: proof that an object array was (not) unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def state(net=None) -> dict:
    torch.manual_seed(0)
    return {k: v.numpy() for k, v in (net or zoo.build("digits_mlp")).state_dict().items()}


def text_file(path):
    path.write_text("not weights\n")


def npy_file(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))


def truncated_zip(path):
    np.savez(path, **state())
    path.write_bytes(path.read_bytes()[:300])


def nan_weights(path):
    np.savez(path, **{**state(), "fc2.bias": np.full(10, np.nan, np.float32),
                      "fc1.weight": np.full((32, 64), np.inf, np.float32)})


def wrong_shape(path):
    np.savez(path, **{**state(), "fc1.weight": np.zeros((16, 64), np.float32)})


def wrong_keys(path):
    arrays = {k: v for k, v in state().items() if not k.startswith("fc2")}
    np.savez(path, **arrays, **{"head.weight": np.zeros((10, 32), np.float32)})


def strings(path):
    np.savez(path, **{**state(), "fc2.bias": np.array(["a"] * 10)})


NOT_NPZ = "weights file {} is not an .npz of arrays (a zip of .npy files, as nsp train writes)"
BAD_WEIGHTS = [
    (text_file, NOT_NPZ),
    (npy_file, NOT_NPZ),
    (truncated_zip, NOT_NPZ),
    (nan_weights, "weights file {}: fc1.weight, fc2.bias hold NaN or infinite values"),
    (wrong_shape, "weights file {}: fc1.weight has shape (16, 64) in the file; the network expects (32, 64)"),
    (wrong_keys, "weights file {} does not fit the network: missing keys fc2.weight, fc2.bias; "
                 "unexpected keys head.weight"),
    (strings, "weights file {}: fc2.bias holds <U1 values; weights are numeric arrays"),
]


@pytest.mark.parametrize("make, message", BAD_WEIGHTS)
def test_bad_weights_files_are_refused_naming_file_and_keys(tmp_path, make, message):
    path = tmp_path / "w.npz"
    make(path)
    with pytest.raises(ValueError) as err:
        zoo.load_weights(zoo.build("digits_mlp"), path)
    assert str(err.value) == message.format(path)
    assert "allow_pickle" not in str(err.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    arrays = {**state(), "fc2.bias": np.array([MakesFolder(marker)], dtype=object)}
    np.savez(tmp_path / "w.npz", **arrays, allow_pickle=True)
    with pytest.raises(ValueError) as err:
        zoo.load_state_npz(zoo.build("digits_mlp"), tmp_path / "w.npz")
    assert str(err.value) == (f"weights file {tmp_path / 'w.npz'}: fc2.bias is an object array; weights are numeric "
                              f"arrays (object arrays are never unpickled)")
    assert not marker.exists()


def test_torch_files_get_the_same_checks(tmp_path):
    net = zoo.build("digits_mlp")
    torch.save({k: v for k, v in net.state_dict().items() if k != "fc1.bias"}, tmp_path / "w.pt")
    with pytest.raises(ValueError) as err:
        zoo.load_weights(zoo.build("digits_mlp"), tmp_path / "w.pt")
    assert str(err.value) == f"weights file {tmp_path / 'w.pt'} does not fit the network: missing keys fc1.bias"
    (tmp_path / "t.pt").write_text("not weights\n")
    with pytest.raises(ValueError) as err:
        zoo.load_weights(net, tmp_path / "t.pt")
    assert str(err.value) == (f"weights file {tmp_path / 't.pt'} is not a torch file that loads with "
                              f"weights_only=True (tensors only; nothing else is unpickled)")


def test_good_weights_still_load(tmp_path):
    torch.manual_seed(1)
    net = zoo.build("digits_mlp")
    zoo.save_state_npz(net, tmp_path / "w.npz")
    np.savez(tmp_path / "big_endian.npz", **{k: v.astype(v.dtype.newbyteorder(">")) for k, v in state(net).items()})
    for name in ("w.npz", "big_endian.npz"):
        other = zoo.load_weights(zoo.build("digits_mlp"), tmp_path / name)
        assert torch.equal(other.fc1.weight, net.fc1.weight) and not other.training


@pytest.mark.parametrize("make, message", BAD_WEIGHTS[:1] + BAD_WEIGHTS[3:6])
def test_cli_refuses_bad_weights_and_writes_nothing(tmp_path, capsys, make, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    bad, out = tmp_path / "w.npz", tmp_path / "g.h5"
    make(bad)
    assert main(["extract-graph", "--config", str(cfg), "--model", "m", "--weights", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"nsp extract-graph: error: {message.format(bad)}\n"
    assert not out.exists()


def test_activations_that_overflow_fail_the_shard_naming_sample_and_layer(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "datasets": {"digits": {"source": "sklearn-digits", "limit": 20}},
                                   "shard_size": 20}))
    weights = state()
    weights["fc2.weight"] = np.full_like(weights["fc2.weight"], 3e38)        # finite, but sums overflow
    np.savez(tmp_path / "w.npz", **weights)
    out = tmp_path / "a.h5"
    assert main(["collect-activations", "--config", str(cfg), "--model", "m", "--weights", str(tmp_path / "w.npz"),
                 "--shard", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    layers = nsp.Activations(zoo.build("digits_mlp").eval(), torch.zeros(1, 64)).table.names
    assert err == (f"nsp collect-activations: error: model m: sample 0 gives NaN or infinite activations in layer "
                   f"{layers.index('fc2')} ('fc2') (20 of 20 samples of this batch); summaries would be meaningless\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "w.npz"]          # no output, no temporary


# --- nsp visualize ---------------------------------------------------------------------------------

def table(second=(1,), name="fc"):
    return LayerTable.build(["input", name], ["input", "linear"], ["", name], ["", name], [(2,), second], [[], [0]])


def signals(path, kind, layers=None, ids=(0, 1, 2), labels=(0, 1, 0), weights="a" * 64, width=None,
            transform_type="standard", eigenvalues=None):
    layers = layers or table()
    values = np.arange(len(ids) * (width or layers.n_nodes), dtype=np.float64).reshape(len(ids), -1)
    storage.write_signals(path, storage.SignalBatch(
        kind=kind, values=values if kind == "spectra" else values.astype(np.float32), layers=layers,
        sample_ids=np.asarray(ids), labels=None if labels is None else np.asarray(labels), weights_sha256=weights,
        transform_type=transform_type if kind == "spectra" else None, eigenvalues=eigenvalues))


def visualize(tmp_path, activations, spectra=None, label=None):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "visualize": {} if label is None else {"label": label}}))
    argv = ["visualize", "--config", str(cfg), "--activations", str(activations), "--out", str(tmp_path / "p.pdf")]
    if spectra:
        argv += ["--spectra", str(spectra), "--spectra-out", str(tmp_path / "s.pdf")]
    return main(argv)


MISMATCHES = [
    (dict(layers=table((3,))), "layer tables differ (2 layers, 3 nodes in the activations; 2 layers, 5 nodes in the "
                               "spectra)"),
    (dict(layers=table(name="head")), "layer tables differ at layer 1 ('fc', linear, (1,) in the activations; 'head', "
                                      "linear, (1,) in the spectra)"),
    (dict(ids=(0, 1, 5)), "sample 2 has id 2 in the activations, 5 in the spectra"),
    (dict(ids=(0, 1), labels=(0, 1)), "3 samples in the activations, 2 in the spectra"),
    (dict(weights="b" * 64), "they come from different weights (sha256 aaaaaaaaaaaa... in the activations, "
                             "bbbbbbbbbbbb... in the spectra)"),
]


@pytest.mark.parametrize("spectra, what", MISMATCHES)
def test_visualize_refuses_spectra_of_other_graphs_or_samples(tmp_path, capsys, spectra, what):
    signals(tmp_path / "a.h5", "activations")
    signals(tmp_path / "s.h5", "spectra", **spectra)
    assert visualize(tmp_path, tmp_path / "a.h5", tmp_path / "s.h5", label=1) == 2
    assert capsys.readouterr().err == (f"nsp visualize: error: --spectra {tmp_path / 's.h5'} does not match "
                                       f"--activations {tmp_path / 'a.h5'}: {what}\n")
    assert not (tmp_path / "p.pdf").exists() and not (tmp_path / "s.pdf").exists()


def test_visualize_refuses_a_label_the_shard_does_not_hold(tmp_path, capsys):
    signals(tmp_path / "a.h5", "activations", ids=range(12), labels=[3, 11, 0, 1, 2, 4, 5, 6, 8, 9, 10, 12])
    signals(tmp_path / "s.h5", "spectra", ids=range(12), labels=None)
    assert visualize(tmp_path, tmp_path / "a.h5", tmp_path / "s.h5", label=7) == 2
    assert capsys.readouterr().err == (f"nsp visualize: error: config key visualize.label: no sample of "
                                       f"{tmp_path / 'a.h5'} has label 7; its labels are 0, 1, 2, 3, 4, 5, 6, 8, 9, "
                                       f"10 (and 2 more)\n")
    assert not (tmp_path / "p.pdf").exists() and not (tmp_path / "s.pdf").exists()


def test_visualize_draws_the_labelled_sample_or_sample_0_without_labels(tmp_path, capsys):
    signals(tmp_path / "a.h5", "activations", ids=(4, 5, 6))
    signals(tmp_path / "s.h5", "spectra", ids=(4, 5, 6))
    assert visualize(tmp_path, tmp_path / "a.h5", tmp_path / "s.h5", label=1) == 0
    assert "sample 5 (label 1)" in capsys.readouterr().err
    assert (tmp_path / "p.pdf").is_file() and (tmp_path / "s.pdf").is_file()
    signals(tmp_path / "u.h5", "activations", ids=(4, 5, 6), labels=None)
    assert visualize(tmp_path, tmp_path / "u.h5", label=1) == 0
    assert "sample 4 (label none)" in capsys.readouterr().err
    signals(tmp_path / "k.h5", "spectra", ids=(4, 5, 6), width=2, transform_type="laplacian", eigenvalues=[0.0, 1.0])
    assert visualize(tmp_path, tmp_path / "a.h5", tmp_path / "k.h5", label=0) == 0     # a partial Laplacian basis


# --- NNGraph.inverse_transform ---------------------------------------------------------------------

def test_inverse_transform_keeps_to_the_spectrum_s_own_type():
    torch.manual_seed(0)
    acts = nsp.Activations(zoo.build("toy").eval(), torch.rand(1, 1, 4, 4))
    graph = nsp.NNGraph(acts)
    spectrum = graph.transform(acts, "standard")
    with pytest.raises(ValueError) as err:
        graph.inverse_transform(spectrum, type="laplacian")
    assert str(err.value) == ("inverse_transform: the spectrum was made by the 'standard' transform, not 'laplacian'; "
                              "give type='standard' or type=None")
    expected = acts.to_array(np.float64)
    for back in (graph.inverse_transform(spectrum), graph.inverse_transform(spectrum, type="standard")):
        assert np.allclose(back.to_array(np.float64), expected, atol=1e-9)
    laplacian = graph.transform(acts, "laplacian")
    assert np.allclose(graph.inverse_transform(laplacian).to_array(np.float64), expected, atol=1e-9)
    plain = laplacian.with_values(laplacian.to_array(np.float64))                # no type of its own
    assert np.allclose(graph.inverse_transform(plain, type="laplacian").to_array(np.float64), expected, atol=1e-9)
