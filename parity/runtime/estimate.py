"""A plan without training (`parity ablate --dry-run`): which runs of a matrix are done and which are to do, each
configuration's optimiser steps, one training step of it measured on this device, and the totals.

Why one measured step per configuration: a variant's step cost follows its model, batch and pixels, which the
registry changes; seeds share it. The estimate is steps x that step's time: evaluations, data loading and the
final evaluation are not in it, so it is a floor. Memory: the peak of a fresh process that built the model and
optimiser and ran the steps (on the CPU its resident memory, interpreter and torch included; on CUDA torch's
peak allocation), what one run needs besides its data.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch

from ..core.coords import make_grid
from ..core.memory import peak_rss_mib
from ..experiment.build import build_model
from ..experiment.config import ExperimentConfig, to_yaml
from ..experiment.schedule import run_steps
from .matrix import MatrixPlan
from .rundir import RunDir


@dataclass
class StepCost:
    seconds: float  # the median of the timed steps
    peak_mib: float  # the measuring process's peak memory: the interpreter, torch, the model, AdamW, one step


def _measure_here(cfg: ExperimentConfig, device: str, timed: int = 3) -> StepCost:
    from .train import step_loss, training_batch

    model = build_model(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    size = cfg.data.image_size
    images = torch.rand(cfg.train.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0))
    grid = make_grid(size, size, cfg.train.coords)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(1 + timed):  # the first step allocates and warms up
        coords, gt = training_batch(cfg, images, grid, step)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step_loss(cfg, model.decode(model.encode(images.to(device)), coords.to(device)), gt.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2 ** 20 if device == "cuda" else peak_rss_mib()
    return StepCost(statistics.median(times[1:]), peak)


def measure_step(cfg: ExperimentConfig, device: str | None = None) -> StepCost:
    """One configuration's training step at its batch size on random images (a warm-up step, then the median of
    three), in a fresh process so that its peak memory is its own (on CUDA: torch's peak allocation)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure_here, cfg, device).result()


def estimate_runs(label: str, variant: str, cfg: ExperimentConfig, run_dirs: list, measure=measure_step,
                  costs: dict | None = None) -> dict:
    """One plan row for the runs of one configuration (any seeds): runs done and to do, steps a run, the
    measured step, the memory estimate and the seconds still to train. ``costs`` caches a measurement per
    configuration (seeds aside) across calls."""
    costs = {} if costs is None else costs
    probe = cfg.copy()
    probe.train.seed, probe.name = 0, "estimate"
    key = to_yaml(probe)
    if key not in costs:
        costs[key] = measure(probe)
    cost = costs[key]
    steps = run_steps(cfg.to_dict()) or 0
    runs = [RunDir(d) for d in run_dirs]
    done = [run.is_done() for run in runs]
    # a run left half-way resumes from its checkpoint: only its remaining steps are to do
    remaining = sum(max(0, steps - int(run.status().get("step") or 0)) for run, d in zip(runs, done) if not d)
    return {"matrix": label, "variant": variant, "done": sum(done), "to_do": len(runs) - sum(done),
            "steps_per_run": steps, "step_s": cost.seconds, "memory_mib": cost.peak_mib,
            "seconds_to_do": remaining * cost.seconds}


def dry_run(plans: list[MatrixPlan], measure=measure_step) -> list[dict]:
    """One row per (matrix, variant) of :func:`estimate_runs`. ``measure``: the step measurement (a test passes
    its own)."""
    costs: dict[str, StepCost] = {}
    rows = []
    for plan in plans:
        by_variant: dict[str, list] = {}
        for job in plan.jobs:
            by_variant.setdefault(job.variant, []).append(job)
        for variant, jobs in by_variant.items():
            rows.append(estimate_runs(plan.folder.name, variant, jobs[0].cfg, [j.run_dir for j in jobs], measure,
                                      costs))
    return rows


__all__ = ["StepCost", "dry_run", "estimate_runs", "measure_step"]
