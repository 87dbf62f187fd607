"""Config validation, datasets, zoo loading and the CLI's error handling (no Snakemake needed)."""

import hashlib

import numpy as np
import nsp
import pytest
import torch
import yaml

from nsp import zoo
from nsp.pipeline import cli, config, datasets

BASE = {
    "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625}},
    "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits"}},
    "transforms": {"standard": {}},
}


def with_model(**entry):
    return {**BASE, "models": {"m": {"architecture": "digits_mlp", "dataset": "digits", **entry}}}


def test_defaults_are_filled():
    cfg = config.validate(BASE)
    assert cfg["results"] == "results" and cfg["shard_size"] == 500 and cfg["threads"] == 1
    assert cfg["models"]["mlp"]["epochs"] == 8 and cfg["models"]["mlp"]["trace"] == "children"
    assert cfg["datasets"]["digits"]["test_every"] == 5 and cfg["visualize"]["label"] == 7
    assert cfg["figures"] == ["compaction", "energy"]


@pytest.mark.parametrize("cfg, message", [
    (with_model(epochs=-1), "config key models.m.epochs: -1 is less than the minimum of 0"),
    (with_model(epoch=3), "config key models.m: Additional properties are not allowed ('epoch' was unexpected)"),
    (with_model(trace="graph"), "config key models.m.trace: 'graph' is not one of ['children', 'ops']"),
    ({**BASE, "shard_size": 0}, "config key shard_size: 0 is less than the minimum of 1"),
    ({**BASE, "transforms": {"fourier": {}}}, "config key transforms.fourier: unknown transform; accepted: standard, laplacian, sem"),
    ({k: v for k, v in BASE.items() if k != "models"}, "config key (top level): 'models' is a required property"),
    ({**BASE, "models": {"m": {"architecture": "digits_mlp", "dataset": "mnist"}}},
     "config key models.m.dataset: 'mnist' is not a dataset of this config (defined: digits)"),
    (with_model(architecture="resnet"), "config key models.m.architecture: 'resnet' is neither a zoo architecture"),
    (with_model(architecture="mymodule:Net"), "config key models.m: a user model (mymodule:Net) needs weights and input_shape"),
    (with_model(transforms=["laplacian"]),
     "config key models.m.transforms: 'laplacian' is not configured under transforms (configured: standard)"),
    (with_model(transforms=["fourier"]), "config key models.m.transforms.0: 'fourier' is not one of ['standard', 'laplacian', 'sem']"),
    (with_model(transforms=[]), "config key models.m.transforms: [] should be non-empty"),
    ({**BASE, "transforms": {"standard": {"method": "fast"}}},
     "config key transforms.standard.method: 'fast' is not one of ['auto', 'explicit', 'factored']"),
])
def test_bad_configs_name_the_key(cfg, message):
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    assert message in str(err.value)


def test_per_model_transforms_and_options():
    cfg = config.validate({**BASE, "transforms": {"standard": {}, "laplacian": {"k": 4}},
                           "models": {"a": {"architecture": "digits_mlp", "dataset": "digits"},
                                      "b": {"architecture": "vgg_cifar", "dataset": "digits",
                                            "options": {"width": 2}, "transforms": ["standard"]}}})
    assert config.transforms_of(cfg) == {"a": ["standard", "laplacian"], "b": ["standard"]}
    assert cfg["transforms"]["standard"]["method"] == "auto" and cfg["models"]["a"]["options"] == {}
    assert zoo.build("vgg_cifar", {"width": 2}).conv1_1.out_channels == 2
    with pytest.raises(ValueError, match=r"architecture vgg_cifar does not take the options \{'depth': 3\}"):
        zoo.build("vgg_cifar", {"depth": 3})


def test_photo_tiles():
    inputs, labels = datasets.photo_tiles()
    assert inputs.shape == (520, 3, 32, 32) and labels[:4].tolist() == [0, 1, 0, 1] and labels.sum() == 260
    from sklearn.datasets import load_sample_images
    china, flower = load_sample_images().images
    assert np.array_equal(inputs[0], china[:32, :32].transpose(2, 0, 1))
    assert np.array_equal(inputs[3], flower[:32, 32:64].transpose(2, 0, 1))
    cfg = config.validate({**BASE, "datasets": {"p": {"source": "sklearn-photos", "limit": 10}},
                           "models": {"v": {"architecture": "vgg_cifar", "dataset": "p"}}})
    assert datasets.load(cfg["datasets"]["p"])[0].shape == (10, 3, 32, 32)


def test_load_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed\n")
    with pytest.raises(config.ConfigError, match="is not valid YAML"):
        config.load(broken)


def test_dump_then_load_round_trip(tmp_path):
    cfg = config.validate(BASE)
    config.dump(cfg, tmp_path / "resolved.yaml")
    assert config.load(tmp_path / "resolved.yaml") == cfg
    assert config.shard_counts({**cfg, "shard_size": 500}) == {"mlp": 4}


