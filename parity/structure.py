"""The checkout's structure, read from its imports.

The layers, lowest first: core <- ports <- experiment <- data <- evaluation <- runtime <- reports <- tools (CLI,
benchmarks, users' test helpers, this module). A module imports its own layer and the layers below it, never one
above; there is no import cycle; no private name is imported from another module (a concept used in two places has
a public owner). ``tests/parity/test_layers.py`` holds the checkout to these rules.

The folders of ``parity/`` are the layers' rooms: ``room_graph`` collapses the module graph to one node per folder,
and ``render_structure`` draws it (``parity structure`` -> docs/structure.png and docs/structure.md).
"""

from __future__ import annotations

import ast
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("parity", "original_port", "notebook_port")
# Lowest first; a module may import its own layer and the layers below it. ``parity`` itself (the package's
# __init__) is part of the core: the ports load it. Each name is a room: a folder (or a lone module) and everything
# under it, except ``parity``, which is the __init__ alone.
LAYERS = (
    ("core", ("parity", "parity.core")),
    ("ports", ("original_port", "notebook_port")),
    ("experiment", ("parity.experiment",)),
    ("data", ("parity.data",)),
    ("evaluation", ("parity.evaluation",)),
    ("runtime", ("parity.runtime",)),
    ("reports", ("parity.report",)),
    ("tools", ("parity.cli", "parity.bench", "parity.testing", "parity.pytest_plugin", "parity.golden",
               "parity.structure")),
)
CORE = LAYERS[0][1]
# How a room is named in the drawing where its folder's name does not say what it holds.
ROOM_LABELS = {
    "parity": "parity (__init__)",
    "parity.experiment": "experiment (registry)",
}


def modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """{dotted module name: its file} for every .py file under the packages; a package is its __init__."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            found[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return found


def _import_target(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from X import ...`` names, relative imports resolved against the importer's package."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imports(root: Path = ROOT, packages=PACKAGES) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """{module: modules it imports (anywhere in the file, lazy imports included)} and the private names imported
    across modules as (importer, owner, name)."""
    found = modules(root, packages)
    edges, private = defaultdict(set), []
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _import_target(node, package)
                for alias in node.names:
                    # ``from . import a`` imports the module a; ``from .b import f`` imports from the module b.
                    full = f"{target}.{alias.name}"
                    owner = full if full in found else target
                    if owner in found and owner != name:
                        edges[name].add(owner)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            private.append((name, owner, alias.name))
            elif isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names if a.name in found and a.name != name}
    return edges, private


def in_layer(module: str, tops) -> bool:
    """Whether the module is one of ``tops`` or under one of them (``parity`` holds only the __init__)."""
    return any(module == top or (top != "parity" and module.startswith(top + ".")) for top in tops)


def layer_of(module: str) -> int:
    """Index of the module's layer in LAYERS; every module must belong to one."""
    found = [i for i, (_, tops) in enumerate(LAYERS) if in_layer(module, tops)]
    if not found:
        raise AssertionError(f"{module} belongs to no layer: put it in one of parity's layer folders or "
                             "add it to LAYERS")
    return found[0]


def room_of(module: str) -> str:
    """The room (a name of LAYERS) that holds the module."""
    tops = LAYERS[layer_of(module)][1]
    return next(top for top in tops if in_layer(module, (top,)))


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted, in a stable order."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(out)


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The (importer, imported) pairs where the imported module sits in a higher layer than its importer."""
    return sorted((m, t) for m, targets in edges.items() for t in targets if layer_of(t) > layer_of(m))


@dataclass(frozen=True)
class Room:
    name: str  # a name of LAYERS: parity.core, original_port, ...
    layer: int  # index in LAYERS
    modules: tuple[str, ...]

    @property
    def label(self) -> str:
        return ROOM_LABELS.get(self.name, self.name.removeprefix("parity."))


@dataclass(frozen=True)
class RoomGraph:
    """The module graph collapsed to rooms: ``edges[(a, b)]`` counts the (importing module, imported module) pairs
    from room a into room b (a != b); ``module_edges`` counts every such pair, those inside a room included."""

    rooms: tuple[Room, ...]  # by layer, then in LAYERS' order; only rooms holding a module
    edges: dict[tuple[str, str], int]
    module_count: int
    module_edges: int

    def room(self, name: str) -> Room:
        return next(r for r in self.rooms if r.name == name)


class Faults(NamedTuple):
    cycles: list[list[str]]  # rooms that import each other round a circle
    upward: list[tuple[str, str]]  # (importer, imported) rooms, the imported one in a higher layer


def room_graph(root: Path = ROOT, packages=PACKAGES) -> RoomGraph:
    """The rooms holding the packages' modules and the counted imports between them."""
    found = modules(root, packages)
    edges, _ = imports(root, packages)
    members = defaultdict(list)
    for module in found:
        members[room_of(module)].append(module)
    order = [top for _, tops in LAYERS for top in tops]  # a room without a module (golden: data files) is left out
    rooms = tuple(Room(name, layer_of(name), tuple(sorted(members[name]))) for name in order if members[name])
    counts = Counter((room_of(m), room_of(t)) for m, targets in edges.items() for t in targets)
    room_edges = {pair: n for pair, n in sorted(counts.items()) if pair[0] != pair[1]}
    return RoomGraph(rooms, room_edges, len(found), sum(len(t) for t in edges.values()))


