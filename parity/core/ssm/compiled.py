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
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).parent / "csrc" / "scan.c"
# -ffast-math at compile time only: it makes glibc declare its vector expf/log1pf (libmvec) and lets gcc
# vectorise the sums over d_state. Linked with it, the library would carry crtfastmath.o, which sets
# flush-to-zero for the whole process on load and changes every later float computation.
CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fPIC", "-std=c11"]
LDFLAGS = ["-shared", "-lm"]
_status = {"compiled": False, "reason": "not built yet"}


def _cache_dir() -> Path:
    return Path(os.environ.get("PARITY_CACHE", Path.home() / ".cache" / "parity"))


def _cpu_signature() -> str:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {flags}"


@functools.cache
def _library():
    """The loaded kernel, or None (reason in ``_status``)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        _status.update(compiled=False, reason="no C compiler (gcc/cc) on PATH; using the chunked PyTorch scan")
        return None
    source = SOURCE.read_bytes()
    # -march=native: a cache shared between machines (a cluster's home) needs one build per CPU kind
    key = hashlib.sha256(source + " ".join([cc, *CFLAGS, *LDFLAGS, _cpu_signature()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"scan-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: build, then rename
                built, obj = Path(tmp) / target.name, Path(tmp) / "scan.o"
                for cmd in ([cc, *CFLAGS, "-c", str(SOURCE), "-o", str(obj)], [cc, str(obj), "-o", str(built), *LDFLAGS]):
                    subprocess.run(cmd, check=True, capture_output=True, text=True)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip().splitlines()[-1] if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        _status.update(compiled=False, reason=f"building the scan kernel failed ({detail}); using the chunked scan")
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.scan_forward.argtypes = [ptr] * 3 + [i64] + [ptr] * 5 + [i64] * 6
    lib.scan_backward.argtypes = [ptr] * 3 + [i64] + [ptr] * 12 + [i64] * 6
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


def _p(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def _time_major(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b n l -> b l n").contiguous()


class _CompiledScan(torch.autograd.Function):
    """Saves only the inputs, like mamba_ssm's kernel: dt, the states, the core output and silu(z)
    are recomputed in backward, so a training step keeps no (batch, d_inner, L) intermediates."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        lib = _library()
        batch, d_inner, L = u.shape
        N = A.shape[1]
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        Bt, Ct = _time_major(B), _time_major(C)
        bias = delta_bias.contiguous() if delta_bias is not None else None
        ranges = _ranges(d_inner)
        y = torch.empty_like(u)
        work = torch.empty((len(ranges), L), dtype=u.dtype)
        _run([functools.partial(lib.scan_forward, _p(u), _p(delta), _p(bias), int(delta_softplus), _p(A), _p(Bt),
                                _p(Ct), _p(y), _p(work[i]), batch, d_inner, L, N, d0, d1)
              for i, (d0, d1) in enumerate(ranges)])
        if D is not None:
            y.addcmul_(u, rearrange(D, "d -> d 1"))
        if z is not None:
            y.mul_(F.silu(z))
        ctx.save_for_backward(u, delta, A, Bt, Ct, D, z, bias)
        ctx.delta_softplus = delta_softplus
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        lib = _library()
        u, delta, A, Bt, Ct, D, z, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        batch, d_inner, L = u.shape
        N = A.shape[1]
        g = g.contiguous()
        need_z = z is not None and need[6]
        if z is not None:
            sig_z = torch.sigmoid(z)
            gy = g * z * sig_z  # through the gate: g * silu(z)
        else:
            gy = g
        ranges = _ranges(d_inner)
        gu, gdelta, gA = torch.empty_like(u), torch.empty_like(u), torch.empty_like(A)
        gbias = torch.empty_like(bias) if bias is not None else None
        gB = torch.zeros((len(ranges), batch, L, N), dtype=u.dtype)  # partial sums over d, one per range
        gC = torch.zeros_like(gB)
        y = torch.empty_like(u) if need_z else None
        work = torch.empty((len(ranges), L * (2 * N + 2)), dtype=u.dtype)
        _run([functools.partial(lib.scan_backward, _p(u), _p(delta), _p(bias), int(ctx.delta_softplus), _p(A),
                                _p(Bt), _p(Ct), _p(gy), _p(gu), _p(gdelta), _p(gA), _p(gbias), _p(gB[i]), _p(gC[i]),
                                _p(y), _p(work[i]), batch, d_inner, L, N, d0, d1)
              for i, (d0, d1) in enumerate(ranges)])
        gD = gz = None
        if D is not None:
            D_col = rearrange(D, "d -> d 1")
            if need[5]:
                gD = (gy * u).sum(dim=(0, 2))
            gu.addcmul_(gy, D_col)
            if y is not None:
                y.addcmul_(u, D_col)
        if need_z:  # g * (y + D u) * d silu(z)/dz, with d silu/dz = sigmoid(z) (1 + z (1 - sigmoid(z)))
            gz = y.mul_(g).mul_(sig_z).mul_(z * (1 - sig_z) + 1)
        gB = rearrange(gB.sum(0), "b l n -> b n l")
        gC = rearrange(gC.sum(0), "b l n -> b n l")
        return gu, gdelta, gA, gB, gC, gD, gz, gbias, None


def _usable(*tensors) -> bool:
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with ``selective_scan_ref`` semantics (no last state) on the compiled kernel;
    the chunked PyTorch scan where the kernel cannot serve (no compiler, float64, complex A)."""
    if (A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3 or not _usable(u, delta, A, B, C, D, z, delta_bias)
            or _library() is None):
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _CompiledScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
