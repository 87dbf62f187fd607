"""Config validation, datasets, zoo loading and the CLI's error handling (no Snakemake needed)."""

import hashlib
from types import SimpleNamespace

import numpy as np
import nsp
import pytest
import torch
import yaml

from nsp import zoo
from nsp.pipeline import cli, config, datasets
from nsp.pipeline.stages.common import job_device

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
    assert cfg["datasets"]["digits"]["test_every"] == 5 and cfg["visualize"]["label"] == 1
    assert cfg["figures"] == ["compaction", "magnitude", "energy"]


@pytest.mark.parametrize("cfg, message", [
    (with_model(epochs=-1), "config key models.m.epochs: -1 is less than the minimum of 0"),
    (with_model(epoch=3), "config key models.m: Additional properties are not allowed ('epoch' was unexpected)"),
    (with_model(trace="graph"), "config key models.m.trace: 'graph' is not one of ['children', 'ops']"),
    ({**BASE, "shard_size": 0}, "config key shard_size: 0 is less than the minimum of 1"),
    ({**BASE, "transforms": {"fourier": {}}}, "config key transforms.fourier: unknown transform; accepted: influence, laplacian, sem, standard"),
    ({k: v for k, v in BASE.items() if k != "models"}, "config key (top level): 'models' is a required property"),
    ({**BASE, "models": {"m": {"architecture": "digits_mlp", "dataset": "mnist"}}},
     "config key models.m.dataset: 'mnist' is not a dataset of this config (defined: digits)"),
    (with_model(architecture="resnet"), "config key models.m.architecture: 'resnet' is neither a zoo architecture"),
    (with_model(architecture="mymodule:Net"), "config key models.m: a user model (mymodule:Net) needs weights and input_shape"),
    (with_model(transforms=["laplacian"]),
     "config key models.m.transforms: 'laplacian' is not configured under transforms (configured: standard)"),
    (with_model(transforms=["fourier"]), "config key models.m.transforms.0: 'fourier' is not one of ['influence', 'laplacian', 'sem', 'standard']"),
    (with_model(layers=["fc*"]), "config key models.m.layers: only these layers' activations are stored, but the "
                                 "model runs the transforms standard, which need every node; set models.m.transforms: "
                                 "[] (statistics and pages of the stored layers only), or remove models.m.layers to "
                                 "store every layer"),
    (with_model(layers="fc*", transforms=[]), "config key models.m.layers: 'fc*' is not of type 'array', 'null'"),
    ({**BASE, "seed": 2**64}, "config key seed: 18446744073709551616 is greater than the maximum of "
                              "18446744073709551615"),
    ({**BASE, "shard_size": 10**30}, "config key shard_size: 1000000000000000000000000000000 is greater than the "
                                     "maximum of 1000000"),
    ({**BASE, "threads": 10**6}, "config key threads: 1000000 is greater than the maximum of 1024"),
    ({**BASE, "threads": 0}, "config key threads: 0 is less than the minimum of 1"),
    ({**BASE, "visualize": {"label": -1}}, "config key visualize.label: -1 is less than the minimum of 0"),
    ({**BASE, "visualize": {"label": 10**20}}, "config key visualize.label: 100000000000000000000 is greater than "
                                               "the maximum of 2147483647"),
    (with_model(batch_size=10**30), "config key models.m.batch_size: 1000000000000000000000000000000 is greater"),
    (with_model(input_shape=[1, 10**9]), "config key models.m.input_shape.1: 1000000000 is greater than the maximum"),
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
    with pytest.raises(nsp.errors.DatasetError, match="has no array 'inputs'"):
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
                  "visualize", "summarize", "class-means", "figures"):
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
            job_device(SimpleNamespace(threads=1), {"device": "cuda"})


def test_sigterm_leaves_no_partial_file(tmp_path):
    import subprocess
    import sys
    code = ("import os, signal\n"
            "from nsp.pipeline.sigterm import exit_on_sigterm\nfrom nsp.storage import files\n"
            "exit_on_sigterm()\n"
            "with files.atomic_output('out.h5') as tmp:\n"
            "    open(tmp, 'w').write('half')\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert done.returncode == 143 and list(tmp_path.iterdir()) == []


FULL = {**BASE, "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 2,
                                   "transforms": ["standard"]},
                           "cnn": {"architecture": "digits_cnn", "dataset": "photos", "trace": "ops"}},
        "datasets": {**BASE["datasets"], "photos": {"source": "sklearn-photos", "limit": 10}},
        "transforms": {"standard": {}, "laplacian": {"k": 5}}, "seed": 3, "visualize": {"cmap": "magma"}}


