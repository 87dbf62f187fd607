"""The package's import graph: no cycle, imports follow the layers, and modules stay small.

Every ``import`` and ``from ... import`` of an ``nsp`` module counts, wherever it is written (a
function-level import that dodges a cycle is still a cycle), and so does
``importlib.import_module("nsp...")`` with a literal name. A registry's list of built-in entries
(``"nsp.transforms.sem:SemTransform"``) is data the registry loads when first read, not an import of the
module that declares it.
"""

import ast
from pathlib import Path

import pytest

import nsp

PACKAGE = Path(nsp.__file__).parent

#: the layers, lowest first: a module may import its own layer and the ones before it (the package root
#: ``nsp`` loads its public names lazily, so importing it imports nothing above)
LAYERS = [
    ("foundation", ["nsp", "nsp._lazy", "nsp.errors", "nsp.plugins", "nsp.registry", "nsp.devices", "nsp.memory",
                    "nsp.external"]),
    ("operations", ["nsp.operations"]),
    ("tracing", ["nsp.tracing"]),
    ("graph", ["nsp.graph"]),
    ("transforms", ["nsp.transforms"]),
    ("storage", ["nsp.storage"]),
    ("statistics", ["nsp.statistics"]),
    ("plotting", ["nsp.plotting"]),
    ("facades", ["nsp.nets", "nsp.zoo", "nsp.activations", "nsp.nngraph", "nsp.transformer", "nsp.outputloader",
                 "nsp.visualizer"]),
    ("pipeline", ["nsp.pipeline"]),
]
MAX_LINES = 450


def _modules() -> dict:
    """module name -> path, for every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("nsp",) + path.relative_to(PACKAGE).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict) -> set:
    """The nsp modules ``name`` imports (a name imported from a package counts as its submodule if it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant)):
            targets = [node.args[0].value]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (prefix != "nsp" and name.startswith(prefix + ".")):   # the root: itself only
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


def _cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_follow_the_layers():
    graph = _graph()
    upward = sorted(f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
                    for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert upward == []


def test_relative_and_function_level_imports_are_seen(tmp_path):
    modules = {"nsp.x": None, "nsp.x.a": None, "nsp.x.b": None, "nsp.y": None}
    path = tmp_path / "a.py"
    path.write_text("from . import b\n\ndef f():\n    import nsp.y\n    importlib.import_module('nsp.x.b')\n")
    assert _imports("nsp.x.a", path, modules) == {"nsp.x.b", "nsp.y"}


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_stay_small(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"
