"""The command line: a parser built from the stage registry, plugins loaded before it, and errors: an NspError
(found up front or deep inside a stage) is one line and exit status 2, anything else keeps its traceback."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

from nsp import storage
from nsp.errors import RegistryError
from nsp.pipeline import cli
from nsp.pipeline.figures import FIGURES
from nsp.pipeline.stages import STAGES, Stage, option
from nsp.tracing.table import LayerTable

ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
BUILT_IN = ["train", "extract-graph", "compute-transformer", "collect-activations", "transform", "visualize",
            "causes", "summarize", "class-means", "figures", "gallery", "demo"]


def summary(model="m", layers=("input", "fc")) -> dict:
    """A summary as nsp summarize writes it (two layers, the activations only)."""
    return {"model": model, "layers": list(layers), "samples": 3, "sparsity_threshold": 0.001,
            "activations": {"compaction_k": [1, 2, 3], "compaction_share": [0.5, 0.8, 1.0], "coefficients": 3,
                            "energy_per_layer": [0.25, 0.75], "sparsity_per_layer": [0.0, 0.5]}}


def shard(path, width=3, ids=(0, 1, 2)):
    table = LayerTable.build(["input", "fc"], ["input", "linear"], ["", "fc"], ["", "fc"], [(2,), (width - 2,)],
                             [[], [0]])
    values = np.arange(len(ids) * width, dtype=np.float32).reshape(len(ids), width)
    storage.write_signals(path, storage.SignalBatch("activations", values, table, sample_ids=np.asarray(ids),
                                                    labels=np.arange(len(ids)) % 2))


def one_line_error(capsys, argv) -> str:
    """Run ``nsp argv``: it must exit 2 with one line on stderr; returns that line."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    return err[0]


# --- the parser --------------------------------------------------------------------------------------

def test_the_subcommands_are_the_stage_registry_in_its_order(capsys):
    assert list(STAGES) == BUILT_IN
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    listed = capsys.readouterr().out
    places = [listed.index(f"    {name}") for name in BUILT_IN]
    assert places == sorted(places)
    with pytest.raises(SystemExit):
        cli.main(["figures", "--help"])
    assert "{compaction,magnitude,training,energy,sparsity,class_means,contributions,reconstruction}" in \
        capsys.readouterr().out.replace("\n", "").replace(" ", "")


def test_a_registered_stage_is_a_subcommand(tmp_path, capsys):
    def count(args, cfg):
        print(f"{args.what}: {len(cfg['models'])} models, {args.threads} threads")

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"datasets": {"d": {"source": "sklearn-digits"}},
                                                     "models": {"m": {"architecture": "digits_mlp", "dataset": "d"}},
                                                     "transforms": {"standard": {}}}))
    with STAGES.temporary():
        STAGES.add(Stage("count-models", count, "print the number of models", (option("--what", default="models"),)))
        assert cli.main(["count-models", "--config", str(tmp_path / "c.yaml"), "--threads", "2"]) == 0
        assert capsys.readouterr().out == "models: 1 models, 2 threads\n"
        with pytest.raises(RegistryError, match="stage 'demo' is already registered by "
                                                "nsp.pipeline.stages.network.demo"):
            STAGES.add(Stage("demo", count, "another demo", config="none"))
        with pytest.raises(RegistryError, match="config 'always' is not one of required, optional, none"):
            Stage("x", count, "x", config="always")
    assert "count-models" not in STAGES


# --- errors --------------------------------------------------------------------------------------------

