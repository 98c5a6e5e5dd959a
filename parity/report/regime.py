"""How far a matrix's baselines are from the paper's protocols: LP tokens per patch, the share of the paper's
optimiser steps, the width, and where the original baseline stands against the bicubic reference. Read from
the configurations matrix.json records ("baselines") and its reference levels ("references"); the paper's
values are the sources' own configurations (parity.experiment.config)."""

from __future__ import annotations

from ..experiment.config import notebook_baseline, original_baseline
from ..experiment.schedule import SOURCE_TEST_IMAGES, SOURCE_TRAIN_IMAGES, run_steps

SIDES = ("notebook", "original")


def _source(side: str) -> dict:
    return (notebook_baseline() if side == "notebook" else original_baseline()).to_dict()


def source_steps(side: str) -> int:
    """Optimiser steps of a source's full protocol (epochs x batches per epoch)."""
    return run_steps(_source(side))


def lp_per_patch(cfg: dict) -> float | None:
    """LP tokens per image patch: num_lp / (image_size / patch_size)^2."""
    model, data = cfg.get("model") or {}, cfg.get("data") or {}
    try:
        return model["num_lp"] / (data["image_size"] / model["patch_size"]) ** 2
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def proxy_regime(baselines: dict) -> list[dict]:
    """One row per side: {side, num_lp, patches, lp_per_patch, paper_lp_per_patch, steps, paper_steps,
    steps_fraction, dim, paper_dim}; sides without a recorded configuration are left out."""
    rows = []
    for side in SIDES:
        cfg = (baselines or {}).get(side)
        if not cfg:
            continue
        paper, model, data = _source(side), cfg.get("model") or {}, cfg.get("data") or {}
        steps, paper_steps = run_steps(cfg), source_steps(side)
        size, patch = data.get("image_size"), model.get("patch_size")
        rows.append({"side": side, "num_lp": model.get("num_lp"),
                     "patches": int((size // patch) ** 2) if size and patch else None,
                     "lp_per_patch": lp_per_patch(cfg), "paper_num_lp": paper["model"]["num_lp"],
                     "paper_patches": int((paper["data"]["image_size"] // paper["model"]["patch_size"]) ** 2),
                     "paper_lp_per_patch": lp_per_patch(paper), "steps": steps, "paper_steps": paper_steps,
                     "steps_fraction": steps / paper_steps if steps else None,
                     "dim": model.get("dim"), "paper_dim": paper["model"]["dim"]})
    return rows


def bicubic_distance(original_psnr: float | None, references: dict | None) -> float | None:
    """The original baseline's PSNR minus bicubic upsampling of a 2x area-downsampled image (dB)."""
    if original_psnr is None or not references or references.get("bicubic_x2_db") is None:
        return None
    return float(original_psnr) - float(references["bicubic_x2_db"])


__all__ = ["SOURCE_TEST_IMAGES", "SOURCE_TRAIN_IMAGES", "bicubic_distance", "lp_per_patch", "proxy_regime",
           "run_steps", "source_steps"]