def test_config_parts_hold_exactly_what_each_stage_reads(tmp_path):
    cfg = config.validate(FULL)
    assert config.part_names(cfg) == [
        "train/mlp", "train/cnn", "extract-graph/mlp", "extract-graph/cnn", "collect-activations/mlp",
        "collect-activations/cnn", "compute-transformer/standard", "compute-transformer/laplacian", "transform",
        "visualize", "summarize", "causes", "figures"]
    network = {"architecture": "digits_cnn", "options": {}, "input_shape": None, "dataset": "photos", "trace": "ops"}
    assert config.part(cfg, "train/mlp") == {
        "part": "train/mlp", "plugins": [], "seed": 3, "datasets": {"digits": cfg["datasets"]["digits"]},
        "models": {"mlp": {"architecture": "digits_mlp", "options": {}, "input_shape": None, "dataset": "digits",
                           "epochs": 2, "batch_size": 64, "learning_rate": 0.003}}}
    assert config.part(cfg, "extract-graph/cnn") == {"part": "extract-graph/cnn", "plugins": [], "models": {"cnn": network}}
    assert config.part(cfg, "collect-activations/cnn") == {
        "part": "collect-activations/cnn", "plugins": [], "shard_size": 500, "device": "cpu",
        "datasets": {"photos": cfg["datasets"]["photos"]}, "models": {"cnn": {**network, "layers": None}}}
    assert config.part(cfg, "compute-transformer/laplacian") == {
        "part": "compute-transformer/laplacian", "plugins": [], "transforms": {"laplacian": cfg["transforms"]["laplacian"]}}
    assert config.part(cfg, "transform") == {"part": "transform", "plugins": [], "device": "cpu"}
    assert config.part(cfg, "visualize") == {"part": "visualize", "plugins": [], "visualize": {"label": 1, "scale": "layerscale",
                                                                                 "cmap": "magma", "layers": None,
                                                                                 "keep": 0.01}}
    assert config.part(cfg, "summarize") == {"part": "summarize", "plugins": [], "summary": {"sparsity_threshold": 0.001}}
    assert config.part(cfg, "causes") == {"part": "causes", "plugins": [], "seed": 3, "causes": {
        "transforms": ["sem", "standard", "laplacian", "influence"], "samples": 64, "fractions": [0.05, 0.1, 0.25],
        "sparsity": 20, "reconstruct_samples": 8, "max_nodes": 20000}}
    # a part loads as itself (nothing filled in) and only for its own stage
    for name in config.part_names(cfg):
        path = tmp_path / f"{name.replace('/', '_')}.yaml"
        path.write_text(config.part_text(cfg, name))
        assert config.load(path, name.partition("/")[0]) == config.part(cfg, name)
    with pytest.raises(config.ConfigError, match=r"config file .*train_mlp.yaml is the part of stage train; "
                                                 r"stage collect-activations reads the whole config or its own part"):
        config.load(tmp_path / "train_mlp.yaml", "collect-activations")
    with pytest.raises(config.ConfigError, match="no config part 'plot': a part is one of train, extract-graph"):
        config.part(cfg, "plot")


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.pop("seed"), "config key seed: missing from the part of stage train"),
    (lambda p: p.update(figures=["energy"]), "config key figures: not read by stage train (its part has plugins, seed, "
                                             "datasets, models)"),
    (lambda p: p["models"]["mlp"].pop("epochs"), "config key models.mlp: epochs missing from the part of stage train"),
    (lambda p: p["models"]["mlp"].update(epochs=-2), "config key models.mlp.epochs: -2 is less than the minimum of 0"),
    (lambda p: p.update(part="plot/mlp"), "config key part: 'plot/mlp' is not a stage's part"),
])
def test_damaged_config_parts_name_the_key(edit, message):
    part = config.part(config.validate(FULL), "train/mlp")
    edit(part)
    with pytest.raises(config.ConfigError) as err:
        config.validate(part)
    assert message in str(err.value)


