"""Benchmark one training step (forward + backward + optimiser step) of either port's CIFAR-10
configuration: images per second, peak memory, and the step's FLOP rate as a fraction of this machine's
dense fp32 GEMM rate measured in the same process, right before each timed step (absolute times drift
between days, and within minutes, on shared machines; the fraction means the same on any of them), and the
ceiling that fraction has on this machine.

Each case runs in a fresh Python process so that its peak resident memory (``ru_maxrss``) belongs
to that case alone; the process's baseline (interpreter, torch, the model) is reported too.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from ..core.memory import peak_rss_mib
from .fresh import minor_faults, run_fresh

PORTS = ("original", "notebook")


def checked_port(port: str) -> str:
    """``port``, or a ValueError naming the ports there are (before any fresh process starts)."""
    if port not in PORTS:
        raise ValueError(f"unknown port {port!r}: choose one of {', '.join(PORTS)}")
    return port


def cifar10_model(port: str):
    """The port's CIFAR-10 model as its source configures it (seed 0)."""
    import torch

    torch.manual_seed(0)
    if port == "original":
        import original_port
        from original_port.configs import cifar10_model_spec

        return original_port.from_spec(cifar10_model_spec())
    import notebook_port

    return notebook_port.MambaGINR_CIFAR(**notebook_port.NOTEBOOK_CIFAR_KWARGS)


def training_step(port: str, batch: int, scan: str = "compiled", device: str = "cpu"):
    """(the model on ``device``, one training step of it at ``batch`` on fixed random images) with every
    mixer on ``scan``; the notebook's pixel sampling draws from a seeded generator on the same device."""
    import torch

    from parity.core.ssm import set_scan

    model = set_scan(cifar10_model(port), scan).to(device)
    images = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    if port == "original":
        import original_port

        opt = original_port.make_optimizer(model.parameters(), {"name": "adamw", "args": {"lr": 5e-4}})
        return model, lambda: original_port.train_step(model, opt, images)
    import notebook_port

    opt = notebook_port.make_optimizer(model)
    gen = torch.Generator(device).manual_seed(0)
    return model, lambda: notebook_port.train_step(model, opt, images, generator=gen)


GEMM_SIZE = 2048  # a square fp32 matmul large enough to run at the BLAS peak


def dense_gemm_gflops(n: int = GEMM_SIZE, repeats: int = 2, device: str = "cpu") -> float:
    """This process's dense matmul rate on ``device`` (GFLOP/s, the best of ``repeats`` after a warm-up) at its
    thread count and its current float32 settings (TF32 or not on a GPU), now; its matrices are freed on return."""
    import torch

    a = torch.rand(n, n, generator=torch.Generator().manual_seed(0)).to(device)
    b = torch.rand(n, n, generator=torch.Generator().manual_seed(1)).to(device)
    timed_s(lambda: a @ b, device)  # warm-up
    best = min(timed_s(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def timed_s(fn, device: str = "cpu") -> float:
    """Seconds ``fn`` takes, waiting for a GPU's queued kernels to finish."""
    import torch

    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


SETTLE_STEPS = 6  # untimed steps at most, after the first: the original's step settles after about four
SETTLED_FAULTS = 4  # minor page faults a step may take and count as settled


def settle(step, before) -> int:
    """Untimed steps, each after ``before`` as the timed ones will be, until one takes at most SETTLED_FAULTS minor
    page faults (SETTLE_STEPS at most); the number taken. A training process's first steps still grow its heap, and
    on transparent huge pages such a fault can wait for the kernel to compact memory (measured in the original's
    step: one ReLU backward 21 ms instead of 1.5, its step 2.1-2.2 s until the faults stop, then 2.0), which a run of
    thousands of steps pays once: the timed steps are the steady state."""
    for taken in range(1, SETTLE_STEPS + 1):  # noqa: B007 (returned after the loop)
        before()
        f0 = minor_faults()
        step()
        if minor_faults() - f0 <= SETTLED_FAULTS:
            break
    return taken


def measure_in_process(port: str, batch: int, repeats: int, scan: str, threads: int | None,
                       gemm_size: int = GEMM_SIZE) -> dict:
    import torch

    from ..runtime.allocator import allocator_state

    if threads:
        torch.set_num_threads(threads)
    model, step = training_step(port, batch, scan)
    baseline = peak_rss_mib()
    step()  # warm-up (allocator, first-touch); its peak counts in the peak below
    warmup = 1 + settle(step, lambda: dense_gemm_gflops(gemm_size))
    times, rates, faults = [], [], []
    for _ in range(repeats):
        # the GEMM rate right before each step: a machine whose speed drifts (a shared VM's moves by a third
        # within minutes) is compared with itself
        rates.append(dense_gemm_gflops(gemm_size))
        f0, t0 = minor_faults(), time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        faults.append(minor_faults() - f0)
    med, gemm = statistics.median(times), statistics.median(rates)
    peak = peak_rss_mib()
    from parity.evaluation.evaluate import gflop

    step_gflop = gflop(step, model)  # matrix products and convolutions of one step, whatever kernels run
    profile, matmuls, parts = profile_step(step)
    matmul_s = sum(r["ms"] for r in matmuls) / 1e3
    matmul_gflop = sum(r["gflop"] for r in matmuls)
    for r in matmuls:
        r["of_gemm"] = r["gflop"] / (r["ms"] / 1e3) / gemm if r["ms"] else float("nan")
    scans = scan_shapes(model, step)
    floor_s = scan_floor_s(scans)
    least_s = matmul_s + (floor_s or 0.0)
    return {"port": port, "batch": batch, "scan": scan, "threads": torch.get_num_threads(),
            "allocator": allocator_state(), "median_s": med, "min_s": min(times), "max_s": max(times),
            "images_per_s": batch / med, "warmup_steps": warmup, "page_faults": statistics.median(faults),
            "peak_rss_mb": peak,
            "baseline_rss_mb": baseline, "gflop_per_step": step_gflop, "gemm_gflops": gemm,
            "fraction_of_gemm": step_gflop / med / gemm,
            "matmul_s": matmul_s, "matmul_of_gemm": matmul_gflop / matmul_s / gemm if matmul_s else float("nan"),
            "scans": len(scans), "scan_floor_s": floor_s,
            "ceiling": step_gflop / least_s / gemm if least_s else float("nan"),
            "profile": profile, "matmuls": matmuls, "parts": parts}


def scan_shapes(model, step) -> list[tuple[int, int, int, int]]:
    """(batch, L, d_inner, d_state) of every selective scan one step runs: one per Mamba mixer, seen by a
    forward pre-hook (a mixer that calls itself on the flipped sequence is one scan, not two)."""
    from parity.core.ssm import Mamba

    seen = {}

    def record(module, args):
        x = args[0]
        seen[id(module)] = (x.shape[0], x.shape[1], module.d_inner, module.d_state)

    hooks = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Mamba)]
    try:
        step()
    finally:
        for h in hooks:
            h.remove()
    return list(seen.values())


