"""Where do two models first disagree? Forward hooks on every submodule of both, one run on the same
inputs, outputs paired by module name (or an explicit mapping) and compared in execution order.

Hooks fire when a module's forward returns, so children report before their parents: the first
differing output is the deepest place the divergence shows. When that is a leaf, the leaf changed
(or its input did, from code outside any module); when it is not, every submodule of it matched and
the divergence comes from its own forward code.

``diff_models`` is ``parity diff-models``: two checkpoints or configuration names, one markdown table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.checkpoints import RUN_MODEL, is_run_checkpoint, load_state_dict_strict, read_checkpoint
from ..core.coords import make_grid
from ..core.errors import ParityError
from ..experiment.build import build_model
from ..experiment.configfile import load_yaml
from ..experiment.differences import named_config
from ..experiment.presets import preset as get_preset
from .compare import as_inputs, fmt, markdown_table, model_calls, tensor_error, tensors_close

OUTPUT = "(output)"  # the row of the call's own result


@dataclass
class Row:
    """One output of one module call, a's against b's."""

    name: str  # module name in a
    other: str  # module name in b (differs only through a mapping)
    call: int  # 0-based index among this module's calls
    calls: int  # how many times a called the module
    shape: tuple  # a's output shape
    other_shape: tuple  # b's
    max_abs: float
    rel: float  # max abs err / max |b|
    ok: bool
    leaf: bool

    @property
    def label(self) -> str:
        name = self.name if self.other == self.name else f"{self.name} -> {self.other}"
        return name if self.calls == 1 else f"{name} (call {self.call + 1} of {self.calls})"

    @property
    def shapes(self) -> str:
        return str(self.shape) if self.shape == self.other_shape else f"{self.shape} vs {self.other_shape}"

    def errors(self) -> str:
        if self.shape != self.other_shape:
            return f"shapes differ, {self.shape} vs {self.other_shape}"
        return f"max abs err {fmt(self.max_abs)}, rel err {fmt(self.rel)}"


@dataclass
class Divergence:
    """Per-module comparison of two runs; ``first`` names where they start to differ (None: nowhere)."""

    rows: list[Row]  # in a's execution order
    output: Row | None  # the call's result (first tensor of it)
    rtol: float
    atol: float
    only_a: list[str] = field(default_factory=list)  # modules of a that ran but have no partner in b
    only_b: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    module_names: frozenset = frozenset()  # every module name of a, for the parents

    @property
    def first_row(self) -> Row | None:
        """The first module output beyond tolerance; the call's result when every module matched."""
        row = next((r for r in self.rows if not r.ok), None)
        if row is None and self.output is not None and not self.output.ok:
            return self.output
        return row

    @property
    def first(self) -> str | None:
        row = self.first_row
        return None if row is None else row.label

    @property
    def parents(self) -> list[str]:
        """The modules containing ``first``, innermost first."""
        row = self.first_row
        if row is None or row is self.output:
            return []
        parts = row.name.split(".")
        prefixes = (".".join(parts[:k]) for k in range(len(parts) - 1, 0, -1))
        return [p for p in prefixes if p in self.module_names]

    @property
    def matched(self) -> bool:
        return self.first_row is None

    def summary(self) -> str:
        """One sentence: where the first divergence is, or that there is none."""
        row = self.first_row
        if row is None:
            return (f"no divergence: {len(self.rows)} module outputs and the result agree within "
                    f"rtol={self.rtol:g}, atol={self.atol:g}")
        if row is self.output:
            return ("every module output agrees, the result does not: the difference is in code outside the "
                    f"modules ({row.errors()})")
        inside = f", inside {' < '.join(f'`{p}`' for p in self.parents)}" if self.parents else ""
        return f"first divergence at `{row.label}` ({self._kind(row)}{inside}): {row.errors()}"

    def _kind(self, row: Row) -> str:
        """Why the first differing module is the place: a leaf, or a parent whose parts all agree."""
        if row.leaf:
            return "leaf"
        unpaired = [n for n in self.only_a if n.startswith(row.name + ".")]
        if unpaired:
            return f"not a leaf; {len(unpaired)} of its submodules have no partner in b"
        return "not a leaf: every submodule of it agrees, so its own forward code differs"

    def to_markdown(self, title: str = "Divergence", preamble: str = "") -> str:
        """A heading, the summary, and the table of every compared output in execution order;
        ``preamble``: a paragraph under the heading (what was compared)."""
        first = self.first_row
        table = markdown_table(
            ["#", "module", "shape", "max abs err", "rel err", ""],
            [[k, f"`{r.label}`", r.shapes, fmt(r.max_abs), fmt(r.rel), _status(r, first)]
             for k, r in enumerate([*self.rows, *([self.output] if self.output else [])], start=1)])
        differ = sum(not r.ok for r in self.rows)
        parts = [f"# {title}", "", *([preamble, ""] if preamble else []), self.summary() + ".", "",
                 f"{len(self.rows)} module outputs compared in execution order, {differ} beyond tolerance "
                 f"(|a - b| <= atol + rtol |b|, rtol={self.rtol:g}, atol={self.atol:g}); rel err = max abs err "
                 "/ max |b|.", "", table]
        if self.only_a or self.only_b or self.notes:
            parts += ["", "Not compared:", ""]
            parts += [f"- only in a ({len(self.only_a)}): {_names(self.only_a)}"] if self.only_a else []
            parts += [f"- only in b ({len(self.only_b)}): {_names(self.only_b)}"] if self.only_b else []
            if len(self.only_a) > len(self.rows):
                parts += ["- most modules have no partner: the models are built differently; pair them with "
                          "`localise(..., mapping={name_a: name_b})`"]
            parts += [f"- {note}" for note in self.notes]
        return "\n".join(parts) + "\n"


