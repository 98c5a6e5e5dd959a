"""The public assertions pass on matching models and configurations and fail with a readable report
on ones that differ in one place; the pytest plugin runs the README's sample test file."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import original_port
from parity.core.coords import make_grid
from parity.evaluation.diagnose import localise
from parity.experiment.build import build_model, transinr_spec
from parity.experiment.configfile import load_yaml
from parity.testing import (
    assert_config_matches,
    assert_models_match,
    assert_state_dicts_compatible,
    golden_path,
    where_models_part,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).parent / "user_suite_example.py"


@pytest.fixture(scope="module")
def inputs():
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    return images, make_grid(16, 16, "endpoints").expand(2, -1, -1)


def reconstruct(model, images, coords):
    return model.decode(model.encode(images), coords)


def mse(pred):
    return pred.square().mean()


# ---------------------------------------------------------------- golden files

def test_golden_files_ship_inside_the_package():
    for name in ("original_small.pt", "notebook_small.pt", "lr_schedules.json", "README.md"):
        assert golden_path(name).is_file() and golden_path(name).parent == ROOT / "parity" / "golden"
    with pytest.raises(FileNotFoundError, match="available are .*original_small.pt"):
        golden_path("missing.pt")


# ---------------------------------------------------------------- state dicts

def test_state_dicts_compatible_passes_for_copies_and_state_dicts(notebook):
    assert_state_dicts_compatible(notebook, copy.deepcopy(notebook))
    assert_state_dicts_compatible(notebook.state_dict(), notebook)


def test_state_dicts_report_lists_missing_unexpected_and_misshaped_keys(notebook, smoke):
    wider = smoke[0].copy()
    wider.model.decoder_width = smoke[0].model.decoder_width + 8
    with pytest.raises(AssertionError) as err:
        assert_state_dicts_compatible(notebook, build_model(wider))
    report = str(err.value)
    assert "0 missing, 0 unexpected" in report and "mis-shaped" in report
    width = smoke[0].model.decoder_width
    assert f"hyponet.decoder.6.weight  a (3, {width})  b (3, {width + 8})" in report
    trimmed = {k: v for k, v in notebook.state_dict().items() if k != "patch_embed.bias"}
    trimmed["extra.weight"] = torch.zeros(2, 3)
    with pytest.raises(AssertionError) as err:
        assert_state_dicts_compatible(notebook, trimmed)
    report = str(err.value)
    assert "1 missing, 1 unexpected, 0 mis-shaped" in report
    assert f"patch_embed.bias  ({smoke[0].model.dim},)" in report and "extra.weight  (2, 3)" in report


# ---------------------------------------------------------------- models

def test_models_match_on_copies_outputs_and_gradients(notebook, inputs):
    assert_models_match(notebook, copy.deepcopy(notebook), inputs, call=reconstruct, loss_fn=mse)


def test_a_changed_weight_fails_with_a_table_of_the_worst_mismatches(notebook, inputs):
    changed = copy.deepcopy(notebook)
    with torch.no_grad():
        changed.hyponet.decoder[2].weight[0, 0] += 0.5
    with pytest.raises(AssertionError) as err:
        assert_models_match(notebook, changed, inputs, call=reconstruct, loss_fn=mse)
    report = str(err.value)
    assert report.startswith("models differ:") and "| name | max abs err | rel err | note |" in report
    lines = report.splitlines()
    assert lines[3].startswith("| output |") and lines[4].startswith("| grad ")  # outputs first
    assert "(10 of " in lines[-2]  # the change reaches many gradients: only the worst are listed
    rel = [float(line.split("|")[3]) for line in lines[4:-2]]
    assert rel == sorted(rel, reverse=True)
    # the last line says where: the changed linear layer, through the localiser
    assert lines[-1] == "where: " + localise(notebook, changed, inputs, call=reconstruct).summary()
    assert lines[-1].startswith("where: first divergence at `hyponet.decoder.2` (leaf")


def test_models_built_differently_get_no_where_line(notebook, smoke, inputs):
    """Module names that do not pair up: the localiser has nothing to say, and the report does not guess."""
    original = build_model(smoke[1])
    assert where_models_part(notebook, original, inputs) == ""


def test_a_changed_activation_fails(notebook, inputs):
    changed = copy.deepcopy(notebook)
    changed.hyponet.decoder[3] = torch.nn.GELU()
    with pytest.raises(AssertionError, match=r"\| output \| [0-9.e-]+ \| [0-9.e-]+ \|"):
        assert_models_match(notebook, changed, inputs, call=reconstruct)


def test_swapped_coordinate_convention_fails_through_a_pair_of_calls(notebook, inputs):
    images, _ = inputs

    def on(convention):
        return lambda model, x: reconstruct(model, x, make_grid(16, 16, convention).expand(2, -1, -1))

    assert_models_match(notebook, notebook, (images,), call=(on("centres"), on("centres")))
    with pytest.raises(AssertionError, match="1 of 1 compared tensors"):
        assert_models_match(notebook, notebook, (images,), call=(on("endpoints"), on("centres")))


def test_nested_outputs_are_compared_by_path_and_modules_in_them_skipped(smoke, inputs):
    original = build_model(smoke[1]).eval()
    images, coords = inputs
    # The original's forward returns (its decoder module, the LP tokens): the module is not compared.
    assert_models_match(original, copy.deepcopy(original), ({"inp": images},))

    def both(model, x, c):
        tokens = model.encode(x)
        return {"tokens": tokens, "rgb": model.decode(tokens, c)}

    changed = copy.deepcopy(original)
    with torch.no_grad():
        changed.hyponet.out_lins[1].bias += 1.0
    with pytest.raises(AssertionError) as err:
        assert_models_match(original, changed, (images, coords), call=both)
    assert "output['rgb']" in str(err.value) and "output['tokens']" not in str(err.value)


def test_a_loss_without_gradients_is_a_clear_error(notebook, inputs):
    with pytest.raises(AssertionError, match="requires grad"):
        assert_models_match(notebook, notebook, inputs, call=reconstruct, loss_fn=lambda pred: torch.tensor(1.0))


# ---------------------------------------------------------------- configurations

def test_config_matches_itself_by_object_and_name(smoke):
    assert_config_matches(smoke[0], smoke[0].copy())
    assert_config_matches("original", "original")
    assert_config_matches(load_yaml(ROOT / "configs" / "original-jitter.yaml"), "original+jitter-train")


def test_swapped_coordinate_convention_is_named_through_the_registry(smoke):
    swapped = smoke[0].copy()
    swapped.train.coords = "centres"
    with pytest.raises(AssertionError) as err:
        assert_config_matches(swapped, smoke[0])
    report = str(err.value)
    assert "differs from 'notebook' in 1 field:" in report
    assert re.search(r"\| train.coords \| 'centres' \| 'endpoints' \| coords: Coordinates linspace", report)


def test_unregistered_fields_and_improvements_are_labelled(smoke):
    with pytest.raises(AssertionError) as err:
        assert_config_matches(smoke[1], "original")  # the smoke preset scales the original down
    report = str(err.value)
    assert "| data.image_size | 16 | 32 | not a registered difference |" in report
    assert "| model.num_lp | 16 | 256 | num-lp: LP tokens 32 vs 256 |" in report
    with pytest.raises(AssertionError, match=r"jitter-train \(improvement\): Gaussian jitter"):
        assert_config_matches("original+jitter-train", "original")


# ---------------------------------------------------------------- the plugin and the README's sample

def test_readme_sample_is_the_example_file():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Parity in your own test suite", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == SAMPLE.read_text()


def test_sample_suite_runs_with_the_plugin(tmp_path, smoke):
    """As a user runs it: the file alone (no conftest of ours), the plugin loaded with -p."""
    suite = tmp_path / "test_parity.py"
    suite.write_text(SAMPLE.read_text())
    # One thread: the models are tiny, and a second one only spins against this process on 2 cores.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-p", "parity.pytest_plugin", "-rs", "-p", "no:cacheprovider",
               str(suite)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed, 1 skipped" in done.stdout and "needs --parity-checkpoint PATH" in done.stdout

    checkpoint = tmp_path / "epoch-last.pth"
    model = build_model(smoke[1])
    original_port.save_checkpoint(checkpoint, model, transinr_spec(smoke[1].model, smoke[1].data.image_size))
    done = subprocess.run([*command, "--parity-checkpoint", str(checkpoint), "-k", "checkpoint"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 3 deselected" in done.stdout
