"""Extension points: a new operation kind and a new transform, added through the registries alone.

The extension lives in one module written to a temporary folder (as a user's would); nothing else in nsp
is edited. It is then run end to end through the CLI stages (graph, transformer, activations, spectra,
figure) and the HDF5 files, and the stored results are checked against brute force.
"""

import importlib
import os
import subprocess
import sys
from contextlib import ExitStack

import h5py
import numpy as np
import pytest
import torch
import yaml

import nsp
from nsp import storage, zoo
from nsp.operations import base as operations_base, elementwise
from nsp.operations.blocks import Kron
from nsp.errors import RegistryError
from nsp.pipeline import cli
from nsp.registry import Registry
from nsp.storage import h5
from nsp.transforms import base as transforms_base

EXTENSION = '''
import numpy as np
import torch
import torch.nn as nn

from nsp.operations import OperationKind, register
from nsp.operations.blocks import Kron, eyes
from nsp.operations.kronecker import Factor
from nsp.storage import h5
from nsp.transforms import Transform, register_transform


class Reverse(nn.Module):
    """Reverses the last axis: a permutation no built-in kind knows."""

    def forward(self, x):
        return x.flip(-1)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.reverse = Reverse()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(72, 3)

    def forward(self, x):
        return self.fc(self.flatten(self.reverse(torch.relu(self.conv(x)))))


@register
class ReverseKind(OperationKind):
    name = "reverse"
    modules = (Reverse,)
    single_input = True

    def blocks(self, op, inputs, incl, limit):
        shape = op.in_shapes[0]
        anti = Factor.of(np.eye(shape[-1], dtype=bool)[::-1])
        return [Kron(tuple(eyes(shape[:-1]) + [anti]))]


@register_transform
class Scaled(Transform):
    type = "scaled"
    description = "scaled spectrum: c = factor * s"
    options_schema = {"type": "object", "additionalProperties": False,
                      "properties": {"factor": {"type": "number", "default": 2.0}}}

    def __init__(self, factor: float = 2.0):
        self.factor = factor
        self.nodes = None

    @property
    def fitted(self):
        return self.nodes is not None

    @property
    def n(self):
        return self._checked().nodes

    def fit(self, graph):
        self.nodes = graph.n_nodes
        return self

    def _transform(self, x, device):
        return self.factor * x

    def _inverse(self, c, device):
        return c / self.factor


@h5.writer(Scaled)
def _write(parent, name, transform):
    return h5.group(parent, name, "test.scaled-transform", version=1, factor=transform.factor,
                    nodes=transform.nodes)


@h5.reader("test.scaled-transform", 1)
def _read(group):
    out = Scaled(float(group.attrs["factor"]))
    out.nodes = int(group.attrs["nodes"])
    return out
'''


@pytest.fixture
def extension(tmp_path, monkeypatch):
    """The extension module imported from a temporary folder; registries restored afterwards."""
    (tmp_path / "nsp_extension.py").write_text(EXTENSION)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with ExitStack() as stack:
        for registry in (operations_base.OPERATIONS, transforms_base.TRANSFORMS, h5.WRITERS, h5.READERS):
            stack.enter_context(registry.temporary())
        yield importlib.import_module("nsp_extension")
        sys.modules.pop("nsp_extension", None)


