"""Figure kinds: one registry from which the config schema, ``nsp figures --kind``, the figure names and the
workflow's figure rules are derived; a plugin's kind is drawn like a built-in one."""

import json
import re
import types

import numpy as np
import pytest
import yaml

from docexamples import docstring_example

import nsp.pipeline.figures as figures_module
from nsp import storage
from nsp.errors import RegistryError
from nsp.pipeline import cli, config
from nsp.pipeline.figures import FIGURES, FigureKind, kinds, kinds_pattern, register_figure, series_of
from nsp.tracing.table import LayerTable

BASE = {"datasets": {"digits": {"source": "sklearn-digits"}},
        "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits"}},
        "transforms": {"standard": {}}}
MODELS = {"mlp": ["activations", "standard"], "cnn": ["activations"]}


def summary(model: str) -> dict:
    stats = {"compaction_k": [1, 2, 4], "compaction_share": [0.5, 0.75, 1.0], "coefficients": 4,
             "energy_per_layer": [0.25, 0.75], "sparsity_per_layer": [0.0, 0.5]}
    return {"model": model, "layers": ["input", "fc"], "samples": 7, "sparsity_threshold": 0.001,
            "activations": stats, "standard": {**stats, "compaction_share": [0.75, 1.0, 1.0]}}


def test_the_built_in_kinds_in_their_order():
    assert list(FIGURES) == ["compaction", "magnitude", "training", "energy", "sparsity", "class_means",
                             "contributions", "reconstruction"]
    assert [FIGURES[k].inputs for k in FIGURES] == ["summaries", "summaries", "summaries", "summary", "summary", "class_means",
                                                   "summaries", "summaries"]
    assert kinds("summary") == ["energy", "sparsity"] and kinds() == list(FIGURES)
    assert kinds_pattern("summary") == "energy|sparsity" and re.fullmatch(kinds_pattern("nothing"), "") is None
    assert config.figure_names(["class_means", "sparsity", "compaction"], MODELS) == [
        "compaction", "sparsity_mlp", "sparsity_cnn", "class_means_mlp_activations", "class_means_mlp_standard",
        "class_means_cnn_activations"]
    assert series_of({**summary("m"), "zeta2": {"compaction_k": []}, "sem": {"compaction_k": []}}) == [
        "activations", "standard", "sem", "zeta2"]


def test_a_registered_kind_is_accepted_by_the_schema_and_named():
    with FIGURES.temporary():
        with pytest.raises(config.ConfigError, match=r"config key figures\.1: 'per_layer' is not one of "
                                                     r"\['compaction', 'magnitude', 'training', 'energy', 'sparsity', "
                                                     r"'class_means', 'contributions', 'reconstruction'\]"):
            config.validate({**BASE, "figures": ["energy", "per_layer"]})
        kind = register_figure(FigureKind("per_layer", lambda s: None, inputs="summary"))
        assert FIGURES["per_layer"] is kind and kinds("summary") == ["energy", "sparsity", "per_layer"]
        assert config.validate({**BASE, "figures": ["energy", "per_layer"]})["figures"] == ["energy", "per_layer"]
        assert config.schema(transforms=False)["properties"]["figures"]["items"]["enum"][-1] == "per_layer"
        assert config.figure_names(["per_layer", "energy"], MODELS) == ["energy_mlp", "energy_cnn", "per_layer_mlp",
                                                                        "per_layer_cnn"]
        # two kinds that would write one file
        register_figure(FigureKind("energy_mlp", lambda s: None, inputs="summaries"))
        with pytest.raises(config.ConfigError, match="config key figures: the figure energy_mlp would be drawn "
                                                     "twice, by the figure kinds energy and energy_mlp"):
            config.figure_names(["energy", "energy_mlp"], MODELS)
    assert list(FIGURES) == ["compaction", "magnitude", "training", "energy", "sparsity", "class_means",
                             "contributions", "reconstruction"]


