"""The localiser names the first diverging module (a changed weight, a changed activation, a swapped
coordinate convention) and ``parity diff-models`` does it from checkpoints and names."""

import copy

import pytest
import torch
import yaml

import notebook_port
import original_port
from parity.cli import main
from parity.core.coords import make_grid
from parity.core.errors import ParityError
from parity.evaluation.diagnose import OUTPUT, diff_models, load_model, localise
from parity.experiment.build import build_model, transinr_spec


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def on(convention):
    """Encode, then decode on a 16x16 grid of ``convention``."""
    def call(model, x):
        return model.decode(model.encode(x), make_grid(16, 16, convention).expand(x.shape[0], -1, -1))
    return call


CENTRES = on("centres")


# ---------------------------------------------------------------- localise on the smoke models

def test_matching_models_have_no_divergence(notebook, images):
    d = localise(notebook, copy.deepcopy(notebook), (images,), call=CENTRES)
    assert d.matched and d.first is None and d.parents == []
    assert len(d.rows) > 30 and all(r.ok and r.max_abs == 0 for r in d.rows)
    assert d.summary().startswith("no divergence")


def test_a_changed_weight_is_found_at_its_module(notebook, images):
    changed = copy.deepcopy(notebook)
    with torch.no_grad():
        changed.modulation_net.coord_encoder[2].weight[0, 0] += 0.5
    d = localise(notebook, changed, (images,), call=CENTRES)
    assert d.first == "modulation_net.coord_encoder.2" and d.first_row.leaf
    assert d.parents == ["modulation_net.coord_encoder", "modulation_net"]
    assert all(r.ok for r in d.rows[:d.rows.index(d.first_row)])  # everything before it agrees
    markdown = d.to_markdown()
    assert "first divergence at `modulation_net.coord_encoder.2` (leaf, inside `modulation_net.coord_encoder` < " \
           "`modulation_net`)" in markdown
    width = notebook.modulation_net.coord_encoder[2].out_features
    assert f"| `modulation_net.coord_encoder.2` | (2, 256, {width}) |" in markdown and "**first**" in markdown


def test_a_changed_activation_called_several_times_is_found_at_its_call(smoke, images):
    original = build_model(smoke[1]).eval()
    changed = copy.deepcopy(original)
    changed.hyponet.act = torch.nn.GELU()  # the LAINR decoder applies one activation module at every layer
    d = localise(original, changed, (images,), call=CENTRES)
    assert d.first_row.name == "hyponet.act" and d.first_row.call == 0 and d.first_row.calls > 1
    assert d.first == f"hyponet.act (call 1 of {d.first_row.calls})" and d.parents == ["hyponet"]


def test_a_swapped_coordinate_convention_is_found_where_coordinates_enter(smoke, images):
    """Two configurations differing only in train.coords: same weights, each decoded on its own grid."""
    cfg_a, cfg_b = smoke[0].copy(), smoke[0].copy()
    cfg_b.train.coords = "centres"
    a, b = build_model(cfg_a).eval(), build_model(cfg_b).eval()
    d = localise(a, b, (images,), call=(on(cfg_a.train.coords), on(cfg_b.train.coords)))
    assert d.first == "modulation_net.coord_encoder.0"  # the first module that reads the coordinates
    assert all(r.ok for r in d.rows if r.name.startswith(("patch_embed", "encoder")))


def test_a_mapping_pairs_differently_named_modules(notebook, images):
    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

    changed = copy.deepcopy(notebook)
    changed.hyponet.decoder[3] = torch.nn.GELU()
    mapping = {name: f"inner.{name}" for name, _ in notebook.named_modules() if name}
    d = localise(notebook, Wrapped(changed), (images,), call=(CENTRES, lambda w, x: CENTRES(w.inner, x)),
                 mapping=mapping)
    assert d.first == "hyponet.decoder.3 -> inner.hyponet.decoder.3" and d.only_a == d.only_b == []
    with pytest.raises(ValueError, match="'nope' \\(not in a\\)"):
        localise(notebook, notebook, (images,), call=CENTRES, mapping={"nope": "hyponet"})


# ---------------------------------------------------------------- calls, tuples, non-tensors, parents

