"""The benchmark suite behind ``parity bench``: every case on this machine, written to
``reports/benchmarks.md`` with the machine, the versions, per case the median of several runs with
min and max, the issue's targets next to what was measured, and two plots.

Cases: the selective scan (sequential reference, chunked PyTorch, compiled kernel, mambapy's parallel
scan as an outside peer; the compiled kernel also as a multiple of its hardware bound here, see
``scanbound``); one training step of each port's CIFAR-10 configuration (images/s, peak
memory); decoding at 32/64/128/256 (32 images); glibc's allocator defaults against the kept-memory
settings the ``parity`` command runs with; the whole smoke one-at-a-time matrix. Every step
and decode case runs in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from ..core.store import atomic_save_figure, atomic_write_text
from .step import SETTLE_STEPS, SETTLED_FAULTS

DECODE_SIZES = (32, 64, 128, 256)


@dataclass
class SuiteConfig:
    repeats: int = 3  # timed runs per fast case
    scan_repeats: int = 5
    ref_repeats: int = 1  # the sequential scan takes minutes per run at the reference shape
    matrix_repeats: int = 1
    decode_batch: int = 32
    decode_sizes: tuple = DECODE_SIZES
    jobs_steps: int = 128  # steps a run of the --jobs throughput case (0: skip)
    quick: bool = False  # tiny shapes: checks the suite runs, measures nothing worth reporting


# The issue's done-when, by key: its wording in the report.
TARGETS = {
    "scan": "fast scan >= 8x the reference (B=16, L=512, d_inner=512, d_state=16)",
    "scan-peer": "fast scan faster than mambapy's parallel scan, same shape",
    "scan-bound": "compiled scan within 2x of its hardware bound on this machine, same shape",
    "step-original": "original CIFAR step at B=16: >= 2 images/s",
    "roofline-original": "original CIFAR step at B=16: >= 0.8 of the dense-GEMM rate measured in the same run",
    "memory-original": "original CIFAR step at B=16: peak memory < 4 GiB",
    "step-notebook": "notebook CIFAR step at B=32: >= 10 images/s",
    "roofline-notebook": "notebook CIFAR step at B=32: > 0.7 of the dense-GEMM rate measured in the same run",
    "decode-256": "256x256 decoding of 32 images: peak memory < 4 GiB (both ports)",
}


def machine() -> dict:
    import numpy
    import torch

    from ..core.ssm.compiled import compiled_scan_status
    from ..runtime.allocator import allocator_state

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        pass
    try:
        mambapy_version = version("mambapy")
    except PackageNotFoundError:
        mambapy_version = "not installed (pip install -e '.[bench]')"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "torch_threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "mambapy": mambapy_version, "cuda": torch.cuda.is_available(), "platform": platform.platform(),
            "compiled_scan": compiled_scan_status()["reason"], "allocator": allocator_state()}


def _matrix_once(out: Path) -> float:
    """Wall time of ``parity ablate --preset smoke`` (one-at-a-time, 1 seed) in a fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "parity.cli", "ablate", "--preset", "smoke", "--seeds", "1",
                           "--out", str(out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"smoke matrix failed: {done.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0


def run_suite(cfg: SuiteConfig, progress=print) -> dict:
    """Every case; returns {'machine', 'scan', 'step', 'decode', 'matrix'} (lists of row dicts)."""
    from .allocator import compare_allocators
    from .decode import measure_decode
    from .scan import bench_scan, scan_available, scan_phases_fresh
    from .step import measure_step, step_scan_phases_fresh

    results = {"machine": machine(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
               "config": cfg.__dict__.copy()}
    shape = (2, 64, 32, 4) if cfg.quick else (16, 512, 512, 16)
    progress(f"selective scan at {shape} (reference {cfg.ref_repeats} run(s), others {cfg.scan_repeats})")
    results["scan"] = bench_scan(*shape[:1], length=shape[1], d_inner=shape[2], d_state=shape[3],
                                 repeats=cfg.scan_repeats, ref_repeats=cfg.ref_repeats)
    compiled = scan_available("compiled") is None
    results["scan_phases"] = []
    if compiled:
        progress("the compiled scan by phase (its timed build, a fresh process)")
        results["scan_phases"] = scan_phases_fresh(*shape[:1], length=shape[1], d_inner=shape[2], d_state=shape[3],
                                                   repeats=cfg.scan_repeats)
    steps = [("original", 2 if cfg.quick else 16, "compiled"), ("original", 2 if cfg.quick else 16, "chunked"),
             ("notebook", 2 if cfg.quick else 32, "compiled")]
    results["step"] = []
    for port, batch, scan in steps:
        progress(f"training step: {port} B={batch}, {scan} scan")
        results["step"].append(measure_step(port, batch, cfg.repeats, scan))
    results["step_scan_phases"] = []
    if compiled:
        port, batch, _ = steps[0]
        progress(f"the scans of {port}'s step by phase (the kernel's timed build, a fresh process)")
        results["step_scan_phases"] = step_scan_phases_fresh(port, batch, cfg.repeats)
    results["decode"] = []
    sizes = (8, 16) if cfg.quick else cfg.decode_sizes
    batch = 2 if cfg.quick else cfg.decode_batch
    for port in ("original", "notebook"):
        for size in sizes:
            progress(f"decoding: {port} {batch} images at {size}x{size}")
            results["decode"].append(measure_decode(port, size, batch, 1 if cfg.quick else cfg.repeats))
    progress("allocator: glibc's defaults against freed memory kept (scan, notebook step)")
    results["allocator"] = compare_allocators(shape, cfg.scan_repeats, 2 if cfg.quick else 32, cfg.repeats)
    results["matrix"] = []
    if cfg.matrix_repeats:
        times = []
        for _ in range(cfg.matrix_repeats):
            progress("smoke matrix (one-at-a-time, 1 seed)")
            with tempfile.TemporaryDirectory() as tmp:
                times.append(_matrix_once(Path(tmp)))
        results["matrix"].append({"case": "parity ablate --preset smoke --seeds 1",
                                  "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                                  "runs": len(times)})
    results["jobs"] = []
    if cfg.jobs_steps:
        from .jobs import measure_jobs

        progress(f"matrix throughput at --jobs 1 and --jobs 2 (cpu-study slice, {cfg.jobs_steps} steps a run)")
        results["jobs"] = measure_jobs(8 if cfg.quick else cfg.jobs_steps)
    return results


def target_rows(results: dict) -> list[dict]:
    """Each target with its measurement and whether it is met (None: not measured)."""
    scan = {r["impl"]: r["median_s"] for r in results["scan"] if tuple(r["shape"]) == (16, 512, 512, 16)}
    bounded = next((r for r in results["scan"] if r.get("x_bound") and tuple(r["shape"]) == (16, 512, 512, 16)), None)
    fast = min((scan[k] for k in ("compiled", "chunked") if scan.get(k)), default=None)
    steps = {(r["port"], r["scan"]): r for r in results["step"]}
    orig, nb = steps.get(("original", "compiled")), steps.get(("notebook", "compiled"))
    big = [r for r in results["decode"] if r["size"] == 256]
    rows = []

    def add(key, measured, ok):
        rows.append({"target": TARGETS[key], "measured": measured, "met": ok})

    def roofline(key, r, met, target):
        """The step's fraction of the GEMM rate against the target, against the ceiling measured with it (the
        fraction for the least time the step could take here) and against the kernels' reach (``kernels_reach``): a
        target above the ceiling is out of reach, one above the reach beyond what this toolkit's kernels can do."""
        measured = (f"{r['fraction_of_gemm']:.2f} ({r['gflop_per_step']:.0f} GFLOP in {r['median_s']:.2f} s; GEMM "
                    f"{r['gemm_gflops']:.0f} GFLOP/s)")
        ceiling, reach = r.get("ceiling"), kernels_reach(r)
        if ceiling is not None:
            measured += (f"; ceiling {ceiling:.2f}: its matrix products run at {r['matmul_of_gemm']:.2f} of that rate "
                         f"({r['matmul_s']:.2f} s)")
            if r.get("scan_floor_s"):
                measured += f", its {r['scans']} scans take at least {r['scan_floor_s']:.3f} s"
        if reach is not None:
            measured += f"; {reach:.2f} with the kernels at their best"
        if not met and ceiling is not None and ceiling <= target:
            met = "beyond"
        elif not met and reach is not None and reach <= target:
            met = "beyond-kernels"
        add(key, measured, met)

    if fast and scan.get("ref"):
        add("scan", f"{scan['ref'] / fast:.0f}x ({scan['ref']:.1f} s vs {fast:.3f} s)", scan["ref"] / fast >= 8)
    if fast and scan.get("mambapy"):
        add("scan-peer", f"{scan['mambapy'] / fast:.1f}x faster ({fast:.3f} s vs {scan['mambapy']:.3f} s)",
            fast < scan["mambapy"])
    if bounded:
        spread = (f"; each run over its own bound: {bounded['x_bound_runs_min']:.2f}x to "
                  f"{bounded['x_bound_runs_max']:.2f}x" if bounded.get("x_bound_runs_min") else "")
        add("scan-bound", f"{bounded['x_bound']:.2f}x its bound ({bounded['median_s']:.4f} s vs "
                          f"{bounded['bound_s']:.4f} s{spread})",
            bounded["x_bound"] <= 2)
    if orig and orig["batch"] == 16:
        add("step-original", f"{orig['images_per_s']:.2f} images/s", orig["images_per_s"] >= 2)
        roofline("roofline-original", orig, orig["fraction_of_gemm"] >= 0.8, 0.8)
        add("memory-original", f"{orig['peak_rss_mb'] / 1024:.2f} GiB peak RSS (process baseline "
                               f"{orig['baseline_rss_mb'] / 1024:.2f} GiB)", orig["peak_rss_mb"] < 4096)
    if nb and nb["batch"] == 32:
        add("step-notebook", f"{nb['images_per_s']:.1f} images/s", nb["images_per_s"] >= 10)
        roofline("roofline-notebook", nb, nb["fraction_of_gemm"] > 0.7, 0.7)
    if big and big[0]["batch"] == 32:
        peak = max(r["peak_rss_mb"] for r in big)
        add("decode-256", f"{peak / 1024:.2f} GiB peak RSS (largest of the two)", peak < 4096)
    return rows


# ----------------------------------------------------------------------------------- the report


def _fmt(df: pd.DataFrame) -> str:
    df = df.copy()
    for col in df.columns:
        if col.endswith("_mb") and pd.api.types.is_numeric_dtype(df[col]):
            df[col] = df[col].round().astype("Int64")  # whole MiB; .3g would print 4.14e+03
    return df.to_markdown(index=False, floatfmt=".3g")


def _plots(results: dict, files: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files.mkdir(parents=True, exist_ok=True)
    made = []
    scan = [r for r in results["scan"] if r["median_s"]]
    if scan:
        fig, ax = plt.subplots(figsize=(5, 2.6))
        ax.barh([r["impl"] for r in scan], [r["median_s"] for r in scan], color="tab:blue")
        ax.set_xscale("log")
        ax.set_xlabel("seconds, forward + backward (log scale)")
        b, d, length, n = scan[0]["shape"]
        ax.set_title(f"Selective scan, B={b} L={length} d_inner={d} d_state={n}", fontsize=9)
        fig.tight_layout()
        atomic_save_figure(fig, files / "scan.png", dpi=90)
        plt.close(fig)
        made.append(("Selective scan: median time per implementation", "scan.png"))
    if results["decode"]:
        fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
        for port in ("original", "notebook"):
            rows = [r for r in results["decode"] if r["port"] == port]
            axes[0].plot([r["size"] for r in rows], [r["median_s"] for r in rows], marker="o", label=port)
            axes[1].plot([r["size"] for r in rows], [r["peak_rss_mb"] / 1024 for r in rows], marker="o", label=port)
        axes[0].set(xscale="log", yscale="log", xlabel="output size (pixels per side)", ylabel="seconds per batch")
        axes[1].set(xscale="log", xlabel="output size (pixels per side)", ylabel="peak RSS, GiB")
        axes[1].axhline(4, color="grey", linestyle="--", linewidth=1)
        for ax in axes:
            ax.set_xticks(list(results["config"]["decode_sizes"]), [str(s) for s in results["config"]["decode_sizes"]])
            ax.legend(fontsize=8)
        fig.suptitle(f"Decoding {results['decode'][0]['batch']} images at any resolution (queries in chunks)",
                     fontsize=9)
        fig.tight_layout()
        atomic_save_figure(fig, files / "decode.png", dpi=90)
        plt.close(fig)
        made.append(("Decoding: time and peak memory by output size", "decode.png"))
    return made


def step_profiles(steps: list[dict]) -> list[str]:
    """Markdown: where each step's time goes (torch.profiler, one step, self CPU time per op)."""
    lines = []
    for r in steps:
        if not r.get("profile"):
            continue
        if not lines:
            lines += ["### Where a step's time goes", "",
                      "torch.profiler over one more step of the same process: self CPU time per op, the largest "
                      "first (the profiler's own overhead included, so the total exceeds the median above a little). "
                      "`aten::mm`/`aten::addmm`: the matrix products (the roofline's work); `parity::scan_forward`, "
                      "`parity::scan_backward`: the compiled selective scan's calls, `parity::conv_*` and "
                      "`parity::gelu_*` the other compiled kernels' (conv1d + SiLU, GELU); `MambaInner`, "
                      "`FeedForwardGELU` and their backwards: the rest of the fused mixer core and MLP around those "
                      "calls (their matrix products count under `aten::mm`); `_ChunkedScan*`: the pure-PyTorch scan; "
                      "`aten::copy_`: layout copies.", ""]
        prof = pd.DataFrame(r["profile"])
        prof["share"] = [f"{s:.0%}" for s in prof["share"]]
        lines += [f"**{r['port']}, B={r['batch']}, {r['scan']} scan**", "", _fmt(prof), ""]
    return lines


def step_matmuls(steps: list[dict], top: int = 10) -> list[str]:
    """Markdown: each compiled-scan step's matrix products by shape, with their own fraction of the GEMM rate."""
    lines = []
    for r in steps:
        if not r.get("matmuls") or r["scan"] != "compiled":
            continue
        if not lines:
            lines += ["### The step's matrix products", "",
                      "From the same profile, with input shapes: per op and shapes (a @ b), the calls, self time, "
                      "GFLOP and `of_gemm`, their rate over the 2048^3 matmul's, the largest first. Their total "
                      "time, with the scans' at their bound, is the least the step could take on this BLAS "
                      "(`ceiling` in the step table).", ""]
        mm = pd.DataFrame(r["matmuls"])
        shown, rest = mm.head(top), mm.iloc[top:]
        if len(rest):
            shown = pd.concat([shown, pd.DataFrame([{"op": f"{len(rest)} other shapes", "a": "", "b": "",
                                                     "calls": rest["calls"].sum(), "ms": rest["ms"].sum(),
                                                     "gflop": rest["gflop"].sum(),
                                                     "of_gemm": rest["gflop"].sum() / rest["ms"].sum() * 1e3
                                                     / r["gemm_gflops"]}])])
        lines += [f"**{r['port']}, B={r['batch']}**: {r['matmul_s']:.2f} s of matrix products at "
                  f"{r['matmul_of_gemm']:.2f} of the GEMM rate; step {r['median_s']:.2f} s, so "
                  f"{r['matmul_s'] / r['median_s']:.0%} of it is matrix products", "", _fmt(shown), ""]
    return lines


def kernels_reach(r: dict) -> float | None:
    """The fraction of the GEMM rate a profiled compiled-scan step would reach were this toolkit's compiled kernels
    at their best (every scan at its hardware bound, the conv1d and GELU kernels free) and every other op as it
    ran (``step_gaps``' parts); None without a profile by part."""
    parts = r.get("parts")
    if not parts or r.get("scan") != "compiled" or r.get("scan_floor_s") is None:
        return None
    least_s = (parts["matmul"] + parts["other"]) / 1e3 + r["scan_floor_s"]
    return r["gflop_per_step"] / least_s / r["gemm_gflops"]


def step_gaps(steps: list[dict]) -> list[str]:
    """Markdown: each compiled-scan step's profiled time by part (``step.step_parts``) against the least time of its
    ceiling (its matrix products as they ran, its scans at their bound, every other part free), and what the gap
    between the two is made of."""
    lines = []
    for r in steps:
        reach = kernels_reach(r)  # None for a step without its profile by part
        if reach is None:
            continue
        parts = r["parts"]
        if not lines:
            lines += ["### The step against its ceiling", "",
                      "The same profile by part: `ms`, its self CPU time; `least_ms`, what the ceiling allows that "
                      "part (the matrix products as they ran, the selective scans at their hardware bound, every "
                      "other part nothing); `above_ms`, the difference, and `of_gap` its share of the step's gap to "
                      "the ceiling. Each compiled kernel call is a `parity::` range in the profile, so the scans' "
                      "row is the kernel alone; the autograd Functions around the kernels (their Python, their "
                      "small copies) count under everything else.", ""]
        floor_ms = r["scan_floor_s"] * 1e3
        rows = [("matrix products", parts["matmul"], parts["matmul"]),
                (f"selective scans ({r['scans']}, forward and backward)", parts["scan"], floor_ms),
                ("other compiled kernels (conv1d + SiLU, GELU)", parts["kernels"], 0.0),
                ("everything else", parts["other"], 0.0)]
        gap = sum(ms - least for _, ms, least in rows)
        table = pd.DataFrame([{"part": name, "ms": round(ms), "share": f"{ms / parts['total']:.0%}",
                               "least_ms": round(least), "above_ms": round(ms - least),
                               "of_gap": f"{(ms - least) / gap:.0%}" if gap > 0 else "-"} for name, ms, least in rows]
                             + [{"part": "**step (profiled)**", "ms": round(parts["total"]), "share": "100%",
                                 "least_ms": round(parts["matmul"] + floor_ms), "above_ms": round(gap),
                                 "of_gap": "100%"}])
        named = [op for op in r.get("profile", []) if not op["op"].startswith(("aten::mm", "aten::addmm", "parity::"))
                 and "other ops" not in op["op"]][:3]
        largest = ", ".join(f"`{op['op']}` {op['ms']:.0f} ms" for op in named)
        lines += [f"**{r['port']}, B={r['batch']}**: profiled {parts['total'] / 1e3:.2f} s against the ceiling's "
                  f"{(parts['matmul'] + floor_ms) / 1e3:.2f} s; the scans above their bound are "
                  f"{(parts['scan'] - floor_ms) / gap:.0%} of the gap, everything but the matrix products and the "
                  f"kernels {parts['other'] / gap:.0%}" + (f" (its largest ops: {largest})" if largest else "")
                  + f"; with the kernels at their best and the rest as it ran, {reach:.2f} of the GEMM rate",
                  "", _fmt(table), ""]
    return lines


def phases_x_bound(rows: list[dict]) -> float:
    """A phase table's call over the whole bound: the phases' parts of it add up to the scan's (the prologues' on
    the epilogues' rows)."""
    return rows[0]["wall_ms"] / sum(r["bound_ms"] for r in rows if r.get("bound_ms"))


def phase_frame(rows: list[dict], alone_ms: dict | None = None) -> pd.DataFrame:
    """A phase table's rows as a frame; with ``alone_ms`` ({(pass, phase): ms}), a column of those too."""
    return pd.DataFrame([{"pass": r["pass"], "phase": r["phase"], "ms": r["ms"], "share": f"{100 * r['share']:.0f}%",
                          "bound_ms": r.get("bound_ms"), "x_bound": r.get("x_bound"),
                          **({"alone_ms": alone_ms.get((r["pass"], r["phase"]))} if alone_ms is not None else {})}
                         for r in rows])


def scan_phase_section(rows: list[dict]) -> list[str]:
    """The compiled scan's time by phase (``bench_scan_phases``): a table and what it says; nothing without rows."""
    if not rows:
        return []
    table = phase_frame(rows)
    worst = max((r for r in rows if r.get("x_bound")), key=lambda r: r["x_bound"])
    return ["### Where the compiled scan's time goes", "",
            f"The same forward + backward on the kernel's timed build (`PARITY_SCAN_KERNEL=phases`: a clock read "
            f"around each phase of each group of channels, the outputs bit-identical), medians of "
            f"{rows[0].get('runs', 'the')} runs at {' x '.join(map(str, rows[0]['shape']))} on {rows[0]['threads']} "
            f"thread(s), {rows[0]['wall_ms']:.1f} ms a call, {phases_x_bound(rows):.2f}x its bound. `ms`: each phase's "
            "time summed over the threads and "
            "divided by their number, so the rows add up to the call; `bound_ms`: that phase's part of the bound "
            "(`phase_work` in `parity/bench/scanbound.py`, at the median rates probed before the runs); the "
            "prologue and the epilogue of a pass share the elementwise part (the step size's softplus, the gate, the "
            "skip), so their row's `x_bound` counts both. The last row is what lies outside the phases: the autograd "
            "wrapper, B and C's padded copies, the sums of gB and gC, and threads waiting for each other.", "",
            _fmt(table), "",
            f"Furthest from its bound: the {worst['pass']} {worst['phase']} ({worst['work']} work) at "
            f"{worst['x_bound']:.1f}x.", ""]


def step_scan_phase_section(rows: list[dict], alone: list[dict]) -> list[str]:
    """The scans of a training step by phase (``step.step_scan_phases``), beside the same phases of the scan
    alone (``alone``, ``bench_scan_phases`` rows) where the shapes match; nothing without rows."""
    if not rows:
        return []
    first = rows[0]
    same = bool(alone) and tuple(alone[0]["shape"]) == tuple(first["shape"])
    table = phase_frame(rows, {(r["pass"], r["phase"]): r["ms"] for r in alone} if same else None)
    return ["### The same scans inside a training step", "",
            f"The {first['scans']} scans of one {first['port']} training step at batch {first['batch']} "
            f"({' x '.join(map(str, first['shape']))} each) on the timed build, per scan: medians of {first['runs']} "
            f"steps, {first['wall_ms']:.1f} ms a scan (forward + backward, the wall time of its `parity::scan_*` "
            f"profiler ranges), {phases_x_bound(rows):.2f}x its bound. Inside the fused mixer the scan computes "
            "delta from dt_proj's low-rank input itself and writes and reads time-major rows (what out_proj reads "
            "and gives back), where the table above "
            "reads a delta tensor and rows"
            + ("; `alone_ms`: that table's time for the same phase." if same else ".")
            + " The last row is the time of the calls outside the phases (threads waiting for each other, the sums "
              "of gB and gC).", "", _fmt(table), ""]


def render(results: dict, out: Path, command: str) -> str:
    files = out.parent / f"{out.stem}_files"
    m = results["machine"]
    lines = _header_section(results, command)
    lines += _targets_section(results)
    lines += _scan_section(results["scan"])
    lines += scan_phase_section(results.get("scan_phases") or [])
    lines += step_scan_phase_section(results.get("step_scan_phases") or [], results.get("scan_phases") or [])
    lines += _step_section(results["step"])
    lines += _decode_section(results["decode"])
    if results.get("allocator"):
        lines += _allocator_section(results["allocator"])
    if results["matrix"]:
        lines += ["## A whole smoke matrix", "", "`parity ablate --preset smoke --seeds 1` in a fresh process "
                  "(25 variants, training and full evaluation).", "", _fmt(pd.DataFrame(results["matrix"])), ""]
    if results.get("jobs"):
        from .jobs import jobs_section

        lines += jobs_section(results["jobs"], m.get("cores") or os.cpu_count() or 1)
    for title, name in _plots(results, files):
        lines += [f"![{title}]({files.name}/{name})", ""]
    return "\n".join(lines)


def _header_section(results: dict, command: str) -> list[str]:
    """The report's title, how it was generated, the machine and versions table and the no-GPU note."""
    m = results["machine"]
    lines = ["# Benchmarks: speed and memory on this machine", "",
             f"Generated by `{command}` on {results['started']}. Every number below was measured by that run; "
             "each case reports the median of its runs with min and max.", "",
             "## Machine and versions", "",
             _fmt(pd.DataFrame([{"what": k, "value": v} for k, v in m.items()])), ""]
    if not m["cuda"]:
        lines += ["**No GPU was lent to this session, so no GPU numbers were measured.** The fused `mamba_ssm` "
                  "kernels, bf16 autocast and `torch.compile` on CUDA are therefore not in this report.", ""]
    return lines


def _targets_section(results: dict) -> list[str]:
    """The targets table with what was measured, and what its out-of-reach verdicts mean; nothing without targets."""
    targets = target_rows(results)
    if not targets:
        return []
    df = pd.DataFrame(targets)
    beyond, beyond_kernels = (df["met"] == "beyond").any(), (df["met"] == "beyond-kernels").any()
    df["met"] = df["met"].map({True: "yes", False: "**no**", None: "-", "beyond": "**no**, out of reach here",
                               "beyond-kernels": "**no**, beyond the kernels here"})
    lines = ["## Targets", "", _fmt(df), ""]
    if beyond:
        lines += ["*Out of reach here*: the target is above the step's ceiling measured in the same run, the "
                  "fraction for the least time the step could take on this machine: its matrix products at the "
                  "rate they run here (their own shapes, on this machine's BLAS: see *The step's matrix "
                  "products* below; below the 2048^3 rate the fraction is taken against), its selective scans "
                  "at their hardware bound (`x_bound` above), and every other op taking no time at all. No work "
                  "on the rest of the step can meet such a target here.", ""]
    if beyond_kernels:
        lines += ["*Beyond the kernels here*: the target is below the ceiling but above the fraction the step "
                  "would reach with this toolkit's compiled kernels at their best (every selective scan at its "
                  "hardware bound, the conv1d and GELU kernels taking no time) and every other op as profiled "
                  "(*The step against its ceiling* below): no work on the kernels can meet it here; what is left "
                  "is torch's own ops and the Python around them.", ""]
    return lines


def _scan_section(rows: list[dict]) -> list[str]:
    """The selective scan's table, with the speed-up over the reference and how its hardware bound is derived."""
    scan = pd.DataFrame([{k: v for k, v in r.items() if k not in ("shape", "bound")}
                         | {"shape": " x ".join(map(str, r["shape"]))} for r in rows])
    ref = next((r["median_s"] for r in rows if r["impl"] == "ref" and r["median_s"]), None)
    if ref:
        scan["speed-up vs ref"] = [f"{ref / s:.0f}x" if s else "-" for s in scan["median_s"]]
    lines = ["## Selective scan, forward + backward", "",
             "Shape (batch, d_inner, L, d_state). `ref`: the sequential reference (mamba_ssm's "
             "`selective_scan_ref` semantics); `chunked`: pure PyTorch, chunks of steps; `compiled`: the C kernel "
             "(states never materialised; the default); `mambapy`: mambapy's Blelloch parallel scan with the "
             "same softplus and gate, as an outside peer.", "", _fmt(scan), ""]
    bound = next((r["bound"] for r in rows if r.get("bound")), None)
    if bound:
        from .scan import bound_summary

        lines += ["`x_bound`: the compiled kernel's median over its hardware bound on this machine, from measurement "
                  "(`parity/bench/scanbound.py`: per element (b, d, t, n) 2 exps and "
                  f"{bound['flops_per_element']} FLOPs for forward + backward, and per step of a row (b, d, t) "
                  f"{bound.get('exps_per_row_step', 0)} exps (a log counted as one) and "
                  f"{bound.get('flops_per_row_step', 0)} FLOPs for the step size (softplus), the gate and the skip; "
                  "the bytes of every (batch, d_inner, L) "
                  "tensor read or written once; the kernel's own exp rate, the FMA peak and a torch copy's "
                  "bandwidth measured here; bound = max(compute, memory)). The exp and FMA rates are probed "
                  "before each timed run (an untimed run in between), and the run with the median bound gives the "
                  "one below: on this shared machine "
                  "the rates change from one call to the next, so a best-of rate would describe a rare moment "
                  "rather than the machine the kernel ran on. That median run's bound: " + bound_summary(bound) + ". "
                  "`forward_s`, `backward_s`: each pass's median, and `forward_x_bound`, `backward_x_bound` each "
                  "over its own bound (forward: 1 exp and 6 FLOPs per element, 3 exps and 10 FLOPs per row step; "
                  "backward: 1 exp and 21, 3 and 26). "
                  "`page_faults`: the median number of minor page faults per run, first touches of memory the "
                  "allocator had handed back to the system (each 4 KiB page costs about a microsecond on this VM, so a "
                  "run that takes thousands is that many microseconds slower); with the allocator of the machine table "
                  "keeping freed memory (`parity/runtime/allocator.py`), a run in steady state takes none.", ""]
    return lines


def _step_section(steps: list[dict]) -> list[str]:
    """The training-step table and what its columns mean, then the steps' profiles, matrix products and gaps."""
    step = pd.DataFrame([{k: v for k, v in r.items() if k not in ("profile", "matmuls", "parts", "allocator")}
                         for r in steps])
    lines = ["## One training step of each port's CIFAR-10 configuration", "",
             "Forward + backward + AdamW on 32x32 images, the sources' full model sizes. Peak RSS is the "
             "high-water mark of a fresh process (interpreter, torch and model included; its baseline before the "
             "first step is shown too). The timed steps are training's steady state: `warmup_steps` untimed ones "
             "come first, the first, then more (each after a GEMM probe, as the timed ones) until one takes at "
             f"most {SETTLED_FAULTS} page faults ({SETTLE_STEPS} more at most), since a process's first steps still "
             "grow its heap and on huge pages such a fault can wait milliseconds for the kernel to compact memory; "
             "`page_faults`: the timed steps' median. `fraction_of_gemm`: the step's FLOPs (matrix products and "
             "convolutions, counted by torch's FlopCounterMode with grouped convolutions' backward counted right) per "
             "second, "
             "over a 2048^3 fp32 matmul's rate measured in the same process right before each timed step (medians of "
             "both): the share of this machine's "
             "dense-GEMM roofline the step reaches, comparable across machines. `matmul_s`: the step's matrix "
             "products' time (profiled), `matmul_of_gemm` their FLOP rate over the same GEMM rate; `scans`: the "
             "selective scans one step runs and `scan_floor_s` their least time, each at its hardware bound; "
             "`ceiling`: the step's FLOPs over `matmul_s` + `scan_floor_s` and the GEMM rate, the most "
             "`fraction_of_gemm` can reach here, were every other op free.", "", _fmt(step), ""]
    lines += step_profiles(steps)
    lines += step_matmuls(steps)
    lines += step_gaps(steps)
    return lines


def _decode_section(decode: list[dict]) -> list[str]:
    """The decoding table, queries through the decoder a chunk at a time."""
    return ["## Decoding at any resolution", "",
            "Encode once, then decode the whole batch on an S x S grid; queries go through the decoder "
            f"{decode[0]['chunk'] if decode else ''} at a time (counted over the batch), "
            "so memory stays bounded; the output equals one-piece decoding (tested).", "",
            _fmt(pd.DataFrame(decode)), ""]


def _allocator_section(rows: list[dict]) -> list[str]:
    """The table of the same cases on glibc's allocator defaults and with freed memory kept."""
    return ["## The allocator: glibc's defaults against freed memory kept", "",
            "The same cases in two fresh processes each, one on glibc's defaults (`PARITY_SYSTEM_MALLOC=1`), "
            "one with the tunables the `parity` command starts with (`parity/runtime/allocator.py`: freed "
            "memory kept, glibc's small-block caches off so that freed blocks merge back, the heap on "
            "transparent huge pages). Every other row of this report ran with the second. `page_faults`: per "
            "run (the scan) or per step, the median; each is a first touch of a page (4 KiB, or 2 MiB where "
            "huge) and costs about a microsecond on this VM, a huge one more where the kernel compacts memory "
            "for it first. `peak_rss_mb`: the "
            "step process's high-water mark.", "",
            _fmt(pd.DataFrame(rows).drop(columns="process_allocator", errors="ignore")), ""]


def write_benchmarks(cfg: SuiteConfig, out="reports/benchmarks.md", progress=print) -> Path:
    out = Path(out).resolve()
    results = run_suite(cfg, progress)
    default = out == Path("reports/benchmarks.md").resolve()
    command = "parity bench" + ("" if default else f" --out {shlex.quote(str(out))}")
    if cfg.quick:
        command += " --quick"
    atomic_write_text(out, render(results, out, command))
    return out
