"""Each command on the smoke preset, run as a user runs it; bad input exits 2 with one line."""

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parity.cli import main
from parity.runtime.allocator import without_malloc_settings

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "data.train_subset=16", "--set", "data.test_subset=8", "--set", "eval.sr_sizes=[32]",
        "--set", "eval.sr_images=4", "--set", "train.max_steps=2"]


def parity(*args, cwd=None, timeout=600):
    """The command in a user's plain shell (no malloc settings of the caller's)."""
    env = {**without_malloc_settings(os.environ), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "parity.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["train", "--toggle", "no-such-id"], "unknown difference 'no-such-id'"),
    (["train", "--set", "no.such.key=1"], "unknown configuration key 'no.such.key'"),
    (["train", "--set", "train.lr=-1"], "train.lr must be positive"),
    (["train", "--config", "missing.yaml"], "does not exist"),
    (["train", "--resume", "not-a-checkpoint.pt"], "does not exist"),
    (["train", "--dataset", "imagefolder", "--data-root", "missing-folder/"], "does not exist"),
    (["ablate", "--preset", "no-such-preset"], "unknown preset 'no-such-preset'"),
    (["report", "missing-folder/"], "missing-folder"),
    (["train", "--dataset", "procedural", "--out", "a-file", *FAST], "a-file"),
    (["ablate", "--matrix", "factorial", "--groups", "decoder"], "at least two"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    os.chdir(tmp_path)
    (tmp_path / "a-file").write_text("an --out that is a file, not a folder")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("parity: error:") and message in err and "\n" not in err
    assert "Traceback" not in err


def test_unknown_kernel_build_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("PARITY_SCAN_KERNEL", "natve")
    assert main(["summary"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("parity: error: PARITY_SCAN_KERNEL='natve' is not a kernel build (did you mean 'native'?)")
    assert "\n" not in err


def test_corrupt_checkpoint_and_broken_yaml(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a torch file")
    assert main(["train", "--resume", str(bad)]) == 2
    assert "not a readable torch file" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [\n")
    assert main(["train", "--config", str(broken)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_differences_and_audit(tmp_path, capsys):
    assert main(["differences", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| pixel-sampling" in out and "jitter-train" in out
    report = tmp_path / "audit.md"
    assert main(["audit", "--no-flops", "--out", str(report)]) == 0
    text = report.read_text()
    assert "Fields that differ without a registry entry: none" in text and "Batch-0 coordinates" in text
    again = tmp_path / "again.md"
    assert main(["audit", "--no-flops", "--out", str(again)]) == 0
    assert again.read_bytes() == report.read_bytes()  # a tracked page: no date, no number measured to rounding
    assert "gradient below 1e-12" in text


def test_train_then_resume_from_its_checkpoint(tmp_path):
    done = parity("train", "--baseline", "original", "--toggle", "jitter-train", "--out", str(tmp_path), *FAST,
                  "--set", "train.epochs=1", "--set", "data.dataset=procedural", "--set", "data.image_size=16",
                  "--set", "model.patch_size=4", "--set", "model.dim=48", "--set", "model.depth=1",
                  "--set", "model.num_lp=4", "--set", "model.decoder_width=48", "--set", "train.warmup_epochs=0",
                  "--no-final-eval")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "original+jitter-train" / "seed-0"
    assert (run / "metrics.json").exists() and "test PSNR" in done.stdout
    if platform.libc_ver()[0] == "glibc":  # the command ran with the allocator that keeps freed memory
        environment = json.loads((run / "metrics.json").read_text())["environment"]
        assert environment["allocator"].startswith("glibc, freed memory kept"), environment
    again = parity("train", "--resume", str(run / "checkpoint.pt"))
    assert again.returncode == 0, again.stderr


def test_ablate_smoke_subset_then_report(tmp_path):
    out = tmp_path / "runs"
    done = parity("ablate", "--preset", "smoke", "--out", str(out), *FAST, "--only", "notebook+lr",
                  "--only", "notebook+spatial-bias", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    folder = out / "smoke-one-at-a-time"
    manifest = json.loads((folder / "matrix.json").read_text())
    assert manifest["kind"] == "one-at-a-time" and len(manifest["variants"]) >= 3
    assert sorted(p.parent.parent.name for p in folder.glob("*/seed-0/metrics.json")) == \
        ["notebook", "notebook+lr", "notebook+spatial-bias"]
    report = parity("report", str(folder), "--out", str(tmp_path / "r.md"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r.md").exists()


def test_killed_matrix_resumes_without_redoing_finished_runs(tmp_path):
    out = tmp_path / "runs"
    args = [sys.executable, "-m", "parity.cli", "ablate", "--preset", "smoke", "--out", str(out), *FAST,
            "--only", "notebook+lr", "--only", "notebook+epochs", "--only", "notebook+depth"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    folder = out / "smoke-one-at-a-time"
    deadline = time.time() + 300
    while not list(folder.glob("*/seed-0/metrics.json")) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in folder.glob("*/seed-0/metrics.json")}
    assert finished
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(list(folder.glob("*/seed-0/metrics.json"))) == 4
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # never recomputed
