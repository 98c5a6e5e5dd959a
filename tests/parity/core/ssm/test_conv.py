"""The compiled depthwise causal conv1d + SiLU (the Mamba mixer's ``act(conv1d(x)[..., :L])``) against nn.Conv1d
and SiLU: output and the gradients wrt input, weight and bias, on every kernel build."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from einops import rearrange

from parity.core.ssm.compiled import conv_silu_compiled
from parity.testing import rel_err


def reference(x, conv):
    return nn.functional.silu(conv(x)[..., :x.shape[-1]])


def compare(x, conv, grad_seed=1, tol=1e-5):
    """Output and gradients of the kernel and of nn.Conv1d + SiLU on the same input and output gradient."""
    results = []
    for fn in (reference, lambda x, conv: conv_silu_compiled(x, conv.weight, conv.bias)):
        conv.zero_grad()
        leaf = x.detach().clone().requires_grad_()
        out = fn(leaf, conv)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed))
        out.backward(g)
        grads = [leaf.grad, conv.weight.grad] + ([conv.bias.grad] if conv.bias is not None else [])
        results.append([out.detach(), *[t.clone() for t in grads]])
    for name, ours, ref in zip(("out", "x", "weight", "bias"), results[1], results[0]):
        assert ours.shape == ref.shape, name
        assert rel_err(ours, ref) <= tol, name


def conv_layer(channels, k=4, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Conv1d(channels, channels, kernel_size=k, groups=channels, padding=k - 1, bias=bias)


@pytest.mark.parametrize("variant", ["native", "avx2", "scalar"])
@pytest.mark.parametrize("channels, length", [(13, 1), (13, 7), (37, 16), (37, 33), (8, 515)])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_conv1d_and_silu(variant, channels, length, bias, kernel_build):
    kernel_build(variant)
    x = torch.randn(3, channels, length, generator=torch.Generator().manual_seed(channels + length)) * 2
    compare(x, conv_layer(channels, bias=bias, seed=length))


@pytest.mark.parametrize("variant", ["native", "scalar"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_other_kernel_sizes(variant, k, kernel_build):
    kernel_build(variant)
    x = torch.randn(2, 13, 21, generator=torch.Generator().manual_seed(k))
    compare(x, conv_layer(13, k=k, seed=k))


def test_reads_and_writes_strided_rows(kernel_build):
    """The mixer's input is the channel block of a (2 d, batch L) matmul result: rows (b, d) at b L + d batch L."""
    kernel_build("native")
    batch, channels, length = 3, 13, 40
    xz = torch.randn(2 * channels, batch * length, generator=torch.Generator().manual_seed(5))
    x = rearrange(xz, "d (b l) -> b d l", b=batch)[:, :channels]
    assert not x.is_contiguous()
    compare(x, conv_layer(channels, seed=3))


def test_threads_split_channels_without_changing_results():
    conv = conv_layer(37, seed=2)
    x = torch.randn(2, 37, 50, generator=torch.Generator().manual_seed(9), requires_grad=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):
            torch.set_num_threads(threads)
            conv.zero_grad()
            out = conv_silu_compiled(x, conv.weight, conv.bias)
            results.append([out, *torch.autograd.grad(out.square().sum(), [x, conv.weight, conv.bias])])
    finally:
        torch.set_num_threads(before)
    for one, three in zip(*results):
        assert torch.equal(one, three)


def test_float64_falls_back_to_pytorch():
    conv = conv_layer(5).double()
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    assert torch.equal(conv_silu_compiled(x, conv.weight, conv.bias), reference(x, conv))
