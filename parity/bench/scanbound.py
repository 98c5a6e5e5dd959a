"""The selective scan's hardware bound on the machine it runs on, from measurement, so that the benchmark
can state the compiled scan's time as a multiple of the least time this machine could take for the same
work: a number that means the same on any machine.

Work, for the compiled kernel's algorithm (``parity/core/ssm/csrc/scan.c``: backward recomputes the states and,
with a gate, the output, rather than keep anything of size (batch, d_inner, L) from forward), counted per
element (b, d, t, n), a multiply-add as 2 FLOPs (as the FMA rate counts it):

- forward: 1 exp (exp(dt A)); 6 FLOPs: dt A, the decay times the state, (dt u) B, their sum, C x and the
  sum over n;
- backward: 1 exp (the states again); 4 FLOPs for the states, 2 for the output when gated (the gate's
  gradient needs it); the adjoint 15: h_t = C_t gy_t + exp(dt A) h_{t+1} (3), and 2 each for gC, gB, the
  gradients wrt dt u and wrt dt (through the decay), gA, and q = h exp(dt A) x_{t-1}.

So 2 exps and 25 FLOPs per element (27 gated).

And per step of a row (b, d, t), 1/d_state as often but with transcendental functions of its own: the step
size, the gate and the skip, which the scan must compute too (measured on this machine, they are about a
quarter of the compiled kernel's time at the original's shape). Counted with delta's bias and softplus, as the
Mamba mixer calls the scan; a log or an exp counted as one exp at the exp rate, a reciprocal as one FLOP (the
kernel's log1p and reciprocals take more than that, so the count stays a lower one):

- forward: the step size softplus(delta + bias) = max(x, 0) + log(1 + exp(-|x|)): 2 exps, 3 FLOPs; dt u: 1;
  the skip y + D u: 2; the gate silu(z) = z / (1 + exp(-z)) and the product with it: 1 exp, 4 FLOPs;
- backward: the step size again (2 exps, 3 FLOPs) and dt u (1); softplus' derivative sigmoid(x) from the same
  exp (2); the gate again (1 exp; sigmoid 2, silu 1, silu' = sig (1 + z (1 - sig)) 3, g silu 1 and g (y + D u)
  silu' 4: 11 FLOPs); the gradients wrt delta ((g_dtu u + g_dt) sigmoid: 3), u (g_dtu dt + gy D: 3), the bias
  and D (sums over t: 1 and 2).

So 6 exps and 36 FLOPs per step of a row (4 exps and 6 FLOPs fewer without softplus, delta + bias kept; 2 exps
and 15 FLOPs fewer without the gate).

Bytes: every (batch, d_inner, L) tensor read or written once per pass: forward reads u, delta (and z) and
writes the output; backward reads u, delta (and z) and the output's gradient and writes the gradients of u,
delta (and z). B and C ((batch, d_state, L)) are read in both passes, their gradients written once.

Rates, measured here on ``threads`` threads at once (the kernel's own thread split). On a shared VM they are
not steady: on the 2-core VM this was written on, two threads at once ran the exp probe in 15 to 29 ms a call
(median 21) where one thread alone took 15 to 16, so a best-of-several rate describes a rare moment, not the
machine the kernel runs on. The scan benchmark therefore probes the rates before each timed run
(``probe_rates``) and compares medians, as the step benchmark does with the GEMM rate. ``scan_bound`` without
rates uses the best of ``REPEATS``: the step's ceiling takes its scans at that bound, which can only make the
ceiling too generous, never too strict.

- exp: the vector exp the kernel's recurrences run (``bench_exp`` in the kernel library, built with its flags) over an
  array in L1, so it is the exp the kernel runs;
- FLOPs: vector fused multiply-adds, 12 independent chains (``bench_fma``), the FMA pipes' peak;
- bandwidth: a torch copy of one (batch, d_inner, L) float32 tensor into another (2 x its bytes per copy),
  the size of the scan's operands.

bound = max(compute, memory), compute = exps / exp rate + FLOPs / FMA rate (exp is itself work for the
same vector pipes, so the two add), memory = bytes / bandwidth.
"""

