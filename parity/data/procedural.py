"""A procedural image set: made offline, no files, deterministic, and renderable at any resolution.

Every image is a continuous scene on the unit square, drawn by a generator seeded from
(seed, split, index) alone, then rendered at pixel centres (supersampled, so sharp edges are
anti-aliased). Because the scene does not depend on the resolution, ``render(i, 4 * size)`` is the
true high-resolution version of image ``i``: ground truth for super-resolution, which CIFAR-10
cannot give. Noise is left out on purpose: per-pixel noise would differ between resolutions.

Four kinds, label = kind, so that a linear probe has something to find:
    0 waves    smooth sums of oriented sinusoids
    1 discs    flat discs with sharp edges on a flat background
    2 stripes  a sharp-edged square-wave grating in two colours
    3 blobs    smooth Gaussian blobs on a linear colour gradient
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch.utils.data import Dataset

KINDS = ("waves", "discs", "stripes", "blobs")


def _generator(seed: int, split: str, index: int) -> torch.Generator:
    # A stable hash (Python's hash() of strings changes per process) of everything the scene depends on.
    digest = hashlib.blake2b(f"procedural:{seed}:{split}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def _uniform(g: torch.Generator, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=g)


def _supersampling(size: int) -> int:
    # Enough samples per pixel to anti-alias edges; fewer at large sizes where pixels are already fine.
    return 4 if size <= 64 else 2 if size <= 256 else 1


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample positions in [0, 1]: ``ss`` x ``ss`` points spread evenly inside each pixel. Returns
    y, x of shape (size * ss, size * ss); rows and columns of the image grow with y and x."""
    ss = _supersampling(size)
    t = (torch.arange(size * ss, dtype=torch.float32) + 0.5) / (size * ss)
    return torch.meshgrid(t, t, indexing="ij")


def _project(g: torch.Generator, y: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
    """n random directions: (n, H, W) positions along each."""
    angle = _uniform(g, n, high=math.pi)
    return torch.cos(angle)[:, None, None] * x + torch.sin(angle)[:, None, None] * y


def _waves(g, y, x):
    n = 3
    freq = _uniform(g, n, low=1.0, high=4.0)  # cycles per image: smooth at 32 px
    phase = _uniform(g, n, high=2 * math.pi)
    waves = torch.sin(2 * math.pi * freq[:, None, None] * _project(g, y, x, n) + phase[:, None, None])
    colours = _uniform(g, n, 3, low=-0.25, high=0.25)
    base = _uniform(g, 3, low=0.3, high=0.7)
    return base[:, None, None] + torch.einsum("nc,nhw->chw", colours, waves)


def _discs(g, y, x):
    image = _uniform(g, 3)[:, None, None].expand(3, *x.shape).clone()
    n = int(torch.randint(2, 6, (1,), generator=g))
    centres = _uniform(g, n, 2, low=0.1, high=0.9)
    radii = _uniform(g, n, low=0.08, high=0.3)
    colours = _uniform(g, n, 3)
    for k in range(n):  # painted in order: later discs cover earlier ones
        inside = (y - centres[k, 0]) ** 2 + (x - centres[k, 1]) ** 2 < radii[k] ** 2
        image = torch.where(inside, colours[k][:, None, None], image)
    return image


def _stripes(g, y, x):
    freq = _uniform(g, 1, low=2.0, high=6.0)
    phase = _uniform(g, 1, high=2 * math.pi)
    on = torch.sin(2 * math.pi * freq[:, None, None] * _project(g, y, x, 1) + phase[:, None, None])[0] > 0
    a, b = _uniform(g, 3), _uniform(g, 3)
    return torch.where(on, a[:, None, None], b[:, None, None])


def _blobs(g, y, x):
    start, end = _uniform(g, 3), _uniform(g, 3)
    ramp = _project(g, y, x, 1)[0].clamp(0, 1)
    image = start[:, None, None] + (end - start)[:, None, None] * ramp
    n = int(torch.randint(2, 5, (1,), generator=g))
    centres = _uniform(g, n, 2, low=0.1, high=0.9)
    widths = _uniform(g, n, low=0.08, high=0.2)
    colours = _uniform(g, n, 3, low=-0.6, high=0.6)
    bumps = torch.exp(-((y - centres[:, 0, None, None]) ** 2 + (x - centres[:, 1, None, None]) ** 2)
                      / (2 * widths[:, None, None] ** 2))
    return image + torch.einsum("nc,nhw->chw", colours, bumps)


_PAINTERS = (_waves, _discs, _stripes, _blobs)


class ProceduralImages(Dataset):
    """``n`` procedural images of ``size`` x ``size``; item ``i`` is (float32 (3, size, size) in
    [0, 1], kind). Image ``i`` is a pure function of (seed, split, i, size)."""

    classes = list(KINDS)
    labelled = True

    def __init__(self, n: int, size: int = 32, seed: int = 0, split: str = "train"):
        self.n, self.size, self.seed, self.split = int(n), int(size), int(seed), str(split)

    def __len__(self) -> int:
        return self.n

    def label(self, i: int) -> int:
        return i % len(KINDS)  # cycling the kinds keeps every prefix (subset) balanced

    def render(self, i: int, size: int | None = None) -> torch.Tensor:
        """Image ``i`` at ``size`` x ``size`` (default: the dataset's size); the same scene at every size."""
        if not 0 <= i < self.n:
            raise IndexError(f"procedural image {i} out of range 0..{self.n - 1}")
        size = self.size if size is None else int(size)
        y, x = _grid(size)
        g = _generator(self.seed, self.split, i)
        image = _PAINTERS[self.label(i)](g, y, x).clamp(0, 1)
        ss = _supersampling(size)
        if ss > 1:  # average the samples inside each pixel (box filter)
            image = torch.nn.functional.avg_pool2d(image[None], ss)[0]
        return image.contiguous()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if i < 0:
            i += self.n
        return self.render(i), self.label(i)