def test_kinds_are_checked_when_made_and_registered():
    def draw(summaries):
        return None

    with pytest.raises(RegistryError, match="figure kind 'a-b': a name is letters, digits and '_'"):
        FigureKind("a-b", draw)
    with pytest.raises(RegistryError, match="figure kind x: inputs 'spectra' is not one of summaries, summary, "
                                            "class_means"):
        FigureKind("x", draw, inputs="spectra")
    with FIGURES.temporary():
        with pytest.raises(RegistryError, match="figure kind 'energy' is already registered by "
                                                "nsp.pipeline.paper_figures._energy; .*draw must use another name"):
            register_figure(FigureKind("energy", draw, inputs="summary"))
        register_figure(FigureKind("again", draw))
        register_figure(FigureKind("again", draw, help="the same function: a module imported twice"))
        assert FIGURES["again"].help.startswith("the same")
        with pytest.raises(RegistryError, match=r"unknown figure kind 'nope'; accepted: again, class_means"):
            FIGURES.lookup("nope")


def _means(path):
    table = LayerTable.build(["input", "fc"], ["input", "linear"], ["", "fc"], ["", "fc"], [(2,), (2,)], [[], [0]])
    storage.write_signals(path, storage.SignalBatch("spectra", np.arange(8.0).reshape(2, 4), table,
                                                    sample_ids=np.array([0, 1]), transform_type="standard"))


def test_plugin_kinds_of_every_input_are_drawn_by_the_cli(tmp_path):
    seen = {}

    def drawer(name):
        def draw(*inputs):
            seen[name] = inputs
            from nsp.plotting.figures import new_figure
            fig = new_figure(figsize=(2, 2))
            fig.subplots().plot([0, 1])
            return fig
        draw.__qualname__ = f"draw_{name}"
        return draw

    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(summary(name)))
    _means(tmp_path / "m.h5")
    with FIGURES.temporary():
        for name, inputs in (("every", "summaries"), ("each", "summary"), ("means", "class_means")):
            register_figure(FigureKind(name, drawer(name), inputs=inputs))
        runs = [["--kind", "every", "--summaries", str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                ["--kind", "each", "--summaries", str(tmp_path / "b.json")],
                ["--kind", "means", "--class-means", str(tmp_path / "m.h5"), "--model", "b"]]
        for argv in runs:
            assert cli.main(["figures", *argv, "--out", str(tmp_path / f"{argv[1]}.pdf"), "--quiet"]) == 0
        assert cli.main(["figures", "--kind", "each", "--summaries", str(tmp_path / "a.json"),
                         str(tmp_path / "b.json"), "--out", str(tmp_path / "x.pdf")]) == 2
    assert [s["model"] for s in seen["every"][0]] == ["a", "b"]
    assert len(seen["each"]) == 1 and seen["each"][0]["model"] == "b"
    means, model = seen["means"]
    assert model == "b" and means.transform_type == "standard" and means.values.shape == (2, 4)
    assert sorted(p.name for p in tmp_path.glob("*.p*")) == [
        "each.pdf", "each.png", "every.pdf", "every.png", "means.pdf", "means.png"]



def test_the_documented_plugin_draws_its_figure(tmp_path):
    module = types.ModuleType("nsp_documented_figure")
    code = docstring_example(figures_module.__doc__)
    assert "register_figure(FigureKind(\"samples\"" in code
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(summary(name)))
    with FIGURES.temporary():
        exec(compile(code, "nsp_documented_figure.py", "exec"), module.__dict__)
        assert FIGURES["samples"].inputs == "summaries"
        assert cli.main(["figures", "--kind", "samples", "--summaries", str(tmp_path / "a.json"),
                         str(tmp_path / "b.json"), "--out", str(tmp_path / "samples.pdf"), "--quiet"]) == 0
        assert config.figure_names(["compaction", "samples"], MODELS) == ["compaction", "samples"]
    assert (tmp_path / "samples.png").stat().st_size > 1000


def test_the_workflow_rules_know_no_kind_by_name():
    from pathlib import Path
    rules = (Path(__file__).resolve().parents[1] / "workflow" / "rules" / "figures.smk").read_text()
    code = "\n".join(line for line in rules.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"compaction|energy|sparsity|--kind [a-z]", code)      # every kind from the registry
    assert code.count("kind=nsp_figures.kinds_pattern(") == 3
    schema = yaml.safe_load(config.SCHEMA_PATH.read_text())
    assert "enum" not in schema["properties"]["figures"]["items"]
