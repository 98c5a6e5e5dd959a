"""The notebook's training protocol and evaluations. Mirrors ``ASF/cifar10_experiments.ipynb``
cells 9-11 (optimiser, ``train_epoch``, ``validate``, the epoch loop) and 13/17 (super-resolution,
jittered decoding)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from parity.core.checkpoints import load_state_dict_strict, read_checkpoint

from .model import NOTEBOOK_CIFAR_KWARGS, MambaGINR_CIFAR, create_coordinate_grid

NUM_SAMPLE_COORDS = 512


def make_optimizer(model, lr=1e-4, weight_decay=1e-5):
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def make_scheduler(optimizer, t_max=50):
    """CosineAnnealingLR(T_max=50), stepped once per epoch (20 epochs: never reaches its minimum)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max)


def lr_per_epoch(epochs=20, base_lr=1e-4, t_max=50) -> list[float]:
    """The learning rate in each epoch, from torch's own scheduler as the notebook steps it."""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = make_scheduler(opt, t_max)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def sample_pixel_indices(batch: int, num_pixels: int, num_samples=NUM_SAMPLE_COORDS, generator=None, device=None):
    """Pixel indices drawn uniformly with replacement, (batch, num_samples)."""
    return torch.randint(0, num_pixels, (batch, num_samples), generator=generator, device=device)


def sampled_loss(model, images, sample_idx):
    """MSE on the sampled pixels of the endpoint grid, as ``train_epoch`` computes it."""
    B, _, H, W = images.shape
    coords = create_coordinate_grid(H, W, images.device).unsqueeze(0).expand(B, -1, -1)
    gt = rearrange(images, "b c h w -> b (h w) c")
    sampled_coords = torch.gather(coords, 1, sample_idx.unsqueeze(-1).expand(-1, -1, 2))
    sampled_gt = torch.gather(gt, 1, sample_idx.unsqueeze(-1).expand(-1, -1, 3))
    pred = model(images, sampled_coords)
    return {"pred": pred, "loss": F.mse_loss(pred, sampled_gt)}


def train_step(model, optimizer, images, sample_idx=None, clip_norm=1.0, generator=None):
    """zero_grad, backward, clip_grad_norm_(1.0), step. Returns floats ``loss`` and ``grad_norm``."""
    B, _, H, W = images.shape
    if sample_idx is None:
        sample_idx = sample_pixel_indices(B, H * W, generator=generator, device=images.device)
    out = sampled_loss(model, images, sample_idx)
    optimizer.zero_grad()
    out["loss"].backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    optimizer.step()
    return {"loss": out["loss"].item(), "grad_norm": norm.item()}


@torch.no_grad()
def validation_batch(model, images) -> dict:
    """``validate``'s per-batch numbers: MSE over the whole batch and -10 log10 of it."""
    B, _, H, W = images.shape
    coords = create_coordinate_grid(H, W, images.device).unsqueeze(0).expand(B, -1, -1)
    loss = F.mse_loss(model(images, coords), rearrange(images, "b c h w -> b (h w) c"))
    return {"loss": loss.item(), "psnr": (-10 * torch.log10(loss)).item()}


def validate(model, batches) -> tuple[float, float]:
    """Mean over batches of the batch MSE and of the batch PSNR (not a per-image mean)."""
    model.eval()
    results = [validation_batch(model, images) for images in batches]
    n = max(len(results), 1)
    return sum(r["loss"] for r in results) / n, sum(r["psnr"] for r in results) / n


@torch.no_grad()
def super_resolve(model, images, target_size=128):
    """Encode at the native size, decode on a target_size^2 endpoint grid -> (B, 3, S, S)."""
    B = images.shape[0]
    coords = create_coordinate_grid(target_size, target_size, images.device).unsqueeze(0).expand(B, -1, -1)
    pixels = model.decode(model.encode(images), coords)
    return rearrange(pixels, "b (h w) c -> b c h w", h=target_size, w=target_size)


@torch.no_grad()
def decode_with_jitter(model, images, target_size=32, jitter_std=0.01, different_queries=False, generator=None):
    """The notebook's ``generate_with_jitter``: jittered (clamped to [0, 1]) coordinates for both
    networks, or a regular grid for the modulation and a jittered one for the hyponet."""
    B = images.shape[0]
    base = create_coordinate_grid(target_size, target_size, images.device).unsqueeze(0).expand(B, -1, -1)
    noise = torch.randn(base.shape, generator=generator, device=base.device) * jitter_std
    jittered = (base + noise).clamp(0, 1)
    mod_coords, hypo_coords = (base, jittered) if different_queries else (jittered, None)
    pixels = model.decode(model.encode(images), mod_coords, hypo_coords)
    return rearrange(pixels, "b (h w) c -> b c h w", h=target_size, w=target_size)


def load_weights(path, **model_kwargs) -> MambaGINR_CIFAR:
    """Load a bare state-dict file (``mamba_ginr_cifar10.pt``) into the notebook model, built with the
    notebook's CIFAR arguments unless others are given."""
    model = MambaGINR_CIFAR(**(model_kwargs or NOTEBOOK_CIFAR_KWARGS))
    load_state_dict_strict(model, read_checkpoint(path), source=str(path))
    return model
