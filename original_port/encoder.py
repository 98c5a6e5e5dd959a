"""The original's Mamba encoder. Mirrors ``trans-inr-master/models/mamba.py`` (``mamba_encoder``);
the layers themselves are parity's CUDA-free Mamba."""

from __future__ import annotations

from parity.core.ssm import BiMambaEncoder

from .registry import register


@register("mamba_encoder")
class MambaEncoder(BiMambaEncoder):
    """depth x Block(BiMamba, LayerNorm, MLP dim -> ff_dim -> dim); ff_dim defaults to 4*dim."""

    def __init__(self, depth=6, dim=768, ff_dim=None, dropout=0.0, add_final_residual=False):
        super().__init__(dim=dim, depth=depth, ff_dim=ff_dim or 4 * dim, dropout=dropout,
                         add_final_residual=add_final_residual)
