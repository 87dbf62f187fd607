"""The causes stage and the filtered pattern pages, run as the pipeline runs them (``nsp <stage>``), on files
written here from a small network: values against the library, and every bad input a one-line error."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

import nsp
from nsp import storage
from nsp.pipeline import cli
from nsp.pipeline import config as nsp_config
from nsp.transforms.sampling import ReconstructionWarning

from test_cli import one_line_error


def network(seed: int):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4)).eval()


@pytest.fixture
def files(tmp_path):
    net = network(0)
    x = torch.randn(10, 6, generator=torch.Generator().manual_seed(1))
    acts = nsp.Activations(net, x[:1], trace="ops")
    core = nsp.GraphCore.from_activations(acts)
    values = nsp.record(net, x, "ops").values()
    storage.write_signals(tmp_path / "acts.h5", storage.SignalBatch(
        "activations", values, acts.table, sample_ids=np.arange(10), labels=np.arange(10) % 4))
    for kind in ("sem", "laplacian"):
        storage.write_transformer(tmp_path / f"{kind}.h5", nsp.make_transform(kind).fit(core))
    other = network(5)                                       # a network of another size: another graph
    other[2] = nn.Linear(8, 3)
    other_core = nsp.GraphCore.from_activations(nsp.Activations(other, x[:1], trace="ops"))
    storage.write_transformer(tmp_path / "other.h5", nsp.SemTransform().fit(other_core))
    config = nsp_config.validate({"datasets": {"d": {"source": "sklearn-digits"}},
                                  "models": {"m": {"architecture": "digits_mlp", "dataset": "d"}},
                                  "transforms": {"sem": {}, "laplacian": {}},
                                  "causes": {"samples": 6, "fractions": [0.5, 1.0], "sparsity": 3,
                                             "reconstruct_samples": 4}})
    for part in ("causes", "visualize"):
        (tmp_path / f"{part}.yaml").write_text(nsp_config.part_text(config, part))
    return tmp_path, values.astype(np.float64), core


def test_the_causes_record_equals_the_library(files):
    folder, s, core = files
    argv = ["causes", "--config", str(folder / "causes.yaml"), "--model", "m", "--activations",
            str(folder / "acts.h5"), "--quiet"]
    assert cli.main([*argv, "--transformer", str(folder / "sem.h5"), "--out", str(folder / "sem.json")]) == 0
    record = json.loads((folder / "sem.json").read_text())
    sem = nsp.SemTransform().fit(core)
    first = s[:6]
    logits = np.arange(core.offsets[-2], core.n_nodes)
    predicted = first[:, logits].argmax(axis=1)
    expected = np.stack([sem.contributions(first[b], [int(logits[p])], per_layer=True)[0]
                         for b, p in enumerate(predicted)])
    c = record["contributions"]
    assert c["predicted"] == predicted.tolist() and c["labels"] == [0, 1, 2, 3, 0, 1]
    assert np.allclose(c["shares"], expected, rtol=1e-12, atol=1e-12)
    assert np.allclose(np.sum(c["shares"], axis=1), c["logit"], rtol=1e-12, atol=1e-12)       # completeness
    for cls, mean in c["by_class"].items():
        assert np.allclose(mean, expected[predicted == int(cls)].mean(axis=0), rtol=1e-12, atol=1e-12)
    rec = record["reconstruction"]
    assert rec["method"] == "omp" and rec["sparsity"] == 3 and rec["fractions"] == [0.5, 1.0]
    assert len(rec["errors"]) == 2 and all(len(e) == 4 for e in rec["errors"])
    # every neuron observed: the observations pin the pattern down wherever a 3-sparse fit exists
    with pytest.warns(ReconstructionWarning):                   # a pattern is not 3-sparse: said, not hidden
        full = sem.reconstruct(first[:4], np.arange(core.n_nodes), 3)
    assert any("no 3-sparse fit" in w for w in rec["warnings"])
    assert np.allclose(rec["errors"][1], np.linalg.norm(full - first[:4], axis=1) / np.linalg.norm(first[:4], axis=1),
                       rtol=1e-9)
    assert cli.main([*argv, "--transformer", str(folder / "laplacian.h5"), "--out", str(folder / "lap.json")]) == 0
    lap = json.loads((folder / "lap.json").read_text())
    assert "contributions" not in lap and lap["reconstruction"]["method"] == "lowpass"


def test_causes_refusals_and_skips(files, capsys):
    folder, _, _ = files
    argv = ["causes", "--config", str(folder / "causes.yaml"), "--model", "m", "--out", str(folder / "x.json")]
    line = one_line_error(capsys, [*argv, "--transformer", str(folder / "other.h5"), "--activations",
                                   str(folder / "acts.h5")])
    assert "was not fitted for --activations" in line and "a graph of" in line
    assert not (folder / "x.json").exists()
    line = one_line_error(capsys, [*argv, "--transformer", str(folder / "none.h5"), "--activations",
                                   str(folder / "acts.h5")])
    assert line.endswith("--transformer " + str(folder / "none.h5") + ": no such file")
    part = yaml.safe_load((folder / "causes.yaml").read_text())
    part["causes"]["max_nodes"] = 10
    (folder / "small.yaml").write_text(yaml.safe_dump(part))
    assert cli.main(["causes", "--config", str(folder / "small.yaml"), "--model", "m", "--transformer",
                     str(folder / "sem.h5"), "--activations", str(folder / "acts.h5"), "--out",
                     str(folder / "x.json"), "--quiet"]) == 0
    assert json.loads((folder / "x.json").read_text())["reconstruction"] == {
        "skipped": "a graph of 26 neurons (causes.max_nodes is 10)"}


def test_the_filtered_pages_keep_the_largest_coefficients(files, capsys):
    folder, s, core = files
    out = folder / "filtered.pdf"
    argv = ["visualize", "--config", str(folder / "visualize.yaml"), "--activations", str(folder / "acts.h5")]
    assert cli.main([*argv, "--transformer", str(folder / "sem.h5"), "--filtered-out", str(out)]) == 0
    assert out.stat().st_size > 1000
    sem = nsp.SemTransform().fit(core)
    sample = s[1]                                             # visualize.label 1: the first sample of class 1
    error = np.linalg.norm(sem.filter(sample, 1) - sample) / np.linalg.norm(sample)   # 1% of 26 nodes: one
    assert f"the pattern synthesised from its 1 largest sem coefficients only (1.0% of 26); relative error to " \
           f"the pattern {error:.3g}" in capsys.readouterr().err
    line = one_line_error(capsys, [*argv, "--transformer", str(folder / "sem.h5")])
    assert "--filtered-out (the pattern of the sample's largest coefficients) needs --transformer" in line
    line = one_line_error(capsys, [*argv, "--transformer", str(folder / "sem.h5"), "--filtered-out",
                                   str(folder / "f.png")])
    assert "--filtered-out " + str(folder / "f.png") + ": the pages are a PDF" in line
    line = one_line_error(capsys, [*argv, "--transformer", str(folder / "other.h5"), "--filtered-out",
                                   str(folder / "f.pdf")])
    assert "was not fitted for --activations" in line and not (folder / "f.pdf").exists()
