"""Compiled selective scan for CPU: a small C kernel (``csrc/scan.c``) that, like mamba_ssm's CUDA
kernel, keeps each sequence's state in registers, never materialises the (batch, d_inner, L, d_state)
tensor, and applies the D skip and the silu(z) gate in the same pass. Backward recomputes a few sequences'
states at a time into per-thread L x d_state buffers. The kernel is vectorised over d_state (one SIMD lane per
state index, AVX-512 or AVX2 as the CPU allows, plain C otherwise).

The kernel is built with the system's C compiler the first time it is needed (about a second) and
cached under ``$PARITY_CACHE`` (default ``~/.cache/parity``). Without a compiler, or for anything
but float32 CPU tensors, ``selective_scan_compiled`` falls back to the pure-PyTorch chunked scan;
``compiled_scan_status()`` says which is in use and why. ``PARITY_SCAN_KERNEL`` picks the build:
``native`` (default: the widest vectors this CPU has), ``avx2`` (AVX-512 disabled) or ``scalar`` (no
explicit vectors); the last two exist so that tests can check every code path on one machine.

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
from einops import rearrange
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).parent / "csrc" / "scan.c"
# -ffast-math at compile time only: it makes glibc declare its vector math (libmvec) for the plain-C build.
# Linked with it, the library would carry crtfastmath.o, which sets flush-to-zero for the whole process on
# load and changes every later float computation.
CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fPIC", "-std=c11"]
LDFLAGS = ["-shared", "-lm"]
KERNEL_VARIANTS = {"native": [], "avx2": ["-mno-avx512f"], "scalar": ["-DSCAN_SCALAR"]}
_status: dict[str, dict] = {}  # per kernel variant


def kernel_variant() -> str:
    """The kernel build in use: ``$PARITY_SCAN_KERNEL`` (native, avx2 or scalar), default native."""
    variant = os.environ.get("PARITY_SCAN_KERNEL", "native")
    if variant not in KERNEL_VARIANTS:
        raise ValueError(f"PARITY_SCAN_KERNEL={variant!r}: choose from {', '.join(KERNEL_VARIANTS)}")
    return variant


def _cache_dir() -> Path:
    return Path(os.environ.get("PARITY_CACHE", Path.home() / ".cache" / "parity"))


def _cpu_signature() -> str:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {flags}"


@functools.cache
def _library(variant: str = "native"):
    """The loaded kernel build ``variant``, or None (reason in ``_status[variant]``)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        _status[variant] = {"compiled": False,
                            "reason": "no C compiler (gcc/cc) on PATH; using the chunked PyTorch scan"}
        return None
    flags = CFLAGS + KERNEL_VARIANTS[variant]
    source = SOURCE.read_bytes()
    # -march=native: a cache shared between machines (a cluster's home) needs one build per CPU kind
    key = hashlib.sha256(source + " ".join([cc, *flags, *LDFLAGS, _cpu_signature()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"scan-{key}.so"
    try:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: build, then rename
                built, obj = Path(tmp) / target.name, Path(tmp) / "scan.o"
                for cmd in ([cc, *flags, "-c", str(SOURCE), "-o", str(obj)], [cc, str(obj), "-o", str(built), *LDFLAGS]):
                    subprocess.run(cmd, check=True, capture_output=True, text=True)
                os.replace(built, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip().splitlines()[-1] if isinstance(e, subprocess.CalledProcessError) and e.stderr else e
        _status[variant] = {"compiled": False,
                            "reason": f"building the scan kernel failed ({detail}); using the chunked scan"}
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in ("scan_lanes", "scan_group"):
        getattr(lib, name).restype = i64
        getattr(lib, name).argtypes = []
    for name in ("scan_forward_work", "scan_backward_work"):
        getattr(lib, name).restype = i64
        getattr(lib, name).argtypes = [i64, i64]
    lib.scan_forward.argtypes = [ptr] * 3 + [i64] + [ptr] * 7 + [i64] * 6
    lib.scan_backward.argtypes = [ptr] * 3 + [i64] + [ptr] * 15 + [i64] * 6
    lib.scan_sum_partials.argtypes = [ptr] + [i64] * 5 + [ptr]
    lib.bench_exp.argtypes = [ptr, ptr, i64, i64]
    lib.bench_fma.restype = ctypes.c_float
    lib.bench_fma.argtypes = [i64]
    lanes = lib.scan_lanes()
    simd = {16: "AVX-512", 8: "AVX2"}.get(lanes, "no explicit SIMD")
    _status[variant] = {"compiled": True, "reason": f"built with {Path(cc).name} {' '.join(flags)} "
                                                    f"({lanes} float lanes, {simd}) at {target}"}
    return lib


def kernel_library():
    """The ctypes library of the kernel build in use (``kernel_variant()``), or None where it cannot be built;
    besides the scan it exports the throughput probes ``bench_exp`` and ``bench_fma``."""
    return _library(kernel_variant())


def compiled_scan_status() -> dict:
    """{'compiled': bool, 'reason': str} for the kernel build in use, building it if that was not tried yet."""
    variant = kernel_variant()
    _library(variant)
    return dict(_status.get(variant, {"compiled": False, "reason": "not built yet"}))


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="parity-scan")


def _ranges(d_inner: int, group: int = 1) -> list[tuple[int, int]]:
    """One channel range per thread, its bounds multiples of ``group`` (the kernel takes channels in groups;
    a range that ends mid-group runs its last channels one at a time)."""
    k = max(1, min(torch.get_num_threads(), d_inner))
    bounds = sorted({min(d_inner, round(d_inner * i / k / group) * group) for i in range(k)} | {d_inner})
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


def _padded_state(x: torch.Tensor, width: int) -> torch.Tensor:
    """x (..., d_state) contiguous, zero-padded to a multiple of the kernel's vector width: zero A, B and C
    lanes keep the padding states at zero and add nothing."""
    n = x.shape[-1]
    padded = -(-n // width) * width
    if padded == n:
        return x.contiguous()
    out = x.new_zeros((*x.shape[:-1], padded))
    out[..., :n] = x
    return out


def _work(lib, size_fn, ranges, L: int, NP: int) -> torch.Tensor:
    """One scratch row per range, each a multiple of 16 floats so that every row stays 64-byte aligned."""
    floats = -(-size_fn(L, NP) // 16) * 16
    return torch.empty((len(ranges), floats), dtype=torch.float32)


class _CompiledScan(torch.autograd.Function):
    """Saves only the inputs: dt, the states, the core output and silu(z) are recomputed in backward, so a
    training step keeps no (batch, d_inner, L) intermediates. (mamba_ssm's kernel also keeps the output
    before the gate; recomputing it costs a little compute and saves a tensor per call.)"""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        lib = kernel_library()
        batch, d_inner, L = u.shape
        width = lib.scan_lanes()
        u, delta = u.contiguous(), delta.contiguous()
        A_p = _padded_state(A, width)
        NP = A_p.shape[1]
        Bt, Ct = _padded_state(rearrange(B, "b n l -> b l n"), width), _padded_state(rearrange(C, "b n l -> b l n"), width)
        bias = delta_bias.contiguous() if delta_bias is not None else None
        D = D.contiguous() if D is not None else None
        z = z.contiguous() if z is not None else None
        ranges = _ranges(d_inner, lib.scan_group())
        out = torch.empty_like(u)
        work = _work(lib, lib.scan_forward_work, ranges, L, NP)
        _run([functools.partial(lib.scan_forward, _p(u), _p(delta), _p(bias), int(delta_softplus), _p(A_p), _p(Bt),
                                _p(Ct), _p(D), _p(z), _p(out), _p(work[i]), batch, d_inner, L, NP, d0, d1)
              for i, (d0, d1) in enumerate(ranges)])
        ctx.save_for_backward(u, delta, A_p, Bt, Ct, D, z, bias)
        ctx.delta_softplus = delta_softplus
        ctx.d_state = A.shape[1]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        lib = kernel_library()
        u, delta, A_p, Bt, Ct, D, z, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        batch, d_inner, L = u.shape
        N, NP = ctx.d_state, A_p.shape[1]
        g = g.contiguous()
        ranges = _ranges(d_inner, lib.scan_group())
        gu, gdelta, gA = torch.empty_like(u), torch.empty_like(u), torch.empty_like(A_p)
        gbias = torch.empty_like(bias) if bias is not None else None
        gD = torch.empty_like(D) if D is not None and need[5] else None
        gz = torch.empty_like(z) if z is not None and need[6] else None
        gB_parts = torch.empty((len(ranges), batch, L, NP), dtype=u.dtype)  # sums over each range's channels
        gC_parts = torch.empty_like(gB_parts)
        work = _work(lib, lib.scan_backward_work, ranges, L, NP)
        _run([functools.partial(lib.scan_backward, _p(u), _p(delta), _p(bias), int(ctx.delta_softplus), _p(A_p),
                                _p(Bt), _p(Ct), _p(D), _p(z), _p(g), _p(gu), _p(gdelta), _p(gA), _p(gbias), _p(gD),
                                _p(gz), _p(gB_parts[i]), _p(gC_parts[i]), _p(work[i]), batch, d_inner, L, NP, d0, d1)
              for i, (d0, d1) in enumerate(ranges)])
        gB, gC = u.new_empty((batch, N, L)), u.new_empty((batch, N, L))
        for parts, out in ((gB_parts, gB), (gC_parts, gC)):
            lib.scan_sum_partials(_p(parts), len(ranges), batch, L, NP, N, _p(out))
        return gu, gdelta, gA[:, :N], gB, gC, gD, gz, gbias, None


def _usable(*tensors) -> bool:
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with ``selective_scan_ref`` semantics (no last state) on the compiled kernel;
    the chunked PyTorch scan where the kernel cannot serve (no compiler, float64, complex A)."""
    if (A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3 or not _usable(u, delta, A, B, C, D, z, delta_bias)
            or kernel_library() is None):
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _CompiledScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