from __future__ import annotations

import ctypes
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import torch

EXP_ARRAY = 4096  # floats: 16 KiB, in L1
EXP_REPS = 40_000  # passes per timed call: about 20 ms (shorter calls measured the clock ramping up)
FMA_ITERS = 8_000_000  # rounds of 12 FMAs per timed call: about 20 ms
FMA_CHAINS = 12  # bench_fma's independent chains
REPEATS = 7  # timed runs per rate; the best counts


def phase_work(batch: int, length: int, d_inner: int, d_state: int, gated: bool = True,
               softplus: bool = True) -> dict:
    """Exps and FLOPs of each phase of the compiled kernel at this shape, pass by pass: {'forward':
    {'recurrence', 'elementwise'}, 'backward': {'states', 'adjoint', 'elementwise'}}, each {'exps', 'flops'};
    the recurrences' work per element (b, d, t, n), the step size's, the gate's and the skip's (the
    prologues and epilogues) per step of a row (b, d, t); see the module docstring for what is counted."""
    elements = batch * d_inner * length * d_state
    rows = batch * d_inner * length  # steps of all rows
    step_size = (2, 3) if softplus else (0, 1)  # (exps, FLOPs) of dt from delta + bias

    def work(exps, flops):
        return {"exps": exps, "flops": flops}

    return {"forward": {"recurrence": work(elements, 6 * elements),
                        "elementwise": work((step_size[0] + gated) * rows, (step_size[1] + 1 + 2 + 4 * gated) * rows)},
            "backward": {"states": work(elements, (4 + 2 * gated) * elements),
                         "adjoint": work(0, 15 * elements),
                         "elementwise": work((step_size[0] + gated) * rows,
                                             (step_size[1] + 1 + 2 * softplus + 11 * gated + 9) * rows)}}


def pass_work(batch: int, length: int, d_inner: int, d_state: int, gated: bool = True,
              softplus: bool = True) -> dict:
    """Exps, FLOPs and bytes of each pass of the compiled scan at this shape, {'forward': {...}, 'backward':
    {...}}: its phases' work (``phase_work``) added up, and the bytes it reads and writes."""
    rows = batch * d_inner * length  # elements of one (batch, d_inner, L) tensor
    small = batch * d_state * length  # one of B, C, gB, gC
    inputs = 3 if gated else 2  # u, delta (and z)
    nbytes = {"forward": 4 * ((inputs + 1) * rows + 2 * small),  # in, out; B, C
              "backward": 4 * ((inputs + 1 + inputs) * rows + 4 * small)}  # in, g; their gradients; B, C, gB, gC
    return {name: {"exps": sum(w["exps"] for w in phases.values()), "flops": sum(w["flops"] for w in phases.values()),
                   "bytes": nbytes[name]}
            for name, phases in phase_work(batch, length, d_inner, d_state, gated, softplus).items()}


def scan_work(batch: int, length: int, d_inner: int, d_state: int, gated: bool = True, softplus: bool = True) -> dict:
    """Exps, FLOPs and bytes of one forward + backward of the compiled scan at this shape: the two passes'
    (``pass_work``) added up; and the parts of them per element (b, d, t, n) and per step of a row (b, d, t)."""
    passes = pass_work(batch, length, d_inner, d_state, gated, softplus).values()
    elements = batch * d_inner * length * d_state
    rows = batch * d_inner * length
    exps, flops = sum(p["exps"] for p in passes), sum(p["flops"] for p in passes)
    exps_per_element, flops_per_element = 2, 25 + 2 * gated
    return {"elements": elements, "exps": exps, "flops": flops, "exps_per_element": exps_per_element,
            "flops_per_element": flops_per_element,
            "exps_per_row_step": (exps - exps_per_element * elements) // rows if rows else 0,
            "flops_per_row_step": (flops - flops_per_element * elements) // rows if rows else 0,
            "bytes": sum(p["bytes"] for p in passes)}


def _timed_parallel(fn, threads: int, repeats: int) -> float:
    """Best wall time of fn(0), ..., fn(threads - 1) run at once on as many threads (ctypes releases the GIL)."""
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for f in [pool.submit(fn, i) for i in range(threads)]:
                f.result()
            best = min(best, time.perf_counter() - t0)
    return best


