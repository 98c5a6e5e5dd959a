"""Scale-out paths give the results of the plain ones: DDP under torchrun (gloo, 2 CPU processes) equals
one process on the global batch; a matrix through Ray tasks equals the same matrix run locally."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parity.cli import main

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--set", "data.train_subset=16", "--set", "data.test_subset=8", "--set", "eval.sr_sizes=[32]",
        "--set", "eval.sr_images=4", "--set", "train.max_steps=2"]
# a tiny notebook run on 16x16 procedural images; sampled pixels with the notebook's decoder (the
# original decoder's batch-0-coordinates defect would make sampled-pixel DDP differ, see parity.runtime.distributed)
TINY = ["train", "--baseline", "notebook", "--no-final-eval", "--set", "data.dataset=procedural",
        "--set", "data.image_size=16", "--set", "data.train_subset=16", "--set", "data.test_subset=8",
        "--set", "train.batch_size=4", "--set", "train.max_steps=3", "--set", "train.eval_every=1",
        "--set", "train.lr=1e-3", "--set", "train.num_samples=64", "--set", "model.patch_size=4",
        "--set", "model.dim=48", "--set", "model.depth=1", "--set", "model.num_lp=4",
        "--set", "model.decoder_width=24", "--set", "model.feature_dim=16",
        "--set", "model.num_freqs_modulation=16", "--set", "model.num_freqs_hyponet=8"]


def _env():
    # one thread per process: both sides then do the same float work, and 2 shared cores do not thrash
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _run(*cmd, cwd):
    done = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=cwd, env=_env(), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_torchrun_ddp_equals_one_process(tmp_path):
    _run("-m", "parity.cli", *TINY, "--out", "single", cwd=tmp_path)
    _run("-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "parity.cli", *TINY,
         "--out", "ddp", cwd=tmp_path)
    single, ddp = tmp_path / "single" / "notebook" / "seed-0", tmp_path / "ddp" / "notebook" / "seed-0"
    # one set of files: rank 1 wrote nothing of its own
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert not list((tmp_path / "ddp").glob("*/seed-*/.*.tmp"))
    a, b = _history(single), _history(ddp)
    assert [h["step"] for h in a] == [h["step"] for h in b] == [1, 2, 3]
    for x, y in zip(a, b):
        assert abs(x["test_psnr"] - y["test_psnr"]) < 1e-4
        assert abs(x["test_psnr_batch_mse"] - y["test_psnr_batch_mse"]) < 1e-4
        assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-5)  # averaged over ranks
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (single, ddp))
    assert abs(ma["test"]["psnr"] - mb["test"]["psnr"]) < 1e-4
    assert ma["train_images"] == mb["train_images"] == 12  # counted over the global batch
    assert a[0]["test_psnr"] != a[-1]["test_psnr"]  # the weights moved: the comparison means something


def test_torchrun_batch_must_divide_by_world_size(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "-m", "parity.cli",
           *TINY, "--set", "train.batch_size=3", "--out", "odd"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=600)
    assert done.returncode != 0
    assert "parity: error: train.batch_size=3 does not divide by the 2 processes" in done.stderr
    assert not (tmp_path / "odd").exists()


def test_ray_executor_equals_local(tmp_path):
    ray = pytest.importorskip("ray")
    only = ["--only", "notebook+lr", "--only", "notebook+spatial-bias"]
    _run("-m", "parity.cli", "ablate", "--preset", "smoke", "--out", "local", *FAST, *only, cwd=tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}})
    try:
        assert main(["ablate", "--preset", "smoke", "--out", str(tmp_path / "ray"), *FAST, *only,
                     "--executor", "ray"]) == 0
        tables = {}
        for side in ("local", "ray"):
            folder = tmp_path / side / "smoke-one-at-a-time"
            tables[side] = {p.parent.parent.name: json.loads(p.read_text())["test"]
                            for p in folder.glob("*/seed-0/metrics.json")}
        assert sorted(tables["ray"]) == ["notebook", "notebook+lr", "notebook+spatial-bias"]
        assert tables["ray"] == tables["local"]
        # finished runs are not submitted again: a rerun changes no file
        mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*/*/seed-0/metrics.json")}
        assert main(["ablate", "--preset", "smoke", "--out", str(tmp_path / "ray"), *FAST, *only,
                     "--executor", "ray"]) == 0
        assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    finally:
        ray.shutdown()


def test_ray_missing_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    os.chdir(tmp_path)
    assert main(["ablate", "--preset", "smoke", "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("parity: error: ray is not installed: pip install -e '.[distributed]'") and "\n" not in err
    assert not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.parametrize("value, expected", [(None, "cpu"), ("auto", "cpu"), ("cpu", "cpu")])
def test_training_device_on_a_machine_without_cuda(monkeypatch, value, expected):
    import torch

    from parity.runtime.distributed import training_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto picks it")
    if value is None:
        monkeypatch.delenv("PARITY_DEVICE", raising=False)
    else:
        monkeypatch.setenv("PARITY_DEVICE", value)
    assert training_device().type == expected


@pytest.mark.parametrize("value, words", [("gpu", "not one of auto, cpu, cuda"), ("cuda", "no CUDA device")])
def test_training_device_bad_choices_are_one_line(monkeypatch, value, words):
    import torch

    from parity.core.errors import ParityError
    from parity.runtime.distributed import training_device

    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("PARITY_DEVICE", value)
    with pytest.raises(ParityError, match=words):
        training_device()