def test_new_operation_kind_and_transform_through_cli_and_storage(extension, tmp_path):
    assert "reverse" in nsp.OPERATIONS and "scaled" in nsp.TRANSFORMS
    torch.manual_seed(0)
    net = extension.Net().eval()
    zoo.save_state_npz(net, tmp_path / "w.npz")
    config = {
        "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625}},
        "models": {"m": {"architecture": "nsp_extension:Net", "dataset": "digits", "weights": "w.npz",
                         "input_shape": [1, 8, 8], "trace": "children"}},
        "transforms": {"scaled": {"factor": 3.0}},
        "shard_size": 40,
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    common = ["--config", "c.yaml", "--quiet"]
    assert cli.main(["extract-graph", *common, "--model", "m", "--weights", "w.npz", "--out", "g.h5"]) == 0
    assert cli.main(["compute-transformer", *common, "--graph", "g.h5", "--transform", "scaled",
                     "--out", "t.h5"]) == 0
    assert cli.main(["collect-activations", *common, "--model", "m", "--weights", "w.npz", "--shard", "0",
                     "--out", "a.h5"]) == 0
    assert cli.main(["transform", *common, "--activations", "a.h5", "--transformer", "t.h5", "--out", "s.h5"]) == 0
    assert cli.main(["visualize", *common, "--activations", "a.h5", "--spectra", "s.h5", "--spectra-out",
                     "spectrum_scaled.pdf"]) == 0

    # the graph: the new kind in the stored layer table, its block equal to the Jacobian's pattern
    core = storage.read_graph("g.h5")
    assert core.kinds == ["input", "conv", "reverse", "reshape", "linear"]
    layer = core.kinds.index("reverse")
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda t: t.flip(-1), x).reshape(72, 72) != 0
    (parent, block), = core.blocks[layer]
    rows, cols = block.coo()
    stored = np.zeros((72, 72), dtype=bool)
    stored[rows, cols] = True
    assert parent == layer - 1 and np.array_equal(stored, jacobian.numpy())
    assert isinstance(block, Kron)                                             # factored: the closure works
    assert nsp.StandardTransform().fit(core).factored

    # the transform: stored with its own encoding, applied by the CLI, exact
    with h5py.File("t.h5", "r") as f:
        assert f["transform"].attrs["encoding-type"] == "test.scaled-transform"
    transform = storage.read_transformer("t.h5")
    assert type(transform).__name__ == "Scaled" and transform.factor == 3.0 and transform.n == core.n_nodes
    acts, spectra = storage.read_signals("a.h5"), storage.read_signals("s.h5")
    assert spectra.transform_type == "scaled" and spectra.layers == acts.layers == core.table
    assert np.array_equal(spectra.values, 3.0 * acts.values.astype(np.float64))
    assert (tmp_path / "spectrum_scaled.pdf").stat().st_size > 0

    # the facades know both through the registries
    sample = nsp.Activations(net, torch.from_numpy(acts.values[:1, :64].reshape(1, 1, 8, 8)))
    graph = nsp.NNGraph(sample)
    spectrum = graph.transform(sample, type="scaled")
    assert np.array_equal(spectrum.to_array(np.float64), 2.0 * sample.to_array(np.float64))
    nsp.OutputLoader.save(graph.transformers["scaled"], tmp_path / "again.h5")
    assert nsp.OutputLoader.load(tmp_path / "again.h5").factor == 2.0


def test_unknown_kinds_and_versions_are_clear_errors(extension, tmp_path):
    config = {"datasets": {"d": {"source": "sklearn-digits"}},
              "models": {"m": {"architecture": "digits_mlp", "dataset": "d"}}, "transforms": {"scaled2": {}}}
    with pytest.raises(nsp.pipeline.config.ConfigError,
                       match="config key transforms.scaled2: unknown transform; accepted: influence, laplacian, scaled, "
                             "sem, standard"):
        nsp.pipeline.config.validate(config)
    config["transforms"] = {"scaled": {"factor": "big"}}
    with pytest.raises(nsp.pipeline.config.ConfigError, match="config key transforms.scaled.factor: 'big' is not"):
        nsp.pipeline.config.validate(config)
    with pytest.raises(ValueError, match="bad options for the scaled transform .*accepted options: factor"):
        nsp.make_transform("scaled", size=3)
    transform = nsp.make_transform("scaled")
    with pytest.raises(nsp.NotFittedError, match="the scaled transform is not fitted"):
        transform.transform(np.zeros(3))
    storage.write_transformer("t.h5", transform.fit(storage_core()))
    with h5py.File("t.h5", "r+") as f:
        f["transform"].attrs["encoding-version"] = "7"
    storage.seal("t.h5")                                 # changed on purpose: sealed again
    with pytest.raises(nsp.StorageError, match="encoding 'test.scaled-transform' version 7 cannot be read by this "
                                               "nsp \\(it reads version 1\\)"):
        storage.read_transformer("t.h5")
    with h5py.File("t.h5", "r+") as f:
        f["transform"].attrs["encoding-type"] = "test.nothing"
    storage.seal("t.h5")
    with pytest.raises(nsp.StorageError, match="unknown encoding 'test.nothing'"):
        storage.read_transformer("t.h5")


def storage_core():
    return nsp.GraphCore.from_activations(nsp.Activations(zoo.ToyNet(), torch.zeros(1, 1, 4, 4)))


