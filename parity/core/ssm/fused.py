"""The Mamba mixer's core on the compiled CPU kernels: from the in_proj output to the gated scan output, the
way mamba_ssm's ``mamba_inner_fn`` does it on a GPU (one autograd node, its backward written out).

    xz (2 d_inner, batch L) --conv1d + SiLU--> x --x_proj--> dt, B, C --dt_proj--> delta
    (x, delta, B, C, z) --selective scan (D skip, silu(z) gate)--> y (batch, L, d_inner)

The layouts are chosen so that nothing is copied: x and z are read in place as channel blocks of xz (each
(batch, channel) row's steps contiguous), x is made in that (d_inner, batch L) layout too, delta is never
made at all (the scan computes dt_proj's product where it needs it, from a (dt_rank, batch L) copy of dt_proj's
input), B and C are read in place from x_proj's (batch L, dt_rank + 2 d_state) output, and the scan writes y as
(batch, L, d_inner), what out_proj reads. Backward writes the gradients of x and z straight into the two blocks of xz's
gradient (no concatenation), and the gradients of B and C into x_proj's output gradient.

A bidirectional layer's backward mixer runs on the same xz layout (``reverse``): the conv reads x's rows and the
scan z's rows backwards in time, and the scan writes y backwards, so the sequence is never flipped.

Kept for backward: xz and x_proj's output; x (after the conv) is recomputed into a scratch buffer
(``scratch``), where the scan's gradients wrt x and delta go too. The numbers are those of the unfused
mixer up to float rounding: the same operations, in the same order except for the summation order inside the
matrix products (x_proj reads x in its (d_inner, batch L) layout).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch.autograd.function import once_differentiable

from .compiled import (
    MAX_CONV_TAPS,
    kernel_library,
    padded_state,
    run_conv_backward,
    run_conv_forward,
    run_gelu_backward,
    run_gelu_forward,
    run_scan_backward,
    run_scan_forward,
    scratch,
)


def rows(t: torch.Tensor, batch: int) -> torch.Tensor:
    """A (channels, batch L) tensor seen as (batch, channels, L) rows."""
    return rearrange(t, "d (b l) -> b d l", b=batch)


def _state_views(x_dbl: torch.Tensor, batch: int, rank: int, d_state: int):
    """B and C as (batch, L, d_state) views of x_proj's (batch L, rank + 2 d_state) output."""
    x = rearrange(x_dbl, "(b l) n -> b l n", b=batch)
    return x[..., rank:rank + d_state], x[..., rank + d_state:]


class MambaInner(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_bias, A, D, batch, reverse,
                out_scale):
        d_inner, rank, d_state = A.shape[0], dt_proj_weight.shape[1], A.shape[1]
        L = xz.shape[1] // batch
        w = rearrange(conv_weight, "d 1 k -> d k")
        x = scratch("mixer-x", d_inner, batch * L)
        run_conv_forward(rows(xz[:d_inner], batch), w, conv_bias, rows(x, batch), reverse)
        x_dbl = torch.mm(x.t(), x_proj_weight.t())
        delta_proj = (x_dbl[:, :rank].t().contiguous(), dt_proj_weight.contiguous())
        A_p = padded_state(A, kernel_library().scan_lanes())
        B, C = (padded_state(t, A_p.shape[1]) if A_p.shape[1] != d_state else t
                for t in _state_views(x_dbl, batch, rank, d_state))
        y = xz.new_empty(batch, L, d_inner)
        run_scan_forward(rows(x, batch), None, A_p, B, C, D, rows(xz[d_inner:], batch), dt_bias, True,
                         rearrange(y, "b l d -> b d l"), reverse, out_scale, delta_proj)
        ctx.save_for_backward(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_bias, A, D, x_dbl)
        ctx.batch, ctx.reverse, ctx.out_scale = batch, reverse, out_scale
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, gy):
        xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_bias, A, D, x_dbl = ctx.saved_tensors
        batch, reverse = ctx.batch, ctx.reverse
        d_inner, rank, d_state = A.shape[0], dt_proj_weight.shape[1], A.shape[1]
        BL = xz.shape[1]
        if not gy.is_contiguous():
            gy = gy.contiguous()
        w = rearrange(conv_weight, "d 1 k -> d k")
        # the forward's x again
        x = scratch("mixer-x", d_inner, BL)
        run_conv_forward(rows(xz[:d_inner], batch), w, conv_bias, rows(x, batch), reverse)
        dt_low = x_dbl[:, :rank].t().contiguous()
        delta_proj = (dt_low, dt_proj_weight.contiguous())
        A_p = padded_state(A, kernel_library().scan_lanes())
        B, C = (padded_state(t, A_p.shape[1]) if A_p.shape[1] != d_state else t
                for t in _state_views(x_dbl, batch, rank, d_state))

        gxz = torch.empty_like(xz)
        gx = scratch("mixer-gx", d_inner, BL)
        gdelta = scratch("mixer-gdelta", d_inner, BL)
        gx_dbl = torch.empty_like(x_dbl)
        gA, gbias, gD = torch.empty_like(A_p), torch.empty_like(dt_bias), torch.empty_like(D)
        gB, gC = (rearrange(t, "b l n -> b n l") for t in _state_views(gx_dbl, batch, rank, d_state))
        run_scan_backward(rows(x, batch), None, A_p, B, C, D, rows(xz[d_inner:], batch), dt_bias, True,
                          rearrange(gy, "b l d -> b d l"), rows(gx, batch), rows(gdelta, batch),
                          rows(gxz[d_inner:], batch), gA, gbias, gD, gB, gC, reverse, ctx.out_scale, delta_proj)
        # dt_proj and x_proj, backwards (dt_proj's input gradient as (rank, batch L): the faster product here)
        gx_dbl[:, :rank] = torch.mm(dt_proj_weight.t(), gdelta).t()
        g_dt_proj = torch.mm(gdelta, dt_low.t())
        gx.addmm_(x_proj_weight.t(), gx_dbl.t())
        g_x_proj = torch.mm(gx_dbl.t(), x.t())
        # the conv, backwards, into xz's gradient
        g_conv_w = torch.empty_like(w)
        g_conv_b = torch.empty_like(conv_bias) if conv_bias is not None else None
        run_conv_backward(rows(xz[:d_inner], batch), w, conv_bias, rows(gx, batch), rows(gxz[:d_inner], batch),
                          g_conv_w, g_conv_b, reverse)
        return (gxz, rearrange(g_conv_w, "d k -> d 1 k"), g_conv_b, g_x_proj, g_dt_proj, gbias, gA[:, :d_state], gD,
                None, None, None)