def scan_floor_s(shapes) -> float | None:
    """The least time these scans' forward + backward could take here: each at its hardware bound
    (``parity.bench.scanbound``); None where the compiled kernel, whose probes measure the rates, cannot be built."""
    from parity.core.ssm.compiled import kernel_library

    from .scanbound import scan_bound

    if not shapes or kernel_library() is None:
        return None
    return sum(scan_bound(batch, length, d_inner, d_state)["bound_s"] for batch, length, d_inner, d_state in shapes)


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::baddbmm_")


def matmul_operands(op: str, shapes: list) -> tuple[list, list]:
    """The shapes of a matrix product's two factors among its inputs as the profiler records them: (a, b) for mm
    and bmm, (c, a, b) for the addmm family."""
    return (shapes[0], shapes[1]) if op in ("aten::mm", "aten::bmm") else (shapes[1], shapes[2])


def matmul_gflop(op: str, shapes: list) -> float:
    """GFLOP of one matrix product from its input shapes (see ``matmul_operands``)."""
    a, b = matmul_operands(op, shapes)
    return 2 * math.prod(a) * b[-1] / 1e9


def step_parts(ops) -> dict[str, float]:
    """Milliseconds of a profiled step by part, from its ops' (name, self ms, calls): the matrix products
    (``MATMUL_OPS``), the selective scans' kernel calls, the other compiled kernels' calls (conv1d + SiLU, GELU:
    each call is a ``parity::`` profiler range, ``parity.core.ssm.compiled.profiled``), everything else (the
    autograd Functions' own work around the kernels, norms, attention, the optimizer, ...) and the total."""
    from parity.core.ssm.compiled import PROFILER_PREFIX, SCAN_EVENTS

    parts = dict.fromkeys(("matmul", "scan", "kernels", "other"), 0.0)
    for op, ms, _ in ops:
        part = ("matmul" if op in MATMUL_OPS else "scan" if op in SCAN_EVENTS
                else "kernels" if op.startswith(PROFILER_PREFIX) else "other")
        parts[part] += ms
    return {**parts, "total": sum(parts.values())}


