"""Coordinate features and the spatial attention bias, shared by both ports so each exists once.

Each function keeps its source's exact float operations, so the ports stay bit-for-bit faithful.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def gaussian_fourier_features(coords: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """The notebook's features: [sin(2 pi c B^T), cos(2 pi c B^T)], B a fixed random matrix."""
    proj = 2 * np.pi * coords @ B.T
    return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def log_fourier_features(coords: torch.Tensor, omegas: torch.Tensor) -> torch.Tensor:
    """LAINR's gamma(c): per coordinate [sin(pi c omega), cos(pi c omega)], omega log-spaced;
    coords (..., d) -> (..., 2 d F)."""
    arg = torch.pi * coords.unsqueeze(-1) * omegas.to(coords.device)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1).flatten(-2)


def log_spaced_omegas(sigma: float, n: int) -> torch.Tensor:
    """logspace(1, log10(sigma), n): n frequencies from 10 to sigma."""
    return torch.logspace(1, math.log10(sigma), n)


def raster_patch_index(coords: torch.Tensor, patches_per_side: int) -> torch.Tensor:
    """Row-major index of the patch cell each (y, x) coordinate falls in. Truncation toward zero and
    no clamping, as in the original: coordinates outside [0, 1) give indices outside the grid."""
    row = (coords[..., 0] * patches_per_side).to(torch.int32)
    col = (coords[..., 1] * patches_per_side).to(torch.int32)
    return row * patches_per_side + col


def spatial_bias(coords: torch.Tensor, patches_per_side: int, num_tokens: int, alpha: float = 10.0) -> torch.Tensor:
    """(..., N, num_tokens) additive attention bias -alpha (t - s_j)^2 with t = patch index / P^2 and
    s_j = (j + 0.5) / num_tokens: a 1-D distance along the raster order, not a 2-D one."""
    t = raster_patch_index(coords, patches_per_side) / (patches_per_side * patches_per_side)
    s = torch.tensor([(j + 0.5) / num_tokens for j in range(num_tokens)], device=coords.device)
    return -1 * alpha * torch.abs((t.unsqueeze(-1) - s) ** 2)


def fourier_patch_code(rows: int, cols: int, width: int = 32) -> torch.Tensor:
    """The original tokenizer's fixed position code: (rows*cols, width). Patch positions on an
    endpoint grid (linspace(0, 1)), (x, y) order; sine at frequencies 1..width/4 and cosine at
    width/4+1..width/2 (in cycles per unit), laid out per frequency as [sin x, sin y, cos x, cos y]."""
    xx, yy = np.meshgrid(np.linspace(0, 1, cols), np.linspace(0, 1, rows))
    xy = torch.tensor(np.stack([xx, yy], axis=-1).reshape(-1, 2), dtype=torch.float32)
    periods = [1 / k for k in range(1, width // 2 + 1)]
    half = len(periods) // 2
    sin_periods = torch.tensor(periods[:half], dtype=torch.float32).view(1, -1, 1)
    cos_periods = torch.tensor(periods[half:], dtype=torch.float32).view(1, -1, 1)
    xy = xy.unsqueeze(1)
    sin_part = torch.sin(2 * torch.pi * (1 / sin_periods) * xy)
    cos_part = torch.cos(2 * torch.pi * (1 / cos_periods) * xy)
    return torch.cat([sin_part, cos_part], dim=-1).view(xy.shape[0], -1)
