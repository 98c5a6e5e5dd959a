"""What a study would cost at the `paper` preset: the same matrices and seeds, each variant built from the
sources' full protocols, its optimiser steps and images from its own configuration, priced from the GPU steps
measured for the two baselines (reports/gpu.md, `parity bench gpu`). A baseline run is priced at its own
measured step. Every other variant mixes the two models, whose step time was not measured: it is priced as a
range, its training images at the cheaper baseline's seconds per image (low) and at the dearer one's (high)."""

from __future__ import annotations

import re
from pathlib import Path

from ..experiment.presets import preset
from ..runtime.matrix import matrix_variants
from .regime import run_steps

GPU_REPORT = Path(__file__).resolve().parents[2] / "reports" / "gpu.md"
STEP_FIELDS = {"train.batch_size", "train.pixels", "train.num_samples", "data.image_size"}  # beside model.*
_ROW = re.compile(r"^\|\s*(notebook|original)\s*\|\s*(\d+)\s*\|\s*parallel[^|]*\|\s*([0-9.]+)")


def measured_gpu_steps(path: Path = GPU_REPORT) -> dict:
    """{side: (seconds per step, batch)} from the step table of `parity bench gpu`'s report (its parallel-scan
    rows), and the device line; {} when the report is absent."""
    if not Path(path).is_file():
        return {}
    text = Path(path).read_text(encoding="utf-8")
    steps = {m[1]: (float(m[3]), int(m[2])) for m in map(_ROW.match, text.splitlines()) if m}
    found = re.search(r"^Device: ([^;]+);", text, re.M)
    device = found[1] if found else ""
    return {"steps": steps, "device": device, "source": "reports/gpu.md"} if steps else {}


def paper_cost(matrices, measured: dict | None = None) -> dict | None:
    """The study's matrices (rows with kind, variants, seeds, groups) at the paper preset: {runs, steps,
    gpu_hours_low, gpu_hours_high, per_matrix: [...], baselines_gpu_hours_per_seed, ...}; None without a
    measured step."""
    measured = measured_gpu_steps() if measured is None else measured
    if not measured or set(measured["steps"]) != {"notebook", "original"}:
        return None
    per_image = {side: s / batch for side, (s, batch) in measured["steps"].items()}
    pair = preset("paper").baselines()
    per_matrix = []
    for m in matrices:
        ran = {v["id"] for v in m.variants if not v.get("skipped")}
        groups = tuple(m.groups) if isinstance(m.groups, list) and m.groups else None
        variants = [v for v in matrix_variants(m.kind, pair, groups) if v.id in ran and not v.skipped]
        seeds, steps, low, high = len(m.seeds), 0, 0.0, 0.0
        for v in variants:
            n = run_steps(v.config.to_dict()) or 0
            side = _baseline_side(v.config, pair)
            if side is not None:
                low += n * measured["steps"][side][0]
                high += n * measured["steps"][side][0]
            else:
                images = n * v.config.train.batch_size
                low, high = low + images * min(per_image.values()), high + images * max(per_image.values())
            steps += n
        per_matrix.append({"matrix": m.matrix, "runs": len(variants) * seeds, "steps": steps * seeds,
                           "gpu_hours_low": low * seeds / 3600, "gpu_hours_high": high * seeds / 3600})
    base_s = sum(run_steps(c.to_dict()) * measured["steps"][side][0] for side, c in zip(("notebook", "original"), pair))
    total = {k: sum(p[k] for p in per_matrix) for k in ("runs", "steps", "gpu_hours_low", "gpu_hours_high")}
    return {**total, "per_matrix": per_matrix, "baselines_gpu_hours_per_seed": base_s / 3600,
            "seconds_per_step": {side: s for side, (s, _) in measured["steps"].items()},
            "device": measured.get("device", ""), "source": measured.get("source", "")}


def _baseline_side(cfg, pair) -> str | None:
    """'notebook' or 'original' when one step of ``cfg`` costs what that baseline's does: the same model, batch,
    pixels per image and image size (learning rates, schedules and jitter change no step's work), else None."""
    from ..experiment.config import config_diff

    for side, base in zip(("notebook", "original"), pair):
        if not any(f.startswith("model.") or f in STEP_FIELDS for f in config_diff(cfg, base)):
            return side
    return None


__all__ = ["GPU_REPORT", "measured_gpu_steps", "paper_cost"]
