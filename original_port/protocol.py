"""The original training protocol. Mirrors ``trans-inr-master/trainers/imgrec_trainer_lainr.py``
(and the schedule of its ``imgrec_trainer_lainr_constant.py`` variant) and the optimiser helper of
``utils/common.py``."""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat

from parity.core.coords import jitter, pixel_centre_grid

MIN_LR = 1e-8


def lr_at_epoch(epoch: int, base_lr: float, max_epoch: int, warmup_epochs: int = 5, min_lr: float = MIN_LR) -> float:
    """The learning rate set at the start of ``epoch`` (counted from 1, as the trainer does):
    linear warm-up while epoch < warmup, then cosine from ``base_lr`` to 1e-8 at the last epoch."""
    if epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    t = (epoch - warmup_epochs) / (max_epoch - warmup_epochs)
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * t))


HOLD_FRACTION = 0.95  # imgrec_trainer_lainr_constant keeps base_lr while epoch < 0.95 * max_epoch


def lr_at_epoch_constant(epoch: int, base_lr: float, max_epoch: int, warmup_epochs: int = 5,
                         min_lr: float = MIN_LR, hold: float = HOLD_FRACTION) -> float:
    """The learning rate ``imgrec_trainer_lainr_constant`` sets at the start of ``epoch`` (counted from 1):
    the same linear warm-up while epoch < warmup, then ``base_lr`` unchanged while epoch < hold * max_epoch
    (a float: 190.0 of 200 epochs), then a half cosine that starts at ``base_lr`` at that epoch and
    reaches ``min_lr`` (1e-8) at the last epoch. 200 epochs, warm-up 10: epoch 1 at base_lr / 5, epochs
    9..190 at base_lr (the warm-up reaches it at epoch 9; 190 is the cosine's start), 195 at about
    base_lr / 2, 200 at 1e-8."""
    if epoch < warmup_epochs:
        return base_lr * (epoch + 1) / warmup_epochs
    decay_from = max_epoch * hold
    if epoch < decay_from:
        return base_lr
    progress = (epoch - decay_from) / (max_epoch - decay_from)
    return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def make_optimizer(params, spec: dict) -> torch.optim.Optimizer:
    """``{'name': 'adamw', 'args': {'lr': 5e-4}}`` -> torch optimiser with torch's defaults otherwise
    (AdamW: weight decay 0.01)."""
    kinds = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if spec["name"] not in kinds:
        raise ValueError(f"unknown optimizer {spec['name']!r}: choose one of {', '.join(kinds)}")
    return kinds[spec["name"]](params, **spec["args"])


def add_gaussian_noise_to_grid(coord_grid: torch.Tensor, std: float = 0.01) -> torch.Tensor:
    """The trainer's jitter helper (its call is commented out in the source's training step)."""
    return jitter(coord_grid, std)


def reconstruction_step(model, images: torch.Tensor, jitter_std: float = 0.0) -> dict:
    """One forward of the trainer's ``_iter_step``: all pixels, pixel-centre grid (jittered before it
    is repeated over the batch when ``jitter_std`` > 0; the source never does), per-image MSE.
    Returns pred (B,H,W,3), mses (B,), loss (mean of per-image MSE), psnr (mean of per-image PSNR)."""
    B = images.shape[0]
    hyponet, tokens = model({"inp": images})
    coord = pixel_centre_grid(images.shape[-2:], (0, 1), device=images.device)
    if jitter_std > 0:
        coord = add_gaussian_noise_to_grid(coord, jitter_std)
    coord = repeat(coord, "h w d -> b h w d", b=B)
    pred = hyponet(coord, tokens)
    gt = rearrange(images, "b c h w -> b h w c")
    mses = ((pred - gt) ** 2).view(B, -1).mean(dim=-1)
    return {"pred": pred, "coord": coord, "mses": mses, "loss": mses.mean(),
            "psnr": (-10 * torch.log10(mses)).mean()}


def train_step(model, optimizer, images: torch.Tensor, jitter_std: float = 0.0) -> dict:
    """zero_grad, backward, step; no clipping. Returns floats ``loss`` and ``psnr``."""
    out = reconstruction_step(model, images, jitter_std)
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    return {"loss": out["loss"].item(), "psnr": out["psnr"].item()}


@torch.no_grad()
def evaluate_step(model, images: torch.Tensor) -> dict:
    out = reconstruction_step(model, images)
    return {"loss": out["loss"].item(), "psnr": out["psnr"].item()}
