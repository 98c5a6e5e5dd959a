"""MAMBA-GINR + LAINR, the original model. Mirrors ``trans-inr-master/models/mamba_lainr_inr.py``
(``mamba_lainr_inr``)."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import repeat

from parity.core.tokens import take_tokens

from . import decoder as _decoder  # noqa: F401  (registers lainr_mlp_bias)
from . import encoder as _encoder  # noqa: F401  (registers mamba_encoder)
from . import tokenizer as _tokenizer  # noqa: F401  (registers mamba_patch_tokenizer)
from .registry import make, register

LP_TYPES = ("equidistant", "middle", "n_group")


def equidistant_positions(seq_len: int, num_lp: int) -> torch.Tensor:
    """Where the LP tokens sit in the interleaved sequence: linspace(0, L + num_lp - 1, num_lp)."""
    return torch.linspace(0, seq_len + num_lp - 1, steps=num_lp).long()


def lp_read_positions(seq_len: int, num_lp: int, lp_type: str = "equidistant", n_group: int = 1):
    """Where the LP tokens are read back from (the source's ``set_lp_idxs``). Only 'equidistant'
    matches where they were inserted; 'middle' and 'n_group' read other tokens (a source defect)."""
    if lp_type == "equidistant":
        return equidistant_positions(seq_len, num_lp)
    if lp_type == "middle":
        return [k + seq_len // 2 for k in range(num_lp)]
    if lp_type == "n_group":
        if num_lp % n_group != 0:
            raise ValueError(f"n_group={n_group} must divide num_lp={num_lp}: choose a divisor")
        starts = torch.linspace(0, seq_len + num_lp - n_group, steps=num_lp // n_group).long()
        return [start + i for start in starts for i in range(n_group)]
    raise ValueError(f"unknown LP type {lp_type!r}: choose one of {', '.join(LP_TYPES)}")


def interleave_permutation(seq_len: int, num_lp: int, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Permutation of cat([patches, lps]) that puts the LPs at ``positions`` (equidistant by default)
    and the patches, in order, everywhere else."""
    positions = equidistant_positions(seq_len, num_lp) if positions is None else torch.as_tensor(positions)
    perm = torch.full((seq_len + num_lp,), -1, dtype=torch.long)
    perm[positions] = torch.arange(seq_len, seq_len + num_lp)
    perm[perm == -1] = torch.arange(seq_len)
    return perm


@register("mamba_lainr_inr")
class MambaLainrInr(nn.Module):
    """Tokenizer -> LP interleave -> BiMamba encoder -> LP tokens -> LAINR decoder.

    Harness toggles (defaults are the source): ``lp_init_std``; ``decoder_width``;
    ``fix_lp_extraction`` reads the LPs back from where they were inserted (the 'middle' and
    'n_group' types read other tokens in the source).
    """

    def __init__(self, tokenizer, hyponet, mamba_encoder, num_lp=128, type="equidistant", n_group=1,
                 latent_token_len=64, lp_init_std=1.0, fix_lp_extraction=False, decoder_width=None):
        super().__init__()
        self.dim = mamba_encoder["args"]["dim"]
        self.latent_token_len = latent_token_len  # unused by the source, kept for spec compatibility
        self.tokenizer = make(tokenizer, args={"dim": self.dim})
        # The source ties the decoder width to the encoder dim; decoder_width (a toggle) unties it.
        untied = {"context_dim": self.dim} if decoder_width else {}
        self.hyponet = make(hyponet, args={"hidden_dim": decoder_width or self.dim, **untied})
        self.mamba_encoder = make(mamba_encoder)
        self.input_len = self.tokenizer.n_patches
        self.type, self.num_lp, self.n_group = type, num_lp, n_group
        self.lps = nn.Parameter(torch.randn(num_lp, self.dim) * lp_init_std)  # source: std 1
        # positions as buffers outside the state dict: they move with the model, so a GPU step copies no index
        source_idxs = lp_read_positions(self.input_len, num_lp, type, n_group)  # checked even where the fix applies
        lp_idxs = equidistant_positions(self.input_len, num_lp) if fix_lp_extraction else torch.as_tensor(source_idxs)
        self.register_buffer("lp_idxs", lp_idxs, persistent=False)
        self.register_buffer("perm", interleave_permutation(self.input_len, num_lp), persistent=False)

    def add_lp(self, tokens):
        lps = repeat(self.lps, "n d -> b n d", b=tokens.shape[0])
        return take_tokens(torch.cat([tokens, lps], dim=1), self.perm)

    def extract_lp_tokens(self, x):
        return take_tokens(x, self.lp_idxs)

    def encode(self, images) -> torch.Tensor:
        """images (B, C, H, W) -> LP tokens (B, num_lp, dim)."""
        tokens = self.tokenizer({"inp": images})
        return self.extract_lp_tokens(self.mamba_encoder(self.add_lp(tokens)))

    def decode(self, tokens, coords) -> torch.Tensor:
        """tokens (B, num_lp, dim), coords (B, H, W, 2) -> (B, H, W, 3)."""
        return self.hyponet(coords, tokens)

    def forward(self, data):
        """As the source: ``model({'inp': images})`` returns ``(decoder, tokens)``."""
        return self.hyponet, self.encode(data["inp"])
