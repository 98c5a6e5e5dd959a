"""Benchmark the CPU selective scans: forward + backward wall time of each implementation.

All implementations see the same inputs (fixed seed, Mamba-like ranges) and the same output
gradient. The sequential reference is slow: at the default shape one forward + backward takes on
the order of a minute or more on 2 CPU cores, so ``repeats`` multiplies into many minutes.

The compiled kernel's row also states its time as a multiple of its hardware bound on this machine
(``parity.bench.scanbound``), which means the same on any machine; ``bench_scan_phases`` splits that time
by the kernel's phases, each against its own part of the bound.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import time

import torch

from .fresh import minor_faults, run_fresh
from .scanbound import compute_seconds, phase_work, probe_rates, scan_bound

SCAN_BENCH_IMPLS = ("ref", "chunked", "compiled", "mambapy")


def mambapy_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The outside peer: mambapy's ``selective_scan`` (its Blelloch parallel scan, ``pscan``, over
    (batch, L, d_inner, d_state) tensors) with the same bias, softplus and z gate as ours."""
    from einops import rearrange
    from mambapy.pscan import pscan

    from parity.core.ssm.terms import skip_and_gate, step_sizes

    dt = rearrange(step_sizes(delta, delta_bias, delta_softplus), "b d l -> b l d")
    x = rearrange(u, "b d l -> b l d")
    B, C = rearrange(B, "b n l -> b l n"), rearrange(C, "b n l -> b l n")
    decay = torch.exp(dt.unsqueeze(-1) * A)
    drive = dt.unsqueeze(-1) * B.unsqueeze(2) * x.unsqueeze(-1)
    y = (pscan(decay, drive) @ C.unsqueeze(-1)).squeeze(3)
    return skip_and_gate(rearrange(y, "b l d -> b d l"), u, D, z)


def scan_available(impl: str) -> str | None:
    """None when ``impl`` can run here, else why not (with the fix)."""
    if impl == "mambapy":
        import importlib.util

        if importlib.util.find_spec("mambapy") is None:
            return "mambapy is not installed: pip install -e '.[bench]'"
    if impl == "compiled":
        from parity.core.ssm.compiled import compiled_scan_status

        status = compiled_scan_status()
        if not status["compiled"]:
            return status["reason"]
    return None


def _scan_fn(impl: str):
    if impl == "ref":
        from parity.core.ssm.scan import selective_scan_ref

        return selective_scan_ref
    if impl == "chunked":
        from parity.core.ssm.chunked import selective_scan_chunked

        return selective_scan_chunked
    if impl == "compiled":
        from parity.core.ssm.compiled import selective_scan_compiled

        return selective_scan_compiled
    if impl == "mambapy":
        return mambapy_scan
    raise ValueError(f"unknown scan {impl!r}: choose from {', '.join(SCAN_BENCH_IMPLS)}")


def _inputs(batch: int, length: int, d_inner: int, d_state: int) -> dict:
    """Mamba-like inputs (``parity.testing.scan_inputs``) and an output gradient, seed 0."""
    from parity.testing import scan_inputs

    data = scan_inputs(batch=batch, d_inner=d_inner, d_state=d_state, length=length, seed=0)
    data["grad"] = torch.randn(batch, d_inner, length, generator=torch.Generator().manual_seed(1))
    return data


def _leaves(data: dict) -> dict:
    """Fresh leaf copies of the inputs, made before a timed run: copying them (and, on a machine where
    first-touch page faults are slow, faulting in their pages) is not part of the scan."""
    return {k: v.detach().clone().requires_grad_() for k, v in data.items() if k != "grad"}


def _fwd_bwd(fn, data: dict, leaves: dict | None = None) -> tuple[float, float, int]:
    """One forward and backward; their wall times and the page faults taken meanwhile (first touches of memory
    the allocator had handed back to the system: about 1 us each on this VM, a third of a backward when its
    fresh gradients all take them; ``parity.runtime.allocator`` keeps freed memory so that they do not)."""
    leaves = leaves if leaves is not None else _leaves(data)
    faults = minor_faults()
    t0 = time.perf_counter()
    out = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
             z=leaves["z"], delta_bias=leaves["delta_bias"], delta_softplus=True)
    t1 = time.perf_counter()
    out.backward(data["grad"])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, minor_faults() - faults


