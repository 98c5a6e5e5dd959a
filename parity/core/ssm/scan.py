"""Selective scan (Mamba v1 SSM): a sequential reference and the dispatcher.

Shapes follow mamba_ssm: u, delta, z (batch, d_inner, L); A (d_inner, d_state);
B, C (batch, d_state, L); D, delta_bias (d_inner,).

The reference has the semantics of ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``
(the golden tensors were made with it). The CPU paths: ``compiled.py`` (a C kernel built at first use,
the default) and ``chunked.py`` (pure PyTorch, the fallback wherever the kernel cannot be built). On a GPU:
mamba_ssm's fused kernel when it imports, else ``parallel.py`` (whole-sequence tensor operations, a few
dozen kernel launches a scan instead of the chunked scan's one per time step).
"""

from __future__ import annotations

import functools

import torch

from .terms import skip_and_gate, step_sizes

SCAN_IMPLS = ("ref", "chunked", "compiled", "parallel", "cuda")
DEFAULT_SCAN = "compiled"  # each Mamba mixer holds its own choice (``Mamba.scan``); this is where it starts


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    """Sequential scan, one time step at a time; slow, simple, the ground truth."""
    dtype_in = u.dtype
    u = u.float()
    delta = step_sizes(delta.float(), delta_bias.float() if delta_bias is not None else None, delta_softplus)
    B, C = B.float(), C.float()
    batch, d_inner, d_state = u.shape[0], A.shape[0], A.shape[1]

    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    state = A.new_zeros((batch, d_inner, d_state))
    ys = []
    for t in range(u.shape[2]):
        state = decay[:, :, t] * state + drive[:, :, t]
        ys.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    out = skip_and_gate(torch.stack(ys, dim=2), u, D, z).to(dtype_in)
    return (out, state) if return_last_state else out


@functools.cache
def _cuda_scan():
    """mamba_ssm's fused kernel, or None; imported lazily and only when CUDA exists."""
    if not torch.cuda.is_available():
        return None
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built for another CUDA: fall back quietly
        return None
    return selective_scan_fn


def cuda_scan_available() -> bool:
    """Whether mamba_ssm's fused kernel is installed (GPU tensors then run through it)."""
    return _cuda_scan() is not None


def check_scan(impl: str) -> str:
    """``impl`` when it names a scan, else a ValueError listing them."""
    if impl not in SCAN_IMPLS:
        raise ValueError(f"unknown scan {impl!r}: choose one of {', '.join(SCAN_IMPLS)}")
    return impl


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   impl: str = DEFAULT_SCAN):
    """Dispatch: fused CUDA kernel for GPU tensors when available, else the chosen path, where 'compiled'
    and 'cuda' mean the parallel scan for GPU tensors (the C kernel runs on CPU tensors only) and
    'compiled' falls back to 'chunked' where its kernel cannot be built."""
    if u.is_cuda and impl != "ref":
        fused = _cuda_scan()
        if fused is not None:
            return fused(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
        if impl != "chunked":
            impl = "parallel"
    if impl == "parallel":
        from .parallel import selective_scan_parallel

        return selective_scan_parallel(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if impl == "ref":
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if impl == "chunked":
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    from .compiled import selective_scan_compiled  # 'compiled', and 'cuda' without a GPU

    return selective_scan_compiled(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
