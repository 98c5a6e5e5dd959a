"""The room graph (the checkout's folders and the imports between them), its drawing, and docs/structure.md, which
must be what ``parity structure`` would write now."""

from __future__ import annotations

import re

import pytest

from parity.cli import main
from parity.structure import ROOT, room_faults, room_graph, structure_markdown

PLANTED = {
    "parity/__init__.py": "",
    "parity/core/__init__.py": "",
    "parity/core/a.py": "from ..experiment import y\n",  # upward: the core imports the registry
    "parity/core/ssm/__init__.py": "",
    "parity/core/ssm/k.py": "from .. import a\n",  # inside the core's room: no room edge
    "parity/experiment/__init__.py": "",
    "parity/experiment/x.py": "from ..core import a\nfrom ..core.ssm import k\n",
    "parity/experiment/y.py": "y = 1\n",
}


@pytest.fixture
def planted(tmp_path):
    """A tiny checkout whose core and registry import each other (no module cycle, a room cycle)."""
    for name, text in PLANTED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_room_graph_of_a_planted_checkout(planted):
    graph = room_graph(planted, ("parity",))
    assert [(r.name, len(r.modules)) for r in graph.rooms] == [("parity", 1), ("parity.core", 4),
                                                               ("parity.experiment", 3)]
    assert graph.room("parity.core").modules == ("parity.core", "parity.core.a", "parity.core.ssm",
                                                 "parity.core.ssm.k")  # sub-folders fold into their room
    assert graph.edges == {("parity.core", "parity.experiment"): 1, ("parity.experiment", "parity.core"): 2}
    assert (graph.module_count, graph.module_edges) == (8, 4)


def test_a_planted_room_cycle_and_upward_edge_are_found(planted):
    faults = room_faults(room_graph(planted, ("parity",)))
    assert faults.cycles == [["parity.core", "parity.experiment"]]
    assert faults.upward == [("parity.core", "parity.experiment")]
    text = structure_markdown(room_graph(planted, ("parity",)))
    assert "linkStyle 0 stroke:red" in text and "style parity_core stroke:red" in text
    assert "1 cycle, 1 upward" in text


def test_the_checkout_has_no_room_cycle_and_no_upward_room_edge():
    graph = room_graph()
    assert room_faults(graph) == ([], [])
    assert {r.name for r in graph.rooms} >= {"parity", "parity.core", "original_port", "notebook_port",
                                             "parity.experiment", "parity.structure"}
    assert sum(len(r.modules) for r in graph.rooms) == graph.module_count


def test_parity_structure_writes_the_drawing_and_the_page(tmp_path, capsys):
    assert main(["structure", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d+ modules in \d+ rooms, \d+ import edges \(\d+ between rooms\), 0 cycles, 0 upward",
                        out[0])
    assert out[1:] == [f"wrote {tmp_path / 'structure.png'}", f"wrote {tmp_path / 'structure.md'}"]
    assert (tmp_path / "structure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "structure.md").read_text()
    block = text.split("```mermaid\n", 1)[1].split("```", 1)[0]
    for room in room_graph().rooms:
        assert re.search(rf"^\s+{room.name.replace('.', '_')}\[", block, re.M), room.name
    assert "![" in text and "(structure.png)" in text


def test_the_committed_page_is_what_parity_structure_writes_now():
    committed = (ROOT / "docs" / "structure.md").read_text()
    assert committed == structure_markdown(room_graph()), \
        "docs/structure.md is stale: run `parity structure` and commit docs/structure.md and docs/structure.png"
