"""Patch tokenizer of the original. Mirrors ``trans-inr-master/models/tokenizers/mamba_tokenizer.py``
(``mamba_patch_tokenizer``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from parity.core.features import fourier_patch_code

from .registry import register


@register("mamba_patch_tokenizer")
class MambaPatchTokenizer(nn.Module):
    """unfold patches (C, p, p order) -> ``prefc``; with ``pos_emb='fourier'`` a fixed 32-wide code is
    concatenated in front, so ``prefc`` maps to ``dim - 32``. ``postfc`` exists in the source's state
    dict but is never used; it is kept so checkpoints load strictly."""

    def __init__(self, input_size, patch_size, dim, padding=0, img_channels=3, pos_emb="learned", pos_emb_dim=32):
        super().__init__()
        def pair(v):
            return (v, v) if isinstance(v, int) else tuple(v)

        input_size, self.patch_size, self.padding = pair(input_size), pair(patch_size), pair(padding)
        self.input_size, self.img_channels = input_size, img_channels
        patch_numel = self.patch_size[0] * self.patch_size[1] * img_channels
        self.postfc = nn.Linear(patch_numel, dim)  # unused by the source's forward
        self.grid = tuple((input_size[i] + 2 * self.padding[i]) // self.patch_size[i] for i in range(2))
        self.n_patches = self.grid[0] * self.grid[1]
        self.learned_posemb = pos_emb == "learned"
        self.pos_emb = pos_emb
        if pos_emb == "none":  # harness toggle: no position code, prefc maps to the full dim
            self.posemb = None
        elif self.learned_posemb:
            self.posemb = nn.Parameter(torch.randn(self.n_patches, dim))
        else:
            # A plain tensor in the source: not a parameter, not a buffer, not in the state dict.
            self.posemb = fourier_patch_code(*self.grid, width=pos_emb_dim)
            dim -= pos_emb_dim
        self.dim = dim
        self.prefc = nn.Linear(patch_numel, dim)

    def forward(self, data):
        x = data["inp"] if isinstance(data, dict) else data
        size = tuple(x.shape[-2:])
        if size != self.input_size:
            raise ValueError(f"image size {size[0]}x{size[1]} does not match the tokenizer's input_size "
                             f"{self.input_size[0]}x{self.input_size[1]}: resize the images or rebuild the model")
        x = F.unfold(x, self.patch_size, stride=self.patch_size, padding=self.padding)
        x = self.prefc(rearrange(x, "b cpp l -> b l cpp").contiguous())
        if self.posemb is None:
            return x
        if self.learned_posemb:
            return x + self.posemb.unsqueeze(0)
        code = self.posemb.to(x.device).expand(x.shape[0], -1, -1)
        return torch.cat([code, x], dim=2)
