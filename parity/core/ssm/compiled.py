"""Compiled selective scan for CPU: a small C kernel (``csrc/scan.c``) that, like mamba_ssm's CUDA
kernel, keeps each sequence's state in registers, never materialises the (batch, d_inner, L, d_state)
tensor, and applies the D skip and the silu(z) gate in the same pass. Backward recomputes a few sequences'
states at a time into per-thread L x d_state buffers. The kernel is vectorised over d_state (one SIMD lane per
state index, AVX-512 or AVX2 as the CPU allows, plain C otherwise).

The same library holds the mixer's depthwise causal conv1d + SiLU (``csrc/conv.c``, forward and backward) and
the MLP's GELU (``csrc/gelu.c``);
``fused.py`` runs a whole mixer core on the two. Both take strided rows (each (batch, channel) row's time steps
contiguous), so they read and write the mixer's (d, batch L) matmul results in place.

The kernels are built with the system's C compiler the first time they are needed (about a second) and
cached under ``$PARITY_CACHE`` (default ``~/.cache/parity``). Without a compiler, or for anything
but float32 CPU tensors, ``selective_scan_compiled`` falls back to the pure-PyTorch chunked scan;
``compiled_scan_status()`` says which is in use and why. ``PARITY_SCAN_KERNEL`` picks the build:
``native`` (default: the widest vectors this CPU has), ``avx2`` (AVX-512 disabled) or ``scalar`` (no
explicit vectors); the last two exist so that tests can check every code path on one machine. ``phases`` is
``native`` with timers around each phase of the scan, read by ``parity.bench.scan.bench_scan_phases``.

Threads: each kernel call runs ``torch.get_num_threads()`` OpenMP threads, each on its share of the channels
(or of a flat array). The library links the OpenMP runtime torch has loaded, so the kernels run on the same
worker threads as torch's operators: right after a matrix product those are still awake (spinning), and a
separate pool of threads would compete with them for the cores. ctypes releases the GIL during each call.
Without OpenMP support in the compiler the kernels are built single-threaded.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from einops import rearrange
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from ..errors import ParityError, did_you_mean

CSRC = Path(__file__).parent / "csrc"
SOURCES = [CSRC / "scan.c", CSRC / "conv.c", CSRC / "gelu.c"]  # all include simd.h
# -ffast-math at compile time only: it makes glibc declare its vector math (libmvec) for the plain-C build.
# Linked with it, the library would carry crtfastmath.o, which sets flush-to-zero for the whole process on
# load and changes every later float computation.
CFLAGS = ["-O3", "-ffast-math", "-march=native", "-fPIC", "-std=c11"]
LDFLAGS = ["-shared", "-lm"]
OPENMP = ["-fopenmp"]  # tried first, then without (single-threaded kernels)
KERNEL_VARIANTS = {"native": [], "avx2": ["-mno-avx512f"], "scalar": ["-DSCAN_SCALAR"],
                   "phases": ["-DSCAN_PHASES"]}  # native with per-phase timers (bench_scan_phases)
_status: dict[str, dict] = {}  # per kernel variant


class StateGrads(ctypes.Structure):
    """scan.c's state_grads: where backward writes the gradients wrt B and C, (b, n, t) strides of each."""

    _fields_ = [("out", ctypes.c_void_p * 2), ("N", ctypes.c_int64), *((name, ctypes.c_int64 * 2)
                                                                      for name in ("sb", "sn", "st"))]


class ScanShape(ctypes.Structure):
    """scan.c's scan_shape: sizes and strides (in floats) of one scan call."""

    _fields_ = [*((name, ctypes.c_int64) for name in ("batch", "d_inner", "L", "NP", "row_sb", "row_sd", "bc_st",
                                                      "out_sb", "out_sd", "out_st", "z_rev")),
                ("out_scale", ctypes.c_float), ("dt_low", ctypes.c_void_p), ("dt_weight", ctypes.c_void_p),
                ("dt_rank", ctypes.c_int64), ("dt_low_st", ctypes.c_int64)]


