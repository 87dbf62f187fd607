"""One error hierarchy: everything nsp raises on purpose is an NspError, and the built-in exception a caller
would expect; the command line prints it as one line with exit status 2."""

import ast
from pathlib import Path

import numpy as np
import pytest

import nsp
from nsp import errors
from nsp.pipeline import cli


def test_every_error_is_an_nsp_error_and_what_callers_expect():
    expected = {"ConfigError": ValueError, "StorageError": ValueError, "DatasetError": ValueError,
                "ExternalModelError": ValueError, "TraceError": RuntimeError, "ConnectivityError": ValueError,
                "EdgeWeightError": RuntimeError, "KroneckerError": ValueError, "NotFactorable": ValueError,
                "NotFittedError": (ValueError, AttributeError), "ExactnessError": ValueError,
                "MemoryBudgetError": ValueError, "RegistryError": ValueError, "InputError": ValueError,
                "InputTypeError": TypeError, "NotInGraphError": KeyError, "MissingFileError": FileNotFoundError,
                "OutputError": OSError}
    defined = {name for name, value in vars(errors).items() if isinstance(value, type) and value is not errors.NspError}
    assert defined == set(expected)
    for name, base in expected.items():
        cls = getattr(errors, name)
        assert issubclass(cls, errors.NspError) and issubclass(cls, base), name
    # the same classes where they are raised and in the public namespace
    from nsp.pipeline.config import ConfigError
    from nsp.tracing.recording import BatchAxisError
    from nsp.transforms.factored import NotFactorable
    assert ConfigError is errors.ConfigError and NotFactorable is errors.NotFactorable
    assert nsp.TraceError is errors.TraceError and issubclass(BatchAxisError, nsp.TraceError)
    assert nsp.NotFittedError is errors.NotFittedError and nsp.NspError is errors.NspError


def test_a_transform_used_before_fit_is_a_value_and_attribute_error_as_in_scikit_learn():
    transform = nsp.StandardTransform()
    for expected in (ValueError, AttributeError, nsp.NspError):
        with pytest.raises(expected, match="not fitted"):
            transform.transform(np.zeros((1, 3)))


def test_cli_prints_one_line_and_exits_2_for_an_nsp_error(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32))
    config = tmp_path / "c.yaml"
    config.write_text(f"datasets: {{d: {{source: {tmp_path / 'd.npz'}}}}}\n"
                      "models: {m: {architecture: digits_mlp, dataset: d, epochs: 1}}\n"
                      "transforms: {standard: {}}\n")
    code = cli.main(["train", "--config", str(config), "--model", "m", "--out", str(tmp_path / "w.npz"),
                     "--metrics", str(tmp_path / "m.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("nsp train: error: dataset d: ") and "has no array 'inputs' (has x)" in err[0]
    assert not (tmp_path / "w.npz").exists()


BUILT_INS = {"ValueError", "TypeError", "KeyError", "RuntimeError", "FileNotFoundError", "OSError", "IndexError",
             "LookupError", "Exception"}


def test_nsp_raises_no_bare_built_in_exception():
    """Every ``raise X(...)`` in the package raises an NspError subclass (or NotImplementedError in an
    abstract method, or SystemExit); a bare ValueError would print a traceback in the CLI."""
    package = Path(nsp.__file__).parent
    bare = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                if name in BUILT_INS:
                    bare.append(f"{path.relative_to(package)}:{node.lineno} raises {name}")
    assert bare == []


def test_unknown_node_errors_read_as_written():
    graph = nsp.NNGraph(nsp.Activations(nsp.zoo.ToyNet(), __import__("torch").zeros(1, 1, 4, 4)))
    with pytest.raises(KeyError) as caught:
        graph.node_id((7, 0))
    assert str(caught.value).startswith("(7, 0) is not a node") and isinstance(caught.value, nsp.NspError)