def test_user_arrays_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", inputs=rng.random((10, 8, 8)), labels=np.arange(10))
    spec = {"source": str(tmp_path / "data.npz"), "limit": 6, "scale": 2.0, "mean": 1.0, "std": 0.5}
    x, y = datasets.load(spec, "mine")
    assert x.shape == (6, 8, 8) and x.dtype == np.float32 and y.tolist() == [0, 1, 2, 3, 4, 5]
    assert np.allclose(x, (np.load(tmp_path / "data.npz")["inputs"][:6] * 2 - 1) / 0.5, atol=1e-6)
    assert tuple(datasets.for_model(x, (64,)).shape) == (6, 64)
    assert tuple(datasets.for_model(x, (1, 28, 28)).shape) == (6, 1, 28, 28)
    with pytest.raises(ValueError, match=r"model m expects samples of shape \(3, 8, 8\); the dataset gives \(8, 8\)"):
        datasets.for_model(x, (3, 8, 8), "m")
    with pytest.raises(FileNotFoundError, match="dataset nope: .* does not exist"):
        datasets.load({"source": str(tmp_path / "nope.npz")}, "nope")
    np.savez(tmp_path / "other.npz", images=np.zeros((2, 3)))
    with pytest.raises(KeyError, match="has no array 'inputs'"):
        datasets.load({"source": str(tmp_path / "other.npz")}, "other")
    assert datasets.shard_bounds(60, 25) == [(0, 25), (25, 50), (50, 60)]


def test_user_model_and_weights(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(
        "import torch.nn as nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(4, 2)\n    def forward(self, x):\n        return self.fc(x)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    net = zoo.build("mynet:Net")
    torch.save(net.state_dict(), tmp_path / "w.pt")
    other = zoo.load_weights(zoo.build("mynet:Net"), tmp_path / "w.pt")
    assert torch.equal(other.fc.weight, net.fc.weight)
    zoo.save_state_npz(net, tmp_path / "a.npz")
    zoo.save_state_npz(net, tmp_path / "b.npz")
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.npz", "b.npz")]
    assert digest[0] == digest[1]
    assert torch.equal(zoo.load_weights(zoo.build("mynet:Net"), tmp_path / "a.npz").fc.bias, net.fc.bias)
    with pytest.raises(ValueError, match="cannot import model 'nomodule:Net'"):
        zoo.build("nomodule:Net")
    with pytest.raises(FileNotFoundError, match="weights file .*missing.npz does not exist"):
        zoo.load_weights(net, tmp_path / "missing.npz")


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    for stage in ("train", "extract-graph", "compute-transformer", "collect-activations", "transform",
                  "visualize", "summarize", "figures"):
        assert stage in help_text
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(with_model(input_shape=[1, 8, 9])))
    assert cli.main(["extract-graph", "--config", str(cfg), "--model", "m", "--out", str(tmp_path / "g.h5")]) == 2
    err = capsys.readouterr().err
    assert "nsp extract-graph: error: model m: digits_mlp does not accept samples of shape (1, 8, 9)" in err
    assert not (tmp_path / "g.h5").exists()
    assert cli.main(["train", "--config", str(tmp_path / "none.yaml"), "--model", "m", "--out", "w.npz",
                     "--metrics", "m.json"]) == 2
    assert "config file" in capsys.readouterr().err


def test_device_option():
    import scipy.sparse as sp
    from nsp.transforms.standard import StandardTransform
    from nsp.transforms.laplacian import LaplacianTransform
    assert config.validate(BASE)["device"] == "cpu"
    with pytest.raises(config.ConfigError, match="config key device: 'gpu' does not match"):
        config.validate({**BASE, "device": "gpu"})
    adjacency = sp.csr_matrix(np.tril(np.random.default_rng(0).random((30, 30)) < 0.2, -1).astype(np.int8))
    x = np.random.default_rng(1).random((4, 30))
    for transform in (StandardTransform().fit(adjacency), LaplacianTransform().fit(adjacency),
                      nsp.SemTransform().fit(adjacency.astype(float) * 0.5)):
        on_device = transform.transform(x, device=torch.device("cpu"))       # the torch path, here on the CPU
        assert np.allclose(on_device, transform.transform(x), rtol=1e-13, atol=1e-13)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="config key device: 'cuda' requested but no CUDA device"):
            cli._device({"device": "cuda"})


def test_sigterm_leaves_no_partial_file(tmp_path):
    import subprocess
    import sys
    code = ("import os, signal\n"
            "from nsp.pipeline import cli\nfrom nsp.storage import files\n"
            "cli._exit_on_sigterm()\n"
            "with files.atomic_output('out.h5') as tmp:\n"
            "    open(tmp, 'w').write('half')\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 143 and list(tmp_path.iterdir()) == []
