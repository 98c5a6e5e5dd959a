"""Parity checks in my own test suite, with the fixtures of the parity pytest plugin."""

import copy

import pytest
import torch

from parity.core.coords import make_grid
from parity.testing import assert_config_matches, assert_models_match, assert_state_dicts_compatible, rel_err


def reconstruct(model, images, coords):
    return model.decode(model.encode(images), coords)


def test_notebook_port_reproduces_the_notebook(parity_notebook_model, parity_golden_notebook):
    g = parity_golden_notebook
    with torch.no_grad():
        rgb = reconstruct(parity_notebook_model, g["images"], g["grid"].expand(2, -1, -1))
    assert rel_err(rgb, g["rgb"]) <= 1e-5


def test_my_model_matches_the_original(parity_original_model, parity_golden_original):
    mine = copy.deepcopy(parity_original_model)  # stands in for my own re-implementation
    assert_state_dicts_compatible(parity_original_model, mine)
    g = parity_golden_original
    assert_models_match(parity_original_model, mine, (g["images"], g["coord"]), call=reconstruct,
                        loss_fn=lambda pred: pred.square().mean())  # outputs and every gradient


def test_my_config_is_the_original_with_jitter(parity_baseline_config):
    mine = parity_baseline_config("original")
    mine.train.jitter_std = 0.01
    assert_config_matches(mine, parity_baseline_config("original+jitter-train"))


@pytest.mark.parity_checkpoint
def test_checkpoint_reconstructs_finite_images(parity_checkpoint):
    H, W = parity_checkpoint.image_size
    images = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        rgb = reconstruct(parity_checkpoint.model.eval(), images, make_grid(H, W, "centres").expand(2, -1, -1))
    assert rgb.shape == (2, H * W, 3) and torch.isfinite(rgb).all()
