"""The simplified notebook's model. Mirrors ``ASF/cifar10_experiments.ipynb`` (cells 3-5:
``BiMamba``, ``MambaEncoder``, ``ImplicitSequentialBias``, ``ModulationNetwork``, ``Hyponet``,
``MambaGINR_CIFAR``, ``create_coordinate_grid``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from parity.coords import endpoint_grid
from parity.ssm import BiMambaEncoder


def create_coordinate_grid(H: int, W: int, device="cpu") -> torch.Tensor:
    """linspace(0, 1) with both ends, (y, x), flattened to (H*W, 2)."""
    return endpoint_grid(H, W, device=device)


def gaussian_fourier_features(coords: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """[sin(2 pi c B^T), cos(2 pi c B^T)]; same operation order as the notebook."""
    proj = 2 * np.pi * coords @ B.T
    return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class ImplicitSequentialBias(nn.Module):
    """LP tokens (randn * 0.02) interleaved with the patch tokens. Unlike the original, insertion and
    extraction use the same indices for every type."""

    def __init__(self, num_lp=64, dim=512, input_len=64, type="equidistant", init_std=0.02):
        super().__init__()
        self.num_lp, self.dim, self.type = num_lp, dim, type
        self.lps = nn.Parameter(torch.randn(num_lp, dim) * init_std)
        total = input_len + num_lp
        if type == "middle":
            start = (input_len - num_lp) // 2
            self.lp_idxs = torch.arange(start, start + num_lp)
        else:  # 'equidistant' and anything unknown
            self.lp_idxs = torch.linspace(0, total - 1, steps=num_lp).long()
        perm = torch.full((total,), -1, dtype=torch.long)
        perm[self.lp_idxs] = torch.arange(input_len, total)
        perm[perm == -1] = torch.arange(input_len)
        self.perm = perm

    def add_lp(self, x):
        lps = repeat(self.lps, "n d -> b n d", b=x.shape[0])
        return torch.cat([x, lps], dim=1)[:, self.perm]

    def extract_lp(self, x):
        return x[:, self.lp_idxs]


class ModulationNetwork(nn.Module):
    """Coordinates -> Gaussian Fourier features (B ~ N(0, 10^2)) -> MLP -> one-head attention over
    the LP features (scale dim^-0.5, no positional bias) -> MLP."""

    def __init__(self, coord_dim=2, hidden_dim=256, feature_dim=512, num_freqs=128):
        super().__init__()
        self.num_freqs, self.feature_dim = num_freqs, feature_dim
        self.register_buffer("B", torch.randn(num_freqs, coord_dim) * 10.0)
        self.coord_encoder = nn.Sequential(nn.Linear(num_freqs * 2, hidden_dim), nn.ReLU(),
                                           nn.Linear(hidden_dim, hidden_dim))
        self.query_proj = nn.Linear(hidden_dim, feature_dim)
        self.key_proj = nn.Linear(feature_dim, feature_dim)
        self.value_proj = nn.Linear(feature_dim, feature_dim)
        self.scale = feature_dim ** -0.5
        self.modulation_proj = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(),
                                             nn.Linear(hidden_dim, feature_dim))

    def fourier_encode(self, coords):
        return gaussian_fourier_features(coords, self.B)

    def forward(self, coords, lp_features, return_attention=False, bias=None):
        q = self.query_proj(self.coord_encoder(self.fourier_encode(coords)))
        k, v = self.key_proj(lp_features), self.value_proj(lp_features)
        scores = torch.einsum("bnd,bmd->bnm", q, k) * self.scale
        if bias is not None:  # harness toggle: the original's spatial bias; never set by the notebook
            scores = scores + bias
        weights = F.softmax(scores, dim=-1)
        modulation = self.modulation_proj(torch.einsum("bnm,bmd->bnd", weights, v))
        return (modulation, weights) if return_attention else modulation


class Hyponet(nn.Module):
    """concat(modulation, Gaussian Fourier features of its own coords) -> 3 x (Linear, ReLU) ->
    Linear(3) -> Sigmoid."""

    def __init__(self, coord_dim=2, hidden_dim=256, feature_dim=512, num_freqs=64):
        super().__init__()
        self.num_freqs = num_freqs
        self.register_buffer("B_hypo", torch.randn(num_freqs, coord_dim) * 10.0)
        self.decoder = nn.Sequential(
            nn.Linear(feature_dim + num_freqs * 2, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 3), nn.Sigmoid(),
        )

    def fourier_encode(self, coords):
        return gaussian_fourier_features(coords, self.B_hypo)

    def forward(self, coords, modulation):
        return self.decoder(torch.cat([modulation, self.fourier_encode(coords)], dim=-1))


class MambaGINR_CIFAR(nn.Module):  # noqa: N801  (the notebook's class name)
    """The notebook's model. Defaults are the class defaults; the notebook instantiates it with
    img_size=32, patch_size=4, dim=256, num_lp=32, mamba_depth=4, hidden_dim=128 (see
    ``NOTEBOOK_CIFAR_KWARGS``)."""

    def __init__(self, img_size=32, patch_size=4, dim=512, num_lp=64, mamba_depth=6, hidden_dim=256,
                 lp_type="equidistant"):
        super().__init__()
        self.img_size, self.patch_size, self.dim = img_size, patch_size, dim
        self.num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Linear(patch_size * patch_size * 3, dim)
        self.lp_module = ImplicitSequentialBias(num_lp=num_lp, dim=dim, input_len=self.num_patches, type=lp_type)
        self.encoder = BiMambaEncoder(dim=dim, depth=mamba_depth, ff_dim=dim * 4)
        self.modulation_net = ModulationNetwork(coord_dim=2, hidden_dim=hidden_dim, feature_dim=dim)
        self.hyponet = Hyponet(coord_dim=2, hidden_dim=hidden_dim, feature_dim=dim)

    def patchify(self, images):
        """(B, C, H, W) -> (B, num_patches, C*p*p), patches row-major, features in (C, p, p) order."""
        B, C, H, W = images.shape
        p = self.patch_size
        if H != self.img_size or W != self.img_size:
            raise ValueError(f"image size {H}x{W} does not match img_size={self.img_size}: "
                             "resize the images or build the model with their size")
        return rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)

    def encode(self, images):
        tokens = self.patch_embed(self.patchify(images))
        return self.lp_module.extract_lp(self.encoder(self.lp_module.add_lp(tokens)))

    def decode(self, lp_features, modulation_coords, hyponet_coords=None, return_modulation=False):
        """Coordinates (B, N, 2); the hyponet may read other ("decoupled") coordinates than the
        modulation network."""
        modulation = self.modulation_net(modulation_coords, lp_features)
        if hyponet_coords is None:
            hyponet_coords = modulation_coords
        rgb = self.hyponet(hyponet_coords, modulation)
        return (rgb, modulation) if return_modulation else rgb

    def forward(self, images, modulation_coords, hyponet_coords=None, return_modulation=False):
        return self.decode(self.encode(images), modulation_coords, hyponet_coords, return_modulation)


NOTEBOOK_CIFAR_KWARGS = dict(img_size=32, patch_size=4, dim=256, num_lp=32, mamba_depth=4, hidden_dim=128,
                             lp_type="equidistant")
