"""The LAINR decoder with its spatial attention bias. Mirrors
``trans-inr-master/models/hyponets/lainr_mlp_bias.py`` (``lainr_mlp_bias``)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange, repeat

from .registry import register


def log_fourier_features(coords: torch.Tensor, omegas: torch.Tensor) -> torch.Tensor:
    """gamma(c): per coordinate [sin(pi c omega), cos(pi c omega)]; coords (N, d) -> (N, 2 d F)."""
    arg = torch.pi * coords.unsqueeze(-1) * omegas.view(1, 1, -1).to(coords.device)
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1).view(coords.shape[0], -1)


def raster_patch_index(coords: torch.Tensor, patches_per_side: int) -> torch.Tensor:
    """Row-major index of the patch cell each (y, x) coordinate falls in. Truncation toward zero and
    no clamping, as in the source: coordinates outside [0, 1) give indices outside the grid."""
    row = (coords[:, 0] * patches_per_side).to(torch.int32)
    col = (coords[:, 1] * patches_per_side).to(torch.int32)
    return row * patches_per_side + col


def spatial_bias(coords: torch.Tensor, patches_per_side: int, num_tokens: int, alpha: float = 10.0) -> torch.Tensor:
    """(N, num_tokens) additive attention bias -alpha (t - s_j)^2 with t = patch index / P^2 and
    s_j = (j + 0.5) / num_tokens: a 1-D distance along the raster order, not a 2-D one."""
    t = raster_patch_index(coords, patches_per_side) / (patches_per_side * patches_per_side)
    s = torch.tensor([(j + 0.5) / num_tokens for j in range(num_tokens)], device=coords.device)
    return -1 * alpha * torch.abs((t.unsqueeze(1) - s.unsqueeze(0)) ** 2)


class SharedTokenCrossAttention(nn.Module):
    """Every query attends to the same token set; q and kv projections without bias."""

    def __init__(self, query_dim, context_dim=None, heads=2, dim_head=64):
        super().__init__()
        context_dim = context_dim or query_dim
        self.heads, self.dim_head, self.scale = heads, dim_head, dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, heads * dim_head, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * heads * dim_head, bias=False)
        self.to_out = nn.Linear(heads * dim_head, query_dim)

    def forward(self, x, context, bias=None):
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = (rearrange(t, "b m (h d) -> b h m d", h=self.heads) for t in self.to_kv(context).chunk(2, dim=-1))
        sim = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        if bias is not None:
            sim = sim + bias.unsqueeze(1)  # (B, N, M) -> every head
        out = torch.matmul(sim.softmax(dim=-1), v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


@register("lainr_mlp_bias")
class LAINRDecoder(nn.Module):
    """Query: ReLU(query_lin(gamma_q)) -> cross-attention over the LP tokens with the spatial bias.
    Level k: h_k = ReLU(bandwidth_lin_k(gamma_k)); m_k = ReLU(h_k + modulation_lin_k(modulation));
    v_0 = m_0, v_k = ReLU(hv_lin(m_k + v_{k-1})); output = sum_k out_lin_k(v_k).

    ``per_sample_coords`` (off in the source) is an improvement toggle: the source takes the
    coordinates of batch element 0 for the whole batch."""

    def __init__(self, feature_dim, input_dim, output_dim, sigma_q, sigma_ls, n_patches, hidden_dim=256,
                 context_dim=None, heads=2, dim_head=64, alpha=10.0, use_spatial_bias=True,
                 per_sample_coords=False):
        super().__init__()
        self.layer_num = len(sigma_ls)
        self.n = feature_dim // (2 * input_dim)
        self.omegas = torch.logspace(1, math.log10(sigma_q), self.n)
        self.omegas_l = [torch.logspace(1, math.log10(s), self.n) for s in sigma_ls]
        self.patch_num = int(math.sqrt(n_patches))
        self.alpha = alpha
        self.use_spatial_bias = use_spatial_bias
        self.per_sample_coords = per_sample_coords

        self.query_lin = nn.Linear(feature_dim, hidden_dim)
        self.modulation_ca = SharedTokenCrossAttention(hidden_dim, context_dim, heads=heads, dim_head=dim_head)
        self.bandwidth_lins = nn.ModuleList([nn.Linear(feature_dim, hidden_dim) for _ in sigma_ls])
        self.modulation_lins = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in sigma_ls])
        self.hv_lins = nn.ModuleList([nn.Linear(hidden_dim, hidden_dim) for _ in sigma_ls[1:]])
        self.out_lins = nn.ModuleList([nn.Linear(hidden_dim, output_dim) for _ in sigma_ls])
        self.act = nn.ReLU()

    def _batched(self, fn, coords):
        """Apply a per-grid function to the batch: once on element 0 (source) or per sample."""
        if self.per_sample_coords:
            return torch.stack([fn(c) for c in coords])
        return repeat(fn(coords[0]), "n d -> b n d", b=coords.shape[0])

    def forward(self, coords, tokens):
        B, query_shape = coords.shape[0], coords.shape[1:-1]
        coords = coords.reshape(B, -1, coords.shape[-1])
        bias = None
        if self.use_spatial_bias:
            bias = self._batched(lambda c: spatial_bias(c, self.patch_num, tokens.shape[1], self.alpha), coords)
        query = self.act(self.query_lin(self._batched(lambda c: log_fourier_features(c, self.omegas), coords)))
        modulation = self.modulation_ca(query, context=tokens, bias=bias)

        levels = []
        for k in range(self.layer_num):
            gamma = self._batched(lambda c: log_fourier_features(c, self.omegas_l[k]), coords)
            h = self.act(self.bandwidth_lins[k](gamma))
            levels.append(self.act(h + self.modulation_lins[k](modulation)))
        hidden = [levels[0]]
        for k in range(1, self.layer_num):
            hidden.append(self.act(self.hv_lins[k - 1](levels[k] + hidden[k - 1])))
        out = sum(lin(h) for lin, h in zip(self.out_lins, hidden))
        return out.view(B, *query_shape, -1)