class SwitchingAct(torch.nn.Module):
    """ReLU on its first call, GELU afterwards: differs from ReLU only on call 2."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return torch.relu(x) if self.calls == 1 else torch.nn.functional.gelu(x)


class Pair(torch.nn.Module):
    def forward(self, x):
        return x * 2, "not a tensor"


class Describe(torch.nn.Module):
    def forward(self, x):
        return f"shape {tuple(x.shape)}"


class Scaled(torch.nn.Module):
    """A parent whose own forward code (the scale) sits around its child."""

    def __init__(self, scale):
        super().__init__()
        self.lin, self.scale = torch.nn.Linear(4, 4), scale

    def forward(self, x):
        return self.lin(x) * self.scale


class Toy(torch.nn.Module):
    def __init__(self, act=None, scale=1.0):
        super().__init__()
        torch.manual_seed(0)
        self.lin, self.act = torch.nn.Linear(4, 4), act or torch.nn.ReLU()
        self.pair, self.describe, self.block = Pair(), Describe(), Scaled(scale)

    def forward(self, x):
        h = self.act(self.lin(x))
        h = self.act(self.lin(h))  # lin and act run twice
        h, _ = self.pair(h)
        self.describe(h)
        return self.block(h)


def test_calls_are_indexed_and_non_tensor_outputs_skipped():
    x = torch.randn(3, 4)
    d = localise(Toy(), Toy(act=SwitchingAct()), (x,))
    assert [r.label for r in d.rows][:5] == ["lin (call 1 of 2)", "act (call 1 of 2)", "lin (call 2 of 2)",
                                              "act (call 2 of 2)", "pair"]
    assert "describe" not in {r.name for r in d.rows}  # returned a string
    assert d.first == "act (call 2 of 2)"


def test_a_parent_whose_own_code_differs_and_code_outside_the_modules():
    x = torch.randn(3, 4)
    d = localise(Toy(), Toy(scale=2.0), (x,))
    assert d.first == "block" and not d.first_row.leaf
    assert "not a leaf: every submodule of it agrees" in d.summary()
    d = localise(Toy(), Toy(), (x,), call=(lambda m, v: m(v), lambda m, v: m(v) + 1))
    assert d.first == OUTPUT and all(r.ok for r in d.rows)
    assert "outside the modules" in d.summary()


# ---------------------------------------------------------------- parity diff-models

def _parity_run(folder, cfg):
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    torch.save({"model": build_model(cfg).state_dict(), "optimizer": {}, "step": 0}, folder / "checkpoint.pt")
    return folder / "checkpoint.pt"


def test_diff_models_from_names(capsys, tmp_path):
    assert main(["diff-models", "notebook", "notebook+output-activation", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# notebook vs notebook+output-activation")
    assert "first divergence at `hyponet.decoder.7` (leaf" in out and "| `hyponet.decoder.7` |" in out
    report = tmp_path / "diff.md"
    assert main(["diff-models", "notebook", "notebook+coords", "--preset", "smoke", "--out", str(report)]) == 0
    assert "no divergence" in capsys.readouterr().out  # coords is a protocol difference: the same model
    assert report.read_text().startswith("# notebook vs notebook+coords")


def test_diff_models_from_checkpoints(capsys, tmp_path, smoke):
    run = _parity_run(tmp_path / "run", smoke[0])
    assert main(["diff-models", str(run), "notebook", "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "A: parity run" in out and "no divergence" in out
    transinr = tmp_path / "epoch-last.pth"
    original_port.save_checkpoint(transinr, build_model(smoke[1], seed=1),
                                  transinr_spec(smoke[1].model, smoke[1].data.image_size))
    assert main(["diff-models", "original", str(transinr), "--preset", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "B: trans-inr checkpoint" in out and "first divergence at `tokenizer.prefc`" in out  # other seed


def test_a_bare_state_dict_is_read_as_the_notebooks_cifar_model(tmp_path):
    path = tmp_path / "notebook.pt"
    torch.save(notebook_port.MambaGINR_CIFAR(**notebook_port.NOTEBOOK_CIFAR_KWARGS).state_dict(), path)
    loaded = load_model(str(path))
    assert loaded.kind == "notebook state dict" and loaded.image_size == (32, 32)
    with pytest.raises(ParityError, match="takes 16x16 images"):
        diff_models("notebook", str(path), preset="smoke")


@pytest.mark.parametrize("args,message", [
    (["missing.pt", "notebook"], "does not exist"),
    (["notebook+nope", "notebook"], "unknown difference 'nope'"),
    (["notebook", "original", "--preset", "nope"], "unknown preset 'nope'"),
    (["notebook", "notebook", "--rtol", "-1"], "must not be negative"),
    (["list.pt", "notebook"], "neither a parity run checkpoint"),
    (["small-notebook.pt", "notebook"], "read as a bare notebook state dict"),
])
def test_diff_models_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, notebook, args, message):
    monkeypatch.chdir(tmp_path)
    torch.save([1, 2], tmp_path / "list.pt")
    torch.save(notebook.state_dict(), tmp_path / "small-notebook.pt")
    assert main(["diff-models", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("parity: error:") and message in err and "\n" not in err