def room_faults(graph: RoomGraph) -> Faults:
    """Room-level cycles and upward edges; both are empty in a checkout that keeps to its layers."""
    adjacency = defaultdict(set)
    for a, b in graph.edges:
        adjacency[a].add(b)
    layer = {r.name: r.layer for r in graph.rooms}
    return Faults(cycles(adjacency), sorted(pair for pair in graph.edges if layer[pair[1]] > layer[pair[0]]))


def summary(graph: RoomGraph) -> str:
    """One line: the counts the drawing's title and ``parity structure`` show."""
    faults = room_faults(graph)
    return (f"{graph.module_count} modules in {len(graph.rooms)} rooms, {graph.module_edges} import edges "
            f"({sum(graph.edges.values())} between rooms), {_plural(len(faults.cycles), 'cycle')}, "
            f"{len(faults.upward)} upward")


def _node_id(room: str) -> str:
    return room.replace(".", "_")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def mermaid(graph: RoomGraph) -> str:
    """The room graph as a mermaid flowchart: one subgraph per layer, importer --> imported, faults in red."""
    faults = room_faults(graph)
    in_cycle = {room for cycle in faults.cycles for room in cycle}
    lines = ["flowchart TD"]
    for layer in sorted({r.layer for r in graph.rooms}, reverse=True):  # the top layer first: it reads downwards
        name = LAYERS[layer][0]
        lines.append(f'  subgraph layer_{name}["{name}"]')
        for room in (r for r in graph.rooms if r.layer == layer):
            lines.append(f'    {_node_id(room.name)}["{room.label}<br/>{_plural(len(room.modules), "module")}"]')
        lines.append("  end")
    for i, ((a, b), n) in enumerate(graph.edges.items()):
        lines.append(f"  {_node_id(a)} -->|{n}| {_node_id(b)}")
        if (a, b) in faults.upward:
            lines.append(f"  linkStyle {i} stroke:red")
    lines += [f"  style {_node_id(room)} stroke:red,stroke-width:3px" for room in sorted(in_cycle)]
    return "\n".join(lines)


def structure_markdown(graph: RoomGraph, png: str = "structure.png") -> str:
    """docs/structure.md: the layers, the rule, the drawing, the same graph in mermaid and the rooms'
    module counts (no line counts: the page changes only when the structure does)."""
    layers = "\n".join(f"{i + 1}. **{name}**: " + ", ".join(f"`{top}`" for top in tops)
                       for i, (name, tops) in enumerate(LAYERS))
    rooms = "\n".join(f"| `{r.name}` | {LAYERS[r.layer][0]} | {len(r.modules)} |" for r in graph.rooms)
    return f"""# The checkout's structure

*Generated by `parity structure` from the imports of {", ".join(f"`{p}/`" for p in PACKAGES)}; do not edit it by
hand. `tests/parity/test_structure.py` fails when it no longer matches the code: run `parity structure` again.*

{summary(graph)}.

## The layers

Lowest first. Each name is a room: a folder (or a lone module) with everything under it; `parity` is the package's
`__init__` alone. Rooms without a module (`parity.golden` holds data files only) are not drawn.

{layers}

## The rule

A module imports modules of its own layer and of the layers below it, never one above; no modules import each
other round a circle; no private name (`_name`) is imported from another module, so a concept used in two places
has a public owner. `tests/parity/test_layers.py` reads every import, lazy ones inside functions included, and
fails on any breach. An upward import would show below as a red arrow, rooms importing each other round a circle
as red outlines.

## The rooms and their imports

An arrow runs from the importing room to the imported one; its number counts the pairs (importing module, imported
module) behind it.

![The rooms of the checkout by layer, lowest at the bottom, with the imports between them]({png})

```mermaid
{mermaid(graph)}
```

| room | layer | modules |
|---|---|---:|
{rooms}
"""


