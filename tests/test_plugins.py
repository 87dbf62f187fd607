"""A user's package extends the pipeline: its transform and its figure kind, through the whole workflow.

The package is installed into a temporary folder the way pip installs one (the module and a
``.dist-info`` with an ``nsp.plugins`` entry point) and put on ``PYTHONPATH``; it adds a transform with
its HDF5 encoding. A second plugin, a module in the working folder listed under ``plugins:`` in the
config, adds a figure kind. Snakemake then runs the pipeline: the config schema accepts both, every job
sees them, the spectra are the transform's (checked against the activations) and the figure is drawn.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from docexamples import docstring_example

import nsp.pipeline.figures as figures_module
from nsp import storage

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

PACKAGE = '''
"""nsp_demo_plugin: a transform that doubles the signal."""
from nsp.storage import h5
from nsp.transforms import Transform, register_transform


class Doubled(Transform):
    type = "doubled"
    description = "doubled signal: c = 2 s"

    def __init__(self):
        self.nodes = None

    fitted = property(lambda self: self.nodes is not None)
    n = property(lambda self: self._checked().nodes)

    def fit(self, graph):
        self.nodes = graph.n_nodes
        return self

    def _transform(self, x, device):
        return 2.0 * x

    def _inverse(self, c, device):
        return c / 2.0


register_transform(Doubled)


@h5.writer(Doubled)
def _write(parent, name, transform):
    return h5.group(parent, name, "demo.doubled-transform", version=1, nodes=transform.nodes)


@h5.reader("demo.doubled-transform", 1)
def _read(group):
    out = Doubled()
    out.nodes = int(group.attrs["nodes"])
    return out
'''

FIGURE = '"""lab_figures: a paper figure of the samples each model saw."""\n' + docstring_example(figures_module.__doc__)


def install(site: Path) -> None:
    site.mkdir()
    (site / "nsp_demo_plugin.py").write_text(PACKAGE)
    info = site / "nsp_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nsp-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nsp.plugins]\ndemo = nsp_demo_plugin\n")
    (info / "RECORD").write_text("")


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed next to this Python")
def test_a_plugin_package_and_a_config_plugin_run_through_the_pipeline(tmp_path):
    install(tmp_path / "site")
    folder = tmp_path / "work"
    (folder / "config").mkdir(parents=True)
    (folder / "lab_figures.py").write_text(FIGURE)
    config = {"plugins": ["lab_figures"], "shard_size": 20,
              "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625, "limit": 20}},
              "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 1}},
              "transforms": {"doubled": {}}, "figures": ["compaction", "samples"]}
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{SNAKEMAKE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([str(SNAKEMAKE), "--snakefile", str(REPO / "workflow" / "Snakefile"), "--directory",
                           str(folder), "--cores", "2", "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-4000:]

    results = folder / "results"
    with h5py.File(results / "models" / "mlp" / "transformer_doubled.h5", "r") as f:   # this process lacks the plugin
        assert f["transform"].attrs["encoding-type"] == "demo.doubled-transform"
        nodes = int(f["transform"].attrs["nodes"])
    spectra_files = sorted(results.rglob("spectra/**/doubled/shard_*.h5"))
    activation_files = sorted(results.rglob("activations/**/shard_*.h5"))
    assert len(spectra_files) == len(activation_files) == 1
    acts, spectra = storage.read_signals(activation_files[0]), storage.read_signals(spectra_files[0])
    assert spectra.transform_type == "doubled" and spectra.values.shape == (20, acts.values.shape[1])
    assert np.array_equal(spectra.values, 2.0 * acts.values.astype(np.float64))
    assert nodes == acts.values.shape[1]
    summary = json.loads(next(results.rglob("summary.json")).read_text())
    assert "doubled" in summary and summary["samples"] == 20
    paper = results / "figures" / "paper"
    for name in ("samples.pdf", "samples.png", "compaction.pdf"):
        assert (paper / name).stat().st_size > 0, name
