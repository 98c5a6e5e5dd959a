"""The layering, read from the imports: core <- ports <- experiment <- data <- evaluation <- runtime
<- reports <- tools (CLI, benchmarks, users' test helpers); nothing imports a layer above its own, there
is no import cycle, and no private name is imported from another module (a concept used in two places
has a public owner). The folders of ``parity/`` are these layers."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("parity", "original_port", "notebook_port")
# Lowest first; a module may import its own layer and the layers below it. ``parity`` itself (the
# package's __init__) is part of the core: the ports load it.
LAYERS = (
    ("core", ("parity", "parity.core")),
    ("ports", ("original_port", "notebook_port")),
    ("experiment", ("parity.experiment",)),
    ("data", ("parity.data",)),
    ("evaluation", ("parity.evaluation",)),
    ("runtime", ("parity.runtime",)),
    ("reports", ("parity.report",)),
    ("tools", ("parity.cli", "parity.bench", "parity.testing", "parity.pytest_plugin", "parity.golden")),
)
CORE = LAYERS[0][1]


def _modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    found = {}
    for package in packages:
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root).with_suffix("")
            found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return found


def _imports(root: Path = ROOT, packages=PACKAGES) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """{module: modules it imports (anywhere in the file, lazy imports included)} and the private names
    imported across modules as (importer, owner, name)."""
    modules = _modules(root, packages)
    edges, private = defaultdict(set), []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(parts + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    owner = full if full in modules else target
                    if owner in modules and owner != name:
                        edges[name].add(owner)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((name, owner, alias.name))
            elif isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names if a.name in modules and a.name != name}
    return edges, private


def _in(module: str, layer) -> bool:
    return any(module == top or (top != "parity" and module.startswith(top + ".")) for top in layer)


def _layer(module: str) -> int:
    """Index of the module's layer in LAYERS; every module must belong to one."""
    found = [i for i, (_, tops) in enumerate(LAYERS) if _in(module, tops)]
    if not found:
        raise AssertionError(f"{module} belongs to no layer: put it in one of parity's layer folders or "
                             "add it to LAYERS")
    return found[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    edges, _ = _imports()
    assert _cycles(edges) == []


def test_no_private_name_is_imported_from_another_module():
    _, private = _imports()
    assert private == []


def test_every_module_belongs_to_a_layer():
    for module in _modules():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own():
    edges, _ = _imports()
    upward = sorted((m, LAYERS[_layer(m)][0], t, LAYERS[_layer(t)][0]) for m, targets in edges.items()
                    for t in targets if _layer(t) > _layer(m))
    assert upward == []


def test_core_imports_only_core():
    edges, _ = _imports()
    upward = [(m, t) for m, targets in edges.items() if _in(m, CORE) for t in targets if not _in(t, CORE)]
    assert upward == []


def test_ports_import_only_the_core_and_themselves():
    edges, _ = _imports()
    for port in ("original_port", "notebook_port"):
        bad = [(m, t) for m, targets in edges.items() if m.split(".")[0] == port for t in targets
               if t.split(".")[0] != port and not _in(t, CORE)]
        assert bad == [], port


def test_the_reader_finds_a_planted_cycle_and_private_import(tmp_path):
    """The checks can fail: a tiny package with a cycle and a private import is caught."""
    pkg = tmp_path / "parity"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _hidden\n")
    (pkg / "b.py").write_text("from . import a\n_hidden = 1\n")
    edges, private = _imports(tmp_path, ("parity",))
    assert _cycles(edges) == [["parity.a", "parity.b"]]
    assert private == [("parity.a", "parity.b", "_hidden")]


def test_the_reader_finds_a_planted_upward_import(tmp_path):
    """A core module importing the runtime is caught, and so is a module outside every layer."""
    for folder in ("parity", "parity/core", "parity/runtime"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "parity/core/coords.py").write_text("from ..runtime import train\n")
    (tmp_path / "parity/runtime/train.py").write_text("")
    (tmp_path / "parity/stray.py").write_text("")
    edges, _ = _imports(tmp_path, ("parity",))
    assert [(m, t) for m, ts in edges.items() for t in ts if _layer(t) > _layer(m)] == \
        [("parity.core.coords", "parity.runtime.train")]
    with pytest.raises(AssertionError, match="parity.stray belongs to no layer"):
        _layer("parity.stray")
