"""docs/tutorial.md runs as written: its python blocks, in order, in one namespace (its asserts check values)."""

import re
from pathlib import Path

import matplotlib

DOC = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs_as_written(tmp_path, monkeypatch, capsys):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8
    namespace: dict = {"__name__": "tutorial"}
    for number, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}, block {number + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "test accuracy on the 297 held-out digits" in printed
    assert "synthetic 5-sparse pattern, relative error" in printed
