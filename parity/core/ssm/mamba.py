"""A Mamba (v1) mixer, the residual Block and the bidirectional mixer, in plain PyTorch.

Parameter names, shapes, defaults and initialisation order are those of ``mamba_ssm.Mamba``
and ``mamba_ssm.modules.block.Block`` (mamba_ssm 2.x), so their state dicts load strictly and,
under the same seed, the initial weights are the same draws. Only the non-fused forward path
is reproduced (inference caches are not needed by either source).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
from einops import rearrange, repeat
from torch.utils.checkpoint import checkpoint

from .fused import feedforward_gelu, fused_usable, mamba_inner
from .scan import DEFAULT_SCAN, check_scan, selective_scan


class Mamba(nn.Module):
    def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", dt_min=0.001,
                 dt_max=0.1, dt_init="random", dt_scale=1.0, dt_init_floor=1e-4, conv_bias=True,
                 bias=False, scan: str = DEFAULT_SCAN):
        super().__init__()
        self.d_model, self.d_state, self.d_conv, self.expand = d_model, d_state, d_conv, expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.scan = check_scan(scan)  # this mixer's own choice; set_scan / use_scan set a whole model's

        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1, bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)

        # dt projection scaled to keep variance; its bias is softplus^-1 of a log-uniform dt.
        dt_std = self.dt_rank ** -0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_std)
        elif dt_init == "random":
            nn.init.uniform_(self.dt_proj.weight, -dt_std, dt_std)
        else:
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation, kept in float32 like the original.
        A = repeat(torch.arange(1, d_state + 1, dtype=torch.float32), "n -> d n", d=self.d_inner)
        self.A_log = nn.Parameter(torch.log(A.contiguous()))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, hidden_states, inference_params=None, reverse=False, out_scale=1.0):
        """reverse: run over the time-reversed sequence, output back in the input's order (``flip(self(flip(x)))``,
        without the flips on the compiled path); out_scale: the output times this (BiMamba's halves)."""
        if inference_params is not None:
            raise NotImplementedError("step-by-step inference caches are not supported")
        if reverse and not (self.scan == "compiled" and fused_usable(self, hidden_states)):
            out = self(torch.flip(hidden_states, dims=[1]), out_scale=out_scale)
            return torch.flip(out, dims=[1])
        batch, seqlen = hidden_states.shape[:2]
        # Same matmul layout as mamba_ssm: (d, b*l) so float rounding follows the source.
        xz = self.in_proj.weight @ rearrange(hidden_states, "b l d -> d (b l)")
        if self.in_proj.bias is not None:
            xz = xz + rearrange(self.in_proj.bias.to(xz.dtype), "d -> d 1")
        A = -torch.exp(self.A_log.float())
        if self.scan == "compiled" and fused_usable(self, hidden_states):
            # conv, x_proj, dt_proj and scan as one node on the compiled kernels, nothing copied (fused.py); the
            # scale goes into y where out_proj has no bias (exact for 0.5: scaling by a power of two commutes with
            # rounding)
            inner_scale = out_scale if self.out_proj.bias is None else 1.0
            y = mamba_inner(xz, self.conv1d.weight, self.conv1d.bias, self.x_proj.weight, self.dt_proj.weight,
                            self.dt_proj.bias.float(), A, self.D.float(), batch, reverse, inner_scale)
            out = self.out_proj(y)
            return out if inner_scale == out_scale else out * out_scale
        xz = rearrange(xz, "d (b l) -> b d l", l=seqlen)
        x, z = xz.chunk(2, dim=1)
        x = _recomputed(self._conv_act, x)
        x_dbl = self.x_proj(rearrange(x, "b d l -> (b l) d"))
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = rearrange(self.dt_proj.weight @ dt.t(), "d (b l) -> b d l", l=seqlen)
        B = rearrange(B, "(b l) n -> b n l", l=seqlen).contiguous()
        C = rearrange(C, "(b l) n -> b n l", l=seqlen).contiguous()
        y = selective_scan(x, dt, A, B, C, self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(),
                           delta_softplus=True, impl=self.scan)
        out = self.out_proj(rearrange(y, "b d l -> b l d"))
        return out if out_scale == 1.0 else out * out_scale

    def _conv_act(self, x):
        return self.act(self.conv1d(x)[..., :x.shape[-1]])


def _recomputed(fn, x):
    """fn(x), with fn's intermediates recomputed in backward instead of kept: the same numbers, less
    memory for the cheap elementwise tails of a layer (the conv output before SiLU, the MLP's hidden
    activations before GELU)."""
    if torch.is_grad_enabled() and x.requires_grad:
        return checkpoint(fn, x, use_reentrant=False)
    return fn(x)


class BiMamba(nn.Module):
    """Bidirectional mixer of both sources: mean of a forward and a flipped backward Mamba."""

    def __init__(self, dim, **mamba_kwargs):
        super().__init__()
        self.f_mamba = Mamba(d_model=dim, **mamba_kwargs)
        self.r_mamba = Mamba(d_model=dim, **mamba_kwargs)

    def forward(self, x, **kwargs):
        # (forward + backward) / 2 with each half scaled inside its mixer: a/2 + b/2 is (a + b)/2 exactly in
        # floating point, one elementwise pass instead of two; the backward mixer reads x backwards itself
        forward = self.f_mamba(x, out_scale=0.5, **kwargs)
        backward = self.r_mamba(x, reverse=True, out_scale=0.5, **kwargs)
        return forward + backward


class Block(nn.Module):
    """mamba_ssm's Block without fused add+norm: Add -> Norm -> mixer -> Add -> Norm -> MLP.

    Returns ``(hidden, residual)``; the caller adds the last residual back if it wants it
    (neither source does).
    """

    def __init__(self, dim, mixer_cls, mlp_cls=nn.Identity, norm_cls=nn.LayerNorm, residual_in_fp32=False):
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.norm = norm_cls(dim)
        self.mixer = mixer_cls(dim)
        if mlp_cls is not nn.Identity:
            self.norm2 = norm_cls(dim)
            self.mlp = mlp_cls(dim)
        else:
            self.mlp = None

    def forward(self, hidden_states, residual=None, inference_params=None, **mixer_kwargs):
        residual = hidden_states + residual if residual is not None else hidden_states
        hidden_states = self.norm(residual.to(self.norm.weight.dtype))
        if self.residual_in_fp32:
            residual = residual.to(torch.float32)
        hidden_states = self.mixer(hidden_states, inference_params=inference_params, **mixer_kwargs)
        if self.mlp is not None:
            residual = hidden_states + residual
            hidden_states = self.norm2(residual.to(self.norm2.weight.dtype))
            if self.residual_in_fp32:
                residual = residual.to(torch.float32)
            hidden_states = self.mlp(hidden_states)
        return hidden_states, residual


class FeedForward(nn.Sequential):
    """The MLP both sources give each Block (indices 0 and 3 carry the weights). On float32 CPU tensors the GELU
    runs on the compiled kernel and the layer is one autograd node (``feedforward_gelu``: the GELU recomputed in
    backward, not kept); otherwise everything after the first linear layer is recomputed in backward
    (``_recomputed``)."""

    def __init__(self, dim, ff_dim, dropout=0.0):
        super().__init__(nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim),
                         nn.Dropout(dropout))

    def forward(self, x):
        if self._fused_usable(x):
            return feedforward_gelu(x, self[0].weight, self[0].bias, self[3].weight, self[3].bias)
        return _recomputed(self._tail, self[0](x))

    def _fused_usable(self, x):
        no_dropout = not self.training or (self[2].p == 0 and self[4].p == 0)
        return (no_dropout and self[1].approximate == "none" and fused_usable(self, x))

    def _tail(self, h):
        for layer in list(self)[1:]:
            h = layer(h)
        return h


