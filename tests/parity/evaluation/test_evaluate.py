"""parity.evaluation.evaluate against hand computations, skimage itself, the notebook's own protocol functions,
and stand-in models whose scores are known in advance."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from parity.core.coords import make_grid
from parity.evaluation import evaluate as ev
from parity.experiment.config import EvalConfig

# ------------------------------------------------------------------------------------------------
# Stand-in models


class Oracle(nn.Module):
    """Tokens are the image's pixels; decoding samples the image bilinearly at the query, mapping the
    grid convention onto grid_sample's (endpoints <-> align_corners=True), so the native grid returns
    the image itself."""

    def __init__(self, convention="endpoints"):
        super().__init__()
        self.convention = convention
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device

    def encode(self, images):
        self.shape = images.shape[-2:]
        return images.flatten(2).transpose(1, 2)  # (B, H*W, 3)

    def _sample(self, tokens, coords):
        H, W = self.shape
        image = tokens.transpose(1, 2).reshape(tokens.shape[0], 3, H, W)
        grid = (coords.flip(-1) * 2 - 1).unsqueeze(2)  # (y, x) -> grid_sample's (x, y) in [-1, 1]
        out = F.grid_sample(image, grid, mode="bilinear", padding_mode="border",
                            align_corners=self.convention == "endpoints")
        return out.squeeze(-1).transpose(1, 2)  # (B, N, 3)

    def decode(self, tokens, modulation_coords, hyponet_coords=None):
        return self._sample(tokens, modulation_coords if hyponet_coords is None else hyponet_coords)


class TwoArgOracle(Oracle):
    """The same, with the original's two-argument decode (no decoupled coordinates)."""

    def decode(self, tokens, coords):
        return self._sample(tokens, coords)


class Constant(nn.Module):
    """Predicts mid-grey everywhere; tokens are 2x2 mean-pooled patches of the input."""

    def __init__(self, value=0.5):
        super().__init__()
        self.value = value
        self.anchor = nn.Parameter(torch.zeros(1))

    def encode(self, images):
        return F.avg_pool2d(images, 4).flatten(2).transpose(1, 2)  # (B, patches, 3)

    def decode(self, tokens, coords):
        return torch.full((*coords.shape[:2], 3), self.value)


class Linear(nn.Module):
    """One Linear on 4x4 patches to encode, one on the coordinates to decode: FLOPs known by hand."""

    def __init__(self, dim=8):
        super().__init__()
        self.embed = nn.Linear(48, dim)
        self.out = nn.Linear(2, 3)

    def encode(self, images):
        patches = F.unfold(images, 4, stride=4).transpose(1, 2)  # (B, P, 48)
        return self.embed(patches)

    def decode(self, tokens, coords):
        return self.out(coords) + tokens.mean(dim=(1, 2))[:, None, None]


