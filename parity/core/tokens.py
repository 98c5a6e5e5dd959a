"""Picking tokens of a sequence by position, as both ports' learnable-prompt (LP) interleave does."""

from __future__ import annotations

import torch


def take_tokens(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``x[:, positions]`` for x (batch, tokens, dim): the same values, through ``index_select``, whose backward is
    an index_add rather than advanced indexing's sort-based accumulating index_put (fwd + bwd at (16, 512, 256) on
    2 CPU threads: 2.0 against 6.5 ms; the gradients bit-identical for positions without repeats)."""
    return torch.index_select(x, 1, positions.to(x.device))
