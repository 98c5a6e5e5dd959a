"""The layering, read from the imports: core <- ports <- experiment <- data <- evaluation <- runtime
<- reports <- tools (CLI, benchmarks, users' test helpers); nothing imports a layer above its own, there
is no import cycle, and no private name is imported from another module (a concept used in two places
has a public owner). The folders of ``parity/`` are these layers; ``parity.structure`` reads the imports."""

from __future__ import annotations

import pytest

from parity.structure import CORE, LAYERS, cycles, imports, in_layer, layer_of, modules, upward


def test_no_import_cycles():
    edges, _ = imports()
    assert cycles(edges) == []


def test_no_private_name_is_imported_from_another_module():
    _, private = imports()
    assert private == []


def test_every_module_belongs_to_a_layer():
    for module in modules():
        layer_of(module)


def test_no_module_imports_a_layer_above_its_own():
    edges, _ = imports()
    assert [(m, LAYERS[layer_of(m)][0], t, LAYERS[layer_of(t)][0]) for m, t in upward(edges)] == []


def test_core_imports_only_core():
    edges, _ = imports()
    outside = [(m, t) for m, targets in edges.items() if in_layer(m, CORE) for t in targets if not in_layer(t, CORE)]
    assert outside == []


def test_ports_import_only_the_core_and_themselves():
    edges, _ = imports()
    for port in ("original_port", "notebook_port"):
        bad = [(m, t) for m, targets in edges.items() if m.split(".")[0] == port for t in targets
               if t.split(".")[0] != port and not in_layer(t, CORE)]
        assert bad == [], port


def test_the_reader_finds_a_planted_cycle_and_private_import(tmp_path):
    """The checks can fail: a tiny package with a cycle and a private import is caught."""
    pkg = tmp_path / "parity"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _hidden\n")
    (pkg / "b.py").write_text("from . import a\n_hidden = 1\n")
    edges, private = imports(tmp_path, ("parity",))
    assert cycles(edges) == [["parity.a", "parity.b"]]
    assert private == [("parity.a", "parity.b", "_hidden")]


def test_the_reader_finds_a_planted_upward_import(tmp_path):
    """A core module importing the runtime is caught, and so is a module outside every layer."""
    for folder in ("parity", "parity/core", "parity/runtime"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "parity/core/coords.py").write_text("from ..runtime import train\n")
    (tmp_path / "parity/runtime/train.py").write_text("")
    (tmp_path / "parity/stray.py").write_text("")
    edges, _ = imports(tmp_path, ("parity",))
    assert upward(edges) == [("parity.core.coords", "parity.runtime.train")]
    with pytest.raises(AssertionError, match="parity.stray belongs to no layer"):
        layer_of("parity.stray")