def _images(n=12, size=8, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _loader(images, labels=None, batch=5):
    """A list of (images, labels) batches: as good as a DataLoader for these functions."""
    labels = torch.full((len(images),), -1) if labels is None else labels
    return [(images[i:i + batch], labels[i:i + batch]) for i in range(0, len(images), batch)]


# ------------------------------------------------------------------------------------------------
# Metrics


def test_psnr_forms_by_hand():
    target = torch.zeros(2, 3, 4, 4)
    pred = target.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert ev.psnr_per_image(pred, target).tolist() == pytest.approx([20.0, 40.0])
    assert ev.psnr_batch_mse(pred, target) == pytest.approx(-10 * math.log10((0.01 + 1e-4) / 2))
    # same as skimage's peak_signal_noise_ratio with data_range 1, ground truth first
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    ours = ev.psnr_per_image(p, t)
    for i in range(2):
        assert ours[i].item() == pytest.approx(peak_signal_noise_ratio(t[i].numpy(), p[i].numpy(), data_range=1.0))


def test_ssim_matches_skimage_called_directly():
    target = _images(3, 16)
    pred = (target + 0.05 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = ev.ssim(pred, target)
    for i in range(3):
        gt = target[i].permute(1, 2, 0).numpy()
        sr = pred[i].permute(1, 2, 0).numpy()
        assert ours[i].item() == structural_similarity(gt, sr, data_range=1.0, channel_axis=2)


# ------------------------------------------------------------------------------------------------
# Reconstruction


def test_constant_model_scores_by_hand_and_batch_mse_is_lower():
    # brightness varies between images, so per-image MSEs differ
    images = _images(10) * torch.linspace(0.2, 1.0, 10)[:, None, None, None]
    loader = _loader(images, batch=4)
    out = ev.evaluate_reconstruction(Constant(), loader, "endpoints")
    mse = (images - 0.5).pow(2).flatten(1).mean(1).double()
    assert out["images"] == 10
    assert out["mse"] == pytest.approx(mse.mean().item())
    assert out["psnr"] == pytest.approx((-10 * mse.log10()).mean().item())
    batch_psnrs = [-10 * math.log10(mse[i:i + 4].mean().item()) for i in (0, 4)]
    batch_psnrs.append(-10 * math.log10(mse[8:].mean().item()))
    assert out["psnr_batch_mse"] == pytest.approx(sum(batch_psnrs) / 3)  # short last batch weighs as much
    json.dumps(out)
    # within a batch, Jensen (-log is convex) puts the mean of per-image PSNRs above the batch-MSE
    # PSNR; with equal batches the inequality carries over to the averages over batches
    even = ev.evaluate_reconstruction(Constant(), _loader(images, batch=5), "endpoints")
    assert even["psnr"] == out["psnr"] and even["psnr"] > even["psnr_batch_mse"]
    flat = ev.evaluate_reconstruction(Constant(), _loader(torch.full((4, 3, 8, 8), 0.3), batch=4), "endpoints")
    assert flat["psnr"] == pytest.approx(flat["psnr_batch_mse"])  # equal MSEs: the forms agree


@pytest.mark.parametrize("convention", ["endpoints", "centres"])
def test_oracle_reconstructs_and_max_images_cuts(convention):
    images = _images(12)
    model = Oracle(convention)
    torch.testing.assert_close(ev.reconstruct(model, images, convention), images)
    out = ev.evaluate_reconstruction(model, _loader(images), convention, max_images=7)
    assert out["images"] == 7
    assert out["psnr"] > 100 and out["ssim"] == pytest.approx(1.0)
    assert model.training  # evaluation restores the caller's mode


def test_rebatched_fixes_batch_size():
    images = _images(11)
    batches = list(ev.Rebatched(_loader(images, batch=3), 4))
    assert [len(b[0]) for b in batches] == [4, 4, 3]
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), images)
    assert [len(b[0]) for b in ev.Rebatched(_loader(images, batch=3), 4, max_images=6)] == [4, 2]


# ------------------------------------------------------------------------------------------------
# Jitter


def test_jitter_zero_equals_clean_and_noise_hurts():
    images = _images(8)
    loader, model = _loader(images), Oracle()
    clean = ev.evaluate_reconstruction(model, loader, "endpoints")["psnr"]
    out = ev.jitter_psnr(model, loader, "endpoints", [0.0, 0.05], None, seed=1)
    assert out["0.0"] == clean
    assert out["0.05"] < 40
    assert ev.jitter_psnr(model, loader, "endpoints", [0.0, 0.05], None, seed=1) == out  # seeded
    decoupled = ev.jitter_psnr(model, loader, "endpoints", [0.05], None, seed=1, decoupled=True)
    assert decoupled["0.05"] < 40  # the oracle's colour comes from the hyponet coordinates


def test_decoupled_jitter_skipped_without_hyponet_coordinates():
    images = _images(4)
    assert ev.jitter_psnr(TwoArgOracle(), _loader(images), "endpoints", [0.01], None, decoupled=True) == {}
    assert ev.supports_decoupled(Oracle()) and not ev.supports_decoupled(TwoArgOracle())


# ------------------------------------------------------------------------------------------------
# Super-resolution


def test_notebook_sr_chunked_equals_unchunked_and_by_hand():
    images = _images(6)
    loader, model = _loader(images, batch=4), Oracle()
    chunked = ev.super_resolution_notebook(model, loader, "endpoints", [8, 20], None, chunk=7)
    whole = ev.super_resolution_notebook(model, loader, "endpoints", [8, 20], None, chunk=None)
    assert chunked == whole
    # at the native size the bicubic reference is the image itself, which the oracle returns
    assert chunked["8"]["psnr"] > 100
    # at 20x20: the oracle's bilinear endpoint upsampling against bicubic, scored directly
    bilinear = F.interpolate(images, size=(20, 20), mode="bilinear", align_corners=True)
    bicubic = F.interpolate(images, size=(20, 20), mode="bicubic", align_corners=False)
    psnr = [peak_signal_noise_ratio(bicubic[i].permute(1, 2, 0).numpy(), bilinear[i].permute(1, 2, 0).numpy(),
                                    data_range=1.0) for i in range(6)]
    assert chunked["20"]["psnr"] == pytest.approx(sum(psnr) / 6, abs=1e-3)


