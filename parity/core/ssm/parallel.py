"""Parallel selective scan for GPUs without mamba_ssm: the whole sequence at once, in about 2 log2(L) rounds of
whole-tensor operations (a work-efficient Blelloch scan) instead of one kernel launch per time step.

The chunked scan's per-step loop leaves a GPU idle: one training step of the original's CIFAR model launched
37,691 kernels on an H200 and kept the GPU busy for 111 ms of its 678 (measured with torch.profiler); this path
ran the same step in 0.111 s (``reports/gpu.md``). It materialises the states for the whole sequence, time-major
(L, batch, d_inner, d_state), and keeps them for backward (the decays are made again there), which a GPU has
room for; on a CPU the compiled kernel is the better choice.
Products of decays are formed in tree order rather than left to right, so the numbers equal the reference's
within float32 rounding.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch.autograd.function import once_differentiable

from .terms import skip_and_gate, step_sizes


def _scan_in_place(a: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> None:
    """x_t <- a_t x_{t-1} + x_t along dim 0 from x_{-1} = 0 (``reverse``: x_t <- a_t x_{t+1} + x_t from x_L = 0),
    for contiguous tensors whose length is a power of two; ``a`` is left holding partial products. Time-major,
    so that every step the sweeps touch is one contiguous slab. The reverse scan is the forward one with every
    position i read as L - 1 - i."""
    L = x.shape[0]
    a, x = a.view(L, -1), x.view(L, -1)
    # (the combining step's target, its source) inside each block of 2d steps, per sweep and direction
    up = (lambda d: (0, d)) if reverse else (lambda d: (2 * d - 1, d - 1))
    down = (lambda d: (d - 1, 2 * d - 1)) if reverse else (lambda d: (d, 0))
    d = 1
    while d < L:  # up-sweep: each block of 2d steps gets its combined (product of decays, state) at its end
        av, xv = a.view(L // (2 * d), 2 * d, -1), x.view(L // (2 * d), 2 * d, -1)
        tgt, src = up(d)
        xv[:, tgt].addcmul_(av[:, tgt], xv[:, src])
        if 2 * d < L:  # the last round's product is never read
            av[:, tgt].mul_(av[:, src])
        d *= 2
    d = L // 4
    while d >= 1:  # down-sweep: the middle of each block takes the complete state from the end of the one before
        lo = 1 if reverse else 2 * d - 1  # L - 2d steps from lo, as (blocks, 2d)
        blocks = (L - 2 * d) // (2 * d)
        av = a[lo:lo + L - 2 * d].view(blocks, 2 * d, -1)
        xv = x[lo:lo + L - 2 * d].view(blocks, 2 * d, -1)
        tgt, src = down(d)
        xv[:, tgt].addcmul_(av[:, tgt], xv[:, src])
        d //= 2


def _padded_length(L: int) -> int:
    return 1 << max(0, (L - 1).bit_length())


def _padded(x: torch.Tensor, value: float) -> torch.Tensor:
    """A fresh contiguous copy of x, lengthened along dim 0 to a power of two with ``value``."""
    L = x.shape[0]
    out = x.new_empty((_padded_length(L), *x.shape[1:]))
    out[:L] = x
    out[L:] = value
    return out


def linear_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """States x_t = a_t x_{t-1} + b_t along dim 0 from x_{-1} = 0 (``reverse``: x_t = a_t x_{t+1} + b_t from
    x_L = 0), as a new tensor; any length."""
    L = b.shape[0]
    a, x = _padded(a, 1.0), _padded(b, 0.0)  # at the end, a = 1 and b = 0: the states up to L are unchanged
    _scan_in_place(a, x, reverse)
    return x[:L]


def _decays(dt: torch.Tensor, A: torch.Tensor, length: int) -> torch.Tensor:
    """exp(dt_t A) time-major, a fresh (length, batch, d_inner, d_state) tensor, ones past dt's L."""
    batch, d_inner, L = dt.shape
    a = dt.new_empty((length, batch, d_inner, A.shape[1]))
    torch.mul(rearrange(dt, "b d l -> l b d 1"), A, out=a[:L])
    a[:L].exp_()
    a[L:] = 1.0
    return a


