"""Chunked selective scan for CPU: same result as ``selective_scan_ref``, far less time and memory.

The reference materialises exp(delta*A) and delta*u*B for the whole sequence, (batch, d_inner, L,
d_state) each, and autograd keeps every per-step state alive for backward. Here the sequence is cut
into chunks of ``chunk_size`` steps. Per chunk the decay and the drive are computed at once; the
only per-step work left is the recurrence itself, one in-place ``addcmul`` on a contiguous
(batch, d_inner, d_state) slice of a buffer laid out (T, batch, d_inner, d_state). Forward saves
only the inputs and the state entering each chunk; backward walks the chunks in reverse,
recomputes their states from those, runs the adjoint recurrence the same way and turns both into
gradients with chunk-level matmuls and reductions. Everything goes through the recurrence (no
exp(-cumsum) tricks), so it stays finite at any length and for any delta.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

# Chunk length, by measurement on 2 CPU cores: the three (T, batch, d_inner, d_state) chunk buffers
# should stay in cache (about 2 MiB each in float32), but chunks much shorter than 8 steps only
# add per-chunk overhead and saved boundary states. batch 16 x d_inner 512 x d_state 16 gives
# T = 8, batch 8 x d_inner 256 gives 16, small layers get up to 64.
_CHUNK_ELEMENTS = 1 << 19
_MIN_CHUNK, _MAX_CHUNK = 8, 64


def auto_chunk_size(batch: int, d_inner: int, d_state: int) -> int:
    T = _CHUNK_ELEMENTS // max(1, batch * d_inner * d_state)
    return max(_MIN_CHUNK, min(_MAX_CHUNK, T))


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    # float32 like the reference; float64 stays float64 so gradcheck is meaningful.
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _time_major(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, c, L) -> contiguous (L, batch, c), so that a chunk [t0:t1] is one contiguous block.

    Done as one 2-D transpose of (batch*c, L): torch copies that with a blocked kernel, several
    times faster than the equivalent 3-D permute.
    """
    batch, c, L = x.shape
    out = x.new_empty((L, batch * c), dtype=dtype)  # always a fresh tensor: callers modify it in place
    out.copy_(x.to(dtype).reshape(batch * c, L).t())
    return out.view(L, batch, c)


def _batch_major(x_l: torch.Tensor) -> torch.Tensor:
    """Inverse of ``_time_major``: contiguous (L, batch, c) -> contiguous (batch, c, L)."""
    L, batch, c = x_l.shape
    return x_l.view(L, batch * c).t().contiguous().view(batch, c, L)


def _run_chunk(dt_c, dtu_c, B_c, A, decay, xs):
    """States of one chunk: on entry xs[0] holds the incoming state; on exit xs[1 + t] = x_t.

    decay[:T] is left holding exp(dt_t * A), which backward needs again.
    """
    T = dt_c.shape[0]
    dec = decay[:T]
    torch.mul(dt_c.unsqueeze(-1), A, out=dec)  # (T, b, d, 1) * (d, n)
    dec.exp_()
    torch.mul(dtu_c.unsqueeze(-1), B_c.unsqueeze(2), out=xs[1:T + 1])  # drive dt*u*B
    for t in range(T):  # the unavoidable sequential part: x_t = decay_t * x_{t-1} + drive_t
        xs[t + 1].addcmul_(dec[t], xs[t])


def _contract_state(S, v, out):
    """out[t, b, d] = sum_n S[t, b, d, n] v[t, b, n] for a chunk.

    As a (1 x n) @ (n x d) bmm over the transposed state view: BLAS reads S row by row, which on
    CPU is markedly faster than the (d x n) @ (n x 1) form or a multiply-and-sum.
    """
    T, batch, d_inner, d_state = S.shape
    torch.bmm(v.view(T * batch, 1, d_state), S.view(T * batch, d_inner, d_state).transpose(1, 2),
              out=out.view(T * batch, 1, d_inner))


def _contract_inner(S, w, out):
    """out[t, b, n] = sum_d S[t, b, d, n] w[t, b, d] for a chunk, as a (1 x d) @ (d x n) bmm."""
    T, batch, d_inner, d_state = S.shape
    torch.bmm(w.view(T * batch, 1, d_inner), S.view(T * batch, d_inner, d_state),
              out=out.view(T * batch, 1, d_state))