def kernel_variant() -> str:
    """The kernel build in use: ``$PARITY_SCAN_KERNEL`` (native, avx2, scalar or phases), default native."""
    variant = os.environ.get("PARITY_SCAN_KERNEL", "native")
    if variant not in KERNEL_VARIANTS:
        raise ParityError(f"PARITY_SCAN_KERNEL={variant!r} is not a kernel build"
                          f"{did_you_mean(variant, KERNEL_VARIANTS)}: set it to one of {', '.join(KERNEL_VARIANTS)}, "
                          "or unset it for native")
    return variant


PROFILER_PREFIX = "parity::"  # each kernel call's range in torch.profiler: parity::scan_forward, ...
SCAN_EVENTS = (f"{PROFILER_PREFIX}scan_forward", f"{PROFILER_PREFIX}scan_backward")


def profiled(fn):
    """``fn`` (a ``run_<kernel>``) inside a torch.profiler range named ``parity::<kernel>``, so that a profile shows
    each kernel call apart from the autograd Function around it (a few microseconds a call, profiling or not)."""
    name = PROFILER_PREFIX + fn.__name__.removeprefix("run_")

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return run


def _cache_dir() -> Path:
    return Path(os.environ.get("PARITY_CACHE", Path.home() / ".cache" / "parity"))


def _cpu_signature() -> str:
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {flags}"


def _build(cc: str, flags: list[str], ldflags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:  # atomic: build, then rename
        built, objs = Path(tmp) / target.name, [Path(tmp) / f"{src.stem}.o" for src in SOURCES]
        cmds = [[cc, *flags, "-c", str(src), "-o", str(obj)] for src, obj in zip(SOURCES, objs)]
        for cmd in [*cmds, [cc, *map(str, objs), "-o", str(built), *ldflags]]:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        os.replace(built, target)


@functools.cache
def _library(variant: str = "native"):
    """The loaded kernel build ``variant``, or None (reason in ``_status[variant]``)."""
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        _status[variant] = {"compiled": False,
                            "reason": "no C compiler (gcc/cc) on PATH; using the chunked PyTorch scan"}
        return None
    source = b"".join(path.read_bytes() for path in sorted(CSRC.iterdir()) if path.suffix in (".c", ".h"))
    lib, failure = None, None
    for extra in (OPENMP, []):
        flags, ldflags = CFLAGS + KERNEL_VARIANTS[variant] + extra, LDFLAGS + extra
        # -march=native: a cache shared between machines (a cluster's home) needs one build per CPU kind
        key = hashlib.sha256(source + " ".join([cc, *flags, *ldflags, _cpu_signature()]).encode()).hexdigest()[:16]
        target = _cache_dir() / f"scan-{key}.so"
        try:
            if not target.exists():
                _build(cc, flags, ldflags, target)
            lib = ctypes.CDLL(str(target))
            break
        except (OSError, subprocess.CalledProcessError) as e:
            failure = (e.stderr.strip().splitlines()[-1] if isinstance(e, subprocess.CalledProcessError) and e.stderr
                       else e)
    if lib is None:
        _status[variant] = {"compiled": False,
                            "reason": f"building the scan kernel failed ({failure}); using the chunked scan"}
        return None
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    for name in ("scan_lanes", "scan_group"):
        getattr(lib, name).restype = i64
        getattr(lib, name).argtypes = []
    for name in ("scan_forward_work", "scan_backward_work", "conv_work"):
        getattr(lib, name).restype = i64
        getattr(lib, name).argtypes = [i64, i64]
    shape = ctypes.POINTER(ScanShape)
    lib.scan_forward.argtypes = [ptr] * 3 + [i64] + [ptr] * 7 + [i64, shape, i64]
    lib.scan_backward.restype = None
    lib.scan_backward.argtypes = [ptr] * 3 + [i64] + [ptr] * 14 + [i64, shape, ctypes.POINTER(StateGrads), i64]
    lib.conv_silu_forward.argtypes = [ptr, i64, i64, ptr, ptr, i64, ptr, i64, i64] + [i64] * 4 + [ptr, i64]
    lib.conv_silu_backward.argtypes = ([ptr, i64, i64, ptr, ptr, i64, ptr, i64, i64, ptr, i64, i64, ptr, ptr]
                                       + [i64] * 4 + [ptr, i64])
    lib.gelu_forward.argtypes = [ptr, ptr, ptr, i64, i64, i64]
    lib.gelu_backward.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64]
    lib.bench_exp.argtypes = [ptr, ptr, i64, i64]
    lib.bench_fma.restype = ctypes.c_float
    lib.bench_fma.argtypes = [i64]
    lib.scan_phase_seconds.restype = i64
    lib.scan_phase_seconds.argtypes = [ptr]
    lanes = lib.scan_lanes()
    simd = {16: "AVX-512", 8: "AVX2"}.get(lanes, "no explicit SIMD")
    threads = "OpenMP threads" if "-fopenmp" in flags else "single-threaded: no OpenMP"
    _status[variant] = {"compiled": True, "reason": f"built with {Path(cc).name} {' '.join(flags)} "
                                                    f"({lanes} float lanes, {simd}; {threads}) at {target}"}
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


