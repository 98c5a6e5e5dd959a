"""Compiled selective scan for CPU: a small C kernel (``csrc/scan.c``) that, like mamba_ssm's CUDA
kernel, keeps each sequence's state in registers and never materialises the (batch, d_inner, L,
d_state) tensor. Backward recomputes one sequence's states at a time into an L x d_state buffer.

The kernel is built with the system's C compiler the first time it is needed (about a second) and
cached under ``$PARITY_CACHE`` (default ``~/.cache/parity``). Without a compiler, or for anything
but float32 CPU tensors, ``selective_scan_compiled`` falls back to the pure-PyTorch chunked scan;
``compiled_scan_status()`` says which is in use and why.

Threads: the d_inner channels are split into ``torch.get_num_threads()`` ranges that run in a thread
pool; ctypes releases the GIL for the duration of each C call.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange

SOURCE = Path(__file__).parent / "csrc" / "scan.c"
CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fPIC", "-shared", "-std=c11"]
SOFTPLUS_THRESHOLD = 20.0  # as F.softplus: linear above it
_status = {"compiled": False, "reason": "not built yet"}


def _cache_dir() -> Path:
    return Path(os.environ.get("PARITY_CACHE", Path.home() / ".cache" / "parity"))


@functools.cache
def _library():
    """The loaded kernel, or None (reason in ``_status``)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        _status.update(compiled=False, reason="no C compiler (gcc/cc) on PATH; using the chunked PyTorch scan")
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([cc, *CFLAGS]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"scan-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: build, then rename
                built = Path(tmp) / target.name
                subprocess.run([cc, *CFLAGS, str(SOURCE), "-o", str(built), "-lm"], check=True,
                               capture_output=True, text=True)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip().splitlines()[-1] if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        _status.update(compiled=False, reason=f"building the scan kernel failed ({detail}); using the chunked scan")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.scan_forward.argtypes = [ptr] * 6 + [i64] * 6
    lib.scan_backward.argtypes = [ptr] * 12 + [i64] * 6
    _status.update(compiled=True, reason=f"built with {Path(cc).name} {' '.join(CFLAGS)} at {target}")
    return lib


def compiled_scan_status() -> dict:
    """{'compiled': bool, 'reason': str}, building the kernel if that was not tried yet."""
    _library()
    return dict(_status)


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="parity-scan")


def _ranges(d_inner: int) -> list[tuple[int, int]]:
    k = max(1, min(torch.get_num_threads(), d_inner))
    bounds = [d_inner * i // k for i in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _run(calls) -> None:
    """Run the C calls, one per d range, in parallel; the first one on this thread."""
    if len(calls) == 1:
        calls[0]()
        return
    futures = [_pool(len(calls)).submit(c) for c in calls[1:]]
    calls[0]()
    for f in futures:
        f.result()


def _p(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def scan_core_forward(u, dt, A, Bt, Ct) -> torch.Tensor:
    lib = _library()
    batch, d_inner, L = u.shape
    N = A.shape[1]
    y = torch.empty_like(u)
    _run([functools.partial(lib.scan_forward, _p(u), _p(dt), _p(A), _p(Bt), _p(Ct), _p(y),
                            batch, d_inner, L, N, d0, d1) for d0, d1 in _ranges(d_inner)])
    return y


def scan_core_backward(u, dt, A, Bt, Ct, gy):
    lib = _library()
    batch, d_inner, L = u.shape
    N = A.shape[1]
    ranges = _ranges(d_inner)
    gu, gdt, gA = torch.empty_like(u), torch.empty_like(u), torch.empty_like(A)
    gB = torch.zeros((len(ranges), batch, L, N), dtype=u.dtype)  # partial sums over d, one per range
    gC = torch.zeros_like(gB)
    work = torch.empty((len(ranges), 2 * L * N), dtype=u.dtype)
    _run([functools.partial(lib.scan_backward, _p(u), _p(dt), _p(A), _p(Bt), _p(Ct), _p(gy), _p(gu), _p(gdt),
                            _p(gA), _p(gB[i]), _p(gC[i]), _p(work[i]), batch, d_inner, L, N, d0, d1)
          for i, (d0, d1) in enumerate(ranges)])
    return gu, gdt, gA, gB.sum(0), gC.sum(0)


class _ScanCore(torch.autograd.Function):
    """y = sum_n C x, x_t = exp(dt_t A) x_{t-1} + dt_t u_t B_t; B, C given time-major (batch, L, N)."""

    @staticmethod
    def forward(ctx, u, dt, A, Bt, Ct):
        ctx.save_for_backward(u, dt, A, Bt, Ct)
        return scan_core_forward(u, dt, A, Bt, Ct)

    @staticmethod
    def backward(ctx, gy):
        return scan_core_backward(*ctx.saved_tensors, gy.contiguous())


class _Softplus(torch.autograd.Function):
    """F.softplus (beta 1, threshold 20) as log1p(exp(x)): torch's CPU softplus kernel is scalar,
    about ten times slower than these two vectorised ones; same values to float32 rounding."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x > SOFTPLUS_THRESHOLD, x, torch.log1p(torch.exp(x)))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


def fast_softplus(x: torch.Tensor) -> torch.Tensor:
    return _Softplus.apply(x)


def _usable(*tensors) -> bool:
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with ``selective_scan_ref`` semantics (no last state) on the compiled kernel;
    the chunked PyTorch scan where the kernel cannot serve (no compiler, float64, complex A)."""
    if (A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3 or not _usable(u, delta, A, B, C, D, z, delta_bias)
            or _library() is None):
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    dt = delta if delta_bias is None else delta + rearrange(delta_bias, "d -> d 1")
    if delta_softplus:
        dt = fast_softplus(dt)
    Bt = rearrange(B, "b n l -> b l n").contiguous()
    Ct = rearrange(C, "b n l -> b l n").contiguous()
    y = _ScanCore.apply(u.contiguous(), dt.contiguous(), A.contiguous(), Bt, Ct)
    if D is not None:
        y = y + u * rearrange(D, "d -> d 1")
    if z is not None:
        y = y * F.silu(z)
    return y
