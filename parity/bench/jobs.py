"""Matrix throughput with N runs at once (`parity ablate --jobs N`): the same slice of a `cpu-study` matrix
trained at --jobs 1 and at --jobs 2, each in a fresh process and a fresh folder, runs per minute and their
ratio. Procedural images stand in for CIFAR-10 (the same 16x16 proxy sizes and steps, no dataset needed);
OMP_NUM_THREADS is unset so that each process takes its seat's share of the cores, as a user's would."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One-at-a-time onto the notebook: the baseline and three variants, one seed each.
VARIANTS = ("notebook+depth", "notebook+lr", "notebook+warmup")


def _command(out: Path, jobs: int, steps: int) -> list[str]:
    cmd = [sys.executable, "-m", "parity.cli", "ablate", "--matrix", "one-at-a-time", "--preset", "cpu-study",
           "--seeds", "1", "--out", str(out), "--jobs", str(jobs),
           "--set", "data.dataset=procedural", "--set", "data.train_subset=1024", "--set", f"train.max_steps={steps}",
           "--set", "eval.sr_images=8", "--set", "eval.jitter_stds=[0]"]
    for v in VARIANTS:
        cmd += ["--only", v]
    return cmd


def matrix_seconds(jobs: int, steps: int) -> float:
    """Wall time of the slice at --jobs ``jobs`` in a fresh process and folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        done = subprocess.run(_command(Path(tmp), jobs, steps), capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"--jobs {jobs} matrix failed: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return seconds


def measure_jobs(steps: int = 128, levels: tuple[int, ...] = (1, 2)) -> list[dict]:
    """One row per --jobs level: {jobs, runs, seconds, runs_per_minute, speedup} (speedup against --jobs 1)."""
    runs = len(VARIANTS) + 1
    rows = []
    for jobs in levels:
        seconds = matrix_seconds(jobs, steps)
        rows.append({"jobs": jobs, "runs": runs, "steps_per_run": steps, "seconds": seconds,
                     "runs_per_minute": 60.0 * runs / seconds})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = base / row["seconds"]
    return rows


def jobs_section(rows: list[dict], cores: int) -> list[str]:
    """Markdown lines: the throughput table and its ratio."""
    if not rows:
        return []
    lines = ["## Runs at once (`parity ablate --jobs N`)", "",
             f"The same slice of the `cpu-study` one-at-a-time matrix (the notebook and {len(VARIANTS)} variants, one "
             f"seed, {rows[0]['steps_per_run']} steps each, procedural 16x16 images) in a fresh process at each "
             f"--jobs level, on {cores} cores; each process takes its share of the cores (`parity/runtime/seats.py`).",
             "", "| --jobs | runs | seconds | runs per minute | throughput vs --jobs 1 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['jobs']} | {r['runs']} | {r['seconds']:.1f} | {r['runs_per_minute']:.2f} | "
                     f"{r['speedup']:.2f}x |")
    return lines + [""]


__all__ = ["VARIANTS", "jobs_section", "matrix_seconds", "measure_jobs"]