def test_edge_weights_that_cannot_be_derived_are_reported(tmp_path, monkeypatch):
    """No swallowed failure: a warning naming the layer and operation, the reason in the file and the log."""
    def broken(self, op, inputs, blocks):
        raise FloatingPointError("probe diverged")

    monkeypatch.setattr(elementwise.Elementwise, "linear_parts", broken)
    acts = nsp.Activations(zoo.ToyNet(), torch.rand(1, 1, 4, 4), trace="ops")
    with pytest.warns(nsp.EdgeWeightWarning) as caught:
        core = nsp.GraphCore.from_activations(acts)
    assert [str(w.message).split(":")[0] for w in caught] == [
        "layer 2 ('sigmoid', operation elementwise 'sigmoid')", "layer 4 ('sigmoid_1', operation elementwise 'sigmoid')"]
    assert "edge weights could not be derived (FloatingPointError: probe diverged)" in str(caught[0].message)
    fallbacks = core.weight_fallbacks()
    assert len(fallbacks) == sum(kind == "elementwise" for kind in core.kinds) and "'sigmoid'" in fallbacks[0]
    relu = core.kinds.index("elementwise")
    part = core.linear[relu][0][0]
    assert part.kind == "rows" and float(part.arrays["r"]) == 1.0 and part.params["fallback"] == fallbacks[0]
    storage.write_graph(tmp_path / "g.h5", core)
    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert __import__("json").loads(f.attrs["edge-weight-fallbacks"]) == fallbacks
    assert storage.read_graph(tmp_path / "g.h5").weight_fallbacks() == fallbacks


def test_cli_keeps_tracebacks_of_bugs(tmp_path, monkeypatch, capsys):
    """User errors are one line (exit 2); an unexpected exception is not hidden."""
    def bug(args, cfg):
        raise KeyError("internal")

    monkeypatch.setattr(cli.STAGES["demo"], "function", bug)
    with pytest.raises(KeyError, match="internal"):
        cli.main(["demo", "--quiet"])
    assert cli.main(["transform", "--config", str(tmp_path / "none.yaml"), "--activations", "a", "--transformer",
                     "t", "--out", "o"]) == 2
    assert "config file" in capsys.readouterr().err