def _dt_time_major(delta, delta_bias, delta_softplus, ct):
    """(pre-activation, dt), both (L, batch, d_inner); pre is None when no softplus is applied."""
    pre = _time_major(delta, ct)
    if delta_bias is not None:
        pre.add_(delta_bias.to(ct))
    return (pre, F.softplus(pre)) if delta_softplus else (None, pre)


def _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, keep_states):
    """Returns (out in the compute dtype, the states entering each chunk or None)."""
    ct = _compute_dtype(u)
    batch, d_inner, L = u.shape
    d_state = A.shape[1]
    A_c, u_c = A.to(ct), u.to(ct)
    _, dt_l = _dt_time_major(delta, delta_bias, delta_softplus, ct)
    dtu_l = dt_l * _time_major(u_c, ct)
    B_l, C_l = _time_major(B, ct), _time_major(C, ct)

    T = max(1, min(chunk_size, L))
    decay = u_c.new_empty((T, batch, d_inner, d_state))
    xs = u_c.new_empty((T + 1, batch, d_inner, d_state))
    xs[0].zero_()
    states = u_c.new_empty((-(-L // T), batch, d_inner, d_state)) if keep_states else None
    y_l = u_c.new_empty((L, batch, d_inner))
    for c, t0 in enumerate(range(0, L, T)):
        t1 = min(t0 + T, L)
        n = t1 - t0
        if keep_states:
            states[c].copy_(xs[0])
        _run_chunk(dt_l[t0:t1], dtu_l[t0:t1], B_l[t0:t1], A_c, decay, xs)
        _contract_state(xs[1:n + 1], C_l[t0:t1], y_l[t0:t1])  # y_t = sum_n C_t[n] x_t[:, n]
        xs[0].copy_(xs[n])

    out = _batch_major(y_l)
    if D is not None:
        out = out.addcmul_(u_c, D.to(ct)[:, None])
    if z is not None:
        out = out.mul_(F.silu(z.to(ct)))
    return out, states


class _Needs(NamedTuple):
    """Which gradients backward computes: one flag per input, ``bias`` for delta_bias."""
    u: bool
    delta: bool
    A: bool
    B: bool
    C: bool
    D: bool
    z: bool
    bias: bool

    @property
    def dt(self) -> bool:
        return self.delta or self.bias


def _needs(needs_input_grad, D, z, delta_bias) -> _Needs:
    """The gradients to compute: those autograd asks for, less those of absent optional inputs."""
    need_u, need_delta, need_A, need_B, need_C = needs_input_grad[:5]
    return _Needs(need_u, need_delta, need_A, need_B, need_C, D is not None and needs_input_grad[5],
                  z is not None and needs_input_grad[6], delta_bias is not None and needs_input_grad[7])


def _gate_grads(grad_out, z, need_z, ct):
    """(gradient wrt y + D*u, gradient wrt z still to be multiplied by y + D*u or None), time-major."""
    gy_l = _time_major(grad_out, ct)  # gradient wrt y + D*u once multiplied by silu(z)
    gz_l = None
    if z is not None:
        z_l = _time_major(z, ct)
        sig_z = torch.sigmoid(z_l)
        silu_z = z_l * sig_z
        if need_z:  # g * d silu(z)/dz = g * sigmoid(z) * (1 + z - silu(z)), built in z_l
            gz_l = z_l.sub_(silu_z).add_(1).mul_(sig_z).mul_(gy_l)
        gy_l.mul_(silu_z)
    return gy_l, gz_l


class _ChunkGrads(NamedTuple):
    """Time-major buffers the reverse pass fills, None where that gradient is not needed."""
    y_l: torch.Tensor | None  # y itself, for z's gradient
    gC_l: torch.Tensor | None
    gB_l: torch.Tensor | None
    gdtu_l: torch.Tensor | None  # gradient wrt dt*u
    gdt_l: torch.Tensor | None  # gradient wrt dt through the decay (dt*u's part is added later)
    gA: torch.Tensor | None


def _chunk_grad_buffers(u, A_c, ct, need: _Needs) -> _ChunkGrads:
    """Empty full-length buffers for the reverse pass to fill, and a zeroed gA to accumulate into."""
    batch, d_inner, L = u.shape
    d_state = A_c.shape[1]

    def new_l(c):
        return u.new_empty((L, batch, c), dtype=ct)

    return _ChunkGrads(y_l=new_l(d_inner) if need.z else None,
                       gC_l=new_l(d_state) if need.C else None,
                       gB_l=new_l(d_state) if need.B else None,
                       gdtu_l=new_l(d_inner) if (need.u or need.dt) else None,
                       gdt_l=new_l(d_inner) if need.dt else None,
                       gA=torch.zeros_like(A_c) if need.A else None)


def _chunk_adjoint(gy_c, C_c, decay, hc, carry):
    """``hc``, filled with the adjoint h_t = dLoss/dx_t of one chunk; ``carry`` becomes decay_t0 * h_t0."""
    # h_t = C_t * gy_t + decay_{t+1} * h_{t+1}, run in reverse from the carry of the chunk after this one.
    n = hc.shape[0]
    torch.mul(gy_c.unsqueeze(-1), C_c.unsqueeze(2), out=hc)
    hc[n - 1].add_(carry)
    for t in range(n - 2, -1, -1):
        hc[t].addcmul_(decay[t + 1], hc[t + 1])
    torch.mul(decay[0], hc[0], out=carry)
    return hc


def _chunk_drive_grads(hc, xs, decay, s, dt_l, dtu_l, B_l, A_c, g: _ChunkGrads, need: _Needs) -> None:
    """Nothing; writes chunk ``s``'s gB, g(dt*u) and gdt into ``g`` and adds its part of gA to ``g.gA``."""
    n = hc.shape[0]
    # drive = dt*u*B: gB_t[n] = sum_d h_t[d, n] (dt*u)_t[d],
    #                 g(dt*u)_t[d] = sum_n h_t[d, n] B_t[n]
    if need.B:
        _contract_inner(hc, dtu_l[s], g.gB_l[s])
    if g.gdtu_l is not None:
        _contract_state(hc, B_l[s], g.gdtu_l[s])
    if need.dt or need.A:
        # q = h_t * decay_t * x_{t-1} is the gradient wrt dt_t*A; built in place over the
        # decay buffer, which this chunk no longer needs.
        q = decay[:n].mul_(hc).mul_(xs[:n])
        if need.dt:
            # q * A goes into h, free by now: a fresh 4-D temporary costs page faults.
            qA = torch.mul(q, A_c, out=hc) if need.A else q.mul_(A_c)
            torch.sum(qA, dim=-1, out=g.gdt_l[s])
        if need.A:
            g.gA.add_(q.mul_(dt_l[s].unsqueeze(-1)).sum(dim=(0, 1)))


def _reverse_pass(states, dt_l, dtu_l, B_l, C_l, gy_l, A_c, chunk_size, g: _ChunkGrads, need: _Needs) -> None:
    """Nothing; fills ``g`` walking the chunks from last to first, recomputing each chunk's states."""
    L, batch, d_inner = dt_l.shape
    d_state = A_c.shape[1]
    T = max(1, min(chunk_size, L))
    decay = gy_l.new_empty((T, batch, d_inner, d_state))
    xs = gy_l.new_empty((T + 1, batch, d_inner, d_state))
    h = gy_l.new_empty((T, batch, d_inner, d_state))
    # decay_{t+1} * h_{t+1} for the first step after the current chunk (zero past the end).
    carry = gy_l.new_zeros((batch, d_inner, d_state))
    starts = list(range(0, L, T))
    for c in reversed(range(len(starts))):
        t0 = starts[c]
        t1 = min(t0 + T, L)
        n = t1 - t0
        s = slice(t0, t1)
        xs[0].copy_(states[c])
        _run_chunk(dt_l[s], dtu_l[s], B_l[s], A_c, decay, xs)
        x_c = xs[1:n + 1]
        if need.z:
            _contract_state(x_c, C_l[s], g.y_l[s])
        if need.C:  # y_t = sum_n C_t[n] x_t[:, n]  ->  gC_t[n] = sum_d gy_t[d] x_t[d, n]
            _contract_inner(x_c, gy_l[s], g.gC_l[s])
        hc = _chunk_adjoint(gy_l[s], C_l[s], decay, h[:n], carry)
        _chunk_drive_grads(hc, xs, decay, s, dt_l, dtu_l, B_l, A_c, g, need)


def _dt_grads(gdt_l, gdtu_l, u_l, pre_l, delta, delta_bias, need: _Needs):
    """(gradient wrt delta, gradient wrt delta_bias), each None where not needed; ``gdt_l`` is overwritten."""
    gdt_l.addcmul_(gdtu_l, u_l)
    if pre_l is not None:
        gdt_l.mul_(pre_l.sigmoid_())  # d softplus(x)/dx
    grad_delta = _batch_major(gdt_l).to(delta.dtype) if need.delta else None
    grad_bias = gdt_l.sum(dim=(0, 1)).to(delta_bias.dtype) if need.bias else None
    return grad_delta, grad_bias


class _ChunkedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size):
        out, states = _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size,
                                    keep_states=True)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states)
        ctx.delta_softplus, ctx.chunk_size = delta_softplus, chunk_size
        return out.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        need = _needs(ctx.needs_input_grad, D, z, delta_bias)
        ct = _compute_dtype(u)
        A_c = A.to(ct)
        D_c = D.to(ct) if D is not None else None
        # Everything below runs time-major (L, batch, ·); results are transposed back at the end.
        pre_l, dt_l = _dt_time_major(delta, delta_bias, ctx.delta_softplus, ct)
        u_l = _time_major(u, ct)
        dtu_l = dt_l * u_l
        B_l, C_l = _time_major(B, ct), _time_major(C, ct)
        gy_l, gz_l = _gate_grads(grad_out, z, need.z, ct)
        g = _chunk_grad_buffers(u, A_c, ct, need)
        _reverse_pass(states, dt_l, dtu_l, B_l, C_l, gy_l, A_c, ctx.chunk_size, g, need)

        # Full-length tails, in place where the buffer is not needed again.
        del dtu_l, B_l, C_l
        grads = [None] * 10
        if need.D:
            grads[5] = (gy_l * u_l).sum(dim=(0, 1)).to(D.dtype)
        if need.u:
            gu_l = g.gdtu_l * dt_l
            if D_c is not None:
                gu_l.addcmul_(gy_l, D_c)
            grads[0] = _batch_major(gu_l).to(u.dtype)
            del gu_l
        del dt_l, gy_l
        if need.dt:
            grads[1], grads[7] = _dt_grads(g.gdt_l, g.gdtu_l, u_l, pre_l, delta, delta_bias, need)
        if need.A:
            grads[2] = g.gA.to(A.dtype)
        if need.B:
            grads[3] = _batch_major(g.gB_l).to(B.dtype)
        if need.C:
            grads[4] = _batch_major(g.gC_l).to(C.dtype)
        if need.z:
            if D_c is not None:
                g.y_l.addcmul_(u_l, D_c)
            grads[6] = _batch_major(gz_l.mul_(g.y_l)).to(z.dtype)
        return tuple(grads)


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           *, chunk_size: int | None = None):
    """Selective scan with ``selective_scan_ref`` semantics (no last state), chunked for CPU speed.

    u, delta, z: (batch, d_inner, L); A: (d_inner, d_state), real; B, C: (batch, d_state, L);
    D, delta_bias: (d_inner,). Computes in float32 (float64 for float64 input), returns u's dtype.
    ``chunk_size`` only trades speed for memory; by default it follows ``auto_chunk_size``.
    """
    if A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3:
        raise ValueError("selective_scan_chunked supports real A and input-dependent B, C of shape "
                         "(batch, d_state, L) only; use selective_scan_ref for other variants")
    if chunk_size is None:
        chunk_size = auto_chunk_size(u.shape[0], A.shape[0], A.shape[1])
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs):
        return _ChunkedScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size)
    out, _ = _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size,
                           keep_states=False)
    return out.to(u.dtype)
