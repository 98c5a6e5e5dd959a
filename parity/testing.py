"""Helpers for asserting parity in tests (ours and users')."""

from __future__ import annotations

import torch


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|: the golden tensors' tolerance measure."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def grad_err(actual, expected, zero: float = 1e-12) -> float:
    """rel_err, except for a gradient that is zero up to rounding (a parameter the loss cannot see):
    then both must be rounding-level, and the error is 0 when they are."""
    expected = torch.as_tensor(expected)
    if expected.abs().max() < zero:
        return 0.0 if torch.as_tensor(actual).abs().max() < zero else float("inf")
    return rel_err(actual, expected)