def test_a_damaged_file_found_deep_in_a_stage_is_one_line_and_exit_2(tmp_path, capsys):
    good, bad = tmp_path / "a.json", tmp_path / "b.json"
    good.write_text(json.dumps(summary("a")))
    damaged = summary("b")
    damaged["activations"]["energy_per_layer"] = [1.0]                 # one value for two layers
    bad.write_text(json.dumps(damaged))
    out = tmp_path / "compaction.pdf"
    line = one_line_error(capsys, ["figures", "--kind", "compaction", "--summaries", str(good), str(bad),
                                   "--out", str(out), "--quiet"])
    assert line == (f"nsp figures: error: --summaries {bad} is not a summary of nsp summarize (damaged?): "
                    f"activations: energy_per_layer does not hold one value per layer (2 layers)")
    bad.write_text(json.dumps(summary("b"))[:40])                        # cut short
    line = one_line_error(capsys, ["figures", "--kind", "compaction", "--summaries", str(good), str(bad),
                                   "--out", str(out), "--quiet"])
    assert line.startswith(f"nsp figures: error: --summaries {bad} is not a JSON file (damaged, or not written by ")
    # a shard of another network, met after the first shard was read
    shard(tmp_path / "s0.h5")
    shard(tmp_path / "s1.h5", width=5, ids=(3, 4, 5))
    line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5"),
                                   "--out", str(tmp_path / "m.h5"), "--quiet"])
    assert line == (f"nsp class-means: error: --signals {tmp_path / 's1.h5'}: 5 columns, where the first shard has "
                    f"3: shards of another network?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "s0.h5", "s1.h5"]


def test_missing_inputs_are_named_with_their_option_before_any_work(tmp_path, capsys):
    shard(tmp_path / "s0.h5")
    missing = tmp_path / "nowhere.h5"
    line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / "s0.h5"), str(missing),
                                   "--out", str(tmp_path / "m.h5")])
    assert line == f"nsp class-means: error: --signals {missing}: no such file"
    line = one_line_error(capsys, ["figures", "--kind", "energy", "--summaries", str(tmp_path / "s.json"),
                                   "--out", str(tmp_path / "e.pdf")])
    assert line == f"nsp figures: error: --summaries {tmp_path / 's.json'}: no such file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.h5"]


def test_inputs_that_are_not_what_the_option_takes(tmp_path, capsys):
    """An output that is an input, a folder or a pipe as an input file, binary or non-finite data: one line each."""
    shard(tmp_path / "s0.h5")
    before = (tmp_path / "s0.h5").read_bytes()
    line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / "s0.h5"), "--out",
                                   str(tmp_path / "x" / ".." / "s0.h5")])
    assert line == (f"nsp class-means: error: --out {tmp_path / 'x' / '..' / 's0.h5'} is also given as --signals "
                    f"{tmp_path / 's0.h5'}: each output needs a path of its own (nsp never writes over a file it "
                    f"reads)")
    assert (tmp_path / "s0.h5").read_bytes() == before
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for name, what in (("folder", "a folder"), ("pipe", "not a regular file (a device, pipe or socket)")):
        line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / name), "--out", str(tmp_path / "m.h5")])
        assert line == f"nsp class-means: error: --signals {tmp_path / name} is {what}; it takes a file nsp wrote"
        line = one_line_error(capsys, ["figures", "--kind", "energy", "--summaries", str(tmp_path / name),
                                       "--out", str(tmp_path / "e.pdf")])
        assert line == f"nsp figures: error: --summaries {tmp_path / name} is {what}; it takes a file nsp wrote"
    line = one_line_error(capsys, ["figures", "--kind", "energy", "--summaries", str(tmp_path / "s0.h5"),
                                   "--out", str(tmp_path / "e.pdf")])
    assert line == (f"nsp figures: error: --summaries {tmp_path / 's0.h5'} is not a JSON file: it holds binary data "
                    f"(an HDF5 file?); --summaries takes the JSON files nsp writes")
    # a shard of another network with as many columns: other weights
    table = LayerTable.build(["input", "fc"], ["input", "linear"], ["", "fc"], ["", "fc"], [(2,), (1,)], [[], [0]])
    storage.write_signals(tmp_path / "s1.h5", storage.SignalBatch(
        "activations", np.ones((2, 3), np.float32), table, sample_ids=np.array([7, 8]), labels=np.array([0, 1]),
        weights_sha256="0" * 64))
    line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5"),
                                   "--out", str(tmp_path / "m.h5")])
    assert line == (f"nsp class-means: error: --signals {tmp_path / 's1.h5'} is of another network than the first "
                    f"shard (other weights): the shards given must be those of one model")
    # NaN in a shard: named by sample, layer and column, in both stages
    values = np.zeros((3, 3), np.float32)
    values[1, 2] = np.nan
    storage.write_signals(tmp_path / "nan.h5", storage.SignalBatch("activations", values, table,
                                                                   sample_ids=np.array([4, 5, 6]), labels=np.zeros(3, int)))
    line = one_line_error(capsys, ["class-means", "--signals", str(tmp_path / "nan.h5"), "--out", str(tmp_path / "m.h5")])
    assert line == (f"nsp class-means: error: --signals {tmp_path / 'nan.h5'}: sample 5 holds nan (layer fc, column "
                    f"2); statistics take finite values only")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"part": "summarize", "plugins": [], "summary": {"sparsity_threshold": 0.001}}))
    line = one_line_error(capsys, ["summarize", "--config", str(config), "--model", "m", "--activations",
                                   str(tmp_path / "nan.h5"), "--out", str(tmp_path / "s.json")])
    assert line.endswith(f"--activations {tmp_path / 'nan.h5'}: sample 5 holds nan (layer fc, column 2); statistics "
                         f"take finite values only")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "folder", "nan.h5", "pipe", "s0.h5", "s1.h5"]


