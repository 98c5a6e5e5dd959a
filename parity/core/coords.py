"""Coordinate grids of the two sources, and the training-time jitter helper."""

from __future__ import annotations

import torch


def pixel_centre_grid(shape, value_range=(0.0, 1.0), device=None) -> torch.Tensor:
    """Pixel centres (i + 0.5) / s mapped into ``value_range``, shape (*shape, len(shape)),
    'ij' order (row coordinate first): the original's ``make_coord_grid``."""
    lo, hi = value_range
    axes = [lo + (hi - lo) * ((0.5 + torch.arange(s, device=device)) / s) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def endpoint_grid(height: int, width: int, device=None) -> torch.Tensor:
    """``linspace(0, 1)`` including both ends, (y, x) order, flattened to (H*W, 2): the notebook's
    ``create_coordinate_grid``."""
    y = torch.linspace(0, 1, height, device=device)
    x = torch.linspace(0, 1, width, device=device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([yy, xx], dim=-1).reshape(-1, 2)


def jitter(coords: torch.Tensor, std: float = 0.01, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian jitter added to a grid (the original trainer's ``add_gaussian_noise_to_grid``; it
    does not clamp)."""
    noise = torch.randn(coords.shape, generator=generator, dtype=coords.dtype, device=coords.device)
    return coords + noise * std


COORD_CONVENTIONS = ("endpoints", "centres")


def make_grid(height: int, width: int, convention: str, device=None) -> torch.Tensor:
    """(H*W, 2) query grid, (y, x) order, row-major: 'endpoints' (notebook) or 'centres' (original)."""
    if convention == "endpoints":
        return endpoint_grid(height, width, device=device)
    if convention == "centres":
        return pixel_centre_grid((height, width), device=device).reshape(-1, 2)
    raise ValueError(f"unknown coordinate convention {convention!r}: choose one of {', '.join(COORD_CONVENTIONS)}")
