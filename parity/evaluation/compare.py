"""Comparing tensors and models' outputs: the error measures, the closeness test and the small tables
that both the assertions (``parity.testing``) and the localiser (``diagnose``) report with."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A plain pipe table; cells are str()-ed."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x: float) -> str:
    """Errors as short numbers: 0, 3.2e-07, inf."""
    return "0" if x == 0 else f"{x:.3g}"


def tensor_error(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|), in float64; inf when the shapes differ."""
    if a.shape != b.shape:
        return math.inf, math.inf
    a, b = a.detach().double(), b.detach().double()
    if a.numel() == 0:
        return 0.0, 0.0
    diff = (a - b).abs()
    diff = torch.where(torch.isnan(a) & torch.isnan(b), torch.zeros_like(diff), diff)  # NaN in both agrees
    max_abs = diff.max().item()
    scale = b.abs().max().item()
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    return max_abs, rel


def tensors_close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> bool:
    """torch.isclose everywhere (|a - b| <= atol + rtol |b|), NaN equal to NaN; False on a shape mismatch."""
    if a.shape != b.shape:
        return False
    return bool(torch.isclose(a.detach().double(), b.detach().double(), rtol=rtol, atol=atol, equal_nan=True).all())


def model_calls(call) -> tuple[Callable, Callable]:
    """(call for a, call for b) from None (``model(*inputs)``), one callable ``call(model, *inputs)``
    for both, or a pair of them (models called differently, e.g. on two coordinate grids)."""
    if call is None:
        call = plain_call
    if isinstance(call, (tuple, list)):
        if len(call) != 2 or not all(callable(c) for c in call):
            raise TypeError("call must be a callable or a pair (call_a, call_b) of callables")
        return call[0], call[1]
    if not callable(call):
        raise TypeError(f"call must be a callable or a pair of callables, got {type(call).__name__}")
    return call, call


def as_inputs(inputs) -> tuple:
    """A tuple of positional arguments; a lone tensor is one argument."""
    return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)


def plain_call(model, *inputs):
    """``model(*inputs)``: how a model is called when the caller does not say."""
    return model(*inputs)


def named_tensors(obj, prefix: str = "output") -> dict[str, torch.Tensor]:
    """Every tensor inside nested tuples, lists and dicts, keyed by its path (``output[0]['rgb']``);
    other values (modules, None, strings) are not compared."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, Mapping) else enumerate(obj) if isinstance(obj, (tuple, list)) else ()
    found: dict[str, torch.Tensor] = {}
    for key, value in items:
        found.update(named_tensors(value, f"{prefix}[{key!r}]"))
    return found