def fused_usable(module: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether the compiled kernels can run ``module`` (a Mamba mixer for ``mamba_inner``, an MLP for
    ``feedforward_gelu``) on ``x``: float32 CPU tensors throughout, the kernel built, a conv (if any) it handles."""
    tensors = [x, *module.parameters()]
    conv = getattr(module, "conv1d", None)
    return (all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
            and (conv is None or conv.kernel_size[0] <= MAX_CONV_TAPS) and kernel_library() is not None)


def mamba_inner(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_bias, A, D, batch: int,
                reverse: bool = False, out_scale: float = 1.0):
    """y (batch, L, d_inner) of a Mamba mixer from its in_proj output xz (2 d_inner, batch L): conv1d + SiLU,
    x_proj, dt_proj, the selective scan with softplus(delta + dt_bias), D skip and silu(z) gate; times out_scale.
    reverse: the mixer runs over the time-reversed sequence and y comes back in xz's order (a bidirectional
    layer's backward mixer, without flipping its input and output)."""
    xz = xz if xz.is_contiguous() else xz.contiguous()
    conv_weight = conv_weight.contiguous()
    return MambaInner.apply(xz, conv_weight, conv_bias, x_proj_weight, dt_proj_weight, dt_bias, A, D, batch,
                            bool(reverse), float(out_scale))


class FeedForwardGELU(torch.autograd.Function):
    """Linear -> GELU -> Linear with GELU on the compiled kernel. The first layer's bias is added inside the GELU
    kernel (addmm would first copy it into the whole output: a pass of its own). Keeps the input and the first
    layer's product; backward recomputes the GELU (in the same pass as its derivative) instead of keeping its
    output, and needs no second-layer output, so nothing is computed twice but the GELU."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        x2 = rearrange(x, "... d -> (...) d")
        h = torch.mm(x2, w1.t())
        a = scratch("mlp-a", *h.shape)
        run_gelu_forward(h, a, b1)
        out = torch.addmm(b2, a, w2.t()) if b2 is not None else torch.mm(a, w2.t())
        ctx.save_for_backward(x2, h, w1, b1, w2)
        ctx.shape, ctx.has_b2 = x.shape, b2 is not None
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x2, h, w1, b1, w2 = ctx.saved_tensors
        g2 = rearrange(g, "... d -> (...) d")
        g2 = g2 if g2.is_contiguous() else g2.contiguous()
        gh = torch.mm(g2, w2, out=scratch("mlp-gh", *h.shape))
        a = scratch("mlp-a", *h.shape)
        run_gelu_backward(h, gh, a, b1)  # gh: the gradient wrt GELU's output, then wrt its input
        gw2, gw1 = torch.mm(g2.t(), a), torch.mm(gh.t(), x2)
        gb2 = g2.sum(0) if ctx.has_b2 else None
        gb1 = gh.sum(0) if b1 is not None else None
        return torch.mm(gh, w1).view(ctx.shape), gw1, gb1, gw2, gb2


def feedforward_gelu(x, w1, b1, w2, b2):
    """``linear(gelu(linear(x, w1, b1)), w2, b2)`` (exact GELU) for float32 CPU tensors, on the compiled kernel."""
    return FeedForwardGELU.apply(x.contiguous(), w1, b1, w2, b2)