class SelectiveScanCore(torch.autograd.Function):
    """y_t = sum_n C_t[n] x_t[n] of the states x_t = exp(dt_t A) x_{t-1} + dtu_t B_t, for dt, dtu (batch, d_inner,
    L), A (d_inner, d_state), B, C (batch, d_state, L); y (batch, d_inner, L). Keeps its inputs and the states
    (time-major, (L, batch, d_inner, d_state)) for backward, where the decays are made again and the adjoint,
    g_x[t] = C_t g_y[t] + exp(dt_{t+1} A) g_x[t+1], is the same scan run in reverse."""

    @staticmethod
    def forward(ctx, dt, dtu, A, B, C):
        L = dt.shape[-1]
        a = _decays(dt, A, _padded_length(L))
        x = torch.empty_like(a)
        torch.mul(rearrange(dtu, "b d l -> l b d 1"), rearrange(B, "b n l -> l b 1 n"), out=x[:L])
        x[L:] = 0.0
        _scan_in_place(a, x)
        states = x[:L]
        ctx.save_for_backward(dt, dtu, A, B, C, states)
        return rearrange(torch.matmul(states, rearrange(C, "b n l -> l b n 1")), "l b d 1 -> b d l")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        dt, dtu, A, B, C, states = ctx.saved_tensors
        L = dt.shape[-1]
        gy = rearrange(grad_y, "b d l -> l b d 1")
        g_C = rearrange(torch.matmul(states.transpose(-1, -2), gy), "l b n 1 -> b n l")
        a = _decays(dt, A, _padded_length(L))
        coef = torch.empty_like(a)  # the adjoint's decay at t is a[t + 1]
        coef[:L - 1] = a[1:L]
        coef[L - 1:] = 0.0
        gx = torch.empty_like(a)
        torch.mul(gy, rearrange(C, "b n l -> l b 1 n"), out=gx[:L])
        gx[L:] = 0.0
        _scan_in_place(coef, gx, reverse=True)
        gx = gx[:L]
        g_dtu = rearrange(torch.matmul(gx, rearrange(B, "b n l -> l b n 1")), "l b d 1 -> b d l")
        g_B = rearrange(torch.matmul(gx.transpose(-1, -2), rearrange(dtu, "b d l -> l b d 1")), "l b n 1 -> b n l")
        # q_t = g_x[t] exp(dt_t A) x_{t-1}, the gradient wrt dt_t A (zero at t = 0); in coef's memory
        q = torch.mul(gx[1:], states[:-1], out=coef[:L - 1])
        q.mul_(a[1:L])
        g_A = torch.einsum("lbdn,lbd->dn", q, rearrange(dt[..., 1:], "b d l -> l b d"))
        g_dt = torch.zeros_like(dt)
        g_dt[..., 1:] = rearrange(q.mul_(A).sum(-1), "l b d -> b d l")
        return g_dt, g_dtu, g_A, g_B, g_C


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with ``selective_scan_ref`` semantics (no last state) in whole-sequence tensor operations;
    the chunked scan where this one does not apply (complex A, B or C without a time axis per batch)."""
    if A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3:
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    dtype_in = u.dtype
    ct = torch.float64 if u.dtype == torch.float64 else torch.float32  # float64 stays, for gradcheck
    u, delta, A, B, C = u.to(ct), delta.to(ct), A.to(ct), B.to(ct), C.to(ct)
    dt = step_sizes(delta, delta_bias.to(ct) if delta_bias is not None else None, delta_softplus)
    out = SelectiveScanCore.apply(dt, dt * u, A, B, C)
    return skip_and_gate(out, u, D.to(ct) if D is not None else None, z.to(ct) if z is not None else None).to(dtype_in)


__all__ = ["SelectiveScanCore", "linear_scan", "selective_scan_parallel"]
