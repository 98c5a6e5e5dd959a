"""The simplified notebook's model. Mirrors ``ASF/cifar10_experiments.ipynb`` (cells 3-5:
``BiMamba``, ``MambaEncoder``, ``ImplicitSequentialBias``, ``ModulationNetwork``, ``Hyponet``,
``MambaGINR_CIFAR``, ``create_coordinate_grid``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from parity.core.coords import endpoint_grid
from parity.core.features import (
    fourier_patch_code,
    gaussian_fourier_features,
    log_fourier_features,
    log_spaced_omegas,
    spatial_bias,
)
from parity.core.ssm import BiMambaEncoder
from parity.core.tokens import take_tokens


def create_coordinate_grid(H: int, W: int, device="cpu") -> torch.Tensor:
    """linspace(0, 1) with both ends, (y, x), flattened to (H*W, 2)."""
    return endpoint_grid(H, W, device=device)


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
            lp_idxs = torch.arange(start, start + num_lp)
        else:  # 'equidistant' and anything unknown
            lp_idxs = torch.linspace(0, total - 1, steps=num_lp).long()
        perm = torch.full((total,), -1, dtype=torch.long)
        perm[lp_idxs] = torch.arange(input_len, total)
        perm[perm == -1] = torch.arange(input_len)
        # positions as buffers outside the state dict: they move with the model, so a GPU step copies no index
        self.register_buffer("lp_idxs", lp_idxs, persistent=False)
        self.register_buffer("perm", perm, persistent=False)

    def add_lp(self, x):
        lps = repeat(self.lps, "n d -> b n d", b=x.shape[0])
        return take_tokens(torch.cat([x, lps], dim=1), self.perm)

    def extract_lp(self, x):
        return take_tokens(x, self.lp_idxs)


def _init_coordinate_features(module, buffer, fourier, num_freqs, coord_dim, fourier_dim, sigma) -> int:
    """Give ``module`` its coordinate features and return their width: the notebook's random
    Gaussian matrix (a buffer named ``buffer``, N(0, 10^2)), or LAINR's log-spaced bands (a toggle)."""
    if fourier == "gaussian":
        module.register_buffer(buffer, torch.randn(num_freqs, coord_dim) * 10.0)
        return num_freqs * 2
    module.omegas = log_spaced_omegas(sigma, fourier_dim // (2 * coord_dim))
    return fourier_dim


def _coordinate_features(module, buffer, coords):
    if module.fourier == "gaussian":
        return gaussian_fourier_features(coords, getattr(module, buffer))
    return log_fourier_features(coords, module.omegas)


class ModulationNetwork(nn.Module):
    """Coordinates -> Gaussian Fourier features (B ~ N(0, 10^2)) -> MLP -> one-head attention over
    the LP features (scale dim^-0.5, no positional bias) -> MLP.

    Harness toggles (defaults are the notebook): ``heads``/``dim_head``; ``fourier='logspace'``
    (LAINR's query bands, sigma ``sigma_q``, ``feature_dim`` features); ``bias_patches`` > 0 adds the
    original's spatial bias for that many patches per side."""

    def __init__(self, coord_dim=2, hidden_dim=256, feature_dim=512, num_freqs=128, heads=1, dim_head=None,
                 fourier="gaussian", fourier_dim=64, sigma_q=16.0, bias_patches=0, bias_alpha=10.0):
        super().__init__()
        self.num_freqs, self.feature_dim, self.fourier = num_freqs, feature_dim, fourier
        self.heads, self.dim_head = heads, dim_head or feature_dim
        self.bias_patches, self.bias_alpha = bias_patches, bias_alpha
        inner = self.heads * self.dim_head
        in_features = _init_coordinate_features(self, "B", fourier, num_freqs, coord_dim, fourier_dim, sigma_q)
        self.coord_encoder = nn.Sequential(nn.Linear(in_features, hidden_dim), nn.ReLU(),
                                           nn.Linear(hidden_dim, hidden_dim))
        self.query_proj = nn.Linear(hidden_dim, inner)
        self.key_proj = nn.Linear(feature_dim, inner)
        self.value_proj = nn.Linear(feature_dim, inner)
        self.scale = self.dim_head ** -0.5
        self.modulation_proj = nn.Sequential(nn.Linear(inner, hidden_dim), nn.ReLU(),
                                             nn.Linear(hidden_dim, feature_dim))

    def fourier_encode(self, coords):
        return _coordinate_features(self, "B", coords)

    def forward(self, coords, lp_features, return_attention=False):
        def split(t):
            return rearrange(t, "b n (h d) -> b h n d", h=self.heads)

        q = split(self.query_proj(self.coord_encoder(self.fourier_encode(coords))))
        k, v = split(self.key_proj(lp_features)), split(self.value_proj(lp_features))
        bias = None
        if self.bias_patches:  # per sample: the notebook decodes every image at its own coordinates
            bias = spatial_bias(coords, self.bias_patches, lp_features.shape[1], self.bias_alpha).unsqueeze(1)
        if return_attention:  # the weights themselves are wanted: the explicit softmax
            scores = torch.einsum("bhnd,bhmd->bhnm", q, k) * self.scale
            weights = F.softmax(scores if bias is None else scores + bias, dim=-1)
            attended = torch.einsum("bhnm,bhmd->bhnd", weights, v)
        else:  # the same attention, fused (3-4x faster on CPU, no (B, h, N, M) tensor kept for backward)
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        modulation = self.modulation_proj(rearrange(attended, "b h n d -> b n (h d)"))
        if return_attention:
            return modulation, weights.mean(dim=1)
        return modulation


class Hyponet(nn.Module):
    """concat(modulation, Gaussian Fourier features of its own coords) -> 3 x (Linear, ReLU) ->
    Linear(3) -> Sigmoid.

    Harness toggles (defaults are the notebook): ``modulation='add'`` enters the modulation the
    LAINR way, ReLU(ReLU(bandwidth(gamma)) + modulation_lin(modulation)), in place of the first
    layer; ``fourier='logspace'`` (LAINR's first band, sigma ``sigma``); ``output_activation='none'``."""

    def __init__(self, coord_dim=2, hidden_dim=256, feature_dim=512, num_freqs=64, fourier="gaussian",
                 fourier_dim=64, sigma=128.0, modulation="concat", output_activation="sigmoid"):
        super().__init__()
        self.num_freqs, self.fourier, self.modulation = num_freqs, fourier, modulation
        coord_features = _init_coordinate_features(self, "B_hypo", fourier, num_freqs, coord_dim, fourier_dim, sigma)
        if modulation == "add":
            self.bandwidth_lin = nn.Linear(coord_features, hidden_dim)
            self.modulation_lin = nn.Linear(feature_dim, hidden_dim)
            first = nn.Identity()
        else:
            first = nn.Linear(feature_dim + coord_features, hidden_dim)
        self.decoder = nn.Sequential(
            first, nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 3), nn.Sigmoid() if output_activation == "sigmoid" else nn.Identity(),
        )

    def fourier_encode(self, coords):
        return _coordinate_features(self, "B_hypo", coords)

    def forward(self, coords, modulation):
        features = self.fourier_encode(coords)
        if self.modulation == "add":
            return self.decoder(F.relu(self.bandwidth_lin(features)) + self.modulation_lin(modulation))
        return self.decoder(torch.cat([modulation, features], dim=-1))