def feedforward(dim, ff_dim, dropout=0.0):
    return FeedForward(dim, ff_dim, dropout)


class BiMambaEncoder(nn.Module):
    """``depth`` Blocks of BiMamba + MLP. Like both sources, returns the last block's MLP output:
    the last residual is not added back and there is no final norm (kept; see the audit)."""

    def __init__(self, dim, depth, ff_dim=None, dropout=0.0, add_final_residual=False):
        super().__init__()
        ff_dim = ff_dim or 4 * dim
        self.add_final_residual = add_final_residual  # improvement toggle, off in both sources
        self.blocks = nn.ModuleList([
            Block(dim, mixer_cls=BiMamba, mlp_cls=lambda d: feedforward(d, ff_dim, dropout), norm_cls=nn.LayerNorm)
            for _ in range(depth)
        ])

    def forward(self, x):
        residual = None
        for block in self.blocks:
            x, residual = block(x, residual=residual)
        return x + residual if self.add_final_residual else x


def set_scan(model: nn.Module, impl: str) -> nn.Module:
    """Every Mamba mixer inside ``model`` runs the scan ``impl`` ('ref', 'chunked', 'compiled', 'cuda');
    returns the model. The choice belongs to the model, so two models in one process can differ."""
    check_scan(impl)
    for module in model.modules():
        if isinstance(module, Mamba):
            module.scan = impl
    return model


@contextmanager
def use_scan(model: nn.Module, impl: str):
    """``set_scan`` for the duration of a ``with`` block, each mixer's own choice restored after it (for
    instance the chunked scan while FLOPs are counted: the compiled kernel is invisible to the counter)."""
    before = {m: m.scan for m in model.modules() if isinstance(m, Mamba)}
    set_scan(model, impl)
    try:
        yield model
    finally:
        for module, scan in before.items():
            module.scan = scan
