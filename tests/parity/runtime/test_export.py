"""parity export: a run's weights in each source's format, loaded back strictly."""

import pytest
import torch

from parity.cli import main
from parity.core.coords import make_grid
from parity.core.errors import ParityError
from parity.core.store import atomic_torch_save, atomic_write_text
from parity.experiment.build import build_model
from parity.experiment.config import to_yaml
from parity.experiment.differences import named_config
from parity.experiment.presets import preset
from parity.runtime.export import export_run


def fake_run(tmp_path, name: str, seed: int = 3, scaled: bool = True):
    """A run folder as the trainer leaves it: config.yaml and checkpoint.pt with trained-looking weights.
    ``scaled``: at the smoke preset's sizes (whose head width trans-inr hard-codes otherwise)."""
    cfg = named_config(name, preset("smoke").baselines() if scaled else None)
    cfg.train.seed = seed
    model = build_model(cfg)
    with torch.no_grad():  # weights that differ from any fresh initialisation
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    run = tmp_path / name / f"seed-{seed}"
    atomic_write_text(run / "config.yaml", to_yaml(cfg))
    atomic_torch_save(run / "checkpoint.pt", {"model": model.state_dict(), "optimizer": {}, "step": 7,
                                              "history": [], "train_time": 0.0, "train_images": 0})
    return run, cfg, model


def _output(model, size):
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    coords = make_grid(size, size, "centres").unsqueeze(0).expand(2, -1, -1)
    with torch.no_grad():
        return model.eval().decode(model.eval().encode(images), coords)


def test_original_run_round_trips_through_the_transinr_checkpoint(tmp_path):
    import original_port

    run, _, model = fake_run(tmp_path, "original", scaled=False)  # the source's own architecture
    out = export_run(run, "transinr", tmp_path / "epoch-last.pth")
    loaded = original_port.load_checkpoint(out)  # strict: every key, every shape
    assert loaded.epoch == 7 and set(loaded.model.state_dict()) == set(model.state_dict())
    assert torch.equal(_output(loaded.model, 32), _output(model, 32))


def test_notebook_run_round_trips_through_the_bare_state_dict(tmp_path):
    import notebook_port
    from parity.experiment.build import notebook_kwargs

    run, cfg, model = fake_run(tmp_path, "notebook")
    assert main(["export", str(run), "--format", "notebook", "--out", str(tmp_path / "nb.pth")]) == 0
    state = torch.load(tmp_path / "nb.pth", weights_only=True)
    fresh = notebook_port.MambaGINR_CIFAR(**notebook_kwargs(cfg.model, cfg.data.image_size))
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(_output(fresh, 16), _output(model, 16))
    # what it loads into travels with it: the class built from the file beside it takes the weights strictly
    import json

    beside = json.loads((tmp_path / "nb.pth.json").read_text())
    assert beside["class"] == "notebook_port.MambaGINR_CIFAR" and beside["step"] == 7
    notebook_port.MambaGINR_CIFAR(**beside["kwargs"]).load_state_dict(state, strict=True)


@pytest.mark.parametrize("own", ["checkpoint.pt", "config.yaml", "metrics.json"])
def test_export_never_writes_over_the_runs_own_files(tmp_path, own):
    run, _, _ = fake_run(tmp_path, "notebook")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(ParityError, match="is one of the run's own files"):
        export_run(run, "notebook", run / own)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("name, fmt, message", [
    ("original-output-activation", "transinr", "output_activation"),  # a sigmoid trans-inr never had
    ("original", "transinr", "dim_head"),  # scaled-down heads: trans-inr hard-codes 64
    ("notebook+spatial-bias", "notebook", "spatial_bias=True"),
    ("notebook", "transinr", "--format notebook"),
    ("original", "notebook", "--format transinr"),
])
def test_mixed_variants_are_refused_with_the_reason(tmp_path, name, fmt, message):
    run, _, _ = fake_run(tmp_path, name)
    with pytest.raises(ParityError, match=message.replace("+", r"\+")):
        export_run(run, fmt, tmp_path / "x.pth")
    assert not (tmp_path / "x.pth").exists()


def test_not_a_run_folder(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "notebook", "--out", str(tmp_path / "x.pth")]) == 2
    assert "not a run folder" in capsys.readouterr().err