def test_true_sr_bicubic_baseline_by_hand():
    images = _images(6, 16)
    out = ev.super_resolution_true(Oracle(), _loader(images), "endpoints", None, factor=2)
    low = F.avg_pool2d(images, 2)  # area interpolation by an integer factor is average pooling
    up = F.interpolate(low, size=(16, 16), mode="bicubic", align_corners=False).clamp(0, 1)
    mse = (up - images).double().pow(2).flatten(1).mean(1)
    assert out["bicubic_psnr"] == pytest.approx((-10 * mse.log10()).mean().item())
    assert out["bicubic_ssim"] == pytest.approx(ev.ssim(up, images).mean().item())
    # the oracle reproduces its (degraded) input exactly, so it adds nothing beyond bicubic
    assert out["psnr"] == pytest.approx(out["bicubic_psnr"], abs=1e-4)
    assert out["factor"] == 2


# ------------------------------------------------------------------------------------------------
# Probe, size, everything


def _coloured(n_per_class, seed):
    """Three classes, each a different mean colour: mean-pooled tokens separate them linearly."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.tensor([[0.2, 0.5, 0.8], [0.8, 0.2, 0.5], [0.5, 0.8, 0.2]])
    labels = torch.arange(3).repeat_interleave(n_per_class)
    images = colours[labels][:, :, None, None] + 0.1 * torch.randn(len(labels), 3, 8, 8, generator=g)
    return images.clamp(0, 1), labels


def test_linear_probe_separable_and_unlabelled():
    x_train, y_train = _coloured(10, 0)
    x_test, y_test = _coloured(5, 1)
    out = ev.linear_probe(Constant(), _loader(x_train, y_train), _loader(x_test, y_test), None, None)
    assert out["accuracy"] >= 0.9 and out["classes"] == 3 and out["chance"] == pytest.approx(1 / 3)
    assert out["train_images"] == 30 and out["test_images"] == 15
    assert ev.linear_probe(Constant(), _loader(x_train, y_train), _loader(x_test, y_test), None, None) == out
    assert ev.linear_probe(Constant(), _loader(x_train), _loader(x_test), None, None) is None
    one_class = torch.zeros(30, dtype=torch.long)
    assert ev.linear_probe(Constant(), _loader(x_train, one_class), _loader(x_test, y_test), None, None) is None


def test_a_grouped_convolutions_backward_counts_as_its_groups_apart():
    """torch's counter charges a depthwise conv's weight gradient 512x over; ours charges it as 512 separate
    one-channel convolutions, and leaves an ungrouped convolution's count as torch has it."""
    from torch.utils.flop_counter import FlopCounterMode

    def backward_flops(conv, x, counter):
        with counter:
            conv(x).square().sum().backward()
        return counter.get_flop_counts()["Global"][torch.ops.aten.convolution_backward]

    def ours():
        return FlopCounterMode(display=False, custom_mapping={
            torch.ops.aten.convolution_backward: ev.grouped_conv_backward_flop})

    x = torch.randn(2, 8, 20, requires_grad=True)
    depthwise = torch.nn.Conv1d(8, 8, 4, groups=8, padding=3)
    single = torch.nn.Conv1d(1, 1, 4, padding=3)
    one = backward_flops(single, torch.randn(2, 1, 20, requires_grad=True), ours())
    assert backward_flops(depthwise, x, ours()) == 8 * one
    assert backward_flops(depthwise, x, FlopCounterMode(display=False)) > 8 * one  # torch's overcount
    dense = torch.nn.Conv1d(8, 6, 3)
    assert backward_flops(dense, x, ours()) == backward_flops(dense, x, FlopCounterMode(display=False))


