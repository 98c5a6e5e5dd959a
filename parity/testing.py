"""Helpers for asserting parity in tests (ours and users')."""

from __future__ import annotations

import torch


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|: the golden tensors' tolerance measure."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()