def _names(names: list[str], shown: int = 12) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"`{n}`" for n in names[:shown]) + more


def _status(row: Row, first: Row | None) -> str:
    if row is first:
        return "**first**"
    return "ok" if row.ok else "differs"


# ---------------------------------------------------------------- recording

def first_tensor(output) -> torch.Tensor | None:
    """The tensor a module returned, or the first one inside a tuple/list/dict; None if none."""
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return next((t for t in (first_tensor(v) for v in values) if t is not None), None)


def _record(model: torch.nn.Module, call, inputs) -> tuple[list[tuple[str, torch.Tensor]], torch.Tensor | None]:
    """Run the model once; (module name, output) in the order the modules returned, and the result."""
    records: list[tuple[str, torch.Tensor]] = []

    def hook_for(name):
        def hook(module, args, output):
            tensor = first_tensor(output)
            if tensor is not None:  # a clone: a later in-place op must not change what was recorded
                records.append((name, tensor.detach().clone()))
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            result = first_tensor(call(model, *inputs))
    finally:
        for handle in handles:
            handle.remove()
    return records, result


def _indexed(records) -> dict[tuple[str, int], torch.Tensor]:
    """{(name, k): the k-th output of that module}, in execution order."""
    counts: dict[str, int] = {}
    out = {}
    for name, tensor in records:
        k = counts.get(name, 0)
        counts[name] = k + 1
        out[(name, k)] = tensor
    return out


def _call_counts(records) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, _ in records:
        counts[name] = counts.get(name, 0) + 1
    return counts


def _check_mapping(mapping: dict, a: torch.nn.Module, b: torch.nn.Module) -> None:
    names_a, names_b = dict(a.named_modules()), dict(b.named_modules())
    bad = [f"{k!r} (not in a)" for k in mapping if k not in names_a]
    bad += [f"{v!r} (not in b)" for v in mapping.values() if v not in names_b]
    if bad:
        raise ValueError(f"mapping names unknown modules: {', '.join(bad)}")


# ---------------------------------------------------------------- localise

