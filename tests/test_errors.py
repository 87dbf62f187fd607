"""One error hierarchy: everything nsp raises on purpose is an NspError, and the built-in exception a caller
would expect; the command line prints it as one line with exit status 2."""

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
                "MemoryBudgetError": ValueError, "RegistryError": ValueError}
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