def test_older_encoding_versions_are_still_read(tmp_path):
    """layer-table v1 (no operation parameters) and factored-transform v1 (names and offsets) still load."""
    acts = nsp.Activations(zoo.ToyNet(), torch.rand(1, 1, 4, 4), trace="ops")
    core = nsp.GraphCore.from_activations(acts)
    assert core.table[1].params["kernel"] == [2, 2] and core.table[1].kind == "conv"
    nsp.OutputLoader.save(acts, tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        assert f["layers"].attrs["encoding-version"] == "2"
        del f["layers/params"]
        f["layers"].attrs["encoding-version"] = "1"
    storage.seal(tmp_path / "a.h5", digest=True)
    old = nsp.OutputLoader.load(tmp_path / "a.h5").table
    assert [l.params for l in old] == [{}] * len(core.table)
    assert old.names == core.table.names and old.shapes == core.table.shapes and old.kinds == core.table.kinds

    fitted = nsp.StandardTransform("factored").fit(core)
    storage.write_transformer(tmp_path / "t.h5", fitted)
    with h5py.File(tmp_path / "t.h5", "r+") as f:
        group = f["transform"]
        assert group.attrs["encoding-version"] == "2"
        del group["layers"]
        h5.array(group, "offsets", core.offsets)
        h5.array(group, "names", np.asarray(core.names, dtype=object))
        group.attrs["encoding-version"] = "1"
    storage.seal(tmp_path / "t.h5", digest=True)
    loaded = storage.read_transformer(tmp_path / "t.h5")
    s = np.random.default_rng(0).standard_normal((3, core.n_nodes))
    assert loaded.closure.names == core.names and np.array_equal(loaded.closure.offsets, core.offsets)
    assert np.array_equal(loaded.transform(s), fitted.transform(s))


# --- the registries themselves: fixed order, explicit fill, clear errors, installed plugins ----------------

def _python(code: str, env_path: str | None = None) -> subprocess.CompletedProcess:
    """``code`` run in a fresh interpreter (nothing imported before), optionally with ``env_path`` on the path."""
    env = dict(os.environ)
    if env_path:
        env["PYTHONPATH"] = os.pathsep.join([env_path, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("first", ["", "import nsp.transforms.sem", "import nsp.transforms.laplacian",
                                   "import nsp.operations.pooling, nsp.operations.jacobian",
                                   "import nsp.storage.transformers"])
def test_registries_fill_in_their_fixed_order_whatever_was_imported_first(first):
    code = (f"{first}\nfrom nsp.transforms.base import TRANSFORMS\nfrom nsp.operations.base import OPERATIONS\n"
            f"print(','.join(TRANSFORMS)); print(','.join(OPERATIONS))")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    transforms, operations = out.stdout.split()
    assert transforms == "standard,laplacian,sem,influence"
    assert operations == ("conv,maxpool,avgpool,adaptive_avgpool,adaptive_maxpool,linear,matmul,einsum,attention,"
                          "multihead_attention,reshape,unfold,fold,gather,elementwise,reduce,cat,stack,recurrent,"
                          "interpolate,jacobian")


def test_importing_a_module_registers_nothing_until_the_registry_is_read():
    out = _python("import nsp.transforms.sem, nsp.operations.conv\nfrom nsp.transforms.base import TRANSFORMS\n"
                  "from nsp.operations.base import OPERATIONS\nprint(TRANSFORMS._filled, OPERATIONS._filled)")
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_registry_errors_name_the_entry_and_what_is_accepted():
    registry = Registry("colour", ("nsp.errors:NspError",), name_of=lambda cls: cls.__name__.lower())

    class Red:
        pass

    class Other:
        pass

    registry.add(Red)
    assert list(registry) == ["nsperror", "red"]           # the built-in first, though added later
    registry.add(Red)                                       # the same definition again (a re-import): fine
    with pytest.raises(RegistryError, match=r"colour 'red' is already registered by "
                                            r"test_registries\.test_registry_errors_name_the_entry_and_what_is_"
                                            r"accepted\.<locals>\.Red; .*Other must use another name"):
        registry.add(Other, "red")
    with pytest.raises(RegistryError, match="unknown colour 'blue'; accepted: nsperror, red"):
        registry.lookup("blue")
    with registry.temporary():
        registry.add(Other, "red", replace=True)
        assert registry["red"] is Other
    assert registry["red"] is Red
    with pytest.raises(RegistryError, match="is not a subclass of nsp.transforms.Transform"):
        nsp.register_transform(Other)
    with pytest.raises(nsp.ConnectivityError, match="unknown operation kind 'warp'; accepted: adaptive_avgpool"):
        operations_base.kind("warp")


PLUGIN = '''
from nsp.transforms import Transform, register_transform


class Doubled(Transform):
    type = "doubled"
    description = "twice the signal"

    def __init__(self):
        self.nodes = None
'''


def _install(tmp_path, module_text: str, value: str = "nsp_demo_plugin") -> str:
    """A package installed into ``tmp_path``: the module and its distribution metadata with one
    ``nsp.plugins`` entry point (what pip writes for ``[project.entry-points."nsp.plugins"]``)."""
    (tmp_path / "nsp_demo_plugin.py").write_text(module_text)
    info = tmp_path / "nsp_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nsp-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nsp.plugins]\ndemo = {value}\n")
    return str(tmp_path)


def test_an_installed_plugin_is_loaded_when_a_registry_is_first_read(tmp_path):
    path = _install(tmp_path, PLUGIN + "\nregister_transform(Doubled)\n")
    out = _python("import nsp\nprint(','.join(nsp.TRANSFORMS))", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "standard,laplacian,sem,influence,doubled"


def test_a_broken_installed_plugin_is_named(tmp_path):
    path = _install(tmp_path, "raise ImportError('needs torch-geometric')\n")
    out = _python("import nsp\nlist(nsp.TRANSFORMS)", path)
    assert out.returncode == 1
    assert ("NspError: plugin demo = nsp_demo_plugin (entry point nsp.plugins of package nsp-demo-plugin) failed "
            "to load: ImportError: needs torch-geometric") in out.stderr


@pytest.mark.parametrize("plugins, message", [
    ("my_plugin", "config key plugins: a list of Python module names, got str"),
    (["ok", "../evil"], r"config key plugins\[1\]: '../evil' is not a Python module name"),
    (["nsp_no_such_plugin"], r"config key plugins\[0\]: cannot import plugin nsp_no_such_plugin: "
                             r"ModuleNotFoundError: No module named 'nsp_no_such_plugin'"),
])
def test_bad_plugins_in_a_config_are_named(plugins, message, monkeypatch, tmp_path):
    (tmp_path / "ok.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {"plugins": plugins, "datasets": {"d": {"source": "sklearn-digits"}},
              "models": {"m": {"architecture": "digits_mlp", "dataset": "d"}}, "transforms": {"standard": {}}}
    with pytest.raises(nsp.pipeline.config.ConfigError, match=message):
        nsp.pipeline.config.validate(config)
    sys.modules.pop("ok", None)


def test_reading_activations_does_not_import_the_transforms(tmp_path):
    """The encodings are a keyed registry: a lookup imports built-in modules only until it finds the name."""
    path = tmp_path / "a.h5"
    table = nsp.tracing.LayerTable.build(["input"], ["input"], [""], [""], [(4,)], [[]])
    storage.write_signals(path, storage.SignalBatch("activations", np.zeros((2, 4), np.float32), table))
    out = _python(f"import sys\nfrom nsp import storage\nbatch = storage.read_signals({str(path)!r})\n"
                  f"print(batch.values.shape, sorted(m for m in sys.modules if m.startswith('nsp.transforms')))")
    assert out.stdout.strip() == "(2, 4) []", out.stderr