def localise(a: torch.nn.Module, b: torch.nn.Module, inputs, call=None, mapping: dict | None = None,
             rtol: float = 1e-5, atol: float = 1e-6) -> Divergence:
    """Run a and b on the same inputs with every submodule hooked and compare the outputs module by
    module. Modules pair by name where both have it, or through ``mapping`` {name in a: name in b};
    a module called several times pairs call by call; outputs without a tensor are skipped, and of a
    tuple the first tensor counts. ``call``: as in ``assert_models_match`` (None: ``model(*inputs)``;
    ``call(model, *inputs)``; or a pair (call_a, call_b)). The models run as they are (train/eval
    mode untouched), under no_grad."""
    mapping = dict(mapping or {})
    _check_mapping(mapping, a, b)
    call_a, call_b = model_calls(call)
    inputs = as_inputs(inputs)
    records_a, result_a = _record(a, call_a, inputs)
    records_b, result_b = _record(b, call_b, inputs)
    leaves = {n for n, m in a.named_modules() if next(m.children(), None) is None}
    divergence = _pair(records_a, records_b, mapping, leaves, rtol, atol)
    if result_a is not None and result_b is not None:
        divergence.output = _row(OUTPUT, OUTPUT, 0, 1, result_a, result_b, False, rtol, atol)
    divergence.module_names = frozenset(n for n, _ in a.named_modules() if n)
    return divergence


def _pair(records_a, records_b, mapping: dict, leaves: set, rtol: float, atol: float) -> Divergence:
    """Rows for every call of a's modules that b has too (by name or mapping); the rest listed."""
    outputs_b = _indexed(records_b)
    calls_a, calls_b = _call_counts(records_a), _call_counts(records_b)
    rows, only_a, paired_b = [], [], set()
    for (name, k), tensor in _indexed(records_a).items():
        other = mapping.get(name, name)
        if (other, k) not in outputs_b:
            if name not in only_a:
                only_a.append(name)
            continue
        paired_b.add(other)
        rows.append(_row(name, other, k, calls_a[name], tensor, outputs_b[(other, k)], name in leaves, rtol, atol))
    notes = []
    for name, count in calls_a.items():
        other = mapping.get(name, name)
        if other in calls_b and calls_b[other] != count:  # the surplus calls stay unpaired
            notes.append(f"`{name}` ran {count} times in a, `{other}` {calls_b[other]} times in b")
    only_b = [n for n in calls_b if n not in paired_b]
    return Divergence(rows, None, rtol, atol, only_a, only_b, notes)


def _row(name, other, k, calls, a: torch.Tensor, b: torch.Tensor, leaf, rtol, atol) -> Row:
    max_abs, rel = tensor_error(a, b)
    return Row(name, other, k, calls, tuple(a.shape), tuple(b.shape), max_abs, rel, tensors_close(a, b, rtol, atol),
               leaf)


# ---------------------------------------------------------------- models from checkpoints and names