# The drawing's geometry, in data units: the canvas's width, the rows' spacing and a box's size.
_WIDTH, _ROW, _BOX_W, _BOX_H = 17.0, 1.9, 2.7, 0.9
# Each room's column, chosen (by a search over columns, then by eye) so that every arrow, bent where it must be, misses
# the boxes it passes and few arrows cross. A row holding a room not named here is spread evenly instead.
_COLUMNS = {
    "parity.cli": 1.7, "parity.bench": 5.1, "parity.testing": 8.5, "parity.pytest_plugin": 11.9,
    "parity.structure": 15.3,
    "parity.report": 15.6, "parity.runtime": 8.3, "parity.evaluation": 2.9, "parity.data": 1.4,
    "parity.experiment": 12.8, "original_port": 5.5, "notebook_port": 15.6, "parity": 1.4, "parity.core": 9.7,
}
# One colour per importing room, so that its arrows can be followed; red is kept for faults.
_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e",
            "#393b79", "#637939", "#8c6d31", "#7b4173", "#3182bd")
# An arrow's bend (matplotlib's arc3 rad), the straightest first: the first that misses every other box is drawn.
_BENDS = (0.0, 0.12, -0.12, 0.25, -0.25, 0.4, -0.4, 0.55, -0.55)
_LABEL_AT = (0.5, 0.4, 0.6, 0.3, 0.7, 0.35, 0.65, 0.25, 0.75, 0.45, 0.55, 0.2, 0.8)  # along the arrow


def _positions(graph: RoomGraph) -> dict[str, tuple[float, float]]:
    """Box centres: one row per layer, lowest at the bottom; each room in its column of _COLUMNS."""
    out = {}
    for row, layer in enumerate(sorted({r.layer for r in graph.rooms})):
        rooms = [r.name for r in graph.rooms if r.layer == layer]
        known, step = all(r in _COLUMNS for r in rooms), _WIDTH / len(rooms)
        for i, room in enumerate(rooms):
            out[room] = (_COLUMNS[room] if known else step * (i + 0.5), row * _ROW)
    return out


def _in_box(point, centre, pad: float = 0.12) -> bool:
    return abs(point[0] - centre[0]) < _BOX_W / 2 + pad and abs(point[1] - centre[1]) < _BOX_H / 2 + pad


def _bezier(start, control, end, t: float) -> tuple[float, float]:
    return tuple((1 - t) ** 2 * s + 2 * t * (1 - t) * c + t ** 2 * e for s, c, e in zip(start, control, end))


def _route(ax, start, end, others, bends=_BENDS) -> tuple[float, tuple[float, float]]:
    """The bend of the arrow from ``start`` to ``end`` (box centres) and its curve's control point in data units:
    the first of ``bends`` whose curve misses the ``others`` boxes, else the first. arc3 bends in display units, so
    the control point is found there and brought back."""
    to_display, to_data = ax.transData.transform, ax.transData.inverted().transform
    (x1, y1), (x2, y2) = to_display(start), to_display(end)
    routes = []
    for rad in bends:
        control = tuple(to_data(((x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1))))
        curve = [_bezier(start, control, end, i / 40) for i in range(41)]
        if not any(_in_box(p, c) for p in curve for c in others):
            return rad, control
        routes.append((rad, control))
    return routes[0]  # no bend misses every box: the straightest, through a box


def _label_spot(start, control, end, boxes, taken: list) -> tuple[float, float]:
    """A point on the arrow for its count: the first clear of the boxes and of the counts already placed, else the
    first clear of the counts."""
    spots = [_bezier(start, control, end, t) for t in _LABEL_AT]
    apart = [s for s in spots if all(abs(s[0] - x) > 0.42 or abs(s[1] - y) > 0.28 for x, y in taken)]
    clear = [s for s in apart if not any(_in_box(s, c, 0.4) for c in boxes)]
    spot = (clear or apart or spots)[0]
    taken.append(spot)
    return spot


