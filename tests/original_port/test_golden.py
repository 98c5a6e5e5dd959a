"""The original port reproduces every golden tensor of the original sources, with every CPU scan."""

import pytest
import torch

import original_port
from original_port.decoder import spatial_bias
from parity.core.coords import pixel_centre_grid
from parity.core.ssm import set_scan
from parity.testing import grad_err, rel_err

FWD, GRAD = 1e-5, 1e-4


@pytest.fixture
def model(original_golden):
    return original_port.from_spec({**original_golden["spec"], "sd": original_golden["state_dict"]})


def test_state_dict_keys_and_shapes_are_the_sources(model, original_golden):
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in original_golden["state_dict"].items()}
    assert ours == theirs
    assert sum(p.numel() for p in model.parameters()) == original_golden["n_params"]


def test_forward_intermediates(model, original_golden, scan):
    set_scan(model, scan)
    g = original_golden
    tokens = model.tokenizer({"inp": g["images"]})
    assert rel_err(tokens, g["tokenizer_out"]) <= FWD
    interleaved = model.add_lp(tokens)
    assert rel_err(interleaved, g["interleaved"]) <= FWD
    encoded = model.mamba_encoder(interleaved)
    assert rel_err(encoded, g["encoder_out"]) <= FWD
    assert rel_err(model.extract_lp_tokens(encoded), g["lp_tokens"]) <= FWD
    assert torch.equal(torch.as_tensor(model.lp_idxs), g["lp_idxs"])
    assert torch.equal(model.perm, g["perm"])


def test_training_step_loss_psnr_and_every_gradient(model, original_golden, scan):
    set_scan(model, scan)
    g = original_golden
    out = original_port.reconstruction_step(model, g["images"])
    assert torch.equal(out["coord"], g["coord"])
    for key in ("pred", "mses", "loss", "psnr"):
        assert rel_err(out[key], g[key]) <= FWD, key
    out["loss"].backward()
    with_grad = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(with_grad) == set(g["grads"])  # tokenizer.postfc is unused, as in the source
    for name, grad in with_grad.items():
        assert grad_err(grad, g["grads"][name]) <= GRAD, name


def test_decoding_at_2x_on_jittered_coords_and_the_bias(model, original_golden, scan):
    set_scan(model, scan)
    g = original_golden
    with torch.no_grad():
        tokens = model.encode(g["images"])
        grid_2x = pixel_centre_grid((32, 32)).expand(2, -1, -1, -1)
        assert rel_err(model.decode(tokens, grid_2x), g["pred_2x"]) <= FWD
        jittered = g["jitter_coord"].expand(2, -1, -1, -1)
        assert rel_err(model.decode(tokens, jittered), g["pred_jitter"]) <= FWD
    coords = g["coord"][0].reshape(-1, 2)
    assert rel_err(spatial_bias(coords, model.hyponet.patch_num, model.num_lp), g["bias"]) <= FWD


def test_model_call_returns_decoder_and_tokens(model, original_golden):
    decoder, tokens = model({"inp": original_golden["images"]})
    assert decoder is model.hyponet
    assert rel_err(tokens, original_golden["lp_tokens"]) <= FWD


def test_jitter_draw_has_the_helpers_spread(original_golden):
    noise = original_golden["jitter_coord"] - original_golden["coord"][0]
    assert 0.008 < noise.std().item() < 0.012  # one draw of N(0, 0.01^2) over 512 values


@pytest.mark.parametrize("name", ["original_cifar_lr_5e-4_40ep_warmup5", "original_lr_1e-4_20ep_warmup5",
                                  "original_lr_5e-4_10ep_warmup3"])
def test_lr_schedule_exact(lr_schedules, name):
    base, epochs, warmup = name.split("_")[-3:]
    base_lr, max_epoch, warmup_epochs = float(base), int(epochs.removesuffix("ep")), int(warmup.removeprefix("warmup"))
    ours = [original_port.lr_at_epoch(e, base_lr, max_epoch, warmup_epochs) for e in range(1, max_epoch + 1)]
    assert len(ours) == len(lr_schedules[name])
    assert max(abs(a - b) for a, b in zip(ours, lr_schedules[name])) <= 1e-12