def _threads() -> int:
    return torch.get_num_threads()


def _p(t: torch.Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def padded_state(x: torch.Tensor, width: int) -> torch.Tensor:
    """x (..., d_state) contiguous, zero-padded to a multiple of the kernel's vector width: zero A, B and C
    lanes keep the padding states at zero and add nothing."""
    n = x.shape[-1]
    padded = -(-n // width) * width
    if padded == n:
        return x.contiguous()
    out = x.new_zeros((*x.shape[:-1], padded))
    out[..., :n] = x
    return out


_scratch = threading.local()


def scratch(name: str, *shape: int) -> torch.Tensor:
    """A float32 tensor of ``shape`` on this thread's buffer ``name``, the same memory from call to call (its
    contents are whatever the last user left). For the kernels' scratch and for intermediates that a call
    recomputes rather than keeps: a fresh tensor of this size is a fresh mapping, whose pages the operating
    system zeroes on first touch at about the cost of a pass over it. Never return or save one."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    n = math.prod(shape)
    buf = buffers.get(name)
    if buf is None or buf.numel() < n:
        buf = buffers[name] = torch.empty(n, dtype=torch.float32)
    return buf[:n].view(shape)


def release_scratch() -> None:
    """Free this thread's scratch buffers (the next call allocates them again)."""
    _scratch.__dict__.pop("buffers", None)


def _work(size_fn, threads: int, *sizes: int) -> torch.Tensor:
    """One scratch row per thread, each a multiple of 16 floats so that every row stays 64-byte aligned."""
    floats = -(-size_fn(*sizes) // 16) * 16
    return scratch(f"work-{size_fn.__name__}", threads, floats)


def _rows_ok(t: torch.Tensor) -> bool:
    return t.stride(-1) == 1 or t.shape[-1] == 1


def scan_shape(u: torch.Tensor, NP: int, bc_st: int, out: torch.Tensor, reverse: bool = False,
               out_scale: float = 1.0, delta_proj=None) -> tuple[ScanShape, ctypes.c_void_p]:
    """The kernel's sizes and strides, and the pointer it takes for out: u (batch, d_inner, L) rows (its strides
    are those of delta, z and their gradients too), B and C rows bc_st apart, out (batch, d_inner, L) with t or d
    contiguous. reverse: out (time-major) and z run backwards in time, the scan's own inputs forwards.
    delta_proj: (low, weight), delta = weight @ low computed inside the kernel (low (rank, batch L) with
    contiguous rows, weight (d_inner, rank) contiguous) instead of read from a tensor."""
    batch, d_inner, L = u.shape
    out_sb, out_sd, out_st = out.stride()
    if not _rows_ok(u) or not (out_st == 1 or out_sd == 1) or (reverse and out_sd != 1):
        raise ValueError(f"scan layouts: u strides {u.stride()}, out strides {out.stride()}, reverse {reverse}")
    pointer = out.data_ptr()
    if reverse:  # step t of the scan at step L - 1 - t of out
        pointer += (L - 1) * out_st * out.element_size()
        out_st = -out_st
    shape = ScanShape(batch, d_inner, L, NP, u.stride(0), u.stride(1), bc_st, out_sb, out_sd, out_st, int(reverse),
                      out_scale)
    if delta_proj is not None:
        low, weight = delta_proj
        if not _rows_ok(low) or not weight.is_contiguous() or weight.shape != (d_inner, low.shape[0]):
            raise ValueError("delta_proj: low (rank, batch L) with contiguous rows, weight (d_inner, rank) contiguous")
        shape.dt_low, shape.dt_weight = low.data_ptr(), weight.data_ptr()
        shape.dt_rank, shape.dt_low_st = low.shape[0], low.stride(0)
    return shape, ctypes.c_void_p(pointer)


def _state_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """B or C as (batch, L, NP) rows that the kernel reads in place: (b, t) at (b L + t) step, NP floats."""
    batch, L, NP = x.shape
    step = x.stride(1)
    if x.stride(2) != 1 or x.stride(0) != L * step:
        raise ValueError(f"B, C rows: strides {x.stride()}")
    return x, step


@profiled
def run_scan_forward(u, delta, A_p, B_rows, C_rows, D, z, bias, softplus: bool, out, reverse: bool = False,
                     out_scale: float = 1.0, delta_proj=None) -> None:
    """out <- out_scale x the scan. u, delta, z: (batch, d_inner, L), one set of strides, t contiguous; A_p:
    (d_inner, NP) padded (padded_state); B_rows, C_rows: (batch, L, NP), each (b, t) row NP contiguous floats, rows
    equally spaced (padded copies, or column blocks of x_proj's output); out: (batch, d_inner, L), t or d
    contiguous. reverse: z's rows and out (d contiguous) run backwards in time; delta_proj: delta from its
    projection, delta None (``scan_shape``)."""
    lib = kernel_library()
    _, bc_st = _state_rows(B_rows)
    if _state_rows(C_rows)[1] != bc_st or C_rows.stride() != B_rows.stride():
        raise ValueError("B and C rows must share their layout")
    for t in (delta, z):
        if t is not None and t.stride() != u.stride():
            raise ValueError("u, delta and z must share their strides")
    shape, out_pointer = scan_shape(u, A_p.shape[1], bc_st, out, reverse, out_scale, delta_proj)
    threads = _threads()
    work = _work(lib.scan_forward_work, threads, shape.L, shape.NP)
    lib.scan_forward(_p(u), _p(delta), _p(bias), int(softplus), _p(A_p), _p(B_rows), _p(C_rows), _p(D), _p(z),
                     out_pointer, _p(work), work.shape[1], ctypes.byref(shape), threads)


@profiled
def run_scan_backward(u, delta, A_p, B_rows, C_rows, D, z, bias, softplus: bool, g, gu, gdelta, gz, gA, gbias, gD,
                      gB, gC, reverse: bool = False, out_scale: float = 1.0, delta_proj=None) -> None:
    """The gradients of ``run_scan_forward`` wrt its inputs for the output gradient g (out's layout): gu, gdelta,
    gz (u's strides; gz None: not wanted), gA (d_inner, NP), gbias, gD (d_inner,) or None; gB, gC: (batch,
    d_state, L) views, any strides, that receive the sums over channels."""
    lib = kernel_library()
    _, bc_st = _state_rows(B_rows)
    for t in (delta, z, gu, gdelta, gz):
        if t is not None and t.stride() != u.stride():
            raise ValueError("u, delta, z and their gradients must share their strides")
    shape, g_pointer = scan_shape(u, A_p.shape[1], bc_st, g, reverse, out_scale, delta_proj)
    batch, N, L, NP = shape.batch, gB.shape[1], shape.L, shape.NP
    threads = _threads()
    parts = scratch("scan-partials", 2, threads, batch, L, NP)  # per thread: sums over its channels
    work = _work(lib.scan_backward_work, threads, L, NP)
    grads = StateGrads((ctypes.c_void_p * 2)(gB.data_ptr(), gC.data_ptr()), N,
                       *((ctypes.c_int64 * 2)(gB.stride(k), gC.stride(k)) for k in range(3)))
    lib.scan_backward(_p(u), _p(delta), _p(bias), int(softplus), _p(A_p), _p(B_rows), _p(C_rows), _p(D), _p(z),
                      g_pointer, _p(gu), _p(gdelta), _p(gA), _p(gbias), _p(gD), _p(gz), _p(parts), _p(work),
                      work.shape[1], ctypes.byref(shape), ctypes.byref(grads), threads)


class _CompiledScan(torch.autograd.Function):
    """Saves only the inputs: dt, the states, the core output and silu(z) are recomputed in backward, so a
    training step keeps no (batch, d_inner, L) intermediates. (mamba_ssm's kernel also keeps the output
    before the gate; recomputing it costs a little compute and saves a tensor per call.)"""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        width = kernel_library().scan_lanes()
        u = u.contiguous()
        delta = delta.contiguous()
        z = z.contiguous() if z is not None else None
        A_p = padded_state(A, width)
        Bt = padded_state(rearrange(B, "b n l -> b l n"), width)
        Ct = padded_state(rearrange(C, "b n l -> b l n"), width)
        bias = delta_bias.contiguous() if delta_bias is not None else None
        D = D.contiguous() if D is not None else None
        out = torch.empty_like(u)
        run_scan_forward(u, delta, A_p, Bt, Ct, D, z, bias, delta_softplus, out)
        ctx.save_for_backward(u, delta, A_p, Bt, Ct, D, z, bias)
        ctx.delta_softplus = delta_softplus
        ctx.d_state = A.shape[1]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        u, delta, A_p, Bt, Ct, D, z, bias = ctx.saved_tensors
        need = ctx.needs_input_grad
        batch, _, L = u.shape
        N = ctx.d_state
        if not (_rows_ok(g) or g.stride(1) == 1):
            g = g.contiguous()
        gu, gdelta, gA = torch.empty_like(u), torch.empty_like(u), torch.empty_like(A_p)
        gbias = torch.empty_like(bias) if bias is not None else None
        gD = torch.empty_like(D) if D is not None and need[5] else None
        gz = torch.empty_like(z) if z is not None and need[6] else None
        gB, gC = u.new_empty((batch, N, L)), u.new_empty((batch, N, L))
        run_scan_backward(u, delta, A_p, Bt, Ct, D, z, bias, ctx.delta_softplus, g, gu, gdelta, gz, gA, gbias, gD,
                          gB, gC)
        return gu, gdelta, gA[:, :N], gB, gC, gD, gz, gbias, None


@profiled
def run_conv_forward(x, weight, bias, out, reverse: bool = False) -> None:
    """out <- silu(causal depthwise conv1d of x): x, out (batch, d_inner, L), any strides with t contiguous;
    weight (d_inner, K) contiguous; bias (d_inner,) or None. reverse: of x read backwards in time."""
    lib = kernel_library()
    batch, d_inner, L = x.shape
    K = weight.shape[-1]
    if not (_rows_ok(x) and _rows_ok(out)):
        raise ValueError("conv rows must have contiguous time steps")
    threads = _threads()
    work = scratch("work-conv", threads, lib.conv_work(L, K))
    lib.conv_silu_forward(_p(x), x.stride(0), x.stride(1), _p(weight), _p(bias), K, _p(out), out.stride(0),
                          out.stride(1), batch, L, int(reverse), d_inner, _p(work), threads)


@profiled
def run_conv_backward(x, weight, bias, g, gx, gweight, gbias, reverse: bool = False) -> None:
    """The gradients of ``run_conv_forward`` for the output gradient g: gx (x's shape, any strides with t
    contiguous; backwards in time with reverse, like x), gweight (d_inner, K) and gbias (d_inner,) or None."""
    lib = kernel_library()
    batch, d_inner, L = x.shape
    K = weight.shape[-1]
    if not (_rows_ok(x) and _rows_ok(g) and _rows_ok(gx)):
        raise ValueError("conv rows must have contiguous time steps")
    threads = _threads()
    work = scratch("work-conv", threads, lib.conv_work(L, K))
    lib.conv_silu_backward(_p(x), x.stride(0), x.stride(1), _p(weight), _p(bias), K, _p(g), g.stride(0), g.stride(1),
                           _p(gx), gx.stride(0), gx.stride(1), _p(gweight), _p(gbias), batch, L, int(reverse), d_inner,
                           _p(work), threads)


MAX_CONV_TAPS = 64  # conv.c keeps one accumulator vector per tap


class _CompiledConvSiLU(torch.autograd.Function):
    """silu(conv1d(x)[..., :L]) of a depthwise nn.Conv1d with left padding K - 1; keeps only its inputs."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        w = rearrange(weight, "d 1 k -> d k").contiguous()
        b = bias.contiguous() if bias is not None else None
        x = x if _rows_ok(x) else x.contiguous()
        out = x.new_empty(x.shape)
        run_conv_forward(x, w, b, out)
        ctx.save_for_backward(x, w, b)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        x, w, b = ctx.saved_tensors
        g = g if _rows_ok(g) else g.contiguous()
        gx, gw = torch.empty_like(x), torch.empty_like(w)
        gb = torch.empty_like(b) if b is not None else None
        run_conv_backward(x, w, b, g, gx, gw, gb)
        return gx, rearrange(gw, "d k -> d 1 k"), gb


@profiled
def run_gelu_forward(h, a, bias=None) -> None:
    """a <- gelu(h + bias) (the erf form): h, a contiguous (rows, cols) float32, bias (cols,) or None."""
    cols = h.shape[-1]
    kernel_library().gelu_forward(_p(h), _p(bias), _p(a), h.numel() // cols, cols, _threads())


@profiled
def run_gelu_backward(h, ga, a=None, bias=None) -> None:
    """ga <- ga gelu'(h + bias) in place and, unless a is None, a <- gelu(h + bias); h, ga, a contiguous
    (rows, cols) float32, bias (cols,) or None."""
    cols = h.shape[-1]
    kernel_library().gelu_backward(_p(h), _p(bias), _p(ga), _p(a), h.numel() // cols, cols, _threads())


def _usable(*tensors) -> bool:
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)


def conv_silu_compiled(x, weight, bias=None):
    """silu of a depthwise causal conv1d, the Mamba mixer's ``act(conv1d(x)[..., :L])`` for x (batch, d_inner, L),
    weight (d_inner, 1, K) and bias (d_inner,) or None, on the compiled kernel; the same in plain PyTorch where the
    kernel cannot serve."""
    K = weight.shape[-1]
    if not _usable(x, weight, bias) or kernel_library() is None or K > MAX_CONV_TAPS or x.dim() != 3:
        out = torch.nn.functional.conv1d(x, weight, bias, padding=K - 1, groups=weight.shape[0])
        return torch.nn.functional.silu(out[..., :x.shape[-1]])
    return _CompiledConvSiLU.apply(x, weight, bias)


def selective_scan_compiled(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan with ``selective_scan_ref`` semantics (no last state) on the compiled kernel;
    the chunked PyTorch scan where the kernel cannot serve (no compiler, float64, complex A)."""
    if (A.is_complex() or A.dim() != 2 or B.dim() != 3 or C.dim() != 3
            or not _usable(u, delta, A, B, C, D, z, delta_bias) or kernel_library() is None):
        from .chunked import selective_scan_chunked

        return selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _CompiledScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