def _draw_rooms(ax, graph: RoomGraph, where, in_cycle) -> dict:
    """The layers' bands and the rooms' boxes; returns the boxes (arrows are clipped to them)."""
    from matplotlib.patches import FancyBboxPatch

    for row, layer in enumerate(sorted({r.layer for r in graph.rooms})):
        ax.axhspan(row * _ROW - _ROW / 2, row * _ROW + _ROW / 2, color="#f4f4f4" if row % 2 else "white", zorder=0)
        ax.text(-1.5, row * _ROW, LAYERS[layer][0], fontsize=12, weight="bold", va="center", color="#555555")
    boxes = {}
    for room in graph.rooms:
        x, y = where[room.name]
        fault = room.name in in_cycle
        boxes[room.name] = ax.add_patch(FancyBboxPatch(
            (x - _BOX_W / 2, y - _BOX_H / 2), _BOX_W, _BOX_H, boxstyle="round,pad=0.02", facecolor="white",
            edgecolor="red" if fault else "#333333", lw=3 if fault else 1.3, zorder=3))
        ax.text(x, y + 0.12, room.label, ha="center", va="center", fontsize=11, weight="bold", zorder=4)
        ax.text(x, y - 0.22, _plural(len(room.modules), "module"), ha="center", va="center", fontsize=9,
                color="#444444", zorder=4)
    return boxes


def _draw(graph: RoomGraph) -> bytes:
    """The drawing as PNG: boxes by layer, arrows importer -> imported with their counts, faults in red."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch
    from PIL import Image  # matplotlib's own dependency

    faults = room_faults(graph)
    where = _positions(graph)
    rows = len({r.layer for r in graph.rooms})
    fig, ax = plt.subplots(figsize=(16, 2 + 1.45 * rows))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.9 / (2 + 1.45 * rows))  # fixed: see _route
    ax.set_xlim(-1.6, _WIDTH + 0.2)
    ax.set_ylim(-0.8, (rows - 1) * _ROW + 0.8)
    ax.axis("off")
    boxes = _draw_rooms(ax, graph, where, {room for cycle in faults.cycles for room in cycle})
    colour = {room.name: _PALETTE[i % len(_PALETTE)] for i, room in enumerate(graph.rooms)}
    taken = []
    for (a, b), n in graph.edges.items():
        others = [where[r] for r in where if r not in (a, b)]
        # Two rooms importing each other: both arrows bend, each to its own side (a bend is relative to the direction).
        rad, control = _route(ax, where[a], where[b], others, _BENDS[1:] if (b, a) in graph.edges else _BENDS)
        c, up = ("red", True) if (a, b) in faults.upward else (colour[a], False)
        ax.add_patch(FancyArrowPatch(where[a], where[b], patchA=boxes[a], patchB=boxes[b], arrowstyle="-|>",
                                     connectionstyle=f"arc3,rad={rad}", mutation_scale=14, color=c,
                                     lw=2.2 if up else 1.1, alpha=0.9, zorder=2))
        x, y = _label_spot(where[a], control, where[b], list(where.values()), taken)
        ax.text(x, y, str(n), ha="center", va="center", fontsize=9, color=c, weight="bold", zorder=5,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": c, "lw": 0.6})
    ax.set_title(f"{summary(graph)}\narrows run from the importing room to the imported one, numbered by "
                 "module-to-module imports; red: an upward import or rooms importing round a circle", fontsize=12)
    from .core.store import figure_png  # here: parity.core.store loads torch

    drawn, out = io.BytesIO(figure_png(fig, dpi=100)), io.BytesIO()
    plt.close(fig)
    # 256 colours (a third of the bytes, the same to the eye), and no version stamp in the file.
    Image.open(drawn).convert("RGB").quantize(256).save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_structure(out_dir=Path("docs"), root: Path = ROOT, packages=PACKAGES,
                     graph: RoomGraph | None = None) -> tuple[Path, Path]:
    """Write OUT_DIR/structure.png and OUT_DIR/structure.md of ``graph`` (default: the room graph of the packages
    under ``root``); returns their paths. The same code gives the same markdown (sorted order, no dates), and the
    same PNG with the same matplotlib and fonts."""
    from .core.store import atomic_write_bytes, atomic_write_text  # here: parity.core.store loads torch (a second)

    graph = graph or room_graph(root, packages)
    out_dir = Path(out_dir)
    png, md = out_dir / "structure.png", out_dir / "structure.md"
    atomic_write_bytes(png, _draw(graph))
    atomic_write_text(md, structure_markdown(graph, png.name))
    return png, md
