"""Architectures by name from timm and torchvision (the optional ``models`` extra): config, build, pipeline."""

import numpy as np
import pytest
import torch
import yaml

import nsp
from nsp import external
from nsp.graph.verify import missing_dependences
from nsp.pipeline import cli
from nsp.pipeline.config import ConfigError, validate

try:
    external.import_torchvision()
    import timm  # noqa: F401
except ImportError as err:
    pytest.skip(f"the optional models extra (timm, torchvision) is not installed: {err}", allow_module_level=True)

TINY_VIT = {"img_size": 8, "patch_size": 4, "in_chans": 1, "num_classes": 10, "embed_dim": 12, "depth": 1,
            "num_heads": 2}


def config(architecture="timm:vit_tiny_patch16_224", **model):
    spec = {"architecture": architecture, "dataset": "digits", "options": TINY_VIT, "input_shape": [1, 8, 8],
            "trace": "ops", "epochs": 0}
    spec.update(model)
    return {"datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625}},
            "models": {"vit": spec}, "transforms": {"standard": {}, "sem": {}}, "shard_size": 8}


def test_named_models_build_with_random_weights_and_refuse_downloads():
    net = external.build("timm:vit_tiny_patch16_224", TINY_VIT)
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert external.build("torchvision:resnet18", {"num_classes": 3}).fc.out_features == 3
    with pytest.raises(external.ExternalModelError, match=r"has no model 'vit_tiny_patch16_225'; close: "
                                                          r"vit_tiny_patch16_224"):
        external.build("timm:vit_tiny_patch16_225")
    with pytest.raises(external.ExternalModelError, match="would load or download weights; nsp never downloads"):
        external.build("timm:resnet18", {"pretrained": True})
    with pytest.raises(external.ExternalModelError, match="would load or download weights"):
        external.build("torchvision:resnet18", {"weights": "IMAGENET1K_V1"})
    with pytest.raises(external.ExternalModelError, match="unknown source 'keras'; accepted: timm, torchvision"):
        external.check("keras:resnet")


def test_config_checks_named_models():
    assert validate(config())["models"]["vit"]["architecture"] == "timm:vit_tiny_patch16_224"
    with pytest.raises(ConfigError, match=r"models.vit.input_shape: a named model \(timm:resnet18\) needs"):
        validate(config("timm:resnet18", input_shape=None))
    with pytest.raises(ConfigError, match="models.vit.architecture: 'timm:../x; rm -rf': a model name is letters"):
        validate(config("timm:../x; rm -rf"))


def test_a_timm_transformer_through_the_pipeline_stages(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config()))
    common = ["--config", "c.yaml", "--quiet"]
    assert cli.main(["train", *common, "--model", "vit", "--out", "w.npz", "--metrics", "m.json"]) == 0
    assert cli.main(["extract-graph", *common, "--model", "vit", "--weights", "w.npz", "--out", "g.h5"]) == 0
    core = nsp.storage.read_graph("g.h5")
    assert "attention" in core.kinds and "jacobian" not in core.kinds
    assert cli.main(["compute-transformer", *common, "--graph", "g.h5", "--transform", "standard",
                     "--out", "t.h5"]) == 0
    assert cli.main(["collect-activations", *common, "--model", "vit", "--weights", "w.npz", "--shard", "0",
                     "--out", "a.h5"]) == 0
    assert cli.main(["transform", *common, "--activations", "a.h5", "--transformer", "t.h5", "--out", "s.h5"]) == 0
    signals = nsp.OutputLoader.load("a.h5")
    spectra = nsp.OutputLoader.load("s.h5")
    want = nsp.StandardTransform().fit(core).transform(np.asarray(signals.values, dtype=np.float64))
    assert np.array_equal(np.asarray(spectra.values), want)


def test_torchvision_vision_transformer_with_multihead_attention():
    torch.manual_seed(0)
    net = external.build("torchvision:vit_b_16", {"image_size": 16, "num_classes": 10}).eval()
    x = torch.randn(1, 3, 16, 16)
    core = nsp.GraphCore.from_activations(nsp.Activations(net, x, trace="ops"))
    assert core.kinds.count("multihead_attention") == 12 and core.probed == ()
    assert missing_dependences(net, core, x) == 0
    with pytest.raises(nsp.tracing.TraceError, match="child module 'encoder' .* use trace='ops'"):
        nsp.Activations(net.float(), x, trace="children")


def test_convnext_takes_the_factored_path_through_its_permutes():
    torch.manual_seed(0)
    net = external.build("timm:convnext_atto", {"num_classes": 10}).eval()
    core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.randn(1, 3, 32, 32), trace="ops"))
    fitted = nsp.StandardTransform().fit(core)
    assert fitted.factored, fitted.reason
    assert any(o != tuple(range(len(o))) for o in fitted.closure.orders)