@functools.cache
def _probes(threads: int):
    """The exp and FMA probes, each run on ``threads`` threads at once, with the vector width; warmed up once."""
    from ..core.ssm.compiled import compiled_scan_status, kernel_library

    lib = kernel_library()
    if lib is None:
        raise RuntimeError(f"no compiled kernel to measure: {compiled_scan_status()['reason']}")
    x = -torch.rand(EXP_ARRAY, generator=torch.Generator().manual_seed(0)) * 20  # like dt A: in [-20, 0]
    ys = [torch.empty_like(x) for _ in range(threads)]  # each thread its own output array

    def exps(i):
        lib.bench_exp(ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(ys[i].data_ptr()), EXP_ARRAY, EXP_REPS)

    def fmas(i):
        lib.bench_fma(FMA_ITERS)

    _timed_parallel(exps, threads, REPEATS)  # warm-up: the cores at their working clock
    return exps, fmas, lib.scan_lanes()


def _rates(threads: int, repeats: int) -> dict:
    exps, fmas, lanes = _probes(threads)
    exp_s, fma_s = _timed_parallel(exps, threads, repeats), _timed_parallel(fmas, threads, repeats)
    return {"exp_per_s": threads * EXP_ARRAY * EXP_REPS / exp_s,
            "flop_per_s": threads * FMA_ITERS * FMA_CHAINS * lanes * 2 / fma_s, "lanes": lanes}


@functools.cache
def _compute_rates(threads: int) -> dict:
    return _rates(threads, REPEATS)


def probe_rates(threads: int | None = None) -> dict:
    """The exp and FMA rates at this moment: one timed call of each probe (about 40 ms), for a bound timed
    next to the run it bounds (``scan_bound(..., rates=)``)."""
    return _rates(threads or torch.get_num_threads(), 1)


@functools.cache
def _bandwidth(threads: int, elements: int) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        src = torch.randn(elements, generator=torch.Generator().manual_seed(0))
        dst = torch.empty_like(src)
        dst.copy_(src)  # first touch outside the timing
        best = float("inf")
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            dst.copy_(src)
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    return 2 * src.numel() * src.element_size() / best


def compute_seconds(work: dict, rates: dict) -> float:
    """The least time ``work`` ({'exps', 'flops'}) takes at ``rates`` ({'exp_per_s', 'flop_per_s'}): exps are
    work for the same vector pipes as FLOPs, so the two add."""
    return work["exps"] / rates["exp_per_s"] + work["flops"] / rates["flop_per_s"]


def scan_bound(batch: int, length: int, d_inner: int, d_state: int, threads: int | None = None,
               gated: bool = True, rates: dict | None = None, softplus: bool = True) -> dict:
    """The least time one forward + backward of the compiled scan could take here: the work (``scan_work``),
    the measured rates, compute and memory times and ``bound_s`` = the larger ('limit' says which); and each
    pass's own bound (``forward_bound_s``, ``backward_bound_s``).
    rates: exp and FMA rates from ``probe_rates``; without them, the best of ``REPEATS`` timed calls, measured
    once per thread count (about a second) and reused in this process. Bandwidth is measured once either way."""
    threads = threads or torch.get_num_threads()
    work = scan_work(batch, length, d_inner, d_state, gated, softplus)
    rates = rates or _compute_rates(threads)
    bandwidth = _bandwidth(threads, batch * d_inner * length)

    def bound(w):
        return compute_seconds(w, rates), w["bytes"] / bandwidth

    compute_s, memory_s = bound(work)
    passes = pass_work(batch, length, d_inner, d_state, gated, softplus)
    per_pass = {f"{name}_bound_s": max(bound(w)) for name, w in passes.items()}
    return {**work, **rates, "bytes_per_s": bandwidth, "threads": threads, "compute_s": compute_s,
            "memory_s": memory_s, "bound_s": max(compute_s, memory_s), **per_pass,
            "limit": "compute" if compute_s >= memory_s else "memory"}