def test_params_and_flops_by_hand():
    model = Linear(dim=8)
    assert ev.count_params(model) == 48 * 8 + 8 + 2 * 3 + 3
    # encode: 4 patches x 48 -> 8; decode: 64 queries x 2 -> 3 (2 FLOPs per multiply-add)
    assert ev.flops_per_image(model, 8, "endpoints") == pytest.approx((2 * 4 * 48 * 8 + 2 * 64 * 2 * 3) / 1e9)
    assert ev.flops_per_image(model, (8, 8), "centres", queries=10) == pytest.approx(
        (2 * 4 * 48 * 8 + 2 * 10 * 2 * 3) / 1e9)


def test_evaluate_all_is_json():
    x_train, y_train = _coloured(4, 0)
    x_test, y_test = _coloured(3, 1)
    cfg = EvalConfig(batch_size=4, jitter_stds=[0.0, 0.01], sr_sizes=[16], sr_images=5, probe=True)
    out = ev.evaluate_all(Oracle(), _loader(x_train, y_train), _loader(x_test, y_test), cfg, "endpoints", 8)
    assert set(out) == {"test", "jitter", "sr_notebook", "sr_true", "probe", "params", "gflop_per_image", "stages"}
    assert list(out["stages"]) == ["reconstruction", "jitter", "super-resolution (notebook)",
                                   "super-resolution (true)", "linear probe", "flops"]
    assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 0 and s["peak_gpu_mb"] is None for s in out["stages"].values())
    assert out["test"]["images"] == 9 and out["test"]["psnr_headline"] == out["test"]["psnr_batch_mse"]
    assert set(out["jitter"]["same"]) == {"0.0", "0.01"} and out["jitter"]["decoupled"]
    assert set(out["sr_notebook"]) == {"16"} and out["probe"]["classes"] == 3
    json.loads(json.dumps(out))


# ------------------------------------------------------------------------------------------------
# The notebook's own protocol functions, on a tiny notebook model


@pytest.fixture(scope="module")
def tiny_notebook():
    from notebook_port.model import MambaGINR_CIFAR

    torch.manual_seed(0)
    return MambaGINR_CIFAR(img_size=8, patch_size=4, dim=16, num_lp=4, mamba_depth=1, hidden_dim=16).eval()


def test_matches_notebook_protocol(tiny_notebook):
    from notebook_port import protocol

    model, images = tiny_notebook, _images(6)
    loader = _loader(images, batch=3)
    _, psnr = protocol.validate(model, [b[0] for b in loader])
    assert ev.evaluate_reconstruction(model, loader, "endpoints")["psnr_batch_mse"] == pytest.approx(psnr, abs=1e-4)

    one = [(images, torch.zeros(6))]
    for decoupled in (False, True):
        ours = ev.jitter_psnr(model, one, "endpoints", [0.02], None, seed=3, decoupled=decoupled)["0.02"]
        theirs = protocol.decode_with_jitter(model, images, 8, 0.02, different_queries=decoupled,
                                             generator=torch.Generator().manual_seed(3))
        assert ours == pytest.approx(ev.psnr_per_image(theirs, images).mean().item())

    sr = ev.super_resolution_notebook(model, one, "endpoints", [24], None, chunk=100)
    theirs = protocol.super_resolve(model, images, 24)
    bicubic = F.interpolate(images, size=(24, 24), mode="bicubic", align_corners=False)
    assert sr["24"]["psnr"] == pytest.approx(ev.psnr_per_image(theirs, bicubic).mean().item(), abs=1e-4)
    assert sr["24"]["ssim"] == pytest.approx(ev.ssim(theirs, bicubic).mean().item(), abs=1e-4)


@pytest.mark.parametrize("chunk", [1, 7, 50, None])
def test_decode_chunked_equals_one_piece_for_both_decoders(smoke, chunk):
    """Chunks are counted over the whole batch (3 images x 13 x 13 queries): uneven last chunks,
    chunks smaller than the batch, and one piece all give the one-call output."""
    from parity.experiment.build import build_model

    for cfg, convention in zip(smoke, ("endpoints", "centres")):
        model = build_model(cfg).eval()
        with torch.no_grad():
            tokens = model.encode(_images(3, size=cfg.data.image_size))
            coords = make_grid(13, 13, convention).unsqueeze(0).expand(3, -1, -1)
            whole = model.decode(tokens, coords)
            parts = ev.decode_chunked(model, tokens, coords, chunk=chunk)
        assert parts.shape == whole.shape
        assert torch.allclose(parts, whole, rtol=0, atol=1e-6), (cfg.name, chunk)