class MambaGINR_CIFAR(nn.Module):  # noqa: N801  (the notebook's class name)
    """The notebook's model. Defaults are the class defaults; the notebook instantiates it with
    img_size=32, patch_size=4, dim=256, num_lp=32, mamba_depth=4, hidden_dim=128 (see
    ``NOTEBOOK_CIFAR_KWARGS``). Keyword-only arguments are harness toggles whose defaults are the
    notebook's behaviour."""

    def __init__(self, img_size=32, patch_size=4, dim=512, num_lp=64, mamba_depth=6, hidden_dim=256,
                 lp_type="equidistant", *, pos_code="none", lp_init_std=0.02, ff_dim=None, final_residual=False,
                 heads=1, dim_head=None, spatial_bias=False, bias_alpha=10.0, fourier="gaussian", fourier_dim=64,
                 sigma_q=16.0, sigma_hypo=128.0, modulation="concat", output_activation="sigmoid"):
        super().__init__()
        self.img_size, self.patch_size, self.dim = img_size, patch_size, dim
        self.num_patches = (img_size // patch_size) ** 2
        # Harness toggle: the original's fixed 32-wide Fourier code in front of each patch embedding.
        self.pos_code = (fourier_patch_code(img_size // patch_size, img_size // patch_size) if pos_code == "fourier"
                         else None)
        code_width = 0 if self.pos_code is None else self.pos_code.shape[1]
        self.patch_embed = nn.Linear(patch_size * patch_size * 3, dim - code_width)
        self.lp_module = ImplicitSequentialBias(num_lp=num_lp, dim=dim, input_len=self.num_patches, type=lp_type,
                                                init_std=lp_init_std)
        self.encoder = BiMambaEncoder(dim=dim, depth=mamba_depth, ff_dim=ff_dim or dim * 4,
                                      add_final_residual=final_residual)
        self.modulation_net = ModulationNetwork(coord_dim=2, hidden_dim=hidden_dim, feature_dim=dim, heads=heads,
                                                dim_head=dim_head, fourier=fourier, fourier_dim=fourier_dim,
                                                sigma_q=sigma_q, bias_alpha=bias_alpha,
                                                bias_patches=int(self.num_patches ** 0.5) if spatial_bias else 0)
        self.hyponet = Hyponet(coord_dim=2, hidden_dim=hidden_dim, feature_dim=dim, fourier=fourier,
                               fourier_dim=fourier_dim, sigma=sigma_hypo, modulation=modulation,
                               output_activation=output_activation)

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
        if self.pos_code is not None:
            tokens = torch.cat([self.pos_code.to(tokens.device).expand(tokens.shape[0], -1, -1), tokens], dim=2)
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
