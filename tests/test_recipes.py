"""The recipes of ``docs/architecture.md``, run exactly as written.

Each recipe is the ``python`` block after a ``<!-- recipe: NAME ... -->`` line. The block is written to a
module in a temporary folder, loaded the way a user's extension is (as a plugin listed in a config), and
what it adds is checked with values: the new operation kind's blocks against the Jacobian's nonzero
pattern, the new transform against its definition and through storage.
"""

import importlib
import json
import re
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
import torch

import nsp
from nsp import plugins, storage, zoo
from nsp.operations.base import OPERATIONS
from nsp.operations.blocks import Kron
from nsp.storage import h5
from nsp.tracing.table import LayerTable
from nsp.transforms.base import TRANSFORMS

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
RECIPE = re.compile(r"<!-- recipe: ([a-z-]+)[^>]*-->\s*```python\n(.*?)```", re.S)


def recipes() -> dict:
    return dict(RECIPE.findall(DOC.read_text()))


@pytest.fixture
def load_recipe(tmp_path, monkeypatch):
    """``load_recipe(name)``: the recipe's block as a module, loaded as a plugin; registries restored after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = []
    with ExitStack() as stack:
        for registry in (OPERATIONS, TRANSFORMS, h5.WRITERS, h5.READERS):
            stack.enter_context(registry.temporary())

        def load(name):
            module = f"recipe_{name.replace('-', '_')}"
            (tmp_path / f"{module}.py").write_text(recipes()[name])
            plugins.load([module])
            loaded.append(module)
            return sys.modules[module]

        yield load
        for module in loaded:
            sys.modules.pop(module, None)


def test_the_documentation_has_the_recipes():
    assert {"operation-kind", "transform", "pipeline-stage"} <= set(recipes())


@pytest.mark.parametrize("trace", ["children", "ops"])
def test_operation_kind_recipe(load_recipe, trace):
    module = load_recipe("operation-kind")
    assert list(OPERATIONS)[-1] == "reverse" and "reverse" in OPERATIONS
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), module.Reverse(), torch.nn.Flatten()).eval()
    core = nsp.GraphCore.from_activations(nsp.Activations(net, torch.rand(1, 1, 5, 5), trace=trace))
    layer = core.kinds.index("reverse")                # claimed in both modes (a leaf module for torch.fx)
    (parent, block), = core.blocks[layer]
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    pattern = torch.autograd.functional.jacobian(lambda t: t.flip(-1), x).reshape(18, 18) != 0
    rows, cols = block.coo()
    stored = np.zeros((18, 18), dtype=bool)
    stored[rows, cols] = True
    assert parent == layer - 1 and np.array_equal(stored, pattern.numpy())
    assert isinstance(block, Kron)


def test_transform_recipe(load_recipe, tmp_path):
    load_recipe("transform")
    assert list(TRANSFORMS) == ["standard", "laplacian", "sem", "influence", "scaled"]
    acts = nsp.Activations(zoo.ToyNet(), torch.rand(1, 1, 4, 4))
    graph = nsp.NNGraph(acts)
    spectrum = graph.transform(acts, type="scaled")
    signal = acts.to_array(np.float64)
    assert np.array_equal(spectrum.to_array(np.float64), 2.0 * signal)
    transform = nsp.make_transform("scaled", factor=3.0).fit(graph.core)
    nsp.OutputLoader.save(transform, tmp_path / "t.h5")
    again = nsp.OutputLoader.load(tmp_path / "t.h5")
    assert type(again).__name__ == "Scaled" and again.factor == 3.0 and again.n == graph.core.n_nodes
    assert np.array_equal(again.inverse_transform(again.transform(signal)), signal)


DOCUMENTS = sorted((DOC.parent).glob("*.md")) + [DOC.parents[1] / "README.md", DOC.parents[1] / "config" / "README.md"]
CODE_NAME = re.compile(r"`(nsp(?:\.[A-Za-z_]\w*)+)(?:\(\))?`")


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module of nsp, or an attribute (a chain of them) of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_documents_name_only_modules_and_names_that_exist(document):
    names = sorted(set(CODE_NAME.findall(document.read_text())))
    assert [name for name in names if not _resolves(name)] == []


def test_pipeline_stage_recipe(load_recipe, tmp_path, capsys):
    from nsp.pipeline import cli
    from nsp.pipeline.stages import STAGES

    with STAGES.temporary():
        load_recipe("pipeline-stage")
        assert list(STAGES)[-1] == "count-samples"
        for name, samples in (("a.h5", 3), ("b.h5", 5)):
            storage.write_signals(tmp_path / name, storage.SignalBatch(
                "activations", np.zeros((samples, 4), np.float32), _table(4)))
        out = tmp_path / "counts.json"
        assert cli.main(["count-samples", "--signals", str(tmp_path / "a.h5"), str(tmp_path / "b.h5"),
                         "--out", str(out)]) == 0
        assert json.loads(out.read_text()) == {str(tmp_path / "a.h5"): 3, str(tmp_path / "b.h5"): 5}
        assert "8 samples" in capsys.readouterr().err
        assert cli.main(["count-samples", "--quiet", "--signals", str(tmp_path / "none.h5"), "--out",
                         str(out)]) == 2
        assert capsys.readouterr().err == f"nsp count-samples: error: --signals {tmp_path / 'none.h5'}: no such file\n"
    assert "count-samples" not in STAGES


def _table(width: int) -> LayerTable:
    return LayerTable.build(["input"], ["input"], [""], [""], [(width,)], [[]])
