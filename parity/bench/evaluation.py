"""``parity bench evaluation``: a preset's final evaluation at full data scale, proved before a long run needs it.

Each side trains for a few steps (a 2-step budget by default) through the same ``train_run`` a real run takes, on
the preset's full data, and then runs the preset's whole final evaluation: every test image, the jitter levels,
super-resolution up to the largest size, the linear probe. What each evaluation stage took (seconds, peak resident
memory, peak GPU allocation where it ran on one) comes from the run's own metrics.json, so a long paper run knows
before it starts that its last hour will complete and what it will cost. The runs are ordinary run folders: a
rerun reads them back and rewrites the report without training again.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from ..core.store import atomic_write_text
from ..experiment.config import apply_overrides
from ..experiment.presets import preset
from ..runtime.rundir import RunDir
from ..runtime.train import train_run

HISTORY_IMAGES = 256  # the in-training test PSNR of these few steps: the final evaluation is what is measured


def evaluation_case(side: str, preset_name: str, overrides: list[str], steps: int, out: Path) -> dict:
    """Train one side of ``preset_name`` for ``steps`` steps in ``out/<side>/seed-0`` with its full final
    evaluation; returns {side, config, metrics, wall_s} (wall_s None when the run was finished before)."""
    notebook, original = preset(preset_name).baselines()
    cfg = apply_overrides(original if side == "original" else notebook, [*overrides, f"train.max_steps={steps}"])
    cfg.name = f"{side}-evaluation"
    run_dir = out / side / "seed-0"
    finished = RunDir(run_dir).is_done()
    start = time.perf_counter()
    metrics = train_run(cfg, run_dir, eval_images=HISTORY_IMAGES)
    return {"side": side, "config": cfg.to_dict(), "metrics": metrics,
            "wall_s": None if finished else time.perf_counter() - start}


def _data_scale(case: dict) -> dict:
    cfg, metrics = case["config"], case["metrics"]
    probe = metrics.get("probe") or {}
    return {"test_images": metrics["test"].get("images"), "sr_images": cfg["eval"]["sr_images"],
            "sr_sizes": cfg["eval"]["sr_sizes"], "jitter_stds": cfg["eval"]["jitter_stds"],
            "probe_train_images": probe.get("train_images"), "probe_test_images": probe.get("test_images"),
            "eval_batch_size": cfg["eval"]["batch_size"]}


def evaluation_report(cases: list[dict], preset_name: str, steps: int, command: str) -> tuple[str, dict]:
    """The markdown page and its JSON: per side the data scale, then one row per evaluation stage."""
    import pandas as pd

    device = next((c["metrics"].get("device") for c in cases), "cpu")
    env = next((c["metrics"].get("environment") or {} for c in cases), {})
    lines = [f"# The `{preset_name}` preset's final evaluation at full data scale", "",
             f"Each side trained {steps} steps through `train_run`, then ran its preset's whole final evaluation. "
             f"Device: {device} ({platform.processor() or platform.machine()}, {env.get('threads', '?')} torch "
             f"threads, torch {torch.__version__}). Regenerate:", "", "```bash", command, "```", "",
             "Peak memory is each stage's own: the process's resident memory sampled every 20 ms during the stage "
             "(interpreter, torch, the model and the data in memory included), and on a GPU torch's peak "
             "allocation. On the CPU the resident peak bounds what the same stage allocates on a GPU: its "
             "tensors are the same sizes, and decoding runs in chunks of a fixed number of queries "
             "(`parity.evaluation.evaluate.DECODE_CHUNK`) counted over the batch, whatever the output size.", ""]
    payload = {"preset": preset_name, "steps": steps, "device": device, "command": command, "sides": []}
    for case in cases:
        stages = case["metrics"].get("stages") or {}
        scale = _data_scale(case)
        rows = [{"stage": name, "seconds": s["seconds"], "peak RSS (MiB)": s["peak_rss_mb"],
                 "peak GPU (MiB)": s["peak_gpu_mb"]} for name, s in stages.items()]
        total = sum(s["seconds"] for s in stages.values())
        peak = max((s["peak_rss_mb"] for s in stages.values()), default=None)
        lines += [f"## {case['side']}", "",
                  f"{scale['test_images']} test images at batch {scale['eval_batch_size']}; jitter at "
                  f"{', '.join(str(s) for s in scale['jitter_stds'])} and super-resolution at "
                  f"{', '.join(str(s) for s in scale['sr_sizes'])} on the first {scale['sr_images']}; linear probe "
                  f"on {scale['probe_train_images']} training and {scale['probe_test_images']} test images. "
                  f"Final evaluation: {total:,.0f} s, peak resident memory {peak:,.0f} MiB"
                  + (f"; the whole run (data, {steps} steps, evaluation) {case['wall_s']:,.0f} s" if case["wall_s"]
                     else "") + ".", ""]
        if rows:
            table = pd.DataFrame(rows)
            if table["peak GPU (MiB)"].isna().all():
                table = table.drop(columns=["peak GPU (MiB)"])
            lines += [table.to_markdown(index=False, floatfmt=",.1f"), ""]
        payload["sides"].append({"side": case["side"], "data_scale": scale, "stages": stages,
                                 "evaluation_seconds": total, "peak_rss_mb": peak, "wall_s": case["wall_s"],
                                 "test_psnr": case["metrics"]["test"].get("psnr")})
    return "\n".join(lines), payload


def write_evaluation_report(sides: list[str], preset_name: str, overrides: list[str], steps: int, out, report,
                            command: str, progress=None) -> Path:
    """Run (or read back) each side's case, then write ``report`` (.md) and its .json beside it."""
    cases = []
    for side in sides:
        if progress:
            progress(f"{side}: {steps} steps, then the full final evaluation")
        cases.append(evaluation_case(side, preset_name, overrides, steps, Path(out)))
    text, payload = evaluation_report(cases, preset_name, steps, command)
    report = Path(report)
    report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report, text)
    atomic_write_text(report.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    return report


__all__ = ["HISTORY_IMAGES", "evaluation_case", "evaluation_report", "write_evaluation_report"]
