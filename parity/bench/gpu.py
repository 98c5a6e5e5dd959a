"""``parity bench gpu``: the checks a lent GPU is for, in one command (under 8 minutes on one GPU).

1. Golden parity on the GPU: both ports' golden models and tensors (package data) moved to CUDA, one
   training step's output, loss and every gradient compared with the sources' CPU tensors; the scan that
   runs is named (mamba_ssm's fused kernel where installed, else the PyTorch chunked scan on CUDA tensors).
2. One training step of each port at its source's batch (original 16, notebook 32): median time, images/s
   and peak allocated GPU memory.
Then ``reports/gpu.md``. Without CUDA it stops with one line; the report writer runs anywhere.
"""

from __future__ import annotations

import platform
import statistics
import time

from ..core.errors import ParityError

FWD, GRAD = 1e-4, 1e-3  # float32 on another device: kernels sum in other orders than the CPU's
SOURCE_BATCH = {"original": 16, "notebook": 32}


def scan_on_gpu() -> str:
    """Which scan the Mamba mixers run on CUDA tensors."""
    from ..core.ssm.scan import cuda_scan_available

    return "mamba_ssm fused kernel" if cuda_scan_available() else "chunked (PyTorch on CUDA)"


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


def step_on_gpu(port: str, repeats: int = 5, device: str = "cuda") -> dict:
    """Median time of one training step at the source's batch, and the peak allocated memory."""
    import torch

    from .step import cifar10_model

    batch = SOURCE_BATCH[port]
    model = cifar10_model(port).to(device)
    images = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(device)
    if port == "original":
        import original_port

        opt = original_port.make_optimizer(model.parameters(), {"name": "adamw", "args": {"lr": 5e-4}})

        def step():
            original_port.train_step(model, opt, images)
    else:
        import notebook_port

        opt = notebook_port.make_optimizer(model)

        def step():
            notebook_port.train_step(model, opt, images)
    step()  # warm-up: kernels, allocator
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"port": port, "batch": batch, "median_s": median, "images_per_s": batch / median,
            "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20}


def run_gpu_check(repeats: int = 5) -> dict:
    import torch

    if not torch.cuda.is_available():
        raise ParityError("parity bench gpu needs a CUDA GPU and torch sees none: run it on a machine with one "
                          "(pip install -e '.[dev]' is enough; '.[cuda]' adds mamba_ssm's fused scan)")
    return {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "scan": scan_on_gpu(), "golden": golden_on_gpu(),
            "steps": [step_on_gpu(port, repeats) for port in SOURCE_BATCH]}


def render_gpu_report(results: dict) -> str:
    """reports/gpu.md from ``run_gpu_check``'s results."""
    lines = ["# GPU check", "", "Regenerate on a CUDA machine: `parity bench gpu` (writes this file).", "",
             f"Device: {results['device']}; torch {results['torch']}, CUDA {results['cuda']}, Python "
             f"{results['python']}; the Mamba scan on the GPU: {results['scan']}.", "",
             "## Golden parity on the GPU", "",
             f"Each port's golden model and batch moved to the GPU; the worst relative error against the sources' "
             f"CPU tensors (tolerances: outputs {FWD:g}, gradients {GRAD:g}).", "",
             "| port | outputs (worst, tensor) | gradients (worst, parameter) | within tolerance |", "|---|---|---|---|"]
    for row in results["golden"]:
        (fe, fn), (ge, gn) = row["outputs"], row["gradients"]
        lines.append(f"| {row['port']} | {fe:.2e} ({fn or '-'}) | {ge:.2e} ({gn or '-'}) | "
                     f"{'yes' if row['passed'] else '**no**'} |")
    lines += ["", "## One training step at the source's batch", "",
              "| port | batch | median s | images/s | peak GPU memory (MiB) |", "|---|---|---|---|---|"]
    for row in results["steps"]:
        lines.append(f"| {row['port']} | {row['batch']} | {row['median_s']:.4f} | {row['images_per_s']:.1f} | "
                     f"{row['peak_gpu_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def write_gpu_report(out, repeats: int = 5):
    from pathlib import Path

    from ..core.store import atomic_write_text

    results = run_gpu_check(repeats)
    atomic_write_text(Path(out), render_gpu_report(results))
    return Path(out), results


__all__ = ["golden_on_gpu", "render_gpu_report", "run_gpu_check", "scan_on_gpu", "step_on_gpu", "write_gpu_report"]
