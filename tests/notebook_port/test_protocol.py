"""The notebook's protocol pieces: sampling, validation PSNR form, evaluations, weight files."""

import pytest
import torch

import notebook_port
from parity.core.errors import ParityError

SMALL = dict(img_size=8, patch_size=4, dim=32, num_lp=4, mamba_depth=1, hidden_dim=16)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return notebook_port.MambaGINR_CIFAR(**SMALL)


def test_pixel_sampling_is_with_replacement_and_in_range():
    idx = notebook_port.sample_pixel_indices(4, 16, num_samples=512, generator=torch.Generator().manual_seed(0))
    assert idx.shape == (4, 512) and idx.min() >= 0 and idx.max() < 16
    assert len(idx[0].unique()) < 512  # repeats: drawn with replacement


def test_validation_psnr_is_batch_mse_form(model):
    images = torch.rand(3, 3, 8, 8)
    out = notebook_port.validation_batch(model, images)
    with torch.no_grad():
        coords = notebook_port.create_coordinate_grid(8, 8).expand(3, -1, -1)
        pred = model(images, coords)
    mse = ((pred - images.flatten(2).transpose(1, 2)) ** 2).mean()
    assert out["psnr"] == pytest.approx((-10 * torch.log10(mse)).item(), rel=1e-6)


def test_super_resolve_and_jitter_shapes(model):
    images = torch.rand(2, 3, 8, 8)
    assert notebook_port.super_resolve(model, images, 24).shape == (2, 3, 24, 24)
    same = notebook_port.decode_with_jitter(model, images, 8, jitter_std=0.0)
    assert torch.allclose(same, notebook_port.super_resolve(model, images, 8))
    g = torch.Generator().manual_seed(1)
    assert notebook_port.decode_with_jitter(model, images, 8, 0.02, different_queries=True,
                                            generator=g).shape == (2, 3, 8, 8)


def test_bare_state_dict_files_load_strictly(tmp_path, model):
    path = tmp_path / "mamba_ginr_cifar10.pt"
    torch.save(model.state_dict(), path)
    loaded = notebook_port.load_weights(path, **SMALL)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(ParityError, match="does not fit the model"):
        notebook_port.load_weights(path)  # the notebook's CIFAR arguments: other shapes


def test_wrong_image_size_is_a_clear_error(model):
    with pytest.raises(ValueError, match="does not match img_size=8"):
        model.encode(torch.rand(1, 3, 16, 16))
