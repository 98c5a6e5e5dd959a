"""The compiled GELU (the blocks' MLP) against torch's exact GELU, and the MLP node against the plain layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from parity.core.ssm import feedforward
from parity.core.ssm.compiled import run_gelu_backward, run_gelu_forward
from parity.testing import rel_err


@pytest.mark.parametrize("variant", ["native", "avx2", "scalar"])
@pytest.mark.parametrize("n", [1, 15, 16, 1000, 4099])
def test_gelu_and_its_derivative_match_torch(variant, n, kernel_build):
    kernel_build(variant)
    gen = torch.Generator().manual_seed(n)
    h = (torch.randn(n, generator=gen, dtype=torch.float64) * 4).float().double()  # float32 values
    h[: min(n, 4)] = torch.tensor([0.0, -30.0, 30.0, -9.0], dtype=torch.float64)[: min(n, 4)]
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    leaf = h.clone().requires_grad_()
    exact = nn.functional.gelu(leaf)  # float64 as the yardstick
    (exact_grad,) = torch.autograd.grad(exact, leaf, g)
    h32, g32 = h.float(), g.float()
    a = torch.empty_like(h32)
    run_gelu_forward(h32, a)
    exact, exact_grad = exact.detach(), exact_grad.detach()
    # within a few float32 roundings of the float64 values (torch's own float32 GELU is about 1e-6 off)
    assert ((a.double() - exact).abs() / exact.abs().clamp_min(1)).max() <= 3e-7
    ga, a2 = g32.clone(), torch.empty_like(h32)
    run_gelu_backward(h32, ga, a2)
    assert torch.equal(a2, a)
    assert ((ga.double() - exact_grad).abs() / g.abs().clamp_min(1)).max() <= 4e-7


@pytest.mark.parametrize("variant", ["native", "scalar"])
@pytest.mark.parametrize("rows, cols", [(7, 37), (3, 16), (5, 1)])
def test_gelu_adds_a_per_column_bias(variant, rows, cols, kernel_build):
    kernel_build(variant)
    gen = torch.Generator().manual_seed(rows * cols)
    h, bias, g = (torch.randn(rows, cols, generator=gen) * 3, torch.randn(cols, generator=gen),
                  torch.randn(rows, cols, generator=gen))
    a, a_plain = torch.empty_like(h), torch.empty_like(h)
    run_gelu_forward(h, a, bias)
    run_gelu_forward(h + bias, a_plain)
    assert torch.equal(a, a_plain)
    ga, ga_plain, a2 = g.clone(), g.clone(), torch.empty_like(h)
    run_gelu_backward(h, ga, a2, bias)
    run_gelu_backward(h + bias, ga_plain)
    assert torch.equal(ga, ga_plain) and torch.equal(a2, a)


def test_mlp_node_matches_the_plain_layers():
    torch.manual_seed(0)
    mlp = feedforward(24, 56)
    x = torch.randn(3, 11, 24, generator=torch.Generator().manual_seed(1))
    g = torch.randn(3, 11, 24, generator=torch.Generator().manual_seed(2))
    results = []
    for fused in (True, False):
        mlp.zero_grad()
        leaf = x.clone().requires_grad_()
        out = mlp(leaf) if fused else mlp[4](mlp[3](mlp[2](mlp[1](mlp[0](leaf)))))
        out.backward(g)
        results.append([out.detach(), leaf.grad, *[p.grad.clone() for p in mlp.parameters()]])
    for ours, plain in zip(*results):
        assert rel_err(ours, plain) <= 1e-5


def test_mlp_with_dropout_in_training_keeps_the_plain_path():
    torch.manual_seed(0)
    mlp = feedforward(8, 16, dropout=0.5)
    out = mlp(torch.randn(2, 3, 8, requires_grad=True))
    assert "FeedForwardGELU" not in type(out.grad_fn).__name__
    mlp.eval()
    out = mlp(torch.randn(2, 3, 8, requires_grad=True))
    assert "FeedForwardGELU" in type(out.grad_fn).__name__