def profile_step(step, top: int = 10) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Where one step's time goes, from torch.profiler over one step: self CPU time per op, the ``top`` largest
    and the rest summed ({'op', 'ms', 'calls', 'share'}; each compiled kernel call is a ``parity::`` range, the
    autograd Functions around them, ``MambaInner``, ``FeedForwardGELU`` and their backwards, keep the rest of
    their work), the step's matrix products by op and shapes ({'op', 'a', 'b', 'calls', 'ms', 'gflop'}, the most
    time first): together the least time the step could take on this machine's BLAS, were everything else free;
    and the step by part (``step_parts``)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step()
    ops = sorted(((e.key, e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()), key=lambda r: -r[1])
    total = sum(ms for _, ms, _ in ops) or 1.0
    rows = [{"op": op, "ms": ms, "calls": calls, "share": ms / total} for op, ms, calls in ops[:top]]
    rest = ops[top:]
    if rest:
        ms = sum(r[1] for r in rest)
        rows.append({"op": f"{len(rest)} other ops", "ms": ms, "calls": sum(r[2] for r in rest), "share": ms / total})
    matmuls = {}
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in MATMUL_OPS and e.input_shapes:
            shapes = [list(s) for s in e.input_shapes]
            a, b = matmul_operands(e.key, shapes)
            row = matmuls.setdefault((e.key, str(a), str(b)), {"op": e.key, "a": " x ".join(map(str, a)),
                                                               "b": " x ".join(map(str, b)), "calls": 0, "ms": 0.0,
                                                               "gflop": 0.0})
            row["calls"] += e.count
            row["ms"] += e.self_cpu_time_total / 1e3
            row["gflop"] += e.count * matmul_gflop(e.key, shapes)
    return rows, sorted(matmuls.values(), key=lambda r: -r["ms"]), step_parts(ops)


def step_scan_phases(port: str, batch: int, repeats: int = 3) -> list[dict]:
    """Where the selective scans' time goes inside a training step of ``port`` at ``batch``: the rows of
    ``parity.bench.scan.phase_rows`` per scan call (the fused mixer's layout: time-major output, dt_proj inside
    the kernel), over ``repeats`` steps, each after the rates are probed and an untimed step; the calls' wall time
    from their ``parity::scan_*`` profiler ranges. Needs the kernel's phases build (``step_scan_phases_fresh``)
    and steps whose scans share one shape."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from parity.core.ssm.compiled import SCAN_EVENTS

    from .scan import phase_rows, phase_runs, phases_library
    from .scanbound import phase_work

    phases_library()  # the build's check before any work
    model, step = training_step(port, batch)
    shapes = scan_shapes(model, step)  # (its step is the warm-up)
    if len(set(shapes)) != 1:
        raise ValueError(f"{port}'s scans have {len(set(shapes))} shapes: the phase table needs one")
    b, length, d_inner, d_state = shapes[0]

    def timed() -> float:  # the scan calls' wall time, from their profiler ranges
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in SCAN_EVENTS) / 1e6

    runs, walls, rates = phase_runs(repeats, step, timed)
    rows = phase_rows(runs, walls, rates, phase_work(b, length, d_inner, d_state), torch.get_num_threads(),
                      calls=len(shapes))
    for r in rows:
        r.update(shape=(b, d_inner, length, d_state), port=port, batch=batch, scans=len(shapes))
    return rows


def step_scan_phases_fresh(port: str, batch: int, repeats: int = 3) -> list[dict]:
    """``step_scan_phases`` in a fresh process on the kernel's phases build."""
    from .scan import phases_environment

    checked_port(port)
    return run_fresh("parity.bench.step", [port, "--batch", str(batch), "--repeats", str(repeats), "--phases"],
                     phases_environment())["phases"]


def measure_step(port: str, batch: int, repeats: int = 3, scan: str = "compiled", threads: int | None = None,
                 gemm_size: int = GEMM_SIZE) -> dict:
    """Run the case in a fresh subprocess and return its measurements."""
    checked_port(port)
    return run_fresh("parity.bench.step", [port, "--batch", str(batch), "--repeats", str(repeats), "--scan", scan,
                                           "--gemm-size", str(gemm_size)]
                     + (["--threads", str(threads)] if threads else []))


def step_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="One training step (forward + backward + AdamW), CIFAR-10 32x32, this machine")
    for col in ("port", "batch", "scan", "threads", "median s", "min s", "max s", "images/s", "GFLOP/step",
                "GEMM GFLOP/s", "of GEMM rate", "ceiling", "peak RSS MB", "baseline RSS MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["port"], str(r["batch"]), r["scan"], str(r["threads"]), f"{r['median_s']:.2f}",
                      f"{r['min_s']:.2f}", f"{r['max_s']:.2f}", f"{r['images_per_s']:.2f}",
                      f"{r['gflop_per_step']:.1f}", f"{r['gemm_gflops']:.0f}", f"{r['fraction_of_gemm']:.2f}",
                      f"{r['ceiling']:.2f}", f"{r['peak_rss_mb']:.0f}", f"{r['baseline_rss_mb']:.0f}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", choices=PORTS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scan", default="compiled")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE)
    parser.add_argument("--phases", action="store_true", help="the scans' time by phase (step_scan_phases)")
    a = parser.parse_args()
    if a.phases:
        print(json.dumps({"phases": step_scan_phases(a.port, a.batch, a.repeats)}))
    else:
        print(json.dumps(measure_in_process(a.port, a.batch, a.repeats, a.scan, a.threads, a.gemm_size)))
