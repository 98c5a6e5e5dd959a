"""Matched budgets: each run's test PSNR at a training budget both sides of a comparison reached, in steps or
in training FLOPs, from its history.jsonl, beside the end-of-budget PSNR.

Why: the sources train for different lengths (the original 2048 steps against the notebook's 512 in the
cpu-study proxy), so an end-of-budget effect of a group that changes the schedule mixes what the group does
per step with how long it trains. At matched steps every cell is read at the largest step every cell reached;
at matched FLOPs, at the largest training compute every cell reached (FLOPs per step counted from the run's
own configuration by torch's FlopCounterMode: matrix products and convolutions of one forward and backward
pass). Seconds are not used: two workers sharing two cores make a run's time depend on its neighbour.
"""

from __future__ import annotations

import functools
import math

import pandas as pd

from ..core.errors import ParityError
from ..runtime.rundir import RunDir

STEPS, FLOPS = "steps", "flops"


@functools.lru_cache(maxsize=64)
def _gflop_per_step(config_yaml: str) -> float:
    import torch
    import yaml

    from ..core.coords import make_grid
    from ..evaluation.evaluate import gflop
    from ..experiment.build import build_model
    from ..experiment.config import from_dict
    from ..runtime.train import step_loss, training_batch

    cfg = from_dict(yaml.safe_load(config_yaml), source="a run's config.yaml")
    model = build_model(cfg)
    size = cfg.data.image_size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    grid = make_grid(size, size, cfg.train.coords)

    def step():
        coords, gt = training_batch(cfg, image, grid, 0)
        step_loss(cfg, model.decode(model.encode(image), coords), gt).backward()

    # one image's forward and backward; a step's FLOPs are linear in its batch
    return gflop(step, model) * cfg.train.batch_size


def gflop_per_step(run_dir) -> float:
    """Training GFLOP of one optimiser step of the run in ``run_dir`` (its config.yaml), counted once per
    configuration (the seed does not change the count)."""
    from ..experiment.config import to_yaml

    cfg = RunDir(run_dir).load_config()
    cfg.train.seed, cfg.name = 0, "flops"
    return _gflop_per_step(to_yaml(cfg))


def variant_gflop_per_step(runs: pd.DataFrame, variants: list[dict]) -> tuple[dict[str, float], str]:
    """{variant: GFLOP per training step} from each variant's first finished run, and why not ('' when every
    variant with a finished run was counted)."""
    out = {}
    for variant in variants:
        done = runs[(runs["variant"] == variant["id"]) & (runs["state"] == "done")].sort_values("seed")
        if done.empty:
            continue
        try:
            out[variant["id"]] = gflop_per_step(done.iloc[0]["run_dir"])
        except (ParityError, ValueError, RuntimeError, TypeError) as e:
            return {}, f"FLOPs per step could not be counted for {variant['id']} ({str(e).splitlines()[0]})"
    return out, ""


def curves(histories: pd.DataFrame) -> dict[tuple[str, int], list[tuple[int, float]]]:
    """{(variant, seed): [(step, test PSNR), ...] in step order} over finished runs' evaluations."""
    logged = histories[histories["state"] == "done"].dropna(subset=["test_psnr", "step"])
    out: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for (variant, seed), rows in logged.groupby(["variant", "seed"], sort=False):
        out[(variant, int(seed))] = sorted(zip(rows["step"].astype(int), rows["test_psnr"].astype(float)))
    return out


def value_at(curve: list[tuple[int, float]], budget: float, scale: float = 1.0) -> tuple[int, float] | None:
    """The last evaluation at or before ``budget`` (a step count times ``scale``): (step, PSNR), or None."""
    reached = [(step, psnr) for step, psnr in curve if step * scale <= budget * (1 + 1e-9)]
    return reached[-1] if reached else None


def matched_values(histories: pd.DataFrame, ids: dict, measure: str, gflop: dict[str, float] | None = None
                   ) -> tuple[dict, float, str]:
    """Each cell's per-seed PSNR at the budget every run of the cells reached: ``ids`` {cell: variant id};
    measure STEPS (budget in steps) or FLOPS (in training GFLOP, from ``gflop`` per step). Returns ({cell:
    {seed: PSNR}}, the budget, '' or why not). A run is read at its last evaluation at or before the budget."""
    found = curves(histories)
    scale = {v: 1.0 for v in ids.values()} if measure == STEPS else (gflop or {})
    missing = [v for v in ids.values() if v not in scale]
    if missing:
        return {}, math.nan, f"no FLOP count for {', '.join(missing)}"
    ends = [curve[-1][0] * scale[v] for (v, _), curve in found.items() if v in scale and v in ids.values()]
    if not ends:
        return {}, math.nan, "no evaluation logged in history.jsonl"
    budget = min(ends)
    cells = {}
    for cell, vid in ids.items():
        values = {}
        for (v, seed), curve in found.items():
            if v == vid and (hit := value_at(curve, budget, scale[vid])) is not None:
                values[seed] = hit[1]
        if not values:
            return {}, budget, f"{vid} has no evaluation at or before the matched budget"
        cells[cell] = values
    return cells, budget, ""


__all__ = ["FLOPS", "STEPS", "curves", "gflop_per_step", "matched_values", "value_at", "variant_gflop_per_step"]
