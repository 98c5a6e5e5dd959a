"""The GPU paths against the CPU ones. Skipped without CUDA (this project's CI has none); run them
where a GPU is lent: ``python -m pytest -q tests/parity/core/ssm/test_cuda.py``."""

from __future__ import annotations

import pytest
import torch

from parity.core.ssm.scan import _cuda_scan, selective_scan, selective_scan_ref
from parity.testing import SCAN_INPUT_NAMES as NAMES
from parity.testing import rel_err
from parity.testing import scan_inputs as make_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("impl", ["cuda", "compiled", "chunked", "parallel"])
def test_scan_on_gpu_matches_the_cpu_reference(impl):
    """'cuda' is mamba_ssm's fused kernel when installed; the others run PyTorch code on the GPU ('compiled'
    means the parallel scan there)."""
    if impl == "cuda" and _cuda_scan() is None:
        pytest.skip("mamba_ssm is not installed")
    inputs = make_inputs(batch=2, d_inner=16, d_state=8, length=97, seed=3)
    grad = torch.randn(2, 16, 97, generator=torch.Generator().manual_seed(1))
    results = []
    for device, fn in (("cpu", selective_scan_ref), ("cuda", lambda *a, **k: selective_scan(*a, **k, impl=impl))):
        leaves = {k: v.detach().to(device).requires_grad_() for k, v in inputs.items()}
        out = fn(*[leaves[k] for k in NAMES[:6]], z=leaves["z"], delta_bias=leaves["delta_bias"], delta_softplus=True)
        out.backward(grad.to(device))
        results.append([out.detach().cpu()] + [leaves[k].grad.cpu() for k in NAMES])
    for name, cpu, gpu in zip(["out", *NAMES], *results):
        assert rel_err(gpu, cpu) <= (1e-5 if name == "out" else 1e-4), name


def test_smoke_run_trains_on_the_gpu_like_on_the_cpu(tmp_path, monkeypatch):
    from parity.experiment.config import set_field
    from parity.experiment.presets import preset
    from parity.runtime.train import train_run

    cfg = preset("smoke").baselines()[1]
    set_field(cfg, "train.max_steps", 4)
    psnr = {}
    for device in ("cpu", "cuda"):
        monkeypatch.setenv("PARITY_DEVICE", device)
        metrics = train_run(cfg, tmp_path / device, final_eval=False)
        assert metrics["device"].startswith(device)
        psnr[device] = metrics["test"]["psnr"]
    assert abs(psnr["cuda"] - psnr["cpu"]) < 0.05  # float rounding differs between devices, nothing else