@dataclass
class LoadedModel:
    """A model with its weights, from a checkpoint file or a configuration name."""

    model: torch.nn.Module
    kind: str  # parity run | trans-inr checkpoint | notebook state dict | configuration
    source: str
    config: object | None = None  # the ExperimentConfig where known

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images the model encodes."""
        m = self.model
        if hasattr(m, "img_size"):  # the notebook's model
            return (m.img_size, m.img_size)
        if hasattr(m, "tokenizer"):  # the original's
            return tuple(m.tokenizer.input_size)
        raise ParityError(f"{self.source}: cannot tell the image size of a {type(m).__name__}")


def load_model(source: str, seed: int = 0, preset: str | None = None) -> LoadedModel:
    """A checkpoint path (a `parity train` checkpoint.pt with config.yaml beside it, a trans-inr
    checkpoint, or a bare notebook state dict for ``NOTEBOOK_CIFAR_KWARGS``) or a configuration name
    ('notebook', 'original', 'notebook+<id>', 'original-<id>'; built under ``seed``, at the scale of
    a matrix ``preset`` such as 'smoke' if given, else the sources')."""
    if _looks_like_path(source):
        return load_checkpoint_model(source)

    cfg = named_config(source, get_preset(preset).baselines() if preset else None)
    return LoadedModel(build_model(cfg, seed=seed), "configuration", source, cfg)


def _looks_like_path(source: str) -> bool:
    return Path(source).exists() or "/" in source or "\\" in source or source.endswith((".pt", ".pth", ".ckpt"))


def load_checkpoint_model(path) -> LoadedModel:
    """Recognise the checkpoint's layout, build the model it needs and load its weights strictly."""
    path = str(path)
    state = read_checkpoint(path)
    if is_run_checkpoint(state):
        return _parity_run(path, state)
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "sd" in state["model"]:
        import original_port

        ckpt = original_port.load_checkpoint(path)  # the port's own reader (a second read)
        return LoadedModel(ckpt.model, "trans-inr checkpoint", path)
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return _notebook_state_dict(path, state)
    raise ParityError(f"{path} is neither a parity run checkpoint, a trans-inr checkpoint nor a state dict: "
                      "pass one of those, or a configuration name such as 'notebook'")


def _parity_run(path: str, state: dict) -> LoadedModel:
    config_path = Path(path).parent / "config.yaml"
    if not config_path.is_file():
        raise ParityError(f"{Path(path).parent} has no config.yaml next to the checkpoint: pass the checkpoint.pt "
                          "of a `parity train` run folder")
    cfg = load_yaml(config_path)
    model = build_model(cfg)
    load_state_dict_strict(model, state[RUN_MODEL], source=path)
    return LoadedModel(model, "parity run", path, cfg)


def _notebook_state_dict(path: str, state: dict) -> LoadedModel:
    import notebook_port

    from ..core.checkpoints import load_state_dict_strict

    model = notebook_port.MambaGINR_CIFAR(**notebook_port.NOTEBOOK_CIFAR_KWARGS)
    load_state_dict_strict(model, state, source=f"{path} (read as a bare notebook state dict for "
                                                "NOTEBOOK_CIFAR_KWARGS)")
    return LoadedModel(model, "notebook state dict", path)


# ---------------------------------------------------------------- parity diff-models

BATCH = 2  # images in the fixed batch


def decode_on_centres(model, images: torch.Tensor) -> torch.Tensor:
    """Encode, then decode on the pixel-centre grid of the images' own size: (B, H*W, 3)."""
    H, W = images.shape[-2:]
    coords = make_grid(H, W, "centres", device=images.device).unsqueeze(0).expand(images.shape[0], -1, -1)
    return model.decode(model.encode(images), coords)


def fixed_images(size: tuple[int, int], seed: int, batch: int = BATCH) -> torch.Tensor:
    """A seeded uniform random batch (B, 3, H, W) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=generator)


def diff_models(source_a: str, source_b: str, rtol: float = 1e-5, atol: float = 1e-6, seed: int = 0,
                preset: str | None = None) -> tuple[Divergence, str]:
    """Localise where model B departs from model A on a fixed random batch; (divergence, markdown).
    ``preset`` scales the models built from configuration names (see ``load_model``)."""
    if not (rtol >= 0 and atol >= 0):
        raise ParityError(f"--rtol and --atol must not be negative, got {rtol:g} and {atol:g}")
    a, b = load_model(source_a, seed, preset), load_model(source_b, seed, preset)
    if a.image_size != b.image_size:
        raise ParityError(f"{source_a} takes {_size(a.image_size)} images, {source_b} {_size(b.image_size)}: "
                          "compare models of the same image size")
    for loaded in (a, b):
        loaded.model.eval()
    divergence = localise(a.model, b.model, (fixed_images(a.image_size, seed),), call=decode_on_centres,
                          rtol=rtol, atol=atol)
    title = f"{source_a} vs {source_b}"
    preamble = (f"A: {a.kind} `{source_a}`; B: {b.kind} `{source_b}`. Inputs: {BATCH} random images "
              f"{_size(a.image_size)} (seed {seed}), decoded on the pixel-centre grid.")
    return divergence, divergence.to_markdown(title, preamble)


def _size(size) -> str:
    return f"{size[0]}x{size[1]}"