def bench_scan(batch: int = 16, length: int = 512, d_inner: int = 512, d_state: int = 16, repeats: int = 5,
               impls=SCAN_BENCH_IMPLS, ref_repeats: int = 3) -> list[dict]:
    """Median/min/max seconds of one forward + backward per implementation (and each pass's median, and the
    median page faults per run). Fast paths get a warm-up and ``repeats`` runs; the reference (minutes per
    run at the default shape) no warm-up and ``ref_repeats`` runs: its first-call overhead is negligible next to
    its run time. Before each compiled run the machine's exp and FMA rates are probed, then an untimed run
    follows; the row's bound is the median run's (``parity.bench.scanbound``)."""
    fns = {impl: _scan_fn(impl) for impl in impls}  # fail on a bad name before any slow run
    data = _inputs(batch, length, d_inner, d_state)
    rows = []
    for impl, fn in fns.items():
        missing = scan_available(impl)
        if missing:
            rows.append({"impl": impl, "median_s": None, "min_s": None, "max_s": None, "runs": 0,
                         "shape": (batch, d_inner, length, d_state), "note": missing})
            continue
        if impl != "ref":
            _fwd_bwd(fn, data)
        passes, rates = [], []
        for _ in range(ref_repeats if impl == "ref" else repeats):
            if impl == "compiled":  # the machine's rates at this moment, for the bound of this run; the call after
                rates.append(probe_rates())  # the probes runs about 1 ms slow, so an untimed run comes between
                _fwd_bwd(fn, data)
            leaves = _leaves(data)
            passes.append(_fwd_bwd(fn, data, leaves))
            del leaves
        times = [f + b for f, b, _ in passes]
        row = {"impl": impl, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
               "runs": len(times), "shape": (batch, d_inner, length, d_state), "threads": torch.get_num_threads(),
               "forward_s": statistics.median(f for f, _, _ in passes),
               "backward_s": statistics.median(b for _, b, _ in passes),
               "page_faults": statistics.median(n for _, _, n in passes)}
        if impl == "compiled":
            # the run whose bound is the median (the lower one of an even count), so that the kernel's median
            # meets the machine's median rates rather than its best moment
            bounds = sorted((scan_bound(batch, length, d_inner, d_state, rates=r) for r in rates),
                            key=lambda b: b["bound_s"])
            bound = bounds[(len(bounds) - 1) // 2]
            bound = {**bound, "runs_bound_min_s": bounds[0]["bound_s"], "runs_bound_max_s": bounds[-1]["bound_s"]}
            # each run over its own bound: the spread of the ratio itself on a machine whose speed drifts
            paired = sorted((f + b) / scan_bound(batch, length, d_inner, d_state, rates=r)["bound_s"]
                            for (f, b, _), r in zip(passes, rates))
            row.update(x_bound_runs_min=paired[0], x_bound_runs_max=paired[-1])
            row.update(bound_s=bound["bound_s"], x_bound=row["median_s"] / bound["bound_s"],
                       forward_x_bound=row["forward_s"] / bound["forward_bound_s"],
                       backward_x_bound=row["backward_s"] / bound["backward_bound_s"], bound=bound)
        rows.append(row)
    return rows


# The kernel's phase timers in the order scan.c's scan_phase_seconds gives them: (pass, phase, the part of
# ``phase_work`` it does). The prologues and epilogues share the elementwise work (softplus, gate, skip).
KERNEL_PHASES = (("forward", "prologue", "elementwise"), ("forward", "recurrence", "recurrence"),
                 ("forward", "epilogue", "elementwise"), ("backward", "prologue", "elementwise"),
                 ("backward", "states", "states"), ("backward", "adjoint", "adjoint"),
                 ("backward", "epilogue", "elementwise"))


def bench_scan_phases(batch: int = 16, length: int = 512, d_inner: int = 512, d_state: int = 16,
                      repeats: int = 5) -> list[dict]:
    """Where the compiled scan's forward + backward time goes: per phase of the kernel, its median time per run
    (CPU seconds over threads, so the phases add up to the kernel's wall time), its share of the whole call,
    and against its own part of the hardware bound (``parity.bench.scanbound.phase_work`` at the rates probed
    before each run, medians). The prologue and epilogue of a pass share one bound (the elementwise work),
    given on the epilogue's row for both; a last row holds what lies outside the kernel's phases (the autograd
    wrapper, B and C's copies, the sums of gB and gC). Needs the kernel's ``phases`` build
    (``PARITY_SCAN_KERNEL=phases``: ``scan_phases_fresh`` runs this in a fresh process with it)."""
    phases_library()  # the build's check before any work
    fn, data = _scan_fn("compiled"), _inputs(batch, length, d_inner, d_state)
    _fwd_bwd(fn, data)

    def timed() -> float:
        leaves = _leaves(data)  # made before the timers start
        forward, backward, _ = _fwd_bwd(fn, data, leaves)
        return forward + backward

    runs, walls, rates = phase_runs(repeats, lambda: _fwd_bwd(fn, data), timed)
    rows = phase_rows(runs, walls, rates, phase_work(batch, length, d_inner, d_state), torch.get_num_threads())
    for r in rows:
        r.update(shape=(batch, d_inner, length, d_state))
    return rows


def phases_library():
    """The kernel's phases build, loaded; a one-line error where it is not the build in use or cannot be built."""
    from parity.core.ssm.compiled import compiled_scan_status, kernel_library, kernel_variant

    if kernel_variant() != "phases":
        raise RuntimeError("the phase timers are in the kernel's phases build only: set PARITY_SCAN_KERNEL=phases "
                           "(or call scan_phases_fresh)")
    lib = kernel_library()
    if lib is None:
        raise RuntimeError(f"no compiled kernel: {compiled_scan_status()['reason']}")
    return lib


def phase_runs(repeats: int, untimed, timed) -> tuple[list[list[float]], list[float], list[dict]]:
    """``repeats`` runs on the phases build: each probes the machine's rates, calls ``untimed()`` (the call right
    after the probes runs slow, see bench_scan), then ``timed()`` (which returns its wall seconds) between two
    reads of the phase timers. Returns each run's timer seconds (``KERNEL_PHASES`` order), wall time and rates."""
    lib = phases_library()
    seconds = (ctypes.c_double * len(KERNEL_PHASES))()
    runs, walls, rates = [], [], []
    for _ in range(repeats):
        rates.append(probe_rates())
        untimed()
        lib.scan_phase_seconds(seconds)  # reset
        walls.append(timed())
        lib.scan_phase_seconds(seconds)
        runs.append(list(seconds))
    return runs, walls, rates


def phase_rows(runs: list[list[float]], walls: list[float], rates: list[dict], work: dict, threads: int,
               calls: int = 1) -> list[dict]:
    """Rows of a phase table from the timers' seconds of each run (``KERNEL_PHASES`` order, summed over threads and
    ``calls`` scan calls), each run's wall time of those calls, the rates probed before each run and one call's
    ``phase_work``: per phase, its median time per call and share, and against its part of the bound at the
    median rates; then what lies outside the phases."""
    wall = statistics.median(walls) / calls
    median_rates = {key: statistics.median(r[key] for r in rates) for key in ("exp_per_s", "flop_per_s")}
    rows, prologue_s = [], {}
    for k, (pass_, phase, part) in enumerate(KERNEL_PHASES):
        seconds_k = statistics.median(run[k] for run in runs) / threads / calls
        row = {"pass": pass_, "phase": phase, "work": part, "ms": 1e3 * seconds_k, "share": seconds_k / wall}
        if phase == "prologue":  # its bound is on the epilogue's row, for prologue + epilogue
            prologue_s[pass_] = seconds_k
        else:
            bound_s = compute_seconds(work[pass_][part], median_rates)
            spent = seconds_k + (prologue_s.get(pass_, 0.0) if part == "elementwise" else 0.0)
            row.update(bound_ms=1e3 * bound_s, x_bound=spent / bound_s if bound_s else None)
        rows.append(row)
    outside = wall - sum(r["ms"] for r in rows) / 1e3
    rows.append({"pass": "both", "phase": "outside the kernel's phases", "work": None, "ms": 1e3 * outside,
                 "share": outside / wall})
    for r in rows:
        r.update(wall_ms=1e3 * wall, threads=threads, runs=len(runs), rates=median_rates)
    return rows


def phases_environment() -> dict[str, str]:
    """This process's environment with the kernel's phases build chosen, for a fresh process to time phases in."""
    return {**os.environ, "PARITY_SCAN_KERNEL": "phases"}


def scan_phases_fresh(batch: int = 16, length: int = 512, d_inner: int = 512, d_state: int = 16,
                      repeats: int = 5) -> list[dict]:
    """``bench_scan_phases`` in a fresh process on the kernel's phases build (this process keeps its own)."""
    args = ["--phases", "--shape", *map(str, (batch, length, d_inner, d_state)), "--repeats", str(repeats)]
    return run_fresh("parity.bench.scan", args, phases_environment())["phases"]


def bound_summary(bound: dict) -> str:
    """One line on how the bound was derived: the work counted and the rates measured."""
    return (f"{bound['exps'] / 1e6:.3g} M exps, {bound['flops'] / 1e9:.3g} GFLOP, {bound['bytes'] / 1e6:.3g} MB; "
            f"measured on {bound['threads']} thread(s): {bound['exp_per_s'] / 1e9:.3g} G exp/s, "
            f"{bound['flop_per_s'] / 1e9:.3g} GFLOP/s, {bound['bytes_per_s'] / 1e9:.3g} GB/s -> compute "
            f"{bound['compute_s'] * 1e3:.3g} ms, memory {bound['memory_s'] * 1e3:.3g} ms, bound "
            f"{bound['bound_s'] * 1e3:.3g} ms ({bound['limit']}); by pass: forward "
            f"{bound['forward_bound_s'] * 1e3:.3g} "
            f"ms, backward {bound['backward_bound_s'] * 1e3:.3g} ms"
            + (f"; the runs' bounds ranged from {bound['runs_bound_min_s'] * 1e3:.3g} to "
               f"{bound['runs_bound_max_s'] * 1e3:.3g} ms" if "runs_bound_min_s" in bound else ""))


def scan_table(rows: list[dict]):
    """A rich table of ``bench_scan`` rows; speed-up is the reference's median over each median, 'x bound'
    the compiled kernel's median over its hardware bound (``parity.bench.scanbound``)."""
    from rich.table import Table

    ref = next((r["median_s"] for r in rows if r["impl"] == "ref"), None)
    bound = next((r["bound"] for r in rows if r.get("bound")), None)
    table = Table(title="Selective scan, forward + backward (batch, d_inner, L, d_state)",
                  caption=f"bound: {bound_summary(bound)}" if bound else None)
    for name in ("scan", "shape", "runs", "median s", "min s", "max s", "forward s", "backward s", "page faults",
                 "speed-up vs ref", "x bound (fwd, bwd)"):
        table.add_column(name, justify="left" if name in ("scan", "shape") else "right")
    for r in rows:
        if r["median_s"] is None:
            table.add_row(r["impl"], " x ".join(map(str, r["shape"])), "0", "-", "-", "-", "-", "-", "-", r["note"],
                          "-")
            continue
        speedup = f"{ref / r['median_s']:.1f}x" if ref is not None and r["median_s"] > 0 else "-"
        x_bound = (f"{r['x_bound']:.2f}x ({r['forward_x_bound']:.2f}x, {r['backward_x_bound']:.2f}x)"
                   if r.get("x_bound") else "-")
        table.add_row(r["impl"], " x ".join(map(str, r["shape"])), str(r["runs"]), f"{r['median_s']:.4f}",
                      f"{r['min_s']:.4f}", f"{r['max_s']:.4f}", f"{r['forward_s']:.4f}", f"{r['backward_s']:.4f}",
                      f"{r['page_faults']:.0f}", speedup, x_bound)
    return table


def scan_phase_table(rows: list[dict], where: str = ""):
    """A rich table of ``bench_scan_phases`` rows (or ``step.step_scan_phases``' ones, ``where`` saying which step)."""
    from rich.table import Table

    first = rows[0]
    table = Table(title=f"Compiled scan by phase, {' x '.join(map(str, first['shape']))} (batch, d_inner, L, d_state)"
                        + where,
                  caption=f"{first['wall_ms']:.1f} ms a call on {first['threads']} thread(s), median of "
                          f"{first['runs']} "
                          "runs; a pass's prologue and epilogue share its elementwise bound (on the epilogue's row)")
    for name in ("pass", "phase", "ms", "share", "bound ms", "x bound"):
        table.add_column(name, justify="left" if name in ("pass", "phase") else "right")
    for r in rows:
        table.add_row(r["pass"], r["phase"], f"{r['ms']:.2f}", f"{100 * r['share']:.0f}%",
                      f"{r['bound_ms']:.2f}" if r.get("bound_ms") else "-",
                      f"{r['x_bound']:.2f}x" if r.get("x_bound") else "-")
    return table


if __name__ == "__main__":  # one case in a fresh process (the allocator comparison): its rows as JSON
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("impls", nargs="*", metavar="IMPL", help=f"any of {', '.join(SCAN_BENCH_IMPLS)}")
    parser.add_argument("--shape", type=int, nargs=4, default=(16, 512, 512, 16), metavar=("B", "L", "D", "N"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--phases", action="store_true", help="the compiled kernel's time by phase (bench_scan_phases)")
    a = parser.parse_args()
    b, length, d_inner, d_state = a.shape
    unknown = [impl for impl in a.impls if impl not in SCAN_BENCH_IMPLS]
    if unknown or not (a.impls or a.phases):
        parser.error(f"name scans from {', '.join(SCAN_BENCH_IMPLS)}" + (f" (not {unknown[0]!r})" if unknown else ""))
    if a.phases:
        print(json.dumps({"phases": bench_scan_phases(b, length, d_inner, d_state, repeats=a.repeats)}))
    else:
        print(json.dumps(bench_scan(b, length, d_inner, d_state, repeats=a.repeats, impls=tuple(a.impls))))