def test_weights_that_are_not_a_file(tmp_path):
    import torch
    from nsp import zoo
    from nsp.errors import InputError, MissingFileError
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for path, what in ((tmp_path / "folder", "a folder"), (tmp_path / "pipe", "not a regular file"),
                       ("/dev/zero", "not a regular file")):
        with pytest.raises(InputError, match=f"^weights file {path} is {what}"):
            zoo.load_weights(torch.nn.Linear(1, 1), path)
    with pytest.raises(MissingFileError, match=f"^weights file {tmp_path / 'none.npz'} does not exist$"):
        zoo.load_weights(torch.nn.Linear(1, 1), tmp_path / "none.npz")


BUG = """
    import sys
    from nsp import statistics
    from nsp.pipeline import cli

    def add(self, *args, **kwargs):
        raise {error}("internal")

    statistics.ClassMeans.add = add
    sys.exit(cli.main(["class-means", "--signals", {shard!r}, "--out", {out!r}, "--quiet"]))
"""


@pytest.mark.parametrize("error", ["ZeroDivisionError", "ValueError", "OSError"])
def test_a_bug_keeps_its_traceback_and_exits_1(tmp_path, error):
    """Not an NspError: a bug, even where it is a ValueError or an OSError (nsp raises NspErrors on purpose)."""
    shard(tmp_path / "s0.h5")
    out = tmp_path / "m.h5"
    code = textwrap.dedent(BUG.format(error=error, shard=str(tmp_path / "s0.h5"), out=str(out)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.endswith(f"{error}: internal\n") and "in add" in done.stderr
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s0.h5"]


def test_a_bug_in_the_process_raises_out_of_main(monkeypatch):
    def bug(args, cfg):
        return 1 / 0

    monkeypatch.setattr(STAGES["demo"], "function", bug)
    with pytest.raises(ZeroDivisionError):
        cli.main(["demo", "--quiet"])


# --- plugins named by the config ------------------------------------------------------------------------

PLUGIN = '''
from nsp.pipeline.figures import FigureKind, register_figure


def draw(summaries):
    from nsp.plotting.figures import new_figure
    fig = new_figure(figsize=(3, 2))
    fig.subplots().bar([s["model"] for s in summaries], [s["samples"] for s in summaries])
    return fig


register_figure(FigureKind("samples_cli", draw, inputs="summaries", help="samples of each model"))
'''


def test_the_plugins_of_the_config_are_loaded_before_the_parser_is_built(tmp_path, monkeypatch, capsys):
    (tmp_path / "nsp_cli_figure_plugin.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)                                # found in the working folder, as a config's are
    (tmp_path / "figures.yaml").write_text(yaml.safe_dump({"part": "figures", "plugins": ["nsp_cli_figure_plugin"]}))
    (tmp_path / "a.json").write_text(json.dumps(summary("a")))
    argv = ["figures", "--kind", "samples_cli", "--summaries", "a.json", "--out", "samples.pdf", "--quiet"]
    try:
        with FIGURES.temporary():
            with pytest.raises(SystemExit):                   # without the config: not a kind
                cli.main(argv)
            assert "argument --kind: invalid choice: 'samples_cli'" in capsys.readouterr().err
            assert cli.main(argv + ["--config", "figures.yaml"]) == 0
            assert (tmp_path / "samples.pdf").stat().st_size > 1000 and (tmp_path / "samples.png").is_file()
        assert "samples_cli" not in FIGURES
        (tmp_path / "broken.yaml").write_text(yaml.safe_dump({"part": "figures", "plugins": ["nsp_no_such_module"]}))
        line = one_line_error(capsys, argv + ["--config", "broken.yaml"])
        assert line == ("nsp figures: error: config key plugins[0]: cannot import plugin nsp_no_such_module: "
                        "ModuleNotFoundError: No module named 'nsp_no_such_module'")
    finally:
        sys.modules.pop("nsp_cli_figure_plugin", None)
