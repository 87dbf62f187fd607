"""A config names code to import (like a Snakefile), but it never calls anything but a network class.

``architecture: module:Class`` must name a ``torch.nn.Module`` subclass; it is checked before anything is
called, so ``os:system`` with ``options: {command: ...}`` runs no command.
"""

import sys

import numpy as np
import pytest
import yaml

from nsp import zoo
from nsp.errors import ExternalModelError
from nsp.pipeline import cli


@pytest.mark.parametrize("architecture, found", [
    ("os:system", "a builtin_function_or_method"), ("subprocess:run", "a function"),
    ("os:path", "a module"), ("collections:OrderedDict", "a type"), ("os:nothing_here", "nothing")])
def test_only_a_network_class_is_called(architecture, found, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ExternalModelError) as caught:
        zoo.build(architecture, {"command": f"touch {tmp_path / 'PWNED'}", "args": ["touch", "PWNED"]})
    module, _, name = architecture.partition(":")
    message = str(caught.value)
    assert message.startswith(f"architecture '{architecture}': {name} in {module} is ")
    assert "not a torch.nn.Module subclass" in message
    if found != "a type":
        assert f"is {found}," in message
    assert not (tmp_path / "PWNED").exists() and list(tmp_path.iterdir()) == []


def test_a_config_cannot_run_a_shell_command_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "w.npz", x=np.zeros(1))
    config = {"datasets": {"d": {"source": "sklearn-digits"}},
              "models": {"m": {"architecture": "os:system", "options": {"command": "touch PWNED"},
                               "weights": "w.npz", "input_shape": [1, 8, 8], "dataset": "d"}},
              "transforms": {"standard": {}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    code = cli.main(["extract-graph", "--config", "c.yaml", "--quiet", "--model", "m", "--weights", "w.npz",
                     "--out", "g.h5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "system in os is a builtin_function_or_method, not a torch.nn.Module" in err[0]
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "g.h5").exists()


def test_a_user_module_that_fails_on_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_net.py").write_text("import torch\nraise RuntimeError('CUDA kernels missing')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ExternalModelError, match=r"cannot import model 'broken_net:Net': importing broken_net raised "
                                                 r"RuntimeError: CUDA kernels missing"):
        zoo.build("broken_net:Net")
    sys.modules.pop("broken_net", None)