def test_a_stage_gives_the_same_on_its_part_as_on_the_whole_config(tmp_path):
    cfg = config.validate({**FULL, "models": {"mlp": {**FULL["models"]["mlp"], "epochs": 1}}})
    whole, part = tmp_path / "whole.yaml", tmp_path / "part.yaml"
    config.dump(cfg, whole)
    part.write_text(config.part_text(cfg, "train/mlp"))
    for name, path in (("a", whole), ("b", part)):
        assert cli.main(["train", "--config", str(path), "--model", "mlp", "--quiet", "--out",
                         str(tmp_path / f"{name}.npz"), "--metrics", str(tmp_path / f"{name}.json")]) == 0
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


def test_stages_import_only_what_they_use():
    import subprocess
    import sys
    code = ("import sys\nfrom nsp.pipeline import cli\n"
            "from nsp.storage import read_signals\nfrom nsp import statistics\nimport nsp\n"
            "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'nsp.transforms') if m in sys.modules))\n"
            "from nsp.pipeline import datasets\n"
            "datasets.load({'source': 'sklearn-digits'}), datasets.photo_tiles()\n"
            "print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "[]"]


def test_bundled_images_read_as_scikit_learn_reads_them():
    from sklearn.datasets import load_digits, load_sample_images
    images, labels = datasets.digit_images()
    digits = load_digits()
    assert np.array_equal(images, digits.images.astype(np.float32)) and images.dtype == np.float32
    assert np.array_equal(labels, digits.target) and labels.dtype == np.int64
    photos = datasets._photographs()
    assert len(photos) == 2 and all(np.array_equal(a, b) and a.dtype == b.dtype
                                    for a, b in zip(photos, load_sample_images().images))


def test_datasets_are_counted_from_headers_without_loading(tmp_path, monkeypatch):
    import h5py
    np.savez(tmp_path / "a.npz", inputs=np.zeros((17, 3, 2), np.float32), labels=np.arange(17))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["x"] = np.zeros((9, 4))
    specs = [{"source": "sklearn-digits"}, {"source": "sklearn-photos"}, {"source": "sklearn-photos", "limit": 200},
             {"source": "sklearn-digits", "limit": 5000}, {"source": str(tmp_path / "a.npz")},
             {"source": str(tmp_path / "a.npz"), "limit": 4}, {"source": str(tmp_path / "a.h5"), "inputs_key": "x"}]
    expected = [len(datasets.load(spec)[0]) for spec in specs]
    assert expected == [1797, 520, 200, 1797, 17, 4, 9]
    monkeypatch.setattr(datasets, "load", lambda *a: pytest.fail("count() loaded the dataset"))
    assert [datasets.count(spec) for spec in specs] == expected


def test_series_follow_the_registry_order():
    assert list(nsp.TRANSFORMS)[:3] == ["standard", "laplacian", "sem"]
    assert config.series(["sem", "zeta2", "standard", "a1"]) == ["activations", "standard", "sem", "a1", "zeta2"]


def _signals(path, kind, transform_type=None, labels=(0, 1, 0)):
    from nsp import storage
    from nsp.tracing.table import LayerTable
    table = LayerTable.build(["input", "fc"], ["input", "linear"], ["", "fc"], ["", "fc"], [(2,), (1,)],
                             [[], [0]])
    values = np.arange(9.0).reshape(3, 3)
    storage.write_signals(path, storage.SignalBatch(
        kind=kind, values=values if kind == "spectra" else values.astype(np.float32), layers=table,
        sample_ids=np.arange(3), labels=None if labels is None else np.asarray(labels), transform_type=transform_type))


def test_new_stages_name_their_bad_arguments(tmp_path, capsys):
    _signals(tmp_path / "a.h5", "activations")
    _signals(tmp_path / "s.h5", "spectra", "standard")
    _signals(tmp_path / "u.h5", "activations", labels=None)
    cases = [
        (["figures", "--kind", "energy", "--out", "e.pdf"], "--kind energy needs --summaries"),
        (["figures", "--kind", "class_means", "--class-means", "c.h5", "--out", "c.pdf"],
         "--kind class_means needs --model"),
        (["figures", "--kind", "compaction", "--summaries", "s.json", "--model", "m", "--out", "c.pdf"],
         "--kind compaction takes no --model"),
        (["figures", "--kind", "class_means", "--class-means", str(tmp_path / "a.h5"), "--model", "m", "--out",
          str(tmp_path / "c.png")], "the figure's PDF (a name ending in .pdf"),
        (["class-means", "--signals", str(tmp_path / "a.h5"), str(tmp_path / "s.h5"), "--out", str(tmp_path / "m.h5")],
         "--signals: the shards mix series (activations, standard)"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "c.png").exists()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    assert cli.main(["visualize", "--config", str(cfg), "--activations", str(tmp_path / "a.h5"), "--spectra",
                     str(tmp_path / "s.h5"), "--spectra-out", "x.pdf", "y.pdf"]) == 2
    assert "--spectra-out: 2 files for 1 spectra files; give one per spectra file" in capsys.readouterr().err
    # class means: the mean of each class; without labels an empty table and a page that says so
    assert cli.main(["class-means", "--signals", str(tmp_path / "a.h5"), "--out", str(tmp_path / "m.h5")]) == 0
    from nsp import storage
    means = storage.read_signals(tmp_path / "m.h5")
    assert means.sample_ids.tolist() == [0, 1] and means.values.tolist() == [[3.0, 4.0, 5.0], [3.0, 4.0, 5.0]]
    assert cli.main(["class-means", "--signals", str(tmp_path / "u.h5"), "--out", str(tmp_path / "n.h5")]) == 0
    assert storage.read_signals(tmp_path / "n.h5").values.shape == (0, 3)
    assert cli.main(["figures", "--kind", "class_means", "--class-means", str(tmp_path / "n.h5"), "--model", "m.v1",
                     "--out", str(tmp_path / "class_means_m.v1_activations.pdf")]) == 0
    assert sorted(p.name for p in tmp_path.glob("class_means_*")) == ["class_means_m.v1_activations.caption.md",
                                                                      "class_means_m.v1_activations.pdf",
                                                                      "class_means_m.v1_activations.png"]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(models={"x --help;touch FILE;": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name 'x --help;touch FILE;' is not accepted: a name is letters, digits, '_' and '-'"),
    (lambda c: c.update(models={"../up": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name '../up' is not accepted"),
    (lambda c: c.update(models={"a/b": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name 'a/b' is not accepted"),
    (lambda c: c.update(models={"..": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name '..' is not accepted"),
    (lambda c: c.update(models={".hidden": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name '.hidden' is not accepted"),
    (lambda c: c.update(datasets={"../../etc": {"source": "sklearn-digits"}}),
     "config key datasets: the name '../../etc' is not accepted"),
    (lambda c: c.update(datasets={"d$(touch x)": {"source": "sklearn-digits"}}),
     "config key datasets: the name 'd$(touch x)' is not accepted"),
    (lambda c: c.update(models={"m" * 245: {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name mmmmmmmmmmmmmmmmmmmm... (245 characters) is too long: names have at most 64 "
     "characters"),
    (lambda c: c.update(models={"net" + "a" * 20: {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name 'netaaaaaaaaaaaaaaaaaaaa' is not accepted: it ends in 'a' repeated 20 times, "
     "which Snakemake refuses as a path part (fewer than 20 repeats are accepted)"),
    (lambda c: c.update(datasets={"d" + "xy" * 25: {"source": "sklearn-digits"}}),
     "config key datasets: the name 'dxyxy"),
    (lambda c: c.update(models={"paper": {"architecture": "digits_mlp", "dataset": "digits"}}),
     "config key models: the name 'paper' is reserved (results/figures/paper holds the paper figures)"),
    (lambda c: c.update(results=""), "config key results: '' is not accepted: the results folder must be named"),
    (lambda c: c.update(results="/"), "config key results: '/' is not accepted"),
    (lambda c: c.update(results="/.."), "config key results: '/..' is not accepted"),
])
def test_names_that_would_escape_or_run_are_refused(edit, message):
    cfg = yaml.safe_load(yaml.safe_dump(BASE))
    edit(cfg)
    with pytest.raises(config.ConfigError) as err:
        config.validate(cfg)
    assert message in str(err.value)
    fine = ["vit.tiny-1_b", "abcdefghij" * 6 + "klmn", "net" + "a" * 19, "paper_net"]
    ok = config.validate({**BASE, "models": {name: {"architecture": "digits_mlp", "dataset": "digits"} for name in fine}})
    assert list(ok["models"]) == fine


def test_small_bad_inputs_are_refused_with_their_reason(tmp_path, capsys):
    from nsp import storage
    from nsp.tracing.table import LayerTable
    table = LayerTable.build(["input"], ["input"], [""], [""], [(2,)], [[]])
    with pytest.raises(ValueError, match=r"labels must hold one value per sample \(3\); got shape \(1,\)"):
        with storage.SignalWriter(tmp_path / "s.h5", "activations", table, 2, with_labels=True) as writer:
            writer.append(np.zeros((3, 2)), np.arange(3), np.array([1]))
    with pytest.raises(ValueError, match=r"sample_ids must hold one value per sample \(3\); got shape \(1,\)"):
        with storage.SignalWriter(tmp_path / "s.h5", "activations", table, 2) as writer:
            writer.append(np.zeros((3, 2)), np.array([5]))
    assert not (tmp_path / "s.h5").exists()
    np.savez(tmp_path / "short.npz", inputs=np.zeros((5, 4), np.float32), labels=np.arange(3))
    with pytest.raises(ValueError, match="dataset d: 5 inputs but 3 labels; every input needs its label"):
        datasets.load({"source": str(tmp_path / "short.npz")}, "d")
    _signals(tmp_path / "a.h5", "activations")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(BASE))
    cases = [(["class-means", "--signals", str(tmp_path / "a.h5"), str(tmp_path / "a.h5"), "--out", "m.h5"],
              "activations: sample 0 is in the shards more than once (a shard given twice?)"),
             (["summarize", "--config", str(cfg), "--model", "mlp", "--activations", str(tmp_path / "a.h5"),
               str(tmp_path / "a.h5"), "--out", str(tmp_path / "s.json")],
              "activations: sample 0 is in the shards more than once"),
             (["visualize", "--config", str(cfg), "--activations", str(tmp_path / "a.h5"), "--out",
               str(tmp_path / "pattern.png")], "--out " + str(tmp_path / "pattern.png") + ": the pages are a PDF")]
    for argv, message in cases:
        assert cli.main(argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "pattern.png").exists()
    with pytest.raises(SystemExit):
        cli.main(["class-means", "--signals", "a.h5", "--out", "m.h5", "--threads", "0"])
    assert "argument --threads: '0' is not a whole number from 1 to 1024" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["class-means", "--signals", "a.h5", "--out", "m.h5", "--threads", "100000"])
    assert "argument --threads: '100000' is not a whole number from 1 to 1024" in capsys.readouterr().err


def test_bad_data_and_yaml_are_refused(tmp_path):
    np.savez(tmp_path / "nan.npz", inputs=np.array([[0.0, 1.0], [np.nan, 2.0], [np.inf, 0.0]], np.float32),
             labels=np.arange(3))
    with pytest.raises(ValueError, match="dataset d: sample 1 \\(and 1 more\\) holds NaN or infinite values"):
        datasets.load({"source": str(tmp_path / "nan.npz")}, "d")
    from nsp.pipeline import training
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="training diverged: weight, bias hold NaN or infinite values after 1 epochs"):
        training.train(net, torch.full((10, 2), 1e30), np.arange(10) % 2, epochs=1, batch_size=5,
                       learning_rate=1e30, seed=0, test_every=5)
    with pytest.raises(ValueError, match="1 labelled samples: training needs at least two"):
        training.train(net, torch.zeros((1, 2)), np.zeros(1, np.int64), epochs=1, batch_size=5,
                       learning_rate=0.1, seed=0, test_every=5)
    (tmp_path / "dup.yaml").write_text("seed: 1\nseed: 2\n")
    with pytest.raises(config.ConfigError, match=r"dup.yaml: line 2: the key 'seed' is given twice"):
        config.load(tmp_path / "dup.yaml")
    (tmp_path / "bomb.yaml").write_text("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n")
    with pytest.raises(config.ConfigError, match=r"bomb.yaml: line 2: YAML aliases \(\*a\) are not accepted"):
        config.load(tmp_path / "bomb.yaml")
