"""``parity bench gpu``: the checks a lent GPU is for, in one command (under 8 minutes on one GPU).

1. Golden parity on the GPU: both ports' golden models and tensors (package data) moved to CUDA, one
   training step's output, loss and every gradient compared with the sources' CPU tensors in strict float32;
   the scan that runs is named (mamba_ssm's fused kernel where installed, else the parallel PyTorch scan).
2. One training step of each port at its source's batch (original 16, notebook 32), with the scan the GPU runs
   by default and with the chunked one for comparison: median time, images/s, the FLOP rate as a fraction of
   the GPU's dense matmul rate, and peak allocated GPU memory.
Then ``reports/gpu.md``. Without CUDA it stops with one line; the report writer runs anywhere.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time

from ..core.errors import ParityError

FWD, GRAD = 1e-4, 1e-3  # float32 on another device: kernels sum in other orders than the CPU's
SOURCE_BATCH = {"original": 16, "notebook": 32}
GPU_GEMM_SIZE = 8192  # a square matmul long enough (about 20 ms in fp32) to run at a GPU's peak


def scan_on_gpu() -> str:
    """Which scan the Mamba mixers run on CUDA tensors."""
    from ..core.ssm.scan import cuda_scan_available

    return "mamba_ssm fused kernel" if cuda_scan_available() else "parallel (PyTorch on CUDA)"


def _max_rel(pairs) -> tuple[float, str]:
    from ..testing import grad_err, rel_err

    worst, name = 0.0, ""
    for key, ours, theirs, is_grad in pairs:
        err = (grad_err if is_grad else rel_err)(ours.detach().cpu(), theirs)
        if err > worst:
            worst, name = err, key
    return worst, name


def golden_on_gpu(device: str = "cuda") -> list[dict]:
    """One row per port: the worst relative error of the outputs and of the gradients against golden."""
    import torch

    import notebook_port
    import original_port

    from ..testing import golden_path

    rows = []
    g = torch.load(golden_path("original_small.pt"), weights_only=True)
    model = original_port.from_spec({**g["spec"], "sd": g["state_dict"]}).to(device)
    out = original_port.reconstruction_step(model, g["images"].to(device))
    out["loss"].backward()
    fwd = _max_rel([(k, out[k], g[k], False) for k in ("pred", "mses", "loss", "psnr")])
    grads = _max_rel([(n, p.grad, g["grads"][n], True) for n, p in model.named_parameters() if p.grad is not None])
    rows.append({"port": "original", "outputs": fwd, "gradients": grads})
    g = torch.load(golden_path("notebook_small.pt"), weights_only=True)
    model = notebook_port.MambaGINR_CIFAR(**g["kwargs"]).to(device)
    model.load_state_dict(g["state_dict"], strict=True)
    out = notebook_port.sampled_loss(model, g["images"].to(device), g["sample_idx"].to(device))
    out["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    fwd = _max_rel([("pred", out["pred"], g["pred_sampled"], False), ("loss", out["loss"], g["loss"], False)])
    grads = _max_rel([(n, p.grad, g["grads_after_clip"][n], True) for n, p in model.named_parameters()])
    rows.append({"port": "notebook", "outputs": fwd, "gradients": grads})
    for row in rows:
        row["passed"] = row["outputs"][0] <= FWD and row["gradients"][0] <= GRAD
    return rows


def step_on_gpu(port: str, repeats: int = 5, device: str = "cuda", gemm_size: int = GPU_GEMM_SIZE,
                scan: str = "cuda") -> dict:
    """One training step at the source's batch under torch's default float32 settings, every mixer on ``scan``
    ('cuda': mamba_ssm's kernel where installed, else the parallel scan): its median time, peak allocated
    memory, and FLOP rate as a fraction of the device's dense fp32 matmul rate at the same settings."""
    from ..evaluation.evaluate import gflop
    from .step import dense_gemm_gflops, training_step

    batch = SOURCE_BATCH[port]
    model, step = training_step(port, batch, scan=scan, device=device)
    times, peak = timed_runs(step, repeats, device)
    median = statistics.median(times)
    busy_s, kernels = gpu_busy(step) if _on_gpu(device) else (float("nan"), 0)
    step_gflop = gflop(step, model)
    gemm = dense_gemm_gflops(gemm_size, repeats=3, device=device)
    return {"port": port, "batch": batch, "scan": scan, "median_s": median, "min_s": min(times), "max_s": max(times),
            "images_per_s": batch / median, "peak_gpu_mb": peak, "gflop_per_step": step_gflop,
            "gemm_gflops": gemm, "fraction_of_gemm": step_gflop / median / gemm, "gpu_busy_s": busy_s,
            "kernels": kernels}


def _on_gpu(device) -> bool:
    return str(device).startswith("cuda")  # tests run this module's code on the CPU, where there is no peak to read


def timed_runs(fn, repeats: int, device: str = "cuda") -> tuple[list[float], float]:
    """Seconds of ``repeats`` calls of ``fn`` after an untimed one (kernels, allocator), and the peak GPU memory
    (MiB) they allocated; NaN off a GPU."""
    import torch

    from .step import timed_s

    timed_s(fn, device)
    if _on_gpu(device):
        torch.cuda.reset_peak_memory_stats(device)
    times = [timed_s(fn, device) for _ in range(repeats)]
    return times, torch.cuda.max_memory_allocated(device) / 2 ** 20 if _on_gpu(device) else float("nan")


def gpu_busy(step) -> tuple[float, int]:
    """(seconds the GPU spends in kernels and copies during one ``step``, how many it runs), by torch.profiler:
    a step much longer than its busy time waits on the host that launches its kernels."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    on_device = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    return sum(e.self_device_time_total for e in on_device) / 1e6, sum(e.count for e in on_device)


SCAN_SHAPE = (16, 512, 512, 16)  # (batch, d_inner, L, d_state): the original's CIFAR mixers, as `parity bench scan`


def scan_times_on_gpu(repeats: int = 5, device: str = "cuda", shape=SCAN_SHAPE) -> list[dict]:
    """Median seconds of one selective-scan forward + backward on the GPU at ``shape``, and its peak allocated
    memory, per scan that runs there: the one the mixers use and the chunked one."""
    import torch

    from ..core.ssm.scan import selective_scan
    from ..testing import SCAN_INPUT_NAMES, scan_inputs

    batch, d_inner, length, d_state = shape
    data = {k: v.to(device) for k, v in scan_inputs(batch=batch, d_inner=d_inner, d_state=d_state, length=length,
                                                    seed=0).items()}
    grad = torch.randn(batch, d_inner, length, generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    for impl in ("cuda", "chunked"):
        def run(impl=impl):
            leaves = {k: v.detach().clone().requires_grad_() for k, v in data.items()}
            out = selective_scan(*[leaves[k] for k in SCAN_INPUT_NAMES[:6]], z=leaves["z"],
                                 delta_bias=leaves["delta_bias"], delta_softplus=True, impl=impl)
            out.backward(grad)

        times, peak = timed_runs(run, repeats, device)
        rows.append({"scan": impl, "shape": shape, "median_s": statistics.median(times), "peak_gpu_mb": peak})
    return rows


@contextlib.contextmanager
def strict_fp32():
    """float32 matmuls and convolutions without TF32 (torch lets cuDNN's convolutions use it by default), as
    the sources' CPU tensors were computed; the previous settings come back on exit."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_gpu_check(repeats: int = 5) -> dict:
    import torch

    if not torch.cuda.is_available():
        raise ParityError("parity bench gpu needs a CUDA GPU and torch sees none: run it on a machine with one "
                          "(pip install -e '.[dev]' is enough; '.[cuda]' adds mamba_ssm's fused scan)")
    t0 = time.perf_counter()
    with strict_fp32():
        golden = golden_on_gpu()
    tf32 = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    steps = [step_on_gpu(port, repeats, scan=scan) for port in SOURCE_BATCH for scan in ("cuda", "chunked")]
    scans = scan_times_on_gpu(repeats)
    return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "scan": scan_on_gpu(), "golden": golden, "steps": steps,
            "scans": scans, "tf32": tf32, "repeats": repeats, "elapsed_s": time.perf_counter() - t0}


def render_gpu_report(results: dict) -> str:
    """reports/gpu.md from ``run_gpu_check``'s results."""
    tf32 = results["tf32"]
    on = [name for name, used in (("matrix products", tf32["matmul"]), ("convolutions", tf32["cudnn"])) if used]
    lines = ["# GPU check", "",
             f"Regenerate on a CUDA machine: `parity bench gpu --repeats {results['repeats']}` (writes this file; "
             f"this run took {results['elapsed_s']:.0f} s).", "",
             f"Device: {results['device']}; torch {results['torch']}, CUDA {results['cuda']}, Python "
             f"{results['python']}; the Mamba scan on the GPU: {results['scan']}"
             + ("." if results["scan"].startswith("mamba_ssm") else
                "; mamba_ssm is not installed here (`pip install -e '.[cuda]'` adds its fused kernel, which this "
                "check then runs and compares)."), "",
             "## Golden parity on the GPU", "",
             "Each port's golden model and batch moved to the GPU, one training step's outputs and gradients compared "
             "with the sources' CPU tensors, in strict float32 (TF32 off for matrix products and convolutions). "
             f"The worst relative error (tolerances: outputs {FWD:g}, gradients {GRAD:g}):", "",
             "| port | outputs (worst, tensor) | gradients (worst, parameter) | within tolerance |",
             "|---|---|---|---|"]
    for row in results["golden"]:
        (fe, fn), (ge, gn) = row["outputs"], row["gradients"]
        lines.append(f"| {row['port']} | {fe:.2e} ({fn or '-'}) | {ge:.2e} ({gn or '-'}) | "
                     f"{'yes' if row['passed'] else '**no**'} |")
    lines += ["", "## One training step at the source's batch", "",
              f"torch's default float32 settings (TF32 in {' and '.join(on) if on else 'nothing'}); "
              f"{results['repeats']} timed steps after a warm-up, the median. GFLOP per step counts matrix products "
              "and convolutions (FlopCounterMode); the fraction divides the step's rate by a dense "
              f"{GPU_GEMM_SIZE}^3 float32 matmul's on the same GPU at the same settings. GPU busy: the share of the "
              "median step the GPU spends in kernels and copies, read by torch.profiler over one more step, with the "
              "number it runs; a low share means the step waits on the host that launches them.", "",
              "| port | batch | scan | median s (min-max) | images/s | GFLOP/step | matmul TFLOP/s | "
              "fraction of GEMM | GPU busy (kernels) | peak GPU memory (MiB) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["steps"]:
        scan = results["scan"] if row["scan"] == "cuda" else row["scan"]
        lines.append(f"| {row['port']} | {row['batch']} | {scan} | "
                     f"{row['median_s']:.4f} ({row['min_s']:.4f}-{row['max_s']:.4f}) | "
                     f"{row['images_per_s']:.1f} | {row['gflop_per_step']:.1f} | {row['gemm_gflops'] / 1e3:.1f} | "
                     f"{row['fraction_of_gemm']:.3f} | {row['gpu_busy_s'] / row['median_s']:.0%} ({row['kernels']}) | "
                     f"{row['peak_gpu_mb']:.0f} |")
    if results.get("scans"):
        lines += ["", "## One selective scan, forward and backward", "",
                  "At the original's mixer shape (batch, d_inner, L, d_state) = "
                  f"{tuple(results['scans'][0]['shape'])}, the median of {results['repeats']} after a warm-up.", "",
                  "| scan | median ms | peak GPU memory (MiB) |", "|---|---|---|"]
        for row in results["scans"]:
            scan = results["scan"] if row["scan"] == "cuda" else row["scan"]
            lines.append(f"| {scan} | {row['median_s'] * 1e3:.2f} | {row['peak_gpu_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def write_gpu_report(out, repeats: int = 5):
    from pathlib import Path

    from ..core.store import atomic_write_text

    results = run_gpu_check(repeats)
    atomic_write_text(Path(out), render_gpu_report(results))
    return Path(out), results


__all__ = ["golden_on_gpu", "gpu_busy", "render_gpu_report", "run_gpu_check", "scan_on_gpu", "scan_times_on_gpu",
           "step_on_gpu", "timed_runs", "write_gpu_report"]
